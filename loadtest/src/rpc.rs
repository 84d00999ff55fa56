//! The RPC scenarios: `submit`, `get`, `list`, `approve` and `mixed` calls
//! from N concurrent callers over C connections for a bounded time; latency
//! in HDR histograms, throughput, errors by gRPC code, and a progress line
//! every second on stderr.
//!
//! Closed loop by default (each caller calls again when its call ends).
//! With a rate, open loop: every call has a scheduled send time, a caller
//! that falls behind sends at once, and latency runs from the scheduled
//! time, so a slow server cannot hide its queueing (no coordinated
//! omission).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::ValueEnum;
use hdrhistogram::Histogram;
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
    /// ListAccessRequests of the PENDING requests, first page of 20.
    ListPending,
    /// ListAccessRequests of one applicant's requests (load7@example.com,
    /// through the blind index), first page of 20.
    ListApplicant,
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
    /// Callers, each with at most one call in flight.
    pub concurrency: usize,
    pub connections: usize,
    pub duration: Duration,
    /// Open loop: total calls per second, each call scheduled at a fixed
    /// time and its latency measured from that time (no coordinated
    /// omission); none: closed loop, each caller calls again as soon as its
    /// last call ends.
    pub rate: Option<u64>,
    pub server_pid: Option<u32>,
    /// Print a progress line every second on stderr.
    pub progress: bool,
    /// Every call's deadline, sent as `grpc-timeout`; none: no deadline.
    pub deadline: Option<Duration>,
}

/// The result of a run.
#[derive(Clone, Debug, Serialize)]
pub struct RpcReport {
    pub kind: RpcKind,
    pub concurrency: usize,
    pub connections: usize,
    /// The `--rate` asked for (open loop), if any.
    pub target_rate_per_s: Option<u64>,
    /// Every call's deadline, if any, in milliseconds.
    pub deadline_ms: Option<u64>,
    /// `intended_send` in open loop, `send` in closed loop.
    pub latency_measured_from: &'static str,
    pub seconds: f64,
    pub calls: u64,
    pub ok: u64,
    /// Successful calls per second over the whole run.
    pub calls_per_s: f64,
    /// Calls made per second (successful or not): in open loop, compare
    /// with the target rate.
    pub achieved_rate_per_s: f64,
    /// Open loop only: calls scheduled before the end of the run that were
    /// never sent because the server fell too far behind (0 when it kept
    /// up). They are not in the latency histogram.
    pub not_sent: u64,
    /// Failed calls by gRPC code name.
    pub errors: BTreeMap<String, u64>,
    pub latency: LatencySummary,
    pub server_rss_kib_before: Option<u64>,
    pub server_rss_kib_after: Option<u64>,
}

/// Requests created before a `get` or `mixed` run, read by name.
const SEEDED: u64 = 200;

/// The applicant of the request submitted with `tag`: one data subject per
/// tag.
pub fn applicant_email(tag: u64) -> String {
    format!("load{tag}@example.com")
}

