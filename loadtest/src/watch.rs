//! The watch scenarios.
//!
//! `watch`: N watchers on C connections while submits arrive at a fixed
//! rate (open loop: each submit has a scheduled send time). Measures
//! commit-to-receipt latency between two bounds: above, from the event's
//! `occur_time` (taken when the server starts the change, so it includes
//! any wait for the write lock) to its arrival, for every event; below,
//! from the arrival of the submit's reply (sent after the commit) to the
//! event's arrival, for a sample. Also delivered events per second, and checks
//! that every watcher received every event of the log window once and in
//! order (by `sequence`, which is gap-free): losses, duplicates and
//! reorderings are reported, never hidden. A baseline is measured in the
//! same run: the round trip of a unary health check on the same server.
//!
//! `idle`: N watchers that receive nothing; measures the server's resident
//! memory before and after, per watcher.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use serde::Serialize;
use sesame_proto::v1 as pb;
use sesame_proto::v1::access_request_service_client::AccessRequestServiceClient;
use sesame_proto::v1::event_service_client::EventServiceClient;
use sesame_proto::v1::watch_events_response::Kind;
use tokio::sync::{Semaphore, mpsc};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::connect::{bearer, channels, cpu_seconds, rss_kib};
use crate::stats::{LatencySummary, histogram, summarize};
use sesame_client::EventClient as Events;

/// What to run.
#[derive(Clone, Debug)]
pub struct WatchArgs {
    pub target: String,
    pub api_key: String,
    pub watchers: usize,
    pub connections: usize,
    /// Submits per second.
    pub rate: u64,
    pub duration: Duration,
    /// The server's pid, to sample its memory.
    pub server_pid: Option<u32>,
    /// Health round trips timed first, as the floor of one exchange (0:
    /// none, when only the server's own work should be counted).
    pub baseline_calls: u32,
}

/// The result of the `watch` scenario.
#[derive(Clone, Debug, Serialize)]
pub struct WatchReport {
    pub watchers: usize,
    pub connections: usize,
    pub target_rate_per_s: u64,
    pub duration_s: f64,
    /// Successful submits.
    pub submitted: u64,
    /// Submits per second actually made (compare with the target rate).
    pub achieved_submit_rate_per_s: f64,
    pub submit_errors: BTreeMap<String, u64>,
    /// Submit latency from each submit's scheduled send time.
    pub submit_latency: LatencySummary,
    /// Events received, all watchers together (duplicates included).
    pub delivered: u64,
    /// Successful submits x watchers: the `request submitted` events due.
    pub expected_deliveries: u64,
    pub delivered_per_s: f64,
    /// Events in the log window the watchers saw (first to last sequence
    /// any watcher received), each due to every watcher.
    pub events_in_window: u64,
    /// Events of that window some watcher did not receive (all watchers
    /// together).
    pub lost: u64,
    /// Events a watcher received again, or after a later one.
    pub out_of_order_or_duplicate: u64,
    /// Watchers that received every event of the window, once and in order.
    pub complete_watchers: usize,
    /// Watch streams that ended with an error, by gRPC code.
    pub watch_errors: BTreeMap<String, u64>,
    /// Submits scheduled within the duration but never sent, because the
    /// server fell too far behind (the loop stops sending a grace period
    /// after the duration).
    pub submits_not_sent: u64,
    /// Submits still unanswered when the run gave up waiting for them.
    pub submits_unfinished: u64,
    /// Upper bound of commit-to-receipt, for every delivered event: from
    /// the event's `occur_time` to its arrival. The server takes
    /// `occur_time` when it starts handling the change, before it waits
    /// for the write lock, so under write contention this includes that
    /// wait.
    pub latency: LatencySummary,
    /// Lower bound of commit-to-receipt, for every eighth event (by
    /// sequence) at every watcher: from the arrival of the submit's reply
    /// (sent after the commit) to the event's arrival; 0 when the event
    /// came first.
    pub reply_to_receipt: LatencySummary,
    pub baseline_health_rtt: LatencySummary,
    pub p50_vs_baseline: f64,
    pub p99_vs_baseline: f64,
    pub server_rss_kib_before: Option<u64>,
    pub server_rss_kib_after: Option<u64>,
    /// Server CPU time over the load, as a share of one core.
    pub server_cpu_cores: Option<f64>,
    /// This load generator's CPU time over the load, as a share of one core
    /// (it runs on the same machine).
    pub loadtest_cpu_cores: f64,
}

