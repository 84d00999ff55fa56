//! The one place where errors of every layer become `tonic::Status`, with
//! an AIP-193 `ErrorInfo` (domain `sesame.dev`) and, for bad input, a
//! `BadRequest` listing every invalid field. Database text never leaves:
//! internal errors are logged here and answered with a bare message.

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};
use tracing::{error, warn};

use crate::auth::{AuthError, Forbidden};
use crate::domain::{CodeFormatError, DomainError, RedeemError, Violations, encode_cursor};
use crate::events::{WatchEnd, WatchError};
use crate::limits::{LimitError, OVERLOAD_RETRY_AFTER};
use crate::store::StoreError;
use crate::store::storage::StorageProblem;

/// The ErrorInfo domain of every Sesame error.
pub const ERROR_DOMAIN: &str = "sesame.dev";

/// A status with an ErrorInfo carrying `reason` and `metadata`.
pub fn with_reason(
    code: Code,
    message: impl Into<String>,
    reason: &str,
    metadata: HashMap<String, String>,
) -> Status {
    let details = ErrorDetails::with_error_info(reason, ERROR_DOMAIN, metadata);
    Status::with_error_details(code, message, details)
}

fn plain(code: Code, message: impl Into<String>, reason: &str) -> Status {
    with_reason(code, message, reason, HashMap::new())
}

/// INVALID_ARGUMENT for one bad `field`, with its BadRequest and `reason`.
pub fn bad_field(
    field: &str,
    description: &str,
    reason: &str,
    message: impl Into<String>,
) -> Status {
    let mut details = ErrorDetails::with_bad_request(vec![FieldViolation::new(field, description)]);
    details.set_error_info(reason, ERROR_DOMAIN, HashMap::new());
    Status::with_error_details(Code::InvalidArgument, message, details)
}

/// RESOURCE_EXHAUSTED with `reason` and a RetryInfo saying when to come back.
fn retry_later(
    message: impl Into<String>,
    reason: &str,
    retry_after: std::time::Duration,
) -> Status {
    retry_with(Code::ResourceExhausted, message, reason, retry_after)
}

/// `code` with `reason` and a RetryInfo saying when to come back.
fn retry_with(
    code: Code,
    message: impl Into<String>,
    reason: &str,
    retry_after: std::time::Duration,
) -> Status {
    let mut details = ErrorDetails::with_retry_info(Some(retry_after));
    details.set_error_info(reason, ERROR_DOMAIN, HashMap::new());
    Status::with_error_details(code, message, details)
}

impl From<LimitError> for Status {
    fn from(error: LimitError) -> Self {
        let message = error.to_string();
        match error {
            LimitError::PeerRateLimited(retry_after) => retry_later(
                format!("{message}; retry in {} ms", retry_after.as_millis().max(1)),
                "PEER_RATE_LIMITED",
                retry_after,
            ),
            // UNAVAILABLE: nothing was done, and clients retry it with
            // backoff; the calls ahead of one would outlast its deadline
            // is the same overload, seen earlier.
            LimitError::Overloaded { .. } | LimitError::DeadlineUnreachable { .. } => retry_with(
                Code::Unavailable,
                format!(
                    "{message}; retry in {} s",
                    OVERLOAD_RETRY_AFTER.as_secs().max(1)
                ),
                "SERVER_OVERLOADED",
                OVERLOAD_RETRY_AFTER,
            ),
            LimitError::DatabaseUnavailable => retry_with(
                Code::Unavailable,
                message,
                "DATABASE_UNAVAILABLE",
                DATABASE_RETRY_AFTER,
            ),
            LimitError::DeadlineExceeded(_) => {
                plain(Code::DeadlineExceeded, message, "DEADLINE_EXCEEDED")
            }
            LimitError::MessageTooLarge { size, limit } => {
                let metadata = HashMap::from([
                    ("size".to_owned(), size.to_string()),
                    ("limit".to_owned(), limit.to_string()),
                ]);
                with_reason(
                    Code::ResourceExhausted,
                    message,
                    "MESSAGE_TOO_LARGE",
                    metadata,
                )
            }
            LimitError::MessageMalformed {
                field: Some(field),
                detail,
            } => bad_field(&field, &detail, "MESSAGE_MALFORMED", message),
            LimitError::MessageMalformed { field: None, .. } => {
                plain(Code::InvalidArgument, message, "MESSAGE_MALFORMED")
            }
        }
    }
}

