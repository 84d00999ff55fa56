//! Wires the gRPC server: store, telemetry, limits and auth layers, Sesame
//! services, health and reflection, message limits, the optional metrics
//! listener, and graceful shutdown.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sesame_proto::v1::access_request_service_server::AccessRequestServiceServer;
use sesame_proto::v1::email_service_server::EmailServiceServer;
use sesame_proto::v1::event_service_server::EventServiceServer;
use sesame_proto::v1::gateway_service_server::GatewayServiceServer;
use sesame_proto::v1::privacy_service_server::PrivacyServiceServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use tracing::{info, warn};

use crate::api::{AccessRequestApi, EmailApi, EventApi, GatewayApi, PrivacyApi};
use crate::auth::{AuthLayer, RateLimiter};
use crate::config::Config;
use crate::crypto::Vault;
use crate::events::Hub;
use crate::limits::LimitLayer;
use crate::mail::run_worker;
use crate::options;
use crate::policy::PolicyHandle;
use crate::redact::redact_url;
use crate::scheduler::{Clock, run_scheduler};
use crate::store::{BOOTSTRAP_KEY_NAME, Store};
use crate::telemetry::http::serve_metrics;
use crate::telemetry::refresh::run_refresh;
use crate::telemetry::{Metrics, TelemetryLayer};

/// The health service name that answers SERVING for as long as the process
/// answers at all, database or not: for liveness probes, which must not
/// restart a replica because the database is away.
pub const LIVENESS_SERVICE: &str = "liveness";

/// Names of the Sesame services in the health service.
const SERVICES: [&str; 5] = [
    "sesame.v1.AccessRequestService",
    "sesame.v1.EventService",
    "sesame.v1.EmailService",
    "sesame.v1.GatewayService",
    "sesame.v1.PrivacyService",
];

/// The sockets a server answers on.
#[derive(Debug)]
pub struct Listeners {
    /// gRPC.
    pub grpc: TcpListener,
    /// Prometheus `/metrics`, when metrics are on.
    pub metrics: Option<TcpListener>,
}

/// Binds `metrics_addr` when set, then runs as [`run_on`] does.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let metrics = match config.metrics_addr {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("could not listen on {addr} for metrics"))?,
        ),
        None => None,
    };
    let listeners = Listeners {
        grpc: listener,
        metrics,
    };
    run_on(config, listeners, shutdown).await
}

/// Opens the store (applying migrations), creates the bootstrap admin key
/// on an empty database, and serves until `shutdown` is cancelled.
pub async fn run_on(
    config: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let store = Store::open(&options::database(&config.sections().database), true)
        .await
        .context("could not open the database")?;
    if let Some(key) = store
        .bootstrap_admin_key()
        .await
        .context("could not create the bootstrap admin key")?
    {
        print_bootstrap_key(&key.secret);
    }
    serve(config, store, listeners, shutdown).await
}

/// Opens the key store of the data subjects' keys: its own database when
/// `key_store_url` (or the SQLite default beside the database) names one,
/// else the main database.
pub async fn open_vault(config: &Config, store: &Store) -> anyhow::Result<Vault> {
    let sections = config.sections();
    let ring = options::secret_key(&sections.privacy).context("could not load the key file")?;
    let db = match options::key_store(&sections.database) {
        Some(options) => crate::store::connect(&options).await.with_context(|| {
            format!("could not open the key store {}", redact_url(&options.url))
        })?,
        None => store.connection().clone(),
    };
    Vault::open(db, ring, sections.privacy.secret_key_file)
        .await
        .context("could not open the key store")
}