fn submission(tag: u64) -> pb::SubmitAccessRequestRequest {
    pb::SubmitAccessRequestRequest {
        applicant: Some(pb::Applicant {
            email: applicant_email(tag),
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

/// `message` as a request carrying the caller's `deadline`, if any.
fn request<T>(message: T, deadline: Option<Duration>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(deadline) = deadline {
        request.set_timeout(deadline);
    }
    request
}

async fn submit(
    client: &mut AccessRequestClient,
    message: pb::SubmitAccessRequestRequest,
    deadline: Option<Duration>,
) -> Result<String, tonic::Status> {
    let created = client
        .submit_access_request(request(message, deadline))
        .await?;
    Ok(created
        .into_inner()
        .access_request
        .map(|request| request.name)
        .unwrap_or_default())
}

/// What one caller measured.
struct CallerOutcome {
    latencies: Histogram<u64>,
    errors: BTreeMap<String, u64>,
    not_sent: u64,
}

/// Shared by the callers of one run.
struct Shared {
    names: Vec<String>,
    tags: AtomicU64,
    calls: AtomicU64,
    failures: AtomicU64,
    /// Every call's deadline (`grpc-timeout`), if any.
    deadline: Option<Duration>,
}

/// One call of `kind`; for `approve`, the instant its approval was sent
/// (its preparatory submit is not the measured call).
async fn call(
    client: &mut AccessRequestClient,
    shared: &Shared,
    kind: RpcKind,
    turn: u64,
) -> (Result<(), tonic::Status>, Option<Instant>) {
    let op = match kind {
        RpcKind::Mixed => match turn % 10 {
            0 => RpcKind::Submit,
            1 | 2 => RpcKind::List,
            _ => RpcKind::Get,
        },
        other => other,
    };
    match op {
        RpcKind::Submit => {
            let tag = shared.tags.fetch_add(1, Ordering::Relaxed);
            (
                submit(client, submission(tag), shared.deadline)
                    .await
                    .map(drop),
                None,
            )
        }
        RpcKind::Get => {
            let name = shared.names[(turn as usize) % shared.names.len()].clone();
            let outcome = client
                .get_access_request(request(
                    pb::GetAccessRequestRequest { name },
                    shared.deadline,
                ))
                .await;
            (outcome.map(drop), None)
        }
        RpcKind::List | RpcKind::ListPending | RpcKind::ListApplicant => {
            let mut list = pb::ListAccessRequestsRequest {
                page_size: 20,
                ..Default::default()
            };
            if op == RpcKind::ListPending {
                list.state = pb::AccessRequestState::Pending.into();
            } else if op == RpcKind::ListApplicant {
                list.applicant_email = applicant_email(7);
            }
            let outcome = client
                .list_access_requests(request(list, shared.deadline))
                .await;
            (outcome.map(drop), None)
        }
        RpcKind::Approve => {
            let tag = shared.tags.fetch_add(1, Ordering::Relaxed);
            let name = match submit(client, submission(tag), shared.deadline).await {
                Ok(name) => name,
                Err(status) => return (Err(status), None),
            };
            let approval_sent = Instant::now();
            let outcome = client
                .approve_access_request(request(
                    pb::ApproveAccessRequestRequest {
                        name,
                        ..Default::default()
                    },
                    shared.deadline,
                ))
                .await;
            (outcome.map(drop), Some(approval_sent))
        }
        RpcKind::Mixed => unreachable!("mixed picks a concrete call"),
    }
}

/// Runs the scenario and reports.
pub async fn run_rpc(args: &RpcArgs) -> anyhow::Result<RpcReport> {
    if args.rate == Some(0) {
        bail!("--rate must be at least 1");
    }
    let bearer = bearer(&args.api_key)?;
    let channels = channels(&args.target, args.connections.max(1)).await?;
    let clients: Vec<AccessRequestClient> = channels
        .into_iter()
        .map(|channel| AccessRequestServiceClient::with_interceptor(channel, bearer.clone()))
        .collect();
    let first_tag = u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_micros(),
    )
    .unwrap_or(0);
    let mut shared = Shared {
        names: Vec::new(),
        tags: AtomicU64::new(first_tag),
        calls: AtomicU64::new(0),
        failures: AtomicU64::new(0),
        deadline: args.deadline,
    };
    if matches!(args.kind, RpcKind::Get | RpcKind::Mixed) {
        let mut client = clients[0].clone();
        for _ in 0..SEEDED {
            let tag = shared.tags.fetch_add(1, Ordering::Relaxed);
            let name = submit(&mut client, submission(tag), None)
                .await
                .context("seeding requests")?;
            shared.names.push(name);
        }
    }
    let shared = Arc::new(shared);
    let rss_before = args.server_pid.map(rss_kib).transpose()?;
    let started = Instant::now();
    let deadline = started + args.duration;
    // In open loop, calls scheduled before the deadline may still be sent
    // this long after it; later than that they are counted as not sent.
    let grace = (args.duration / 2).clamp(Duration::from_secs(2), Duration::from_secs(30));
    let hard_stop = deadline + grace;
    let progress = args.progress.then(|| {
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(Duration::from_secs(1));
            ticker.tick().await;
            let mut last = 0;
            loop {
                ticker.tick().await;
                let now = shared.calls.load(Ordering::Relaxed);
                eprintln!(
                    "t={:>3}s calls={now} ({}/s) errors={}",
                    started.elapsed().as_secs(),
                    now - last,
                    shared.failures.load(Ordering::Relaxed)
                );
                last = now;
            }
        })
    });
    let callers = args.concurrency.max(1);
    // Open loop: caller i sends at started + (i + k * callers) / rate.
    let period = args
        .rate
        .map(|rate| Duration::from_secs_f64(callers as f64 / rate as f64));
    let mut tasks = Vec::with_capacity(callers);
    for caller in 0..callers {
        let mut client = clients[caller % clients.len()].clone();
        let shared = shared.clone();
        let kind = args.kind;
        tasks.push(tokio::spawn(async move {
            let mut outcome = CallerOutcome {
                latencies: histogram(),
                errors: BTreeMap::new(),
                not_sent: 0,
            };
            let mut next_send = period.map(|gap| started + gap * caller as u32 / callers as u32);
            let mut turn: u64 = caller as u64;
            loop {
                let measured_from = match (next_send, period) {
                    (Some(scheduled), Some(gap)) => {
                        if scheduled >= deadline {
                            break;
                        }
                        if Instant::now() >= hard_stop {
                            let left = (deadline - scheduled).as_secs_f64() / gap.as_secs_f64();
                            outcome.not_sent += left.ceil() as u64;
                            break;
                        }
                        next_send = Some(scheduled + gap);
                        tokio::time::sleep_until(scheduled.into()).await;
                        scheduled
                    }
                    _ => {
                        let now = Instant::now();
                        if now >= deadline {
                            break;
                        }
                        now
                    }
                };
                turn += 1;
                let (result, approval_sent) = call(&mut client, &shared, kind, turn).await;
                // Closed loop: an approval is timed alone. Open loop: from
                // its scheduled time, preparatory submit included.
                let timed_from = match (period, approval_sent) {
                    (None, Some(sent)) => sent,
                    _ => measured_from,
                };
                let micros = u64::try_from(timed_from.elapsed().as_micros()).unwrap_or(u64::MAX);
                outcome.latencies.saturating_record(micros.max(1));
                shared.calls.fetch_add(1, Ordering::Relaxed);
                if let Err(status) = result {
                    shared.failures.fetch_add(1, Ordering::Relaxed);
                    *outcome
                        .errors
                        .entry(format!("{:?}", status.code()))
                        .or_default() += 1;
                }
            }
            outcome
        }));
    }
    let mut latencies = histogram();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut not_sent = 0;
    for task in tasks {
        let outcome = task.await.context("a caller panicked")?;
        latencies
            .add(&outcome.latencies)
            .context("merging histograms")?;
        for (code, count) in outcome.errors {
            *errors.entry(code).or_default() += count;
        }
        not_sent += outcome.not_sent;
    }
    let seconds = started.elapsed().as_secs_f64();
    if let Some(progress) = progress {
        progress.abort();
    }
    let rss_after = args.server_pid.map(rss_kib).transpose()?;
    let total = shared.calls.load(Ordering::Relaxed);
    let failed = shared.failures.load(Ordering::Relaxed);
    Ok(RpcReport {
        kind: args.kind,
        concurrency: callers,
        connections: clients.len(),
        target_rate_per_s: args.rate,
        deadline_ms: args.deadline.map(|deadline| deadline.as_millis() as u64),
        latency_measured_from: if args.rate.is_some() {
            "intended_send"
        } else {
            "send"
        },
        seconds,
        calls: total,
        ok: total - failed,
        calls_per_s: (total - failed) as f64 / seconds,
        achieved_rate_per_s: total as f64 / seconds,
        not_sent,
        errors,
        latency: summarize(&latencies),
        server_rss_kib_before: rss_before,
        server_rss_kib_after: rss_after,
    })
}

impl std::fmt::Display for RpcReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mode = match self.target_rate_per_s {
            Some(rate) => format!("open loop at {rate}/s"),
            None => "closed loop".to_owned(),
        };
        writeln!(
            f,
            "{:?}: {} callers over {} connections, {mode}, {:.1} s",
            self.kind, self.concurrency, self.connections, self.seconds
        )?;
        writeln!(
            f,
            "calls {} ok {} = {:.0} ok/s (achieved {:.0} calls/s, not sent {})",
            self.calls, self.ok, self.calls_per_s, self.achieved_rate_per_s, self.not_sent
        )?;
        writeln!(f, "errors by code: {:?}", self.errors)?;
        write!(
            f,
            "latency (from {}): {}",
            self.latency_measured_from, self.latency
        )?;
        if let (Some(before), Some(after)) = (self.server_rss_kib_before, self.server_rss_kib_after)
        {
            write!(f, "\nserver rss: {before} KiB before, {after} KiB after")?;
        }
        Ok(())
    }
}

