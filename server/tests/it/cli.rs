//! The real `sesame` binary: first start prints one admin key, serves,
//! stops cleanly on SIGTERM; `keys` and `migrate` work and fail clearly.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use sesame_proto::v1 as pb;
use sesame_proto::v1::access_request_service_client::AccessRequestServiceClient;
use tokio::io::{AsyncBufReadExt, BufReader};

const SESAME: &str = env!("CARGO_BIN_EXE_sesame");

/// The binary, run in `dir` with no inherited Sesame configuration.
pub fn sesame(dir: &Path) -> Command {
    let mut command = Command::new(SESAME);
    command.current_dir(dir).env_remove("RUST_LOG");
    for (key, _) in std::env::vars() {
        if key.starts_with("SESAME_") {
            command.env_remove(key);
        }
    }
    command
}

/// A submitter key named `backend` made with `sesame keys create` in
/// `dir` (a backend service's key, beside the admin's).
pub fn submitter_key(dir: &Path) -> String {
    run_ok(sesame(dir).args(["keys", "create", "--name", "backend", "--role", "submitter"]))
}

pub fn run_ok(command: &mut Command) -> String {
    let output = command.output().expect("run sesame");
    assert!(
        output.status.success(),
        "sesame failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8 output")
}

fn run_err(command: &mut Command) -> Output {
    let output = command.output().expect("run sesame");
    assert!(!output.status.success(), "sesame should have failed");
    output
}

#[test]
fn keys_create_list_and_revoke() {
    let dir = tempfile::tempdir().unwrap();
    let secret = run_ok(sesame(dir.path()).args([
        "keys",
        "create",
        "--name",
        "ci-bot",
        "--role",
        "submitter",
    ]));
    let secret = secret.trim();
    assert!(secret.starts_with("sesame_"), "{secret}");
    assert!(
        dir.path().join("sesame.db").exists(),
        "the default database is ./sesame.db"
    );

    let listing = run_ok(sesame(dir.path()).args(["keys", "list"]));
    let line = listing
        .lines()
        .find(|line| line.starts_with("ci-bot"))
        .expect("listed");
    assert!(
        line.contains("submitter") && line.contains("active"),
        "{line}"
    );
    assert!(!listing.contains(secret), "secrets are never listed");

    let duplicate =
        run_err(sesame(dir.path()).args(["keys", "create", "--name", "ci-bot", "--role", "admin"]));
    assert!(String::from_utf8_lossy(&duplicate.stderr).contains("already exists"));
    let bad_role =
        run_err(sesame(dir.path()).args(["keys", "create", "--name", "x", "--role", "root"]));
    assert!(String::from_utf8_lossy(&bad_role.stderr).contains("unknown role"));
    let bad_name = run_err(
        sesame(dir.path()).args(["keys", "create", "--name", "Bad Name", "--role", "admin"]),
    );
    assert!(String::from_utf8_lossy(&bad_name.stderr).contains("invalid key name"));
    let reserved =
        run_err(sesame(dir.path()).args(["keys", "create", "--name", "system", "--role", "admin"]));
    assert!(String::from_utf8_lossy(&reserved.stderr).contains("reserved"));

    run_ok(sesame(dir.path()).args(["keys", "revoke", "ci-bot"]));
    let listing = run_ok(sesame(dir.path()).args(["keys", "list"]));
    let line = listing
        .lines()
        .find(|line| line.starts_with("ci-bot"))
        .expect("listed");
    assert!(line.contains("revoked"), "{line}");
    let missing = run_err(sesame(dir.path()).args(["keys", "revoke", "nobody"]));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("not found"));
}