impl std::fmt::Display for WatchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "watch: {} watchers over {} connections, submits at {}/s (achieved {:.0}/s) for {:.1} s",
            self.watchers,
            self.connections,
            self.target_rate_per_s,
            self.achieved_submit_rate_per_s,
            self.duration_s
        )?;
        writeln!(
            f,
            "submitted {} (errors {:?}); submit latency from schedule: {}",
            self.submitted, self.submit_errors, self.submit_latency
        )?;
        writeln!(
            f,
            "delivered {} of {} ({:.0}/s); window {} events; lost {}; out of order or duplicate {}; \
             complete watchers {}/{}; watch errors {:?}",
            self.delivered,
            self.expected_deliveries,
            self.delivered_per_s,
            self.events_in_window,
            self.lost,
            self.out_of_order_or_duplicate,
            self.complete_watchers,
            self.watchers,
            self.watch_errors
        )?;
        writeln!(
            f,
            "submits not sent {}, unfinished {}",
            self.submits_not_sent, self.submits_unfinished
        )?;
        writeln!(
            f,
            "commit-to-receipt, upper bound (occur_time): {}",
            self.latency
        )?;
        writeln!(
            f,
            "commit-to-receipt, lower bound (submit reply, sampled): {}",
            self.reply_to_receipt
        )?;
        writeln!(
            f,
            "baseline health rtt: {} (p50 x{:.1}, p99 x{:.1})",
            self.baseline_health_rtt, self.p50_vs_baseline, self.p99_vs_baseline
        )?;
        write!(
            f,
            "server rss {:?} -> {:?} KiB; cpu: server {:?} cores, loadtest {:.2} cores",
            self.server_rss_kib_before,
            self.server_rss_kib_after,
            self.server_cpu_cores,
            self.loadtest_cpu_cores
        )
    }
}

/// The result of the `idle` scenario.
#[derive(Clone, Debug, Serialize)]
pub struct IdleReport {
    pub watchers: usize,
    pub connections: usize,
    pub server_rss_kib_before: u64,
    pub server_rss_kib_after: u64,
    pub kib_per_watcher: f64,
}

fn progress(line: &str) {
    eprint!("\r{line:<100}");
}

/// Every how many events (by sequence) each watcher keeps the receipt time
/// for the reply-to-receipt bound.
const SAMPLE_EVERY: i64 = 8;

/// What one watcher received.
struct WatcherOutcome {
    latencies: Histogram<u64>,
    /// Sequence of the first and of the latest event received.
    first_sequence: Option<i64>,
    last_sequence: i64,
    /// Events received in order, each after the one before it.
    in_order: u64,
    /// Events whose sequence was not above the last one received.
    out_of_order_or_duplicate: u64,
    /// `request submitted` events received.
    submitted_events: u64,
    /// Receipt time of every [`SAMPLE_EVERY`]th event (by sequence).
    sampled: Vec<(i64, SystemTime)>,
    /// The request of every event received (the first watcher only), to
    /// match sampled events with the submit replies.
    requests: Vec<(i64, String)>,
    /// The gRPC code the stream ended with, if it failed.
    error: Option<String>,
}

