//! Input validation: turns untrusted text into domain values or lists every
//! problem at once, so one round trip tells a caller all it got wrong.
//!
//! Text is normalised to Unicode NFC and trimmed before it is measured;
//! control characters and bidirectional overrides (which can disguise text
//! shown to administrators) are refused.

use std::collections::HashSet;
use std::fmt;

use email_address::{EmailAddress, Options as EmailOptions};
use unicode_normalization::UnicodeNormalization;

use super::{AccessRequestId, Applicant, Consent, Locale, NewAccessRequest, UserType};

/// Longest email address accepted (RFC 5321 path limit less the brackets).
pub const MAX_EMAIL_CHARS: usize = 254;
/// Longest name or organisation accepted.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest resource (gateway) identifier accepted.
pub const MAX_RESOURCE_CHARS: usize = 200;
/// Longest justification accepted.
pub const MAX_JUSTIFICATION_CHARS: usize = 2000;
/// Longest decision note or reason accepted.
pub const MAX_REASON_CHARS: usize = 1000;
/// Longest consent version accepted.
pub const MAX_CONSENT_VERSION_CHARS: usize = 64;
/// Most consent purposes accepted.
pub const MAX_PURPOSES: usize = 16;
/// Longest consent purpose accepted.
pub const MAX_PURPOSE_CHARS: usize = 64;
/// Longest idempotency key accepted.
pub const MAX_REQUEST_ID_CHARS: usize = 128;
/// Longest phone number accepted, formatting included.
pub const MAX_PHONE_CHARS: usize = 32;

/// One invalid field: its path in the request message and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldViolation {
    /// Path of the field, e.g. `applicant.email` or `consent.purposes[2]`.
    pub field: String,
    /// What is wrong, written for the caller's developer.
    pub description: String,
}

/// Every invalid field of one request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Violations(Vec<FieldViolation>);

impl fmt::Display for Violations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.0.len();
        write!(
            f,
            "{count} invalid field{}: ",
            if count == 1 { "" } else { "s" }
        )?;
        for (index, violation) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {}", violation.field, violation.description)?;
        }
        Ok(())
    }
}

impl std::error::Error for Violations {}

impl Violations {
    /// The violations, in the order the fields were checked.
    pub fn as_slice(&self) -> &[FieldViolation] {
        &self.0
    }
}

/// A protobuf enum field as received: unset, a value this server does not
/// know, or a known value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnumInput<T> {
    Unset,
    Unknown(i32),
    Value(T),
}

/// Rules for one free-text field.
#[derive(Clone, Copy, Debug)]
pub struct TextRule {
    pub required: bool,
    pub max_chars: usize,
    /// Allows line feeds and tabs (carriage returns are folded into line feeds).
    pub multiline: bool,
}

impl TextRule {
    /// A required single-line field of at most `max_chars` characters.
    pub const fn required(max_chars: usize) -> Self {
        Self {
            required: true,
            max_chars,
            multiline: false,
        }
    }

    /// An optional single-line field of at most `max_chars` characters.
    pub const fn optional(max_chars: usize) -> Self {
        Self {
            required: false,
            max_chars,
            multiline: false,
        }
    }

    /// The same rule, allowing line breaks and tabs.
    pub const fn multiline(self) -> Self {
        Self {
            multiline: true,
            ..self
        }
    }
}

/// Collects violations while fields are checked one by one.
#[derive(Debug, Default)]
pub struct Validator {
    violations: Violations,
}

impl Validator {
    /// Starts with no violation.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a violation on `field`.
    pub fn violation(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.violations.0.push(FieldViolation {
            field: field.into(),
            description: description.into(),
        });
    }

    /// `Ok(())` when nothing was recorded, else every violation.
    pub fn finish(self) -> Result<(), Violations> {
        if self.violations.0.is_empty() {
            Ok(())
        } else {
            Err(self.violations)
        }
    }

