//! Prometheus metrics over HTTP from the real server: after a scripted
//! scenario, every `grpc_server_*` series equals what the client counted,
//! the database gauges match after a refresh, watchers are counted, and
//! every call carries a request id, echoed back.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use sesame_proto::v1 as pb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

use crate::harness::{Backend, TestServer, both_backends, valid_submission};

both_backends!(
    scraped_counters_equal_the_client_side_counts,
    watchers_are_counted_while_connected,
);

/// Labels of one sample, sorted by name.
type Labels = BTreeMap<String, String>;

/// One scrape: (metric name, labels) -> value.
#[derive(Debug)]
pub(crate) struct Scrape {
    content_type: String,
    samples: BTreeMap<(String, Labels), f64>,
}

impl Scrape {
    /// Every sample of `name` whose labels include `filter`.
    fn select(&self, name: &str, filter: &[(&str, &str)]) -> Vec<(&Labels, f64)> {
        self.samples
            .iter()
            .filter(|((sample_name, labels), _)| {
                sample_name == name
                    && filter
                        .iter()
                        .all(|(key, value)| labels.get(*key).map(String::as_str) == Some(*value))
            })
            .map(|((_, labels), value)| (labels, *value))
            .collect()
    }

    /// The one sample of `name` with exactly these labels.
    pub(crate) fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let key: Labels = labels
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect();
        self.samples.get(&(name.to_owned(), key)).copied()
    }
}

/// GETs `/metrics` with a plain HTTP/1.1 request and parses the text format.
async fn scrape(addr: SocketAddr) -> Scrape {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to /metrics");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\nAccept: text/plain\r\n\r\n")
        .await
        .unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    let content_type = head
        .lines()
        .find_map(|line| line.strip_prefix("Content-Type: "))
        .unwrap_or_default()
        .to_owned();
    Scrape {
        content_type,
        samples: parse(body),
    }
}

/// Parses the text exposition format (enough of it for our own output).
fn parse(body: &str) -> BTreeMap<(String, Labels), f64> {
    let mut samples = BTreeMap::new();
    for line in body.lines().filter(|line| !line.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').expect("sample line");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            other => other.parse().expect("sample value"),
        };
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (name, parse_labels(rest.trim_end_matches('}'))),
            None => (series, Labels::new()),
        };
        samples.insert((name.to_owned(), labels), value);
    }
    samples
}

fn parse_labels(text: &str) -> Labels {
    // Our label values contain no quotes or commas.
    text.split(',')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').expect("label pair");
            (key.to_owned(), value.trim_matches('"').to_owned())
        })
        .collect()
}

/// Counts of calls per (method, code), as the client saw them.
#[derive(Default)]
struct Tally(BTreeMap<(String, String), u64>);

impl Tally {
    fn record<T>(&mut self, method: &str, result: &Result<T, tonic::Status>) {
        let code = match result {
            Ok(_) => Code::Ok,
            Err(status) => status.code(),
        };
        *self
            .0
            .entry((method.to_owned(), code_name(code).to_owned()))
            .or_default() += 1;
    }
}

fn code_name(code: Code) -> &'static str {
    sesame_server::telemetry::grpc::code_name(code as i32)
}

