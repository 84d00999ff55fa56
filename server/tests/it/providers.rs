//! Local stand-ins for the HTTP email providers, for end-to-end tests of
//! the Resend and SendGrid transports and of the webhook endpoints:
//!
//! - [`FakeProvider`] serves Resend's `POST /emails` or SendGrid's
//!   `POST /v3/mail/send` on 127.0.0.1:0, checks authentication and the
//!   request body field by field as each provider documents it, keeps
//!   Resend's idempotency semantics, and answers from a [`plan`] of
//!   scripted failures (refusals, rate limits, hangs, "accepted but the
//!   client saw an error") before its default success.
//! - `post_resend_webhook` and `post_sendgrid_webhook` sign and send
//!   delivery webhooks exactly as the providers do (Svix HMAC-SHA256,
//!   ECDSA P-256), with variants taking a forged timestamp or signature.
//!
//! Both fakes refuse unknown top-level fields (Resend's with 422
//! `validation_error`, SendGrid's with 400, although SendGrid does not
//! document doing so), so a misspelt field fails a test instead of being
//! silently ignored in production. The self-tests at the end exercise the
//! fakes through a plain HTTP client and check the signed webhooks against
//! `sesame_server::mail::webhooks`.
//!
//! [`plan`]: FakeProvider::plan

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::EncodePublicKey;
use serde_json::{Map, Value, json};
use sha2::Sha256;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Which provider a [`FakeProvider`] imitates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Resend,
    SendGrid,
}

/// How the fake answers one send request. Each request to the send
/// endpoint takes the next answer of the plan, whatever happens to it after
/// (refused for its key or its body included); once the plan is empty every
/// request gets [`Answer::Ok`].
#[derive(Clone, Debug)]
pub enum Answer {
    /// Behave as the provider: check, accept, answer success.
    Ok,
    /// Answer this status without looking at the request; nothing is
    /// accepted. `body: None` gives the provider's usual error body.
    Status {
        status: u16,
        /// Seconds for a `Retry-After` header.
        retry_after: Option<u64>,
        body: Option<String>,
    },
    /// Wait this long without accepting anything, then answer 503 (the
    /// client should have given up by then).
    Hang(Duration),
    /// Check and accept the email (it counts as accepted, and a Resend
    /// idempotency key remembers the success), then answer this status as
    /// if the answer had been lost: the client sees a failure.
    AcceptThenFail { status: u16 },
    /// Check and accept the email, then wait this long before the normal
    /// success answer (a client with a shorter timeout sees a timeout).
    AcceptThenHang(Duration),
}

impl Answer {
    /// A refusal with this status and the provider's usual error body.
    pub fn status(status: u16) -> Answer {
        Answer::Status {
            status,
            retry_after: None,
            body: None,
        }
    }

    /// A 429 with `Retry-After: seconds`.
    pub fn rate_limited(seconds: u64) -> Answer {
        Answer::Status {
            status: 429,
            retry_after: Some(seconds),
            body: None,
        }
    }
}

/// One email the fake provider accepted (once, whatever the retries).
#[derive(Clone, Debug)]
pub struct Accepted {
    /// Resend's email id, or SendGrid's `X-Message-Id`.
    pub id: String,
    /// The `Idempotency-Key` header of the request that was accepted.
    pub idempotency_key: Option<String>,
    /// The request body as sent.
    pub body: Value,
}

/// What the fake remembers.
#[derive(Default)]
struct Record {
    plan: VecDeque<Answer>,
    accepted: Vec<Accepted>,
    requests: usize,
    /// Resend idempotency keys: the body first sent with the key and the id
    /// answered.
    idempotency: HashMap<String, (Value, String)>,
}

struct Shared {
    kind: Kind,
    api_key: String,
    record: Mutex<Record>,
    accepted_count: watch::Sender<usize>,
}

/// A local HTTP server speaking Resend's or SendGrid's send API. Stops when
/// dropped.
pub struct FakeProvider {
    address: SocketAddr,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

impl Drop for FakeProvider {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeProvider {
    /// Resend's API (`POST /emails`), accepting `Authorization: Bearer
    /// <api_key>`.
    pub async fn resend(api_key: &str) -> FakeProvider {
        FakeProvider::start(Kind::Resend, api_key).await
    }

    /// SendGrid's v3 API (`POST /v3/mail/send`), accepting `Authorization:
    /// Bearer <api_key>`.
    pub async fn sendgrid(api_key: &str) -> FakeProvider {
        FakeProvider::start(Kind::SendGrid, api_key).await
    }

    async fn start(kind: Kind, api_key: &str) -> FakeProvider {
        let (accepted_count, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            kind,
            api_key: api_key.to_owned(),
            record: Mutex::new(Record::default()),
            accepted_count,
        });
        let path = match kind {
            Kind::Resend => "/emails",
            Kind::SendGrid => "/v3/mail/send",
        };
        let router = Router::new()
            .route(path, post(send))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("the fake provider binds a port");
        let address = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            axum::serve(listener, router)
                .await
                .expect("the fake provider serves");
        });
        FakeProvider {
            address,
            shared,
            server,
        }
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Appends answers for the next send requests, in order.
    pub fn plan(&self, answers: Vec<Answer>) {
        self.shared.record.lock().unwrap().plan.extend(answers);
    }

    /// The emails accepted so far, once each, in order.
    pub fn accepted(&self) -> Vec<Accepted> {
        self.shared.record.lock().unwrap().accepted.clone()
    }

    /// Every request to the send endpoint so far, refused ones included.
    pub fn requests(&self) -> usize {
        self.shared.record.lock().unwrap().requests
    }

    /// Waits until at least `count` emails are accepted and returns them;
    /// panics after `timeout`.
    pub async fn wait_accepted(&self, count: usize, timeout: Duration) -> Vec<Accepted> {
        let mut receiver = self.shared.accepted_count.subscribe();
        let reached = tokio::time::timeout(timeout, receiver.wait_for(|seen| *seen >= count)).await;
        if reached.is_err() {
            panic!(
                "{:?}: {} of {count} emails accepted within {timeout:?} ({} requests)",
                self.shared.kind,
                self.accepted().len(),
                self.requests()
            );
        }
        self.accepted()
    }
}

/// The send endpoint of both fakes.
async fn send(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let answer = {
        let mut record = shared.record.lock().unwrap();
        record.requests += 1;
        record.plan.pop_front().unwrap_or(Answer::Ok)
    };
    match answer {
        Answer::Status {
            status,
            retry_after,
            body,
        } => return scripted_status(shared.kind, status, retry_after, body),
        Answer::Hang(duration) => {
            tokio::time::sleep(duration).await;
            return scripted_status(shared.kind, 503, None, None);
        }
        Answer::Ok | Answer::AcceptThenFail { .. } | Answer::AcceptThenHang(_) => {}
    }
    let outcome = match shared.kind {
        Kind::Resend => resend_send(&shared, &headers, &body),
        Kind::SendGrid => sendgrid_send(&shared, &headers, &body),
    };
    let success = match outcome {
        Outcome::Accepted(success) => success,
        // Refusals and idempotent replays ignore the planned failure.
        Outcome::Answered(answer) => return answer,
    };
    match answer {
        Answer::AcceptThenFail { status } => scripted_status(shared.kind, status, None, None),
        Answer::AcceptThenHang(duration) => {
            tokio::time::sleep(duration).await;
            success
        }
        _ => success,
    }
}

