//! Sesame's metrics: gRPC server metrics recorded by the telemetry layer,
//! mail worker outcomes, watchers, and the domain gauges (requests by
//! state, outbox depth and age, database pool) refreshed periodically from
//! the database by [`refresh`](super::refresh). One [`Metrics`] per server,
//! so servers started side by side in one process (tests) count apart.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use prost::Message;

use super::registry::{CounterVec, Family, GaugeVec, HistogramVec, render};

/// Upper bounds of `grpc_server_handling_seconds`: a millisecond to half a
/// minute (the default deadline), with a bound at the 2 s latency SLO.
pub const HANDLING_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0,
];

/// Label values for a path the server does not know: a caller cannot grow
/// the number of series by calling made-up methods.
pub const UNKNOWN_RPC: Rpc = Rpc {
    service: "unknown",
    method: "unknown",
    kind: "unary",
};

/// The labels of one RPC: `grpc_service`, `grpc_method`, `grpc_type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rpc {
    pub service: &'static str,
    pub method: &'static str,
    /// `unary`, `client_stream`, `server_stream` or `bidi_stream`.
    pub kind: &'static str,
}

/// Every metric of one server.
#[derive(Debug)]
pub struct Metrics {
    pub grpc_started: CounterVec,
    pub grpc_handled: CounterVec,
    pub grpc_handling_seconds: HistogramVec,
    pub requests: GaugeVec,
    pub oldest_pending_request_age: GaugeVec,
    pub outbox: GaugeVec,
    pub outbox_oldest_due_age: GaugeVec,
    pub emails_sent: CounterVec,
    pub emails_failed: CounterVec,
    pub emails_dead: CounterVec,
    /// Providers, webhooks, suppression and failover.
    pub delivery: DeliveryMetrics,
    pub watchers: GaugeVec,
    pub db_pool_connections: GaugeVec,
    pub db_pool_max_connections: GaugeVec,
    pub refresh_failures: CounterVec,
    pub rpcs_shed: CounterVec,
    pub build_info: GaugeVec,
    /// `/package.Service/Method` -> labels, from the served descriptors.
    rpcs: HashMap<String, Rpc>,
}

/// The counters of email delivery through the HTTP providers.
#[derive(Debug)]
pub struct DeliveryMetrics {
    pub suppressed: CounterVec,
    pub failovers: CounterVec,
    pub provider_accepted: CounterVec,
    pub reports: CounterVec,
    pub webhook_events: CounterVec,
}

impl DeliveryMetrics {
    fn new() -> Self {
        DeliveryMetrics {
            suppressed: CounterVec::new(
                "sesame_emails_suppressed_total",
                "Emails not sent because their address is suppressed (hard bounce or complaint).",
                &[],
            ),
            failovers: CounterVec::new(
                "sesame_email_failovers_total",
                "Send attempts made through a transport other than the first, the ones before it \
             resting after repeated failures.",
                &["transport"],
            ),
            provider_accepted: CounterVec::new(
                "sesame_emails_provider_accepted_total",
                "Emails accepted by an HTTP provider that reports delivery (the delivery rate's base).",
                &["provider"],
            ),
            reports: CounterVec::new(
                "sesame_email_delivery_reports_total",
                "Delivery reports applied from provider webhooks, by report (delivered, delayed, \
             bounced_hard, bounced_soft, complained).",
                &["provider", "report"],
            ),
            webhook_events: CounterVec::new(
                "sesame_webhook_events_total",
                "Provider webhook events received, by outcome (applied, replayed, ignored, \
             unmatched, unauthorized, malformed).",
                &["provider", "outcome"],
            ),
        }
    }
}

const GRPC_LABELS: &[&str] = &["grpc_service", "grpc_method", "grpc_type"];
const GRPC_CODE_LABELS: &[&str] = &["grpc_service", "grpc_method", "grpc_type", "grpc_code"];