/// `keys create --role gateway --resource ...` binds a gateway key; the
/// listing shows it; `--resource` on another role and a bad resource are
/// refused; `serve` warns about the gateway keys left unbound.
#[tokio::test]
async fn gateway_keys_are_bound_to_resources_and_unbound_ones_are_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let bound = sesame(dir.path())
        .args([
            "keys",
            "create",
            "--name",
            "gw-paris",
            "--role",
            "gateway",
            "--resource",
            "vpn-paris",
            "--resource",
            "vpn-paris-2",
        ])
        .output()
        .expect("run sesame");
    assert!(bound.status.success(), "{bound:?}");
    assert!(
        String::from_utf8_lossy(&bound.stderr).contains("for vpn-paris, vpn-paris-2"),
        "{bound:?}"
    );
    run_ok(sesame(dir.path()).args(["keys", "create", "--name", "gw-old", "--role", "gateway"]));
    let listing = run_ok(sesame(dir.path()).args(["keys", "list"]));
    let line = |name: &str| {
        listing
            .lines()
            .find(|line| line.starts_with(name))
            .unwrap_or_else(|| panic!("{name} listed:\n{listing}"))
            .to_owned()
    };
    assert!(
        line("gw-paris").ends_with("vpn-paris,vpn-paris-2"),
        "{listing}"
    );
    assert!(line("gw-old").ends_with("any (unbound)"), "{listing}");

    let admin = run_err(sesame(dir.path()).args([
        "keys",
        "create",
        "--name",
        "boss",
        "--role",
        "admin",
        "--resource",
        "vpn-paris",
    ]));
    assert!(
        String::from_utf8_lossy(&admin.stderr).contains("only gateway keys are bound"),
        "{admin:?}"
    );
    let blank = run_err(sesame(dir.path()).args([
        "keys",
        "create",
        "--name",
        "gw-blank",
        "--role",
        "gateway",
        "--resource",
        " ",
    ]));
    assert!(
        String::from_utf8_lossy(&blank.stderr).contains("invalid resource"),
        "{blank:?}"
    );
    let listing = run_ok(sesame(dir.path()).args(["keys", "list"]));
    assert!(
        !listing.contains("boss") && !listing.contains("gw-blank"),
        "a refused key is not created:\n{listing}"
    );

    let served = serve(dir.path()).await;
    let warning = log_line(&served, |line| {
        line["level"] == "WARN"
            && line["fields"]["message"]
                .as_str()
                .is_some_and(|message| message.starts_with("gateway keys bound to no resource"))
    })
    .await;
    assert_eq!(warning["fields"]["keys"], "gw-old", "{warning}");
    terminate(served).await;
}

/// The help says what is true: every role, gateway included, and how long
/// a revocation takes to reach servers (their key cache).
#[test]
fn keys_help_lists_every_role_and_the_revocation_delay() {
    let dir = tempfile::tempdir().unwrap();
    let create = run_ok(sesame(dir.path()).args(["keys", "create", "--help"]));
    for role in sesame_server::auth::Role::ALL {
        assert!(
            create.contains(role.as_str()),
            "{role:?} missing:\n{create}"
        );
    }
    let revoke = run_ok(sesame(dir.path()).args(["keys", "revoke", "--help"]));
    // Help text is wrapped to the terminal: compare words.
    let revoke = revoke.split_whitespace().collect::<Vec<_>>().join(" ");
    let cache = sesame_server::store::KEY_CACHE_TTL.as_secs();
    assert!(revoke.contains(&format!("within {cache} s")), "{revoke}");
    assert!(!revoke.contains("at once"), "{revoke}");
}

#[test]
fn bad_configuration_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let output = run_err(
        sesame(dir.path())
            .args(["migrate"])
            .env("SESAME_DATABASE_MAX_CONNECTIONS", "0")
            .env("SESAME_DATABASE_URL", "mysql://nope"),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("database_max_connections"), "{stderr}");
    assert!(stderr.contains("database_url"), "{stderr}");

    let output = run_err(sesame(dir.path()).args(["--config", "missing.toml", "migrate"]));
    assert!(String::from_utf8_lossy(&output.stderr).contains("missing.toml"));

    std::fs::write(dir.path().join("sesame.toml"), "listen_addr = 12\n").unwrap();
    let output = run_err(sesame(dir.path()).args(["migrate"]));
    assert!(String::from_utf8_lossy(&output.stderr).contains("listen_addr"));
}

