//! The server's life: open the store (migrations, the bootstrap admin
//! key), build the application ([`crate::app`]), serve until shutdown, then
//! stop the background tasks in order.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::app::{App, Prepared};
use crate::config::Config;
use crate::options;
use crate::policy::PolicyHandle;
use crate::store::{BOOTSTRAP_KEY_NAME, Store};

pub use crate::app::{LIVENESS_SERVICE, open_vault};

/// The sockets a server answers on.
#[derive(Debug)]
pub struct Listeners {
    /// gRPC.
    pub grpc: TcpListener,
    /// Prometheus `/metrics`, when metrics are on.
    pub metrics: Option<TcpListener>,
    /// The console and gRPC-Web, when `console_listen_addr` puts them on
    /// an address of their own (else they share `grpc`).
    pub console: Option<TcpListener>,
}

/// Binds `metrics_addr` and `console_listen_addr` when set, then runs as
/// [`run_on`] does.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let metrics = bind(config.metrics_addr, "metrics").await?;
    let console = bind(config.console_listen_addr, "the console").await?;
    let listeners = Listeners {
        grpc: listener,
        metrics,
        console,
    };
    run_on(config, listeners, shutdown).await
}

/// A listener on `addr` when it is set, for `what` (named in the error).
async fn bind(addr: Option<SocketAddr>, what: &str) -> anyhow::Result<Option<TcpListener>> {
    let Some(addr) = addr else {
        return Ok(None);
    };
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("could not listen on {addr} for {what}"))?;
    Ok(Some(listener))
}

/// Opens the store (applying migrations), creates the bootstrap admin key
/// on an empty database, and serves until `shutdown` is cancelled.
pub async fn run_on(
    config: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    // The config's checks first: a bad one stops the start before the
    // database is touched.
    let prepared = App::prepare(config)?;
    let store = Store::open(&options::database(&prepared.sections().database), true)
        .await
        .context("could not open the database")?;
    if let Some(key) = store
        .bootstrap_admin_key()
        .await
        .context("could not create the bootstrap admin key")?
    {
        print_bootstrap_key(&key.secret);
    }
    let unbound = store
        .unbound_gateway_keys()
        .await
        .context("could not read the gateway keys")?;
    if !unbound.is_empty() {
        warn!(
            keys = %unbound.join(","),
            "gateway keys bound to no resource redeem codes for every resource; \
             replace them with `sesame keys create --role gateway --resource ...`"
        );
    }
    serve_prepared(prepared, store, listeners, shutdown).await
}

/// Serves an already opened store until `shutdown` is cancelled. On
/// shutdown the health service turns NOT_SERVING first, then in-flight
/// calls get `shutdown_grace_secs` to finish; the metrics listener closes
/// with the same token, the background tasks after the server.
pub async fn serve(
    config: Config,
    store: Store,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    serve_prepared(App::prepare(config)?, store, listeners, shutdown).await
}

/// [`serve`] with the config already checked ([`App::prepare`]).
async fn serve_prepared(
    prepared: Prepared,
    store: Store,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let app = App::build(prepared, store).await?;
    app.seal_legacy_requests();
    let config = app.config();
    let policy = PolicyHandle::load(config.policy_file.as_deref().map(std::path::Path::new))
        .context("could not load the decision policy")?;
    let policy_task = policy.spawn_reloader(
        Duration::from_millis(config.policy_poll_interval_ms),
        shutdown.clone(),
    );
    // Background tasks stop with this token, after the listener closed;
    // the metrics listener with `metrics`, as soon as shutdown begins (or
    // the server fails).
    let tasks = CancellationToken::new();
    let metrics = shutdown.child_token();
    let background =
        app.start_background(listeners.metrics, config.mail_worker, &metrics, &tasks)?;
    let (routes, health) = app.routes(policy, &shutdown, &tasks).await?;
    let health_task = app.watch_database(health.clone(), &shutdown);
    if config.console_enabled {
        let console = listeners.console.as_ref().unwrap_or(&listeners.grpc);
        let addr = console
            .local_addr()
            .context("the console's listener has no local address")?;
        let scheme = if config.tls_cert_file.is_some() {
            "https"
        } else {
            "http"
        };
        let url = format!("{scheme}://{addr}/");
        info!(url = %url, "console served");
        println!("console: {url}");
    }
    let served = app
        .serve(routes, health, listeners.grpc, listeners.console, &shutdown)
        .await;
    health_task.abort();
    if let Some(task) = policy_task {
        task.abort();
    }
    metrics.cancel();
    tasks.cancel();
    background.join().await;
    served?;
    info!("sesame stopped");
    Ok(())
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