impl Metrics {
    /// Empty metrics that know the methods in the encoded descriptor sets
    /// `descriptors` (the services this server serves).
    pub fn new(descriptors: &[&[u8]]) -> Self {
        let build_info = GaugeVec::new(
            "sesame_build_info",
            "Always 1; the version of the running binary is a label.",
            &["version"],
        );
        build_info.set(&[env!("CARGO_PKG_VERSION")], 1.0);
        Metrics {
            grpc_started: CounterVec::new(
                "grpc_server_started_total",
                "RPCs started on the server.",
                GRPC_LABELS,
            ),
            grpc_handled: CounterVec::new(
                "grpc_server_handled_total",
                "RPCs completed on the server, by gRPC status code.",
                GRPC_CODE_LABELS,
            ),
            grpc_handling_seconds: HistogramVec::new(
                "grpc_server_handling_seconds",
                "Time from the start of an RPC to its status (for streams: to the end of the stream).",
                GRPC_LABELS,
                HANDLING_BUCKETS,
            ),
            requests: GaugeVec::new(
                "sesame_access_requests",
                "Access requests by state (refreshed from the database).",
                &["state"],
            ),
            oldest_pending_request_age: GaugeVec::new(
                "sesame_oldest_pending_request_age_seconds",
                "Age of the oldest access request still pending; 0 when none is.",
                &[],
            ),
            outbox: GaugeVec::new(
                "sesame_outbox_emails",
                "Emails in the outbox by state (refreshed from the database).",
                &["state"],
            ),
            outbox_oldest_due_age: GaugeVec::new(
                "sesame_outbox_oldest_due_age_seconds",
                "How long the longest-waiting email that is due has been due; 0 when none is.",
                &[],
            ),
            emails_sent: CounterVec::new(
                "sesame_emails_sent_total",
                "Emails handed to the transport and recorded as sent by this process.",
                &[],
            ),
            emails_failed: CounterVec::new(
                "sesame_emails_failed_total",
                "Send attempts that failed transiently and were scheduled for a retry.",
                &[],
            ),
            emails_dead: CounterVec::new(
                "sesame_emails_dead_total",
                "Emails given up on (permanent failure or lifetime exhausted).",
                &[],
            ),
            delivery: DeliveryMetrics::new(),
            watchers: GaugeVec::new(
                "sesame_watchers_connected",
                "WatchEvents streams open on this process.",
                &[],
            ),
            db_pool_connections: GaugeVec::new(
                "sesame_db_pool_connections",
                "Database pool connections by state (idle or in_use).",
                &["state"],
            ),
            db_pool_max_connections: GaugeVec::new(
                "sesame_db_pool_max_connections",
                "Largest size of the database pool (database_max_connections).",
                &[],
            ),
            refresh_failures: CounterVec::new(
                "sesame_metrics_refresh_failures_total",
                "Refreshes of the database gauges that failed (the gauges keep their last values).",
                &[],
            ),
            rpcs_shed: CounterVec::new(
                "sesame_rpcs_shed_total",
                "RPCs refused or cut short by a protective limit, by reason (peer_rate_limited, overloaded, database_unavailable, deadline_exceeded, message_too_large, message_malformed).",
                &["reason"],
            ),
            build_info,
            rpcs: rpc_table(descriptors),
        }
    }

    /// The labels of the RPC at `path` (`/package.Service/Method`).
    pub fn rpc(&self, path: &str) -> Rpc {
        self.rpcs.get(path).copied().unwrap_or(UNKNOWN_RPC)
    }

    /// Counts one started RPC.
    pub fn rpc_started(&self, rpc: Rpc) {
        self.grpc_started.inc(&[rpc.service, rpc.method, rpc.kind]);
    }

    /// Counts one finished RPC with its status code name and duration.
    pub fn rpc_handled(&self, rpc: Rpc, code: &str, seconds: f64) {
        self.grpc_handled
            .inc(&[rpc.service, rpc.method, rpc.kind, code]);
        self.grpc_handling_seconds
            .observe(&[rpc.service, rpc.method, rpc.kind], seconds);
    }

    /// Counts one call refused or cut short by a protective limit.
    pub fn rpc_shed(&self, reason: &str) {
        self.rpcs_shed.inc(&[reason]);
    }