/// Opens `count` watchers spread over `connections`, and returns once every
/// one has received `ready`. Each task reports what it received when `stop`
/// fires or its stream ends.
async fn open_watchers(
    args_target: &str,
    key: &str,
    count: usize,
    connections: usize,
    delivered: Arc<AtomicU64>,
    stop: tokio_util_lite::Stop,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<WatcherOutcome>>> {
    let channels = channels(args_target, connections).await?;
    let bearer = bearer(key)?;
    let (ready_tx, mut ready_rx) = mpsc::channel::<Result<(), String>>(count.max(1));
    let mut tasks = Vec::with_capacity(count);
    for index in 0..count {
        let mut client: Events = EventServiceClient::with_interceptor(
            channels[index % channels.len()].clone(),
            bearer.clone(),
        );
        let ready_tx = ready_tx.clone();
        let delivered = delivered.clone();
        let mut stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut outcome = WatcherOutcome {
                latencies: histogram(),
                first_sequence: None,
                last_sequence: 0,
                in_order: 0,
                out_of_order_or_duplicate: 0,
                submitted_events: 0,
                sampled: Vec::new(),
                requests: Vec::new(),
                error: None,
            };
            let mut stream = match client.watch_events(pb::WatchEventsRequest::default()).await {
                Ok(response) => response.into_inner(),
                Err(status) => {
                    let _ = ready_tx
                        .send(Err(format!("WatchEvents failed: {status}")))
                        .await;
                    outcome.error = Some(format!("{:?}", status.code()));
                    return outcome;
                }
            };
            loop {
                let message = tokio::select! {
                    () = stop.wait() => return outcome,
                    message = stream.message() => message,
                };
                let message = match message {
                    Ok(Some(message)) => message,
                    Ok(None) => {
                        outcome.error = Some("ended by the server".to_owned());
                        return outcome;
                    }
                    Err(status) => {
                        outcome.error = Some(format!("{:?}", status.code()));
                        return outcome;
                    }
                };
                match message.kind {
                    Some(Kind::Ready(_)) => {
                        let _ = ready_tx.send(Ok(())).await;
                    }
                    Some(Kind::Event(event)) => {
                        let received = SystemTime::now();
                        if event.sequence % SAMPLE_EVERY == 0 {
                            outcome.sampled.push((event.sequence, received));
                        }
                        if index == 0 {
                            outcome
                                .requests
                                .push((event.sequence, event.access_request.clone()));
                        }
                        if let Some(occurred) = event.occur_time {
                            let occurred = SystemTime::UNIX_EPOCH
                                + Duration::new(
                                    u64::try_from(occurred.seconds).unwrap_or(0),
                                    u32::try_from(occurred.nanos).unwrap_or(0),
                                );
                            let latency = received.duration_since(occurred).unwrap_or_default();
                            outcome.latencies.saturating_record(
                                u64::try_from(latency.as_micros()).unwrap_or(u64::MAX),
                            );
                        }
                        if outcome.first_sequence.is_none() {
                            outcome.first_sequence = Some(event.sequence);
                            outcome.last_sequence = event.sequence;
                            outcome.in_order += 1;
                        } else if event.sequence > outcome.last_sequence {
                            outcome.last_sequence = event.sequence;
                            outcome.in_order += 1;
                        } else {
                            outcome.out_of_order_or_duplicate += 1;
                        }
                        if event.r#type() == pb::EventType::RequestSubmitted {
                            outcome.submitted_events += 1;
                        }
                        delivered.fetch_add(1, Ordering::Relaxed);
                    }
                    Some(Kind::Heartbeat(_)) | None => {}
                }
            }
        }));
    }
    drop(ready_tx);
    let started = Instant::now();
    let mut ready = 0;
    while ready < count {
        match tokio::time::timeout(Duration::from_secs(120), ready_rx.recv()).await {
            Ok(Some(Ok(()))) => ready += 1,
            Ok(Some(Err(error))) => bail!("a watcher failed before it was ready: {error}"),
            Ok(None) => bail!("a watcher failed before it was ready ({ready} of {count} ready)"),
            Err(_) => bail!("only {ready} of {count} watchers were ready after 120 s"),
        }
        if ready % 500 == 0 || ready == count {
            progress(&format!(
                "opening watchers: {ready}/{count} ready ({:.1}s)",
                started.elapsed().as_secs_f64()
            ));
        }
    }
    eprintln!();
    Ok(tasks)
}

/// Minimal one-shot stop signal shared by many tasks.
mod tokio_util_lite {
    use tokio::sync::watch;

