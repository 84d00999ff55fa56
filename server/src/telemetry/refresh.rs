//! Keeps the database gauges current: every `metrics_refresh_secs` the
//! figures are read once and stored, so a scrape never queries the
//! database and many scrapers cost nothing more.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::metrics::Metrics;
use crate::domain::State;
use crate::store::outbox::{DEAD, PENDING, SENT};
use crate::store::{Store, StoreError, now};

/// Refreshes the gauges at once, then every `interval`, until `shutdown`.
pub async fn run_refresh(
    store: Store,
    metrics: Arc<Metrics>,
    interval: Duration,
    shutdown: CancellationToken,
) {
    loop {
        if let Err(error) = refresh(&store, &metrics).await {
            metrics.refresh_failures.inc(&[]);
            warn!(error = %error, "could not refresh the database gauges; they keep their last values");
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
    }
}

/// Reads the figures once and stores them in the gauges.
pub async fn refresh(store: &Store, metrics: &Metrics) -> Result<(), StoreError> {
    let pool = store.pool_usage();
    metrics
        .db_pool_connections
        .set(&["idle"], f64::from(pool.idle));
    metrics
        .db_pool_connections
        .set(&["in_use"], f64::from(pool.open.saturating_sub(pool.idle)));

    let at = now();
    let stats = store.stats(at).await?;
    for state in State::ALL {
        let count = stats
            .requests_by_state
            .get(state.as_str())
            .copied()
            .unwrap_or(0);
        metrics.requests.set(&[state.as_str()], count as f64);
    }
    metrics
        .oldest_pending_request_age
        .set(&[], age_secs(stats.oldest_pending_request, at));
    for state in [PENDING, SENT, DEAD] {
        let count = stats.outbox_by_state.get(state).copied().unwrap_or(0);
        metrics.outbox.set(&[state], count as f64);
    }
    metrics
        .outbox_oldest_due_age
        .set(&[], age_secs(stats.oldest_due_email, at));
    Ok(())
}

/// Seconds from `since` to `at`; 0 when there is nothing (or a clock skew
/// between replicas puts it in the future).
fn age_secs(since: Option<DateTime<Utc>>, at: DateTime<Utc>) -> f64 {
    since.map_or(0.0, |since| {
        ((at - since).num_milliseconds() as f64 / 1000.0).max(0.0)
    })
}
