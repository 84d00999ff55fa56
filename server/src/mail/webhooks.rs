//! Delivery webhooks of the HTTP email providers (Resend, SendGrid): the
//! signature is verified on the raw body first, then the body is parsed into
//! provider-neutral [`DeliveryReport`]s. Pure functions: no I/O, no clock
//! (the caller passes `now`), no database; deduplication on the event id and
//! the outbox update belong to the caller.
//!
//! - Resend signs with Svix's scheme: an HMAC-SHA256, keyed with the
//!   base64 part of the `whsec_...` secret, over `{svix-id}.{svix-timestamp}.{body}`,
//!   sent as a space-separated list of `v1,<base64>` in `svix-signature`
//!   (several entries while a secret is being rotated).
//! - SendGrid's signed event webhook signs `{timestamp}{body}` with ECDSA
//!   P-256 / SHA-256; the signature (base64 DER) and the timestamp come in
//!   `X-Twilio-Email-Event-Webhook-Signature` and `-Timestamp`, and the
//!   public key is configured as base64 DER (SubjectPublicKeyInfo).
//!
//! Both timestamps must lie within [`TOLERANCE_SECONDS`] of `now`, in either
//! direction, so a captured request cannot be replayed later.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use http::HeaderMap;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;
use serde_json::{Map, Value};
use sha2::Sha256;

/// How far a webhook's timestamp may be from now, in seconds, either way
/// (Svix's own libraries use five minutes; SendGrid documents no window).
pub const TOLERANCE_SECONDS: u64 = 300;

/// The custom value Sesame attaches to every email it hands a provider (a
/// Resend tag, a SendGrid custom arg): the outbox id, so a report can be
/// matched even without the provider's message id.
pub const SESAME_EMAIL_TAG: &str = "sesame_email";

const SVIX_ID: &str = "svix-id";
const SVIX_TIMESTAMP: &str = "svix-timestamp";
const SVIX_SIGNATURE: &str = "svix-signature";
const SENDGRID_SIGNATURE: &str = "x-twilio-email-event-webhook-signature";
const SENDGRID_TIMESTAMP: &str = "x-twilio-email-event-webhook-timestamp";

/// The provider a webhook came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Provider {
    /// resend.com (webhooks through Svix).
    Resend,
    /// SendGrid (Twilio) signed event webhook.
    SendGrid,
}

impl Provider {
    /// The provider's name as stored and shown: `resend` or `sendgrid`.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Resend => "resend",
            Provider::SendGrid => "sendgrid",
        }
    }
}

impl std::fmt::Display for Provider {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// Why a webhook request is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// The request is not proven to come from the provider (missing or bad
    /// signature headers, no matching signature, stale timestamp): HTTP 401.
    #[error("webhook not authenticated: {0}")]
    Unauthorized(String),
    /// The request is authentic but its body cannot be understood: HTTP 400.
    #[error("malformed webhook: {0}")]
    Malformed(String),
}

/// The provider's id of one webhook delivery (Resend's `svix-id`), the same
/// on every retry of that delivery: the key for replay detection.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EventId(String);

impl EventId {
    /// The id as sent by the provider.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id as an owned string.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl std::fmt::Display for EventId {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.0)
    }
}

/// What a provider says happened to one email.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReportKind {
    /// The provider took the email for delivery (Resend `email.sent`,
    /// SendGrid `processed`).
    Accepted,
    /// The recipient's server accepted the email.
    Delivered,
    /// The recipient's server deferred it; the provider keeps trying.
    Delayed,
    /// The recipient's server refused it; `hard` when it will never accept
    /// it (unknown mailbox), soft when a later email may pass (full mailbox,
    /// blocked for reputation).
    Bounced {
        /// Permanent refusal.
        hard: bool,
    },
    /// The recipient marked the email as spam.
    Complained,
    /// An event type Sesame does not act on (opens, clicks, unknown types):
    /// its name, for the log.
    Ignored(String),
}

/// One provider event about one email, in Sesame's words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryReport {
    /// Who sent the report.
    pub provider: Provider,
    /// The provider's id of this event (`svix-id`, `sg_event_id`): the same
    /// when the provider sends the event again.
    pub event_id: String,
    /// The id the provider returned when the email was sent (Resend's email
    /// id, SendGrid's `X-Message-Id`).
    pub provider_message_id: Option<String>,
    /// The Sesame outbox id, from the `sesame_email` tag or custom arg.
    pub email: Option<String>,
    /// What happened.
    pub kind: ReportKind,
    /// When the provider says it happened.
    pub occurred_at: DateTime<Utc>,
    /// The bounce or deferral reason the provider gives, if any.
    pub detail: Option<String>,
}

/// Verifies Resend's (Svix) webhook signatures.
#[derive(Clone)]
pub struct ResendVerifier {
    key: Vec<u8>,
}

impl std::fmt::Debug for ResendVerifier {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key is a secret: never shown.
        formatter.write_str("ResendVerifier(..)")
    }
}

impl ResendVerifier {
    /// Builds a verifier from the webhook's signing secret, `whsec_`
    /// followed by the base64 key. The error says what is wrong, never the
    /// secret.
    pub fn new(secret: &str) -> Result<Self, String> {
        let Some(encoded) = secret.trim().strip_prefix("whsec_") else {
            return Err("a Resend webhook secret starts with whsec_".to_owned());
        };
        let key = STANDARD
            .decode(encoded)
            .map_err(|error| format!("the part after whsec_ is not base64: {error}"))?;
        if key.is_empty() {
            return Err("the Resend webhook secret is empty after whsec_".to_owned());
        }
        Ok(ResendVerifier { key })
    }