impl From<Violations> for Status {
    fn from(violations: Violations) -> Self {
        let field_violations: Vec<FieldViolation> = violations
            .as_slice()
            .iter()
            .map(|violation| FieldViolation::new(&violation.field, &violation.description))
            .collect();
        let mut details = ErrorDetails::with_bad_request(field_violations);
        details.set_error_info("INVALID_ARGUMENT", ERROR_DOMAIN, HashMap::new());
        Status::with_error_details(Code::InvalidArgument, violations.to_string(), details)
    }
}

impl From<Forbidden> for Status {
    fn from(forbidden: Forbidden) -> Self {
        let metadata = HashMap::from([("role".to_owned(), forbidden.role.as_str().to_owned())]);
        with_reason(
            Code::PermissionDenied,
            format!("the {} role may not call this method", forbidden.role),
            "ROLE_NOT_ALLOWED",
            metadata,
        )
    }
}

impl From<AuthError> for Status {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::Missing => {
                plain(Code::Unauthenticated, error.to_string(), "API_KEY_MISSING")
            }
            AuthError::Malformed => plain(
                Code::Unauthenticated,
                error.to_string(),
                "API_KEY_MALFORMED",
            ),
            AuthError::Invalid => {
                plain(Code::Unauthenticated, error.to_string(), "API_KEY_INVALID")
            }
            AuthError::Store(store_error) => Status::from(store_error),
            AuthError::RateLimited(retry_after) => retry_later(
                format!("{error}; retry in {} ms", retry_after.as_millis().max(1)),
                "RATE_LIMITED",
                retry_after,
            ),
        }
    }
}

impl From<DomainError> for Status {
    fn from(error: DomainError) -> Self {
        let message = error.to_string();
        let reason = error.reason();
        match error {
            DomainError::Transition(transition) => {
                let metadata =
                    HashMap::from([("state".to_owned(), transition.from.as_str().to_uppercase())]);
                with_reason(Code::FailedPrecondition, message, reason, metadata)
            }
            DomainError::EtagMismatch => plain(
                Code::Aborted,
                format!("{message}: read it again and retry"),
                reason,
            ),
            DomainError::RequestIdReused => plain(Code::AlreadyExists, message, reason),
            DomainError::SelfApproval => plain(Code::PermissionDenied, message, reason),
            DomainError::ConsentRequired { missing } => {
                let description = format!(
                    "must include the purposes this service requires consent to: {}",
                    missing.join(", ")
                );
                bad_field("consent.purposes", &description, reason, message)
            }
            DomainError::AlreadyApproved
            | DomainError::CodeNotActive
            | DomainError::CodeUsed
            | DomainError::RequestNotApproved
            | DomainError::Erased
            | DomainError::EmailNotDead(_) => plain(Code::FailedPrecondition, message, reason),
        }
    }
}

