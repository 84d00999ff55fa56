//! Reading Sesame's AIP-193 error details out of a `tonic::Status`.

use tonic::Status;
use tonic_types::StatusExt;

/// The `ErrorInfo.reason` of an error returned by Sesame (for example
/// `INVALID_ARGUMENT`, `REQUEST_NOT_FOUND`, `ETAG_MISMATCH`; the README lists
/// them); `None` for a status that did not come from the server, such as a
/// broken connection.
pub fn error_reason(status: &Status) -> Option<String> {
    status
        .get_error_details()
        .error_info()
        .filter(|info| info.domain == "sesame.dev")
        .map(|info| info.reason.clone())
}

/// The `(field, description)` pairs of the `BadRequest` detail: every invalid
/// field of the request, not only the first.
pub fn field_violations(status: &Status) -> Vec<(String, String)> {
    status
        .get_error_details()
        .bad_request()
        .map(|bad| {
            bad.field_violations
                .iter()
                .map(|v| (v.field.clone(), v.description.clone()))
                .collect()
        })
        .unwrap_or_default()
}