/// Scrapes until `done` holds (the gauges are refreshed every second).
pub(crate) async fn scrape_until(
    addr: SocketAddr,
    what: &str,
    done: impl Fn(&Scrape) -> bool,
) -> Scrape {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let scraped = scrape(addr).await;
        if done(&scraped) {
            return scraped;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}: {scraped:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn start(backend: Backend) -> (TestServer, SocketAddr) {
    let server = TestServer::start_with(backend, |config| {
        config.metrics_addr = Some("127.0.0.1:0".parse().unwrap());
        config.metrics_refresh_secs = 1;
    })
    .await;
    let metrics_addr = server.metrics_addr.expect("metrics are on");
    (server, metrics_addr)
}

const SERVICE: &str = "sesame.v1.AccessRequestService";

async fn scraped_counters_equal_the_client_side_counts(backend: Backend) {
    let (server, metrics_addr) = start(backend).await;
    let mut alice = server.client(&server.keys.alice).await;
    let mut admin = server.client(&server.keys.admin).await;
    let mut anonymous = server.anonymous().await;
    let mut tally = Tally::default();

    let mut names = Vec::new();
    for _ in 0..6 {
        let result = alice.submit_access_request(valid_submission()).await;
        tally.record("SubmitAccessRequest", &result);
        names.push(result.unwrap().into_inner().access_request.unwrap().name);
    }
    for name in &names[..3] {
        let result = admin
            .approve_access_request(pb::ApproveAccessRequestRequest {
                name: name.clone(),
                ..Default::default()
            })
            .await;
        tally.record("ApproveAccessRequest", &result);
        result.unwrap();
    }
    let result = admin
        .reject_access_request(pb::RejectAccessRequestRequest {
            name: names[3].clone(),
            reason: "not a current partner".into(),
            ..Default::default()
        })
        .await;
    tally.record("RejectAccessRequest", &result);
    result.unwrap();
    // Approving an approved request is refused (FAILED_PRECONDITION).
    let result = admin
        .approve_access_request(pb::ApproveAccessRequestRequest {
            name: names[0].clone(),
            ..Default::default()
        })
        .await;
    tally.record("ApproveAccessRequest", &result);
    assert_eq!(result.unwrap_err().code(), Code::FailedPrecondition);
    let result = alice
        .submit_access_request(pb::SubmitAccessRequestRequest::default())
        .await;
    tally.record("SubmitAccessRequest", &result);
    assert_eq!(result.unwrap_err().code(), Code::InvalidArgument);
    let result = admin
        .get_access_request(pb::GetAccessRequestRequest {
            name: "accessRequests/0190f1b2-7c4d-7000-8000-000000000000".into(),
        })
        .await;
    tally.record("GetAccessRequest", &result);
    assert_eq!(result.unwrap_err().code(), Code::NotFound);
    // Refused by the auth layer, before any service runs.
    let result = anonymous
        .get_access_request(pb::GetAccessRequestRequest {
            name: names[0].clone(),
        })
        .await;
    tally.record("GetAccessRequest", &result);
    assert_eq!(result.unwrap_err().code(), Code::Unauthenticated);
    let result = alice
        .list_access_requests(pb::ListAccessRequestsRequest::default())
        .await;
    tally.record("ListAccessRequests", &result);
    result.unwrap();

    let scraped = scrape(metrics_addr).await;
    assert_eq!(
        scraped.content_type,
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let handled: BTreeMap<(String, String), u64> = scraped
        .select("grpc_server_handled_total", &[("grpc_service", SERVICE)])
        .into_iter()
        .map(|(labels, value)| {
            assert_eq!(labels["grpc_type"], "unary");
            (
                (labels["grpc_method"].clone(), labels["grpc_code"].clone()),
                value as u64,
            )
        })
        .collect();
    assert_eq!(handled, tally.0, "handled per (method, code)");
    let mut started_by_client: BTreeMap<String, u64> = BTreeMap::new();
    for ((method, _code), count) in &tally.0 {
        *started_by_client.entry(method.clone()).or_default() += count;
    }
    for (method, count) in &started_by_client {
        let labels = [
            ("grpc_service", SERVICE),
            ("grpc_method", method.as_str()),
            ("grpc_type", "unary"),
        ];
        assert_eq!(
            scraped.value("grpc_server_started_total", &labels),
            Some(*count as f64),
            "started {method}"
        );
        assert_eq!(
            scraped.value("grpc_server_handling_seconds_count", &labels),
            Some(*count as f64),
            "latency observations of {method}"
        );
        let mut inf = labels.to_vec();
        inf.push(("le", "+Inf"));
        assert_eq!(
            scraped.value("grpc_server_handling_seconds_bucket", &inf),
            Some(*count as f64)
        );
    }
    let started_total: f64 = scraped
        .select("grpc_server_started_total", &[("grpc_service", SERVICE)])
        .iter()
        .map(|(_, value)| value)
        .sum();
    assert_eq!(
        started_total as u64,
        started_by_client.values().sum::<u64>()
    );

    // 6 submitted: 3 approved, 1 rejected, 2 still pending.
    let expected = [
        ("pending", 2.0),
        ("approved", 3.0),
        ("rejected", 1.0),
        ("cancelled", 0.0),
        ("expired", 0.0),
    ];
    let refreshed = scrape_until(metrics_addr, "the requests-by-state gauge", |scraped| {
        expected.iter().all(|(state, count)| {
            scraped.value("sesame_access_requests", &[("state", state)]) == Some(*count)
        }) && scraped
            .value("sesame_oldest_pending_request_age_seconds", &[])
            .is_some_and(|age| age > 0.0)
    })
    .await;
    // The worker is off: every email of the scenario waits in the outbox.
    let pending_emails = server.count("outbox").await as f64;
    assert!(pending_emails > 0.0);
    let outbox = scrape_until(metrics_addr, "the outbox gauges", |scraped| {
        scraped.value("sesame_outbox_emails", &[("state", "pending")]) == Some(pending_emails)
    })
    .await;
    assert_eq!(
        outbox.value("sesame_outbox_emails", &[("state", "dead")]),
        Some(0.0)
    );
    assert!(
        outbox
            .value("sesame_outbox_oldest_due_age_seconds", &[])
            .is_some()
    );
    assert_eq!(
        refreshed.value("sesame_emails_sent_total", &[]),
        Some(0.0),
        "counters without labels exist from the start"
    );
    assert_eq!(
        refreshed.value("sesame_db_pool_max_connections", &[]),
        Some(f64::from(server.config.database_max_connections))
    );
    assert!(
        refreshed
            .value("sesame_db_pool_connections", &[("state", "idle")])
            .is_some()
    );
    server.stop().await;
    // The listener closed with the server.
    assert!(tokio::net::TcpStream::connect(metrics_addr).await.is_err());
}

async fn watchers_are_counted_while_connected(backend: Backend) {
    let (server, metrics_addr) = start(backend).await;
    let mut events = server.events(&server.keys.auditor).await;
    let mut stream = events
        .watch_events(pb::WatchEventsRequest::default())
        .await
        .expect("watch")
        .into_inner();
    let ready = stream.message().await.expect("ready").expect("a message");
    assert!(matches!(
        ready.kind,
        Some(pb::watch_events_response::Kind::Ready(_))
    ));
    let watch = [
        ("grpc_service", "sesame.v1.EventService"),
        ("grpc_method", "WatchEvents"),
        ("grpc_type", "server_stream"),
    ];
    let open = scrape(metrics_addr).await;
    assert_eq!(open.value("sesame_watchers_connected", &[]), Some(1.0));
    assert_eq!(open.value("grpc_server_started_total", &watch), Some(1.0));
    assert!(
        open.select("grpc_server_handled_total", &watch).is_empty(),
        "an open stream is not handled yet"
    );
    drop(stream);
    // The client went away: the stream is counted when it ends.
    let mut cancelled = watch.to_vec();
    cancelled.push(("grpc_code", "CANCELLED"));
    let closed = scrape_until(metrics_addr, "the watcher to be gone", |scraped| {
        scraped.value("sesame_watchers_connected", &[]) == Some(0.0)
            && scraped.value("grpc_server_handled_total", &cancelled) == Some(1.0)
    })
    .await;
    assert_eq!(
        closed.value("grpc_server_handling_seconds_count", &watch),
        Some(1.0)
    );
    server.stop().await;
}

#[tokio::test]
async fn request_ids_are_echoed_or_generated() {
    let server = TestServer::start(Backend::Sqlite).await;
    let mut alice = server.client(&server.keys.alice).await;
    let mut request = tonic::Request::new(valid_submission());
    request
        .metadata_mut()
        .insert("x-request-id", "checkout-42.retry:1".parse().unwrap());
    let response = alice.submit_access_request(request).await.unwrap();
    assert_eq!(
        response.metadata().get("x-request-id").unwrap(),
        "checkout-42.retry:1"
    );

    let response = alice
        .list_access_requests(pb::ListAccessRequestsRequest::default())
        .await
        .unwrap();
    let generated = response
        .metadata()
        .get("x-request-id")
        .expect("an id is generated")
        .to_str()
        .unwrap();
    assert!(uuid::Uuid::parse_str(generated).is_ok(), "{generated}");

    // An id unsafe for logs is replaced; errors carry the id too.
    let mut request = tonic::Request::new(pb::GetAccessRequestRequest {
        name: "accessRequests/0190f1b2-7c4d-7000-8000-000000000000".into(),
    });
    request
        .metadata_mut()
        .insert("x-request-id", "has spaces".parse().unwrap());
    let status = alice.get_access_request(request).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let echoed = status
        .metadata()
        .get("x-request-id")
        .expect("errors carry the id")
        .to_str()
        .unwrap();
    assert!(uuid::Uuid::parse_str(echoed).is_ok(), "{echoed}");
    server.stop().await;
}

#[tokio::test]
async fn the_metrics_listener_answers_only_metrics() {
    let (server, metrics_addr) = start(Backend::Sqlite).await;
    for (request, expected) in [
        ("GET / HTTP/1.1\r\n\r\n", "HTTP/1.1 404"),
        ("POST /metrics HTTP/1.1\r\n\r\n", "HTTP/1.1 405"),
        ("HEAD /metrics HTTP/1.1\r\n\r\n", "HTTP/1.1 200"),
    ] {
        let mut stream = tokio::net::TcpStream::connect(metrics_addr).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut raw = String::new();
        stream.read_to_string(&mut raw).await.unwrap();
        assert!(raw.starts_with(expected), "{request:?} -> {raw}");
    }
    server.stop().await;
}
