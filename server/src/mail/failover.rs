//! Several transports in order of preference (`mail_transport` lists them,
//! comma-separated): the first healthy one takes the traffic. After
//! `after` consecutive retryable failures of one transport within `window`,
//! it rests for `cooldown` and the next one takes over; once the cool-down
//! is over it is tried first again. A permanent failure says nothing about
//! the transport's health (the email was at fault) and a success resets the
//! count.
//!
//! An email is handed to another transport only after the previous one
//! answered with a failure: when an attempt's outcome is unknown (the
//! request went out, no answer came back), the email is pinned to that
//! transport until its fate is known (sent or dead), since that transport
//! alone could recognise the resend (Resend by its idempotency key, for 24
//! hours; SendGrid has no such key, so there a resend may deliver twice
//! either way, but never through two providers).

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;
use tracing::{info, warn};

use super::providers::ProviderMessageId;
use super::{OutgoingEmail, SendError, Transport};

/// When to fail over, and for how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FailoverPolicy {
    /// Consecutive retryable failures that take a transport out.
    pub after: u32,
    /// The failures must fall within this long of the first one.
    pub window: Duration,
    /// How long a failing transport rests before it is tried again.
    pub cooldown: Duration,
}

/// One attempt: the transport that made it, by name, and how it ended.
#[derive(Debug)]
pub struct Attempt {
    /// The transport's name (see [`Transports::new`]).
    pub transport: String,
    /// A transport other than the first took this email because the ones
    /// before it were resting.
    pub failed_over: bool,
    pub result: Result<ProviderMessageId, SendError>,
}

/// The configured transports, in order, with the health of each.
#[derive(Debug)]
pub struct Transports {
    entries: Vec<(String, Transport)>,
    policy: FailoverPolicy,
    health: Mutex<Vec<Health>>,
}

#[derive(Clone, Copy, Debug, Default)]
struct Health {
    /// Consecutive retryable failures, and when the first of them was.
    failures: u32,
    first_failure: Option<Instant>,
    /// Resting until then.
    resting_until: Option<Instant>,
}

impl Transports {
    /// The transports in order of preference. Each is named by its kind
    /// (`resend`, `smtp`...), with `#2`, `#3`... after the first of a kind
    /// listed more than once: outbox rows record the name.
    pub fn new(transports: Vec<Transport>, policy: FailoverPolicy) -> Transports {
        let mut entries: Vec<(String, Transport)> = Vec::with_capacity(transports.len());
        for transport in transports {
            let kind = transport.kind();
            let before = entries
                .iter()
                .filter(|(_, other)| other.kind() == kind)
                .count();
            let name = if before == 0 {
                kind.to_owned()
            } else {
                format!("{kind}#{}", before + 1)
            };
            entries.push((name, transport));
        }
        let health = Mutex::new(vec![Health::default(); entries.len()]);
        Transports {
            entries,
            policy,
            health,
        }
    }

    /// One transport, never failing over.
    pub fn single(transport: Transport) -> Transports {
        let policy = FailoverPolicy {
            after: u32::MAX,
            window: Duration::ZERO,
            cooldown: Duration::ZERO,
        };
        Transports::new(vec![transport], policy)
    }

    /// The transports' names and kinds, in order.
    pub fn names(&self) -> impl Iterator<Item = (&str, &Transport)> {
        self.entries
            .iter()
            .map(|(name, transport)| (name.as_str(), transport))
    }

    /// Sends `email` through the transport it is pinned to (by name), else
    /// the first one not resting, and notes the result in its health.
    pub async fn send(&self, email: &OutgoingEmail, pinned: Option<&str>) -> Attempt {
        let index = self.choose(pinned, Instant::now());
        let (name, transport) = &self.entries[index];
        let result = transport.send(email).await;
        self.note(index, &result, Instant::now());
        Attempt {
            transport: name.clone(),
            failed_over: index > 0 && pinned.is_none(),
            result,
        }
    }

    /// The pinned transport when it is still configured; else the first
    /// one not resting; else (all resting) the one whose rest ends first.
    fn choose(&self, pinned: Option<&str>, now: Instant) -> usize {
        if let Some(pinned) = pinned
            && let Some(index) = self.entries.iter().position(|(name, _)| name == pinned)
        {
            return index;
        }
        let health = self.lock();
        health
            .iter()
            .position(|health| health.resting_until.is_none_or(|until| until <= now))
            .unwrap_or_else(|| {
                (0..health.len())
                    .min_by_key(|&index| health[index].resting_until)
                    .unwrap_or(0)
            })
    }

