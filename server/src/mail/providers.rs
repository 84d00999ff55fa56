//! The HTTP email providers, Resend and SendGrid: an [`OutgoingEmail`]'s
//! parts become the provider's JSON fields (no MIME here: the provider
//! builds the message and signs it with DKIM for the sending domain set up
//! in its dashboard), sent with reqwest over rustls. Answers are classified
//! like SMTP replies: 429 and 5xx retry (honouring `Retry-After`), other
//! 4xx are permanent with the provider's message, a quota exhausted retries
//! later, and a failure after the request went out (a timeout, a cut
//! connection) is an unknown outcome that must be retried on the same
//! provider, which alone can recognise the resend.
//!
//! Resend gets the outbox row's idempotency key as `Idempotency-Key`, the
//! same on every retry, so a resend is refused rather than delivered twice.
//! SendGrid takes no such key: the email's outbox id goes in `custom_args`
//! (fields SendGrid keeps as non-personal), and its webhooks carry it back.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::{OutgoingEmail, SendError};

/// Which provider's API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProviderKind {
    Resend,
    SendGrid,
}

impl ProviderKind {
    /// The name in transport URLs, outbox rows and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Resend => "resend",
            ProviderKind::SendGrid => "sendgrid",
        }
    }

    /// The provider's public API.
    pub fn default_base_url(self) -> &'static str {
        match self {
            ProviderKind::Resend => "https://api.resend.com",
            ProviderKind::SendGrid => "https://api.sendgrid.com",
        }
    }
}

/// An API key: never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// The key, trimmed of the whitespace a file adds.
    pub fn new(key: &str) -> ApiKey {
        ApiKey(key.trim().to_owned())
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("ApiKey([redacted])")
    }
}

/// Where and how to reach one provider; nothing is opened yet.
#[derive(Clone, Debug)]
pub struct ProviderSettings {
    pub kind: ProviderKind,
    /// The API's base URL, without a trailing slash.
    pub base_url: String,
    pub api_key: ApiKey,
}

/// A provider's client.
#[derive(Clone, Debug)]
pub struct HttpProvider {
    settings: ProviderSettings,
    client: reqwest::Client,
}

/// The provider's id of an accepted email.
pub type ProviderMessageId = Option<String>;

impl HttpProvider {
    /// A client whose every request is bounded by `timeout`.
    pub fn new(settings: ProviderSettings, timeout: Duration) -> Result<HttpProvider, String> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("sesame/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| format!("could not build the HTTP client: {error}"))?;
        Ok(HttpProvider { settings, client })
    }

    pub fn kind(&self) -> ProviderKind {
        self.settings.kind
    }

    /// Sends `email`; `Ok` carries the provider's id of it.
    pub async fn send(&self, email: &OutgoingEmail) -> Result<ProviderMessageId, SendError> {
        let settings = &self.settings;
        let (path, body) = match settings.kind {
            ProviderKind::Resend => ("/emails", resend_body(email)),
            ProviderKind::SendGrid => ("/v3/mail/send", sendgrid_body(email)),
        };
        let mut request = self
            .client
            .post(format!("{}{path}", settings.base_url))
            .bearer_auth(&settings.api_key.0)
            .json(&body);
        if settings.kind == ProviderKind::Resend {
            request = request.header("Idempotency-Key", &email.idempotency_key);
        }
        let response = request
            .send()
            .await
            .map_err(|error| request_failed(&error))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| parse_retry_after(value, Utc::now()));
        let message_id = response
            .headers()
            .get("x-message-id")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let text = response
            .text()
            .await
            .map_err(|error| SendError::Unknown(format!("the answer was cut: {error}")))?;
        if status.is_success() {
            return Ok(match settings.kind {
                ProviderKind::Resend => serde_json::from_str::<Value>(&text)
                    .ok()
                    .and_then(|answer| answer["id"].as_str().map(str::to_owned)),
                ProviderKind::SendGrid => message_id,
            });
        }
        Err(classify(settings.kind, status.as_u16(), &text, retry_after))
    }
}

/// Resend's `POST /emails` body. Tags carry no personal data: the outbox
/// id (which the webhooks bring back) and the template.
fn resend_body(email: &OutgoingEmail) -> Value {
    let mut headers = serde_json::Map::new();
    headers.insert("Message-ID".to_owned(), email.message_id.clone().into());
    for (name, value) in &email.headers {
        headers.insert(name.clone(), value.clone().into());
    }
    let mut tags = vec![json!({ "name": "sesame_email", "value": email.id })];
    if let Some(template) = &email.template {
        tags.push(json!({ "name": "template", "value": template }));
    }
    json!({
        "from": email.from.to_string(),
        "to": [email.to.email.to_string()],
        "subject": email.subject,
        "text": email.text,
        "html": email.html,
        "headers": headers,
        "tags": tags,
    })
}

