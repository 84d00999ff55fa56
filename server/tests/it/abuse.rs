//! Attack tests, black box over gRPC against the real server: oversized and
//! malformed messages (hand-encoded protobuf with invalid UTF-8, wrong wire
//! types, truncation), out-of-range enums, overlong fields, header injection
//! (with a real SMTP server showing that nothing accepted reaches an email
//! header), SQL metacharacters, forged page tokens and cursors, one
//! submitter reaching for another's requests, revoked and unknown keys, and
//! the protective limits: a flooding peer, calls shed over the cap, streams
//! capped apart, and the server's own deadline.
//!
//! Each refusal is checked for its code, its ErrorInfo reason and, for bad
//! input, the fields its BadRequest names; and for having stored nothing.

use std::marker::PhantomData;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use prost::Message;
use prost::bytes::BufMut;
use prost::encoding::{WireType, encode_key, encode_varint};
use sea_orm::{DatabaseTransaction, TransactionTrait};
use sesame_proto::v1 as pb;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::{Code, Status};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_types::StatusExt;

use crate::harness::{
    Backend, Client, TestServer, assert_error, bad_fields, both_backends, valid_submission,
};
use crate::mail::SmtpServer;

both_backends!(
    oversized_messages_are_refused_before_they_are_read,
    malformed_protobuf_is_invalid_argument_naming_the_field,
    out_of_range_enums_and_overlong_fields_are_all_listed,
    header_injection_is_refused_in_single_line_fields,
    sql_metacharacters_are_plain_data,
    forged_page_tokens_and_cursors_are_refused,
    submitters_cannot_reach_each_others_requests,
    revoked_and_unknown_keys_are_refused,
);

const SUBMIT: &str = "/sesame.v1.AccessRequestService/SubmitAccessRequest";
const INJECTED: &str = "evil@attacker.example";

/// What the server has stored: every table a refused call could have
/// written to.
#[derive(Debug, PartialEq, Eq)]
struct Stored {
    requests: i64,
    events: i64,
    outbox: i64,
    idempotency_keys: i64,
    gateway_codes: i64,
}

async fn stored(server: &TestServer) -> Stored {
    Stored {
        requests: server.count("access_requests").await,
        events: server.count("events").await,
        outbox: server.count("outbox").await,
        idempotency_keys: server.count("idempotency_keys").await,
        gateway_codes: server.count("gateway_codes").await,
    }
}

/// The requests an administrator can list.
async fn listed(server: &TestServer) -> Vec<pb::AccessRequest> {
    server
        .client(&server.keys.admin)
        .await
        .list_access_requests(pb::ListAccessRequestsRequest {
            page_size: 500,
            ..Default::default()
        })
        .await
        .expect("an admin lists requests")
        .into_inner()
        .access_requests
}

async fn submit(
    client: &mut Client,
    submission: pb::SubmitAccessRequestRequest,
) -> pb::AccessRequest {
    client
        .submit_access_request(submission)
        .await
        .expect("the submission is accepted")
        .into_inner()
        .access_request
        .expect("the reply has the request")
}

/// The delay of the RetryInfo of a status.
fn retry_delay(status: &Status) -> Duration {
    status
        .get_error_details()
        .retry_info()
        .and_then(|info| info.retry_delay)
        .expect("a RetryInfo with a delay")
}

/// Sends already encoded request bytes (broken on purpose) and decodes the
/// answer as `R`: tonic's generated clients can only send valid messages.
#[derive(Debug)]
struct RawCodec<R>(PhantomData<fn() -> R>);

struct RawEncoder;

struct MessageDecoder<R>(PhantomData<fn() -> R>);

impl Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl<R: Message + Default> Decoder for MessageDecoder<R> {
    type Item = R;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<R>, Status> {
        R::decode(src)
            .map(Some)
            .map_err(|error| Status::internal(error.to_string()))
    }
}

impl<R: Message + Default + Send + 'static> Codec for RawCodec<R> {
    type Encode = Vec<u8>;
    type Decode = R;
    type Encoder = RawEncoder;
    type Decoder = MessageDecoder<R>;

    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }

    fn decoder(&mut self) -> MessageDecoder<R> {
        MessageDecoder(PhantomData)
    }
}

async fn raw_call<R: Message + Default + Send + Sync + 'static>(
    server: &TestServer,
    key: &str,
    path: &'static str,
    body: Vec<u8>,
) -> Result<R, Status> {
    let mut grpc = tonic::client::Grpc::new(server.channel().await);
    grpc.ready().await.expect("the channel is ready");
    let mut request = tonic::Request::new(body);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {key}").parse().expect("ascii key"),
    );
    grpc.unary(
        request,
        http::uri::PathAndQuery::from_static(path),
        RawCodec::<R>(PhantomData),
    )
    .await
    .map(tonic::Response::into_inner)
}

/// A length-delimited protobuf field (string, bytes or message) holding
/// `bytes` as they are.
fn length_delimited(number: u32, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_key(number, WireType::LengthDelimited, &mut out);
    encode_varint(bytes.len() as u64, &mut out);
    out.extend_from_slice(bytes);
    out
}

