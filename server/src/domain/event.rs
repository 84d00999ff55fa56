//! Events as read back from the log, their cursors, and the hash chain that
//! makes the log tamper-evident.
//!
//! `hash = SHA-256(prev_hash || canonical encoding)`, where the canonical
//! encoding length-prefixes every stored field, so no two different events
//! encode alike. Editing, deleting or reordering rows breaks the chain at the
//! first row touched.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use super::{AccessRequestId, EventKind, State};

/// `prev_hash` of the first event: 32 zero bytes, hex.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One row of the event log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedEvent {
    /// Position in the log: 1, 2, 3... with no gap.
    pub seq: i64,
    pub kind: EventKind,
    pub access_request: AccessRequestId,
    pub actor: String,
    pub state: State,
    pub occurred_at: DateTime<Utc>,
    /// The JSON object as stored, with a sealed `reason` opened (the chain
    /// hashes the stored form; see `VerifyAuditChain`).
    pub data: String,
    pub prev_hash: String,
    pub hash: String,
}

/// The fields of an event that the chain covers, as stored.
#[derive(Clone, Copy, Debug)]
pub struct ChainedFields<'a> {
    pub seq: i64,
    pub event_type: &'a str,
    pub access_request_id: &'a str,
    pub actor: &'a str,
    pub state: &'a str,
    pub occurred_at_us: i64,
    pub data: &'a str,
}

impl ChainedFields<'_> {
    /// The unambiguous byte encoding that is hashed.
    pub fn canonical(&self) -> Vec<u8> {
        let seq = self.seq.to_string();
        let occurred = self.occurred_at_us.to_string();
        let mut out = Vec::with_capacity(128 + self.data.len());
        for field in [
            seq.as_str(),
            self.event_type,
            self.access_request_id,
            self.actor,
            self.state,
            occurred.as_str(),
            self.data,
        ] {
            out.extend_from_slice(field.len().to_string().as_bytes());
            out.push(b':');
            out.extend_from_slice(field.as_bytes());
            out.push(b';');
        }
        out
    }

    /// The hash of this event chained after `prev_hash` (hex).
    pub fn chain_hash(&self, prev_hash: &str) -> String {
        let mut hasher = Sha256::new();
        hasher.update(prev_hash.as_bytes());
        hasher.update(self.canonical());
        hex::encode(hasher.finalize())
    }
}

const CURSOR_PREFIX: &str = "e1.";

/// An opaque resume point: the sequence of the last event seen.
pub fn encode_cursor(seq: i64) -> String {
    format!(
        "{CURSOR_PREFIX}{}",
        URL_SAFE_NO_PAD.encode(seq.to_be_bytes())
    )
}

/// Parses a cursor produced by [`encode_cursor`].
pub fn decode_cursor(cursor: &str) -> Option<i64> {
    let encoded = cursor.strip_prefix(CURSOR_PREFIX)?;
    let bytes = URL_SAFE_NO_PAD.decode(encoded).ok()?;
    let seq = i64::from_be_bytes(bytes.try_into().ok()?);
    (seq >= 0).then_some(seq)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(data: &str) -> ChainedFields<'_> {
        ChainedFields {
            seq: 7,
            event_type: "request.submitted",
            access_request_id: "0190a5f0-0000-7000-8000-000000000000",
            actor: "svc",
            state: "pending",
            occurred_at_us: 1,
            data,
        }
    }

    #[test]
    fn hashes_depend_on_every_field_and_on_the_previous_hash() {
        let base = fields("{}").chain_hash(GENESIS_HASH);
        assert_eq!(base, fields("{}").chain_hash(GENESIS_HASH));
        assert_ne!(base, fields("{ }").chain_hash(GENESIS_HASH));
        assert_ne!(base, fields("{}").chain_hash(&base));
        let moved = ChainedFields {
            seq: 8,
            ..fields("{}")
        };
        assert_ne!(base, moved.chain_hash(GENESIS_HASH));
    }

    #[test]
    fn field_boundaries_are_unambiguous() {
        let one = ChainedFields {
            actor: "ab",
            state: "c",
            ..fields("{}")
        };
        let other = ChainedFields {
            actor: "a",
            state: "bc",
            ..fields("{}")
        };
        assert_ne!(one.canonical(), other.canonical());
    }

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        for seq in [0, 1, 42, i64::MAX] {
            assert_eq!(decode_cursor(&encode_cursor(seq)), Some(seq));
        }
        for bad in ["", "42", "e1.", "e1.!!!", "e2.AAAAAAAAAAo", "e1.AAAA"] {
            assert_eq!(decode_cursor(bad), None, "{bad:?}");
        }
        let negative = format!("e1.{}", URL_SAFE_NO_PAD.encode((-1i64).to_be_bytes()));
        assert_eq!(decode_cursor(&negative), None);
    }
}