#[tokio::test]
async fn migrate_applies_then_reports_nothing_pending_on_postgres() {
    let url = crate::postgres::fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let status = run_ok(sesame(dir.path()).args(["migrate", "--status", "--database-url", &url]));
    use sesame_migrations::MigratorTrait;
    let count = sesame_migrations::Migrator::migrations().len();
    assert_eq!(status.trim(), format!("{count} pending migration(s)"));
    let applied = run_ok(sesame(dir.path()).args(["migrate", "--database-url", &url]));
    assert!(
        applied.starts_with(&format!("applied {count} migration(s)")),
        "{applied}"
    );
    let status = run_ok(sesame(dir.path()).args(["migrate", "--status", "--database-url", &url]));
    assert_eq!(status.trim(), "0 pending migration(s)");
}

/// A running `sesame serve` process.
pub struct Served {
    pub child: tokio::process::Child,
    /// Log lines (JSON) written to stderr, as they come.
    pub logs: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    stdout: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    /// The address it listens on, `127.0.0.1:PORT`.
    pub addr: String,
    /// Lines printed on stdout before it listened (the bootstrap key).
    pub stdout_before_listening: Vec<String>,
}

impl Served {
    /// The admin key printed on first start, if this process printed one.
    pub fn bootstrap_key(&self) -> Option<String> {
        self.stdout_before_listening
            .iter()
            .map(|line| line.trim())
            .find(|line| line.starts_with("sesame_"))
            .map(str::to_owned)
    }
}

async fn serve(dir: &Path) -> Served {
    serve_with(dir, &[]).await
}

/// `sesame serve` in `dir` with extra `SESAME_*` environment variables.
async fn serve_with(dir: &Path, env: &[(&str, &str)]) -> Served {
    serve_at(dir, "127.0.0.1:0", env).await
}

/// `sesame serve --listen LISTEN` in `dir`, with extra environment variables.
pub async fn serve_at(dir: &Path, listen: &str, env: &[(&str, &str)]) -> Served {
    serve_args(dir, listen, &[], env).await
}

/// `sesame serve --listen LISTEN ARGS...` in `dir`, with extra environment
/// variables.
async fn serve_args(dir: &Path, listen: &str, args: &[&str], env: &[(&str, &str)]) -> Served {
    let mut command = tokio::process::Command::from(sesame(dir));
    command.envs(env.iter().copied());
    command
        .args(["serve", "--listen", listen, "--log-format", "json"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().expect("spawn sesame serve");
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let logs = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let addr = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = stderr.next_line().await.expect("read stderr") {
            let parsed: serde_json::Value = serde_json::from_str(&line)
                .unwrap_or_else(|_| panic!("log lines are JSON: {line}"));
            logs.lock().unwrap().push(line);
            if parsed["fields"]["message"] == "sesame listening" {
                return parsed["fields"]["addr"].as_str().unwrap().to_owned();
            }
        }
        panic!("sesame exited before listening");
    })
    .await
    .expect("sesame starts listening within 30 s");
    // Keep draining stderr so the server never blocks on a full pipe.
    let kept = logs.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = stderr.next_line().await {
            kept.lock().unwrap().push(line);
        }
    });
    let mut served = Served {
        child,
        logs,
        stdout,
        addr,
        stdout_before_listening: Vec::new(),
    };
    // Everything printed before listening is already in the pipe.
    while let Ok(Ok(Some(line))) =
        tokio::time::timeout(Duration::from_millis(300), served.stdout.next_line()).await
    {
        served.stdout_before_listening.push(line);
    }
    served
}

/// SIGTERM, then a clean exit within 20 s.
pub async fn terminate(mut served: Served) {
    let pid = served.child.id().expect("running").to_string();
    let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(status.success());
    let exit = tokio::time::timeout(Duration::from_secs(20), served.child.wait())
        .await
        .expect("sesame stops within 20 s of SIGTERM")
        .unwrap();
    assert!(exit.success(), "clean exit on SIGTERM: {exit:?}");
}

