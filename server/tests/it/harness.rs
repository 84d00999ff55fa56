//! Starts a real Sesame server in-process on 127.0.0.1:0 over SQLite or a
//! fresh PostgreSQL database, with one API key per role, and connects
//! generated tonic clients to it.

use std::net::SocketAddr;
use std::time::Duration;

use sea_orm::{ConnectionTrait, Statement};
use sesame_proto::v1 as pb;
use sesame_proto::v1::access_request_service_client::AccessRequestServiceClient;
use sesame_proto::v1::email_service_client::EmailServiceClient;
use sesame_proto::v1::event_service_client::EventServiceClient;
use sesame_server::auth::Role;
use sesame_server::store::Store;
use sesame_server::{Config, options, server};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_types::StatusExt;

/// Runs a test function once per database backend.
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(crate::harness::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(crate::harness::Backend::Postgres).await
                }
            )*
        }
    };
}
pub(crate) use both_backends;

/// Which database the server runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Secrets of the keys created for every test server.
#[derive(Clone, Debug)]
pub struct Keys {
    pub admin: String,
    pub auditor: String,
    /// Submitter `alice`.
    pub alice: String,
    /// Submitter `bob`.
    pub bob: String,
}

/// A new secret key file in `dir`, as an operator would create one.
pub fn test_secret_key(dir: &std::path::Path) -> String {
    let path = dir.join("secret.key");
    std::fs::write(&path, "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA=\n").expect("write the key");
    path.display().to_string()
}

/// A running server and what tests need to talk to it.
pub struct TestServer {
    pub addr: SocketAddr,
    pub store: Store,
    pub keys: Keys,
    /// The configuration the server runs with.
    pub config: Config,
    /// Where `/metrics` is served, when `config.metrics_addr` was set (the
    /// harness binds it, so port 0 works).
    pub metrics_addr: Option<SocketAddr>,
    /// Where the console is served apart, when `config.console_listen_addr`
    /// was set (bound by the harness too).
    pub console_addr: Option<SocketAddr>,
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
    _dir: tempfile::TempDir,
}

/// The generated clients with a bearer key on every call.
pub use sesame_client::{
    AccessRequestClient as Client, Bearer, EmailClient, EventClient, PrivacyClient,
};

impl TestServer {
    /// Starts a server over a fresh database of `backend`.
    pub async fn start(backend: Backend) -> TestServer {
        Self::start_with(backend, |_| {}).await
    }

