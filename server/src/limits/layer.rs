//! The tower layer that applies [`LimitOptions`] to every call, inside the
//! telemetry layer (so a refused call still has its request id, log span
//! and metrics) and outside authentication (so refusing costs no database
//! read).

use std::net::{IpAddr, Ipv6Addr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http_body::{Body, Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tower::{Layer, Service};
use tracing::{debug, warn};

use super::admission::Admission;
use super::body::MessageLimitBody;
use super::{CallKind, DatabaseState, LimitError, LimitOptions};
use crate::auth::RateLimiter;
use crate::telemetry::Metrics;

/// Adds [`LimitService`] around the gRPC router.
#[derive(Clone, Debug)]
pub struct LimitLayer {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    options: LimitOptions,
    peers: RateLimiter<IpAddr>,
    /// Permits for unary calls; `None`: no cap.
    calls: Option<Arc<Semaphore>>,
    /// Permits for streams; `None`: no cap.
    streams: Option<Arc<Semaphore>>,
    /// Turns of unary calls to do work; `None`: no turns.
    admission: Option<Arc<Admission>>,
    /// While the database does not answer, unary calls end at once.
    database: DatabaseState,
    metrics: Arc<Metrics>,
}

impl LimitLayer {
    /// Applies `options` and follows `database`; counts refusals in
    /// `metrics`, which also tells unary methods from streaming ones.
    pub fn new(options: LimitOptions, database: DatabaseState, metrics: Arc<Metrics>) -> Self {
        let semaphore = |permits: usize| (permits > 0).then(|| Arc::new(Semaphore::new(permits)));
        LimitLayer {
            shared: Arc::new(Shared {
                peers: RateLimiter::new(options.per_peer_rate, options.per_peer_burst),
                calls: semaphore(options.max_in_flight_calls),
                streams: semaphore(options.max_open_streams),
                admission: (options.max_active_calls > 0)
                    .then(|| Admission::new(options.max_active_calls)),
                database,
                options,
                metrics,
            }),
        }
    }
}

impl<S> Layer<S> for LimitLayer {
    type Service = LimitService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        LimitService {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// See the module documentation.
#[derive(Clone, Debug)]
pub struct LimitService<S> {
    inner: S,
    shared: Arc<Shared>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl Shared {
    /// A permit of the cap that counts `kind`, `Ok(None)` when uncapped.
    fn permit(&self, kind: CallKind) -> Result<Option<OwnedSemaphorePermit>, LimitError> {
        let (semaphore, key, what, limit) = match kind {
            CallKind::Unary => (
                &self.calls,
                "max_in_flight_calls",
                "unary calls in flight",
                self.options.max_in_flight_calls,
            ),
            CallKind::Stream => (
                &self.streams,
                "max_open_streams",
                "open streams",
                self.options.max_open_streams,
            ),
        };
        let Some(semaphore) = semaphore else {
            return Ok(None);
        };
        semaphore
            .clone()
            .try_acquire_owned()
            .map(Some)
            .map_err(|_| LimitError::Overloaded { key, what, limit })
    }

    /// The answer to a call refused by `error`, counted.
    fn refuse<B: Default>(&self, error: LimitError) -> http::Response<B> {
        self.metrics.rpc_shed(error.metric_reason());
        match &error {
            LimitError::Overloaded { key, limit, .. } => {
                warn!(limit_key = key, limit, "call shed: server at its limit");
            }
            LimitError::DatabaseUnavailable => {
                debug!("call answered UNAVAILABLE: the database does not answer");
            }
            _ => debug!(reason = error.metric_reason(), "call refused by a limit"),
        }
        tonic::Status::from(error).into_http()
    }
}

impl<S, ResBody> Service<http::Request<tonic::body::Body>> for LimitService<S>
where
    S: Service<http::Request<tonic::body::Body>, Response = http::Response<ResBody>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = http::Response<PermitBody<ResBody>>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        // The clone that was polled ready is the one that must be called.
        let ready_clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready_clone);
        let shared = self.shared.clone();
        Box::pin(async move {
            let unlimited = |response: http::Response<ResBody>| {
                response.map(|inner| PermitBody {
                    inner,
                    _permit: None,
                })
            };
            if !crate::telemetry::is_grpc(&request) {
                // Not a gRPC call: its route brings its own rules.
                return Ok(unlimited(inner.call(request).await?));
            }
            // Health is never shed (its size limit stays): an orchestrator
            // that finds a busy replica unhealthy restarts it exactly when
            // it is needed most. A health check costs no database read.
            let health = request.uri().path().starts_with(HEALTH_PATH);
            if !health
                && let Some(peer) = peer_key(request.extensions())
                && let Err(wait) = shared.peers.check(&peer, Instant::now())
            {
                return Ok(unlimited(shared.refuse(LimitError::PeerRateLimited(wait))));
            }
            let kind = match shared.metrics.rpc(request.uri().path()).kind {
                "unary" => CallKind::Unary,
                _ => CallKind::Stream,
            };
            // Every Sesame call needs the database: while it does not
            // answer, say so at once rather than wait out the outage.
            // Streams stay: they resume from their cursors by themselves.
            if !health && kind == CallKind::Unary && !shared.database.is_reachable() {
                return Ok(unlimited(shared.refuse(LimitError::DatabaseUnavailable)));
            }
            let permit = if health {
                None
            } else {
                match shared.permit(kind) {
                    Ok(permit) => permit,
                    Err(error) => return Ok(unlimited(shared.refuse(error))),
                }
            };
            let limit = shared.options.max_message_bytes;
            let metrics = shared.metrics.clone();
            let limited = request
                .map(|body| tonic::body::Body::new(MessageLimitBody::new(body, limit, metrics)));
            let response = match kind {
                // A stream's response starts at once and lives as long as
                // the caller wants; its deadline is the caller's.
                CallKind::Stream => inner.call(limited).await?,
                CallKind::Unary => match run_unary(&shared, inner, limited, health).await {
                    Ok(response) => response?,
                    Err(refused) => return Ok(unlimited(shared.refuse(refused))),
                },
            };
            if let Some(error) = malformed_request(response.headers()) {
                return Ok(unlimited(tonic::Status::from(error).into_http()));
            }
            // The permit is held until the response body is done with.
            Ok(response.map(|inner| PermitBody {
                inner,
                _permit: permit,
            }))
        })
    }
}

/// Runs a unary call within its deadline (the caller's, when shorter than
/// `request_timeout_secs`), after its turn (health takes none), and ends
/// it as soon as the database is found unreachable. The error is why the
/// call was refused or ended.
async fn run_unary<S, ResBody>(
    shared: &Shared,
    mut inner: S,
    request: http::Request<tonic::body::Body>,
    health: bool,
) -> Result<Result<http::Response<ResBody>, S::Error>, LimitError>
where
    S: Service<http::Request<tonic::body::Body>, Response = http::Response<ResBody>>,
{
    let server_timeout = shared.options.request_timeout;
    // tonic ends a call at the caller's `grpc-timeout` with CANCELLED;
    // ending it a millisecond earlier here answers DEADLINE_EXCEEDED, as
    // gRPC specifies.
    let timeout = caller_timeout(request.headers())
        .map(|caller| caller.saturating_sub(Duration::from_millis(1)))
        .map_or(server_timeout, |caller| caller.min(server_timeout));
    let admission = shared.admission.clone().filter(|_| !health);
    let work = async move {
        let _turn = match &admission {
            Some(admission) => Some(admission.enter(timeout).await?),
            None => None,
        };
        Ok::<_, LimitError>(inner.call(request).await)
    };
    let database_lost = async {
        if health {
            std::future::pending::<()>().await;
        }
        shared.database.unreachable().await;
    };
    tokio::select! {
        biased;
        answered = tokio::time::timeout(timeout, work) => {
            answered.unwrap_or(Err(LimitError::DeadlineExceeded(timeout)))
        }
        // Its transaction, if one began, rolls back as the call is
        // dropped; a commit already sent may have landed, as with any
        // UNAVAILABLE (a submit retried with its request_id returns it).
        () = database_lost => Err(LimitError::DatabaseUnavailable),
    }
}

/// The path prefix of the gRPC health service (readiness and liveness).
const HEALTH_PATH: &str = "/grpc.health.v1.Health/";

/// The caller's deadline from its `grpc-timeout` header: up to 8 digits
/// and a unit (H, M, S, m, u, n).
fn caller_timeout(headers: &http::HeaderMap) -> Option<Duration> {
    let text = headers.get("grpc-timeout")?.to_str().ok()?;
    if text.len() < 2 || text.len() > 9 {
        return None;
    }
    let (digits, unit) = text.split_at(text.len() - 1);
    let value: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(value.checked_mul(3600)?),
        "M" => Duration::from_secs(value.checked_mul(60)?),
        "S" => Duration::from_secs(value),
        "m" => Duration::from_millis(value),
        "u" => Duration::from_micros(value),
        "n" => Duration::from_nanos(value),
        _ => return None,
    })
}