#[tokio::test]
async fn first_start_prints_one_admin_key_that_works() {
    let dir = tempfile::tempdir().unwrap();
    let first = serve(dir.path()).await;
    let key = first.bootstrap_key().expect("the bootstrap key is printed");

    let channel = tonic::transport::Channel::from_shared(format!("http://{}", first.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = AccessRequestServiceClient::new(channel);
    // The admin does not approve its own submissions (separation of
    // duties): a backend's submitter key, made with the CLI beside the
    // running server, submits.
    let submitter = crate::cli::submitter_key(dir.path());
    let submitter = submitter.trim();
    let mut submit = tonic::Request::new(crate::harness::valid_submission());
    submit.metadata_mut().insert(
        "authorization",
        format!("Bearer {submitter}").parse().unwrap(),
    );
    let created = client
        .submit_access_request(submit)
        .await
        .expect("the submitter key works");
    let name = created.into_inner().access_request.unwrap().name;
    let mut own = tonic::Request::new(crate::harness::valid_submission());
    own.metadata_mut()
        .insert("authorization", format!("Bearer {key}").parse().unwrap());
    let own = client
        .submit_access_request(own)
        .await
        .expect("the admin key submits too")
        .into_inner()
        .access_request
        .unwrap()
        .name;
    let mut self_approval = tonic::Request::new(pb::ApproveAccessRequestRequest {
        name: own,
        ..Default::default()
    });
    self_approval
        .metadata_mut()
        .insert("authorization", format!("Bearer {key}").parse().unwrap());
    let refused = client
        .approve_access_request(self_approval)
        .await
        .expect_err("an admin does not approve its own request by default");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    assert_eq!(crate::harness::reason(&refused), "SELF_APPROVAL");
    let mut approve = tonic::Request::new(pb::ApproveAccessRequestRequest {
        name,
        ..Default::default()
    });
    approve
        .metadata_mut()
        .insert("authorization", format!("Bearer {key}").parse().unwrap());
    let approved = client
        .approve_access_request(approve)
        .await
        .expect("admin approves");
    assert_eq!(
        approved
            .into_inner()
            .access_request
            .unwrap()
            .decision
            .unwrap()
            .actor,
        "bootstrap-admin"
    );
    terminate(first).await;

    // A second start on the same database prints no new key.
    let second = serve(dir.path()).await;
    assert!(
        !second
            .stdout_before_listening
            .iter()
            .any(|line| line.contains("sesame_")),
        "{:?}",
        second.stdout_before_listening
    );
    terminate(second).await;
}

/// Two `sesame serve` processes on one PostgreSQL: a watcher on one sees
/// what is submitted through the other. Polling is slowed to a minute, so
/// only LISTEN/NOTIFY can deliver in time.
#[tokio::test]
async fn two_server_processes_on_one_postgres_share_live_events() {
    use sesame_proto::v1::event_service_client::EventServiceClient;
    use sesame_proto::v1::watch_events_response::Kind;

    let url = crate::postgres::fresh_database().await;
    let keys = tempfile::tempdir().unwrap();
    let secret_key = crate::harness::test_secret_key(keys.path());
    let env = [
        ("SESAME_DATABASE_URL", url.as_str()),
        ("SESAME_EVENT_POLL_INTERVAL_MS", "60000"),
        ("SESAME_SECRET_KEY_FILE", secret_key.as_str()),
    ];
    let dir_a = tempfile::tempdir().unwrap();
    let dir_b = tempfile::tempdir().unwrap();
    let a = serve_with(dir_a.path(), &env).await;
    let key = a
        .bootstrap_key()
        .expect("the first process prints the bootstrap key");
    let b = serve_with(dir_b.path(), &env).await;
    assert!(
        !b.stdout_before_listening
            .iter()
            .any(|line| line.contains("sesame_")),
        "the second process finds the key and prints none"
    );
    let bearer = format!("Bearer {key}");
    let connect = async |addr: &str| {
        tonic::transport::Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap()
    };

    let mut events = EventServiceClient::new(connect(&a.addr).await);
    let mut watch = tonic::Request::new(pb::WatchEventsRequest::default());
    watch
        .metadata_mut()
        .insert("authorization", bearer.parse().unwrap());
    let mut stream = events.watch_events(watch).await.unwrap().into_inner();
    let first = stream.message().await.unwrap().unwrap();
    assert!(matches!(first.kind, Some(Kind::Ready(_))));

    let mut requests = AccessRequestServiceClient::new(connect(&b.addr).await);
    let mut submit = tonic::Request::new(crate::harness::valid_submission());
    submit
        .metadata_mut()
        .insert("authorization", bearer.parse().unwrap());
    let created = requests
        .submit_access_request(submit)
        .await
        .unwrap()
        .into_inner();
    let name = created.access_request.unwrap().name;

    let received = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(Kind::Event(event)) = stream.message().await.unwrap().unwrap().kind {
                return event;
            }
        }
    })
    .await
    .expect("the event reaches the other process within 10 s");
    assert_eq!(received.access_request, name);
    assert_eq!(received.sequence, 1);
    drop(stream);
    terminate(a).await;
    terminate(b).await;
}

