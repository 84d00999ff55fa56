//! Trace export over OTLP/gRPC (tonic): the OpenTelemetry tracer provider
//! with a batch exporter, the W3C TraceContext propagator, the
//! tracing-opentelemetry layer with a filter of its own (independent of
//! the log filter) and the guard that flushes the last spans at exit.
//!
//! What is exported: the spans of this crate at INFO and above that belong
//! to a trace started by a call (`rpc`) or by the mail worker's send
//! (`mail_send`), plus a few DEBUG store spans named in
//! [`EXPORTED_DEBUG_SPANS`]. Events (log lines) are never exported: their
//! fields are for operators' logs, and no span attribute carries personal
//! data (the spans' fields are ids, names of API keys, counts and codes).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry::propagation::Extractor;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{WithExportConfig, WithTonicConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tracing::{Level, Metadata, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// The root spans a trace may start with: a call and a send of an email.
const ROOT_SPANS: &[&str] = &["rpc", "mail_send"];
/// DEBUG spans of the store exported all the same (reads of a call).
pub const EXPORTED_DEBUG_SPANS: &[&str] = &["decide_request", "get_request", "list_requests"];
/// The longest the exit waits for the last spans to be exported.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest one export call may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether spans are exported in this process (set once by [`init`]), so
/// the per-call layer records the OpenTelemetry fields only then and log
/// lines keep their usual fields otherwise.
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Where and how traces are exported (built by `options::otlp`).
#[derive(Clone)]
pub struct OtlpOptions {
    /// `http://HOST:PORT` or `https://HOST:PORT`.
    pub endpoint: String,
    /// gRPC metadata sent with every export (secrets).
    pub headers: Vec<(String, String)>,
    /// Share of new traces sampled, 0.0 to 1.0.
    pub sampling_ratio: f64,
    /// The resource's `service.name`.
    pub service_name: String,
}

impl std::fmt::Debug for OtlpOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("OtlpOptions")
            .field("endpoint", &self.endpoint)
            .field("header_names", &names)
            .field("sampling_ratio", &self.sampling_ratio)
            .field("service_name", &self.service_name)
            .finish()
    }
}

/// Why the exporter could not be built.
#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    #[error("otlp_headers: {0:?} cannot be sent as gRPC metadata")]
    Header(String),
    #[error("the OTLP exporter for {endpoint} could not be built: {reason}")]
    Exporter { endpoint: String, reason: String },
}

/// Whether spans are exported in this process.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Flushes and stops the export when shut down (see [`TracesGuard::shutdown`]);
/// holds nothing when traces are not exported.
#[derive(Debug, Default)]
pub struct TracesGuard {
    provider: Option<SdkTracerProvider>,
}

impl TracesGuard {
    /// Exports the spans still buffered and stops the exporter, waiting at
    /// most a few seconds. Blocking: call it outside the async runtime's
    /// workers (`spawn_blocking`), while the runtime still runs.
    pub fn shutdown(self) {
        let Some(provider) = self.provider else {
            return;
        };
        if let Err(error) = provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT) {
            // The subscriber may be the one that is stopping: stderr.
            eprintln!("warning: the last traces could not be exported: {error}");
        }
    }
}

/// The tracer provider exporting to `options.endpoint`, the global W3C
/// propagator set. Must run inside the tokio runtime (the gRPC channel's
/// tasks live there), which must outlive the returned guard's shutdown.
pub fn provider(options: &OtlpOptions) -> Result<(SdkTracerProvider, TracesGuard), OtlpError> {
    let exporter = exporter(options)?;
    let resource = Resource::builder()
        .with_service_name(options.service_name.clone())
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build();
    // A caller's sampled trace goes on; new traces are sampled at the ratio.
    let sampler =
        Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(options.sampling_ratio)));
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(sampler)
        .with_resource(resource)
        .build();
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    ENABLED.store(true, Ordering::Relaxed);
    let guard = TracesGuard {
        provider: Some(provider.clone()),
    };
    Ok((provider, guard))
}

