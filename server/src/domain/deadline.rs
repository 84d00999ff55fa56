//! Review deadlines: when a PENDING request is owed a reminder to the
//! administrators, an escalation, or expiry; and the decision-time figures
//! of GetStats.
//!
//! Pure: the scheduler passes the time in, the store asks [`Deadlines::due`]
//! about each candidate row and persists what it answers.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;

use super::{AccessRequestId, EventKind, NewEvent, State};

/// The actor of every automatic change.
pub const SYSTEM_ACTOR: &str = "system";

/// The review deadlines of PENDING requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadlines {
    /// Time an administrator has to decide; half of it earns a reminder,
    /// all of it an escalation.
    pub review_sla: Duration,
    /// Age at which a request still PENDING expires.
    pub pending_max_age: Duration,
}

/// What a PENDING request is owed now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Due {
    /// Past half the SLA: remind the administrators (once).
    Remind,
    /// Past the SLA: escalate to the administrators (once).
    Escalate,
    /// Past the maximum age: the request expires.
    Expire,
}

/// The creation times before which requests are due for each step at some
/// instant: a request created at or before `remind` is past half the SLA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cutoffs {
    pub remind: DateTime<Utc>,
    pub escalate: DateTime<Utc>,
    pub expire: DateTime<Utc>,
}

fn before(now: DateTime<Utc>, span: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(span)
        .ok()
        .and_then(|span| now.checked_sub_signed(span))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

impl Deadlines {
    /// The cutoffs at `now`.
    pub fn cutoffs(&self, now: DateTime<Utc>) -> Cutoffs {
        Cutoffs {
            remind: before(now, self.review_sla / 2),
            escalate: before(now, self.review_sla),
            expire: before(now, self.pending_max_age),
        }
    }

    /// What a request in `state`, created at `created_at`, already reminded
    /// or escalated (or not), is owed at `now`. Expiry wins over the
    /// messages; a request past the SLA is escalated without a reminder
    /// first (the reminder would arrive late and say less); a request that
    /// has had its step gets nothing more until the next one.
    pub fn due(
        &self,
        state: State,
        created_at: DateTime<Utc>,
        reminded: bool,
        escalated: bool,
        now: DateTime<Utc>,
    ) -> Option<Due> {
        if state != State::Pending {
            return None;
        }
        let cutoffs = self.cutoffs(now);
        if created_at <= cutoffs.expire {
            Some(Due::Expire)
        } else if created_at <= cutoffs.escalate && !escalated {
            Some(Due::Escalate)
        } else if created_at <= cutoffs.remind && !reminded && !escalated {
            Some(Due::Remind)
        } else {
            None
        }
    }
}

/// The `request.reminded` or `request.escalated` event of `request` at
/// `now`, by `system`. No personal data: the SLA and how long the request
/// has waited.
pub fn deadline_event(
    kind: EventKind,
    request: AccessRequestId,
    created_at: DateTime<Utc>,
    deadlines: &Deadlines,
    now: DateTime<Utc>,
) -> NewEvent {
    let waited = span_text((now - created_at).to_std().unwrap_or(Duration::ZERO));
    let sla = span_text(deadlines.review_sla);
    let reason = match kind {
        EventKind::Escalated => format!("pending for {waited}, past the review SLA of {sla}"),
        _ => format!("pending for {waited}, past half the review SLA of {sla}"),
    };
    NewEvent {
        kind,
        access_request: request,
        actor: SYSTEM_ACTOR.to_owned(),
        state: State::Pending,
        occurred_at: now,
        data: json!({
            "reason": reason,
            "automatic": true,
            "review_sla_secs": deadlines.review_sla.as_secs(),
        }),
    }
}

/// GetStats' window when the caller sets none: 30 days.
pub const DEFAULT_STATS_WINDOW: Duration = Duration::from_secs(30 * 86_400);
/// The longest GetStats window: 366 days.
pub const MAX_STATS_WINDOW: Duration = Duration::from_secs(366 * 86_400);

/// The GetStats window asked for in seconds: 0 means the default; negative
/// or longer than [`MAX_STATS_WINDOW`] is refused with the reason.
pub fn stats_window(raw_secs: i64) -> Result<Duration, &'static str> {
    match u64::try_from(raw_secs) {
        Err(_) => Err("must not be negative"),
        Ok(0) => Ok(DEFAULT_STATS_WINDOW),
        Ok(secs) if secs > MAX_STATS_WINDOW.as_secs() => Err("must be at most 366 days (31622400)"),
        Ok(secs) => Ok(Duration::from_secs(secs)),
    }
}

/// A span in whole hours, minutes or seconds, the largest unit that fits.
fn span_text(span: Duration) -> String {
    let secs = span.as_secs();
    if secs >= 3600 {
        format!("{} h", secs / 3600)
    } else if secs >= 60 {
        format!("{} min", secs / 60)
    } else {
        format!("{secs} s")
    }
}