    /// Checks the `svix-*` headers against the raw body and returns the
    /// delivery's id. Entries of `svix-signature` with a version other than
    /// `v1` are skipped; one matching `v1` entry is enough.
    pub fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<EventId, WebhookError> {
        let id = header(headers, SVIX_ID)?;
        let timestamp = header(headers, SVIX_TIMESTAMP)?;
        let signatures = header(headers, SVIX_SIGNATURE)?;
        check_timestamp(SVIX_TIMESTAMP, timestamp, now)?;

        let mut v1_entries = 0;
        for entry in signatures.split_whitespace() {
            let Some((version, encoded)) = entry.split_once(',') else {
                continue;
            };
            if version != "v1" {
                continue;
            }
            v1_entries += 1;
            let Ok(signature) = STANDARD.decode(encoded) else {
                continue;
            };
            let mut mac = Hmac::<Sha256>::new_from_slice(&self.key)
                .expect("HMAC-SHA256 takes a key of any length");
            mac.update(id.as_bytes());
            mac.update(b".");
            mac.update(timestamp.as_bytes());
            mac.update(b".");
            mac.update(body);
            // verify_slice compares in constant time.
            if mac.verify_slice(&signature).is_ok() {
                return Ok(EventId(id.to_owned()));
            }
        }
        if v1_entries == 0 {
            return Err(WebhookError::Unauthorized(format!(
                "no v1 entry in the {SVIX_SIGNATURE} header"
            )));
        }
        Err(WebhookError::Unauthorized(format!(
            "no signature matches ({v1_entries} v1 entries tried)"
        )))
    }
}

/// Verifies SendGrid's signed event webhook.
#[derive(Clone, Debug)]
pub struct SendGridVerifier {
    key: VerifyingKey,
}

impl SendGridVerifier {
    /// Builds a verifier from the verification key SendGrid shows: the base64
    /// DER (SubjectPublicKeyInfo) of a P-256 public key.
    pub fn new(public_key: &str) -> Result<Self, String> {
        let der = STANDARD
            .decode(public_key.trim())
            .map_err(|error| format!("the SendGrid verification key is not base64: {error}"))?;
        let key = VerifyingKey::from_public_key_der(&der).map_err(|error| {
            format!("the SendGrid verification key is not a P-256 public key: {error}")
        })?;
        Ok(SendGridVerifier { key })
    }

    /// Checks the `X-Twilio-Email-Event-Webhook-*` headers against the raw
    /// body: an ECDSA P-256 / SHA-256 signature over the timestamp header's
    /// bytes followed by the body.
    pub fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<(), WebhookError> {
        let encoded = header(headers, SENDGRID_SIGNATURE)?;
        let timestamp = header(headers, SENDGRID_TIMESTAMP)?;
        check_timestamp(SENDGRID_TIMESTAMP, timestamp, now)?;
        let der = STANDARD.decode(encoded).map_err(|error| {
            WebhookError::Unauthorized(format!("{SENDGRID_SIGNATURE} is not base64: {error}"))
        })?;
        let signature = Signature::from_der(&der).map_err(|_| {
            WebhookError::Unauthorized(format!("{SENDGRID_SIGNATURE} is not a DER ECDSA signature"))
        })?;
        let mut signed = Vec::with_capacity(timestamp.len() + body.len());
        signed.extend_from_slice(timestamp.as_bytes());
        signed.extend_from_slice(body);
        self.key
            .verify(&signed, &signature)
            .map_err(|_| WebhookError::Unauthorized("no signature matches".to_owned()))
    }
}

/// A required header's value, as text.
fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, WebhookError> {
    let value = headers
        .get(name)
        .ok_or_else(|| WebhookError::Unauthorized(format!("no {name} header")))?;
    let text = value
        .to_str()
        .map_err(|_| WebhookError::Unauthorized(format!("the {name} header is not ASCII")))?;
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(WebhookError::Unauthorized(format!(
            "the {name} header is empty"
        )));
    }
    Ok(trimmed)
}

/// Refuses a timestamp (unix seconds) further than the tolerance from now.
fn check_timestamp(name: &str, timestamp: &str, now: DateTime<Utc>) -> Result<(), WebhookError> {
    let seconds: i64 = timestamp.parse().map_err(|_| {
        WebhookError::Unauthorized(format!(
            "the {name} header {timestamp:?} is not unix seconds"
        ))
    })?;
    let distance = now.timestamp().abs_diff(seconds);
    if distance > TOLERANCE_SECONDS {
        return Err(WebhookError::Unauthorized(format!(
            "timestamp {distance} s away from now, tolerance {TOLERANCE_SECONDS} s"
        )));
    }
    Ok(())
}

