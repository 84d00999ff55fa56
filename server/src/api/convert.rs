//! Conversions between protobuf messages and domain values. No rules live
//! here: validation is the domain's.

use chrono::{DateTime, Utc};
use prost_types::Timestamp;
use sesame_proto::v1 as pb;

use crate::domain::policy::{Evaluation, Outcome};
use crate::domain::validation::{EnumInput, RawApplicant, RawConsent, RawSubmission, Validator};
use crate::domain::{AccessRequest, CodeState, CodeStatus, EventKind, State, UserType};
pub use crate::events::wire::{event, event_type_to_proto, state_to_proto, timestamp};

/// A protobuf duration.
pub fn duration(span: std::time::Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: i64::try_from(span.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(span.subsec_nanos()).unwrap_or(0),
    }
}

/// A time from an optional protobuf timestamp; out-of-range values are
/// recorded as violations of `field`.
pub fn optional_time(
    check: &mut Validator,
    field: &str,
    value: Option<&Timestamp>,
) -> Option<DateTime<Utc>> {
    let value = value?;
    let nanos = u32::try_from(value.nanos)
        .ok()
        .filter(|n| *n < 1_000_000_000);
    let time = nanos.and_then(|nanos| DateTime::from_timestamp(value.seconds, nanos));
    if time.is_none() {
        check.violation(field, "is not a valid timestamp");
    }
    time
}

/// A state filter as received.
pub fn state_input(raw: i32) -> EnumInput<State> {
    match pb::AccessRequestState::try_from(raw) {
        Ok(pb::AccessRequestState::Unspecified) => EnumInput::Unset,
        Ok(pb::AccessRequestState::Pending) => EnumInput::Value(State::Pending),
        Ok(pb::AccessRequestState::Approved) => EnumInput::Value(State::Approved),
        Ok(pb::AccessRequestState::Rejected) => EnumInput::Value(State::Rejected),
        Ok(pb::AccessRequestState::Cancelled) => EnumInput::Value(State::Cancelled),
        Ok(pb::AccessRequestState::Expired) => EnumInput::Value(State::Expired),
        Err(_) => EnumInput::Unknown(raw),
    }
}

/// The wire enum of a user type.
pub fn user_type_to_proto(user_type: UserType) -> pb::UserType {
    match user_type {
        UserType::Employee => pb::UserType::Employee,
        UserType::Partner => pb::UserType::Partner,
        UserType::Customer => pb::UserType::Customer,
        UserType::Contractor => pb::UserType::Contractor,
    }
}

/// A user type as received.
pub fn user_type_input(raw: i32) -> EnumInput<UserType> {
    match pb::UserType::try_from(raw) {
        Ok(pb::UserType::Unspecified) => EnumInput::Unset,
        Ok(pb::UserType::Employee) => EnumInput::Value(UserType::Employee),
        Ok(pb::UserType::Partner) => EnumInput::Value(UserType::Partner),
        Ok(pb::UserType::Customer) => EnumInput::Value(UserType::Customer),
        Ok(pb::UserType::Contractor) => EnumInput::Value(UserType::Contractor),
        Err(_) => EnumInput::Unknown(raw),
    }
}

/// A submission message as raw domain input.
pub fn raw_submission(message: pb::SubmitAccessRequestRequest) -> RawSubmission {
    RawSubmission {
        applicant: message.applicant.map(|applicant| RawApplicant {
            email: applicant.email,
            full_name: applicant.full_name,
            organization: applicant.organization,
            phone: applicant.phone,
        }),
        user_type: user_type_input(message.user_type),
        locale: message.locale,
        resource: message.resource,
        justification: message.justification,
        consent: message.consent.map(|consent| RawConsent {
            version: consent.version,
            purposes: consent.purposes,
        }),
        request_id: message.request_id,
    }
}

/// The wire form of a gateway code's status.
pub fn code_status(status: &CodeStatus) -> pb::GatewayCodeStatus {
    let state = match status.state {
        CodeState::Active => pb::GatewayCodeState::Active,
        CodeState::Redeemed => pb::GatewayCodeState::Redeemed,
        CodeState::Revoked => pb::GatewayCodeState::Revoked,
        CodeState::Expired => pb::GatewayCodeState::Expired,
    };
    pb::GatewayCodeStatus {
        state: state.into(),
        issue_time: Some(timestamp(status.issued_at)),
        expire_time: Some(timestamp(status.expires_at)),
        redeem_time: status.redeemed_at.map(timestamp),
        redeemed_by: status.redeemed_by.clone().unwrap_or_default(),
        failed_attempts: status.failed_attempts,
    }
}

