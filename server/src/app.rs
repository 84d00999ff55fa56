//! Builds the application once, for `serve`, `worker` and the tests: the
//! store with its key store, gateway-code keys and administrators; the
//! metrics; the email templates and transport; the background tasks (mail
//! worker, deadline scheduler, metrics listener and refresh); and the
//! routes the server answers. [`App::routes`] is the one place where a
//! route is added: the Sesame gRPC services, health and reflection (every
//! one also reachable over gRPC-Web, see [`crate::grpc_web`]); HTTP
//! routes (webhooks) join them there. [`App::serve`] adds the console's
//! files as the fallback ([`crate::console`]) on the listener that serves
//! the console. Its tower layers apply their gRPC rules to gRPC requests
//! only and let any other request through to its route, which brings its
//! own rules.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sesame_proto::v1::access_request_service_server::AccessRequestServiceServer;
use sesame_proto::v1::caller_service_server::CallerServiceServer;
use sesame_proto::v1::email_service_server::EmailServiceServer;
use sesame_proto::v1::event_service_server::EventServiceServer;
use sesame_proto::v1::gateway_service_server::GatewayServiceServer;
use sesame_proto::v1::privacy_service_server::PrivacyServiceServer;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use tracing::{info, warn};

use crate::api::{AccessRequestApi, CallerApi, EmailApi, EventApi, GatewayApi, PrivacyApi};
use crate::auth::{AuthLayer, RateLimiter};
use crate::config::{Config, Sections};
use crate::console::ConsoleService;
use crate::crypto::{KeyRing, Vault};
use crate::events::Hub;
use crate::grpc_web::GrpcWebLayer;
use crate::limits::{DatabaseState, LimitLayer};
use crate::mail::{Templates, run_worker};
use crate::options;
use crate::policy::PolicyHandle;
use crate::redact::redact_url;
use crate::scheduler::{Clock, run_scheduler};
use crate::store::{DatabaseOptions, Store};
use crate::telemetry::http::serve_metrics;
use crate::telemetry::refresh::run_refresh;
use crate::telemetry::{Metrics, TelemetryLayer};

/// The health service name that answers SERVING for as long as the process
/// answers at all, database or not: for liveness probes, which must not
/// restart a replica because the database is away.
pub const LIVENESS_SERVICE: &str = "liveness";

/// Names of the Sesame services in the health service.
const SERVICES: [&str; 6] = [
    "sesame.v1.AccessRequestService",
    "sesame.v1.CallerService",
    "sesame.v1.EventService",
    "sesame.v1.EmailService",
    "sesame.v1.GatewayService",
    "sesame.v1.PrivacyService",
];

/// What the config builds before the database is opened: a bad mailbox,
/// transport URL, DKIM key, key file or template stops the start here,
/// with the reason, and nothing is built twice.
pub struct Prepared {
    config: Config,
    sections: Sections,
    mail: options::Mail,
    secret: KeyRing,
    templates: Templates,
}

impl Prepared {
    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Its typed sections.
    pub fn sections(&self) -> &Sections {
        &self.sections
    }
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared").finish_non_exhaustive()
    }
}

/// The parts every process of Sesame shares, built once from the config.
#[derive(Clone)]
pub struct App {
    config: Arc<Config>,
    sections: Arc<Sections>,
    mail: Arc<options::Mail>,
    /// The key file's ring: seals gateway codes, and the worker opens them.
    secret: KeyRing,
    /// The store, sealing with the key store, issuing gateway codes and
    /// mailing the configured administrators.
    pub store: Store,
    pub metrics: Arc<Metrics>,
    /// Compiled at build: a template that does not compile stops the
    /// start, with its file and line.
    pub templates: Arc<Templates>,
    /// Whether the database answers, as [`App::watch_database`] finds it.
    database: DatabaseState,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").finish_non_exhaustive()
    }
}

/// The background tasks a process started, joined at its end.
#[derive(Debug, Default)]
pub struct Background {
    tasks: Vec<(&'static str, JoinHandle<()>)>,
}

impl Background {
    fn push(&mut self, name: &'static str, task: JoinHandle<()>) {
        self.tasks.push((name, task));
    }

