//! The raw baselines our figures are divided by, measured on the same
//! machine in the same run: a minimal SQLite loop doing a submit's three
//! inserts per transaction (WAL, synchronous=FULL), and a minimal tonic
//! server (the standard health service) for h2load to hit.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use sea_orm::{ConnectionTrait, Database};
use serde::Serialize;

/// Result of the SQLite loop.
#[derive(Clone, Debug, Serialize)]
pub struct SqliteBaseline {
    pub transactions: u64,
    pub seconds: f64,
    pub transactions_per_s: f64,
}

/// One transaction per loop turn, each inserting a request, an event and
/// an outbox row of about a submit's size, for `duration`.
pub async fn sqlite_loop(path: &str, duration: Duration) -> anyhow::Result<SqliteBaseline> {
    let url = format!("sqlite://{path}?mode=rwc");
    let db = Database::connect(url.as_str())
        .await
        .with_context(|| format!("could not open {path}"))?;
    for statement in [
        "PRAGMA journal_mode = WAL",
        "PRAGMA synchronous = FULL",
        "CREATE TABLE IF NOT EXISTS requests (id TEXT PRIMARY KEY, email TEXT, name TEXT, \
         organization TEXT, resource TEXT, justification TEXT, state TEXT, version INTEGER, \
         created_at_us INTEGER)",
        "CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, request TEXT, kind TEXT, \
         actor TEXT, data TEXT, prev_hash TEXT, hash TEXT)",
        "CREATE TABLE IF NOT EXISTS outbox (id TEXT PRIMARY KEY, request TEXT, template TEXT, \
         recipient TEXT, data TEXT, state TEXT, next_attempt_at_us INTEGER)",
    ] {
        db.execute_unprepared(statement).await?;
    }
    let started = Instant::now();
    let mut transactions = 0u64;
    while started.elapsed() < duration {
        let id = uuid::Uuid::now_v7();
        let sql = format!(
            "BEGIN IMMEDIATE;\
             INSERT INTO requests VALUES ('{id}', 'ada{transactions}@example.com', 'Ada Lovelace', \
             'Analytical Engines', 'vpn-paris', 'Maintenance of the difference engine', 'pending', 1, \
             {transactions});\
             INSERT INTO events (request, kind, actor, data, prev_hash, hash) VALUES ('{id}', \
             'request.submitted', 'loadtest', '{{\"resource\":\"vpn-paris\"}}', \
             '{hash}', '{hash}');\
             INSERT INTO outbox VALUES ('{id}', '{id}', 'applicant_received', \
             'ada{transactions}@example.com', '{{\"full_name\":\"Ada Lovelace\"}}', 'pending', 0);\
             COMMIT;",
            hash = "0".repeat(64)
        );
        db.execute_unprepared(&sql).await?;
        transactions += 1;
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(SqliteBaseline {
        transactions,
        seconds,
        transactions_per_s: transactions as f64 / seconds,
    })
}

/// Serves only the gRPC health service on `addr` for `duration`.
pub async fn echo_server(addr: SocketAddr, duration: Duration) -> anyhow::Result<()> {
    let (_reporter, health) = tonic_health::server::health_reporter();
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("could not listen on {addr}"))?;
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .add_service(health)
        .serve_with_incoming_shutdown(incoming, tokio::time::sleep(duration))
        .await
        .context("the echo server failed")
}
