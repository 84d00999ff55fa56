//! The scale scenarios (issue 17, how cost grows with data), each bounded by
//! a count and a time limit:
//! - `pages`: ListAccessRequests walked page by page, the deep pages' latency
//!   against the first pages';
//! - `replay`: WatchEvents from the first event of the log to its head,
//!   events/s by tenth of the replay and the server's memory along the way;
//! - `verify`: VerifyAuditChain over the whole log, call after call, against
//!   the raw SHA-256 chaining rate of this machine measured in the same run;
//! - `erase`: EraseSubject for many seeded applicants.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use hdrhistogram::Histogram;
use serde::Serialize;
use sesame_client::{AccessRequestClient, EventClient, PrivacyClient};
use sesame_proto::v1 as pb;
use sesame_proto::v1::access_request_service_client::AccessRequestServiceClient;
use sesame_proto::v1::event_service_client::EventServiceClient;
use sesame_proto::v1::privacy_service_client::PrivacyServiceClient;
use sesame_proto::v1::watch_events_response::Kind;
use sha2::{Digest, Sha256};

use crate::connect::{bearer, channels, rss_kib};
use crate::rpc::applicant_email;
use crate::stats::{LatencySummary, histogram, summarize};

/// The page walk.
#[derive(Clone, Debug, Serialize)]
pub struct PagesReport {
    pub page_size: i32,
    pub pages: usize,
    pub rows: u64,
    /// Whether the walk reached the last page (else it stopped at its page
    /// or time limit).
    pub reached_end: bool,
    pub seconds: f64,
    pub rows_per_s: f64,
    /// The first tenth of the pages walked.
    pub first_pages: LatencySummary,
    /// The last tenth of the pages walked: the deepest.
    pub deep_pages: LatencySummary,
    /// p99 of the deep pages over p99 of the first ones.
    pub deep_over_first_p99: f64,
}

/// Walks ListAccessRequests (every state, newest first) with `page_size`
/// until the last page, `max_pages` or `limit`.
pub async fn walk_pages(
    target: &str,
    key: &str,
    page_size: i32,
    max_pages: usize,
    limit: Duration,
) -> anyhow::Result<PagesReport> {
    let channel = channels(target, 1).await?.remove(0);
    let mut client: AccessRequestClient =
        AccessRequestServiceClient::with_interceptor(channel, bearer(key)?);
    let started = Instant::now();
    let mut latencies = Vec::new();
    let (mut rows, mut token, mut reached_end) = (0u64, String::new(), false);
    while latencies.len() < max_pages && started.elapsed() < limit {
        let sent = Instant::now();
        let page = client
            .list_access_requests(pb::ListAccessRequestsRequest {
                page_size,
                page_token: token,
                ..Default::default()
            })
            .await
            .with_context(|| format!("listing page {}", latencies.len() + 1))?
            .into_inner();
        latencies.push(micros(sent.elapsed()));
        rows += page.access_requests.len() as u64;
        token = page.next_page_token;
        if latencies.len().is_multiple_of(100) {
            eprintln!("pages: {} pages, {rows} rows", latencies.len());
        }
        if token.is_empty() {
            reached_end = true;
            break;
        }
    }
    if latencies.is_empty() {
        bail!("no page was read (--max-pages 0?)");
    }
    let seconds = started.elapsed().as_secs_f64();
    let tenth = (latencies.len() / 10).max(1);
    let first = summarize(&recorded(&latencies[..tenth]));
    let deep = summarize(&recorded(
        &latencies[latencies.len().saturating_sub(tenth)..],
    ));
    Ok(PagesReport {
        page_size,
        pages: latencies.len(),
        rows,
        reached_end,
        seconds,
        rows_per_s: rows as f64 / seconds,
        deep_over_first_p99: deep.p99_ms / first.p99_ms,
        first_pages: first,
        deep_pages: deep,
    })
}

