//! Protective limits in front of every call, applied before authentication
//! so that callers without a valid key are held to them too: a request
//! budget per peer address, a cap on calls in flight (unary calls and
//! server streams counted apart) beyond which calls are shed at once, the
//! server's default deadline for unary calls, and the largest request
//! message, checked as its bytes arrive. A request message that is not
//! valid protobuf (tonic answers INTERNAL, as if the server were at fault)
//! is answered INVALID_ARGUMENT here, naming the field when it can. While
//! the database does not answer, unary calls are answered UNAVAILABLE at
//! once ([`DatabaseState`]).
//!
//! [`LimitError`] says which limit refused a call; `api::status` turns it
//! into a gRPC status with an ErrorInfo (and a RetryInfo where waiting
//! helps).

mod admission;
mod body;
mod database;
mod layer;

use std::time::Duration;

pub use database::DatabaseState;
pub use layer::{LimitLayer, LimitService, peer_key};

/// How long a shed caller is told to wait before trying again.
pub const OVERLOAD_RETRY_AFTER: Duration = Duration::from_secs(1);

/// The limits, from the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitOptions {
    /// Calls a second one peer address may make on average; 0: no limit.
    pub per_peer_rate: u32,
    /// Calls one peer address may make at once above the average.
    pub per_peer_burst: u32,
    /// Unary calls in flight at once (at work or waiting their turn); 0:
    /// no limit.
    pub max_in_flight_calls: usize,
    /// Unary calls at work at once; the others wait their turn, or are
    /// refused at once when their deadline would not allow it; 0: no turns.
    pub max_active_calls: usize,
    /// Server streams (WatchEvents, health Watch, reflection) open at
    /// once; 0: no limit.
    pub max_open_streams: usize,
    /// Deadline of a unary call, unless the caller's own is shorter.
    pub request_timeout: Duration,
    /// Largest request message, in bytes.
    pub max_message_bytes: usize,
}

/// Which kind of call a cap counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallKind {
    /// A unary call: counted against `max_in_flight_calls`.
    Unary,
    /// A server or bidirectional stream: counted against `max_open_streams`.
    Stream,
}

/// Why a protective limit refused or ended a call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error("this peer address is over its request rate")]
    PeerRateLimited(Duration),
    #[error("the server is at its limit of {limit} {what}; call shed")]
    Overloaded {
        /// The configuration key of the limit that was reached.
        key: &'static str,
        /// `unary calls in flight` or `open streams`.
        what: &'static str,
        limit: usize,
    },
    #[error("the database is unavailable, retry later")]
    DatabaseUnavailable,
    #[error(
        "the server is busy: the calls ahead would take about {} ms, past this call's deadline          ({} ms left); call refused before any work",
        .wait.as_millis(),
        .budget.as_millis()
    )]
    DeadlineUnreachable { wait: Duration, budget: Duration },
    #[error("the call did not finish within its deadline ({} ms)", .0.as_millis())]
    DeadlineExceeded(Duration),
    #[error(
        "request message of {size} bytes is larger than the limit of {limit} bytes \
         (max_decoding_message_bytes)"
    )]
    MessageTooLarge { size: usize, limit: usize },
    #[error("the request is not a valid protobuf message: {detail}")]
    MessageMalformed {
        /// The field path where decoding failed (`applicant.email`), when
        /// known.
        field: Option<String>,
        /// The decoder's description of the problem.
        detail: String,
    },
}

impl LimitError {
    /// The `reason` label of `sesame_rpcs_shed_total`.
    pub fn metric_reason(&self) -> &'static str {
        match self {
            LimitError::PeerRateLimited(_) => "peer_rate_limited",
            LimitError::Overloaded { .. } => "overloaded",
            LimitError::DatabaseUnavailable => "database_unavailable",
            LimitError::DeadlineUnreachable { .. } => "deadline_unreachable",
            LimitError::DeadlineExceeded(_) => "deadline_exceeded",
            LimitError::MessageTooLarge { .. } => "message_too_large",
            LimitError::MessageMalformed { .. } => "message_malformed",
        }
    }
}
