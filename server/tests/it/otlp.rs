//! Trace export over OTLP: the real binary (the tracing subscriber is
//! process-wide, so not the in-process server) exports to an in-process
//! OTLP trace receiver (opentelemetry-proto's generated collector
//! service). A submit's spans arrive on graceful shutdown with the RPC
//! conventions, the caller's trace as parent, store spans as children, the
//! configured headers and service name; a caller's unsampled trace is not
//! exported; the mail worker's send has a span; and no personal data is
//! anywhere.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use sesame_proto::v1::access_request_service_client::AccessRequestServiceClient;
use tonic::{Request, Response, Status};

use crate::cli::{serve_at, terminate};

/// The caller's trace (W3C ids, lowercase hex).
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN_ID: &str = "00f067aa0ba902b7";
/// A caller's trace it chose not to sample.
const UNSAMPLED_TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";
const SUBMIT_SPAN: &str = "sesame.v1.AccessRequestService/SubmitAccessRequest";
const HEADER_SECRET: &str = "otlp-header-secret-4f1c";

/// What the receiver was sent: each export's resource spans and the value
/// of its `x-sesame-test-key` metadata.
#[derive(Clone, Default)]
struct Received {
    exports: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
    keys: Arc<Mutex<Vec<Option<String>>>>,
}

#[tonic::async_trait]
impl TraceService for Received {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let key = request
            .metadata()
            .get("x-sesame-test-key")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        self.keys.lock().unwrap().push(key);
        self.exports.lock().unwrap().push(request.into_inner());
        Ok(Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

impl Received {
    /// Every span received so far, with its resource.
    fn spans(&self) -> Vec<(Resource, Span)> {
        let exports = self.exports.lock().unwrap();
        let mut spans = Vec::new();
        for export in exports.iter() {
            for resource_spans in &export.resource_spans {
                let resource = resource_spans.resource.clone().unwrap_or_default();
                for scope in &resource_spans.scope_spans {
                    for span in &scope.spans {
                        spans.push((resource.clone(), span.clone()));
                    }
                }
            }
        }
        spans
    }
}

/// Starts the receiver on 127.0.0.1:0; its address.
async fn start_receiver(received: Received) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(received))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
            .expect("the OTLP receiver serves");
    });
    format!("http://{addr}")
}

fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attributes
        .iter()
        .find(|attribute| attribute.key == key)
        .and_then(|attribute| attribute.value.as_ref())
        .and_then(|value| value.value.as_ref())
}

fn string_attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a str> {
    match attribute(attributes, key) {
        Some(Value::StringValue(text)) => Some(text),
        _ => None,
    }
}

/// Every value in `value` as text (arrays and maps included).
fn texts(value: &AnyValue, into: &mut Vec<String>) {
    match &value.value {
        Some(Value::StringValue(text)) => into.push(text.clone()),
        Some(Value::ArrayValue(array)) => array.values.iter().for_each(|v| texts(v, into)),
        Some(Value::KvlistValue(list)) => list.values.iter().for_each(|kv| {
            into.push(kv.key.clone());
            if let Some(value) = &kv.value {
                texts(value, into);
            }
        }),
        Some(Value::BytesValue(bytes)) => into.push(String::from_utf8_lossy(bytes).into_owned()),
        Some(other) => into.push(format!("{other:?}")),
        None => {}
    }
}

/// Every text a span or its resource carries: names, attribute keys and
/// values, events and links.
fn all_texts(resource: &Resource, span: &Span) -> Vec<String> {
    let mut found = vec![span.name.clone()];
    let mut attributes: Vec<&KeyValue> = resource.attributes.iter().collect();
    attributes.extend(&span.attributes);
    for event in &span.events {
        found.push(event.name.clone());
        attributes.extend(&event.attributes);
    }
    for link in &span.links {
        attributes.extend(&link.attributes);
    }
    for attribute in attributes {
        found.push(attribute.key.clone());
        if let Some(value) = &attribute.value {
            texts(value, &mut found);
        }
    }
    found
}

