//! The wire form of the event log: an event as the stream and the API
//! send it, and the enums and times it is made of. Shared by the live hub
//! (which encodes each event once for every watcher) and the API.

use chrono::{DateTime, Utc};
use prost_types::Timestamp;
use sesame_proto::v1 as pb;

use crate::domain::{EventKind, RecordedEvent, State, encode_cursor};

/// A protobuf timestamp.
pub fn timestamp(time: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: time.timestamp(),
        nanos: i32::try_from(time.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

/// The wire enum of a state.
pub fn state_to_proto(state: State) -> pb::AccessRequestState {
    match state {
        State::Pending => pb::AccessRequestState::Pending,
        State::Approved => pb::AccessRequestState::Approved,
        State::Rejected => pb::AccessRequestState::Rejected,
        State::Cancelled => pb::AccessRequestState::Cancelled,
        State::Expired => pb::AccessRequestState::Expired,
    }
}

/// The wire enum of an event kind.
pub fn event_type_to_proto(kind: EventKind) -> pb::EventType {
    match kind {
        EventKind::Submitted => pb::EventType::RequestSubmitted,
        EventKind::Approved => pb::EventType::RequestApproved,
        EventKind::Rejected => pb::EventType::RequestRejected,
        EventKind::Cancelled => pb::EventType::RequestCancelled,
        EventKind::Expired => pb::EventType::RequestExpired,
        EventKind::EmailSent => pb::EventType::EmailSent,
        EventKind::EmailFailed => pb::EventType::EmailFailed,
        EventKind::EmailDead => pb::EventType::EmailDead,
        EventKind::EmailRequeued => pb::EventType::EmailRequeued,
        EventKind::EmailDelivered => pb::EventType::EmailDelivered,
        EventKind::EmailDeliveryDelayed => pb::EventType::EmailDeliveryDelayed,
        EventKind::EmailBounced => pb::EventType::EmailBounced,
        EventKind::EmailComplained => pb::EventType::EmailComplained,
        EventKind::EmailSuppressed => pb::EventType::EmailSuppressed,
        EventKind::SuppressionLifted => pb::EventType::EmailSuppressionLifted,
        EventKind::CodeIssued => pb::EventType::CodeIssued,
        EventKind::CodeRedeemed => pb::EventType::CodeRedeemed,
        EventKind::CodeRevoked => pb::EventType::CodeRevoked,
        EventKind::CodeRedemptionFailed => pb::EventType::CodeRedemptionFailed,
        EventKind::ApprovalRecorded => pb::EventType::RequestApprovalRecorded,
        EventKind::Reminded => pb::EventType::RequestReminded,
        EventKind::Escalated => pb::EventType::RequestEscalated,
        EventKind::Erased => pb::EventType::RequestErased,
    }
}

/// The wire form of an event.
pub fn event(record: &RecordedEvent) -> pb::Event {
    let data: serde_json::Value = serde_json::from_str(&record.data).unwrap_or_default();
    pb::Event {
        sequence: record.seq,
        cursor: encode_cursor(record.seq),
        r#type: event_type_to_proto(record.kind).into(),
        occur_time: Some(timestamp(record.occurred_at)),
        actor: record.actor.clone(),
        access_request: record.access_request.name(),
        state: state_to_proto(record.state).into(),
        reason: data["reason"]
            .as_str()
            .or_else(|| data["error"].as_str())
            .unwrap_or_default()
            .to_owned(),
        automatic: data["automatic"].as_bool().unwrap_or(false),
        hash: record.hash.clone(),
        rule_id: if data["automatic"].as_bool() == Some(true) {
            data["rule"].as_str().unwrap_or_default().to_owned()
        } else {
            String::new()
        },
    }
}