/// Decision-time figures over a set of decided requests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DecisionTimes {
    /// How many decisions were measured.
    pub count: u64,
    /// The median (nearest rank); `None` without decisions.
    pub median: Option<Duration>,
    /// The 95th percentile (nearest rank); `None` without decisions.
    pub p95: Option<Duration>,
}

/// The nearest-rank `percentile` (0 < p <= 100) of sorted `values`.
fn nearest_rank(sorted: &[Duration], percentile: u64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let count = sorted.len() as u64;
    // ceil(p / 100 * n), at least 1.
    let rank = (percentile * count).div_ceil(100).max(1);
    let index = usize::try_from(rank - 1).unwrap_or(0).min(sorted.len() - 1);
    sorted.get(index).copied()
}

/// Median and 95th percentile of the times from creation to decision of
/// `requests` (those without a decision are ignored).
pub fn decision_times(requests: &[(DateTime<Utc>, DateTime<Utc>)]) -> DecisionTimes {
    let mut spans: Vec<Duration> = requests
        .iter()
        .map(|(created, decided)| (*decided - *created).to_std().unwrap_or(Duration::ZERO))
        .collect();
    spans.sort_unstable();
    DecisionTimes {
        count: spans.len() as u64,
        median: nearest_rank(&spans, 50),
        p95: nearest_rank(&spans, 95),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn deadlines() -> Deadlines {
        Deadlines {
            review_sla: 24 * HOUR,
            pending_max_age: 14 * 24 * HOUR,
        }
    }

    fn at(hours: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap() + chrono::Duration::hours(hours)
    }

    #[test]
    fn steps_come_in_order_and_once() {
        let d = deadlines();
        let created = at(0);
        let due = |reminded, escalated, hours| {
            d.due(State::Pending, created, reminded, escalated, at(hours))
        };
        assert_eq!(due(false, false, 11), None);
        assert_eq!(due(false, false, 12), Some(Due::Remind));
        assert_eq!(due(true, false, 13), None, "reminded once");
        assert_eq!(due(true, false, 24), Some(Due::Escalate));
        assert_eq!(due(true, true, 25), None, "escalated once");
        assert_eq!(due(true, true, 14 * 24), Some(Due::Expire));
    }

    #[test]
    fn a_late_scheduler_escalates_without_reminding_and_expiry_wins() {
        let d = deadlines();
        assert_eq!(
            d.due(State::Pending, at(0), false, false, at(25)),
            Some(Due::Escalate)
        );
        assert_eq!(d.due(State::Pending, at(0), false, true, at(30)), None);
        assert_eq!(
            d.due(State::Pending, at(0), false, false, at(15 * 24)),
            Some(Due::Expire)
        );
    }

    #[test]
    fn decided_requests_are_owed_nothing() {
        let d = deadlines();
        for state in [
            State::Approved,
            State::Rejected,
            State::Cancelled,
            State::Expired,
        ] {
            assert_eq!(
                d.due(state, at(0), false, false, at(30 * 24)),
                None,
                "{state:?}"
            );
        }
    }

    #[test]
    fn deadline_events_carry_no_personal_data() {
        let event = deadline_event(
            EventKind::Escalated,
            AccessRequestId::generate(),
            at(0),
            &deadlines(),
            at(25),
        );
        assert_eq!(event.actor, SYSTEM_ACTOR);
        assert_eq!(event.state, State::Pending);
        assert_eq!(event.data["automatic"], true);
        assert_eq!(
            event.data["reason"],
            "pending for 25 h, past the review SLA of 24 h"
        );
        assert_eq!(event.data.as_object().unwrap().len(), 3);
        let short = Deadlines {
            review_sla: Duration::from_secs(90),
            pending_max_age: HOUR,
        };
        let reminded = deadline_event(
            EventKind::Reminded,
            AccessRequestId::generate(),
            at(0),
            &short,
            at(0) + chrono::Duration::seconds(50),
        );
        assert_eq!(
            reminded.data["reason"],
            "pending for 50 s, past half the review SLA of 1 min"
        );
    }

    #[test]
    fn stats_windows_default_and_are_bounded() {
        assert_eq!(stats_window(0), Ok(DEFAULT_STATS_WINDOW));
        assert_eq!(stats_window(3600), Ok(HOUR));
        assert!(stats_window(-1).is_err());
        assert!(stats_window(366 * 86_400).is_ok());
        assert!(stats_window(366 * 86_400 + 1).is_err());
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        assert_eq!(decision_times(&[]), DecisionTimes::default());
        let spans: Vec<(DateTime<Utc>, DateTime<Utc>)> =
            (1..=20).rev().map(|hours| (at(0), at(hours))).collect();
        let times = decision_times(&spans);
        assert_eq!(times.count, 20);
        assert_eq!(times.median, Some(10 * HOUR));
        assert_eq!(times.p95, Some(19 * HOUR));
        let one = decision_times(&[(at(0), at(3))]);
        assert_eq!((one.median, one.p95), (Some(3 * HOUR), Some(3 * HOUR)));
    }
}