    /// Waits for each task, in the order they started: the mail worker
    /// finishes the email in hand (its outcome recorded), the scheduler its
    /// pass (no step left half-taken).
    pub async fn join(self) {
        for (name, task) in self.tasks {
            if let Err(error) = task.await {
                warn!(task = name, error = %error, "background task ended abnormally");
            }
        }
    }
}

/// Opens the key store of the data subjects' keys: its own database when
/// `key_store_url` (or the SQLite default beside the database) names one,
/// else the main database.
pub async fn open_vault(config: &Config, store: &Store) -> anyhow::Result<Vault> {
    let sections = config.sections();
    let ring = options::secret_key(&sections.privacy).context("could not load the key file")?;
    open_vault_with(&sections, ring, store).await
}

/// [`open_vault`] with the key file's ring already loaded.
async fn open_vault_with(
    sections: &Sections,
    ring: KeyRing,
    store: &Store,
) -> anyhow::Result<Vault> {
    let db = match options::key_store(&sections.database) {
        Some(options) => crate::store::connect(&options).await.with_context(|| {
            format!("could not open the key store {}", redact_url(&options.url))
        })?,
        None => store.connection().clone(),
    };
    Vault::open(db, ring, sections.privacy.secret_key_file.clone())
        .await
        .context("could not open the key store")
}

impl App {
    /// Checks and builds what needs no database: the mail sender,
    /// transport URL and DKIM signer, the key file, the templates.
    pub fn prepare(config: Config) -> anyhow::Result<Prepared> {
        let sections = config.sections();
        let mail = options::mail(&sections.mail)?;
        let secret = options::secret_key(&sections.privacy)
            .context("could not load the secret key for gateway codes")?;
        // A template that does not compile stops the start here, with its
        // file and line.
        let templates =
            options::templates(&sections.mail).context("could not load the email templates")?;
        Ok(Prepared {
            config,
            sections,
            mail,
            secret,
            templates,
        })
    }

    /// Builds the application over an opened `store`: key store, code
    /// keys, administrators, metrics.
    pub async fn build(prepared: Prepared, store: Store) -> anyhow::Result<App> {
        let Prepared {
            config,
            sections,
            mail,
            secret,
            templates,
        } = prepared;
        let codes = options::codes(&sections.policy, secret.clone());
        let vault = open_vault_with(&sections, secret.clone(), &store).await?;
        let store = store
            .with_admin_emails(config.admin_emails.clone())
            .with_self_approval(sections.policy.allow_self_approval)
            .with_codes(codes)
            .with_vault(vault);
        let metrics = Arc::new(Metrics::new(&[
            sesame_proto::FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
        ]));
        metrics
            .db_pool_max_connections
            .set(&[], f64::from(config.database_max_connections));
        Ok(App {
            config: Arc::new(config),
            sections: Arc::new(sections),
            mail: Arc::new(mail),
            secret,
            store,
            metrics,
            templates: Arc::new(templates),
            database: DatabaseState::default(),
        })
    }

    /// The configuration the application was built from.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Seals, in the background, requests stored in clear by a version
    /// before encryption at rest.
    pub fn seal_legacy_requests(&self) {
        let store = self.store.clone();
        tokio::spawn(async move {
            match store.seal_legacy_requests().await {
                Ok(0) => {}
                Ok(sealed) => info!(
                    requests = sealed,
                    "sealed requests stored before encryption"
                ),
                Err(error) => {
                    warn!(error = %error, "could not seal older requests; the next start retries")
                }
            }
        });
    }