#[tokio::test]
async fn a_submit_is_traced_under_the_callers_trace_without_personal_data() {
    let received = Received::default();
    let endpoint = start_receiver(received.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let submitter = crate::cli::submitter_key(dir.path());
    let submitter = submitter.trim().to_owned();
    let headers = format!("[\"x-sesame-test-key={HEADER_SECRET}\"]");
    let served = serve_at(
        dir.path(),
        "127.0.0.1:0",
        &[
            ("SESAME_OTLP_ENDPOINT", endpoint.as_str()),
            ("SESAME_OTLP_HEADERS", headers.as_str()),
            ("SESAME_OTLP_SERVICE_NAME", "sesame-otlp-test"),
            // The batch waits a minute: every span below can only arrive
            // through the flush on graceful shutdown.
            ("OTEL_BSP_SCHEDULE_DELAY", "60000"),
        ],
    )
    .await;

    let channel = tonic::transport::Channel::from_shared(format!("http://{}", served.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = AccessRequestServiceClient::new(channel);
    let submission = crate::harness::valid_submission();
    let applicant = submission.applicant.clone().unwrap();
    let justification = submission.justification.clone();
    let mut submit = Request::new(submission);
    submit.metadata_mut().insert(
        "authorization",
        format!("Bearer {submitter}").parse().unwrap(),
    );
    // Sampled by the caller (flags 01).
    submit.metadata_mut().insert(
        "traceparent",
        format!("00-{TRACE_ID}-{CALLER_SPAN_ID}-01")
            .parse()
            .unwrap(),
    );
    client.submit_access_request(submit).await.expect("submit");
    // Not sampled by its caller (flags 00): parent-based sampling follows.
    let mut unsampled = Request::new(crate::harness::valid_submission());
    unsampled.metadata_mut().insert(
        "authorization",
        format!("Bearer {submitter}").parse().unwrap(),
    );
    unsampled.metadata_mut().insert(
        "traceparent",
        format!("00-{UNSAMPLED_TRACE_ID}-{CALLER_SPAN_ID}-00")
            .parse()
            .unwrap(),
    );
    client
        .submit_access_request(unsampled)
        .await
        .expect("submit");
    // The mail worker sends the applicants' emails (file transport).
    let outbox = dir.path().join("mail-out");
    let sent = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            let count = std::fs::read_dir(&outbox).map_or(0, |entries| entries.count());
            if count >= 2 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(sent.is_ok(), "the worker sent both emails within 15 s");

    let logs = served.logs.clone();
    terminate(served).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let spans = loop {
        let spans = received.spans();
        let trace: Vec<_> = spans
            .iter()
            .filter(|(_, span)| hex(&span.trace_id) == TRACE_ID)
            .collect();
        let mail = spans.iter().any(|(_, span)| span.name == "mail_send");
        if trace.iter().any(|(_, span)| span.name == SUBMIT_SPAN) && trace.len() >= 2 && mail {
            break spans;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the submit's spans did not arrive within 15 s of shutdown; received: {:?}",
            spans
                .iter()
                .map(|(_, span)| span.name.clone())
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // The call's span: RPC conventions, the caller's trace and parent.
    let (resource, rpc) = spans
        .iter()
        .find(|(_, span)| span.name == SUBMIT_SPAN && hex(&span.trace_id) == TRACE_ID)
        .unwrap();
    assert_eq!(rpc.kind, SpanKind::Server as i32, "{rpc:?}");
    assert_eq!(hex(&rpc.parent_span_id), CALLER_SPAN_ID);
    let attributes = &rpc.attributes;
    assert_eq!(string_attribute(attributes, "rpc.system"), Some("grpc"));
    assert_eq!(
        string_attribute(attributes, "rpc.service"),
        Some("sesame.v1.AccessRequestService")
    );
    assert_eq!(
        string_attribute(attributes, "rpc.method"),
        Some("SubmitAccessRequest")
    );
    assert_eq!(
        attribute(attributes, "rpc.grpc.status_code"),
        Some(&Value::IntValue(0)),
        "{attributes:?}"
    );
    assert_eq!(
        string_attribute(&resource.attributes, "service.name"),
        Some("sesame-otlp-test")
    );

    // The store's spans are its children: the submit, and the group
    // commit's transaction under it.
    let in_trace: Vec<&Span> = spans
        .iter()
        .map(|(_, span)| span)
        .filter(|span| span.trace_id == rpc.trace_id)
        .collect();
    let children: Vec<&str> = in_trace
        .iter()
        .filter(|span| span.parent_span_id == rpc.span_id)
        .map(|span| span.name.as_str())
        .collect();
    assert!(children.contains(&"submit_request"), "{children:?}");
    let submit_store = in_trace
        .iter()
        .find(|span| span.name == "submit_request")
        .unwrap();
    assert!(
        in_trace
            .iter()
            .any(|span| span.name == "write_batch" && span.parent_span_id == submit_store.span_id),
        "the group commit's transaction is in the call's trace: {:?}",
        in_trace.iter().map(|span| &span.name).collect::<Vec<_>>()
    );
    // The caller's unsampled trace exported nothing.
    assert!(
        !spans
            .iter()
            .any(|(_, span)| hex(&span.trace_id) == UNSAMPLED_TRACE_ID),
        "an unsampled caller's trace is not exported"
    );
    // Each send has a span of its own: ids, template, outcome.
    let sends: Vec<&Span> = spans
        .iter()
        .map(|(_, span)| span)
        .filter(|span| span.name == "mail_send")
        .collect();
    assert!(
        sends.iter().any(|span| {
            string_attribute(&span.attributes, "template") == Some("applicant_received")
                && string_attribute(&span.attributes, "outcome") == Some("sent")
        }),
        "{sends:?}"
    );

    // The configured headers went with every export.
    let keys = received.keys.lock().unwrap().clone();
    assert!(!keys.is_empty());
    assert!(
        keys.iter().all(|key| key.as_deref() == Some(HEADER_SECRET)),
        "{keys:?}"
    );
    let logs = logs.lock().unwrap().join("\n");
    assert!(!logs.contains(HEADER_SECRET), "a header's value was logged");

    // No personal data, secret or key in any span or resource.
    let forbidden = [
        applicant.email.as_str(),
        applicant.full_name.as_str(),
        applicant.organization.as_str(),
        applicant.phone.as_str(),
        justification.as_str(),
        submitter.as_str(),
        HEADER_SECRET,
    ];
    for (resource, span) in &spans {
        for text in all_texts(resource, span) {
            for personal in forbidden {
                assert!(
                    !text.contains(personal),
                    "span {:?} carries {personal:?} in {text:?}",
                    span.name
                );
            }
        }
    }
}

/// Lowercase hex of an id.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