#[test]
fn a_public_metrics_address_is_refused_without_the_opt_in() {
    let dir = tempfile::tempdir().unwrap();
    let output = run_err(sesame(dir.path()).args(["serve", "--metrics-addr", "0.0.0.0:0"]));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("metrics_addr 0.0.0.0:0 is not a loopback address")
            && stderr.contains("metrics_allow_public = true"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("sesame.db").exists(),
        "refused before opening the database"
    );
}

/// The log line that `wanted` matches, waiting up to 10 s for it.
async fn log_line(
    served: &Served,
    wanted: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let found = served
            .logs
            .lock()
            .unwrap()
            .iter()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .find(|line| wanted(line));
        if let Some(line) = found {
            return line;
        }
        assert!(tokio::time::Instant::now() < deadline, "no such log line");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `serve --metrics-addr`: the logs of a call carry its request id, and the
/// call is counted on /metrics.
#[tokio::test]
async fn serve_with_metrics_counts_calls_and_logs_carry_the_request_id() {
    let dir = tempfile::tempdir().unwrap();
    let served = serve_args(
        dir.path(),
        "127.0.0.1:0",
        &["--metrics-addr", "127.0.0.1:0"],
        &[],
    )
    .await;
    let key = served
        .bootstrap_key()
        .expect("the bootstrap key is printed");
    let listening = log_line(&served, |line| {
        line["fields"]["message"] == "metrics listening on /metrics"
    })
    .await;
    let metrics_addr = listening["fields"]["addr"].as_str().unwrap().to_owned();

    let channel = tonic::transport::Channel::from_shared(format!("http://{}", served.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = AccessRequestServiceClient::new(channel);
    let mut submit = tonic::Request::new(crate::harness::valid_submission());
    submit
        .metadata_mut()
        .insert("authorization", format!("Bearer {key}").parse().unwrap());
    submit
        .metadata_mut()
        .insert("x-request-id", "cli-test-7".parse().unwrap());
    let created = client
        .submit_access_request(submit)
        .await
        .unwrap()
        .into_inner()
        .access_request
        .unwrap();
    let submitted = log_line(&served, |line| {
        line["fields"]["message"] == "access request submitted"
    })
    .await;
    // The outermost span of every line of the call is `rpc`.
    let rpc = &submitted["spans"][0];
    assert_eq!(rpc["name"], "rpc", "{submitted}");
    assert_eq!(rpc["request_id"], "cli-test-7", "{submitted}");
    assert_eq!(
        rpc["method"],
        "/sesame.v1.AccessRequestService/SubmitAccessRequest"
    );

    let metrics = http_get(&metrics_addr, "/metrics").await;
    assert!(
        metrics.contains(
            "grpc_server_handled_total{grpc_service=\"sesame.v1.AccessRequestService\",\
             grpc_method=\"SubmitAccessRequest\",grpc_type=\"unary\",grpc_code=\"OK\"} 1\n"
        ),
        "{metrics}"
    );
    // An ordinary refusal (a stale etag) is an answer, not a server error:
    // nothing is logged at ERROR for it.
    let mut stale = tonic::Request::new(pb::ApproveAccessRequestRequest {
        name: created.name,
        etag: "0000000000000000".into(),
        ..Default::default()
    });
    stale
        .metadata_mut()
        .insert("authorization", format!("Bearer {key}").parse().unwrap());
    let refused = client.approve_access_request(stale).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Aborted, "{refused:?}");
    // A later call's line: every line of the refused call is logged by then.
    let mut again = tonic::Request::new(crate::harness::valid_submission());
    again
        .metadata_mut()
        .insert("authorization", format!("Bearer {key}").parse().unwrap());
    again
        .metadata_mut()
        .insert("x-request-id", "cli-test-8".parse().unwrap());
    client.submit_access_request(again).await.unwrap();
    log_line(&served, |line| {
        line["fields"]["message"] == "access request submitted"
            && line["spans"][0]["request_id"] == "cli-test-8"
    })
    .await;
    let errors: Vec<String> = served
        .logs
        .lock()
        .unwrap()
        .iter()
        .filter(|line| {
            serde_json::from_str::<serde_json::Value>(line)
                .is_ok_and(|parsed| parsed["level"] == "ERROR")
        })
        .cloned()
        .collect();
    assert!(errors.is_empty(), "ERROR lines for a refusal: {errors:#?}");
    terminate(served).await;
    assert!(
        tokio::net::TcpStream::connect(&metrics_addr).await.is_err(),
        "the metrics listener closed with the server"
    );
}

/// `sesame worker --metrics-addr`: the standalone worker counts what it
/// sends, and its outbox gauges agree with its counters.
#[tokio::test]
async fn the_standalone_worker_serves_its_email_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let served = serve_with(dir.path(), &[("SESAME_MAIL_WORKER", "false")]).await;
    let key = served
        .bootstrap_key()
        .expect("the bootstrap key is printed");
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", served.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = AccessRequestServiceClient::new(channel);
    let mut submit = tonic::Request::new(crate::harness::valid_submission());
    submit
        .metadata_mut()
        .insert("authorization", format!("Bearer {key}").parse().unwrap());
    client.submit_access_request(submit).await.unwrap();

    // The worker shares the SQLite file in the same directory.
    let mut worker = tokio::process::Command::from(sesame(dir.path()))
        .args([
            "worker",
            "--metrics-addr",
            "127.0.0.1:0",
            "--log-format",
            "json",
        ])
        .env("SESAME_METRICS_REFRESH_SECS", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn sesame worker");
    let mut stderr = BufReader::new(worker.stderr.take().unwrap()).lines();
    let metrics_addr = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = stderr.next_line().await.unwrap() {
            let parsed: serde_json::Value = serde_json::from_str(&line).unwrap();
            if parsed["fields"]["message"] == "metrics listening on /metrics" {
                return parsed["fields"]["addr"].as_str().unwrap().to_owned();
            }
        }
        panic!("the worker exited before serving metrics");
    })
    .await
    .expect("metrics within 30 s");
    tokio::spawn(async move { while let Ok(Some(_)) = stderr.next_line().await {} });

    let sample = |body: &str, series: &str| -> Option<f64> {
        body.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let body = http_get(&metrics_addr, "/metrics").await;
        let sent = sample(&body, "sesame_emails_sent_total").unwrap();
        let sent_rows = sample(&body, "sesame_outbox_emails{state=\"sent\"}");
        let pending_rows = sample(&body, "sesame_outbox_emails{state=\"pending\"}");
        if sent >= 1.0 && sent_rows == Some(sent) && pending_rows == Some(0.0) {
            assert_eq!(sample(&body, "sesame_emails_dead_total"), Some(0.0));
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the worker's metrics never settled: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let pid = worker.id().unwrap().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let exit = tokio::time::timeout(Duration::from_secs(20), worker.wait())
        .await
        .expect("the worker stops on SIGTERM")
        .unwrap();
    assert!(exit.success(), "{exit:?}");
    terminate(served).await;
}

/// The body of `GET path` over plain HTTP/1.1.
async fn http_get(addr: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: sesame\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_owned()
}

#[test]
fn templates_render_prints_an_email_and_refuses_unknown_kinds() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("values.json");
    std::fs::write(&data, r#"{"full_name": "Zoé <Z>"}"#).unwrap();
    let html = run_ok(sesame(dir.path()).args([
        "templates",
        "render",
        "applicant_rejected",
        "--locale",
        "fr",
        "--part",
        "html",
        "--data",
        data.to_str().unwrap(),
    ]));
    assert!(html.contains("lang=\"fr\""), "{html}");
    assert!(html.contains("Zoé &lt;Z&gt;"), "{html}");
    let subject = run_ok(sesame(dir.path()).args([
        "templates",
        "render",
        "admin_new_request",
        "--part",
        "subject",
    ]));
    assert!(
        subject.starts_with("New access request: Ada Lovelace"),
        "{subject}"
    );
    let unknown = run_err(sesame(dir.path()).args(["templates", "render", "nope"]));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("unknown email kind"));
}

/// `SELECT master_key_id, COUNT(*)` of the SQLite key store beside the
/// default database.
fn keys_per_master(dir: &Path) -> Vec<(i64, i64)> {
    let output = std::process::Command::new("python3")
        .args([
            "-c",
            "import sqlite3, sys; [print(m, n) for m, n in sqlite3.connect(sys.argv[1]).execute(\
             'SELECT master_key_id, COUNT(*) FROM subject_keys GROUP BY 1 ORDER BY 1')]",
        ])
        .arg(dir.join("sesame.db.keys.db"))
        .output()
        .expect("run python3");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let (master, count) = line.split_once(' ').unwrap();
            (master.parse().unwrap(), count.parse().unwrap())
        })
        .collect()
}