/// Parses one verified Resend webhook (one event per request) into its
/// report. `event_id` is the `svix-id` [`ResendVerifier::verify`] returned.
///
/// A bounce is hard when Resend's `bounce.type` is `Permanent`, soft for
/// `Transient` and `Undetermined`; an `email.bounced` without a `bounce`
/// object (Resend's payloads before bounce details existed) counts as hard,
/// since Resend documents that event as a permanent rejection.
pub fn parse_resend(body: &[u8], event_id: &str) -> Result<Vec<DeliveryReport>, WebhookError> {
    let value = json(body)?;
    let Value::Object(event) = value else {
        return Err(WebhookError::Malformed(
            "body is not a JSON object".to_owned(),
        ));
    };
    let event_type = string_field(&event, "type")
        .ok_or_else(|| WebhookError::Malformed("event has no \"type\" string".to_owned()))?;
    let created_at = string_field(&event, "created_at")
        .ok_or_else(|| WebhookError::Malformed("event has no \"created_at\" string".to_owned()))?;
    let occurred_at = DateTime::parse_from_rfc3339(created_at)
        .map_err(|error| {
            WebhookError::Malformed(format!(
                "created_at {created_at:?} is not RFC 3339: {error}"
            ))
        })?
        .with_timezone(&Utc);

    let kind = match event_type {
        "email.sent" => ReportKind::Accepted,
        "email.delivered" => ReportKind::Delivered,
        "email.delivery_delayed" => ReportKind::Delayed,
        "email.complained" => ReportKind::Complained,
        // The hardness is read from the bounce object below.
        "email.bounced" => ReportKind::Bounced { hard: true },
        other => ReportKind::Ignored(other.to_owned()),
    };
    let empty = Map::new();
    let data = match event.get("data") {
        Some(Value::Object(data)) => data,
        _ if matches!(kind, ReportKind::Ignored(_)) => &empty,
        _ => {
            return Err(WebhookError::Malformed(format!(
                "{event_type} event has no \"data\" object"
            )));
        }
    };
    let provider_message_id = string_field(data, "email_id").map(str::to_owned);
    if provider_message_id.is_none() && !matches!(kind, ReportKind::Ignored(_)) {
        return Err(WebhookError::Malformed(format!(
            "{event_type} event has no data.email_id string"
        )));
    }

    let (kind, detail) = match (kind, data.get("bounce")) {
        (ReportKind::Bounced { .. }, Some(Value::Object(bounce))) => {
            let bounce_type = string_field(bounce, "type");
            let hard = bounce_type.is_none_or(|name| name == "Permanent");
            (ReportKind::Bounced { hard }, resend_bounce_detail(bounce))
        }
        (kind, _) => (kind, None),
    };

    Ok(vec![DeliveryReport {
        provider: Provider::Resend,
        event_id: event_id.to_owned(),
        provider_message_id,
        email: resend_tag(data.get("tags"), SESAME_EMAIL_TAG),
        kind,
        occurred_at,
        detail,
    }])
}

/// `Permanent/General: message`, from whichever parts Resend sent.
fn resend_bounce_detail(bounce: &Map<String, Value>) -> Option<String> {
    let classification: Vec<&str> = ["type", "subType"]
        .iter()
        .filter_map(|name| string_field(bounce, name))
        .collect();
    let message = string_field(bounce, "message");
    match (classification.is_empty(), message) {
        (true, None) => None,
        (true, Some(message)) => Some(message.to_owned()),
        (false, None) => Some(classification.join("/")),
        (false, Some(message)) => Some(format!("{}: {message}", classification.join("/"))),
    }
}

/// A tag's value: Resend sends tags as an object (`{"name": "value"}`) in
/// webhooks, and as a list of `{"name", "value"}` in its API; both are read.
fn resend_tag(tags: Option<&Value>, name: &str) -> Option<String> {
    match tags? {
        Value::Object(tags) => string_field(tags, name).map(str::to_owned),
        Value::Array(tags) => tags
            .iter()
            .filter_map(Value::as_object)
            .find(|tag| string_field(tag, "name") == Some(name))
            .and_then(|tag| string_field(tag, "value"))
            .map(str::to_owned),
        _ => None,
    }
}

/// Parses one verified SendGrid webhook (a JSON array of events) into one
/// report per event, in the order sent.
///
/// - `bounce` events are hard unless their `type` is `blocked` (SendGrid's
///   word for a refusal that may pass later).
/// - `dropped` events (SendGrid never tried the recipient) count as a hard
///   bounce only when the reason speaks of a bounce or an invalid address
///   ("Bounced Address", "Invalid"): the address is known to be dead. Other
///   reasons (unsubscribed, spam-reporting address, invalid SMTPAPI header,
///   spam content) say nothing about the mailbox and are reported as
///   `Ignored("dropped")`, reason in `detail`, for the caller to log.
/// - The provider message id is `sg_message_id` up to its first `.`: the
///   `X-Message-Id` the send returned.
pub fn parse_sendgrid(body: &[u8]) -> Result<Vec<DeliveryReport>, WebhookError> {
    let value = json(body)?;
    let Value::Array(events) = value else {
        return Err(WebhookError::Malformed(
            "body is not a JSON array of events".to_owned(),
        ));
    };
    events
        .iter()
        .enumerate()
        .map(|(index, event)| sendgrid_event(index, event))
        .collect()
}

fn sendgrid_event(index: usize, event: &Value) -> Result<DeliveryReport, WebhookError> {
    let Value::Object(event) = event else {
        return Err(WebhookError::Malformed(format!(
            "event {index} is not an object"
        )));
    };
    let missing =
        |field: &str| WebhookError::Malformed(format!("event {index} has no {field:?} string"));
    let event_id = string_field(event, "sg_event_id").ok_or_else(|| missing("sg_event_id"))?;
    let event_type = string_field(event, "event").ok_or_else(|| missing("event"))?;
    let seconds = event
        .get("timestamp")
        .and_then(Value::as_i64)
        .ok_or_else(|| {
            WebhookError::Malformed(format!("event {index} has no integer \"timestamp\""))
        })?;
    let occurred_at = DateTime::from_timestamp(seconds, 0).ok_or_else(|| {
        WebhookError::Malformed(format!("event {index} timestamp {seconds} is out of range"))
    })?;
    let detail = string_field(event, "reason")
        .or_else(|| string_field(event, "response"))
        .map(str::to_owned);

    let kind = match event_type {
        "processed" => ReportKind::Accepted,
        "delivered" => ReportKind::Delivered,
        "deferred" => ReportKind::Delayed,
        "bounce" => ReportKind::Bounced {
            hard: string_field(event, "type") != Some("blocked"),
        },
        "dropped" if dropped_for_a_dead_address(detail.as_deref()) => {
            ReportKind::Bounced { hard: true }
        }
        "spamreport" => ReportKind::Complained,
        other => ReportKind::Ignored(other.to_owned()),
    };
    let provider_message_id = string_field(event, "sg_message_id")
        .and_then(|id| id.split('.').next())
        .filter(|id| !id.is_empty())
        .map(str::to_owned);

    Ok(DeliveryReport {
        provider: Provider::SendGrid,
        event_id: event_id.to_owned(),
        provider_message_id,
        email: string_field(event, SESAME_EMAIL_TAG).map(str::to_owned),
        kind,
        occurred_at,
        detail,
    })
}

