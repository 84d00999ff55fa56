//! The RPC scenarios: `submit`, `get`, `list`, `approve` and `mixed` calls
//! from N concurrent callers over C connections for a bounded time,
//! optionally paced to a total rate; latency in HDR histograms, throughput,
//! errors by gRPC code, and a progress line every second on stderr.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::ValueEnum;
use serde::Serialize;
use sesame_client::AccessRequestClient;
use sesame_proto::v1 as pb;
use sesame_proto::v1::access_request_service_client::AccessRequestServiceClient;

use crate::connect::{bearer, channels, rss_kib};
use crate::stats::{LatencySummary, histogram, summarize};

/// Which calls a scenario makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum RpcKind {
    /// SubmitAccessRequest, each a new request (three inserts and a commit).
    Submit,
    /// GetAccessRequest by name, over requests created beforehand.
    Get,
    /// ListAccessRequests, first page of 20.
    List,
    /// ApproveAccessRequest (each on a request submitted just before; only
    /// the approval is timed).
    Approve,
    /// 70 % get, 20 % list, 10 % submit.
    Mixed,
}

/// What to run.
#[derive(Clone, Debug)]
pub struct RpcArgs {
    pub target: String,
    pub api_key: String,
    pub kind: RpcKind,
    pub concurrency: usize,
    pub connections: usize,
    pub duration: Duration,
    /// Total calls per second, spread over the callers; none: as fast as
    /// they go.
    pub rate: Option<u64>,
    pub server_pid: Option<u32>,
    /// Print a progress line every second on stderr.
    pub progress: bool,
}

/// The result of a run.
#[derive(Clone, Debug, Serialize)]
pub struct RpcReport {
    pub kind: RpcKind,
    pub concurrency: usize,
    pub connections: usize,
    pub seconds: f64,
    pub calls: u64,
    pub ok: u64,
    pub calls_per_s: f64,
    /// Failed calls by gRPC code name.
    pub errors: BTreeMap<String, u64>,
    pub latency: LatencySummary,
    pub server_rss_kib_before: Option<u64>,
    pub server_rss_kib_after: Option<u64>,
}

/// Requests created before a `get` or `mixed` run, read by name.
const SEEDED: u64 = 200;

fn submission(tag: u64) -> pb::SubmitAccessRequestRequest {
    pb::SubmitAccessRequestRequest {
        applicant: Some(pb::Applicant {
            email: format!("load{tag}@example.com"),
            full_name: "Load Test".into(),
            organization: "Loadtest".into(),
            phone: String::new(),
        }),
        user_type: pb::UserType::Customer.into(),
        locale: "en".into(),
        resource: "loadtest".into(),
        justification: "rpc load test".into(),
        consent: Some(pb::Consent {
            version: "loadtest".into(),
            purposes: vec!["access_management".into()],
            grant_time: None,
        }),
        request_id: String::new(),
    }
}

async fn submit(client: &mut AccessRequestClient, tag: u64) -> Result<String, tonic::Status> {
    let created = client.submit_access_request(submission(tag)).await?;
    Ok(created
        .into_inner()
        .access_request
        .map(|request| request.name)
        .unwrap_or_default())
}