/// A checked request: an email accepted now (with the success answer to
/// give), or an answer that accepts nothing (a refusal, an idempotent
/// replay).
enum Outcome {
    Accepted(Response),
    Answered(Response),
}

fn scripted_status(
    kind: Kind,
    status: u16,
    retry_after: Option<u64>,
    body: Option<String>,
) -> Response {
    let code = StatusCode::from_u16(status).expect("a valid HTTP status in the plan");
    let mut response = match body {
        Some(text) => (code, text).into_response(),
        None => match kind {
            Kind::Resend => resend_error(status, resend_error_name(status), "scripted failure"),
            Kind::SendGrid => sendgrid_error(status, "scripted failure", None),
        },
    };
    if let Some(seconds) = retry_after {
        response
            .headers_mut()
            .insert("retry-after", HeaderValue::from(seconds));
    }
    response
}

/// The bearer token of the request, if any.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("authorization")?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

/// Records an acceptance and wakes `wait_accepted`.
fn accept(shared: &Shared, id: &str, idempotency_key: Option<String>, body: Value) {
    let count = {
        let mut record = shared.record.lock().unwrap();
        if let Some(key) = &idempotency_key {
            record
                .idempotency
                .insert(key.clone(), (body.clone(), id.to_owned()));
        }
        record.accepted.push(Accepted {
            id: id.to_owned(),
            idempotency_key,
            body,
        });
        record.accepted.len()
    };
    shared.accepted_count.send_replace(count);
}

// --- Resend ---

/// Resend's error body: `{"statusCode", "name", "message"}`.
fn resend_error(status: u16, name: &str, message: &str) -> Response {
    let code = StatusCode::from_u16(status).unwrap();
    let body = json!({"statusCode": status, "name": name, "message": message});
    (code, axum::Json(body)).into_response()
}

fn resend_error_name(status: u16) -> &'static str {
    match status {
        400 => "validation_error",
        401 => "missing_api_key",
        403 => "invalid_api_key",
        409 => "invalid_idempotent_request",
        422 => "validation_error",
        429 => "rate_limit_exceeded",
        _ => "application_error",
    }
}

const RESEND_FIELDS: &[&str] = &[
    "from",
    "to",
    "subject",
    "bcc",
    "cc",
    "reply_to",
    "html",
    "text",
    "headers",
    "attachments",
    "tags",
    "scheduled_at",
    "topic_id",
    "template",
];

fn resend_send(shared: &Shared, headers: &HeaderMap, body: &[u8]) -> Outcome {
    let Some(token) = bearer(headers) else {
        return Outcome::Answered(resend_error(
            401,
            "missing_api_key",
            "Missing API key in the authorization header. Include the following header \
             Authorization: Bearer YOUR_API_KEY in the request.",
        ));
    };
    if token != shared.api_key {
        return Outcome::Answered(resend_error(401, "validation_error", "API key is invalid"));
    }
    let idempotency_key = match headers.get("idempotency-key").map(HeaderValue::to_str) {
        None => None,
        Some(Ok(key)) if (1..=256).contains(&key.len()) => Some(key.to_owned()),
        Some(_) => {
            return Outcome::Answered(resend_error(
                400,
                "invalid_idempotency_key",
                "The key must be between 1-256 chars.",
            ));
        }
    };
    let email: Value = match serde_json::from_slice(body) {
        Ok(value) => value,
        Err(error) => {
            return Outcome::Answered(resend_error(
                422,
                "validation_error",
                &format!("Invalid JSON body: {error}"),
            ));
        }
    };
    if let Err((name, message)) = resend_check(&email) {
        return Outcome::Answered(resend_error(422, name, &message));
    }

    if let Some(key) = &idempotency_key {
        let record = shared.record.lock().unwrap();
        if let Some((first_body, id)) = record.idempotency.get(key) {
            // Resend answers a retry with the first answer, and sends nothing.
            if *first_body == email {
                return Outcome::Answered(
                    (StatusCode::OK, axum::Json(json!({"id": id}))).into_response(),
                );
            }
            return Outcome::Answered(resend_error(
                409,
                "invalid_idempotent_request",
                "Same idempotency key used with a different request payload. Change your \
                 idempotency key or payload.",
            ));
        }
    }

    let id = uuid::Uuid::new_v4().to_string();
    accept(shared, &id, idempotency_key, email);
    Outcome::Accepted((StatusCode::OK, axum::Json(json!({"id": id}))).into_response())
}

/// Resend's documented rules for `POST /emails`, as (error name, message).
fn resend_check(email: &Value) -> Result<(), (&'static str, String)> {
    let invalid = |message: String| ("validation_error", message);
    let Value::Object(fields) = email else {
        return Err(invalid(
            "The request body must be a JSON object.".to_owned(),
        ));
    };
    if let Some(unknown) = fields
        .keys()
        .find(|name| !RESEND_FIELDS.contains(&name.as_str()))
    {
        return Err(invalid(format!("Unknown field `{unknown}`.")));
    }
    for required in ["from", "to", "subject"] {
        if !fields.contains_key(required) {
            return Err((
                "missing_required_field",
                format!("Missing `{required}` field."),
            ));
        }
    }

    let from_ok = fields["from"].as_str().is_some_and(resend_mailbox_ok);
    if !from_ok {
        return Err(invalid(
            "Invalid `from` field. The email address needs to follow the `email@example.com` \
             or `Name <email@example.com>` format."
                .to_owned(),
        ));
    }
    let recipients: Vec<&Value> = match &fields["to"] {
        Value::String(_) => vec![&fields["to"]],
        Value::Array(list) => list.iter().collect(),
        _ => {
            return Err(invalid(
                "The `to` field must be a string or an array of strings.".to_owned(),
            ));
        }
    };
    if recipients.is_empty() || recipients.len() > 50 {
        return Err(invalid(
            "The `to` field must contain between 1 and 50 addresses.".to_owned(),
        ));
    }
    for recipient in recipients {
        if !recipient.as_str().is_some_and(resend_mailbox_ok) {
            return Err(invalid(format!("Invalid `to` field: {recipient}.")));
        }
    }
    let subject_ok = fields["subject"]
        .as_str()
        .is_some_and(|subject| !subject.trim().is_empty());
    if !subject_ok {
        return Err(invalid(
            "The `subject` field must be a non-empty string.".to_owned(),
        ));
    }

    let mut has_body = false;
    for part in ["html", "text"] {
        match fields.get(part) {
            None => {}
            Some(Value::String(_)) => has_body = true,
            Some(_) => return Err(invalid(format!("The `{part}` field must be a string."))),
        }
    }
    if !has_body {
        return Err((
            "missing_required_field",
            "Missing `html` or `text` field.".to_owned(),
        ));
    }

    if let Some(headers) = fields.get("headers") {
        let all_strings = headers
            .as_object()
            .is_some_and(|headers| headers.values().all(Value::is_string));
        if !all_strings {
            return Err(invalid(
                "The `headers` field must be an object of string values.".to_owned(),
            ));
        }
    }
    if let Some(tags) = fields.get("tags") {
        let Value::Array(tags) = tags else {
            return Err(invalid(
                "The `tags` field must be an array of {name, value}.".to_owned(),
            ));
        };
        for tag in tags {
            resend_tag_check(tag).map_err(invalid)?;
        }
    }
    Ok(())
}