    /// Normalises and checks a free-text field; `None` when it is empty and
    /// optional, or invalid (then a violation is recorded).
    pub fn text(&mut self, field: &str, raw: &str, rule: TextRule) -> Option<String> {
        let normalized: String = raw.nfc().collect();
        let folded = if rule.multiline {
            normalized.replace("\r\n", "\n").replace('\r', "\n")
        } else {
            normalized
        };
        let value = folded.trim();
        if value.is_empty() {
            if rule.required {
                self.violation(field, "is required");
            }
            return None;
        }
        if let Some(bad) = value.chars().find(|c| is_forbidden(*c, rule.multiline)) {
            let what = if rule.multiline {
                "control characters other than line breaks and tabs"
            } else {
                "control characters or line breaks"
            };
            self.violation(
                field,
                format!(
                    "must not contain {what} or bidirectional overrides (found U+{:04X})",
                    bad as u32
                ),
            );
            return None;
        }
        let length = value.chars().count();
        if length > rule.max_chars {
            self.violation(
                field,
                format!(
                    "must be at most {} characters, got {length}",
                    rule.max_chars
                ),
            );
            return None;
        }
        Some(value.to_owned())
    }

    /// Checks a resource name `accessRequests/{uuid}`.
    pub fn name(&mut self, field: &str, raw: &str) -> Option<AccessRequestId> {
        if raw.is_empty() {
            self.violation(field, "is required");
            return None;
        }
        match AccessRequestId::from_name(raw) {
            Ok(id) => Some(id),
            Err(error) => {
                self.violation(field, error.to_string());
                None
            }
        }
    }

    /// Checks a resource name used as a filter: empty means "any".
    pub fn optional_name(&mut self, field: &str, raw: &str) -> Option<AccessRequestId> {
        if raw.is_empty() {
            return None;
        }
        self.name(field, raw)
    }

    /// Checks a protobuf enum that must be set to a known value.
    pub fn required_enum<T: Copy>(&mut self, field: &str, input: EnumInput<T>) -> Option<T> {
        match input {
            EnumInput::Value(value) => Some(value),
            EnumInput::Unset => {
                self.violation(field, "is required");
                None
            }
            EnumInput::Unknown(raw) => {
                self.violation(field, format!("unknown enum value {raw}"));
                None
            }
        }
    }

    /// Checks a protobuf enum used as a filter: unset means "any".
    pub fn optional_enum<T: Copy>(&mut self, field: &str, input: EnumInput<T>) -> Option<T> {
        match input {
            EnumInput::Value(value) => Some(value),
            EnumInput::Unset => None,
            EnumInput::Unknown(raw) => {
                self.violation(field, format!("unknown enum value {raw}"));
                None
            }
        }
    }

    /// Checks an email address (one addr-spec, dotted domain, no display
    /// text); `None` when invalid.
    pub fn email(&mut self, field: &str, raw: &str) -> Option<String> {
        let value = self.text(field, raw, TextRule::required(MAX_EMAIL_CHARS))?;
        let options = EmailOptions {
            minimum_sub_domains: 2,
            allow_domain_literal: false,
            allow_display_text: false,
            ..EmailOptions::default()
        };
        match EmailAddress::parse_with_options(&value, options) {
            Ok(address) => {
                // Domains are case-insensitive; the local part is left as given.
                Some(format!(
                    "{}@{}",
                    address.local_part(),
                    address.domain().to_lowercase()
                ))
            }
            Err(error) => {
                self.violation(field, format!("is not a valid email address: {error}"));
                None
            }
        }
    }

    fn phone(&mut self, field: &str, raw: &str) -> Option<String> {
        let value = self.text(field, raw, TextRule::optional(MAX_PHONE_CHARS))?;
        let allowed = value.char_indices().all(|(index, c)| {
            c.is_ascii_digit()
                || matches!(c, ' ' | '.' | '-' | '(' | ')')
                || (c == '+' && index == 0)
        });
        let digits = value.chars().filter(char::is_ascii_digit).count();
        if !allowed || !(6..=15).contains(&digits) {
            self.violation(
                field,
                "must be a phone number: digits with an optional leading +, spaces, dots, dashes \
                 and parentheses, 6 to 15 digits",
            );
            return None;
        }
        Some(value)
    }

