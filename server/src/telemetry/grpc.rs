//! The tower layer around every gRPC call: a request id (the caller's
//! `x-request-id` when it is sane, else a new one) echoed in the response
//! metadata, a tracing span `rpc` carrying it so every log line of the call
//! has it, and the `grpc_server_*` metrics.
//!
//! When traces are exported (`super::otlp`), the span also carries the
//! OpenTelemetry RPC conventions: named `SERVICE/METHOD`, kind server,
//! `rpc.system`, `rpc.service`, `rpc.method` and, when the call ends,
//! `rpc.grpc.status_code`; a caller's `traceparent` becomes its parent.
//! Other routes (webhooks, the console's files) get the HTTP ones.
//!
//! The status code is read where gRPC puts it: in the response headers of a
//! trailers-only response (how tonic answers most errors), else in the
//! trailers at the end of the body. So a server stream is counted when it
//! ends, with its final code; a call whose response is dropped before its
//! status (client gone, deadline reached) is counted as CANCELLED.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use http::{HeaderMap, HeaderValue};
use http_body::{Body, Frame, SizeHint};
use tower::{Layer, Service};
use tracing::field::Empty;
use tracing::{Instrument, Span, debug};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::metrics::{Metrics, Rpc};
use super::otlp;

/// The metadata key of the request id, in requests and responses.
pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// Longest caller-chosen request id kept; longer ones are replaced.
const MAX_REQUEST_ID_LEN: usize = 128;

/// The id of the call, in the request extensions for handlers that want it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestId(pub String);

/// Adds [`TelemetryService`] around the gRPC router.
#[derive(Clone, Debug)]
pub struct TelemetryLayer {
    metrics: Arc<Metrics>,
}

impl TelemetryLayer {
    /// Records into `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self { metrics }
    }
}

impl<S> Layer<S> for TelemetryLayer {
    type Service = TelemetryService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TelemetryService {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// See the module documentation.
#[derive(Clone, Debug)]
pub struct TelemetryService<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for TelemetryService<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Body + Unpin + Send + 'static,
{
    type Response = http::Response<RpcBody<ResBody>>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<ReqBody>) -> Self::Future {
        // The clone that was polled ready is the one that must be called.
        let ready_clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready_clone);
        let request_id = request_id(request.headers());
        let header = HeaderValue::from_str(&request_id).expect("request ids are ascii");
        request
            .headers_mut()
            .insert(REQUEST_ID_HEADER, header.clone());
        request
            .extensions_mut()
            .insert(RequestId(request_id.clone()));
        let path = request.uri().path().to_owned();
        let rpc = self.metrics.rpc(&path);
        let span = tracing::info_span!(
            "rpc",
            request_id = %request_id,
            method = %path,
            trace_id = Empty,
            parent_span_id = Empty,
            otel.name = Empty,
            otel.kind = Empty,
            otel.status_code = Empty,
            rpc.system = Empty,
            rpc.service = Empty,
            rpc.method = Empty,
            rpc.grpc.status_code = Empty,
            http.request.method = Empty,
            http.route = Empty,
            http.response.status_code = Empty,
        );
        // The caller's W3C trace context, so its trace and our logs meet.
        if let Some((trace_id, parent)) = trace_context(request.headers()) {
            span.record("trace_id", trace_id);
            span.record("parent_span_id", parent);
            if otlp::enabled() {
                // Before anything enters the span: its children follow.
                let _ = span.set_parent(otlp::caller_context(request.headers()));
            }
        }
        let grpc = super::is_grpc(&request);
        if otlp::enabled() {
            record_conventions(&span, &request, grpc);
        }
        self.metrics.rpc_started(rpc);
        let tracker = Tracker {
            metrics: self.metrics.clone(),
            rpc,
            start: Instant::now(),
            finished: false,
            span: span.clone(),
            grpc,
        };
        let body_span = span.clone();
        Box::pin(
            async move {
                let mut response = match inner.call(request).await {
                    Ok(response) => response,
                    Err(error) => {
                        tracker.finish(UNKNOWN);
                        return Err(error);
                    }
                };
                response.headers_mut().insert(REQUEST_ID_HEADER, header);
                if !grpc && otlp::enabled() {
                    let status = response.status();
                    tracker
                        .span
                        .record("http.response.status_code", status.as_u16());
                    if status.is_server_error() {
                        tracker.span.record("otel.status_code", "error");
                    }
                }
                // A trailers-only response carries its status in the headers.
                let tracker = match status_code(response.headers()) {
                    Some(code) => {
                        tracker.finish(code);
                        None
                    }
                    None => Some(tracker),
                };
                Ok(response.map(|inner| RpcBody {
                    inner,
                    tracker,
                    span: body_span,
                }))
            }
            .instrument(span),
        )
    }
}