    /// Clone to share; [`Stop::fire`] wakes every holder.
    #[derive(Clone, Debug)]
    pub struct Stop(watch::Receiver<bool>, std::sync::Arc<watch::Sender<bool>>);

    impl Stop {
        pub fn new() -> Self {
            let (sender, receiver) = watch::channel(false);
            Stop(receiver, std::sync::Arc::new(sender))
        }

        pub fn fire(&self) {
            self.1.send_replace(true);
        }

        pub async fn wait(&mut self) {
            let _ = self.0.wait_for(|stopped| *stopped).await;
        }
    }
}

async fn baseline(target: &str, calls: u32) -> anyhow::Result<Histogram<u64>> {
    let channel = channels(target, 1).await?.remove(0);
    let mut health = HealthClient::new(channel);
    let mut latencies = histogram();
    for _ in 0..calls {
        let started = Instant::now();
        health
            .check(HealthCheckRequest::default())
            .await
            .context("health check failed")?;
        latencies.saturating_record(started.elapsed().as_micros() as u64);
    }
    Ok(latencies)
}

fn submission(index: u64) -> pb::SubmitAccessRequestRequest {
    pb::SubmitAccessRequestRequest {
        applicant: Some(pb::Applicant {
            email: format!("load{index}@example.com"),
            full_name: "Load Test".into(),
            organization: "Loadtest".into(),
            phone: String::new(),
        }),
        user_type: pb::UserType::Employee.into(),
        locale: "en".into(),
        resource: "loadtest".into(),
        justification: "load test".into(),
        consent: Some(pb::Consent {
            version: "loadtest".into(),
            purposes: vec!["access_management".into()],
            grant_time: None,
        }),
        request_id: String::new(),
    }
}

/// What the submits of a watch run met.
struct SubmitOutcomes {
    /// Failed submits by gRPC code.
    errors: BTreeMap<String, u64>,
    /// Latency from each submit's scheduled send time.
    latencies: Histogram<u64>,
}