/// Reads `GET /metrics` and returns the value of `sesame_rpcs_shed_total`
/// for `reason` (0 when the series does not exist yet).
async fn shed_total(addr: SocketAddr, reason: &str) -> f64 {
    metric(
        addr,
        &format!("sesame_rpcs_shed_total{{reason=\"{reason}\"}}"),
    )
    .await
}

/// Reads `GET /metrics` and returns the value of `series` (name and
/// labels as rendered), 0 when it does not exist yet.
async fn metric(addr: SocketAddr, series: &str) -> f64 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.unwrap();
    let series = format!("{series} ");
    raw.lines()
        .find_map(|line| line.strip_prefix(&series))
        .map(|value| value.trim().parse().expect("a number"))
        .unwrap_or(0.0)
}

/// Holds SQLite's write lock from another connection, as a long write
/// would: the server's writers wait for it (up to `database_timeout_secs`).
async fn hold_write_lock(server: &TestServer) -> DatabaseTransaction {
    let options = sea_orm::TransactionOptions {
        sqlite_transaction_mode: Some(sea_orm::SqliteTransactionMode::Immediate),
        ..Default::default()
    };
    server
        .store
        .connection()
        .begin_with_options(options)
        .await
        .expect("take the write lock")
}

async fn oversized_messages_are_refused_before_they_are_read(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut alice = server.client(&server.keys.alice).await;
    let before = stored(&server).await;
    let mut huge = valid_submission();
    huge.justification = "x".repeat(5 * 1024 * 1024);
    let status = assert_error(
        alice.submit_access_request(huge).await,
        Code::ResourceExhausted,
        "MESSAGE_TOO_LARGE",
    );
    let info = status.get_error_details().error_info().cloned().unwrap();
    assert_eq!(info.metadata["limit"], "65536", "{status:?}");
    assert!(
        info.metadata["size"].parse::<usize>().unwrap() > 5 * 1024 * 1024,
        "{status:?}"
    );
    assert!(
        status.message().contains("max_decoding_message_bytes"),
        "the message names the setting: {status:?}"
    );

    // Health has the same limit, key or no key.
    let mut health = HealthClient::new(server.channel().await);
    let status = assert_error(
        health
            .check(HealthCheckRequest {
                service: "s".repeat(5 * 1024 * 1024),
            })
            .await,
        Code::ResourceExhausted,
        "MESSAGE_TOO_LARGE",
    );
    assert!(status.message().contains("65536"), "{status:?}");

    // The server is still answering, and nothing was stored.
    health
        .check(HealthCheckRequest::default())
        .await
        .expect("health answers after the refusals");
    assert_eq!(stored(&server).await, before);
    assert!(listed(&server).await.is_empty());
    server.stop().await;
}

async fn malformed_protobuf_is_invalid_argument_naming_the_field(backend: Backend) {
    let server = TestServer::start(backend).await;
    let key = server.keys.alice.clone();
    let before = stored(&server).await;
    let valid = valid_submission().encode_to_vec();
    let not_utf8: &[u8] = &[b'v', 0xff, 0xfe, b'n'];

    // Invalid UTF-8 in a top-level string field (field 4, resource): the
    // last occurrence of a field wins, so it replaces the valid resource.
    let mut bad_resource = valid.clone();
    bad_resource.extend(length_delimited(4, not_utf8));
    // In a nested one: a second `applicant` (field 1) merges into the first
    // and sets its email (field 1) to bytes that are not UTF-8.
    let mut bad_email = valid.clone();
    bad_email.extend(length_delimited(1, &length_delimited(1, not_utf8)));
    // A string field sent as a varint.
    let mut wrong_wire_type = valid.clone();
    encode_key(4, WireType::Varint, &mut wrong_wire_type);
    encode_varint(7, &mut wrong_wire_type);
    for (case, body, field) in [
        ("resource not UTF-8", bad_resource, "resource"),
        ("applicant.email not UTF-8", bad_email, "applicant.email"),
        ("wrong wire type", wrong_wire_type, "resource"),
    ] {
        let status = assert_error(
            raw_call::<pb::SubmitAccessRequestResponse>(&server, &key, SUBMIT, body).await,
            Code::InvalidArgument,
            "MESSAGE_MALFORMED",
        );
        assert_eq!(bad_fields(&status), [field], "{case}: {status:?}");
        assert!(
            status.message().contains("not a valid protobuf message"),
            "{case}: {status:?}"
        );
    }

    // Cut in the middle of a field: no field to name, the same refusal.
    let truncated = valid[..valid.len() - 3].to_vec();
    let status = assert_error(
        raw_call::<pb::SubmitAccessRequestResponse>(&server, &key, SUBMIT, truncated).await,
        Code::InvalidArgument,
        "MESSAGE_MALFORMED",
    );
    assert!(
        status.message().contains("not a valid protobuf message"),
        "{status:?}"
    );

    // The raw client itself is sound: the valid bytes are accepted.
    let accepted = raw_call::<pb::SubmitAccessRequestResponse>(&server, &key, SUBMIT, valid)
        .await
        .expect("the unaltered encoding is accepted");
    let accepted = accepted.access_request.unwrap();
    let requests = listed(&server).await;
    assert_eq!(requests.len(), 1, "only the valid submission was stored");
    assert_eq!(requests[0].name, accepted.name);
    assert_eq!(before.requests + 1, stored(&server).await.requests);
    server.stop().await;
}

