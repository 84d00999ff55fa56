//! What a domain operation asks the store to record. An operation takes
//! the current state and returns a [`Change`]: the request's new state, how
//! its row is written, and the ordered [`Effect`]s (events to append with
//! the emails each causes, gateway codes to issue, change or forget). The
//! store's one writer (`store/commit.rs`) applies a change inside the
//! caller's transaction; nothing here touches a database.

use chrono::{DateTime, Utc};

use super::deadline::Due;
use super::mail::NewEmail;
use super::{AccessRequest, NewEvent};

/// One thing to record, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// Append `event`, then enqueue `emails` under its sequence (their
    /// idempotency key names the event). With `seal_reason`, the event's
    /// `reason` (written by an administrator) is sealed with the
    /// applicant's key first.
    Event {
        event: NewEvent,
        emails: Vec<NewEmail>,
        seal_reason: bool,
    },
    /// Issue a new gateway code for the request: the code row, the
    /// `code.issued` event and the applicant's approval email carrying the
    /// code sealed (the domain's `codes::issued` says what they hold).
    IssueCode {
        actor: String,
        reissued: bool,
        at: DateTime<Utc>,
    },
    /// Change the stored gateway code `code` (its row id).
    CodeChange { code: String, change: CodeChange },
    /// Drop the sealed code from the request's approval emails not sent
    /// yet: a revoked code is never delivered.
    ForgetUnsentCodes,
}

/// A change of one stored gateway code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CodeChange {
    /// Redeemed by `gateway`: only from active (the writer's guard).
    Redeemed { gateway: String, at: DateTime<Utc> },
    /// A wrong guess counted against the live code; the last allowed one
    /// revokes it.
    FailedAttempt {
        attempts: i32,
        revoke: bool,
        at: DateTime<Utc>,
    },
    /// Revoked by an administrator or replaced by a reissue.
    Revoked { at: DateTime<Utc> },
}

/// How the request's own row is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestWrite {
    /// A new request: the whole row.
    Insert,
    /// The decision columns, guarded by the version the change was made
    /// from (a concurrent change makes the write match no row).
    Update { expected_version: i64 },
    /// The reminder or escalation mark, once: guarded by the request still
    /// PENDING and the mark not set (the arbiter between replicas).
    MarkDeadline { step: Due, at: DateTime<Utc> },
    /// Nothing: the change is about codes or emails of the request.
    Unchanged,
}

/// A request's new state and everything to record with it.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    /// The request as it is after the change.
    pub request: AccessRequest,
    pub write: RequestWrite,
    pub effects: Vec<Effect>,
}

impl Change {
    /// A change that leaves the request's row as it is.
    pub fn effects_only(request: AccessRequest, effects: Vec<Effect>) -> Change {
        Change {
            request,
            write: RequestWrite::Unchanged,
            effects,
        }
    }
}