fn resend_tag_check(tag: &Value) -> Result<(), String> {
    let Value::Object(tag) = tag else {
        return Err("Each tag must be an object with `name` and `value`.".to_owned());
    };
    if let Some(unknown) = tag.keys().find(|name| *name != "name" && *name != "value") {
        return Err(format!("Unknown tag field `{unknown}`."));
    }
    for part in ["name", "value"] {
        let Some(text) = tag.get(part).and_then(Value::as_str) else {
            return Err(format!("Tag `{part}` must be a string."));
        };
        let allowed = text.chars().all(|character| {
            character.is_ascii_alphanumeric() || character == '_' || character == '-'
        });
        if text.is_empty() || text.len() > 256 || !allowed {
            return Err(format!(
                "Tag `{part}` {text:?} must only contain ASCII letters (a-z, A-Z), numbers \
                 (0-9), underscores (_), or dashes (-), at most 256 characters."
            ));
        }
    }
    Ok(())
}

/// `addr@domain` or `Name <addr@domain>`.
fn resend_mailbox_ok(text: &str) -> bool {
    let address = match text.trim().strip_suffix('>') {
        Some(rest) => match rest.rsplit_once('<') {
            Some((_name, address)) => address,
            None => return false,
        },
        None => text.trim(),
    };
    address_ok(address)
}

/// A plausible address: one `@`, something on each side, no spaces or
/// angle brackets, a dot in the domain.
fn address_ok(address: &str) -> bool {
    let Some((local, domain)) = address.split_once('@') else {
        return false;
    };
    let clean = |part: &str| {
        !part.is_empty()
            && !part.contains(['@', ' ', '<', '>', ','])
            && !part.chars().any(char::is_control)
    };
    clean(local) && clean(domain) && domain.contains('.')
}

// --- SendGrid ---

/// SendGrid's error body: `{"errors": [{"message", "field", "help"}]}`.
fn sendgrid_error(status: u16, message: &str, field: Option<&str>) -> Response {
    let code = StatusCode::from_u16(status).unwrap();
    let body = json!({"errors": [{"message": message, "field": field, "help": null}]});
    (code, axum::Json(body)).into_response()
}

const SENDGRID_FIELDS: &[&str] = &[
    "personalizations",
    "from",
    "reply_to",
    "reply_to_list",
    "subject",
    "content",
    "attachments",
    "template_id",
    "headers",
    "categories",
    "custom_args",
    "send_at",
    "batch_id",
    "asm",
    "ip_pool_name",
    "mail_settings",
    "tracking_settings",
];

/// Headers SendGrid refuses in `headers` (it sets them itself).
const SENDGRID_RESERVED_HEADERS: &[&str] = &[
    "x-sg-id",
    "x-sg-eid",
    "received",
    "dkim-signature",
    "content-type",
    "content-transfer-encoding",
    "to",
    "from",
    "subject",
    "reply-to",
    "cc",
    "bcc",
];

fn sendgrid_send(shared: &Shared, headers: &HeaderMap, body: &[u8]) -> Outcome {
    match bearer(headers) {
        None => {
            return Outcome::Answered(sendgrid_error(401, "authorization required", None));
        }
        Some(token) if token != shared.api_key => {
            return Outcome::Answered(sendgrid_error(
                401,
                "The provided authorization grant is invalid, expired, or revoked",
                None,
            ));
        }
        Some(_) => {}
    }
    let email: Value = match serde_json::from_slice(body) {
        Ok(value) => value,
        Err(_) => {
            return Outcome::Answered(sendgrid_error(400, "Bad Request", None));
        }
    };
    if let Err((field, message)) = sendgrid_check(&email) {
        return Outcome::Answered(sendgrid_error(400, &message, Some(&field)));
    }
    let id = random_message_id();
    accept(shared, &id, None, email);
    let mut response = StatusCode::ACCEPTED.into_response();
    response
        .headers_mut()
        .insert("x-message-id", HeaderValue::from_str(&id).unwrap());
    Outcome::Accepted(response)
}

/// 22 characters of URL-safe base64, the shape of SendGrid's message ids.
fn random_message_id() -> String {
    let bytes: [u8; 16] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// SendGrid's documented rules for `/v3/mail/send`, as (field, message).
fn sendgrid_check(email: &Value) -> Result<(), (String, String)> {
    let error = |field: &str, message: &str| (field.to_owned(), message.to_owned());
    let Value::Object(fields) = email else {
        return Err(error("", "The request body must be a JSON object."));
    };
    if let Some(unknown) = fields
        .keys()
        .find(|name| !SENDGRID_FIELDS.contains(&name.as_str()))
    {
        return Err(error(unknown, "Unknown field."));
    }

    let Some(Value::Array(personalizations)) = fields.get("personalizations") else {
        return Err(error(
            "personalizations",
            "The personalizations field is required and must have at least one personalization.",
        ));
    };
    if personalizations.is_empty() || personalizations.len() > 1000 {
        return Err(error(
            "personalizations",
            "The personalizations field must have between 1 and 1000 personalizations.",
        ));
    }
    let mut every_personalization_has_a_subject = true;
    for (index, personalization) in personalizations.iter().enumerate() {
        let prefix = format!("personalizations.{index}");
        let Value::Object(personalization) = personalization else {
            return Err(error(&prefix, "Each personalization must be an object."));
        };
        let Some(Value::Array(to)) = personalization.get("to") else {
            return Err(error(
                &format!("{prefix}.to"),
                "The to array is required for all personalization objects, and must have at \
                 least one email object with a valid email address.",
            ));
        };
        if to.is_empty() {
            return Err(error(
                &format!("{prefix}.to"),
                "The to array must have at least one email object.",
            ));
        }
        for (position, recipient) in to.iter().enumerate() {
            sendgrid_address_check(recipient)
                .map_err(|message| error(&format!("{prefix}.to.{position}.email"), &message))?;
        }
        every_personalization_has_a_subject &= personalization
            .get("subject")
            .and_then(Value::as_str)
            .is_some_and(|subject| !subject.is_empty());
        if let Some(custom_args) = personalization.get("custom_args") {
            sendgrid_string_object(custom_args)
                .map_err(|message| error(&format!("{prefix}.custom_args"), &message))?;
        }
    }

    let from = fields.get("from").ok_or_else(|| {
        error(
            "from",
            "The from object must be provided for every email send.",
        )
    })?;
    sendgrid_address_check(from).map_err(|message| error("from.email", &message))?;

    let subject_ok = fields
        .get("subject")
        .and_then(Value::as_str)
        .is_some_and(|subject| !subject.is_empty());
    if !subject_ok && !every_personalization_has_a_subject {
        return Err(error(
            "subject",
            "The subject is required. You can get around this requirement if you use a \
             template with a subject defined or if every personalization has a subject defined.",
        ));
    }

    let Some(Value::Array(content)) = fields.get("content") else {
        return Err(error(
            "content",
            "Unless a valid template_id is provided, the content parameter is required. There \
             must be at least one defined content block.",
        ));
    };
    if content.is_empty() {
        return Err(error(
            "content",
            "There must be at least one defined content block.",
        ));
    }
    let mut types = Vec::new();
    for (index, block) in content.iter().enumerate() {
        let block_type = block.get("type").and_then(Value::as_str);
        let value = block.get("value").and_then(Value::as_str);
        let (Some(block_type), Some(value)) = (block_type, value) else {
            return Err(error(
                &format!("content.{index}"),
                "Each content block must have a string type and value.",
            ));
        };
        if value.is_empty() {
            return Err(error(
                &format!("content.{index}.value"),
                "The content value must be a string at least one character in length.",
            ));
        }
        types.push(block_type);
    }
    let position = |wanted: &str| types.iter().position(|found| *found == wanted);
    let count = |wanted: &str| types.iter().filter(|found| **found == wanted).count();
    if count("text/plain") > 1 || count("text/html") > 1 {
        return Err(error(
            "content",
            "If present, text/plain and text/html may only be provided once.",
        ));
    }
    let plain_not_first = position("text/plain").is_some_and(|index| index != 0);
    let html_misplaced = position("text/html")
        .is_some_and(|index| index != usize::from(position("text/plain").is_some()));
    if plain_not_first || html_misplaced {
        return Err(error(
            "content",
            "If present, text/plain must be first, followed by text/html, followed by any other \
             content.",
        ));
    }

    if let Some(headers) = fields.get("headers") {
        let headers =
            sendgrid_string_object(headers).map_err(|message| error("headers", &message))?;
        let reserved = headers
            .keys()
            .find(|name| SENDGRID_RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()));
        if let Some(name) = reserved {
            return Err(error(
                "headers",
                &format!("The header {name} is reserved and cannot be set in headers."),
            ));
        }
    }
    if let Some(custom_args) = fields.get("custom_args") {
        sendgrid_string_object(custom_args).map_err(|message| error("custom_args", &message))?;
    }
    Ok(())
}