/// SendGrid's `POST /v3/mail/send` body: text before HTML, as SendGrid
/// requires; `custom_args` carry the outbox id only.
fn sendgrid_body(email: &OutgoingEmail) -> Value {
    let mailbox = |mailbox: &lettre::message::Mailbox| match &mailbox.name {
        Some(name) => json!({ "email": mailbox.email.to_string(), "name": name }),
        None => json!({ "email": mailbox.email.to_string() }),
    };
    let mut headers = serde_json::Map::new();
    headers.insert("Message-ID".to_owned(), email.message_id.clone().into());
    for (name, value) in &email.headers {
        headers.insert(name.clone(), value.clone().into());
    }
    json!({
        "personalizations": [{ "to": [mailbox(&email.to)] }],
        "from": mailbox(&email.from),
        "subject": email.subject,
        "content": [
            { "type": "text/plain", "value": email.text },
            { "type": "text/html", "value": email.html },
        ],
        "headers": headers,
        "custom_args": { "sesame_email": email.id },
    })
}

/// A request that got no answer: not sent at all when the connection
/// failed (safe to hand to another provider), else unknown.
fn request_failed(error: &reqwest::Error) -> SendError {
    if error.is_connect() || error.is_builder() {
        SendError::Transient(format!("could not connect: {error}"))
    } else if error.is_timeout() {
        SendError::Unknown(format!("no answer in time: {error}"))
    } else {
        SendError::Unknown(format!("the request failed after it was sent: {error}"))
    }
}

/// How long to wait before retrying after a quota was exhausted, when the
/// provider does not say.
const QUOTA_RETRY: Duration = Duration::from_secs(3600);

/// Classifies a failure answer: `status`, the body `text` and the parsed
/// `Retry-After`.
pub fn classify(
    kind: ProviderKind,
    status: u16,
    text: &str,
    retry_after: Option<Duration>,
) -> SendError {
    let message = provider_message(text);
    let said = format!("{} answered {status}: {message}", kind.as_str());
    match status {
        429 => {
            // A daily or monthly quota will not come back in seconds.
            let quota = text.contains("quota");
            let wait = retry_after.or(quota.then_some(QUOTA_RETRY));
            SendError::Throttled(said, wait)
        }
        // A concurrent request with the same idempotency key is still being
        // processed: its outcome decides, so ask the same provider again.
        409 if kind == ProviderKind::Resend && text.contains("concurrent_idempotent_requests") => {
            SendError::Unknown(said)
        }
        // The API key is wrong or lacks rights: the server's configuration,
        // not the email's fault; fixing it delivers the email.
        401 | 403 => SendError::Transient(said),
        408 => SendError::Transient(said),
        400..=499 => SendError::Permanent(said),
        _ => SendError::Throttled(said, retry_after),
    }
}

/// The provider's own words from an error body: Resend's `message`,
/// SendGrid's `errors[].message` (with their `field`), else the text cut
/// short.
fn provider_message(text: &str) -> String {
    if let Ok(body) = serde_json::from_str::<Value>(text) {
        if let Some(message) = body["message"].as_str() {
            return message.to_owned();
        }
        if let Some(errors) = body["errors"].as_array() {
            let messages: Vec<String> = errors
                .iter()
                .filter_map(|error| {
                    let message = error["message"].as_str()?;
                    Some(match error["field"].as_str() {
                        Some(field) if !field.is_empty() => format!("{field}: {message}"),
                        _ => message.to_owned(),
                    })
                })
                .collect();
            if !messages.is_empty() {
                return messages.join("; ");
            }
        }
    }
    let text = text.trim();
    if text.is_empty() {
        return "(no body)".to_owned();
    }
    text.chars().take(200).collect()
}

