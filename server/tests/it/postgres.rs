//! A throwaway PostgreSQL cluster for the whole test binary: initdb +
//! pg_ctl on a free loopback port, one fresh database per test, removed by
//! a watchdog process once the test binary exits.
//!
//! Set `SESAME_TEST_POSTGRES_URL` (a server URL whose user may create
//! databases) to use an existing server instead. There is no skip: a test
//! that cannot get its database fails.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use sea_orm::{ConnectionTrait, Database};

/// Base URL (without database) of the shared cluster.
fn server_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| match std::env::var("SESAME_TEST_POSTGRES_URL") {
        Ok(url) => url.trim_end_matches('/').to_owned(),
        Err(_) => start_cluster(),
    })
}

/// Creates an empty database and returns its URL.
pub async fn fresh_database() -> String {
    fresh_database_on(server_url()).await
}

/// Creates an empty database on the server at `base` and returns its URL.
pub async fn fresh_database_on(base: &str) -> String {
    let admin = Database::connect(format!("{base}/postgres"))
        .await
        .unwrap_or_else(|error| panic!("cannot reach the test PostgreSQL at {base}: {error}"));
    let name = format!("sesame_test_{}", uuid::Uuid::new_v4().simple());
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create test database");
    admin.close().await.ok();
    format!("{base}/{name}")
}

fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("SESAME_TEST_PG_BINDIR") {
        return PathBuf::from(dir);
    }
    let mut candidates: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| entry.path().join("bin"))
                .filter(|bin| bin.join("initdb").exists())
                .collect()
        })
        .unwrap_or_default();
    candidates.sort_by_key(|path| {
        path.parent()
            .and_then(|version| version.file_name())
            .and_then(|name| name.to_str())
            .and_then(|name| name.parse::<u32>().ok())
            .unwrap_or(0)
    });
    candidates.pop().unwrap_or_else(|| {
        panic!(
            "PostgreSQL server binaries (initdb, pg_ctl) not found under /usr/lib/postgresql; \
             install the `postgresql` package or set SESAME_TEST_PG_BINDIR"
        )
    })
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|meta| meta.uid() == 0)
        .unwrap_or(false)
}

/// A command that runs as the `postgres` user when we are root (the server
/// refuses to run as root).
fn pg_command(program: &Path) -> Command {
    if running_as_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn run(mut command: Command, what: &str) {
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("{what}: cannot run: {error}"));
    assert!(
        output.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A PostgreSQL cluster of its own: initdb'd in a temp dir, listening on
/// a free loopback port, stopped and removed when dropped. Tests that stop
/// and start the database use one, not the shared cluster.
pub struct Cluster {
    root: PathBuf,
    data: PathBuf,
    port: u16,
}

impl Cluster {
    /// A new cluster, started.
    pub fn start() -> Cluster {
        let root = tempfile::Builder::new()
            .prefix("sesame-pg-")
            .tempdir()
            .expect("temp dir for PostgreSQL")
            .keep();
        let data = root.join("data");
        std::fs::create_dir(&data).expect("create data dir");
        if running_as_root() {
            run(
                {
                    let mut chown = Command::new("chown");
                    chown.args(["-R", "postgres:postgres"]).arg(&root);
                    chown
                },
                "chown the PostgreSQL dir",
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("free port")
            .port();
        let mut initdb = pg_command(&bin_dir().join("initdb"));
        initdb.arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--no-sync",
        ]);
        run(initdb, "initdb");
        let cluster = Cluster { root, data, port };
        cluster.resume();
        cluster
    }

    /// Starts the stopped cluster again, on the same port.
    pub fn resume(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c max_connections=300",
            self.port,
            self.data.display()
        );
        let mut start = self.pg_ctl();
        start
            .args(["-o", &options, "-l"])
            .arg(self.data.join("server.log"))
            .args(["-w", "-t", "60", "start"]);
        run(start, "pg_ctl start");
    }

    /// Stops the cluster as `pg_ctl stop -m fast` does: every session is
    /// terminated and new connections are refused.
    pub fn stop(&self) {
        let mut stop = self.pg_ctl();
        stop.args(["-m", "fast", "-w", "stop"]);
        run(stop, "pg_ctl stop");
    }

    /// The server URL, without a database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}", self.port)
    }

    fn pg_ctl(&self) -> Command {
        let mut command = pg_command(&bin_dir().join("pg_ctl"));
        command.arg("-D").arg(&self.data);
        command
    }

    /// Stops the cluster and removes its files once this test binary
    /// exits, even if it is killed.
    fn remove_at_exit(self) {
        let stop = if running_as_root() {
            format!(
                "runuser -u postgres -- {}",
                bin_dir().join("pg_ctl").display()
            )
        } else {
            bin_dir().join("pg_ctl").display().to_string()
        };
        let watchdog = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; \
             {stop} -D '{data}' -m immediate stop >/dev/null 2>&1; rm -rf '{root}'",
            pid = std::process::id(),
            data = self.data.display(),
            root = self.root.display(),
        );
        // Deliberately not waited for: it outlives this process to clean up.
        #[allow(clippy::zombie_processes)]
        let _watchdog = Command::new("sh")
            .args(["-c", &watchdog])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the PostgreSQL watchdog");
        std::mem::forget(self);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let mut stop = self.pg_ctl();
        stop.args(["-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let _ = stop.status();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// The shared cluster, kept until the test binary exits.
fn start_cluster() -> String {
    let cluster = Cluster::start();
    let url = cluster.url();
    cluster.remove_at_exit();
    url
}

/// A logical dump of the database at `url`: `pg_dump`'s plain SQL, as an
/// operator's backup would be.
pub fn dump(url: &str) -> String {
    let output = Command::new(bin_dir().join("pg_dump"))
        .args(["--no-owner", "--no-privileges", "--dbname", url])
        .output()
        .expect("run pg_dump");
    assert!(
        output.status.success(),
        "pg_dump failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("pg_dump writes UTF-8")
}

/// A new database restored from a plain `pg_dump` with `psql`; its URL.
pub async fn restore(dump: &str) -> String {
    let url = fresh_database().await;
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), dump).expect("write the dump");
    let output = Command::new(bin_dir().join("psql"))
        .args([
            "--quiet",
            "--set",
            "ON_ERROR_STOP=1",
            "--dbname",
            &url,
            "--file",
        ])
        .arg(file.path())
        .output()
        .expect("run psql");
    assert!(
        output.status.success(),
        "psql restore failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    url
}