/// Records the OpenTelemetry conventions on the call's `span`: for gRPC
/// (`grpc`) the RPC ones, else the HTTP server ones with the route for
/// the webhooks (other paths, the console's files, are not named one by
/// one).
fn record_conventions<B>(span: &Span, request: &http::Request<B>, grpc: bool) {
    span.record("otel.kind", "server");
    let path = request.uri().path();
    if grpc {
        let (service, method) = path
            .trim_start_matches('/')
            .split_once('/')
            .unwrap_or(("unknown", "unknown"));
        span.record("otel.name", format!("{service}/{method}").as_str());
        span.record("rpc.system", "grpc");
        span.record("rpc.service", service);
        span.record("rpc.method", method);
        return;
    }
    let verb = request.method().as_str();
    span.record("http.request.method", verb);
    if path.starts_with("/webhooks/") {
        span.record("http.route", path);
        span.record("otel.name", format!("{verb} {path}").as_str());
    } else {
        span.record("otel.name", verb);
    }
}

/// Whether a server's gRPC status counts as an error in OpenTelemetry's
/// RPC conventions (the caller's mistakes do not).
fn is_server_error(code: i32) -> bool {
    matches!(code, 2 | 4 | 12 | 13 | 14 | 15)
}

/// The trace id and parent span id of a valid W3C `traceparent` header
/// (`00-<32 hex>-<16 hex>-<2 hex>`, ids not all zero).
fn trace_context(headers: &HeaderMap) -> Option<(&str, &str)> {
    let value = headers.get("traceparent")?.to_str().ok()?;
    let mut parts = value.split('-');
    let (version, trace_id, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |text: &str, len: usize| {
        text.len() == len
            && text
                .bytes()
                .all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'))
    };
    let valid = version == "00"
        && parts.next().is_none()
        && hex(trace_id, 32)
        && hex(parent, 16)
        && hex(flags, 2)
        && trace_id.bytes().any(|byte| byte != b'0')
        && parent.bytes().any(|byte| byte != b'0');
    valid.then_some((trace_id, parent))
}

/// The caller's request id when it is 1 to 128 characters of
/// `[A-Za-z0-9._:-]` (safe in logs), else a new UUID.
fn request_id(headers: &HeaderMap) -> String {
    let given = headers
        .get(REQUEST_ID_HEADER)
        .and_then(|value| value.to_str().ok())
        .filter(|value| {
            (1..=MAX_REQUEST_ID_LEN).contains(&value.len())
                && value
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || b"._:-".contains(&byte))
        });
    match given {
        Some(value) => value.to_owned(),
        None => uuid::Uuid::new_v4().to_string(),
    }
}

/// The status code CANCELLED.
const CANCELLED: i32 = 1;
/// The status code UNKNOWN.
const UNKNOWN: i32 = 2;

/// The status code in `grpc-status` (UNKNOWN when unreadable), if the map
/// has one.
fn status_code(map: &HeaderMap) -> Option<i32> {
    let value = map.get("grpc-status")?;
    let code = value
        .to_str()
        .ok()
        .and_then(|text| text.parse::<i32>().ok())
        .filter(|code| (0..=16).contains(code))
        .unwrap_or(UNKNOWN);
    Some(code)
}

/// The name of the status in `grpc-status`, if the map has one.
#[cfg(test)]
fn status_name(map: &HeaderMap) -> Option<&'static str> {
    status_code(map).map(code_name)
}