    fn note(&self, index: usize, result: &Result<ProviderMessageId, SendError>, now: Instant) {
        let policy = self.policy;
        let mut all = self.lock();
        let health = &mut all[index];
        match result {
            Ok(_) | Err(SendError::Permanent(_)) => {
                if health.resting_until.take().is_some() {
                    info!(transport = %self.entries[index].0, "mail transport back in service");
                }
                health.failures = 0;
                health.first_failure = None;
            }
            Err(SendError::Transient(_) | SendError::Throttled(..) | SendError::Unknown(_)) => {
                let within = health
                    .first_failure
                    .is_some_and(|first| now.duration_since(first) <= policy.window);
                if !within {
                    health.failures = 0;
                    health.first_failure = Some(now);
                }
                health.failures = health.failures.saturating_add(1);
                let last = index + 1 == all.len();
                let health = &mut all[index];
                if health.failures >= policy.after && !last && health.resting_until.is_none() {
                    health.resting_until = Some(now + policy.cooldown);
                    warn!(
                        transport = %self.entries[index].0,
                        next = %self.entries[index + 1].0,
                        failures = health.failures,
                        cooldown_secs = policy.cooldown.as_secs(),
                        "mail transport failing; the next one takes over"
                    );
                }
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Health>> {
        self.health.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transports(after: u32) -> Transports {
        let url = |url: &str| Transport::from_url(url, Duration::from_secs(1), 1).unwrap();
        Transports::new(
            vec![url("log"), url("file://a"), url("file://b")],
            FailoverPolicy {
                after,
                window: Duration::from_secs(60),
                cooldown: Duration::from_secs(300),
            },
        )
    }

    fn failed() -> Result<ProviderMessageId, SendError> {
        Err(SendError::Throttled("503".to_owned(), None))
    }

    #[test]
    fn transports_of_one_kind_are_numbered() {
        let transports = transports(3);
        let names: Vec<&str> = transports.names().map(|(name, _)| name).collect();
        assert_eq!(names, ["log", "file", "file#2"]);
    }

    #[test]
    fn repeated_failures_hand_the_traffic_to_the_next_until_the_cooldown_ends() {
        let transports = transports(3);
        let start = Instant::now();
        for _ in 0..2 {
            transports.note(0, &failed(), start);
        }
        assert_eq!(
            transports.choose(None, start),
            0,
            "two failures are not enough"
        );
        transports.note(0, &failed(), start + Duration::from_secs(1));
        assert_eq!(transports.choose(None, start + Duration::from_secs(2)), 1);
        // A pinned email stays with its transport, resting or not.
        assert_eq!(transports.choose(Some("log"), start), 0);
        // The next one fails too: the third takes over.
        for _ in 0..3 {
            transports.note(1, &failed(), start + Duration::from_secs(2));
        }
        assert_eq!(transports.choose(None, start + Duration::from_secs(3)), 2);
        // After the first one's cool-down, it is first again.
        let later = start + Duration::from_secs(302);
        assert_eq!(transports.choose(None, later), 0);
        transports.note(0, &Ok(None), later);
        assert_eq!(transports.choose(None, later), 0);
    }

    #[test]
    fn failures_outside_the_window_or_permanent_ones_do_not_count() {
        let transports = transports(2);
        let start = Instant::now();
        transports.note(0, &failed(), start);
        transports.note(0, &failed(), start + Duration::from_secs(61));
        assert_eq!(transports.choose(None, start + Duration::from_secs(61)), 0);
        transports.note(0, &Err(SendError::Permanent("422".to_owned())), start);
        transports.note(0, &failed(), start + Duration::from_secs(62));
        assert_eq!(transports.choose(None, start + Duration::from_secs(62)), 0);
    }

    #[test]
    fn the_last_transport_never_rests_and_all_resting_picks_the_earliest_end() {
        let transports = transports(1);
        let start = Instant::now();
        transports.note(2, &failed(), start);
        assert_eq!(transports.choose(None, start), 0);
        transports.note(0, &failed(), start);
        transports.note(1, &failed(), start + Duration::from_secs(5));
        assert_eq!(transports.choose(None, start + Duration::from_secs(6)), 2);
        // An unknown pin (the configuration changed) falls back to order.
        assert_eq!(
            transports.choose(Some("sendgrid"), start + Duration::from_secs(6)),
            2
        );
    }
}