/// Whether a `dropped` reason says the address itself is dead.
fn dropped_for_a_dead_address(reason: Option<&str>) -> bool {
    let Some(reason) = reason else {
        return false;
    };
    let lowercase = reason.to_ascii_lowercase();
    if lowercase.contains("smtpapi") {
        // "Invalid SMTPAPI header": our request, not the address.
        return false;
    }
    lowercase.contains("bounce") || lowercase.contains("invalid")
}

fn json(body: &[u8]) -> Result<Value, WebhookError> {
    serde_json::from_slice(body)
        .map_err(|error| WebhookError::Malformed(format!("body is not JSON: {error}")))
}

fn string_field<'a>(object: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    object.get(name).and_then(Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use p256::ecdsa::SigningKey;
    use p256::ecdsa::signature::Signer;
    use p256::pkcs8::EncodePublicKey;
    use serde_json::json;

    // --- Resend (Svix) ---

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const NOW: i64 = 1_700_000_000;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(seconds, 0).unwrap()
    }

    fn svix_signature(secret: &str, id: &str, timestamp: &str, body: &[u8]) -> String {
        let key = STANDARD
            .decode(secret.strip_prefix("whsec_").unwrap())
            .unwrap();
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
        mac.update(format!("{id}.{timestamp}.").as_bytes());
        mac.update(body);
        STANDARD.encode(mac.finalize().into_bytes())
    }

    fn svix_headers(id: &str, timestamp: &str, signature: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(SVIX_ID, HeaderValue::from_str(id).unwrap());
        headers.insert(SVIX_TIMESTAMP, HeaderValue::from_str(timestamp).unwrap());
        headers.insert(SVIX_SIGNATURE, HeaderValue::from_str(signature).unwrap());
        headers
    }

    fn signed_svix_headers(secret: &str, timestamp: i64, body: &[u8]) -> HeaderMap {
        let timestamp = timestamp.to_string();
        let signature = svix_signature(secret, "msg_1", &timestamp, body);
        svix_headers("msg_1", &timestamp, &format!("v1,{signature}"))
    }

    fn unauthorized(result: Result<impl std::fmt::Debug, WebhookError>) -> String {
        match result {
            Err(WebhookError::Unauthorized(message)) => message,
            other => panic!("expected Unauthorized, got {other:?}"),
        }
    }

    fn malformed(result: Result<Vec<DeliveryReport>, WebhookError>) -> String {
        match result {
            Err(WebhookError::Malformed(message)) => message,
            other => panic!("expected Malformed, got {other:?}"),
        }
    }

    #[test]
    fn svix_published_example_verifies() {
        // The example of Svix's documentation (secret, id, timestamp,
        // payload, signature).
        let headers = svix_headers(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            "1614265330",
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        );
        let verifier = ResendVerifier::new(SECRET).unwrap();
        let id = verifier
            .verify(&headers, br#"{"test": 2432232314}"#, at(1614265330))
            .unwrap();
        assert_eq!(id.as_str(), "msg_p5jXN8AQM9LWM0D4loKWxJek");
    }

    #[test]
    fn resend_signature_verifies_and_returns_the_svix_id() {
        let body = br#"{"type":"email.sent"}"#;
        let verifier = ResendVerifier::new(SECRET).unwrap();
        let id = verifier
            .verify(&signed_svix_headers(SECRET, NOW, body), body, at(NOW))
            .unwrap();
        assert_eq!(id.into_string(), "msg_1");
    }

    #[test]
    fn one_matching_v1_entry_among_several_is_enough() {
        let body = b"{}";
        let good = svix_signature(SECRET, "msg_1", "1700000000", body);
        let other = svix_signature("whsec_b3RoZXIgc2VjcmV0", "msg_1", "1700000000", body);
        let list = format!("v1,{other} v2,{good} v1,not-base64!! v1,{good}");
        let headers = svix_headers("msg_1", "1700000000", &list);
        let verifier = ResendVerifier::new(SECRET).unwrap();
        assert!(verifier.verify(&headers, body, at(NOW)).is_ok());
    }

    #[test]
    fn a_signature_under_another_version_is_not_accepted() {
        let body = b"{}";
        let good = svix_signature(SECRET, "msg_1", "1700000000", body);
        let headers = svix_headers("msg_1", "1700000000", &format!("v1a,{good} v2,{good}"));
        let verifier = ResendVerifier::new(SECRET).unwrap();
        let message = unauthorized(verifier.verify(&headers, body, at(NOW)));
        assert_eq!(message, "no v1 entry in the svix-signature header");
    }

    #[test]
    fn wrong_secret_tampered_body_and_changed_id_are_refused() {
        let body = br#"{"type":"email.delivered"}"#;
        let headers = signed_svix_headers(SECRET, NOW, body);

        let other = ResendVerifier::new("whsec_b3RoZXIgc2VjcmV0").unwrap();
        let message = unauthorized(other.verify(&headers, body, at(NOW)));
        assert!(message.starts_with("no signature matches"), "{message}");

        let verifier = ResendVerifier::new(SECRET).unwrap();
        let tampered = br#"{"type":"email.bounced"}"#;
        unauthorized(verifier.verify(&headers, tampered, at(NOW)));

        let mut renamed = headers.clone();
        renamed.insert(SVIX_ID, HeaderValue::from_static("msg_2"));
        unauthorized(verifier.verify(&renamed, body, at(NOW)));
    }

    #[test]
    fn stale_and_future_timestamps_are_refused_even_when_signed() {
        let body = b"{}";
        let verifier = ResendVerifier::new(SECRET).unwrap();
        let stale = signed_svix_headers(SECRET, NOW - 412, body);
        assert_eq!(
            unauthorized(verifier.verify(&stale, body, at(NOW))),
            "timestamp 412 s away from now, tolerance 300 s"
        );
        let future = signed_svix_headers(SECRET, NOW + 301, body);
        assert_eq!(
            unauthorized(verifier.verify(&future, body, at(NOW))),
            "timestamp 301 s away from now, tolerance 300 s"
        );
        // The edges of the window are inside it.
        for edge in [NOW - 300, NOW + 300] {
            let headers = signed_svix_headers(SECRET, edge, body);
            assert!(verifier.verify(&headers, body, at(NOW)).is_ok());
        }
    }

    #[test]
    fn missing_or_unreadable_svix_headers_are_named() {
        let body = b"{}";
        let verifier = ResendVerifier::new(SECRET).unwrap();
        for name in [SVIX_ID, SVIX_TIMESTAMP, SVIX_SIGNATURE] {
            let mut headers = signed_svix_headers(SECRET, NOW, body);
            headers.remove(name);
            assert_eq!(
                unauthorized(verifier.verify(&headers, body, at(NOW))),
                format!("no {name} header")
            );
        }
        let mut headers = signed_svix_headers(SECRET, NOW, body);
        headers.insert(SVIX_TIMESTAMP, HeaderValue::from_static("yesterday"));
        assert_eq!(
            unauthorized(verifier.verify(&headers, body, at(NOW))),
            "the svix-timestamp header \"yesterday\" is not unix seconds"
        );
        headers.insert(SVIX_TIMESTAMP, HeaderValue::from_static("  "));
        assert_eq!(
            unauthorized(verifier.verify(&headers, body, at(NOW))),
            "the svix-timestamp header is empty"
        );
    }

    #[test]
    fn non_base64_signatures_match_nothing() {
        let verifier = ResendVerifier::new(SECRET).unwrap();
        let headers = svix_headers("msg_1", "1700000000", "v1,@@@@ v1,");
        let message = unauthorized(verifier.verify(&headers, b"{}", at(NOW)));
        assert_eq!(message, "no signature matches (2 v1 entries tried)");
    }

    #[test]
    fn resend_secrets_are_checked_and_never_shown() {
        assert!(ResendVerifier::new("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_err());
        assert!(ResendVerifier::new("whsec_").is_err());
        let error = ResendVerifier::new("whsec_not base64!").unwrap_err();
        assert!(error.contains("not base64"), "{error}");
        let verifier = ResendVerifier::new(SECRET).unwrap();
        assert_eq!(format!("{verifier:?}"), "ResendVerifier(..)");
    }

    // --- SendGrid ---

    // SendGrid's published verification example (the test vector of its
    // official SDKs' event webhook helpers).
    const SENDGRID_PUBLIC_KEY: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEDr2LjtURuePQzplybdC+u4CwrqDqBaWjcMMsTbhdbcwHBcepxo7yAQGhHPTnlvFYPAZFceEu/1FwCM/QmGUhA==";
    const SENDGRID_SIGNATURE_B64: &str = "MEUCIQCtIHJeH93Y+qpYeWrySphQgpNGNr/U+UyUlBkU6n7RAwIgJTz2C+8a8xonZGi6BpSzoQsbVRamr2nlxFDWYNH2j/0=";
    const SENDGRID_TIMESTAMP_VALUE: &str = "1588788367";
    const SENDGRID_PAYLOAD: &str =
        r#"{"category":"example_payload","event":"test_event","message_id":"message_id"}"#;

    fn sendgrid_headers(signature: &str, timestamp: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            "X-Twilio-Email-Event-Webhook-Signature",
            HeaderValue::from_str(signature).unwrap(),
        );
        headers.insert(
            "X-Twilio-Email-Event-Webhook-Timestamp",
            HeaderValue::from_str(timestamp).unwrap(),
        );
        headers
    }

    fn test_signing_key() -> SigningKey {
        SigningKey::from_slice(&[7; 32]).unwrap()
    }

    fn public_key_base64(key: &SigningKey) -> String {
        let der = key.verifying_key().to_public_key_der().unwrap();
        STANDARD.encode(der.as_bytes())
    }

    fn sendgrid_sign(key: &SigningKey, timestamp: &str, body: &[u8]) -> String {
        let mut signed = timestamp.as_bytes().to_vec();
        signed.extend_from_slice(body);
        let signature: Signature = key.sign(&signed);
        STANDARD.encode(signature.to_der().as_bytes())
    }

    #[test]
    fn sendgrid_published_example_verifies() {
        let verifier = SendGridVerifier::new(SENDGRID_PUBLIC_KEY).unwrap();
        let now = at(SENDGRID_TIMESTAMP_VALUE.parse().unwrap());
        let headers = sendgrid_headers(SENDGRID_SIGNATURE_B64, SENDGRID_TIMESTAMP_VALUE);
        verifier
            .verify(&headers, SENDGRID_PAYLOAD.as_bytes(), now)
            .unwrap();
        assert_eq!(
            unauthorized(verifier.verify(&headers, b"payload", now)),
            "no signature matches"
        );
        // The published example's "bad signature": one character changed.
        let bad = SENDGRID_SIGNATURE_B64.replace("H2j", "H3j");
        let headers = sendgrid_headers(&bad, SENDGRID_TIMESTAMP_VALUE);
        unauthorized(verifier.verify(&headers, SENDGRID_PAYLOAD.as_bytes(), now));
    }

    #[test]
    fn sendgrid_published_example_fails_under_another_key() {
        let other = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEqTxd43gyp8IOEto2LdIfjRQrIbsd4SXZkLW6jDutdhXSJCWHw8REntlo7aNDthvj+y7GjUuFDb/R1NGe1OPzpA==";
        let verifier = SendGridVerifier::new(other).unwrap();
        let now = at(SENDGRID_TIMESTAMP_VALUE.parse().unwrap());
        let headers = sendgrid_headers(SENDGRID_SIGNATURE_B64, SENDGRID_TIMESTAMP_VALUE);
        assert_eq!(
            unauthorized(verifier.verify(&headers, SENDGRID_PAYLOAD.as_bytes(), now)),
            "no signature matches"
        );
    }

    #[test]
    fn sendgrid_signature_covers_timestamp_and_body() {
        let key = test_signing_key();
        let verifier = SendGridVerifier::new(&public_key_base64(&key)).unwrap();
        let body = br#"[{"event":"delivered"}]"#;
        let timestamp = NOW.to_string();
        let signature = sendgrid_sign(&key, &timestamp, body);
        let headers = sendgrid_headers(&signature, &timestamp);
        verifier.verify(&headers, body, at(NOW)).unwrap();

        // Tampered body.
        unauthorized(verifier.verify(&headers, br#"[{"event":"bounce"}]"#, at(NOW)));
        // The same signature with another (still fresh) timestamp.
        let moved = sendgrid_headers(&signature, &(NOW + 1).to_string());
        assert_eq!(
            unauthorized(verifier.verify(&moved, body, at(NOW))),
            "no signature matches"
        );
        // Another key.
        let other = SigningKey::from_slice(&[9; 32]).unwrap();
        let other_verifier = SendGridVerifier::new(&public_key_base64(&other)).unwrap();
        unauthorized(other_verifier.verify(&headers, body, at(NOW)));
    }

    #[test]
    fn sendgrid_stale_future_and_missing_headers_are_refused() {
        let key = test_signing_key();
        let verifier = SendGridVerifier::new(&public_key_base64(&key)).unwrap();
        let body = b"[]";
        for (timestamp, distance) in [(NOW - 412, 412), (NOW + 600, 600)] {
            let timestamp = timestamp.to_string();
            let headers = sendgrid_headers(&sendgrid_sign(&key, &timestamp, body), &timestamp);
            assert_eq!(
                unauthorized(verifier.verify(&headers, body, at(NOW))),
                format!("timestamp {distance} s away from now, tolerance 300 s")
            );
        }
        let timestamp = NOW.to_string();
        let signature = sendgrid_sign(&key, &timestamp, body);
        for name in [SENDGRID_SIGNATURE, SENDGRID_TIMESTAMP] {
            let mut headers = sendgrid_headers(&signature, &timestamp);
            headers.remove(name);
            assert_eq!(
                unauthorized(verifier.verify(&headers, body, at(NOW))),
                format!("no {name} header")
            );
        }
        let headers = sendgrid_headers("%%%", &timestamp);
        let message = unauthorized(verifier.verify(&headers, body, at(NOW)));
        assert!(message.contains("is not base64"), "{message}");
        let headers = sendgrid_headers(&STANDARD.encode(b"not DER"), &timestamp);
        let message = unauthorized(verifier.verify(&headers, body, at(NOW)));
        assert!(message.contains("not a DER ECDSA signature"), "{message}");
    }

    #[test]
    fn sendgrid_keys_are_checked() {
        assert!(SendGridVerifier::new("not base64!").is_err());
        let error = SendGridVerifier::new(&STANDARD.encode(b"garbage")).unwrap_err();
        assert!(error.contains("not a P-256 public key"), "{error}");
        // Surrounding whitespace from a pasted key is tolerated.
        let key = format!(" {SENDGRID_PUBLIC_KEY}\n");
        assert!(SendGridVerifier::new(&key).is_ok());
    }

    // --- Resend parsing ---

    fn resend_event(event_type: &str, data: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "type": event_type,
            "created_at": "2024-11-22T23:41:12.126Z",
            "data": data,
        }))
        .unwrap()
    }

    fn resend_data(extra: Value) -> Value {
        let mut data = json!({
            "email_id": "56761188-7520-42d8-8898-ff6fc54ce618",
            "created_at": "2024-11-22 23:41:11.894719+00",
            "from": "Sesame <sesame@example.com>",
            "to": ["applicant@example.org"],
            "subject": "Your access request",
            "tags": {"sesame_email": "em_42", "kind": "decision"},
        });
        for (name, value) in extra.as_object().unwrap() {
            data[name] = value.clone();
        }
        data
    }

    fn one(reports: Vec<DeliveryReport>) -> DeliveryReport {
        assert_eq!(reports.len(), 1, "{reports:?}");
        reports.into_iter().next().unwrap()
    }

    #[test]
    fn resend_event_types_map_to_report_kinds() {
        let cases = [
            ("email.sent", ReportKind::Accepted),
            ("email.delivered", ReportKind::Delivered),
            ("email.delivery_delayed", ReportKind::Delayed),
            ("email.complained", ReportKind::Complained),
            (
                "email.opened",
                ReportKind::Ignored("email.opened".to_owned()),
            ),
            (
                "email.clicked",
                ReportKind::Ignored("email.clicked".to_owned()),
            ),
            (
                "email.something_new",
                ReportKind::Ignored("email.something_new".to_owned()),
            ),
        ];
        for (event_type, kind) in cases {
            let body = resend_event(event_type, resend_data(json!({})));
            let report = one(parse_resend(&body, "msg_1").unwrap());
            assert_eq!(report.kind, kind, "{event_type}");
            assert_eq!(report.provider, Provider::Resend);
            assert_eq!(report.event_id, "msg_1");
            assert_eq!(
                report.provider_message_id.as_deref(),
                Some("56761188-7520-42d8-8898-ff6fc54ce618")
            );
            assert_eq!(report.email.as_deref(), Some("em_42"));
            assert_eq!(
                report.occurred_at.to_rfc3339(),
                "2024-11-22T23:41:12.126+00:00"
            );
            assert_eq!(report.detail, None);
        }
    }

    #[test]
    fn resend_bounces_are_hard_only_when_permanent() {
        let permanent = resend_data(json!({"bounce": {
            "type": "Permanent",
            "subType": "Suppressed",
            "message": "The recipient's email address is on the suppression list",
        }}));
        let report = one(parse_resend(&resend_event("email.bounced", permanent), "m").unwrap());
        assert_eq!(report.kind, ReportKind::Bounced { hard: true });
        assert_eq!(
            report.detail.as_deref(),
            Some("Permanent/Suppressed: The recipient's email address is on the suppression list")
        );

        for soft in ["Transient", "Undetermined"] {
            let data = resend_data(json!({"bounce": {"type": soft, "subType": "MailboxFull"}}));
            let report = one(parse_resend(&resend_event("email.bounced", data), "m").unwrap());
            assert_eq!(report.kind, ReportKind::Bounced { hard: false }, "{soft}");
            assert_eq!(report.detail, Some(format!("{soft}/MailboxFull")));
        }

        // Without bounce details, Resend's definition: permanent.
        let bare = resend_data(json!({}));
        let report = one(parse_resend(&resend_event("email.bounced", bare), "m").unwrap());
        assert_eq!(report.kind, ReportKind::Bounced { hard: true });
        assert_eq!(report.detail, None);
    }

    #[test]
    fn resend_tags_are_read_as_object_or_list() {
        let listed = resend_data(json!({"tags": [
            {"name": "kind", "value": "decision"},
            {"name": "sesame_email", "value": "em_7"},
        ]}));
        let report = one(parse_resend(&resend_event("email.delivered", listed), "m").unwrap());
        assert_eq!(report.email.as_deref(), Some("em_7"));

        let untagged = resend_data(json!({"tags": null}));
        let report = one(parse_resend(&resend_event("email.delivered", untagged), "m").unwrap());
        assert_eq!(report.email, None);
    }

    #[test]
    fn resend_events_of_other_resources_are_ignored_without_email_data() {
        let body = serde_json::to_vec(&json!({
            "type": "contact.created",
            "created_at": "2024-11-22T23:41:12Z",
            "data": {"id": "c_1", "email": "someone@example.org"},
        }))
        .unwrap();
        let report = one(parse_resend(&body, "m").unwrap());
        assert_eq!(
            report.kind,
            ReportKind::Ignored("contact.created".to_owned())
        );
        assert_eq!(report.provider_message_id, None);
    }

    #[test]
    fn malformed_resend_bodies_are_refused_with_the_reason() {
        let message = malformed(parse_resend(b"not json", "m"));
        assert!(message.starts_with("body is not JSON: "), "{message}");
        assert_eq!(
            malformed(parse_resend(b"[]", "m")),
            "body is not a JSON object"
        );
        assert_eq!(
            malformed(parse_resend(
                br#"{"created_at":"2024-11-22T23:41:12Z"}"#,
                "m"
            )),
            "event has no \"type\" string"
        );
        assert_eq!(
            malformed(parse_resend(br#"{"type":"email.sent","data":{}}"#, "m")),
            "event has no \"created_at\" string"
        );
        let message = malformed(parse_resend(
            br#"{"type":"email.sent","created_at":"yesterday","data":{}}"#,
            "m",
        ));
        assert!(
            message.starts_with("created_at \"yesterday\" is not RFC 3339"),
            "{message}"
        );
        assert_eq!(
            malformed(parse_resend(
                br#"{"type":"email.sent","created_at":"2024-11-22T23:41:12Z"}"#,
                "m"
            )),
            "email.sent event has no \"data\" object"
        );
        assert_eq!(
            malformed(parse_resend(
                br#"{"type":"email.sent","created_at":"2024-11-22T23:41:12Z","data":{"to":[]}}"#,
                "m"
            )),
            "email.sent event has no data.email_id string"
        );
    }

    // --- SendGrid parsing ---

    fn sendgrid_event_json(event: &str, extra: Value) -> Value {
        let mut value = json!({
            "email": "applicant@example.org",
            "timestamp": 1513299569,
            "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>",
            "event": event,
            "sg_event_id": format!("ev_{event}"),
            "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
            "sesame_email": "em_42",
        });
        for (name, field) in extra.as_object().unwrap() {
            value[name] = field.clone();
        }
        value
    }

    fn parse_one_sendgrid(event: Value) -> DeliveryReport {
        let body = serde_json::to_vec(&json!([event])).unwrap();
        one(parse_sendgrid(&body).unwrap())
    }

    #[test]
    fn sendgrid_event_types_map_to_report_kinds() {
        let cases = [
            ("processed", json!({}), ReportKind::Accepted),
            (
                "delivered",
                json!({"response": "250 OK"}),
                ReportKind::Delivered,
            ),
            (
                "deferred",
                json!({"response": "400 try again later", "attempt": "5"}),
                ReportKind::Delayed,
            ),
            ("spamreport", json!({}), ReportKind::Complained),
            ("open", json!({}), ReportKind::Ignored("open".to_owned())),
            (
                "click",
                json!({"url": "https://example.org"}),
                ReportKind::Ignored("click".to_owned()),
            ),
            (
                "unsubscribe",
                json!({}),
                ReportKind::Ignored("unsubscribe".to_owned()),
            ),
            (
                "group_unsubscribe",
                json!({}),
                ReportKind::Ignored("group_unsubscribe".to_owned()),
            ),
            (
                "brand_new",
                json!({}),
                ReportKind::Ignored("brand_new".to_owned()),
            ),
        ];
        for (event, extra, kind) in cases {
            let report = parse_one_sendgrid(sendgrid_event_json(event, extra));
            assert_eq!(report.kind, kind, "{event}");
            assert_eq!(report.provider, Provider::SendGrid);
            assert_eq!(report.event_id, format!("ev_{event}"));
            assert_eq!(report.provider_message_id.as_deref(), Some("14c5d75ce93"));
            assert_eq!(report.email.as_deref(), Some("em_42"));
            assert_eq!(report.occurred_at, at(1513299569));
        }
    }

    #[test]
    fn sendgrid_reasons_become_the_detail() {
        let deferred = parse_one_sendgrid(sendgrid_event_json(
            "deferred",
            json!({"response": "400 try again later"}),
        ));
        assert_eq!(deferred.detail.as_deref(), Some("400 try again later"));
        let bounce = parse_one_sendgrid(sendgrid_event_json(
            "bounce",
            json!({"type": "bounce", "reason": "550 5.1.1 no such user", "status": "5.1.1"}),
        ));
        assert_eq!(bounce.detail.as_deref(), Some("550 5.1.1 no such user"));
        let processed = parse_one_sendgrid(sendgrid_event_json("processed", json!({})));
        assert_eq!(processed.detail, None);
    }

    #[test]
    fn sendgrid_bounces_are_soft_only_when_blocked() {
        let hard = parse_one_sendgrid(sendgrid_event_json("bounce", json!({"type": "bounce"})));
        assert_eq!(hard.kind, ReportKind::Bounced { hard: true });
        let soft = parse_one_sendgrid(sendgrid_event_json("bounce", json!({"type": "blocked"})));
        assert_eq!(soft.kind, ReportKind::Bounced { hard: false });
        let untyped = parse_one_sendgrid(sendgrid_event_json("bounce", json!({})));
        assert_eq!(untyped.kind, ReportKind::Bounced { hard: true });
    }

    #[test]
    fn sendgrid_drops_are_hard_bounces_only_for_dead_addresses() {
        for reason in ["Bounced Address", "Invalid", "invalid address"] {
            let report =
                parse_one_sendgrid(sendgrid_event_json("dropped", json!({"reason": reason})));
            assert_eq!(report.kind, ReportKind::Bounced { hard: true }, "{reason}");
            assert_eq!(report.detail.as_deref(), Some(reason));
        }
        for reason in [
            "Unsubscribed Address",
            "Spam Reporting Address",
            "Invalid SMTPAPI header",
            "Spam Content (if spam checker app enabled)",
        ] {
            let report =
                parse_one_sendgrid(sendgrid_event_json("dropped", json!({"reason": reason})));
            assert_eq!(
                report.kind,
                ReportKind::Ignored("dropped".to_owned()),
                "{reason}"
            );
            assert_eq!(report.detail.as_deref(), Some(reason));
        }
        let reasonless = parse_one_sendgrid(sendgrid_event_json("dropped", json!({})));
        assert_eq!(reasonless.kind, ReportKind::Ignored("dropped".to_owned()));
    }

    #[test]
    fn sendgrid_batches_keep_their_order_and_optional_fields() {
        let without_ids = json!({
            "event": "delivered",
            "sg_event_id": "ev_bare",
            "timestamp": 1513299570,
        });
        let body = serde_json::to_vec(&json!([
            sendgrid_event_json("processed", json!({})),
            without_ids,
            sendgrid_event_json("delivered", json!({"sg_message_id": "nodots"})),
        ]))
        .unwrap();
        let reports = parse_sendgrid(&body).unwrap();
        assert_eq!(reports.len(), 3);
        assert_eq!(reports[0].kind, ReportKind::Accepted);
        assert_eq!(reports[1].event_id, "ev_bare");
        assert_eq!(reports[1].provider_message_id, None);
        assert_eq!(reports[1].email, None);
        assert_eq!(reports[2].provider_message_id.as_deref(), Some("nodots"));
        assert!(parse_sendgrid(b"[]").unwrap().is_empty());
    }

    #[test]
    fn malformed_sendgrid_bodies_are_refused_with_the_reason() {
        let message = malformed(parse_sendgrid(b"{"));
        assert!(message.starts_with("body is not JSON: "), "{message}");
        assert_eq!(
            malformed(parse_sendgrid(br#"{"event":"delivered"}"#)),
            "body is not a JSON array of events"
        );
        assert_eq!(
            malformed(parse_sendgrid(b"[1]")),
            "event 0 is not an object"
        );
        let no_id = json!([sendgrid_event_json("delivered", json!({})), {"event": "delivered", "timestamp": 1}]);
        assert_eq!(
            malformed(parse_sendgrid(&serde_json::to_vec(&no_id).unwrap())),
            "event 1 has no \"sg_event_id\" string"
        );
        let no_event = json!([{"sg_event_id": "e", "timestamp": 1}]);
        assert_eq!(
            malformed(parse_sendgrid(&serde_json::to_vec(&no_event).unwrap())),
            "event 0 has no \"event\" string"
        );
        let text_time = json!([{"sg_event_id": "e", "event": "open", "timestamp": "now"}]);
        assert_eq!(
            malformed(parse_sendgrid(&serde_json::to_vec(&text_time).unwrap())),
            "event 0 has no integer \"timestamp\""
        );
        let far = json!([{"sg_event_id": "e", "event": "open", "timestamp": i64::MAX}]);
        let message = malformed(parse_sendgrid(&serde_json::to_vec(&far).unwrap()));
        assert!(message.ends_with("is out of range"), "{message}");
    }

    #[test]
    fn providers_are_named_in_lowercase() {
        assert_eq!(Provider::Resend.as_str(), "resend");
        assert_eq!(Provider::SendGrid.to_string(), "sendgrid");
    }
}