    fn locale(&mut self, field: &str, raw: &str) -> Option<Locale> {
        let value = raw.trim().to_ascii_lowercase();
        if value.is_empty() {
            return Some(Locale::default());
        }
        let locale = Locale::parse(&value);
        if locale.is_none() {
            let supported: Vec<&str> = Locale::ALL.iter().map(|l| l.as_str()).collect();
            self.violation(field, format!("must be one of: {}", supported.join(", ")));
        }
        locale
    }

    fn purposes(&mut self, field: &str, raw: &[String]) -> Option<Vec<String>> {
        if raw.is_empty() {
            self.violation(field, "at least one purpose is required");
            return None;
        }
        if raw.len() > MAX_PURPOSES {
            self.violation(
                field,
                format!(
                    "must list at most {MAX_PURPOSES} purposes, got {}",
                    raw.len()
                ),
            );
            return None;
        }
        let mut seen = HashSet::new();
        let mut purposes = Vec::with_capacity(raw.len());
        let mut all_valid = true;
        for (index, purpose) in raw.iter().enumerate() {
            let item_field = format!("{field}[{index}]");
            let valid_chars = purpose.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-' | '.')
            });
            if purpose.is_empty() || purpose.len() > MAX_PURPOSE_CHARS || !valid_chars {
                self.violation(
                    item_field,
                    format!(
                        "must be 1 to {MAX_PURPOSE_CHARS} characters from a-z, 0-9, _, - and ."
                    ),
                );
                all_valid = false;
            } else if !seen.insert(purpose.as_str()) {
                self.violation(item_field, format!("duplicates purpose {purpose:?}"));
                all_valid = false;
            } else {
                purposes.push(purpose.clone());
            }
        }
        all_valid.then_some(purposes)
    }

    fn request_id(&mut self, field: &str, raw: &str) -> Option<String> {
        let valid_chars = raw
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'));
        if raw.len() > MAX_REQUEST_ID_CHARS || !valid_chars {
            self.violation(
                field,
                format!(
                    "must be at most {MAX_REQUEST_ID_CHARS} characters from A-Z, a-z, 0-9, ., _, : and -"
                ),
            );
            return None;
        }
        Some(raw.to_owned())
    }
}

fn is_forbidden(c: char, multiline: bool) -> bool {
    let bidi_override = matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}');
    let allowed_whitespace = multiline && matches!(c, '\n' | '\t');
    bidi_override || (c.is_control() && !allowed_whitespace)
}

/// An applicant exactly as received.
#[derive(Clone, Debug, Default)]
pub struct RawApplicant {
    pub email: String,
    pub full_name: String,
    pub organization: String,
    pub phone: String,
}

/// A consent exactly as received.
#[derive(Clone, Debug, Default)]
pub struct RawConsent {
    pub version: String,
    pub purposes: Vec<String>,
}

/// A submission exactly as received.
#[derive(Clone, Debug)]
pub struct RawSubmission {
    pub applicant: Option<RawApplicant>,
    pub user_type: EnumInput<UserType>,
    pub locale: String,
    pub resource: String,
    pub justification: String,
    pub consent: Option<RawConsent>,
    pub request_id: String,
}

/// The applicant of a submission, or its violations recorded in `check`.
fn check_applicant(check: &mut Validator, applicant: Option<&RawApplicant>) -> Option<Applicant> {
    match applicant {
        None => {
            check.violation("applicant", "is required");
            None
        }
        Some(applicant) => {
            let email = check.email("applicant.email", &applicant.email);
            let full_name = check.text(
                "applicant.full_name",
                &applicant.full_name,
                TextRule::required(MAX_NAME_CHARS),
            );
            let organization = check.text(
                "applicant.organization",
                &applicant.organization,
                TextRule::required(MAX_NAME_CHARS),
            );
            let phone_given = !applicant.phone.trim().is_empty();
            let phone = check.phone("applicant.phone", &applicant.phone);
            match (email, full_name, organization) {
                (Some(email), Some(full_name), Some(organization))
                    if phone.is_some() || !phone_given =>
                {
                    Some(Applicant {
                        email,
                        full_name,
                        organization,
                        phone,
                    })
                }
                _ => None,
            }
        }
    }
}

