//! Observability: the tracing subscriber (text or JSON lines on stderr,
//! filtered by the configured directives; `RUST_LOG` wins when set), the
//! OpenTelemetry trace export when configured (`otlp`), the per-call layer
//! (request id, span, gRPC metrics), the metrics registry and its HTTP
//! listener, and the periodic refresh of the database gauges.

pub mod grpc;
pub mod http;
pub mod metrics;
pub mod otlp;
pub mod refresh;
pub mod registry;

pub use grpc::{RequestId, TelemetryLayer};
pub use metrics::Metrics;
pub use otlp::{OtlpError, OtlpOptions, TracesGuard};

use std::io::IsTerminal;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::config::LogFormat;

/// Whether `request` is a gRPC (or gRPC-Web) call: by its content type,
/// or by a path of a gRPC service (`/sesame.*`, `/grpc.*`). The layers
/// apply their gRPC rules to these only; any other route (the console's
/// files, HTTP webhooks) brings its own.
pub fn is_grpc<B>(request: &::http::Request<B>) -> bool {
    let grpc_type = request
        .headers()
        .get(::http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/grpc"));
    let path = request.uri().path();
    grpc_type || path.starts_with("/sesame.") || path.starts_with("/grpc.")
}

/// Installs the global subscriber: log lines filtered by `filter`, and
/// with `otlp` the trace export (filtered on its own, see [`otlp`]). Safe
/// to call more than once (tests): later calls keep the first subscriber.
/// The guard must be shut down at exit to export the last spans.
pub fn init(
    format: LogFormat,
    filter: &str,
    otlp: Option<&OtlpOptions>,
) -> Result<TracesGuard, OtlpError> {
    let env_filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let logs = match format {
        LogFormat::Text => logs.boxed(),
        LogFormat::Json => logs.json().boxed(),
    };
    let (traces, guard) = match otlp {
        Some(options) => {
            let (provider, guard) = otlp::provider(options)?;
            (Some(otlp::layer::<Registry>(&provider)), guard)
        }
        None => (None, TracesGuard::default()),
    };
    let _already_set = tracing_subscriber::registry()
        .with(traces)
        .with(logs.with_filter(env_filter))
        .try_init();
    Ok(guard)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(path: &str, content_type: Option<&str>) -> ::http::Request<()> {
        let mut builder = ::http::Request::builder().uri(path);
        if let Some(content_type) = content_type {
            builder = builder.header(::http::header::CONTENT_TYPE, content_type);
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn grpc_and_grpc_web_calls_are_told_from_other_routes() {
        let service = "/sesame.v1.AccessRequestService/GetAccessRequest";
        assert!(is_grpc(&request(service, Some("application/grpc"))));
        assert!(is_grpc(&request(
            service,
            Some("application/grpc-web+proto")
        )));
        // A gRPC path keeps the gRPC rules whatever its content type says.
        assert!(is_grpc(&request(service, Some("text/plain"))));
        assert!(is_grpc(&request("/grpc.health.v1.Health/Check", None)));
        // The console's files and webhooks bring their own rules.
        assert!(!is_grpc(&request("/", Some("text/html"))));
        assert!(!is_grpc(&request("/assets/app.js", None)));
        assert!(!is_grpc(&request(
            "/webhooks/resend",
            Some("application/json")
        )));
    }
}