/// Runs the `watch` scenario.
pub async fn run_watch(args: &WatchArgs) -> anyhow::Result<WatchReport> {
    if args.rate == 0 {
        bail!("--rate must be at least 1");
    }
    let baseline = baseline(&args.target, args.baseline_calls).await?;
    eprintln!("baseline health round trip: {}", summarize(&baseline));

    let delivered = Arc::new(AtomicU64::new(0));
    let stop = tokio_util_lite::Stop::new();
    let watchers = open_watchers(
        &args.target,
        &args.api_key,
        args.watchers,
        args.connections,
        delivered.clone(),
        stop.clone(),
    )
    .await?;
    let rss_before = args.server_pid.map(rss_kib).transpose()?;
    let server_cpu_before = args.server_pid.map(cpu_seconds).transpose()?;
    let own_cpu_before = cpu_seconds(std::process::id())?;

    let submitters = channels(&args.target, 4).await?;
    let bearer = bearer(&args.api_key)?;
    // Submits in flight at most; past that the schedule slips, and the
    // slip shows in the submit latency (measured from the schedule).
    const IN_FLIGHT: u32 = 256;
    let in_flight = Arc::new(Semaphore::new(IN_FLIGHT as usize));
    let submitted = Arc::new(AtomicU64::new(0));
    let outcomes = Arc::new(std::sync::Mutex::new(SubmitOutcomes {
        errors: BTreeMap::new(),
        latencies: histogram(),
    }));
    let replies: Arc<std::sync::Mutex<HashMap<String, SystemTime>>> = Arc::default();
    let interval = Duration::from_secs_f64(1.0 / args.rate as f64);
    let started = Instant::now();
    let deadline = started + args.duration;
    // Submits scheduled before the deadline may still be sent this long
    // after it; later than that they are counted as not sent.
    let hard_stop =
        deadline + (args.duration / 2).clamp(Duration::from_secs(2), Duration::from_secs(30));
    let mut sent = 0u64;
    let mut submits_not_sent = 0u64;
    let mut last_progress = Instant::now();
    loop {
        let scheduled = started + interval.mul_f64(sent as f64);
        if scheduled >= deadline {
            break;
        }
        tokio::time::sleep_until(scheduled.into()).await;
        let acquired = if Instant::now() >= hard_stop {
            None
        } else {
            tokio::time::timeout_at(hard_stop.into(), in_flight.clone().acquire_owned())
                .await
                .ok()
        };
        let Some(Ok(permit)) = acquired else {
            let left = (deadline - scheduled).as_secs_f64() / interval.as_secs_f64();
            submits_not_sent = left.ceil() as u64;
            break;
        };
        let mut client = AccessRequestServiceClient::with_interceptor(
            submitters[(sent % 4) as usize].clone(),
            bearer.clone(),
        );
        let succeeded = submitted.clone();
        let outcomes = outcomes.clone();
        let replies = replies.clone();
        let index = sent;
        tokio::spawn(async move {
            let result = client.submit_access_request(submission(index)).await;
            if let Ok(reply) = &result
                && let Some(request) = &reply.get_ref().access_request
            {
                let mut replies = replies.lock().expect("no poisoned lock");
                replies.insert(request.name.clone(), SystemTime::now());
            }
            let micros = u64::try_from(scheduled.elapsed().as_micros()).unwrap_or(u64::MAX);
            let mut outcomes = outcomes.lock().expect("no poisoned lock");
            outcomes.latencies.saturating_record(micros.max(1));
            match result {
                Ok(_) => {
                    succeeded.fetch_add(1, Ordering::Relaxed);
                }
                Err(status) => {
                    *outcomes
                        .errors
                        .entry(format!("{:?}", status.code()))
                        .or_default() += 1;
                }
            }
            drop(permit);
        });
        sent += 1;
        if last_progress.elapsed() >= Duration::from_secs(1) {
            last_progress = Instant::now();
            progress(&format!(
                "watch: {:.0}s/{:.0}s submitted={} delivered={}",
                started.elapsed().as_secs_f64(),
                args.duration.as_secs_f64(),
                submitted.load(Ordering::Relaxed),
                delivered.load(Ordering::Relaxed)
            ));
        }
    }
    // Let the in-flight submits finish.
    let submits_unfinished = match tokio::time::timeout(
        Duration::from_secs(60),
        in_flight.acquire_many(IN_FLIGHT),
    )
    .await
    {
        Ok(_all) => 0,
        Err(_) => u64::from(IN_FLIGHT) - in_flight.available_permits() as u64,
    };
    let submit_seconds = started.elapsed().as_secs_f64();
    let submitted = submitted.load(Ordering::Relaxed);
    let expected = submitted * args.watchers as u64;
    // Wait (bounded) for the deliveries still on their way.
    let drain_deadline = Instant::now() + Duration::from_secs(30);
    while delivered.load(Ordering::Relaxed) < expected && Instant::now() < drain_deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed();
    eprintln!();
    let rss_after = args.server_pid.map(rss_kib).transpose()?;
    let server_cpu_cores = match (args.server_pid, server_cpu_before) {
        (Some(pid), Some(before)) => Some((cpu_seconds(pid)? - before) / elapsed.as_secs_f64()),
        _ => None,
    };
    let loadtest_cpu_cores =
        (cpu_seconds(std::process::id())? - own_cpu_before) / elapsed.as_secs_f64();
    stop.fire();
    let mut received = Vec::with_capacity(watchers.len());
    for watcher in watchers {
        received.push(watcher.await.context("watcher task panicked")?);
    }
    let mut latencies = histogram();
    let mut watch_errors: BTreeMap<String, u64> = BTreeMap::new();
    for outcome in &received {
        latencies
            .add(&outcome.latencies)
            .context("merge histograms")?;
        if let Some(error) = &outcome.error {
            *watch_errors.entry(error.clone()).or_default() += 1;
        }
    }
    // Every watcher was live before the first submit, so each one is due
    // every event from the first to the last sequence any watcher saw.
    let window_first = received.iter().filter_map(|o| o.first_sequence).min();
    let window_last = received.iter().map(|o| o.last_sequence).max().unwrap_or(0);
    let events_in_window = window_first
        .map(|first| u64::try_from(window_last - first + 1).unwrap_or(0))
        .unwrap_or(0);
    let mut lost = 0;
    let mut out_of_order_or_duplicate = 0;
    let mut complete_watchers = 0;
    for outcome in &received {
        let missing = events_in_window.saturating_sub(outcome.in_order);
        lost += missing;
        out_of_order_or_duplicate += outcome.out_of_order_or_duplicate;
        if missing == 0
            && outcome.out_of_order_or_duplicate == 0
            && outcome.submitted_events == submitted
        {
            complete_watchers += 1;
        }
    }
    // The lower bound: each sampled event's arrival after its submit's reply.
    let replies = replies.lock().expect("no poisoned lock").clone();
    let reply_times: HashMap<i64, SystemTime> = received
        .first()
        .map(|first| {
            first
                .requests
                .iter()
                .filter_map(|(sequence, request)| {
                    replies.get(request).map(|reply| (*sequence, *reply))
                })
                .collect()
        })
        .unwrap_or_default();
    let mut reply_to_receipt = histogram();
    for outcome in &received {
        for (sequence, arrived) in &outcome.sampled {
            if let Some(reply) = reply_times.get(sequence) {
                let after = arrived.duration_since(*reply).unwrap_or_default();
                reply_to_receipt
                    .saturating_record(u64::try_from(after.as_micros()).unwrap_or(u64::MAX));
            }
        }
    }
    let latency = summarize(&latencies);
    let baseline_health_rtt = summarize(&baseline);
    let delivered = delivered.load(Ordering::Relaxed);
    let (submit_errors, submit_latencies) = {
        let outcomes = outcomes.lock().expect("no poisoned lock");
        (outcomes.errors.clone(), outcomes.latencies.clone())
    };
    let attempted = submitted + submit_errors.values().sum::<u64>();
    Ok(WatchReport {
        watchers: args.watchers,
        connections: args.connections,
        target_rate_per_s: args.rate,
        duration_s: elapsed.as_secs_f64(),
        submitted,
        achieved_submit_rate_per_s: attempted as f64 / submit_seconds,
        submit_errors,
        submit_latency: summarize(&submit_latencies),
        delivered,
        expected_deliveries: expected,
        delivered_per_s: delivered as f64 / elapsed.as_secs_f64(),
        events_in_window,
        lost,
        out_of_order_or_duplicate,
        complete_watchers,
        watch_errors,
        submits_not_sent,
        submits_unfinished,
        reply_to_receipt: summarize(&reply_to_receipt),
        p50_vs_baseline: latency.p50_ms / baseline_health_rtt.p50_ms.max(0.001),
        p99_vs_baseline: latency.p99_ms / baseline_health_rtt.p99_ms.max(0.001),
        latency,
        baseline_health_rtt,
        server_rss_kib_before: rss_before,
        server_rss_kib_after: rss_after,
        server_cpu_cores,
        loadtest_cpu_cores,
    })
}

/// Runs the `idle` scenario.
pub async fn run_idle(
    target: &str,
    api_key: &str,
    watchers: usize,
    connections: usize,
    server_pid: u32,
) -> anyhow::Result<IdleReport> {
    let before = rss_kib(server_pid)?;
    let delivered = Arc::new(AtomicU64::new(0));
    let stop = tokio_util_lite::Stop::new();
    let tasks = open_watchers(
        target,
        api_key,
        watchers,
        connections,
        delivered,
        stop.clone(),
    )
    .await?;
    // Let allocations settle.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kib(server_pid)?;
    stop.fire();
    for task in tasks {
        let outcome = task.await.context("watcher task panicked")?;
        if let Some(error) = outcome.error {
            bail!("an idle watcher's stream failed: {error}");
        }
    }
    Ok(IdleReport {
        watchers,
        connections,
        server_rss_kib_before: before,
        server_rss_kib_after: after,
        kib_per_watcher: after.saturating_sub(before) as f64 / watchers.max(1) as f64,
    })
}