    /// Starts the background tasks the config turns on: the metrics
    /// listener and the refresh of its database gauges (until `shutdown`),
    /// the mail worker and the deadline scheduler (until `tasks`).
    pub fn start_background(
        &self,
        metrics_listener: Option<TcpListener>,
        mail_worker: bool,
        shutdown: &CancellationToken,
        tasks: &CancellationToken,
    ) -> anyhow::Result<Background> {
        let mut background = Background::default();
        if mail_worker {
            let mail = &self.sections.mail;
            let transports = Arc::new(
                options::transports(mail, &self.mail)
                    .context("could not set up the mail transports")?,
            );
            let worker = run_worker(
                self.store.clone(),
                self.templates.clone(),
                transports,
                options::worker(
                    mail,
                    &self.sections.database,
                    &self.mail,
                    self.secret.clone(),
                ),
                self.metrics.clone(),
                tasks.clone(),
            );
            background.push("mail worker", tokio::spawn(worker));
        }
        // Scrapes read memory only; the database gauges are refreshed
        // apart, and only when someone can scrape them.
        if let Some(listener) = metrics_listener {
            let refresh = run_refresh(
                self.store.clone(),
                self.metrics.clone(),
                Duration::from_secs(self.config.metrics_refresh_secs),
                shutdown.clone(),
            );
            background.push("metrics refresh", tokio::spawn(refresh));
            let http = serve_metrics(listener, self.metrics.clone(), shutdown.clone());
            background.push("metrics listener", tokio::spawn(http));
        }
        if self.config.scheduler {
            let scheduler = run_scheduler(
                self.store.clone(),
                options::scheduler(
                    &self.sections.scheduler,
                    &self.sections.policy,
                    &self.sections.privacy,
                ),
                Clock::System,
                tasks.clone(),
            );
            background.push("scheduler", tokio::spawn(scheduler));
        }
        Ok(background)
    }

    /// Every route the server answers: the Sesame services (the event hub
    /// started with `tasks`), health (reported through the returned
    /// reporter) and reflection. Watch streams end with `shutdown`.
    pub async fn routes(
        &self,
        policy: PolicyHandle,
        shutdown: &CancellationToken,
        tasks: &CancellationToken,
    ) -> anyhow::Result<(Routes, HealthReporter)> {
        let config = &self.config;
        let (decoding, encoding) = (
            config.max_decoding_message_bytes,
            config.max_encoding_message_bytes,
        );
        let (health_reporter, health_service) = tonic_health::server::health_reporter();
        set_health(&health_reporter, ServingStatus::Serving).await;
        health_reporter
            .set_service_status(LIVENESS_SERVICE, ServingStatus::Serving)
            .await;
        let sections = &self.sections;
        let hub = Hub::start(
            self.store.clone(),
            options::hub(&sections.server, &sections.database),
            tasks.clone(),
        )
        .await
        .context("could not start the event hub")?;
        let store = &self.store;
        let access_requests = AccessRequestApi::new(
            store.clone(),
            policy,
            options::deadlines(&sections.policy),
            config.consent_required_purposes.clone(),
        );
        let events = EventApi::new(
            store.clone(),
            hub,
            options::watch(&sections.server),
            self.metrics.clone(),
            shutdown.clone(),
        );
        let gateway = GatewayApi::new(store.clone(), config.gateway_failures_per_minute);
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(sesame_proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        };
        let reflection_v1 = reflection()
            .build_v1()
            .context("could not build the reflection service")?;
        let reflection_v1alpha = reflection()
            .build_v1alpha()
            .context("could not build the v1alpha reflection service")?;
        let routes = Routes::new(
            health_service
                .max_decoding_message_size(decoding)
                .max_encoding_message_size(encoding),
        )
        .add_service(
            reflection_v1
                .max_decoding_message_size(decoding)
                .max_encoding_message_size(encoding),
        )
        .add_service(
            reflection_v1alpha
                .max_decoding_message_size(decoding)
                .max_encoding_message_size(encoding),
        )
        .add_service(
            AccessRequestServiceServer::new(access_requests)
                .max_decoding_message_size(decoding)
                .max_encoding_message_size(encoding),
        )
        .add_service(
            EventServiceServer::new(events)
                .max_decoding_message_size(decoding)
                .max_encoding_message_size(encoding),
        )
        .add_service(
            EmailServiceServer::new(EmailApi::new(store.clone(), self.templates.clone()))
                .max_decoding_message_size(decoding)
                .max_encoding_message_size(encoding),
        )
        .add_service(
            PrivacyServiceServer::new(PrivacyApi::new(store.clone()))
                .max_decoding_message_size(decoding)
                .max_encoding_message_size(encoding),
        )
        .add_service(
            GatewayServiceServer::new(gateway)
                .max_decoding_message_size(decoding)
                .max_encoding_message_size(encoding),
        )
        .add_service(
            CallerServiceServer::new(CallerApi::new(sections.policy.review_sla))
                .max_decoding_message_size(decoding)
                .max_encoding_message_size(encoding),
        );
        Ok((routes, health_reporter))
    }