/// `Retry-After` as seconds or an HTTP date, from `now`; at most a day.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    let wait = match value.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => {
            let at = DateTime::parse_from_rfc2822(value).ok()?;
            (at.with_timezone(&Utc) - now).to_std().unwrap_or_default()
        }
    };
    Some(wait.min(Duration::from_secs(24 * 3600)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn email() -> OutgoingEmail {
        OutgoingEmail {
            id: "0190".to_owned(),
            from: "Sesame <sesame@example.com>".parse().unwrap(),
            to: "Ada <ada@example.com>".parse().unwrap(),
            message_id: "<0190@sesame>".to_owned(),
            idempotency_key: "key-0190".to_owned(),
            subject: "Your request".to_owned(),
            text: "Hello".to_owned(),
            html: "<p>Hello</p>".to_owned(),
            headers: Vec::new(),
            template: Some("applicant_approved".to_owned()),
        }
    }

    #[test]
    fn resend_gets_the_parts_and_tags_without_personal_data() {
        let body = resend_body(&email());
        assert_eq!(body["from"], "Sesame <sesame@example.com>");
        assert_eq!(body["to"], json!(["ada@example.com"]));
        assert_eq!(body["subject"], "Your request");
        assert_eq!(body["text"], "Hello");
        assert_eq!(body["html"], "<p>Hello</p>");
        assert_eq!(body["headers"]["Message-ID"], "<0190@sesame>");
        let tags = body["tags"].to_string();
        assert!(!tags.contains("ada"), "{tags}");
        assert_eq!(
            body["tags"],
            json!([
                { "name": "sesame_email", "value": "0190" },
                { "name": "template", "value": "applicant_approved" },
            ])
        );
    }

    #[test]
    fn sendgrid_gets_text_before_html_and_the_id_in_custom_args() {
        let body = sendgrid_body(&email());
        assert_eq!(
            body["personalizations"],
            json!([{ "to": [{ "email": "ada@example.com", "name": "Ada" }] }])
        );
        assert_eq!(
            body["from"],
            json!({ "email": "sesame@example.com", "name": "Sesame" })
        );
        assert_eq!(body["content"][0]["type"], "text/plain");
        assert_eq!(body["content"][1]["type"], "text/html");
        assert_eq!(body["custom_args"], json!({ "sesame_email": "0190" }));
    }

    #[test]
    fn answers_are_classified_like_smtp_replies() {
        let resend = ProviderKind::Resend;
        let validation =
            r#"{"statusCode":422,"name":"validation_error","message":"Invalid `to` field."}"#;
        assert_eq!(
            classify(resend, 422, validation, None),
            SendError::Permanent("resend answered 422: Invalid `to` field.".to_owned())
        );
        assert_eq!(
            classify(resend, 429, "{}", Some(Duration::from_secs(7))),
            SendError::Throttled(
                "resend answered 429: {}".to_owned(),
                Some(Duration::from_secs(7))
            )
        );
        let quota = r#"{"name":"daily_quota_exceeded","message":"You have reached your daily email sending quota."}"#;
        assert!(matches!(
            classify(resend, 429, quota, None),
            SendError::Throttled(_, Some(wait)) if wait == QUOTA_RETRY
        ));
        assert!(matches!(
            classify(resend, 503, "", None),
            SendError::Throttled(message, None) if message.ends_with("(no body)")
        ));
        let concurrent = r#"{"name":"concurrent_idempotent_requests","message":"Same idempotency key used while original request is still in progress."}"#;
        assert!(matches!(
            classify(resend, 409, concurrent, None),
            SendError::Unknown(_)
        ));
        // The key was used for another payload: no retry will pass.
        let reused = r#"{"name":"invalid_idempotent_request","message":"Same idempotency key used with a different request payload."}"#;
        assert!(matches!(
            classify(resend, 409, reused, None),
            SendError::Permanent(_)
        ));
        assert!(matches!(
            classify(resend, 401, "{}", None),
            SendError::Transient(_)
        ));
        let sendgrid = r#"{"errors":[{"message":"Does not contain a valid address.","field":"personalizations.0.to.0.email","help":null}]}"#;
        assert_eq!(
            classify(ProviderKind::SendGrid, 400, sendgrid, None),
            SendError::Permanent(
                "sendgrid answered 400: personalizations.0.to.0.email: Does not contain a valid address."
                    .to_owned()
            )
        );
    }

    #[test]
    fn retry_after_is_seconds_or_a_date() {
        let now = DateTime::parse_from_rfc3339("2026-12-03T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(parse_retry_after("12", now), Some(Duration::from_secs(12)));
        assert_eq!(
            parse_retry_after("Thu, 03 Dec 2026 10:01:00 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse_retry_after("Thu, 03 Dec 2026 09:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_retry_after("999999", now),
            Some(Duration::from_secs(24 * 3600))
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn api_keys_are_not_shown() {
        let shown = format!("{:?}", ApiKey::new(" re_secret\n"));
        assert!(!shown.contains("re_secret"), "{shown}");
        assert_eq!(ApiKey::new(" re_secret\n").0, "re_secret");
    }
}