/// How tonic's prost codec begins the INTERNAL status of a request message
/// it could not decode.
const DECODE_ERROR_PREFIX: &str = "failed to decode Protobuf message: ";

/// The refusal to send instead of a trailers-only INTERNAL answer that only
/// says the request message did not decode: the caller's fault, not ours.
fn malformed_request(headers: &http::HeaderMap) -> Option<LimitError> {
    if headers.get("grpc-status")?.as_bytes() != b"13" {
        return None;
    }
    let status = tonic::Status::from_header_map(headers)?;
    let detail = status.message().strip_prefix(DECODE_ERROR_PREFIX)?;
    let field = field_path(detail);
    debug!(
        field = field.as_deref().unwrap_or(""),
        "request message is not valid protobuf"
    );
    Some(LimitError::MessageMalformed {
        field,
        detail: detail.to_owned(),
    })
}

/// The field path in prost's description of a decode error: its location
/// stack `Inner.field: Outer.field: what went wrong` read outermost first,
/// e.g. `applicant.email`.
fn field_path(detail: &str) -> Option<String> {
    let is_ident = |text: &str| {
        !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    let mut fields: Vec<&str> = detail
        .split(": ")
        .map_while(|location| {
            let (message, field) = location.split_once('.')?;
            (is_ident(message) && is_ident(field)).then_some(field)
        })
        .collect();
    if fields.is_empty() {
        return None;
    }
    fields.reverse();
    Some(fields.join("."))
}

/// The address a peer is limited by: its IPv4 address, or the /64 network
/// of its IPv6 address (one host commonly has a whole /64). `None` when the
/// connection has no peer address.
pub fn peer_key(extensions: &http::Extensions) -> Option<IpAddr> {
    let remote = extensions
        .get::<TcpConnectInfo>()
        .and_then(TcpConnectInfo::remote_addr)
        .or_else(|| {
            extensions
                .get::<TlsConnectInfo<TcpConnectInfo>>()
                .and_then(|info| info.get_ref().remote_addr())
        })?;
    Some(match remote.ip() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::V6(Ipv6Addr::from(segments))
            }
        },
    })
}