impl From<StoreError> for Status {
    fn from(error: StoreError) -> Self {
        let message = error.to_string();
        match error {
            StoreError::Refused(refused) => Status::from(refused),
            StoreError::NotFound => plain(Code::NotFound, message, "REQUEST_NOT_FOUND"),
            StoreError::NotOwner => plain(Code::PermissionDenied, message, "NOT_REQUEST_OWNER"),
            StoreError::InvalidPageToken(_) => bad_field(
                "page_token",
                &message,
                "PAGE_TOKEN_INVALID",
                message.clone(),
            ),
            StoreError::ApiKeyNotFound(_) => plain(Code::NotFound, message, "API_KEY_NOT_FOUND"),
            StoreError::ApiKeyNameTaken(_) => {
                plain(Code::AlreadyExists, message, "API_KEY_NAME_TAKEN")
            }
            StoreError::Unavailable(source) => {
                warn!(error = %source, "database unavailable");
                retry_with(
                    Code::Unavailable,
                    "the database is unavailable, retry later",
                    "DATABASE_UNAVAILABLE",
                    DATABASE_RETRY_AFTER,
                )
            }
            // Logged (rate-limited) where it was recognised.
            StoreError::Storage { problem, .. } => storage_refused(problem),
            StoreError::Database(source) => {
                error!(error = %source, "database error");
                internal()
            }
            StoreError::LeaseLost => plain(Code::Aborted, message, "LEASE_LOST"),
            StoreError::EmailNotFound => plain(Code::NotFound, message, "EMAIL_NOT_FOUND"),
            StoreError::SuppressionNotFound => {
                plain(Code::NotFound, message, "SUPPRESSION_NOT_FOUND")
            }
            StoreError::Corrupt(what) => {
                error!(what = %what, "inconsistent stored data");
                internal()
            }
        }
    }
}

/// When to retry a call the database could not serve.
pub const DATABASE_RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// When to retry a write the storage refused: space rarely returns at once.
pub const STORAGE_RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(10);

/// A write the storage refused: RESOURCE_EXHAUSTED when space or memory ran
/// out, UNAVAILABLE on an I/O error; both with RetryInfo, and nothing of
/// the write kept.
fn storage_refused(problem: StorageProblem) -> Status {
    let (code, reason) = match problem {
        StorageProblem::Full => (Code::ResourceExhausted, "STORAGE_FULL"),
        StorageProblem::OutOfMemory => (Code::ResourceExhausted, "DATABASE_OUT_OF_MEMORY"),
        StorageProblem::IoError => (Code::Unavailable, "STORAGE_IO_ERROR"),
    };
    retry_with(
        code,
        format!(
            "{problem}: nothing was written; reads still work; retry in {} s",
            STORAGE_RETRY_AFTER.as_secs()
        ),
        reason,
        STORAGE_RETRY_AFTER,
    )
}

/// INTERNAL with nothing of the cause: it was logged where it is known.
pub fn internal() -> Status {
    plain(Code::Internal, "internal error", "INTERNAL")
}

/// An export about a person Sesame holds nothing about.
pub fn subject_not_found() -> Status {
    plain(
        Code::NotFound,
        "Sesame holds no personal data about this email address",
        "SUBJECT_NOT_FOUND",
    )
}

/// A redemption whose `code` is not a gateway code at all.
pub fn code_malformed(error: &CodeFormatError) -> Status {
    bad_field(
        "code",
        &error.to_string(),
        "GATEWAY_CODE_MALFORMED",
        format!("code: {error}"),
    )
}

/// A gateway that failed too many redemptions lately, with how long to wait
/// (AIP-193 RetryInfo).
pub fn too_many_failed_redemptions(retry_after: std::time::Duration) -> Status {
    retry_later(
        format!(
            "too many failed redemptions from this key; retry in {} s",
            retry_after.as_secs().max(1)
        ),
        "TOO_MANY_FAILED_REDEMPTIONS",
        retry_after,
    )
}

impl From<RedeemError> for Status {
    fn from(error: RedeemError) -> Self {
        let message = error.to_string();
        match error {
            RedeemError::NotFound => plain(Code::NotFound, message, "GATEWAY_CODE_NOT_FOUND"),
            RedeemError::Used => plain(Code::FailedPrecondition, message, "GATEWAY_CODE_USED"),
            RedeemError::Revoked => {
                plain(Code::FailedPrecondition, message, "GATEWAY_CODE_REVOKED")
            }
            RedeemError::Expired => {
                plain(Code::FailedPrecondition, message, "GATEWAY_CODE_EXPIRED")
            }
            RedeemError::ResourceNotAllowed { .. } => plain(
                Code::PermissionDenied,
                message,
                "GATEWAY_RESOURCE_NOT_ALLOWED",
            ),
        }
    }
}

/// A WatchEvents `after` that is not a cursor this service issued.
pub fn cursor_invalid() -> Status {
    bad_field(
        "after",
        "is not a cursor returned by this service",
        "CURSOR_INVALID",
        "after is not a cursor returned by this service",
    )
}