/// The replay.
#[derive(Clone, Debug, Serialize)]
pub struct ReplayReport {
    /// Events received before the stream went idle.
    pub events: u64,
    /// Events whose sequence was not the one after the previous event's.
    pub out_of_order: u64,
    /// From the call to the last event.
    pub seconds: f64,
    pub events_per_s: f64,
    /// Events/s over each tenth of the events: flat when the cost of an
    /// event does not grow with its position in the log.
    pub events_per_s_by_tenth: Vec<f64>,
    pub server_rss_kib_start: Option<u64>,
    /// The most the server's resident memory reached during the replay
    /// (sampled every 10,000 events).
    pub server_rss_kib_max: Option<u64>,
    pub server_rss_kib_end: Option<u64>,
}

/// Events between two progress samples of the replay.
const REPLAY_SAMPLE: u64 = 10_000;

/// Replays WatchEvents from the first event of the log, until a heartbeat
/// says the stream caught up (the server's `watch_heartbeat_secs` after the
/// last event), or `limit` passes (an error).
pub async fn replay(
    target: &str,
    key: &str,
    server_pid: Option<u32>,
    limit: Duration,
) -> anyhow::Result<ReplayReport> {
    let channel = channels(target, 1).await?.remove(0);
    let mut client: EventClient = EventServiceClient::with_interceptor(channel, bearer(key)?);
    let first = client
        .list_events(pb::ListEventsRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .context("reading the first event")?
        .into_inner()
        .events
        .into_iter()
        .next()
        .context("the log is empty: seed it first")?;
    let rss = || server_pid.and_then(|pid| rss_kib(pid).ok());
    let server_rss_kib_start = rss();
    let mut server_rss_kib_max = server_rss_kib_start;
    let started = Instant::now();
    let mut stream = client
        .watch_events(pb::WatchEventsRequest {
            after: first.cursor,
            ..Default::default()
        })
        .await
        .context("opening the replay")?
        .into_inner();
    let (mut events, mut out_of_order, mut expected) = (0u64, 0u64, first.sequence + 1);
    let mut samples = vec![(0u64, Duration::ZERO)];
    let mut last_event_at = Duration::ZERO;
    loop {
        let message = tokio::time::timeout(limit.saturating_sub(started.elapsed()), stream.next())
            .await
            .with_context(|| format!("the replay did not finish within {limit:?}"))?
            .context("the stream ended before the replay caught up")?
            .context("the replay failed")?;
        match message.kind {
            Some(Kind::Event(event)) => {
                events += 1;
                if event.sequence != expected {
                    out_of_order += 1;
                }
                expected = event.sequence + 1;
                last_event_at = started.elapsed();
                if events.is_multiple_of(REPLAY_SAMPLE) {
                    samples.push((events, last_event_at));
                    server_rss_kib_max = server_rss_kib_max.max(rss());
                    if events.is_multiple_of(REPLAY_SAMPLE * 10) {
                        eprintln!("replay: {events} events");
                    }
                }
            }
            Some(Kind::Heartbeat(_)) => break,
            Some(Kind::Ready(_)) | None => {}
        }
    }
    if events == 0 {
        bail!("the replay delivered no event (the log holds only one?)");
    }
    samples.push((events, last_event_at));
    Ok(ReplayReport {
        events,
        out_of_order,
        seconds: last_event_at.as_secs_f64(),
        events_per_s: events as f64 / last_event_at.as_secs_f64(),
        events_per_s_by_tenth: rate_by_tenth(&samples),
        server_rss_kib_start,
        server_rss_kib_max: server_rss_kib_max.max(rss()),
        server_rss_kib_end: rss(),
    })
}

/// Events/s over each tenth of `samples` (cumulative count, elapsed time).
fn rate_by_tenth(samples: &[(u64, Duration)]) -> Vec<f64> {
    let total = samples.last().map_or(0, |sample| sample.0);
    let mut rates = Vec::new();
    let mut from = samples[0];
    for tenth in 1..=10u64 {
        let boundary = total * tenth / 10;
        let Some(&to) = samples.iter().find(|sample| sample.0 >= boundary) else {
            break;
        };
        if to.0 > from.0 && to.1 > from.1 {
            rates.push((to.0 - from.0) as f64 / (to.1 - from.1).as_secs_f64());
            from = to;
        }
    }
    rates
}

/// The whole-log verification.
#[derive(Clone, Debug, Serialize)]
pub struct VerifyReport {
    pub intact: bool,
    /// The first broken link and what is wrong with it, if any.
    pub broken: Option<(i64, String)>,
    pub calls: u32,
    pub events: i64,
    pub seconds: f64,
    pub events_per_s: f64,
    /// Events/s of the first call and of the last full one.
    pub first_call_events_per_s: f64,
    pub last_call_events_per_s: f64,
    /// The bytes hashed per event by the raw chaining baseline (the
    /// previous hash in hex and the event's canonical form).
    pub hash_input_bytes: usize,
    /// SHA-256 chaining of as many inputs of that size, hex-encoding each
    /// hash as the log does, in this process: the machine's ceiling.
    pub raw_chain_events_per_s: f64,
    /// `events_per_s` over `raw_chain_events_per_s`.
    pub ratio_to_raw: f64,
}

/// Verifies the audit chain from the start of the log to its end, call
/// after call (at most `limit` in all), then measures raw chaining of as
/// many events with `event_bytes` of canonical form each.
pub async fn verify(
    target: &str,
    key: &str,
    event_bytes: usize,
    limit: Duration,
) -> anyhow::Result<VerifyReport> {
    let channel = channels(target, 1).await?.remove(0);
    let mut client: EventClient = EventServiceClient::with_interceptor(channel, bearer(key)?);
    let started = Instant::now();
    let (mut start, mut calls, mut events) = (1i64, 0u32, 0i64);
    let mut call_rates = Vec::new();
    let mut broken = None;
    loop {
        if started.elapsed() > limit {
            bail!("the verification did not finish within {limit:?}");
        }
        let sent = Instant::now();
        let report = client
            .verify_audit_chain(pb::VerifyAuditChainRequest {
                start_sequence: start,
                end_sequence: 0,
            })
            .await
            .with_context(|| format!("verifying from sequence {start}"))?
            .into_inner();
        calls += 1;
        events += report.verified_events;
        call_rates.push(report.verified_events as f64 / sent.elapsed().as_secs_f64());
        eprintln!(
            "verify: {events} events intact after {calls} calls ({:.0}/s this call)",
            call_rates[call_rates.len() - 1]
        );
        if !report.intact {
            broken = Some((report.broken_sequence, report.problem));
            break;
        }
        if report.next_start_sequence == 0 {
            break;
        }
        start = report.next_start_sequence;
    }
    let seconds = started.elapsed().as_secs_f64();
    let events_per_s = events as f64 / seconds;
    let hash_input_bytes = 64 + event_bytes;
    let raw_chain_events_per_s = raw_chain_rate(events.max(1) as u64, event_bytes);
    let last_full = if call_rates.len() > 1 {
        call_rates[call_rates.len() - 2]
    } else {
        call_rates[0]
    };
    Ok(VerifyReport {
        intact: broken.is_none(),
        broken,
        calls,
        events,
        seconds,
        events_per_s,
        first_call_events_per_s: call_rates[0],
        last_call_events_per_s: last_full,
        hash_input_bytes,
        raw_chain_events_per_s,
        ratio_to_raw: events_per_s / raw_chain_events_per_s,
    })
}

/// Events/s of chaining `count` events of `event_bytes` each: SHA-256 over
/// the previous hash in hex and the event, the hash hex-encoded.
fn raw_chain_rate(count: u64, event_bytes: usize) -> f64 {
    let event: Vec<u8> = (0..event_bytes).map(|i| b'a' + (i % 26) as u8).collect();
    let mut previous = "0".repeat(64);
    let started = Instant::now();
    for _ in 0..count {
        let mut hasher = Sha256::new();
        hasher.update(previous.as_bytes());
        hasher.update(&event);
        previous = hex::encode(hasher.finalize());
    }
    let rate = count as f64 / started.elapsed().as_secs_f64();
    std::hint::black_box(previous);
    rate
}

/// The erasures.
#[derive(Clone, Debug, Serialize)]
pub struct EraseReport {
    pub subjects: u64,
    pub first_tag: u64,
    pub concurrency: usize,
    /// Requests made anonymous, over every subject.
    pub erased_requests: u64,
    pub seconds: f64,
    pub subjects_per_s: f64,
    pub latency: LatencySummary,
}

/// Erases the applicants of seeded requests `first_tag..first_tag+count`,
/// `concurrency` at a time over `connections`, within `limit`.
pub async fn erase(
    target: &str,
    key: &str,
    first_tag: u64,
    count: u64,
    concurrency: usize,
    connections: usize,
    limit: Duration,
) -> anyhow::Result<EraseReport> {
    let channels = channels(target, connections.clamp(1, concurrency.max(1))).await?;
    let next = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(first_tag));
    let end = first_tag + count;
    let started = Instant::now();
    let mut callers = tokio::task::JoinSet::new();
    for caller in 0..concurrency.max(1) {
        let mut client: PrivacyClient = PrivacyServiceClient::with_interceptor(
            channels[caller % channels.len()].clone(),
            bearer(key)?,
        );
        let next = next.clone();
        callers.spawn(async move {
            let (mut latencies, mut erased) = (histogram(), 0u64);
            loop {
                let tag = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if tag >= end {
                    return anyhow::Ok((latencies, erased));
                }
                if started.elapsed() > limit {
                    bail!("the erasures did not finish within {limit:?}");
                }
                let sent = Instant::now();
                let response = client
                    .erase_subject(pb::EraseSubjectRequest {
                        email: applicant_email(tag),
                        reason: "scale measurement".into(),
                    })
                    .await
                    .with_context(|| format!("erasing the applicant of seed request {tag}"))?
                    .into_inner();
                latencies.record(micros(sent.elapsed()).max(1))?;
                erased += response.erased_access_requests as u64;
                if tag > first_tag && (tag - first_tag).is_multiple_of(2000) {
                    eprintln!("erase: {} of {count} subjects", tag - first_tag);
                }
            }
        });
    }
    let (mut latencies, mut erased_requests) = (histogram(), 0u64);
    while let Some(caller) = callers.join_next().await {
        let (caller_latencies, erased) = caller.context("an erasing task panicked")??;
        latencies.add(caller_latencies)?;
        erased_requests += erased;
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(EraseReport {
        subjects: count,
        first_tag,
        concurrency,
        erased_requests,
        seconds,
        subjects_per_s: count as f64 / seconds,
        latency: summarize(&latencies),
    })
}

fn micros(elapsed: Duration) -> u64 {
    u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX)
}

/// A histogram of `values` (microseconds).
fn recorded(values: &[u64]) -> Histogram<u64> {
    let mut recorded = histogram();
    for value in values {
        recorded.saturating_record((*value).max(1));
    }
    recorded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_by_tenth_follow_the_samples() {
        let at = |count: u64, millis: u64| (count, Duration::from_millis(millis));
        // 100 events at 100/s for the first half, then at 50/s.
        let samples: Vec<_> = (0..=10)
            .map(|i| {
                let millis = if i <= 5 { i * 100 } else { 500 + (i - 5) * 200 };
                at(i * 10, millis)
            })
            .collect();
        let rates = rate_by_tenth(&samples);
        assert_eq!(rates.len(), 10);
        assert!((rates[0] - 100.0).abs() < 1e-9, "{rates:?}");
        assert!((rates[9] - 50.0).abs() < 1e-9, "{rates:?}");
    }
}