    /// Serves `routes` on `listener` (and on `console` when given) behind
    /// the gRPC-Web, telemetry, limits and auth layers (and TLS when
    /// configured) until `shutdown`; then in-flight calls get
    /// `shutdown_grace_secs` to finish, and health turns NOT_SERVING first.
    /// The console's files and gRPC-Web are served on `console` when given,
    /// else on `listener`, and nowhere when `console_enabled` is false.
    pub async fn serve(
        &self,
        routes: Routes,
        health: HealthReporter,
        listener: TcpListener,
        console: Option<TcpListener>,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<()> {
        let config = &self.config;
        let console_on_main = config.console_enabled && console.is_none();
        let graceful = {
            let shutdown = shutdown.clone();
            async move {
                shutdown.cancelled().await;
                info!("shutting down: health is NOT_SERVING, finishing in-flight calls");
                set_health(&health, ServingStatus::NotServing).await;
            }
        };
        let main = self.serve_on(routes.clone(), console_on_main, false, listener, graceful);
        let second = async {
            match console {
                Some(console) => {
                    let stop = shutdown.clone().cancelled_owned();
                    self.serve_on(routes, config.console_enabled, true, console, stop)
                        .await
                }
                None => Ok(()),
            }
        };
        let serving = async { tokio::try_join!(main, second).map(|_| ()) };
        let grace = Duration::from_secs(config.shutdown_grace_secs);
        let deadline = async {
            shutdown.cancelled().await;
            tokio::time::sleep(grace).await;
        };
        tokio::select! {
            result = serving => result?,
            () = deadline => warn!(grace_secs = grace.as_secs(), "in-flight calls did not finish in time; stopping anyway"),
        }
        Ok(())
    }

    /// Serves `routes` on one listener until `stop`, with the console's
    /// files as the fallback and gRPC-Web when `console` is true (else
    /// unknown paths answer 404 and gRPC-Web calls UNIMPLEMENTED).
    /// `console_only` marks the listener of `console_listen_addr`.
    async fn serve_on(
        &self,
        routes: Routes,
        console: bool,
        console_only: bool,
        listener: TcpListener,
        stop: impl Future<Output = ()>,
    ) -> anyhow::Result<()> {
        let config = &self.config;
        let local_addr = listener
            .local_addr()
            .context("listener has no local address")?;
        // HTTP/1.1 for browsers (files, gRPC-Web); gRPC stays on HTTP/2.
        let mut builder = Server::builder().accept_http1(true);
        if let Some(tls) = options::tls(self.sections.tls.as_ref())? {
            builder = builder
                .tls_config(tls)
                .context("the TLS certificate or key does not load")?;
            info!(mutual = config.tls_client_ca_file.is_some(), addr = %local_addr, "serving TLS");
        }
        let mut router = routes.into_axum_router();
        if !console_only {
            // The providers post their delivery reports to the service's
            // own address, signed; the console's listener does not take them.
            router = router.merge(crate::webhooks::router(
                self.store.clone(),
                self.metrics.clone(),
                self.mail.webhooks.clone(),
            ));
        }
        let routes = Routes::from(router.fallback_service(ConsoleService::new(console)));
        let router = builder
            // Outermost: a gRPC-Web call becomes a native one before any
            // other layer sees it, so it gets the same treatment.
            .layer(GrpcWebLayer::new(console))
            // Every call gets its request id, span and metrics, including
            // those the limits and the auth layer refuse.
            .layer(TelemetryLayer::new(self.metrics.clone()))
            // Before authentication: refusing a flood costs no database
            // read. It also applies `request_timeout_secs` (answering
            // DEADLINE_EXCEEDED, where tonic's own timeout answers
            // CANCELLED).
            .layer(LimitLayer::new(
                options::limits(&self.sections.limits),
                self.database.clone(),
                self.metrics.clone(),
            ))
            .layer(AuthLayer::new(
                self.store.clone(),
                RateLimiter::new(config.rate_limit_per_key, config.rate_limit_burst),
            ))
            .add_routes(routes);
        if console_only {
            info!(addr = %local_addr, "console listening");
        } else {
            info!(addr = %local_addr, console, "sesame listening");
        }
        // Request/response traffic must not wait on Nagle's algorithm;
        // keepalive notices dead peers (and their watch streams) at the
        // TCP level.
        let incoming = TcpIncoming::from(listener)
            .with_nodelay(Some(true))
            .with_keepalive(Some(Duration::from_secs(60)));
        router
            .serve_with_incoming_shutdown(incoming, stop)
            .await
            .context("the gRPC server failed")
    }

    /// Probes the database every `health_check_interval_secs` (every
    /// [`RECOVERY_PROBE_INTERVAL`] while it does not answer), until
    /// `shutdown`: while it does not, `health` reports NOT_SERVING and the
    /// limits layer answers unary calls UNAVAILABLE at once.
    pub fn watch_database(
        &self,
        health: HealthReporter,
        shutdown: &CancellationToken,
    ) -> JoinHandle<()> {
        tokio::spawn(watch_database(
            options::database(&self.sections.database),
            health,
            self.database.clone(),
            Duration::from_secs(self.config.health_check_interval_secs),
            shutdown.clone(),
        ))
    }
}

/// How long a probe may go unanswered; two in a row that do make the
/// database unreachable (one alone may be a busy machine).
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// How long a probe waits for a connection: a database that refuses them
/// fails the probe well within [`PROBE_TIMEOUT`].
const PROBE_CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// How often the database is probed while it does not answer, or after a
/// probe that went unanswered.
pub const RECOVERY_PROBE_INTERVAL: Duration = Duration::from_millis(250);

async fn set_health(reporter: &HealthReporter, status: ServingStatus) {
    reporter.set_service_status("", status).await;
    for service in SERVICES {
        reporter.set_service_status(service, status).await;
    }
}

/// Probes the database and records what it finds in `state` and on
/// `reporter`, until `shutdown`.
async fn watch_database(
    options: DatabaseOptions,
    reporter: HealthReporter,
    state: DatabaseState,
    interval: Duration,
    shutdown: CancellationToken,
) {
    // A connection of its own: a probe never queues behind calls for the
    // pool, so a busy pool is not taken for a lost database.
    let options = DatabaseOptions {
        max_connections: 1,
        acquire_timeout: PROBE_CONNECT_TIMEOUT,
        ..options
    };
    let mut connection = None;
    let mut unanswered = 0;
    loop {
        let pause = if state.is_reachable() && unanswered == 0 {
            interval
        } else {
            RECOVERY_PROBE_INTERVAL
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(pause) => {}
        }
        let probed =
            match tokio::time::timeout(PROBE_TIMEOUT, ping(&options, &mut connection)).await {
                Ok(pinged) => {
                    unanswered = 0;
                    pinged
                }
                Err(_) => {
                    unanswered += 1;
                    if unanswered < 2 {
                        continue;
                    }
                    Err(format!(
                        "{unanswered} probes unanswered within {} ms each",
                        PROBE_TIMEOUT.as_millis()
                    ))
                }
            };
        if shutdown.is_cancelled() || !state.set_reachable(probed.is_ok()) {
            continue;
        }
        match probed {
            Ok(()) => {
                info!("database reachable again; serving");
                set_health(&reporter, ServingStatus::Serving).await;
            }
            Err(error) => {
                warn!(error = %error, "database unreachable; health is NOT_SERVING and calls answer UNAVAILABLE");
                set_health(&reporter, ServingStatus::NotServing).await;
            }
        }
    }
}

/// Pings the database on `connection`, opened first when there is none.
async fn ping(
    options: &DatabaseOptions,
    connection: &mut Option<sea_orm::DatabaseConnection>,
) -> Result<(), String> {
    let open = match connection {
        Some(open) => open,
        None => connection.insert(crate::store::connect(options).await.map_err(|error| {
            // The database's own words, not only "unavailable".
            std::error::Error::source(&error).map_or_else(|| error.to_string(), ToString::to_string)
        })?),
    };
    open.ping().await.map_err(|error| error.to_string())
}