/// Runs the scenario and reports.
pub async fn run_rpc(args: &RpcArgs) -> anyhow::Result<RpcReport> {
    let bearer = bearer(&args.api_key)?;
    let channels = channels(&args.target, args.connections.max(1)).await?;
    let clients: Vec<AccessRequestClient> = channels
        .into_iter()
        .map(|channel| AccessRequestServiceClient::with_interceptor(channel, bearer.clone()))
        .collect();
    let tags = Arc::new(AtomicU64::new(
        u64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_micros(),
        )
        .unwrap_or(0),
    ));
    let mut names = Vec::new();
    if matches!(args.kind, RpcKind::Get | RpcKind::Mixed) {
        let mut client = clients[0].clone();
        for _ in 0..SEEDED {
            let tag = tags.fetch_add(1, Ordering::Relaxed);
            names.push(submit(&mut client, tag).await.context("seeding requests")?);
        }
    }
    let names = Arc::new(names);
    let rss_before = args.server_pid.map(rss_kib).transpose()?;
    let calls = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + args.duration;
    let progress = args.progress.then(|| {
        let (calls, failures) = (calls.clone(), failures.clone());
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(Duration::from_secs(1));
            ticker.tick().await;
            let mut last = 0;
            loop {
                ticker.tick().await;
                let now = calls.load(Ordering::Relaxed);
                eprintln!(
                    "t={:>3}s calls={now} ({}/s) errors={}",
                    started.elapsed().as_secs(),
                    now - last,
                    failures.load(Ordering::Relaxed)
                );
                last = now;
            }
        })
    });
    let callers = args.concurrency.max(1);
    // Each caller paces itself to its share of the total rate.
    let period = args
        .rate
        .filter(|rate| *rate > 0)
        .map(|rate| Duration::from_secs_f64(callers as f64 / rate as f64));
    let mut tasks = Vec::with_capacity(callers);
    for caller in 0..callers {
        let mut client = clients[caller % clients.len()].clone();
        let (names, tags, calls, failures) =
            (names.clone(), tags.clone(), calls.clone(), failures.clone());
        let kind = args.kind;
        tasks.push(tokio::spawn(async move {
            let mut latencies = histogram();
            let mut errors: BTreeMap<String, u64> = BTreeMap::new();
            let mut ticker = period.map(tokio::time::interval);
            let mut turn: u64 = caller as u64;
            while Instant::now() < deadline {
                if let Some(ticker) = &mut ticker {
                    ticker.tick().await;
                }
                turn += 1;
                let op = match kind {
                    RpcKind::Mixed => match turn % 10 {
                        0 => RpcKind::Submit,
                        1 | 2 => RpcKind::List,
                        _ => RpcKind::Get,
                    },
                    other => other,
                };
                let mut timed = Instant::now();
                let outcome = match op {
                    RpcKind::Submit => submit(&mut client, tags.fetch_add(1, Ordering::Relaxed))
                        .await
                        .map(drop),
                    RpcKind::Get => {
                        let name = names[(turn as usize) % names.len()].clone();
                        client
                            .get_access_request(pb::GetAccessRequestRequest { name })
                            .await
                            .map(drop)
                    }
                    RpcKind::List => client
                        .list_access_requests(pb::ListAccessRequestsRequest {
                            page_size: 20,
                            ..Default::default()
                        })
                        .await
                        .map(drop),
                    RpcKind::Approve => {
                        match submit(&mut client, tags.fetch_add(1, Ordering::Relaxed)).await {
                            Ok(name) => {
                                timed = Instant::now();
                                client
                                    .approve_access_request(pb::ApproveAccessRequestRequest {
                                        name,
                                        ..Default::default()
                                    })
                                    .await
                                    .map(drop)
                            }
                            Err(status) => Err(status),
                        }
                    }
                    RpcKind::Mixed => unreachable!("mixed picks a concrete call"),
                };
                let micros = u64::try_from(timed.elapsed().as_micros()).unwrap_or(u64::MAX);
                latencies.saturating_record(micros.max(1));
                calls.fetch_add(1, Ordering::Relaxed);
                if let Err(status) = outcome {
                    failures.fetch_add(1, Ordering::Relaxed);
                    *errors.entry(format!("{:?}", status.code())).or_default() += 1;
                }
            }
            (latencies, errors)
        }));
    }
    let mut latencies = histogram();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    for task in tasks {
        let (caller_latencies, caller_errors) = task.await.context("a caller panicked")?;
        latencies
            .add(&caller_latencies)
            .context("merging histograms")?;
        for (code, count) in caller_errors {
            *errors.entry(code).or_default() += count;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    if let Some(progress) = progress {
        progress.abort();
    }
    let rss_after = args.server_pid.map(rss_kib).transpose()?;
    let total = calls.load(Ordering::Relaxed);
    let failed = failures.load(Ordering::Relaxed);
    Ok(RpcReport {
        kind: args.kind,
        concurrency: callers,
        connections: clients.len(),
        seconds,
        calls: total,
        ok: total - failed,
        calls_per_s: (total - failed) as f64 / seconds,
        errors,
        latency: summarize(&latencies),
        server_rss_kib_before: rss_before,
        server_rss_kib_after: rss_after,
    })
}

/// Submits `count` requests and returns their names.
pub async fn seed(target: &str, key: &str, count: u64) -> anyhow::Result<Vec<String>> {
    let channel = channels(target, 1).await?.remove(0);
    let mut client = AccessRequestServiceClient::with_interceptor(channel, bearer(key)?);
    let mut names = Vec::new();
    for tag in 0..count {
        names.push(
            submit(&mut client, tag)
                .await
                .context("submitting a seed request")?,
        );
    }
    Ok(names)
}