/// Serves an already opened store until `shutdown` is cancelled. On
/// shutdown the health service turns NOT_SERVING first, then in-flight
/// calls get `shutdown_grace_secs` to finish; the metrics listener closes
/// with the same token.
pub async fn serve(
    config: Config,
    store: Store,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let sections = config.sections();
    // A bad mailbox, transport URL or DKIM key stops the server here, with
    // the reason; what is built is kept for the worker.
    let mail = options::mail(&sections.mail)?;
    let secret = options::secret_key(&sections.privacy)
        .context("could not load the secret key for gateway codes")?;
    let codes = options::codes(&sections.policy, secret.clone());
    let vault = open_vault(&config, &store).await?;
    let store = store
        .with_admin_emails(config.admin_emails.clone())
        .with_codes(codes)
        .with_vault(vault);
    // Requests stored in clear by a version before encryption at rest.
    tokio::spawn({
        let store = store.clone();
        async move {
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
        }
    });
    let listener = listeners.grpc;
    let metrics = Arc::new(Metrics::new(&[
        sesame_proto::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ]));
    metrics
        .db_pool_max_connections
        .set(&[], f64::from(config.database_max_connections));
    // Scrapes read memory only; the database gauges are refreshed apart,
    // and only when someone can scrape them.
    let metrics_tasks = listeners.metrics.map(|metrics_listener| {
        let refresh = tokio::spawn(run_refresh(
            store.clone(),
            metrics.clone(),
            Duration::from_secs(config.metrics_refresh_secs),
            shutdown.clone(),
        ));
        let http = tokio::spawn(serve_metrics(
            metrics_listener,
            metrics.clone(),
            shutdown.clone(),
        ));
        (refresh, http)
    });
    let local_addr = listener
        .local_addr()
        .context("listener has no local address")?;
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    let health_service = health_service
        .max_decoding_message_size(config.max_decoding_message_bytes)
        .max_encoding_message_size(config.max_encoding_message_bytes);
    set_health(&health_reporter, ServingStatus::Serving).await;
    health_reporter
        .set_service_status(LIVENESS_SERVICE, ServingStatus::Serving)
        .await;

    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(sesame_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("could not build the reflection service")?
        .max_decoding_message_size(config.max_decoding_message_bytes)
        .max_encoding_message_size(config.max_encoding_message_bytes);
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(sesame_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .context("could not build the v1alpha reflection service")?
        .max_decoding_message_size(config.max_decoding_message_bytes)
        .max_encoding_message_size(config.max_encoding_message_bytes);

    let policy = PolicyHandle::load(config.policy_file.as_deref().map(std::path::Path::new))
        .context("could not load the decision policy")?;
    let policy_task = policy.spawn_reloader(
        Duration::from_millis(config.policy_poll_interval_ms),
        shutdown.clone(),
    );
    let access_requests = AccessRequestServiceServer::new(AccessRequestApi::new(
        store.clone(),
        policy,
        options::deadlines(&sections.policy),
        config.consent_required_purposes.clone(),
    ))
    .max_decoding_message_size(config.max_decoding_message_bytes)
    .max_encoding_message_size(config.max_encoding_message_bytes);
    // Background tasks stop with this token, after the listener closed.
    let tasks = CancellationToken::new();
    let hub = Hub::start(
        store.clone(),
        options::hub(&sections.server, &sections.database),
        tasks.clone(),
    )
    .await
    .context("could not start the event hub")?;
    // A template that does not compile stops the server here, with its
    // file and line.
    let templates =
        Arc::new(options::templates(&sections.mail).context("could not load the email templates")?);
    let worker = if config.mail_worker {
        let transport = Arc::new(options::transport(&sections.mail, &mail));
        Some(tokio::spawn(run_worker(
            store.clone(),
            templates.clone(),
            transport,
            options::worker(&sections.mail, &mail, secret),
            metrics.clone(),
            tasks.clone(),
        )))
    } else {
        None
    };
    let scheduler = config.scheduler.then(|| {
        tokio::spawn(run_scheduler(
            store.clone(),
            options::scheduler(&sections.scheduler, &sections.policy, &sections.privacy),
            Clock::System,
            tasks.clone(),
        ))
    });
    let emails = EmailServiceServer::new(EmailApi::new(store.clone(), templates))
        .max_decoding_message_size(config.max_decoding_message_bytes)
        .max_encoding_message_size(config.max_encoding_message_bytes);
    let privacy = PrivacyServiceServer::new(PrivacyApi::new(store.clone()))
        .max_decoding_message_size(config.max_decoding_message_bytes)
        .max_encoding_message_size(config.max_encoding_message_bytes);
    let gateway = GatewayServiceServer::new(GatewayApi::new(
        store.clone(),
        config.gateway_failures_per_minute,
    ))
    .max_decoding_message_size(config.max_decoding_message_bytes)
    .max_encoding_message_size(config.max_encoding_message_bytes);
    let events = EventServiceServer::new(EventApi::new(
        store.clone(),
        hub,
        options::watch(&sections.server),
        metrics.clone(),
        shutdown.clone(),
    ))
    .max_decoding_message_size(config.max_decoding_message_bytes)
    .max_encoding_message_size(config.max_encoding_message_bytes);

    let health_task = tokio::spawn(watch_database(
        store.clone(),
        health_reporter.clone(),
        Duration::from_secs(config.health_check_interval_secs),
        shutdown.clone(),
    ));

    let graceful = {
        let shutdown = shutdown.clone();
        let reporter = health_reporter.clone();
        async move {
            shutdown.cancelled().await;
            info!("shutting down: health is NOT_SERVING, finishing in-flight calls");
            set_health(&reporter, ServingStatus::NotServing).await;
        }
    };
    let mut builder = Server::builder();
    if let Some(tls) = options::tls(sections.tls.as_ref())? {
        builder = builder
            .tls_config(tls)
            .context("the TLS certificate or key does not load")?;
        info!(mutual = config.tls_client_ca_file.is_some(), "serving TLS");
    }
    let router = builder
        // Outermost: every call gets its request id, span and metrics,
        // including those the limits and the auth layer refuse.
        .layer(TelemetryLayer::new(metrics.clone()))
        // Before authentication: refusing a flood costs no database read.
        // It also applies `request_timeout_secs` (answering
        // DEADLINE_EXCEEDED, where tonic's own timeout answers CANCELLED).
        .layer(LimitLayer::new(
            options::limits(&sections.limits),
            metrics.clone(),
        ))
        .layer(AuthLayer::new(
            store,
            RateLimiter::new(config.rate_limit_per_key, config.rate_limit_burst),
        ))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(access_requests)
        .add_service(events)
        .add_service(emails)
        .add_service(privacy)
        .add_service(gateway);
    info!(addr = %local_addr, "sesame listening");
    // Request/response traffic must not wait on Nagle's algorithm; keepalive
    // notices dead peers (and their watch streams) at the TCP level.
    let incoming = TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .with_keepalive(Some(Duration::from_secs(60)));
    let serving = router.serve_with_incoming_shutdown(incoming, graceful);

    let grace = Duration::from_secs(config.shutdown_grace_secs);
    let deadline = async {
        shutdown.cancelled().await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        result = serving => result.context("the gRPC server failed")?,
        () = deadline => warn!(grace_secs = grace.as_secs(), "in-flight calls did not finish in time; stopping anyway"),
    }
    health_task.abort();
    if let Some(task) = policy_task {
        task.abort();
    }
    tasks.cancel();
    if let Some(worker) = worker {
        // The worker finishes the email in hand, so its outcome is recorded.
        let _ = worker.await;
    }
    if let Some((refresh, http)) = metrics_tasks {
        let _ = refresh.await;
        let _ = http.await;
    }
    if let Some(scheduler) = scheduler {
        // A pass in progress finishes, so no step is left half-taken.
        let _ = scheduler.await;
    }
    info!("sesame stopped");
    Ok(())
}

async fn set_health(reporter: &HealthReporter, status: ServingStatus) {
    reporter.set_service_status("", status).await;
    for service in SERVICES {
        reporter.set_service_status(service, status).await;
    }
}

/// Reports NOT_SERVING while the database does not answer.
async fn watch_database(
    store: Store,
    reporter: HealthReporter,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut healthy = true;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
        let reachable = store.ping().await.is_ok();
        if reachable != healthy && !shutdown.is_cancelled() {
            healthy = reachable;
            if healthy {
                info!("database reachable again; serving");
                set_health(&reporter, ServingStatus::Serving).await;
            } else {
                warn!("database unreachable; health is NOT_SERVING");
                set_health(&reporter, ServingStatus::NotServing).await;
            }
        }
    }
}

fn print_bootstrap_key(secret: &str) {
    println!("================================================================");
    println!("sesame: created the first admin API key (name: {BOOTSTRAP_KEY_NAME}).");
    println!("It is shown only this once; store it now:");
    println!();
    println!("    {secret}");
    println!();
    println!("Send it as `authorization: Bearer <key>` metadata.");
    println!("================================================================");
}