    /// Starts a server over a fresh database, with `tweak` applied to its
    /// configuration.
    pub async fn start_with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let database_url = match backend {
            Backend::Sqlite => format!("sqlite://{}", dir.path().join("sesame.db").display()),
            Backend::Postgres => crate::postgres::fresh_database().await,
        };
        let mut config = Config {
            database_url,
            shutdown_grace_secs: 5,
            // Mail tests turn the worker on; elsewhere its events would
            // interleave with the ones a test counts.
            mail_worker: false,
            mail_transport: format!("file://{}", dir.path().join("mail-out").display()),
            // Shared by replicas of this server: they get the same config.
            secret_key_file: Some(test_secret_key(dir.path())),
            ..Config::default()
        };
        tweak(&mut config);
        let store = open_store(&config, true).await;
        let create = async |name: &str, role: Role| {
            store
                .create_api_key(name, role)
                .await
                .expect("create key")
                .1
                .secret
        };
        let keys = Keys {
            admin: create("admin", Role::Admin).await,
            auditor: create("auditor", Role::Auditor).await,
            alice: create("alice", Role::Submitter).await,
            bob: create("bob", Role::Submitter).await,
        };
        Self::launch(config, store, keys, dir).await
    }

    async fn launch(
        config: Config,
        store: Store,
        keys: Keys,
        dir: tempfile::TempDir,
    ) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let metrics = match config.metrics_addr {
            Some(metrics_addr) => Some(
                tokio::net::TcpListener::bind(metrics_addr)
                    .await
                    .expect("bind metrics"),
            ),
            None => None,
        };
        let metrics_addr = metrics
            .as_ref()
            .map(|listener| listener.local_addr().expect("metrics local addr"));
        let console = match config.console_listen_addr {
            Some(console_addr) => Some(
                tokio::net::TcpListener::bind(console_addr)
                    .await
                    .expect("bind console"),
            ),
            None => None,
        };
        let console_addr = console
            .as_ref()
            .map(|listener| listener.local_addr().expect("console local addr"));
        let listeners = server::Listeners {
            grpc: listener,
            metrics,
            console,
        };
        let shutdown = CancellationToken::new();
        // The server runs on this store (a clone shares its caches), so a
        // key revoked through `store` is refused by this server at once.
        let task = tokio::spawn(server::serve(
            config.clone(),
            store.clone(),
            listeners,
            shutdown.clone(),
        ));
        TestServer {
            addr,
            store,
            keys,
            config,
            metrics_addr,
            console_addr,
            shutdown,
            task,
            _dir: dir,
        }
    }

    /// A store on this server's database and key store, as another
    /// replica's would be.
    pub async fn other_store(&self) -> Store {
        open_store(&self.config, false).await
    }

    /// A server on `database_url` (a restored backup, say) with this
    /// server's key file, key store and API keys.
    pub async fn on_database(&self, database_url: String) -> TestServer {
        let mut config = self.config.clone();
        config.key_store_url = Some(
            options::key_store(&self.config.sections().database)
                .map_or_else(|| self.config.database_url.clone(), |options| options.url),
        );
        config.database_url = database_url;
        let store = open_store(&config, true).await;
        let dir = tempfile::tempdir().expect("temp dir");
        Self::launch(config, store, self.keys.clone(), dir).await
    }

    /// A second server on the same database, as another replica would be.
    pub async fn replica(&self) -> TestServer {
        let store = open_store(&self.config, true).await;
        let dir = tempfile::tempdir().expect("temp dir");
        Self::launch(self.config.clone(), store, self.keys.clone(), dir).await
    }

    /// An event client whose HTTP/2 windows are small (16 KiB), so that a
    /// client that stops reading soon pushes back on the server. (Not
    /// larger: h2 0.4.20 clients end a connection with GOAWAY
    /// ENHANCE_YOUR_CALM when too many small DATA frames wait unread, which
    /// a stalled watch stream of ~170-byte events reaches at about 50 KiB.)
    pub async fn events_small_window(&self, key: &str) -> EventClient {
        self.events_with_window(key, 16_384).await
    }

    /// An event client whose HTTP/2 windows (stream and connection) are
    /// `bytes`.
    pub async fn events_with_window(&self, key: &str, bytes: u32) -> EventClient {
        let channel = Channel::from_shared(format!("http://{}", self.addr))
            .expect("valid uri")
            .initial_stream_window_size(Some(bytes))
            .initial_connection_window_size(Some(bytes))
            .connect()
            .await
            .expect("connect to the test server");
        let bearer = Bearer::new(key).expect("ascii key");
        EventServiceClient::with_interceptor(channel, bearer)
    }

    /// An email client calling with `key`.
    pub async fn emails(&self, key: &str) -> EmailClient {
        let bearer = Bearer::new(key).expect("ascii key");
        EmailServiceClient::with_interceptor(self.channel().await, bearer)
    }

    /// A privacy client calling with `key`.
    pub async fn privacy(&self, key: &str) -> PrivacyClient {
        let bearer = Bearer::new(key).expect("ascii key");
        sesame_proto::v1::privacy_service_client::PrivacyServiceClient::with_interceptor(
            self.channel().await,
            bearer,
        )
    }

    /// An event client calling with `key`.
    pub async fn events(&self, key: &str) -> EventClient {
        let bearer = Bearer::new(key).expect("ascii key");
        EventServiceClient::with_interceptor(self.channel().await, bearer)
    }

    /// A channel to the server.
    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .expect("valid uri")
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .expect("connect to the test server")
    }

    /// A client calling with `key`.
    pub async fn client(&self, key: &str) -> Client {
        let bearer = Bearer::new(key).expect("ascii key");
        AccessRequestServiceClient::with_interceptor(self.channel().await, bearer)
    }

    /// A client that sends no key.
    pub async fn anonymous(&self) -> Client {
        AccessRequestServiceClient::with_interceptor(self.channel().await, Bearer::none())
    }

    /// Rows in `table`, read straight from the database.
    pub async fn count(&self, table: &str) -> i64 {
        let db = self.store.connection();
        let row = db
            .query_one_raw(Statement::from_string(
                db.get_database_backend(),
                format!("SELECT COUNT(*) AS n FROM {table}"),
            ))
            .await
            .expect("count query")
            .expect("one row");
        row.try_get("", "n").expect("count column")
    }

    /// Asks the server to shut down without waiting.
    pub fn begin_shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Drops open streams (in-flight calls that would hold up a graceful
    /// shutdown), then stops the server.
    pub async fn stop_after_dropping<T>(self, streams: Vec<T>) {
        drop(streams);
        self.stop().await;
    }

    /// Stops the server and waits for it to finish.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.task
            .await
            .expect("server task panicked")
            .expect("server failed");
    }
}

/// The ErrorInfo reason of a status (empty when there is none).
pub fn reason(status: &Status) -> String {
    let details = status.get_error_details();
    let info = details
        .error_info()
        .expect("every Sesame error has an ErrorInfo");
    assert_eq!(info.domain, "sesame.dev");
    info.reason.clone()
}

/// The fields listed in the BadRequest of a status.
pub fn bad_fields(status: &Status) -> Vec<String> {
    status
        .get_error_details()
        .bad_request()
        .map(|bad| {
            bad.field_violations
                .iter()
                .map(|v| v.field.clone())
                .collect()
        })
        .unwrap_or_default()
}

/// Asserts the code and ErrorInfo reason of a failed call.
#[track_caller]
pub fn assert_error<T: std::fmt::Debug>(
    result: Result<T, Status>,
    code: Code,
    expected_reason: &str,
) -> Status {
    let status = result.expect_err("the call should fail");
    assert_eq!(status.code(), code, "unexpected status: {status:?}");
    assert_eq!(
        reason(&status),
        expected_reason,
        "unexpected reason: {status:?}"
    );
    status
}

/// A submission that passes validation.
pub fn valid_submission() -> pb::SubmitAccessRequestRequest {
    pb::SubmitAccessRequestRequest {
        applicant: Some(pb::Applicant {
            email: "ada@example.com".into(),
            full_name: "Ada Lovelace".into(),
            organization: "Analytical Engines".into(),
            phone: "+44 20 7946 0000".into(),
        }),
        user_type: pb::UserType::Partner.into(),
        locale: "fr".into(),
        resource: "vpn-paris".into(),
        justification: "Maintenance of the difference engine.".into(),
        consent: Some(pb::Consent {
            version: "2026-01".into(),
            purposes: vec!["access_management".into()],
            grant_time: None,
        }),
        request_id: String::new(),
    }
}

/// Opens the store of `config` with its key store, as the server does.
pub async fn open_store(config: &Config, migrate: bool) -> Store {
    let store = Store::open(&options::database(&config.sections().database), migrate)
        .await
        .expect("open store");
    let vault = server::open_vault(config, &store)
        .await
        .expect("open key store");
    store.with_vault(vault)
}
