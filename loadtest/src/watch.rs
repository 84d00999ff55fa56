//! The watch scenarios.
//!
//! `watch`: N watchers on C connections while submits arrive at a fixed
//! rate; measures change-to-receipt latency of every delivered event (the
//! event's `occur_time` is taken just before its commit) and delivered
//! events per second. A baseline is measured in the same run: the round trip
//! of a unary health check on the same server.
//!
//! `idle`: N watchers that receive nothing; measures the server's resident
//! memory before and after, per watcher.

use std::collections::BTreeMap;
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
}

/// The result of the `watch` scenario.
#[derive(Clone, Debug, Serialize)]
pub struct WatchReport {
    pub watchers: usize,
    pub connections: usize,
    pub target_rate_per_s: u64,
    pub duration_s: f64,
    pub submitted: u64,
    pub submit_errors: BTreeMap<String, u64>,
    pub delivered: u64,
    pub expected_deliveries: u64,
    pub delivered_per_s: f64,
    pub latency: LatencySummary,
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

/// Opens `count` watchers spread over `connections`, and returns once every
/// one has received `ready`. Each task reports its histogram when `stop`
/// fires or its channel closes.
async fn open_watchers(
    args_target: &str,
    key: &str,
    count: usize,
    connections: usize,
    delivered: Arc<AtomicU64>,
    stop: tokio_util_lite::Stop,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<anyhow::Result<Histogram<u64>>>>> {
    let channels = channels(args_target, connections).await?;
    let bearer = bearer(key)?;
    let (ready_tx, mut ready_rx) = mpsc::channel::<()>(count.max(1));
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
            let mut latencies = histogram();
            let mut stream = client
                .watch_events(pb::WatchEventsRequest::default())
                .await
                .context("WatchEvents failed")?
                .into_inner();
            loop {
                let message = tokio::select! {
                    () = stop.wait() => return Ok(latencies),
                    message = stream.message() => message.context("watch stream failed")?,
                };
                let Some(message) = message else {
                    bail!("the server ended a watch stream");
                };
                match message.kind {
                    Some(Kind::Ready(_)) => {
                        let _ = ready_tx.send(()).await;
                    }
                    Some(Kind::Event(event)) => {
                        if let Some(occurred) = event.occur_time {
                            let occurred = SystemTime::UNIX_EPOCH
                                + Duration::new(occurred.seconds as u64, occurred.nanos as u32);
                            let latency = SystemTime::now()
                                .duration_since(occurred)
                                .unwrap_or_default();
                            latencies.saturating_record(latency.as_micros() as u64);
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
            Ok(Some(())) => ready += 1,
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

async fn baseline(target: &str) -> anyhow::Result<Histogram<u64>> {
    let channel = channels(target, 1).await?.remove(0);
    let mut health = HealthClient::new(channel);
    let mut latencies = histogram();
    for _ in 0..2000 {
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

/// Runs the `watch` scenario.
pub async fn run_watch(args: &WatchArgs) -> anyhow::Result<WatchReport> {
    if args.rate == 0 {
        bail!("--rate must be at least 1");
    }
    let baseline = baseline(&args.target).await?;
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
    let in_flight = Arc::new(Semaphore::new(256));
    let submitted = Arc::new(AtomicU64::new(0));
    let errors: Arc<std::sync::Mutex<BTreeMap<String, u64>>> = Arc::default();
    let interval = Duration::from_secs_f64(1.0 / args.rate as f64);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut sent = 0u64;
    let mut last_progress = Instant::now();
    while started.elapsed() < args.duration {
        ticker.tick().await;
        let permit = in_flight
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore open");
        let mut client = AccessRequestServiceClient::with_interceptor(
            submitters[(sent % 4) as usize].clone(),
            bearer.clone(),
        );
        let succeeded = submitted.clone();
        let errors = errors.clone();
        let index = sent;
        tokio::spawn(async move {
            match client.submit_access_request(submission(index)).await {
                Ok(_) => {
                    succeeded.fetch_add(1, Ordering::Relaxed);
                }
                Err(status) => {
                    let mut errors = errors.lock().expect("no poisoned lock");
                    *errors.entry(format!("{:?}", status.code())).or_default() += 1;
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
    let _all = in_flight.acquire_many(256).await.expect("semaphore open");
    let submitted = submitted.load(Ordering::Relaxed);
    let expected = submitted * args.watchers as u64;
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
    let mut latencies = histogram();
    for watcher in watchers {
        let recorded = watcher.await.context("watcher task panicked")??;
        latencies.add(&recorded).context("merge histograms")?;
    }
    let latency = summarize(&latencies);
    let baseline_health_rtt = summarize(&baseline);
    let delivered = delivered.load(Ordering::Relaxed);
    let submit_errors = errors.lock().expect("no poisoned lock").clone();
    Ok(WatchReport {
        watchers: args.watchers,
        connections: args.connections,
        target_rate_per_s: args.rate,
        duration_s: elapsed.as_secs_f64(),
        submitted,
        submit_errors,
        delivered,
        expected_deliveries: expected,
        delivered_per_s: delivered as f64 / elapsed.as_secs_f64(),
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
        task.await.context("watcher task panicked")??;
    }
    Ok(IdleReport {
        watchers,
        connections,
        server_rss_kib_before: before,
        server_rss_kib_after: after,
        kib_per_watcher: after.saturating_sub(before) as f64 / watchers.max(1) as f64,
    })
}
