//! Why the business refuses an operation: one enum for every refusal of
//! the domain, mapped to a gRPC status in `api/status.rs` alone. Failures
//! to persist are the store's `StoreError`, not these.

use super::TransitionError;
use super::request::DecisionError;

/// A business operation the rules refuse. Nothing was written.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// The request's state allows no such change.
    #[error(transparent)]
    Transition(#[from] TransitionError),
    /// The key that submitted a request may not approve it: always when a
    /// rule put it under review, otherwise unless `allow_self_approval`.
    #[error("the key that submitted a request may not approve it (separation of duties)")]
    SelfApproval,
    /// A second approval by the same administrator.
    #[error("this administrator already approved the request")]
    AlreadyApproved,
    /// The caller decided on a version of the request that is not current.
    #[error("the etag does not match the current version of the access request")]
    EtagMismatch,
    /// The idempotency key names another payload.
    #[error("request_id was already used with a different payload")]
    RequestIdReused,
    /// The submission lacks consent to purposes the service requires.
    #[error(
        "consent.purposes must include the purposes this service requires consent to: {}",
        .missing.join(", ")
    )]
    ConsentRequired {
        /// The required purposes missing, in the configured order.
        missing: Vec<String>,
    },
    /// Revoking needs a live code.
    #[error("the request has no active gateway code")]
    CodeNotActive,
    /// A redeemed code is never replaced.
    #[error("the request's gateway code was already redeemed")]
    CodeUsed,
    /// Codes exist for approved requests only.
    #[error("the access request is not approved")]
    RequestNotApproved,
    /// The applicant was erased: the record is anonymous and final.
    #[error("the applicant's personal data was erased; the request can no longer change")]
    Erased,
    /// RetryEmail on an email that is pending or sent.
    #[error("only a dead email can be retried; this one is {0}")]
    EmailNotDead(String),
}

impl From<DecisionError> for DomainError {
    fn from(error: DecisionError) -> Self {
        match error {
            DecisionError::Transition(transition) => DomainError::Transition(transition),
            DecisionError::SelfApproval => DomainError::SelfApproval,
            DecisionError::AlreadyApproved => DomainError::AlreadyApproved,
        }
    }
}

impl DomainError {
    /// The machine-readable reason (AIP-193 ErrorInfo) of this refusal.
    pub fn reason(&self) -> &'static str {
        match self {
            DomainError::Transition(transition) => transition.reason(),
            DomainError::SelfApproval => "SELF_APPROVAL",
            DomainError::AlreadyApproved => "ALREADY_APPROVED_BY_CALLER",
            DomainError::EtagMismatch => "ETAG_MISMATCH",
            DomainError::RequestIdReused => "REQUEST_ID_REUSED",
            DomainError::ConsentRequired { .. } => "CONSENT_REQUIRED",
            DomainError::CodeNotActive => "GATEWAY_CODE_NOT_ACTIVE",
            DomainError::CodeUsed => "GATEWAY_CODE_USED",
            DomainError::RequestNotApproved => "REQUEST_NOT_APPROVED",
            DomainError::Erased => "SUBJECT_ERASED",
            DomainError::EmailNotDead(_) => "EMAIL_NOT_DEAD",
        }
    }
}