/// The consent of a submission, or its violations recorded in `check`.
fn check_consent(check: &mut Validator, consent: Option<&RawConsent>) -> Option<Consent> {
    match consent {
        None => {
            check.violation(
                "consent",
                "is required: the applicant must consent to processing",
            );
            None
        }
        Some(consent) => {
            let version = check.text(
                "consent.version",
                &consent.version,
                TextRule::required(MAX_CONSENT_VERSION_CHARS),
            );
            let purposes = check.purposes("consent.purposes", &consent.purposes);
            version
                .zip(purposes)
                .map(|(version, purposes)| Consent { version, purposes })
        }
    }
}

/// Validates a submission, listing every invalid field.
pub fn validate_submission(raw: &RawSubmission) -> Result<NewAccessRequest, Violations> {
    let mut check = Validator::new();
    let applicant = check_applicant(&mut check, raw.applicant.as_ref());
    let user_type = check.required_enum("user_type", raw.user_type);
    let locale = check.locale("locale", &raw.locale);
    let resource = check.text(
        "resource",
        &raw.resource,
        TextRule::required(MAX_RESOURCE_CHARS),
    );
    let justification = check.text(
        "justification",
        &raw.justification,
        TextRule::required(MAX_JUSTIFICATION_CHARS).multiline(),
    );
    let consent = check_consent(&mut check, raw.consent.as_ref());
    let request_id = if raw.request_id.is_empty() {
        Some(None)
    } else {
        check.request_id("request_id", &raw.request_id).map(Some)
    };
    check.finish()?;
    // finish() returned Ok, so every field above was valid.
    let (
        Some(applicant),
        Some(user_type),
        Some(locale),
        Some(resource),
        Some(justification),
        Some(consent),
        Some(request_id),
    ) = (
        applicant,
        user_type,
        locale,
        resource,
        justification,
        consent,
        request_id,
    )
    else {
        unreachable!("a field was invalid without a recorded violation");
    };
    Ok(NewAccessRequest {
        applicant,
        user_type,
        locale,
        resource,
        justification,
        consent,
        request_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> RawSubmission {
        RawSubmission {
            applicant: Some(RawApplicant {
                email: "ada@Example.COM".into(),
                full_name: "  Ada Lovelace ".into(),
                organization: "Analytical Engines".into(),
                phone: "+33 (1) 23.45-67-89".into(),
            }),
            user_type: EnumInput::Value(UserType::Partner),
            locale: String::new(),
            resource: "vpn-paris".into(),
            justification: "line one\r\nline two\tend".into(),
            consent: Some(RawConsent {
                version: "2026-01".into(),
                purposes: vec!["access_management".into(), "security.audit".into()],
            }),
            request_id: "0b7d6c1e-retry".into(),
        }
    }

    fn fields(violations: Violations) -> Vec<String> {
        violations.0.into_iter().map(|v| v.field).collect()
    }

    #[test]
    fn a_valid_submission_is_normalised() {
        let submission = validate_submission(&valid()).unwrap();
        assert_eq!(submission.applicant.email, "ada@example.com");
        assert_eq!(submission.applicant.full_name, "Ada Lovelace");
        assert_eq!(
            submission.applicant.phone.as_deref(),
            Some("+33 (1) 23.45-67-89")
        );
        assert_eq!(submission.locale, Locale::En);
        assert_eq!(submission.justification, "line one\nline two\tend");
        assert_eq!(submission.request_id.as_deref(), Some("0b7d6c1e-retry"));
    }

    #[test]
    fn text_is_nfc_normalised() {
        let mut raw = valid();
        // "e" followed by a combining acute accent becomes one "é".
        raw.applicant.as_mut().unwrap().full_name = "Rene\u{301}e".into();
        let submission = validate_submission(&raw).unwrap();
        assert_eq!(submission.applicant.full_name, "Ren\u{e9}e");
    }

    #[test]
    fn every_invalid_field_is_listed_at_once() {
        let raw = RawSubmission {
            applicant: Some(RawApplicant {
                email: "not-an-email".into(),
                full_name: String::new(),
                organization: "x".repeat(MAX_NAME_CHARS + 1),
                phone: "call me".into(),
            }),
            user_type: EnumInput::Unknown(42),
            locale: "de".into(),
            resource: "vpn\u{0007}".into(),
            justification: " ".into(),
            consent: Some(RawConsent {
                version: String::new(),
                purposes: vec!["ok".into(), "Bad Purpose".into(), "ok".into()],
            }),
            request_id: "has space".into(),
        };
        let violations = validate_submission(&raw).unwrap_err();
        assert_eq!(
            fields(violations),
            vec![
                "applicant.email",
                "applicant.full_name",
                "applicant.organization",
                "applicant.phone",
                "user_type",
                "locale",
                "resource",
                "justification",
                "consent.version",
                "consent.purposes[1]",
                "consent.purposes[2]",
                "request_id",
            ]
        );
    }

    #[test]
    fn missing_messages_and_enums_are_required() {
        let raw = RawSubmission {
            applicant: None,
            user_type: EnumInput::Unset,
            consent: None,
            ..valid()
        };
        let violations = validate_submission(&raw).unwrap_err();
        assert_eq!(
            fields(violations),
            vec!["applicant", "user_type", "consent"]
        );
    }

    #[test]
    fn empty_purposes_are_refused() {
        let mut raw = valid();
        raw.consent.as_mut().unwrap().purposes.clear();
        assert_eq!(
            fields(validate_submission(&raw).unwrap_err()),
            vec!["consent.purposes"]
        );
    }

    #[test]
    fn bidi_overrides_and_line_breaks_are_refused_in_single_line_fields() {
        let mut check = Validator::new();
        assert_eq!(
            check.text("a", "evil\u{202E}txt", TextRule::required(10)),
            None
        );
        assert_eq!(check.text("b", "two\nlines", TextRule::required(10)), None);
        assert_eq!(
            check.text("c", "two\nlines", TextRule::required(10).multiline()),
            Some("two\nlines".into())
        );
        assert_eq!(fields(check.finish().unwrap_err()), vec!["a", "b"]);
    }

    #[test]
    fn length_is_counted_in_characters_not_bytes() {
        let mut check = Validator::new();
        let accented = "é".repeat(10);
        assert_eq!(
            check.text("a", &accented, TextRule::required(10)),
            Some(accented.clone())
        );
        assert!(check.finish().is_ok());
    }

    #[test]
    fn emails_need_a_dotted_domain_and_no_display_text() {
        for bad in [
            "ada@localhost",
            "Ada <ada@example.com>",
            "ada@[127.0.0.1]",
            "@example.com",
            "ada@",
            "ada example.com",
        ] {
            let mut check = Validator::new();
            assert_eq!(check.email("email", bad), None, "{bad:?}");
        }
        let too_long = format!("{}@example.com", "a".repeat(250));
        let mut check = Validator::new();
        assert_eq!(check.email("email", &too_long), None);
    }

    #[test]
    fn locales_are_case_insensitive() {
        let mut raw = valid();
        raw.locale = "FR".into();
        assert_eq!(validate_submission(&raw).unwrap().locale, Locale::Fr);
    }

    #[test]
    fn display_lists_each_violation() {
        let mut check = Validator::new();
        check.violation("a", "is required");
        check.violation("b", "is bad");
        let message = check.finish().unwrap_err().to_string();
        assert_eq!(message, "2 invalid fields: a: is required; b: is bad");
    }
}