async fn out_of_range_enums_and_overlong_fields_are_all_listed(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut alice = server.client(&server.keys.alice).await;
    let mut admin = server.client(&server.keys.admin).await;
    let before = stored(&server).await;

    let mut out_of_range = valid_submission();
    out_of_range.user_type = 99;
    let status = assert_error(
        alice.submit_access_request(out_of_range).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(bad_fields(&status), ["user_type"]);
    assert!(
        status.message().contains("unknown enum value 99"),
        "{status:?}"
    );
    let mut negative = valid_submission();
    negative.user_type = -1;
    let status = assert_error(
        alice.submit_access_request(negative).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(bad_fields(&status), ["user_type"]);
    let status = assert_error(
        admin
            .list_access_requests(pb::ListAccessRequestsRequest {
                state: 1000,
                user_type: i32::MIN,
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(bad_fields(&status), ["state", "user_type"]);

    // 10,000 characters in each text field (two calls: ten of them would
    // pass the 64 KiB message limit). Every field is listed at once.
    let long = "a".repeat(10_000);
    let mut first = valid_submission();
    let applicant = first.applicant.as_mut().unwrap();
    applicant.full_name = long.clone();
    applicant.organization = long.clone();
    applicant.email = format!("{long}@example.com");
    first.resource = long.clone();
    first.justification = long.clone();
    let status = assert_error(
        alice.submit_access_request(first).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(
        bad_fields(&status),
        [
            "applicant.email",
            "applicant.full_name",
            "applicant.organization",
            "resource",
            "justification",
        ]
    );
    let mut second = valid_submission();
    second.applicant.as_mut().unwrap().phone = "1".repeat(10_000);
    second.locale = long.clone();
    second.request_id = long.clone();
    let consent = second.consent.as_mut().unwrap();
    consent.version = long.clone();
    consent.purposes = vec![long.clone()];
    let status = assert_error(
        alice.submit_access_request(second).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    let mut fields = bad_fields(&status);
    fields.sort();
    assert_eq!(
        fields,
        [
            "applicant.phone",
            "consent.purposes[0]",
            "consent.version",
            "locale",
            "request_id",
        ]
    );
    assert!(status.message().contains("at most"), "{status:?}");

    // Decision texts too; the request stays as it was.
    let pending = submit(&mut alice, valid_submission()).await;
    let after_submit = stored(&server).await;
    let status = assert_error(
        admin
            .reject_access_request(pb::RejectAccessRequestRequest {
                name: pending.name.clone(),
                reason: long.clone(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(bad_fields(&status), ["reason"]);
    let status = assert_error(
        admin
            .approve_access_request(pb::ApproveAccessRequestRequest {
                name: pending.name.clone(),
                note: long.clone(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(bad_fields(&status), ["note"]);
    assert_eq!(stored(&server).await, after_submit);
    assert_eq!(before.requests + 1, after_submit.requests);
    assert_eq!(listed(&server).await, vec![pending]);
    server.stop().await;
}

async fn header_injection_is_refused_in_single_line_fields(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut alice = server.client(&server.keys.alice).await;
    let before = stored(&server).await;
    let mut injected = valid_submission();
    let applicant = injected.applicant.as_mut().unwrap();
    applicant.email = format!("ada@example.com\r\nBcc: {INJECTED}");
    applicant.full_name = format!("Ada\r\nBcc: {INJECTED}");
    applicant.organization = "Engines\nX-Injected: yes".into();
    // NEL (U+0085) is a line break to some mail software.
    applicant.phone = "+44 20\u{85}7946 0000".into();
    injected.resource = format!("vpn\rBcc: {INJECTED}");
    injected.locale = "fr\r\nX-Injected: yes".into();
    injected.request_id = "id\r\nX-Injected: yes".into();
    let consent = injected.consent.as_mut().unwrap();
    consent.version = "2026-01\r\nX-Injected: yes".into();
    consent.purposes = vec!["access\r\nmanagement".into()];
    let status = assert_error(
        alice.submit_access_request(injected).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    let mut fields = bad_fields(&status);
    fields.sort();
    assert_eq!(
        fields,
        [
            "applicant.email",
            "applicant.full_name",
            "applicant.organization",
            "applicant.phone",
            "consent.purposes[0]",
            "consent.version",
            "locale",
            "request_id",
            "resource",
        ]
    );
    // Each field alone is refused too (no field hides behind another).
    for (field, value) in [
        (
            "applicant.email",
            format!("ada@example.com\nBcc: {INJECTED}"),
        ),
        ("applicant.full_name", format!("Ada\rBcc: {INJECTED}")),
        ("resource", format!("vpn\r\nBcc: {INJECTED}")),
    ] {
        let mut one = valid_submission();
        match field {
            "applicant.email" => one.applicant.as_mut().unwrap().email = value,
            "applicant.full_name" => one.applicant.as_mut().unwrap().full_name = value,
            _ => one.resource = value,
        }
        let status = assert_error(
            alice.submit_access_request(one).await,
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        );
        assert_eq!(bad_fields(&status), [field]);
    }
    assert_eq!(stored(&server).await, before);
    assert!(listed(&server).await.is_empty());
    server.stop().await;
}

/// The header block of a raw email, folded lines joined.
fn headers_of(eml: &str) -> Vec<String> {
    let head = eml
        .split_once("\r\n\r\n")
        .or_else(|| eml.split_once("\n\n"))
        .map_or(eml, |(head, _body)| head);
    let mut headers: Vec<String> = Vec::new();
    for line in head.lines() {
        if line.starts_with([' ', '\t'])
            && let Some(last) = headers.last_mut()
        {
            last.push_str(line.trim_start());
            continue;
        }
        headers.push(line.to_owned());
    }
    headers
}

/// Values that are accepted (a line separator in a single-line field; line
/// breaks where a field is multi-line) end in emails: the real SMTP server
/// receives no header they tried to inject.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_text_never_becomes_an_email_header() {
    let smtp = SmtpServer::start();
    let url = smtp.url();
    let server = TestServer::start_with(Backend::Sqlite, |config| {
        config.mail_worker = true;
        config.mail_poll_interval_ms = 50;
        config.mail_transport = url;
        config.admin_emails = vec!["ops@example.com".into()];
    })
    .await;
    let mut alice = server.client(&server.keys.alice).await;
    let mut admin = server.client(&server.keys.admin).await;
    let injection = format!("\r\nBcc: {INJECTED}\r\nX-Injected: yes\r\nSubject: pwned\r\n\r\nhi");

    // U+2028 (LINE SEPARATOR) is not a control character: accepted in a
    // name, and the name is in the subject of the administrators' email.
    let mut first = valid_submission();
    first.applicant.as_mut().unwrap().full_name = format!("Ada\u{2028}Bcc: {INJECTED}");
    first.resource = "vpn\u{2028}X-Injected: yes".into();
    first.justification = format!("Maintenance.{injection}");
    let first = submit(&mut alice, first).await;
    let rejected = admin
        .reject_access_request(pb::RejectAccessRequestRequest {
            name: first.name.clone(),
            reason: format!("No contract.{injection}"),
            ..Default::default()
        })
        .await
        .expect("a multi-line reason is accepted")
        .into_inner()
        .access_request
        .unwrap();
    // Stored as given, line breaks normalised to LF.
    assert_eq!(
        rejected.decision.unwrap().reason,
        format!("No contract.{}", injection.replace("\r\n", "\n"))
    );
    let second = submit(&mut alice, valid_submission()).await;
    admin
        .approve_access_request(pb::ApproveAccessRequestRequest {
            name: second.name.clone(),
            note: format!("Welcome.{injection}"),
            ..Default::default()
        })
        .await
        .expect("a multi-line note is accepted");
    let third = submit(&mut alice, valid_submission()).await;
    alice
        .cancel_access_request(pb::CancelAccessRequestRequest {
            name: third.name.clone(),
            reason: format!("Not needed.{injection}"),
            ..Default::default()
        })
        .await
        .expect("a multi-line cancellation reason is accepted");

    // Per submission: received + admin's new request; then rejected,
    // approved, cancelled.
    let expected = 3 * 2 + 3;
    let deadline = Instant::now() + Duration::from_secs(30);
    while smtp.received().len() < expected {
        assert!(
            Instant::now() < deadline,
            "only {} of {expected} emails arrived",
            smtp.received().len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let emails = smtp.received();
    assert_eq!(emails.len(), expected);
    // Only the headers Sesame writes, each once: what was injected is at
    // most text inside a Subject (encoded where it is not ASCII), never a
    // header of its own.
    let allowed = [
        "from",
        "to",
        "subject",
        "message-id",
        "mime-version",
        "date",
        "content-type",
        "content-transfer-encoding",
    ];
    for eml in &emails {
        let headers = headers_of(eml);
        let mut names: Vec<String> = headers
            .iter()
            .map(|header| {
                let (name, _value) = header
                    .split_once(':')
                    .unwrap_or_else(|| panic!("not a header: {header:?}\n{eml}"));
                name.to_ascii_lowercase()
            })
            .collect();
        for name in &names {
            assert!(
                allowed.contains(&name.as_str()),
                "header {name:?} in\n{eml}"
            );
        }
        let count = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), count, "a header twice in\n{eml}");
        let subject = headers
            .iter()
            .find(|header| header.starts_with("Subject:"))
            .unwrap();
        assert!(!subject.contains("pwned"), "{subject}");
    }
    let recipients: Vec<String> = emails
        .iter()
        .map(|eml| {
            headers_of(eml)
                .into_iter()
                .find(|header| header.starts_with("To:"))
                .unwrap()
        })
        .collect();
    assert!(
        recipients
            .iter()
            .all(|to| to.contains("ada@example.com") || to.contains("ops@example.com")),
        "{recipients:?}"
    );
    server.stop().await;
}

async fn sql_metacharacters_are_plain_data(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut alice = server.client(&server.keys.alice).await;
    let mut admin = server.client(&server.keys.admin).await;
    let keys_before = server.count("api_keys").await;
    let mut hostile = valid_submission();
    let applicant = hostile.applicant.as_mut().unwrap();
    applicant.full_name = "Robert'); DROP TABLE access_requests;--".into();
    applicant.organization = "' OR '1'='1".into();
    applicant.email = "o'brien+%_@example.com".into();
    hostile.resource = "vpn\" OR \"\"=\"; DELETE FROM api_keys; --".into();
    hostile.justification = "100% sure_ \\'; SELECT * FROM api_keys; /* */ -- $1 ?".into();
    hostile.request_id = "a:1--".into();
    let accepted = submit(&mut alice, hostile.clone()).await;
    let stored_applicant = accepted.applicant.clone().unwrap();
    assert_eq!(
        stored_applicant.full_name,
        "Robert'); DROP TABLE access_requests;--"
    );
    assert_eq!(stored_applicant.organization, "' OR '1'='1");
    assert_eq!(stored_applicant.email, "o'brien+%_@example.com");
    assert_eq!(accepted.resource, hostile.resource);
    assert_eq!(accepted.justification, hostile.justification);

    // Read back verbatim, by name and in a list.
    let got = admin
        .get_access_request(pb::GetAccessRequestRequest {
            name: accepted.name.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .access_request
        .unwrap();
    assert_eq!(got, accepted);
    assert_eq!(listed(&server).await, vec![accepted.clone()]);
    // A retry with the same request_id returns the same request.
    assert_eq!(submit(&mut alice, hostile).await.name, accepted.name);

    // Metacharacters in a filter match nothing rather than everything.
    let mut events = server.events(&server.keys.admin).await;
    for actor in ["' OR '1'='1", "%", "alice' --"] {
        let found = events
            .list_events(pb::ListEventsRequest {
                actor: actor.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .events;
        assert!(found.is_empty(), "actor {actor:?} matched {found:?}");
    }
    let by_alice = events
        .list_events(pb::ListEventsRequest {
            actor: "alice".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    assert_eq!(by_alice.len(), 1, "the filter itself works");

    // Nothing else happened: one request, the keys untouched.
    assert_eq!(server.count("access_requests").await, 1);
    assert_eq!(server.count("api_keys").await, keys_before);
    server.stop().await;
}

async fn forged_page_tokens_and_cursors_are_refused(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut alice = server.client(&server.keys.alice).await;
    let mut bob = server.client(&server.keys.bob).await;
    for _ in 0..3 {
        submit(&mut alice, valid_submission()).await;
    }
    let before = stored(&server).await;
    let page = alice
        .list_access_requests(pb::ListAccessRequestsRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let token = page.next_page_token;
    assert!(!token.is_empty());
    // One character changed, anywhere in the token.
    let altered: Vec<String> = [0, token.len() / 2, token.len() - 1]
        .into_iter()
        .map(|index| {
            let mut bytes = token.clone().into_bytes();
            bytes[index] = if bytes[index] == b'A' { b'B' } else { b'A' };
            String::from_utf8(bytes).unwrap()
        })
        .collect();
    let forged = [
        "garbage".to_owned(),
        "' OR 1=1 --".to_owned(),
        "x".repeat(10_000),
        format!("{token}x"),
    ];
    for bad in altered.iter().chain(&forged) {
        let status = assert_error(
            alice
                .list_access_requests(pb::ListAccessRequestsRequest {
                    page_size: 1,
                    page_token: bad.clone(),
                    ..Default::default()
                })
                .await,
            Code::InvalidArgument,
            "PAGE_TOKEN_INVALID",
        );
        assert_eq!(bad_fields(&status), ["page_token"], "{bad:?}");
    }
    // Alice's genuine token, replayed by Bob or with other filters.
    let status = assert_error(
        bob.list_access_requests(pb::ListAccessRequestsRequest {
            page_size: 1,
            page_token: token.clone(),
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "PAGE_TOKEN_INVALID",
    );
    assert_eq!(bad_fields(&status), ["page_token"]);
    let status = assert_error(
        alice
            .list_access_requests(pb::ListAccessRequestsRequest {
                page_size: 1,
                page_token: token.clone(),
                state: pb::AccessRequestState::Approved.into(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "PAGE_TOKEN_INVALID",
    );
    assert_eq!(bad_fields(&status), ["page_token"]);
    // An administrator's token replayed by an auditor, who sees the same
    // rows: refused too, tokens are bound to their caller.
    let mut admin = server.client(&server.keys.admin).await;
    let mut auditor = server.client(&server.keys.auditor).await;
    let admin_token = admin
        .list_access_requests(pb::ListAccessRequestsRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .next_page_token;
    assert!(!admin_token.is_empty());
    let status = assert_error(
        auditor
            .list_access_requests(pb::ListAccessRequestsRequest {
                page_size: 1,
                page_token: admin_token,
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "PAGE_TOKEN_INVALID",
    );
    assert_eq!(bad_fields(&status), ["page_token"]);
    // The genuine token still works for its owner.
    alice
        .list_access_requests(pb::ListAccessRequestsRequest {
            page_size: 1,
            page_token: token,
            ..Default::default()
        })
        .await
        .expect("the unaltered token is accepted");

    // Event log page tokens and watch cursors.
    let mut events = server.events(&server.keys.admin).await;
    let status = assert_error(
        events
            .list_events(pb::ListEventsRequest {
                page_token: "garbage".into(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "PAGE_TOKEN_INVALID",
    );
    assert_eq!(bad_fields(&status), ["page_token"]);
    for after in ["garbage", "' OR 1=1 --", "c_////"] {
        let status = assert_error(
            events
                .watch_events(pb::WatchEventsRequest {
                    after: after.into(),
                    ..Default::default()
                })
                .await,
            Code::InvalidArgument,
            "CURSOR_INVALID",
        );
        assert_eq!(bad_fields(&status), ["after"], "{after:?}");
    }
    // A well-formed cursor from the future.
    let ahead = sesame_server::domain::encode_cursor(1_000_000);
    let status = assert_error(
        events
            .watch_events(pb::WatchEventsRequest {
                after: ahead,
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "CURSOR_INVALID",
    );
    let head = status.get_error_details().error_info().unwrap().metadata["head"].clone();
    assert_eq!(
        sesame_server::domain::decode_cursor(&head),
        Some(before.events),
        "{status:?}"
    );
    assert_eq!(stored(&server).await, before);
    server.stop().await;
}

async fn submitters_cannot_reach_each_others_requests(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut alice = server.client(&server.keys.alice).await;
    let mut bob = server.client(&server.keys.bob).await;
    let alices = submit(&mut alice, valid_submission()).await;
    let before = stored(&server).await;

    assert_error(
        bob.get_access_request(pb::GetAccessRequestRequest {
            name: alices.name.clone(),
        })
        .await,
        Code::PermissionDenied,
        "NOT_REQUEST_OWNER",
    );
    assert_error(
        bob.cancel_access_request(pb::CancelAccessRequestRequest {
            name: alices.name.clone(),
            reason: "mine now".into(),
            ..Default::default()
        })
        .await,
        Code::PermissionDenied,
        "NOT_REQUEST_OWNER",
    );
    // With Alice's etag too: knowing it grants nothing.
    assert_error(
        bob.cancel_access_request(pb::CancelAccessRequestRequest {
            name: alices.name.clone(),
            etag: alices.etag.clone(),
            ..Default::default()
        })
        .await,
        Code::PermissionDenied,
        "NOT_REQUEST_OWNER",
    );
    let status = assert_error(
        bob.approve_access_request(pb::ApproveAccessRequestRequest {
            name: alices.name.clone(),
            ..Default::default()
        })
        .await,
        Code::PermissionDenied,
        "ROLE_NOT_ALLOWED",
    );
    assert_eq!(
        status.get_error_details().error_info().unwrap().metadata["role"],
        "submitter"
    );
    let mut bobs_events = server.events(&server.keys.bob).await;
    assert_error(
        bobs_events
            .list_events(pb::ListEventsRequest {
                access_request: alices.name.clone(),
                ..Default::default()
            })
            .await,
        Code::PermissionDenied,
        "ROLE_NOT_ALLOWED",
    );
    // A name that does not exist answers the same whoever asks.
    let unknown = format!("accessRequests/{}", uuid::Uuid::new_v4());
    assert_error(
        bob.get_access_request(pb::GetAccessRequestRequest { name: unknown })
            .await,
        Code::NotFound,
        "REQUEST_NOT_FOUND",
    );
    let bobs_list = bob
        .list_access_requests(pb::ListAccessRequestsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .access_requests;
    assert!(bobs_list.is_empty(), "{bobs_list:?}");

    assert_eq!(stored(&server).await, before);
    let unchanged = alice
        .get_access_request(pb::GetAccessRequestRequest {
            name: alices.name.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .access_request
        .unwrap();
    assert_eq!(unchanged, alices);
    server.stop().await;
}

async fn revoked_and_unknown_keys_are_refused(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut bob = server.client(&server.keys.bob).await;
    submit(&mut bob, valid_submission()).await;
    let before = stored(&server).await;

    server
        .store
        .revoke_api_key("bob")
        .await
        .expect("revoke bob's key");
    // The open connection is no exception.
    assert_error(
        bob.submit_access_request(valid_submission()).await,
        Code::Unauthenticated,
        "API_KEY_INVALID",
    );
    assert_error(
        bob.list_access_requests(pb::ListAccessRequestsRequest::default())
            .await,
        Code::Unauthenticated,
        "API_KEY_INVALID",
    );
    let mut fresh = server.client(&server.keys.bob).await;
    assert_error(
        fresh.submit_access_request(valid_submission()).await,
        Code::Unauthenticated,
        "API_KEY_INVALID",
    );
    // A well-formed key that was never issued.
    let unknown = sesame_server::auth::generate_key().secret;
    let mut stranger = server.client(&unknown).await;
    assert_error(
        stranger.submit_access_request(valid_submission()).await,
        Code::Unauthenticated,
        "API_KEY_INVALID",
    );
    // Bob's key with one character changed.
    let mut altered = server.keys.bob.clone().into_bytes();
    let last = altered.len() - 1;
    altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
    let mut near = server.client(&String::from_utf8(altered).unwrap()).await;
    assert_error(
        near.submit_access_request(valid_submission()).await,
        Code::Unauthenticated,
        "API_KEY_INVALID",
    );
    // Not a bearer key at all, or none.
    let mut request = tonic::Request::new(valid_submission());
    request.metadata_mut().insert(
        "authorization",
        "Basic YWxpY2U6aHVudGVyMg==".parse().unwrap(),
    );
    let mut plain =
        pb::access_request_service_client::AccessRequestServiceClient::new(server.channel().await);
    assert_error(
        plain.submit_access_request(request).await,
        Code::Unauthenticated,
        "API_KEY_MALFORMED",
    );
    assert_error(
        server
            .anonymous()
            .await
            .submit_access_request(valid_submission())
            .await,
        Code::Unauthenticated,
        "API_KEY_MISSING",
    );
    assert_eq!(stored(&server).await, before);
    server.stop().await;
}

/// The per-peer budget is checked before the key: a flood without a key is
/// held, and so is everything else from the same address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_peer_is_limited_before_authentication() {
    let server = TestServer::start_with(Backend::Sqlite, |config| {
        config.rate_limit_per_peer = 1;
        config.rate_limit_peer_burst = 5;
        config.metrics_addr = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let metrics = server.metrics_addr.unwrap();
    let before = stored(&server).await;
    // Connected beforehand, so that the calls after the flood follow it
    // before a token comes back.
    let mut alice = server.client(&server.keys.alice).await;
    let mut health = HealthClient::new(server.channel().await);
    let mut anonymous = server.anonymous().await;
    let mut refused = 0;
    let mut status = None;
    for _ in 0..20 {
        match anonymous.submit_access_request(valid_submission()).await {
            Err(error) if error.code() == Code::Unauthenticated => refused += 1,
            Err(error) => {
                status = Some(error);
                break;
            }
            Ok(response) => panic!("accepted without a key: {response:?}"),
        }
    }
    // The burst, and perhaps a token refilled meanwhile.
    assert!(
        (5..=6).contains(&refused),
        "{refused} calls before the limit"
    );
    let status = status.expect("the flood is limited");
    assert_error(
        Err::<(), _>(status.clone()),
        Code::ResourceExhausted,
        "PEER_RATE_LIMITED",
    );
    let wait = retry_delay(&status);
    assert!(
        wait > Duration::ZERO && wait <= Duration::from_secs(1),
        "{wait:?}"
    );

    // A valid key from the same address waits too; health is never shed
    // (an orchestrator must not restart a busy replica).
    assert_error(
        alice.submit_access_request(valid_submission()).await,
        Code::ResourceExhausted,
        "PEER_RATE_LIMITED",
    );
    let serving = health
        .check(HealthCheckRequest::default())
        .await
        .expect("health is never shed");
    assert_eq!(serving.into_inner().status, ServingStatus::Serving as i32);
    assert_eq!(stored(&server).await, before);
    assert!(shed_total(metrics, "peer_rate_limited").await >= 2.0);

    // After the advised wait the peer is served again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    submit(&mut alice, valid_submission()).await;
    assert_eq!(stored(&server).await.requests, before.requests + 1);
    server.stop().await;
}

/// Unary calls over `max_in_flight_calls` are shed at once, not queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unary_calls_over_the_cap_are_shed_at_once() {
    let server = TestServer::start_with(Backend::Sqlite, |config| {
        config.max_in_flight_calls = 2;
        config.database_timeout_secs = 30;
        config.metrics_addr = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let metrics = server.metrics_addr.unwrap();
    let lock = hold_write_lock(&server).await;
    // Two submits wait for the write lock, holding both places.
    let mut blocked = Vec::new();
    for index in 0..2 {
        let mut alice = server.client(&server.keys.alice).await;
        blocked.push(tokio::spawn(async move {
            let mut submission = valid_submission();
            submission.request_id = format!("blocked-{index}");
            alice.submit_access_request(submission).await
        }));
    }
    // Both have started (the telemetry layer counted them), and a moment
    // later hold their places.
    let submits_started = "grpc_server_started_total{grpc_service=\"sesame.v1.AccessRequestService\",\
                   grpc_method=\"SubmitAccessRequest\",grpc_type=\"unary\"}";
    let deadline = Instant::now() + Duration::from_secs(20);
    while metric(metrics, submits_started).await < 2.0 {
        assert!(Instant::now() < deadline, "the two submits never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut admin = server.client(&server.keys.admin).await;
    let started = Instant::now();
    let status = assert_error(
        admin
            .list_access_requests(pb::ListAccessRequestsRequest::default())
            .await,
        Code::Unavailable,
        "SERVER_OVERLOADED",
    );
    let took = started.elapsed();
    assert!(took < Duration::from_secs(1), "shed at once, took {took:?}");
    assert_eq!(retry_delay(&status), Duration::from_secs(1));
    assert!(
        status.message().contains("2 unary calls in flight"),
        "{status:?}"
    );
    // A submit now is shed too, and never stored.
    let mut alice = server.client(&server.keys.alice).await;
    let mut shed_submission = valid_submission();
    shed_submission.request_id = "shed".into();
    assert_error(
        alice.submit_access_request(shed_submission).await,
        Code::Unavailable,
        "SERVER_OVERLOADED",
    );
    assert!(shed_total(metrics, "overloaded").await >= 2.0);
    // Readiness and liveness answer while calls are shed: an orchestrator
    // must not restart a replica because it is busy.
    let mut health = HealthClient::new(server.channel().await);
    for service in ["", "liveness"] {
        let answer = health
            .check(HealthCheckRequest {
                service: service.to_owned(),
            })
            .await
            .unwrap_or_else(|error| panic!("health {service:?} was shed: {error:?}"));
        assert_eq!(answer.into_inner().status, ServingStatus::Serving as i32);
    }

    // Once the lock is gone the two waiting calls finish normally.
    lock.rollback().await.unwrap();
    for call in blocked {
        call.await
            .unwrap()
            .expect("a call within the cap is served");
    }
    let requests = listed(&server).await;
    let mut ids: Vec<&str> = requests.iter().map(|r| r.request_id.as_str()).collect();
    ids.sort();
    assert_eq!(ids, ["blocked-0", "blocked-1"]);
    server.stop().await;
}

/// Streams are capped apart from unary calls: a full stream cap sheds new
/// watchers while unary calls go on, and a closed stream frees its place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_have_their_own_cap() {
    let server = TestServer::start_with(Backend::Sqlite, |config| {
        config.max_open_streams = 1;
        config.max_in_flight_calls = 1;
    })
    .await;
    let mut events = server.events(&server.keys.admin).await;
    let mut first = events
        .watch_events(pb::WatchEventsRequest::default())
        .await
        .expect("the first watcher is admitted")
        .into_inner();
    first.message().await.unwrap().expect("ready");
    let status = assert_error(
        events.watch_events(pb::WatchEventsRequest::default()).await,
        Code::Unavailable,
        "SERVER_OVERLOADED",
    );
    assert!(status.message().contains("open streams"), "{status:?}");
    assert_eq!(retry_delay(&status), Duration::from_secs(1));
    // The open stream takes no place of the single unary call.
    let mut alice = server.client(&server.keys.alice).await;
    submit(&mut alice, valid_submission()).await;

    drop(first);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match events.watch_events(pb::WatchEventsRequest::default()).await {
            Ok(stream) => {
                drop(stream);
                break;
            }
            Err(status) => {
                assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                assert!(Instant::now() < deadline, "the place was never freed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    server.stop().await;
}

/// `request_timeout_secs` ends a unary call that carries no deadline with
/// DEADLINE_EXCEEDED, and what it was doing is not stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_deadline_answers_deadline_exceeded() {
    let server = TestServer::start_with(Backend::Sqlite, |config| {
        config.request_timeout_secs = 1;
        config.database_timeout_secs = 10;
        config.metrics_addr = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let metrics = server.metrics_addr.unwrap();
    let before = stored(&server).await;
    let lock = hold_write_lock(&server).await;
    let mut alice = server.client(&server.keys.alice).await;
    let started = Instant::now();
    let status = assert_error(
        alice.submit_access_request(valid_submission()).await,
        Code::DeadlineExceeded,
        "DEADLINE_EXCEEDED",
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert!(status.message().contains("1000 ms"), "{status:?}");
    // A caller's shorter deadline still wins. The server ends the call a
    // millisecond before it with DEADLINE_EXCEEDED; tonic's client also
    // times the call itself and may report its own expiry first, as
    // CANCELLED "Timeout expired".
    let mut request = tonic::Request::new(valid_submission());
    request.set_timeout(Duration::from_millis(200));
    let caller_started = Instant::now();
    let status = alice
        .submit_access_request(request)
        .await
        .expect_err("the caller's deadline passes");
    assert!(
        matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{status:?}"
    );
    assert!(caller_started.elapsed() < Duration::from_millis(900));
    let ended = "grpc_server_handled_total{grpc_service=\"sesame.v1.AccessRequestService\",\
                 grpc_method=\"SubmitAccessRequest\",grpc_type=\"unary\",\
                 grpc_code=\"DEADLINE_EXCEEDED\"}";
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(metrics, ended).await < 2.0 {
        assert!(
            Instant::now() < deadline,
            "the server did not end both calls with DEADLINE_EXCEEDED"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(shed_total(metrics, "deadline_exceeded").await, 2.0);
    lock.rollback().await.unwrap();
    assert_eq!(stored(&server).await, before);
    server.stop().await;
}