/// The wire form of a request, with its latest gateway code's status.
pub fn access_request(request: &AccessRequest, code: Option<&CodeStatus>) -> pb::AccessRequest {
    pb::AccessRequest {
        name: request.id.name(),
        applicant: Some(pb::Applicant {
            email: request.applicant.email.clone(),
            full_name: request.applicant.full_name.clone(),
            organization: request.applicant.organization.clone(),
            phone: request.applicant.phone.clone().unwrap_or_default(),
        }),
        user_type: user_type_to_proto(request.user_type).into(),
        locale: request.locale.as_str().to_owned(),
        resource: request.resource.clone(),
        justification: request.justification.clone(),
        consent: Some(pb::Consent {
            version: request.consent.version.clone(),
            purposes: request.consent.purposes.clone(),
            grant_time: Some(timestamp(request.created_at)),
        }),
        state: state_to_proto(request.state).into(),
        decision: request.decision.as_ref().map(|decision| pb::Decision {
            actor: decision.actor.clone(),
            decide_time: Some(timestamp(decision.decided_at)),
            reason: decision.reason.clone().unwrap_or_default(),
            automatic: decision.automatic,
        }),
        submitter: request.submitter.clone(),
        request_id: request.request_id.clone().unwrap_or_default(),
        create_time: Some(timestamp(request.created_at)),
        update_time: Some(timestamp(request.updated_at)),
        etag: request.etag(),
        gateway_code: code.map(code_status),
        policy: Some(pb::PolicyVerdict {
            rule_id: request.review.rule.clone().unwrap_or_default(),
            explanation: request.review.explanation.clone().unwrap_or_default(),
            required_approvals: i32::try_from(request.review.required_approvals).unwrap_or(1),
            approved_by: request.review.approvals.clone(),
            matched: Default::default(),
        }),
    }
}

/// The wire form of a policy evaluation (ExplainDecision).
pub fn explanation(evaluation: &Evaluation) -> pb::ExplainDecisionResponse {
    let (action, reject_reason, approvals) = match &evaluation.outcome {
        Outcome::Approve => (pb::PolicyAction::Approve, String::new(), 1),
        Outcome::Reject { reason } => (pb::PolicyAction::Reject, reason.clone(), 1),
        Outcome::Review { approvals } => {
            (pb::PolicyAction::RequireReview, String::new(), *approvals)
        }
    };
    pb::ExplainDecisionResponse {
        action: action.into(),
        verdict: Some(pb::PolicyVerdict {
            rule_id: evaluation.rule.clone().unwrap_or_default(),
            explanation: evaluation.explanation(),
            required_approvals: i32::try_from(approvals).unwrap_or(1),
            approved_by: Vec::new(),
            matched: evaluation.matched.clone().into_iter().collect(),
        }),
        reject_reason,
    }
}

/// Event type filters as received: every value must be a known type.
pub fn event_types_input(check: &mut Validator, field: &str, raw: &[i32]) -> Vec<EventKind> {
    let mut kinds = Vec::with_capacity(raw.len());
    for (index, value) in raw.iter().enumerate() {
        let kind = match pb::EventType::try_from(*value) {
            Ok(pb::EventType::RequestSubmitted) => Some(EventKind::Submitted),
            Ok(pb::EventType::RequestApproved) => Some(EventKind::Approved),
            Ok(pb::EventType::RequestRejected) => Some(EventKind::Rejected),
            Ok(pb::EventType::RequestCancelled) => Some(EventKind::Cancelled),
            Ok(pb::EventType::RequestExpired) => Some(EventKind::Expired),
            Ok(pb::EventType::EmailSent) => Some(EventKind::EmailSent),
            Ok(pb::EventType::EmailFailed) => Some(EventKind::EmailFailed),
            Ok(pb::EventType::EmailDead) => Some(EventKind::EmailDead),
            Ok(pb::EventType::EmailRequeued) => Some(EventKind::EmailRequeued),
            Ok(pb::EventType::EmailDelivered) => Some(EventKind::EmailDelivered),
            Ok(pb::EventType::EmailDeliveryDelayed) => Some(EventKind::EmailDeliveryDelayed),
            Ok(pb::EventType::EmailBounced) => Some(EventKind::EmailBounced),
            Ok(pb::EventType::EmailComplained) => Some(EventKind::EmailComplained),
            Ok(pb::EventType::EmailSuppressed) => Some(EventKind::EmailSuppressed),
            Ok(pb::EventType::EmailSuppressionLifted) => Some(EventKind::SuppressionLifted),
            Ok(pb::EventType::CodeIssued) => Some(EventKind::CodeIssued),
            Ok(pb::EventType::CodeRedeemed) => Some(EventKind::CodeRedeemed),
            Ok(pb::EventType::CodeRevoked) => Some(EventKind::CodeRevoked),
            Ok(pb::EventType::CodeRedemptionFailed) => Some(EventKind::CodeRedemptionFailed),
            Ok(pb::EventType::RequestApprovalRecorded) => Some(EventKind::ApprovalRecorded),
            Ok(pb::EventType::RequestReminded) => Some(EventKind::Reminded),
            Ok(pb::EventType::RequestEscalated) => Some(EventKind::Escalated),
            Ok(pb::EventType::RequestErased) => Some(EventKind::Erased),
            Ok(pb::EventType::Unspecified) | Err(_) => None,
        };
        match kind {
            Some(kind) if !kinds.contains(&kind) => kinds.push(kind),
            Some(_) => {}
            None => check.violation(
                format!("{field}[{index}]"),
                format!("unknown event type {value}"),
            ),
        }
    }
    kinds
}
