//! Observability: the tracing subscriber (text or JSON lines on stderr,
//! filtered by the configured directives; `RUST_LOG` wins when set), the
//! per-call layer (request id, span, gRPC metrics), the metrics registry
//! and its HTTP listener, and the periodic refresh of the database gauges.

pub mod grpc;
pub mod http;
pub mod metrics;
pub mod refresh;
pub mod registry;

pub use grpc::{RequestId, TelemetryLayer};
pub use metrics::Metrics;

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

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

/// Installs the global subscriber. Safe to call more than once (tests):
/// later calls keep the first subscriber.
pub fn init(format: LogFormat, filter: &str) {
    let env_filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(env_filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _already_set = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
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