/// `{"email": "...", "name": "..."}` with a valid address.
fn sendgrid_address_check(value: &Value) -> Result<(), String> {
    let Value::Object(fields) = value else {
        return Err("An email object {email, name} is required.".to_owned());
    };
    if let Some(unknown) = fields
        .keys()
        .find(|name| *name != "email" && *name != "name")
    {
        return Err(format!("Unknown field {unknown} in an email object."));
    }
    if let Some(name) = fields.get("name")
        && !name.is_string()
    {
        return Err("The name of an email object must be a string.".to_owned());
    }
    match fields.get("email").and_then(Value::as_str) {
        Some(address) if address_ok(address) => Ok(()),
        _ => Err("Does not contain a valid address.".to_owned()),
    }
}

/// An object whose values are all strings (`headers`, `custom_args`).
fn sendgrid_string_object(value: &Value) -> Result<&Map<String, Value>, String> {
    match value {
        Value::Object(fields) if fields.values().all(Value::is_string) => Ok(fields),
        _ => Err("Must be an object whose values are strings.".to_owned()),
    }
}

// --- Webhook senders ---

/// The `svix-signature` header value Resend (Svix) sends: `v1,<base64
/// HMAC-SHA256 of "{id}.{timestamp}.{body}">`, keyed with the base64 part
/// of `whsec_...`.
pub fn resend_signature(secret_whsec: &str, svix_id: &str, timestamp: i64, body: &[u8]) -> String {
    let encoded = secret_whsec
        .strip_prefix("whsec_")
        .expect("a Resend webhook secret starts with whsec_");
    let key = STANDARD
        .decode(encoded)
        .expect("the secret is base64 after whsec_");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{svix_id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// Posts a Resend webhook signed now with the secret, as Resend does.
/// Returns the status and body of the answer.
pub async fn post_resend_webhook(
    url: &str,
    secret_whsec: &str,
    svix_id: &str,
    payload: &Value,
) -> (u16, String) {
    let body = serde_json::to_vec(payload).unwrap();
    let timestamp = chrono::Utc::now().timestamp();
    let signature = resend_signature(secret_whsec, svix_id, timestamp, &body);
    post_resend_webhook_raw(url, svix_id, &timestamp.to_string(), &signature, &body).await
}

/// Posts a Resend webhook with the given headers and body as they are, for
/// forged, stale or tampered requests.
pub async fn post_resend_webhook_raw(
    url: &str,
    svix_id: &str,
    timestamp: &str,
    signature_header: &str,
    body: &[u8],
) -> (u16, String) {
    let request = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("svix-id", svix_id)
        .header("svix-timestamp", timestamp)
        .header("svix-signature", signature_header)
        .body(body.to_vec());
    status_and_text(request).await
}

/// A SendGrid-like signing key and its verification key as SendGrid shows
/// it (base64 DER SubjectPublicKeyInfo).
pub fn sendgrid_key_pair() -> (SigningKey, String) {
    let key = loop {
        // Almost every 32 random bytes are a valid scalar.
        let bytes: [u8; 32] = rand::random();
        if let Ok(key) = SigningKey::from_slice(&bytes) {
            break key;
        }
    };
    let public_der = key.verifying_key().to_public_key_der().unwrap();
    let public_key = STANDARD.encode(public_der.as_bytes());
    (key, public_key)
}

/// The `X-Twilio-Email-Event-Webhook-Signature` value SendGrid sends: the
/// base64 DER ECDSA P-256 / SHA-256 signature of the timestamp followed by
/// the body.
pub fn sendgrid_signature(signing_key: &SigningKey, timestamp: &str, body: &[u8]) -> String {
    let mut signed = timestamp.as_bytes().to_vec();
    signed.extend_from_slice(body);
    let signature: Signature = signing_key.sign(&signed);
    STANDARD.encode(signature.to_der().as_bytes())
}

/// Posts SendGrid events (a JSON array) signed now, as SendGrid does.
pub async fn post_sendgrid_webhook(
    url: &str,
    signing_key: &SigningKey,
    events: &Value,
) -> (u16, String) {
    let body = serde_json::to_vec(events).unwrap();
    let timestamp = chrono::Utc::now().timestamp().to_string();
    let signature = sendgrid_signature(signing_key, &timestamp, &body);
    post_sendgrid_webhook_raw(url, &timestamp, &signature, &body).await
}

/// Posts a SendGrid webhook with the given headers and body as they are.
pub async fn post_sendgrid_webhook_raw(
    url: &str,
    timestamp: &str,
    signature: &str,
    body: &[u8],
) -> (u16, String) {
    let request = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("X-Twilio-Email-Event-Webhook-Signature", signature)
        .header("X-Twilio-Email-Event-Webhook-Timestamp", timestamp)
        .body(body.to_vec());
    status_and_text(request).await
}

/// A Resend webhook payload as Resend documents it, for an email sent with
/// the `sesame_email` tag.
pub fn resend_event(event_type: &str, email_id: &str, sesame_email: Option<&str>) -> Value {
    let mut data = json!({
        "email_id": email_id,
        "created_at": "2026-01-05 10:00:00.000000+00",
        "from": "Sesame <sesame@example.com>",
        "to": ["applicant@example.org"],
        "subject": "Your access request",
    });
    if let Some(outbox_id) = sesame_email {
        data["tags"] = json!({ "sesame_email": outbox_id });
    }
    if event_type == "email.bounced" {
        data["bounce"] = json!({
            "type": "Permanent",
            "subType": "General",
            "message": "The recipient's mail server permanently rejected the email.",
        });
    }
    json!({
        "type": event_type,
        "created_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "data": data,
    })
}

/// One SendGrid event as SendGrid documents it (to put in the array
/// [`post_sendgrid_webhook`] sends), for an email whose send returned
/// `x_message_id` and carried the `sesame_email` custom arg.
pub fn sendgrid_event(event: &str, x_message_id: &str, sesame_email: Option<&str>) -> Value {
    let mut value = json!({
        "email": "applicant@example.org",
        "timestamp": chrono::Utc::now().timestamp(),
        "smtp-id": format!("<{x_message_id}@ismtpd-555>"),
        "event": event,
        "sg_event_id": format!("ev_{}", uuid::Uuid::new_v4().simple()),
        "sg_message_id": format!("{x_message_id}.filter0001.16648.5515E0B88.0"),
    });
    if let Some(outbox_id) = sesame_email {
        value["sesame_email"] = json!(outbox_id);
    }
    match event {
        "bounce" => {
            value["type"] = json!("bounce");
            value["status"] = json!("5.1.1");
            value["reason"] = json!("550 5.1.1 The email account does not exist");
        }
        "deferred" => {
            value["response"] = json!("400 try again later");
            value["attempt"] = json!("1");
        }
        "delivered" => value["response"] = json!("250 OK"),
        _ => {}
    }
    value
}

async fn status_and_text(request: reqwest::RequestBuilder) -> (u16, String) {
    let response = request
        .send()
        .await
        .expect("the webhook request is answered");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    (status, text)
}

// --- Self-tests ---

mod tests {
    use std::time::Instant;

    use sesame_server::mail::webhooks::{
        DeliveryReport, Provider, ReportKind, ResendVerifier, SendGridVerifier, WebhookError,
        parse_resend, parse_sendgrid,
    };

    use super::*;

    const KEY: &str = "re_test_key";
    const SECRET: &str = "whsec_c2VzYW1lIHRlc3Qgd2ViaG9vayBzZWNyZXQ=";

    fn client() -> reqwest::Client {
        reqwest::Client::new()
    }

    fn resend_email() -> Value {
        json!({
            "from": "Sesame <sesame@example.com>",
            "to": ["applicant@example.org"],
            "subject": "Your access request",
            "html": "<p>Approved</p>",
            "text": "Approved",
            "headers": {"Message-ID": "<em_1@sesame.example.com>"},
            "tags": [{"name": "sesame_email", "value": "em_1"}],
        })
    }

    fn sendgrid_email() -> Value {
        json!({
            "personalizations": [{"to": [{"email": "applicant@example.org", "name": "Ada"}]}],
            "from": {"email": "sesame@example.com", "name": "Sesame"},
            "subject": "Your access request",
            "content": [
                {"type": "text/plain", "value": "Approved"},
                {"type": "text/html", "value": "<p>Approved</p>"},
            ],
            "headers": {"Message-ID": "<em_1@sesame.example.com>"},
            "custom_args": {"sesame_email": "em_1"},
        })
    }

    async fn post_resend(
        provider: &FakeProvider,
        key: Option<&str>,
        idempotency_key: Option<&str>,
        body: &Value,
    ) -> (u16, Value) {
        let mut request = client()
            .post(format!("{}/emails", provider.base_url()))
            .json(body);
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        if let Some(idempotency_key) = idempotency_key {
            request = request.header("Idempotency-Key", idempotency_key);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn post_sendgrid(provider: &FakeProvider, key: &str, body: &Value) -> reqwest::Response {
        client()
            .post(format!("{}/v3/mail/send", provider.base_url()))
            .bearer_auth(key)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    async fn resend_refusal(provider: &FakeProvider, body: Value) -> (u16, String, String) {
        let (status, answer) = post_resend(provider, Some(KEY), None, &body).await;
        let name = answer["name"].as_str().unwrap_or_default().to_owned();
        let message = answer["message"].as_str().unwrap_or_default().to_owned();
        (status, name, message)
    }

    async fn sendgrid_refusal(provider: &FakeProvider, body: Value) -> (u16, String, String) {
        let response = post_sendgrid(provider, KEY, &body).await;
        let status = response.status().as_u16();
        let answer: Value = response.json().await.unwrap();
        let error = &answer["errors"][0];
        let field = error["field"].as_str().unwrap_or_default().to_owned();
        let message = error["message"].as_str().unwrap_or_default().to_owned();
        (status, field, message)
    }

    fn with(mut base: Value, name: &str, value: Value) -> Value {
        base[name] = value;
        base
    }

    fn without(mut base: Value, name: &str) -> Value {
        base.as_object_mut().unwrap().remove(name);
        base
    }

    #[tokio::test]
    async fn resend_fake_accepts_a_documented_email() {
        let provider = FakeProvider::resend(KEY).await;
        let (status, answer) = post_resend(&provider, Some(KEY), None, &resend_email()).await;
        assert_eq!(status, 200, "{answer}");
        let id = answer["id"].as_str().unwrap();
        assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");

        // `to` as a single string, a bare `from`, text only: all documented.
        let variant = with(
            with(
                without(resend_email(), "html"),
                "to",
                json!("a@example.org"),
            ),
            "from",
            json!("sesame@example.com"),
        );
        let (status, _) = post_resend(&provider, Some(KEY), None, &variant).await;
        assert_eq!(status, 200);

        let accepted = provider.wait_accepted(2, Duration::from_secs(5)).await;
        assert_eq!(accepted[0].id, id);
        assert_eq!(accepted[0].body, resend_email());
        assert_eq!(accepted[0].idempotency_key, None);
        assert_eq!(provider.requests(), 2);
    }

    #[tokio::test]
    async fn resend_fake_requires_the_api_key() {
        let provider = FakeProvider::resend(KEY).await;
        let (status, answer) = post_resend(&provider, None, None, &resend_email()).await;
        assert_eq!(
            (status, answer["name"].as_str()),
            (401, Some("missing_api_key"))
        );
        let (status, answer) =
            post_resend(&provider, Some("re_other"), None, &resend_email()).await;
        assert_eq!(status, 401);
        assert_eq!(answer["message"], "API key is invalid");
        assert_eq!(answer["statusCode"], 401);
        assert!(provider.accepted().is_empty());
        assert_eq!(provider.requests(), 2);
    }

    #[tokio::test]
    async fn resend_fake_checks_each_field() {
        let provider = FakeProvider::resend(KEY).await;
        let cases = [
            (
                with(resend_email(), "bcc_list", json!([])),
                "validation_error",
                "Unknown field `bcc_list`",
            ),
            (
                without(resend_email(), "from"),
                "missing_required_field",
                "Missing `from`",
            ),
            (
                without(resend_email(), "subject"),
                "missing_required_field",
                "Missing `subject`",
            ),
            (
                with(resend_email(), "from", json!("Sesame sesame@example.com")),
                "validation_error",
                "Invalid `from`",
            ),
            (
                with(resend_email(), "from", json!("Sesame <nobody>")),
                "validation_error",
                "Invalid `from`",
            ),
            (
                with(resend_email(), "to", json!([])),
                "validation_error",
                "between 1 and 50",
            ),
            (
                with(resend_email(), "to", json!(["not an address"])),
                "validation_error",
                "Invalid `to`",
            ),
            (
                with(resend_email(), "to", json!([42])),
                "validation_error",
                "Invalid `to`",
            ),
            (
                with(resend_email(), "subject", json!("  ")),
                "validation_error",
                "`subject`",
            ),
            (
                without(without(resend_email(), "html"), "text"),
                "missing_required_field",
                "`html` or `text`",
            ),
            (
                with(resend_email(), "html", json!(1)),
                "validation_error",
                "`html`",
            ),
            (
                with(resend_email(), "headers", json!({"X-Count": 3})),
                "validation_error",
                "`headers`",
            ),
            (
                with(resend_email(), "tags", json!({"sesame_email": "em_1"})),
                "validation_error",
                "`tags`",
            ),
            (
                with(
                    resend_email(),
                    "tags",
                    json!([{"name": "sesame email", "value": "em_1"}]),
                ),
                "validation_error",
                "ASCII letters",
            ),
            (
                with(
                    resend_email(),
                    "tags",
                    json!([{"name": "sesame_email", "value": "em.1"}]),
                ),
                "validation_error",
                "ASCII letters",
            ),
            (
                with(
                    resend_email(),
                    "tags",
                    json!([{"name": "x".repeat(257), "value": "v"}]),
                ),
                "validation_error",
                "256",
            ),
            (
                with(resend_email(), "tags", json!([{"name": "n"}])),
                "validation_error",
                "`value`",
            ),
        ];
        for (body, name, fragment) in cases {
            let (status, found_name, message) = resend_refusal(&provider, body.clone()).await;
            assert_eq!(status, 422, "{body}");
            assert_eq!(found_name, name, "{body}");
            assert!(
                message.contains(fragment),
                "{message:?} lacks {fragment:?} for {body}"
            );
        }
        let response = client()
            .post(format!("{}/emails", provider.base_url()))
            .bearer_auth(KEY)
            .body("{not json")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 422);
        assert!(provider.accepted().is_empty());
    }

    #[tokio::test]
    async fn resend_fake_answers_a_repeated_idempotency_key_with_the_first_answer() {
        let provider = FakeProvider::resend(KEY).await;
        let (status, first) =
            post_resend(&provider, Some(KEY), Some("em_1/1"), &resend_email()).await;
        assert_eq!(status, 200);
        let (status, again) =
            post_resend(&provider, Some(KEY), Some("em_1/1"), &resend_email()).await;
        assert_eq!((status, &again), (200, &first));
        assert_eq!(
            provider.accepted().len(),
            1,
            "a replay is not a second email"
        );
        assert_eq!(
            provider.accepted()[0].idempotency_key.as_deref(),
            Some("em_1/1")
        );

        let changed = with(resend_email(), "subject", json!("Another subject"));
        let (status, answer) = post_resend(&provider, Some(KEY), Some("em_1/1"), &changed).await;
        assert_eq!(
            (status, answer["name"].as_str()),
            (409, Some("invalid_idempotent_request"))
        );

        let (status, other) =
            post_resend(&provider, Some(KEY), Some("em_2/1"), &resend_email()).await;
        assert_eq!(status, 200);
        assert_ne!(other["id"], first["id"]);
        let long_key = "k".repeat(257);
        let (status, answer) =
            post_resend(&provider, Some(KEY), Some(&long_key), &resend_email()).await;
        assert_eq!(
            (status, answer["name"].as_str()),
            (400, Some("invalid_idempotency_key"))
        );
        assert_eq!(provider.accepted().len(), 2);
        assert_eq!(provider.requests(), 5);
    }

    #[tokio::test]
    async fn a_resend_retry_after_an_accepted_but_failed_send_gets_the_first_id() {
        // The crash/timeout duplicate case: the provider took the email but
        // the client saw a failure; the retry with the same key sends nothing.
        let provider = FakeProvider::resend(KEY).await;
        provider.plan(vec![Answer::AcceptThenFail { status: 500 }]);
        let (status, answer) =
            post_resend(&provider, Some(KEY), Some("em_1/1"), &resend_email()).await;
        assert_eq!(
            (status, answer["name"].as_str()),
            (500, Some("application_error"))
        );
        let accepted = provider.wait_accepted(1, Duration::from_secs(5)).await;
        let (status, retry) =
            post_resend(&provider, Some(KEY), Some("em_1/1"), &resend_email()).await;
        assert_eq!(status, 200);
        assert_eq!(retry["id"].as_str(), Some(accepted[0].id.as_str()));
        assert_eq!(provider.accepted().len(), 1);
    }

    #[tokio::test]
    async fn the_plan_is_consumed_in_order_then_success() {
        let provider = FakeProvider::resend(KEY).await;
        provider.plan(vec![
            Answer::status(503),
            Answer::rate_limited(2),
            Answer::Status {
                status: 422,
                retry_after: None,
                body: Some("custom".to_owned()),
            },
            Answer::Ok,
        ]);
        let send = || {
            client()
                .post(format!("{}/emails", provider.base_url()))
                .bearer_auth(KEY)
                .json(&resend_email())
                .send()
        };
        let unavailable = send().await.unwrap();
        assert_eq!(unavailable.status().as_u16(), 503);
        assert_eq!(unavailable.headers().get("retry-after"), None);
        let body: Value = unavailable.json().await.unwrap();
        assert_eq!(body["statusCode"], 503);

        let limited = send().await.unwrap();
        assert_eq!(limited.status().as_u16(), 429);
        assert_eq!(limited.headers()["retry-after"], "2");
        let body: Value = limited.json().await.unwrap();
        assert_eq!(body["name"], "rate_limit_exceeded");

        let custom = send().await.unwrap();
        assert_eq!(custom.status().as_u16(), 422);
        assert_eq!(custom.text().await.unwrap(), "custom");
        assert!(provider.accepted().is_empty());

        for _ in 0..2 {
            assert_eq!(send().await.unwrap().status().as_u16(), 200);
        }
        assert_eq!(provider.accepted().len(), 2);
        assert_eq!(provider.requests(), 5);
    }

    #[tokio::test]
    async fn planned_refusals_do_not_accept_even_invalid_requests_and_consume_one_entry_each() {
        let provider = FakeProvider::sendgrid(KEY).await;
        provider.plan(vec![Answer::status(500)]);
        // Planned answers come before authentication.
        let response = post_sendgrid(&provider, "SG.wrong", &json!({})).await;
        assert_eq!(response.status().as_u16(), 500);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["errors"][0]["message"], "scripted failure");
        // A validation failure consumes its (default) entry too.
        provider.plan(vec![Answer::Ok, Answer::AcceptThenFail { status: 502 }]);
        let response = post_sendgrid(&provider, KEY, &json!({})).await;
        assert_eq!(response.status().as_u16(), 400);
        let response = post_sendgrid(&provider, KEY, &sendgrid_email()).await;
        assert_eq!(response.status().as_u16(), 502);
        assert_eq!(provider.accepted().len(), 1);
        assert_eq!(provider.requests(), 3);
    }

    #[tokio::test]
    async fn hangs_outlast_a_client_timeout_with_or_without_acceptance() {
        let provider = FakeProvider::resend(KEY).await;
        provider.plan(vec![
            Answer::Hang(Duration::from_secs(2)),
            Answer::AcceptThenHang(Duration::from_secs(2)),
        ]);
        let impatient = reqwest::Client::builder()
            .timeout(Duration::from_millis(200))
            .build()
            .unwrap();
        for _ in 0..2 {
            let started = Instant::now();
            let error = impatient
                .post(format!("{}/emails", provider.base_url()))
                .bearer_auth(KEY)
                .json(&resend_email())
                .send()
                .await
                .unwrap_err();
            assert!(error.is_timeout(), "{error}");
            assert!(started.elapsed() < Duration::from_secs(2));
        }
        // Only the second was accepted, though its client gave up.
        let accepted = provider.wait_accepted(1, Duration::from_secs(5)).await;
        assert_eq!(accepted.len(), 1);
        assert_eq!(provider.requests(), 2);
    }

    #[tokio::test]
    async fn sendgrid_fake_accepts_a_documented_email_with_a_message_id() {
        let provider = FakeProvider::sendgrid(KEY).await;
        let response = post_sendgrid(&provider, KEY, &sendgrid_email()).await;
        assert_eq!(response.status().as_u16(), 202);
        let message_id = response.headers()["x-message-id"]
            .to_str()
            .unwrap()
            .to_owned();
        assert_eq!(message_id.len(), 22, "{message_id}");
        assert!(response.text().await.unwrap().is_empty());

        let second = post_sendgrid(&provider, KEY, &sendgrid_email()).await;
        assert_eq!(second.status().as_u16(), 202);
        assert_ne!(second.headers()["x-message-id"], message_id.as_str());

        // Subjects per personalization and HTML-only content are documented.
        let variant = with(
            with(
                without(sendgrid_email(), "subject"),
                "personalizations",
                json!([{"to": [{"email": "a@example.org"}], "subject": "Hi"}]),
            ),
            "content",
            json!([{"type": "text/html", "value": "<p>Hi</p>"}]),
        );
        assert_eq!(
            post_sendgrid(&provider, KEY, &variant)
                .await
                .status()
                .as_u16(),
            202
        );

        // No idempotency at SendGrid: each request is an email.
        let accepted = provider.wait_accepted(3, Duration::from_secs(5)).await;
        assert_eq!(accepted[0].id, message_id);
        assert_eq!(accepted[0].body, sendgrid_email());
    }

    #[tokio::test]
    async fn sendgrid_fake_requires_the_api_key() {
        let provider = FakeProvider::sendgrid(KEY).await;
        let missing = client()
            .post(format!("{}/v3/mail/send", provider.base_url()))
            .json(&sendgrid_email())
            .send()
            .await
            .unwrap();
        assert_eq!(missing.status().as_u16(), 401);
        let wrong = post_sendgrid(&provider, "SG.other", &sendgrid_email()).await;
        assert_eq!(wrong.status().as_u16(), 401);
        let body: Value = wrong.json().await.unwrap();
        assert!(
            body["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("invalid")
        );
        assert!(provider.accepted().is_empty());
    }

    #[tokio::test]
    async fn sendgrid_fake_checks_each_field() {
        let provider = FakeProvider::sendgrid(KEY).await;
        let plain = json!({"type": "text/plain", "value": "Hi"});
        let html = json!({"type": "text/html", "value": "<p>Hi</p>"});
        let cases = [
            (
                with(sendgrid_email(), "reply", json!({})),
                "reply",
                "Unknown field",
            ),
            (
                without(sendgrid_email(), "personalizations"),
                "personalizations",
                "required",
            ),
            (
                with(sendgrid_email(), "personalizations", json!([])),
                "personalizations",
                "between 1 and 1000",
            ),
            (
                with(sendgrid_email(), "personalizations", json!([{}])),
                "personalizations.0.to",
                "to array is required",
            ),
            (
                with(sendgrid_email(), "personalizations", json!([{"to": []}])),
                "personalizations.0.to",
                "at least one",
            ),
            (
                with(
                    sendgrid_email(),
                    "personalizations",
                    json!([{"to": ["a@example.org"]}]),
                ),
                "personalizations.0.to.0.email",
                "email object",
            ),
            (
                with(
                    sendgrid_email(),
                    "personalizations",
                    json!([{"to": [{"email": "nobody"}]}]),
                ),
                "personalizations.0.to.0.email",
                "valid address",
            ),
            (
                without(sendgrid_email(), "from"),
                "from",
                "must be provided",
            ),
            (
                with(sendgrid_email(), "from", json!("sesame@example.com")),
                "from.email",
                "email object",
            ),
            (
                with(
                    sendgrid_email(),
                    "from",
                    json!({"email": "sesame@example.com", "name": 1}),
                ),
                "from.email",
                "name",
            ),
            (
                without(sendgrid_email(), "subject"),
                "subject",
                "subject is required",
            ),
            (
                without(sendgrid_email(), "content"),
                "content",
                "content parameter is required",
            ),
            (
                with(sendgrid_email(), "content", json!([])),
                "content",
                "at least one",
            ),
            (
                with(sendgrid_email(), "content", json!([html, plain])),
                "content",
                "text/plain must be first",
            ),
            (
                with(sendgrid_email(), "content", json!([plain, plain])),
                "content",
                "only be provided once",
            ),
            (
                with(
                    sendgrid_email(),
                    "content",
                    json!([{"type": "text/plain", "value": ""}]),
                ),
                "content.0.value",
                "at least one character",
            ),
            (
                with(sendgrid_email(), "content", json!([{"type": "text/plain"}])),
                "content.0",
                "string type and value",
            ),
            (
                with(sendgrid_email(), "headers", json!({"X-Count": 3})),
                "headers",
                "strings",
            ),
            (
                with(
                    sendgrid_email(),
                    "headers",
                    json!({"Reply-To": "a@example.org"}),
                ),
                "headers",
                "reserved",
            ),
            (
                with(sendgrid_email(), "headers", json!({"x-sg-id": "1"})),
                "headers",
                "reserved",
            ),
            (
                with(sendgrid_email(), "custom_args", json!({"attempt": 1})),
                "custom_args",
                "strings",
            ),
        ];
        for (body, field, fragment) in cases {
            let (status, found_field, message) = sendgrid_refusal(&provider, body.clone()).await;
            assert_eq!(status, 400, "{body}");
            assert_eq!(found_field, field, "{body}");
            assert!(
                message.contains(fragment),
                "{message:?} lacks {fragment:?} for {body}"
            );
        }
        assert!(provider.accepted().is_empty());
        assert_eq!(provider.requests(), 21);
    }

    #[tokio::test]
    async fn wait_accepted_panics_with_the_count_when_time_runs_out() {
        let provider = FakeProvider::sendgrid(KEY).await;
        let waiting = tokio::spawn(async move {
            provider.wait_accepted(1, Duration::from_millis(50)).await;
        });
        let error = waiting.await.unwrap_err();
        assert!(error.is_panic());
        let message = *error.into_panic().downcast::<String>().unwrap();
        assert!(message.contains("0 of 1 emails accepted"), "{message}");
    }

    // --- Webhooks, verified by sesame_server's verifiers ---

    /// What a test receiver saw: verification outcome, then parsed reports.
    type Received = Arc<Mutex<Vec<Result<Vec<DeliveryReport>, WebhookError>>>>;

    /// A receiver at `/resend` and `/sendgrid` answering 401, 400 or 200 as
    /// the lead's endpoint will, with webhooks.rs doing the work.
    async fn receiver(
        resend: ResendVerifier,
        sendgrid: SendGridVerifier,
    ) -> (String, Received, JoinHandle<()>) {
        let received: Received = Arc::default();
        let resend_log = received.clone();
        let sendgrid_log = received.clone();
        let router = Router::new()
            .route(
                "/resend",
                post(move |headers: HeaderMap, body: Bytes| {
                    let outcome = resend
                        .verify(&headers, &body, chrono::Utc::now())
                        .and_then(|id| parse_resend(&body, id.as_str()));
                    std::future::ready(answer(&resend_log, outcome))
                }),
            )
            .route(
                "/sendgrid",
                post(move |headers: HeaderMap, body: Bytes| {
                    let outcome = sendgrid
                        .verify(&headers, &body, chrono::Utc::now())
                        .and_then(|()| parse_sendgrid(&body));
                    std::future::ready(answer(&sendgrid_log, outcome))
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        (url, received, server)
    }

    fn answer(
        log: &Received,
        outcome: Result<Vec<DeliveryReport>, WebhookError>,
    ) -> (StatusCode, String) {
        let reply = match &outcome {
            Ok(reports) => (StatusCode::OK, format!("{} reports", reports.len())),
            Err(error @ WebhookError::Unauthorized(_)) => {
                (StatusCode::UNAUTHORIZED, error.to_string())
            }
            Err(error @ WebhookError::Malformed(_)) => (StatusCode::BAD_REQUEST, error.to_string()),
        };
        log.lock().unwrap().push(outcome);
        reply
    }

    #[tokio::test]
    async fn signed_resend_webhooks_verify_and_parse() {
        let (_, sendgrid_public) = sendgrid_key_pair();
        let (url, received, server) = receiver(
            ResendVerifier::new(SECRET).unwrap(),
            SendGridVerifier::new(&sendgrid_public).unwrap(),
        )
        .await;
        let url = format!("{url}/resend");
        let email_id = "4ef9a417-02e9-4d39-ad75-9611e0fcc33c";

        let payload = resend_event("email.bounced", email_id, Some("em_9"));
        let (status, text) = post_resend_webhook(&url, SECRET, "msg_1", &payload).await;
        assert_eq!((status, text.as_str()), (200, "1 reports"));
        let reports = received.lock().unwrap().pop().unwrap().unwrap();
        assert_eq!(reports[0].provider, Provider::Resend);
        assert_eq!(reports[0].event_id, "msg_1");
        assert_eq!(reports[0].provider_message_id.as_deref(), Some(email_id));
        assert_eq!(reports[0].email.as_deref(), Some("em_9"));
        assert_eq!(reports[0].kind, ReportKind::Bounced { hard: true });

        for (event_type, kind) in [
            ("email.sent", ReportKind::Accepted),
            ("email.delivered", ReportKind::Delivered),
            ("email.delivery_delayed", ReportKind::Delayed),
            ("email.complained", ReportKind::Complained),
            (
                "email.opened",
                ReportKind::Ignored("email.opened".to_owned()),
            ),
        ] {
            let payload = resend_event(event_type, email_id, None);
            let (status, _) = post_resend_webhook(&url, SECRET, "msg_2", &payload).await;
            assert_eq!(status, 200);
            let reports = received.lock().unwrap().pop().unwrap().unwrap();
            assert_eq!(reports[0].kind, kind, "{event_type}");
        }

        // Another secret, a stale timestamp, a tampered body.
        let (status, text) =
            post_resend_webhook(&url, "whsec_b3RoZXIgc2VjcmV0", "msg_3", &payload).await;
        assert_eq!(status, 401, "{text}");
        assert!(text.contains("no signature matches"), "{text}");
        let body = serde_json::to_vec(&payload).unwrap();
        let stale = chrono::Utc::now().timestamp() - 600;
        let signature = resend_signature(SECRET, "msg_4", stale, &body);
        let (status, text) =
            post_resend_webhook_raw(&url, "msg_4", &stale.to_string(), &signature, &body).await;
        assert_eq!(status, 401);
        assert!(text.contains("tolerance 300 s"), "{text}");
        let now = chrono::Utc::now().timestamp();
        let signature = resend_signature(SECRET, "msg_5", now, &body);
        let mut tampered = body.clone();
        tampered.push(b' ');
        let (status, _) =
            post_resend_webhook_raw(&url, "msg_5", &now.to_string(), &signature, &tampered).await;
        assert_eq!(status, 401);
        // Signed but not JSON.
        let signature = resend_signature(SECRET, "msg_6", now, b"oops");
        let (status, text) =
            post_resend_webhook_raw(&url, "msg_6", &now.to_string(), &signature, b"oops").await;
        assert_eq!(status, 400);
        assert!(text.contains("body is not JSON"), "{text}");
        server.abort();
    }

    #[tokio::test]
    async fn signed_sendgrid_webhooks_verify_and_parse() {
        let (signing_key, public_key) = sendgrid_key_pair();
        let (url, received, server) = receiver(
            ResendVerifier::new(SECRET).unwrap(),
            SendGridVerifier::new(&public_key).unwrap(),
        )
        .await;
        let url = format!("{url}/sendgrid");

        let events = json!([
            sendgrid_event("processed", "AbCdEfGhIjKlMnOpQrStUv", Some("em_9")),
            sendgrid_event("deferred", "AbCdEfGhIjKlMnOpQrStUv", Some("em_9")),
            sendgrid_event("delivered", "AbCdEfGhIjKlMnOpQrStUv", Some("em_9")),
            sendgrid_event("bounce", "AbCdEfGhIjKlMnOpQrStUv", Some("em_9")),
            sendgrid_event("spamreport", "AbCdEfGhIjKlMnOpQrStUv", None),
            sendgrid_event("open", "AbCdEfGhIjKlMnOpQrStUv", None),
        ]);
        let (status, text) = post_sendgrid_webhook(&url, &signing_key, &events).await;
        assert_eq!((status, text.as_str()), (200, "6 reports"));
        let reports = received.lock().unwrap().pop().unwrap().unwrap();
        let kinds: Vec<ReportKind> = reports.iter().map(|report| report.kind.clone()).collect();
        assert_eq!(
            kinds,
            [
                ReportKind::Accepted,
                ReportKind::Delayed,
                ReportKind::Delivered,
                ReportKind::Bounced { hard: true },
                ReportKind::Complained,
                ReportKind::Ignored("open".to_owned()),
            ]
        );
        assert!(
            reports
                .iter()
                .all(|report| report.provider == Provider::SendGrid
                    && report.provider_message_id.as_deref() == Some("AbCdEfGhIjKlMnOpQrStUv"))
        );
        assert_eq!(reports[0].email.as_deref(), Some("em_9"));
        assert_eq!(
            reports[3].detail.as_deref(),
            Some("550 5.1.1 The email account does not exist")
        );

        // Another key, a stale timestamp, a signature moved to another body.
        let (other_key, _) = sendgrid_key_pair();
        let (status, _) = post_sendgrid_webhook(&url, &other_key, &events).await;
        assert_eq!(status, 401);
        let body = serde_json::to_vec(&events).unwrap();
        let stale = (chrono::Utc::now().timestamp() - 900).to_string();
        let signature = sendgrid_signature(&signing_key, &stale, &body);
        let (status, text) = post_sendgrid_webhook_raw(&url, &stale, &signature, &body).await;
        assert_eq!(status, 401);
        assert!(text.contains("tolerance 300 s"), "{text}");
        let now = chrono::Utc::now().timestamp().to_string();
        let signature = sendgrid_signature(&signing_key, &now, &body);
        let (status, _) = post_sendgrid_webhook_raw(&url, &now, &signature, b"[]").await;
        assert_eq!(status, 401);
        // Signed but not an array.
        let (status, text) =
            post_sendgrid_webhook(&url, &signing_key, &json!({"event": "open"})).await;
        assert_eq!(status, 400);
        assert!(text.contains("not a JSON array"), "{text}");
        server.abort();
    }
}
