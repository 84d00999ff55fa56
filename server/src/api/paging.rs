//! The argument checks shared by every List RPC: page size (AIP-158) and a
//! time range. Page tokens, whatever their length, are left to the store,
//! which refuses any it did not sign (PAGE_TOKEN_INVALID) by checking their
//! MAC before reading them; `max_decoding_message_bytes` bounds that work.

use chrono::{DateTime, Utc};
use prost_types::Timestamp;

use super::convert;
use crate::domain::validation::Validator;

/// Page size when the caller sends 0.
pub const DEFAULT_PAGE_SIZE: u32 = 50;
/// Largest page served; larger requests are coerced (AIP-158).
pub const MAX_PAGE_SIZE: u32 = 500;

/// Page size and token of a List call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Paging<'a> {
    pub page_size: u32,
    /// `None` for the first page.
    pub page_token: Option<&'a str>,
}

/// Checks `page_size` (negative refused, 0 means the default, above the
/// maximum coerced).
pub fn paging<'a>(check: &mut Validator, page_size: i32, page_token: &'a str) -> Paging<'a> {
    let page_size = match page_size {
        size if size < 0 => {
            check.violation("page_size", "must not be negative");
            DEFAULT_PAGE_SIZE
        }
        0 => DEFAULT_PAGE_SIZE,
        size => u32::try_from(size)
            .unwrap_or(MAX_PAGE_SIZE)
            .min(MAX_PAGE_SIZE),
    };
    Paging {
        page_size,
        page_token: Some(page_token).filter(|token| !token.is_empty()),
    }
}

/// Checks an optional `[start, end)` range given as two timestamp fields.
pub fn time_range(
    check: &mut Validator,
    (start_field, start): (&str, Option<&Timestamp>),
    (end_field, end): (&str, Option<&Timestamp>),
) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
    let from = convert::optional_time(check, start_field, start);
    let before = convert::optional_time(check, end_field, end);
    if let (Some(from), Some(before)) = (from, before)
        && from >= before
    {
        check.violation(end_field, format!("must be after {start_field}"));
    }
    (from, before)
}