/// Submits `count` requests (tags `first_tag..first_tag+count`, one
/// applicant and one idempotency key `seed-{tag}` each), `concurrency` at a
/// time over `connections`, reporting progress on stderr every five
/// seconds; returns their names when `keep_names` (in no particular order).
pub async fn seed(
    target: &str,
    key: &str,
    first_tag: u64,
    count: u64,
    concurrency: usize,
    connections: usize,
    keep_names: bool,
) -> anyhow::Result<Vec<String>> {
    let channels = channels(target, connections.clamp(1, concurrency.max(1))).await?;
    let next = Arc::new(AtomicU64::new(first_tag));
    let end = first_tag + count;
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let progress = tokio::spawn({
        let done = done.clone();
        async move {
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                let done = done.load(Ordering::Relaxed);
                let rate = done as f64 / started.elapsed().as_secs_f64();
                eprintln!("seed: {done}/{count} submitted ({rate:.0}/s)");
            }
        }
    });
    let mut callers = tokio::task::JoinSet::new();
    for caller in 0..concurrency.max(1) {
        let channel = channels[caller % channels.len()].clone();
        let mut client = AccessRequestServiceClient::with_interceptor(channel, bearer(key)?);
        let (next, done) = (next.clone(), done.clone());
        callers.spawn(async move {
            let mut names = Vec::new();
            loop {
                let tag = next.fetch_add(1, Ordering::Relaxed);
                if tag >= end {
                    return anyhow::Ok(names);
                }
                // With an idempotency key, as a careful backend sends it:
                // the table of keys grows with the requests.
                let message = pb::SubmitAccessRequestRequest {
                    request_id: format!("seed-{tag}"),
                    ..submission(tag)
                };
                let name = submit(&mut client, message, None)
                    .await
                    .with_context(|| format!("submitting seed request {tag}"))?;
                done.fetch_add(1, Ordering::Relaxed);
                if keep_names {
                    names.push(name);
                }
            }
        });
    }
    let mut names = Vec::new();
    let outcome = async {
        while let Some(caller) = callers.join_next().await {
            names.extend(caller.context("a seeding task panicked")??);
        }
        anyhow::Ok(())
    }
    .await;
    progress.abort();
    outcome?;
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "seed: {count} submitted in {seconds:.1} s ({:.0}/s)",
        count as f64 / seconds
    );
    Ok(names)
}