    /// Counts a watcher in until the returned guard is dropped.
    pub fn watcher_connected(self: &std::sync::Arc<Self>) -> WatcherGuard {
        self.watchers.add(&[], 1.0);
        WatcherGuard {
            metrics: self.clone(),
        }
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        // Counted where the store recognises them, once per process.
        let storage_errors = CounterVec::new(
            "sesame_database_storage_errors_total",
            "Database writes the storage refused, by problem (full, out_of_memory, io_error); counted per process.",
            &["problem"],
        );
        for (problem, count) in crate::store::storage::counts() {
            storage_errors.add(&[problem.label()], count);
        }
        render(&[
            Family::Counter(&self.grpc_started),
            Family::Counter(&self.grpc_handled),
            Family::Histogram(&self.grpc_handling_seconds),
            Family::Gauge(&self.requests),
            Family::Gauge(&self.oldest_pending_request_age),
            Family::Gauge(&self.outbox),
            Family::Gauge(&self.outbox_oldest_due_age),
            Family::Counter(&self.emails_sent),
            Family::Counter(&self.emails_failed),
            Family::Counter(&self.emails_dead),
            Family::Counter(&self.delivery.suppressed),
            Family::Counter(&self.delivery.failovers),
            Family::Counter(&self.delivery.provider_accepted),
            Family::Counter(&self.delivery.reports),
            Family::Counter(&self.delivery.webhook_events),
            Family::Gauge(&self.watchers),
            Family::Gauge(&self.db_pool_connections),
            Family::Gauge(&self.db_pool_max_connections),
            Family::Counter(&self.refresh_failures),
            Family::Counter(&self.rpcs_shed),
            Family::Counter(&storage_errors),
            Family::Gauge(&self.build_info),
        ])
    }
}

impl Default for Metrics {
    /// Metrics that know no RPC (the standalone mail worker).
    fn default() -> Self {
        Metrics::new(&[])
    }
}

/// Keeps one watcher counted in `sesame_watchers_connected`.
#[derive(Debug)]
pub struct WatcherGuard {
    metrics: std::sync::Arc<Metrics>,
}

impl Drop for WatcherGuard {
    fn drop(&mut self) {
        self.metrics.watchers.add(&[], -1.0);
    }
}

/// Maps every method of the descriptor sets to its labels.
fn rpc_table(descriptors: &[&[u8]]) -> HashMap<String, Rpc> {
    let mut table = HashMap::new();
    for encoded in descriptors {
        let Ok(set) = prost_types::FileDescriptorSet::decode(*encoded) else {
            continue;
        };
        for file in set.file {
            let package = file.package.unwrap_or_default();
            for service in file.service {
                let service_name = match (package.as_str(), service.name()) {
                    ("", name) => name.to_owned(),
                    (package, name) => format!("{package}.{name}"),
                };
                let service_label: &'static str = leak(&service_name);
                for method in service.method {
                    let kind = match (
                        method.client_streaming.unwrap_or(false),
                        method.server_streaming.unwrap_or(false),
                    ) {
                        (false, false) => "unary",
                        (true, false) => "client_stream",
                        (false, true) => "server_stream",
                        (true, true) => "bidi_stream",
                    };
                    let path = format!("/{service_name}/{}", method.name());
                    table.entry(path).or_insert_with(|| Rpc {
                        service: service_label,
                        method: leak(method.name()),
                        kind,
                    });
                }
            }
        }
    }
    table
}

/// A `'static` copy of a service or method name. Each distinct name is
/// allocated once per process (a few dozen short strings), however many
/// servers start.
fn leak(text: &str) -> &'static str {
    static NAMES: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());
    let mut names = NAMES.lock().expect("names lock");
    if let Some(name) = names.get(text) {
        return name;
    }
    let name: &'static str = Box::leak(text.to_owned().into_boxed_str());
    names.insert(name);
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_are_labelled_from_the_descriptors() {
        let metrics = Metrics::new(&[sesame_proto::FILE_DESCRIPTOR_SET]);
        let submit = metrics.rpc("/sesame.v1.AccessRequestService/SubmitAccessRequest");
        assert_eq!(
            submit,
            Rpc {
                service: "sesame.v1.AccessRequestService",
                method: "SubmitAccessRequest",
                kind: "unary",
            }
        );
        assert_eq!(
            metrics.rpc("/sesame.v1.EventService/WatchEvents").kind,
            "server_stream"
        );
        assert_eq!(metrics.rpc("/made.up/Path"), UNKNOWN_RPC);
    }
}