/// The span exporter to `options.endpoint` with its headers; TLS (rustls,
/// webpki roots) for an `https://` endpoint. Connects lazily: must run
/// inside the tokio runtime.
fn exporter(options: &OtlpOptions) -> Result<opentelemetry_otlp::SpanExporter, OtlpError> {
    let mut metadata = MetadataMap::new();
    for (name, value) in &options.headers {
        let key = MetadataKey::from_bytes(name.as_bytes())
            .map_err(|_| OtlpError::Header(name.clone()))?;
        let value =
            MetadataValue::try_from(value.as_str()).map_err(|_| OtlpError::Header(name.clone()))?;
        metadata.insert(key, value);
    }
    let mut builder = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(options.endpoint.clone())
        .with_timeout(EXPORT_TIMEOUT)
        .with_metadata(metadata);
    if options.endpoint.starts_with("https://") {
        // The public roots (webpki), with rustls and ring as elsewhere.
        let tls = tonic::transport::ClientTlsConfig::new().with_enabled_roots();
        builder = builder.with_tls_config(tls);
    }
    builder.build().map_err(|error| OtlpError::Exporter {
        endpoint: options.endpoint.clone(),
        reason: error.to_string(),
    })
}

/// The tracing layer that turns the exported spans into OpenTelemetry
/// spans of `provider`, with its own filter (see the module documentation).
pub fn layer<S>(provider: &SdkTracerProvider) -> impl Layer<S> + Send + Sync + 'static
where
    S: Subscriber + for<'span> LookupSpan<'span> + Send + Sync,
{
    let tracer = provider.tracer("sesame");
    tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false)
        .with_tracked_inactivity(false)
        .with_filter(tracing_subscriber::filter::dynamic_filter_fn(exported::<S>))
}

/// Whether a span is exported: see the module documentation.
fn exported<S>(metadata: &Metadata<'_>, context: &Context<'_, S>) -> bool
where
    S: Subscriber + for<'span> LookupSpan<'span>,
{
    if !metadata.is_span() || !metadata.target().starts_with("sesame_server") {
        return false;
    }
    if ROOT_SPANS.contains(&metadata.name()) {
        return true;
    }
    let level_ok =
        *metadata.level() <= Level::INFO || EXPORTED_DEBUG_SPANS.contains(&metadata.name());
    // Background loops (polls, refreshes) make no trace of their own.
    level_ok && context.lookup_current().is_some()
}

/// The OpenTelemetry context a caller sent in its W3C headers
/// (`traceparent`, `tracestate`), through the global propagator.
pub fn caller_context(headers: &http::HeaderMap) -> opentelemetry::Context {
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&HeaderReader(headers))
    })
}

/// Reads propagation fields from HTTP headers.
struct HeaderReader<'a>(&'a http::HeaderMap);

impl Extractor for HeaderReader<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(endpoint: &str, headers: &[(&str, &str)]) -> OtlpOptions {
        OtlpOptions {
            endpoint: endpoint.to_owned(),
            headers: headers
                .iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
                .collect(),
            sampling_ratio: 1.0,
            service_name: "sesame".to_owned(),
        }
    }

    #[tokio::test]
    async fn plaintext_and_tls_endpoints_build_and_bad_headers_are_named() {
        exporter(&options("http://localhost:4317", &[])).expect("plaintext");
        // rustls with the webpki roots: New Relic's endpoint needs TLS.
        exporter(&options(
            "https://otlp.nr-data.net:4317",
            &[("api-key", "license")],
        ))
        .expect("TLS");
        let error = exporter(&options(
            "http://localhost:4317",
            &[("api-key", "line\nbreak")],
        ))
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "otlp_headers: \"api-key\" cannot be sent as gRPC metadata"
        );
        let shown = format!("{:?}", options("http://h:4317", &[("api-key", "s3cret")]));
        assert!(!shown.contains("s3cret"), "{shown}");
    }
}