/// A response body that holds its call's place under a cap until it is
/// dropped.
pub struct PermitBody<B> {
    inner: B,
    _permit: Option<OwnedSemaphorePermit>,
}

impl<B> std::fmt::Debug for PermitBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PermitBody").finish_non_exhaustive()
    }
}

impl<B> Body for PermitBody<B>
where
    B: Body + Unpin,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
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
    use std::net::{Ipv4Addr, SocketAddr};

    fn key_of(addr: &str) -> Option<IpAddr> {
        let remote: SocketAddr = addr.parse().unwrap();
        let mut extensions = http::Extensions::new();
        extensions.insert(TcpConnectInfo {
            local_addr: None,
            remote_addr: Some(remote),
        });
        peer_key(&extensions)
    }

    #[test]
    fn the_callers_deadline_is_read_from_grpc_timeout() {
        let timeout = |value: &'static str| {
            let mut headers = http::HeaderMap::new();
            headers.insert("grpc-timeout", http::HeaderValue::from_static(value));
            caller_timeout(&headers)
        };
        assert_eq!(timeout("200m"), Some(Duration::from_millis(200)));
        assert_eq!(timeout("3S"), Some(Duration::from_secs(3)));
        assert_eq!(timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(timeout("99999999n"), Some(Duration::from_nanos(99_999_999)));
        for bad in ["", "S", "123456789S", "10x", "-1S", "1.5S"] {
            assert_eq!(timeout(bad), None, "{bad:?}");
        }
        assert_eq!(caller_timeout(&http::HeaderMap::new()), None);
    }

    #[test]
    fn the_field_of_a_decode_error_is_read_outermost_first() {
        assert_eq!(
            field_path(
                "Applicant.email: SubmitAccessRequestRequest.applicant: invalid string value: \
                 data is not UTF-8 encoded"
            )
            .as_deref(),
            Some("applicant.email")
        );
        assert_eq!(
            field_path("SubmitAccessRequestRequest.resource: invalid wire type").as_deref(),
            Some("resource")
        );
        assert_eq!(field_path("invalid varint"), None);
        assert_eq!(field_path("buffer underflow"), None);
    }

    #[test]
    fn peers_are_keyed_by_ipv4_address_or_ipv6_network() {
        assert_eq!(
            key_of("192.0.2.7:5000"),
            Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)))
        );
        assert_eq!(
            key_of("[::ffff:192.0.2.7]:5000"),
            key_of("192.0.2.7:1"),
            "an IPv4-mapped address is its IPv4 address"
        );
        assert_eq!(
            key_of("[2001:db8:1:2:aaaa::1]:5000"),
            key_of("[2001:db8:1:2:bbbb::9]:6000"),
            "one /64 is one peer"
        );
        assert_ne!(
            key_of("[2001:db8:1:2::1]:5000"),
            key_of("[2001:db8:1:3::1]:5000")
        );
        assert_eq!(peer_key(&http::Extensions::new()), None);
    }
}