#[tokio::test]
async fn rotating_the_master_key_keeps_every_value_readable() {
    let dir = tempfile::tempdir().unwrap();
    let served = serve(dir.path()).await;
    let key = served.bootstrap_key().unwrap();
    let client = sesame_client::SesameClient::connect(&format!("http://{}", served.addr), &key)
        .await
        .unwrap();
    let submit = async |email: &str| {
        let mut submission = crate::harness::valid_submission();
        submission.applicant.as_mut().unwrap().email = email.into();
        client
            .access_requests()
            .submit_access_request(submission)
            .await
            .unwrap()
            .into_inner()
            .access_request
            .unwrap()
            .name
    };
    let before = [
        submit("ada@example.com").await,
        submit("bob@example.com").await,
    ];
    assert_eq!(keys_per_master(dir.path()), [(1, 2)]);

    // While the server runs.
    let output = run_ok(sesame(dir.path()).args(["keys", "rotate-master"]));
    assert!(
        output.contains("master key 2: 2 subject key(s)"),
        "{output}"
    );
    let key_file = std::fs::read_to_string(dir.path().join("sesame.db.key")).unwrap();
    assert!(key_file.contains("master 1 ") && key_file.contains("master 2 "));
    assert_eq!(keys_per_master(dir.path()), [(2, 2)]);
    // The running server wraps a new person's key with the new master.
    let after = submit("carol@example.com").await;
    assert_eq!(keys_per_master(dir.path()), [(2, 3)]);

    // A restarted server (nothing cached) reads everything.
    terminate(served).await;
    let restarted = serve(dir.path()).await;
    let client = sesame_client::SesameClient::connect(&format!("http://{}", restarted.addr), &key)
        .await
        .unwrap();
    for (name, email) in before.iter().chain([&after]).zip([
        "ada@example.com",
        "bob@example.com",
        "carol@example.com",
    ]) {
        let read = client
            .access_requests()
            .get_access_request(pb::GetAccessRequestRequest { name: name.clone() })
            .await
            .unwrap()
            .into_inner()
            .access_request
            .unwrap();
        assert_eq!(read.applicant.unwrap().email, email);
    }
    terminate(restarted).await;

    // Without a key file there is nothing to rotate: a clear error.
    let empty = tempfile::tempdir().unwrap();
    let output = run_err(sesame(empty.path()).args(["keys", "rotate-master"]));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("does not exist"), "{stderr}");
}
