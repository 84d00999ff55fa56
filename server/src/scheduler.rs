//! The deadline scheduler: every `scheduler_interval_secs` it finds the
//! PENDING requests past a review deadline and acts: a reminder to the
//! administrators at half the review SLA, an escalation past it, expiry
//! past `pending_max_age_secs`.
//!
//! Several replicas may run it at once: the database decides which one
//! takes each step (see `store/deadlines.rs`), so a step happens once.
//! The time comes from a [`Clock`], which tests set ahead instead of
//! sleeping; [`run_once`] is one pass at a chosen time.
//!
//! The same loop runs the retention job (at most every
//! [`RETENTION_INTERVAL`]): closed requests past
//! `retention_closed_request_days` are erased and sent emails past
//! `retention_sent_email_days` purged (see `store/privacy.rs`), and the
//! ids of provider webhook events older than a week are forgotten.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::domain::deadline::{Deadlines, Due, SYSTEM_ACTOR};
use crate::domain::{AccessRequestId, Action, DomainError};
use crate::store::{Scope, Store, StoreError};

/// Where the scheduler reads the time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clock {
    /// The system clock.
    System,
    /// Always this instant.
    Fixed(DateTime<Utc>),
    /// The system clock moved by this much (ahead when positive).
    Offset(chrono::Duration),
}

impl Clock {
    /// The current time by this clock.
    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Clock::System => crate::store::now(),
            Clock::Fixed(at) => *at,
            Clock::Offset(offset) => crate::store::now() + *offset,
        }
    }
}

/// Tuning of the scheduler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SchedulerOptions {
    /// The review SLA and the maximum age of a PENDING request.
    pub deadlines: Deadlines,
    /// Pause between passes.
    pub interval: Duration,
    /// Requests read per query of a pass.
    pub batch: u64,
    /// How long closed requests keep personal data; `None`: forever.
    pub retain_closed_requests: Option<chrono::Duration>,
    /// How long sent emails keep recipient and data; `None`: forever.
    pub retain_sent_emails: Option<chrono::Duration>,
}

/// Least time between two retention passes of one scheduler.
pub const RETENTION_INTERVAL: Duration = Duration::from_secs(300);

/// What one pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PassReport {
    pub reminded: u64,
    pub escalated: u64,
    pub expired: u64,
    /// Steps another replica (or an administrator's decision) took first.
    pub skipped: u64,
    /// Steps that failed; they are tried again next pass.
    pub failed: u64,
}

impl PassReport {
    fn acted(&self) -> u64 {
        self.reminded + self.escalated + self.expired
    }
}

/// One pass at time `now`: every request past a deadline gets its step,
/// unless another replica took it first. Fails only when the due requests
/// cannot be read; a step that fails is logged, counted and retried next
/// pass.
pub async fn run_once(
    store: &Store,
    options: &SchedulerOptions,
    now: DateTime<Utc>,
) -> Result<PassReport, StoreError> {
    let mut report = PassReport::default();
    let batch = options.batch.max(1);
    loop {
        let due = store.due_requests(&options.deadlines, now, batch).await?;
        let before = report;
        for request in &due {
            match take_step(store, options, request.id, request.due, now).await {
                Ok(true) => match request.due {
                    Due::Remind => report.reminded += 1,
                    Due::Escalate => report.escalated += 1,
                    Due::Expire => report.expired += 1,
                },
                Ok(false) => report.skipped += 1,
                Err(error) => {
                    warn!(request = %request.id, step = ?request.due, error = %error, "deadline step failed; will retry");
                    report.failed += 1;
                }
            }
        }
        // A short batch was the last; a batch where nothing happened would
        // only come back the same (its steps failed or were taken
        // elsewhere and will be gone from the next pass).
        if (due.len() as u64) < batch || report.acted() == before.acted() {
            break;
        }
    }
    Ok(report)
}

/// Takes one step; `false` when the request no longer needs it.
async fn take_step(
    store: &Store,
    options: &SchedulerOptions,
    id: AccessRequestId,
    step: Due,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    match step {
        Due::Remind | Due::Escalate => {
            store
                .record_deadline(id, step, &options.deadlines, now)
                .await
        }
        Due::Expire => {
            let expired = store
                .decide_request_at(&Scope::All, id, None, Action::Expire, SYSTEM_ACTOR, now)
                .await;
            match expired {
                Ok(_) => Ok(true),
                // Decided or expired meanwhile, here or by another replica.
                Err(StoreError::Refused(
                    DomainError::Transition(_) | DomainError::EtagMismatch,
                )) => Ok(false),
                Err(error) => Err(error),
            }
        }
    }
}

/// Runs a pass every `options.interval` until `shutdown` is cancelled; a
/// pass in progress finishes first.
pub async fn run_scheduler(
    store: Store,
    options: SchedulerOptions,
    clock: Clock,
    shutdown: CancellationToken,
) {
    info!(
        interval_secs = options.interval.as_secs(),
        review_sla_secs = options.deadlines.review_sla.as_secs(),
        pending_max_age_secs = options.deadlines.pending_max_age.as_secs(),
        "deadline scheduler started"
    );
    let mut last_retention: Option<std::time::Instant> = None;
    while !shutdown.is_cancelled() {
        let retention_due = last_retention.is_none_or(|at| at.elapsed() >= RETENTION_INTERVAL);
        if retention_due {
            last_retention = Some(std::time::Instant::now());
            let before = clock.now() - crate::store::delivery::WEBHOOK_REPLAY_WINDOW;
            match store.prune_webhook_events(before).await {
                Ok(0) => {}
                Ok(pruned) => info!(pruned, "old webhook event ids forgotten"),
                Err(error) => {
                    warn!(error = %error, "could not prune webhook event ids; will retry")
                }
            }
        }
        if retention_due
            && (options.retain_closed_requests.is_some() || options.retain_sent_emails.is_some())
            && let Err(error) = store
                .apply_retention(
                    clock.now(),
                    options.retain_closed_requests,
                    options.retain_sent_emails,
                )
                .await
        {
            warn!(error = %error, "retention pass failed; will retry");
        }
        match run_once(&store, &options, clock.now()).await {
            Ok(report) if report == PassReport::default() => debug!("no review deadline due"),
            Ok(report) => info!(
                reminded = report.reminded,
                escalated = report.escalated,
                expired = report.expired,
                skipped = report.skipped,
                failed = report.failed,
                "deadline pass done"
            ),
            Err(error) => warn!(error = %error, "could not read the due requests; will retry"),
        }
        tokio::select! {
            () = shutdown.cancelled() => {}
            () = tokio::time::sleep(options.interval) => {}
        }
    }
    info!("deadline scheduler stopped");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clocks_tell_their_time() {
        let fixed = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap();
        assert_eq!(Clock::Fixed(fixed).now(), fixed);
        let ahead = Clock::Offset(chrono::Duration::hours(25)).now() - Clock::System.now();
        assert!((ahead - chrono::Duration::hours(25)).num_seconds().abs() <= 1);
    }
}
