//! The retry policy: which failures are retried and how long to wait.

use std::time::Duration;

use rand::Rng;
use tonic::{Code, Status};

use crate::errors::error_reason;

/// Retry of failed calls (AIP-194): `UNAVAILABLE` is retried for unary
/// calls, because it promises that trying again is safe; so is an attempt's
/// `DEADLINE_EXCEEDED` for [`crate::SesameClient::submit`] alone, whose
/// `request_id` returns the request a timed-out attempt may have committed.
/// Every other code is returned at once. Waits grow exponentially from
/// `initial_backoff` up to `max_backoff`, each with random jitter, for at
/// most `max_attempts` attempts in all (and never past the call's deadline).
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Attempts in all, the first included; 1 disables retries.
    pub max_attempts: u32,
    /// Wait before the first retry.
    pub initial_backoff: Duration,
    /// Longest wait between two attempts.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    /// 5 attempts, waits from 100 ms doubling up to 5 s.
    fn default() -> Self {
        Self {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// No retry at all.
    pub fn never() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// The policy of [`crate::Watch`] reconnections: 30 attempts in a row,
    /// waits up to 5 s, so about two minutes of server downtime are bridged.
    pub fn watch_default() -> Self {
        Self {
            max_attempts: 30,
            ..Self::default()
        }
    }

    /// The wait before retry number `retry` (0 for the first): the
    /// exponential step, of which a random 50 to 100 % is taken so that
    /// clients failed by the same outage do not come back in lockstep.
    pub fn backoff(&self, retry: u32) -> Duration {
        let step = self
            .initial_backoff
            .saturating_mul(2u32.saturating_pow(retry.min(20)))
            .min(self.max_backoff);
        step.mul_f64(rand::rng().random_range(0.5..=1.0))
    }
}

/// Whether a unary call that failed with `status` may be sent again.
pub(crate) fn is_retryable(status: &Status) -> bool {
    status.code() == Code::Unavailable
}

/// Whether a watch stream that ended with `status` may be reopened from its
/// cursor: the server going away or shutting down, a broken connection
/// (a status that carries no Sesame error details), or the server cutting
/// off a watcher that fell too far behind.
pub(crate) fn is_resumable(status: &Status) -> bool {
    match status.code() {
        Code::Unavailable => true,
        // The server cutting off a reader that fell behind; or, without
        // Sesame's details, the client's own HTTP/2 guard (h2 ends a
        // connection whose unread small frames pile up: GOAWAY
        // ENHANCE_YOUR_CALM).
        Code::ResourceExhausted => matches!(
            error_reason(status).as_deref(),
            Some("WATCHER_TOO_SLOW") | None
        ),
        Code::Unknown | Code::Internal => error_reason(status).is_none(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let policy = RetryPolicy::default();
        for retry in 0..40 {
            let step = Duration::from_millis(100)
                .saturating_mul(2u32.saturating_pow(retry.min(20)))
                .min(Duration::from_secs(5));
            let wait = policy.backoff(retry);
            assert!(
                wait >= step / 2 && wait <= step,
                "retry {retry}: {wait:?} vs {step:?}"
            );
        }
    }

    #[test]
    fn only_unavailable_is_retried() {
        assert!(is_retryable(&Status::unavailable("down")));
        for code in [
            Code::InvalidArgument,
            Code::Internal,
            Code::DeadlineExceeded,
            Code::Aborted,
        ] {
            assert!(!is_retryable(&Status::new(code, "no")), "{code:?}");
        }
    }

    #[test]
    fn transport_failures_resume_a_watch_but_server_errors_do_not() {
        assert!(is_resumable(&Status::unavailable("server shutting down")));
        assert!(is_resumable(&Status::unknown(
            "error reading a body from connection"
        )));
        // Without Sesame's details: the client's own HTTP/2 flood guard.
        assert!(is_resumable(&Status::resource_exhausted(
            "h2 protocol error: too_many_data_frames"
        )));
        let details = tonic_types::ErrorDetails::with_error_info(
            "RATE_LIMITED",
            "sesame.dev",
            std::collections::HashMap::new(),
        );
        use tonic_types::StatusExt;
        let limited = Status::with_error_details(Code::ResourceExhausted, "slow down", details);
        assert!(!is_resumable(&limited));
        assert!(!is_resumable(&Status::permission_denied("no")));
        assert!(!is_resumable(&Status::invalid_argument("bad cursor")));
    }
}