impl From<WatchError> for Status {
    fn from(error: WatchError) -> Self {
        let message = error.to_string();
        match error {
            WatchError::CursorAhead { head } => {
                let metadata = HashMap::from([("head".to_owned(), encode_cursor(head))]);
                with_reason(Code::InvalidArgument, message, "CURSOR_INVALID", metadata)
            }
            WatchError::CursorExpired { .. } => plain(Code::OutOfRange, message, "CURSOR_EXPIRED"),
            WatchError::Store(store_error) => Status::from(store_error),
        }
    }
}

impl From<WatchEnd> for Status {
    fn from(end: WatchEnd) -> Self {
        match end {
            WatchEnd::TooSlow { cursor, lag } => {
                let metadata = HashMap::from([
                    ("cursor".to_owned(), encode_cursor(cursor)),
                    ("lag".to_owned(), lag.to_string()),
                ]);
                with_reason(
                    Code::ResourceExhausted,
                    format!("the watcher fell {lag} events behind; resume from the cursor"),
                    "WATCHER_TOO_SLOW",
                    metadata,
                )
            }
            WatchEnd::KeyRevoked { cursor } => {
                let metadata = HashMap::from([("cursor".to_owned(), encode_cursor(cursor))]);
                with_reason(
                    Code::Unauthenticated,
                    "the API key of this stream was revoked",
                    "API_KEY_INVALID",
                    metadata,
                )
            }
            WatchEnd::ShuttingDown { cursor } => {
                let metadata = HashMap::from([("cursor".to_owned(), encode_cursor(cursor))]);
                with_reason(
                    Code::Unavailable,
                    "the server is shutting down; resume from the cursor on another server",
                    "SERVER_SHUTTING_DOWN",
                    metadata,
                )
            }
            WatchEnd::Failed { cursor, error } => {
                let status = Status::from(error);
                let metadata = HashMap::from([("cursor".to_owned(), encode_cursor(cursor))]);
                let reason = status
                    .get_error_details()
                    .error_info()
                    .map(|info| info.reason.clone())
                    .unwrap_or_else(|| "INTERNAL".to_owned());
                with_reason(status.code(), status.message(), &reason, metadata)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tonic_types::StatusExt;

    use super::*;

    fn reason_and_retry(status: &Status) -> (String, Option<std::time::Duration>) {
        let details = status.get_error_details();
        (
            details
                .error_info()
                .map(|info| info.reason.clone())
                .unwrap_or_default(),
            details.retry_info().and_then(|retry| retry.retry_delay),
        )
    }

    #[test]
    fn a_full_storage_is_resource_exhausted_with_retry_info_and_no_database_text() {
        for (problem, code, reason) in [
            (
                StorageProblem::Full,
                Code::ResourceExhausted,
                "STORAGE_FULL",
            ),
            (
                StorageProblem::OutOfMemory,
                Code::ResourceExhausted,
                "DATABASE_OUT_OF_MEMORY",
            ),
            (
                StorageProblem::IoError,
                Code::Unavailable,
                "STORAGE_IO_ERROR",
            ),
        ] {
            let status = Status::from(StoreError::Storage {
                problem,
                source: sea_orm::DbErr::Custom("database or disk is full (code 13)".into()),
            });
            assert_eq!(status.code(), code);
            assert_eq!(
                reason_and_retry(&status),
                (reason.to_owned(), Some(STORAGE_RETRY_AFTER))
            );
            assert!(status.message().contains("nothing was written"));
            assert!(!status.message().contains("code 13"));
        }
    }

    #[test]
    fn an_unreachable_database_is_unavailable_with_retry_info() {
        let status = Status::from(StoreError::Unavailable(sea_orm::DbErr::Custom(
            "connection refused".into(),
        )));
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(
            reason_and_retry(&status),
            (
                "DATABASE_UNAVAILABLE".to_owned(),
                Some(DATABASE_RETRY_AFTER)
            )
        );
    }
}