/// The canonical name of a gRPC status code (UNKNOWN for anything else).
pub fn code_name(code: i32) -> &'static str {
    match code {
        0 => "OK",
        1 => "CANCELLED",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        15 => "DATA_LOSS",
        16 => "UNAUTHENTICATED",
        _ => "UNKNOWN",
    }
}

/// Records the end of one call exactly once; dropped unfinished, the call
/// was abandoned and counts as CANCELLED.
struct Tracker {
    metrics: Arc<Metrics>,
    rpc: Rpc,
    start: Instant,
    finished: bool,
    /// The call's span, which gets the final status code.
    span: Span,
    /// Whether the call is a gRPC call (else an HTTP route).
    grpc: bool,
}

impl Tracker {
    fn finish(mut self, code: i32) {
        self.record(code);
    }

    fn record(&mut self, number: i32) {
        if self.finished {
            return;
        }
        self.finished = true;
        if self.grpc && otlp::enabled() {
            self.span.record("rpc.grpc.status_code", i64::from(number));
            if is_server_error(number) {
                self.span.record("otel.status_code", "error");
            }
        }
        let code = code_name(number);
        let elapsed = self.start.elapsed();
        self.metrics
            .rpc_handled(self.rpc, code, elapsed.as_secs_f64());
        debug!(
            code,
            elapsed_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            "rpc finished"
        );
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        self.record(CANCELLED);
    }
}

/// The response body, watched for the trailers that carry the status.
pub struct RpcBody<B> {
    inner: B,
    /// `None` once the status is known.
    tracker: Option<Tracker>,
    span: Span,
}

impl<B> std::fmt::Debug for RpcBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcBody").finish_non_exhaustive()
    }
}

impl<B> Body for RpcBody<B>
where
    B: Body + Unpin,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let _entered = this.span.enter();
        let polled = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        let code = match &polled {
            Some(Ok(frame)) => frame
                .trailers_ref()
                .map(|trailers| status_code(trailers).unwrap_or(UNKNOWN)),
            // The stream broke off: the client sees no status of ours.
            Some(Err(_)) => Some(UNKNOWN),
            None => Some(UNKNOWN),
        };
        if let Some(code) = code
            && let Some(tracker) = this.tracker.take()
        {
            tracker.finish(code);
        }
        Poll::Ready(polled)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn w3c_trace_context_is_read_when_valid() {
        let mut headers = HeaderMap::new();
        assert_eq!(trace_context(&headers), None);
        headers.insert(
            "traceparent",
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        assert_eq!(
            trace_context(&headers),
            Some(("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"))
        );
        for bad in [
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            headers.insert("traceparent", HeaderValue::from_static(bad));
            assert_eq!(trace_context(&headers), None, "{bad}");
        }
    }

    #[test]
    fn sane_request_ids_are_kept_and_others_replaced() {
        let mut headers = HeaderMap::new();
        headers.insert(REQUEST_ID_HEADER, HeaderValue::from_static("abc-123_x.y:z"));
        assert_eq!(request_id(&headers), "abc-123_x.y:z");
        headers.insert(
            REQUEST_ID_HEADER,
            HeaderValue::from_static("bad id\"with quotes"),
        );
        let replaced = request_id(&headers);
        assert!(uuid::Uuid::parse_str(&replaced).is_ok(), "{replaced}");
        let long = "a".repeat(MAX_REQUEST_ID_LEN + 1);
        headers.insert(REQUEST_ID_HEADER, HeaderValue::from_str(&long).unwrap());
        assert_ne!(request_id(&headers), long);
        assert!(uuid::Uuid::parse_str(&request_id(&HeaderMap::new())).is_ok());
    }

    #[test]
    fn status_codes_have_their_canonical_names() {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("5"));
        assert_eq!(status_name(&trailers), Some("NOT_FOUND"));
        trailers.insert("grpc-status", HeaderValue::from_static("x"));
        assert_eq!(status_name(&trailers), Some("UNKNOWN"));
        assert_eq!(status_name(&HeaderMap::new()), None);
        assert_eq!(code_name(0), "OK");
        assert_eq!(code_name(16), "UNAUTHENTICATED");
        assert_eq!(code_name(99), "UNKNOWN");
    }
}
