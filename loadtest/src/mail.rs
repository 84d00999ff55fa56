//! The `mail` scenario: enqueue N emails by submitting N requests (one
//! applicant email each) while no mail worker runs, then start a worker
//! (a command given to this tool), wait until it has drained the outbox
//! into a local SMTP sink, and report emails per second. The sink's dump
//! (Postfix `smtp-sink -D FILE`) is then read back and every Message-ID
//! compared with the emails the server marked sent: duplicates, losses and
//! strangers are counted, never assumed away.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;
use sesame_proto::v1 as pb;
use sesame_proto::v1::access_request_service_client::AccessRequestServiceClient;
use sesame_proto::v1::email_service_client::EmailServiceClient;
use tokio::sync::Semaphore;

use crate::connect::{bearer, channels, peak_rss_kib, rss_kib};

/// What to run.
#[derive(Clone, Debug)]
pub struct MailArgs {
    pub target: String,
    pub api_key: String,
    /// Requests to submit, each queuing one applicant email.
    pub requests: u64,
    /// Submits in flight while enqueuing.
    pub concurrency: usize,
    /// The sink's dump file (`smtp-sink -D FILE`), read after the drain.
    pub sink_dump: Option<std::path::PathBuf>,
    /// The worker to start once the emails are queued (program and
    /// arguments); empty: a worker already running drains them.
    pub worker: Vec<String>,
    /// Give up on the drain after this long.
    pub timeout: Duration,
    pub server_pid: Option<u32>,
}

/// What the sink received, read from its dump.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SinkCheck {
    /// Messages in the dump.
    pub messages: u64,
    /// Messages without a Message-ID header.
    pub without_message_id: u64,
    /// Extra copies of a Message-ID already received.
    pub duplicates: u64,
    /// Emails the server marked sent that the sink never received.
    pub lost: u64,
    /// Messages whose Message-ID is not one of the emails sent in this run.
    pub unexpected: u64,
}

/// The result of the `mail` scenario.
#[derive(Clone, Debug, Serialize)]
pub struct MailReport {
    pub requests: u64,
    pub submit_errors: BTreeMap<String, u64>,
    pub enqueue_seconds: f64,
    /// Emails pending once the submits were done.
    pub queued: u64,
    /// Emails the server marked sent during the drain.
    pub sent: u64,
    /// Emails that ended dead.
    pub dead: u64,
    /// From the worker's start to an empty queue.
    pub drain_seconds: f64,
    pub emails_per_s: f64,
    /// From the first to the last `send_time` of the emails sent (the
    /// worker's start-up excluded).
    pub send_span_emails_per_s: Option<f64>,
    pub sink: Option<SinkCheck>,
    /// The worker process's largest resident memory, in KiB.
    pub worker_peak_rss_kib: Option<u64>,
    pub server_rss_kib_before: Option<u64>,
    pub server_rss_kib_after: Option<u64>,
    /// True when every queued email was sent and the sink holds each one
    /// exactly once (or no dump was given and every email was sent).
    pub ok: bool,
}

impl std::fmt::Display for MailReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "mail: {} requests in {:.1} s (errors {:?}), {} emails queued",
            self.requests, self.enqueue_seconds, self.submit_errors, self.queued
        )?;
        writeln!(
            f,
            "drained: {} sent, {} dead in {:.2} s = {:.0} emails/s (send span {:?}/s)",
            self.sent,
            self.dead,
            self.drain_seconds,
            self.emails_per_s,
            self.send_span_emails_per_s
        )?;
        match &self.sink {
            Some(sink) => writeln!(
                f,
                "sink: {} messages, {} duplicates, {} lost, {} unexpected, {} without Message-ID",
                sink.messages, sink.duplicates, sink.lost, sink.unexpected, sink.without_message_id
            )?,
            None => writeln!(f, "sink: not checked (no --sink-dump)")?,
        }
        write!(
            f,
            "worker peak rss {:?} KiB; server rss {:?} -> {:?} KiB; {}",
            self.worker_peak_rss_kib,
            self.server_rss_kib_before,
            self.server_rss_kib_after,
            if self.ok { "ok" } else { "FAILED" }
        )
    }
}

fn submission(index: u64) -> pb::SubmitAccessRequestRequest {
    pb::SubmitAccessRequestRequest {
        applicant: Some(pb::Applicant {
            email: format!("mail{index}@example.com"),
            full_name: "Mail Load".into(),
            organization: "Loadtest".into(),
            phone: String::new(),
        }),
        user_type: pb::UserType::Customer.into(),
        locale: if index.is_multiple_of(2) { "en" } else { "fr" }.into(),
        resource: "loadtest".into(),
        justification: "mail load test".into(),
        consent: Some(pb::Consent {
            version: "loadtest".into(),
            purposes: vec!["access_management".into()],
            grant_time: None,
        }),
        request_id: String::new(),
    }
}

type Emails = sesame_client::EmailClient;

/// Every email in `state`, all pages (at most 1,000 pages of 500).
async fn list_all(client: &mut Emails, state: pb::EmailState) -> anyhow::Result<Vec<pb::Email>> {
    let mut emails = Vec::new();
    let mut page_token = String::new();
    for _ in 0..1000 {
        let page = client
            .list_emails(pb::ListEmailsRequest {
                page_size: 500,
                page_token: page_token.clone(),
                state: state.into(),
                ..Default::default()
            })
            .await
            .context("ListEmails failed")?
            .into_inner();
        emails.extend(page.emails);
        if page.next_page_token.is_empty() {
            return Ok(emails);
        }
        page_token = page.next_page_token;
    }
    bail!("more than 500,000 emails in state {state:?}")
}

async fn any_pending(client: &mut Emails) -> anyhow::Result<bool> {
    let page = client
        .list_emails(pb::ListEmailsRequest {
            page_size: 1,
            state: pb::EmailState::Pending.into(),
            ..Default::default()
        })
        .await
        .context("ListEmails failed")?
        .into_inner();
    Ok(!page.emails.is_empty())
}

/// Submits `requests` requests with `concurrency` calls in flight; failed
/// submits by gRPC code.
async fn enqueue(
    target: &str,
    key: &str,
    requests: u64,
    concurrency: usize,
) -> anyhow::Result<BTreeMap<String, u64>> {
    let channels = channels(target, 4).await?;
    let bearer = bearer(key)?;
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let done = Arc::new(AtomicU64::new(0));
    let errors: Arc<std::sync::Mutex<BTreeMap<String, u64>>> = Arc::default();
    let started = Instant::now();
    let mut last_progress = Instant::now();
    let mut tasks = Vec::new();
    for index in 0..requests {
        let permit = permits
            .clone()
            .acquire_owned()
            .await
            .expect("open semaphore");
        let mut client = AccessRequestServiceClient::with_interceptor(
            channels[index as usize % channels.len()].clone(),
            bearer.clone(),
        );
        let (task_done, task_errors) = (done.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            if let Err(status) = client.submit_access_request(submission(index)).await {
                let mut failed = task_errors.lock().expect("no poisoned lock");
                *failed.entry(format!("{:?}", status.code())).or_default() += 1;
            }
            task_done.fetch_add(1, Ordering::Relaxed);
            drop(permit);
        }));
        if last_progress.elapsed() >= Duration::from_secs(1) {
            last_progress = Instant::now();
            eprintln!(
                "enqueue: t={:.0}s submitted {}/{requests}",
                started.elapsed().as_secs_f64(),
                done.load(Ordering::Relaxed)
            );
        }
    }
    for task in tasks {
        task.await.context("submit task panicked")?;
    }
    let errors = errors.lock().expect("no poisoned lock").clone();
    Ok(errors)
}

/// Reads an `smtp-sink -D` dump: messages start with the sink's
/// `X-Client-Addr:` line, headers end at the first empty line. Returns the
/// number of messages and each message's Message-ID (None when it has
/// none).
pub fn read_sink_dump(text: &str) -> (u64, Vec<Option<String>>) {
    let mut messages = 0;
    let mut ids: Vec<Option<String>> = Vec::new();
    let mut in_headers = false;
    for raw in text.lines() {
        let line = raw.trim_end_matches('\r');
        if line.starts_with("X-Client-Addr:") {
            messages += 1;
            ids.push(None);
            in_headers = true;
            continue;
        }
        if !in_headers {
            continue;
        }
        if line.is_empty() {
            in_headers = false;
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if name.eq_ignore_ascii_case("message-id")
            && let Some(slot) = ids.last_mut()
        {
            *slot = Some(value.trim().to_owned());
        }
    }
    (messages, ids)
}

/// Compares the sink's messages with the Message-IDs of the emails sent.
fn check_sink(text: &str, sent_ids: &HashSet<String>) -> SinkCheck {
    let (messages, ids) = read_sink_dump(text);
    let mut seen: HashMap<String, u64> = HashMap::new();
    let mut check = SinkCheck {
        messages,
        ..SinkCheck::default()
    };
    for id in ids {
        let Some(id) = id else {
            check.without_message_id += 1;
            continue;
        };
        // Server ids are stored without angle brackets or with them; compare bare.
        let bare = id.trim_start_matches('<').trim_end_matches('>').to_owned();
        *seen.entry(bare).or_default() += 1;
    }
    for (id, count) in &seen {
        check.duplicates += count - 1;
        if !sent_ids.contains(id) {
            check.unexpected += count;
        }
    }
    check.lost = sent_ids.iter().filter(|id| !seen.contains_key(*id)).count() as u64;
    check
}

fn bare_id(id: &str) -> String {
    id.trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_owned()
}

/// Runs the `mail` scenario.
pub async fn run_mail(args: &MailArgs) -> anyhow::Result<MailReport> {
    let channel = channels(&args.target, 1).await?.remove(0);
    let mut emails: Emails = EmailServiceClient::with_interceptor(channel, bearer(&args.api_key)?);
    let sent_before: HashSet<String> = list_all(&mut emails, pb::EmailState::Sent)
        .await?
        .iter()
        .map(|email| bare_id(&email.message_id))
        .collect();
    let dead_before = list_all(&mut emails, pb::EmailState::Dead).await?.len() as u64;
    let rss_before = args.server_pid.map(rss_kib).transpose()?;

    let enqueue_started = Instant::now();
    let submit_errors =
        enqueue(&args.target, &args.api_key, args.requests, args.concurrency).await?;
    let enqueue_seconds = enqueue_started.elapsed().as_secs_f64();
    let queued = list_all(&mut emails, pb::EmailState::Pending).await?.len() as u64;
    eprintln!("enqueue: {queued} emails pending after {enqueue_seconds:.1} s");

    let drain_started = Instant::now();
    let mut worker = match args.worker.split_first() {
        Some((program, arguments)) => Some(
            tokio::process::Command::new(program)
                .args(arguments)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("could not start the worker {program:?}"))?,
        ),
        None => None,
    };
    let worker_pid = worker.as_ref().and_then(tokio::process::Child::id);
    let mut worker_peak_rss_kib = None;
    let mut last_progress = Instant::now();
    loop {
        if !any_pending(&mut emails).await? {
            break;
        }
        if let Some(child) = &mut worker
            && let Some(status) = child.try_wait()?
        {
            bail!("the worker exited ({status}) with emails still pending");
        }
        if drain_started.elapsed() > args.timeout {
            bail!(
                "emails still pending after {:.0} s",
                args.timeout.as_secs_f64()
            );
        }
        if let Some(pid) = worker_pid {
            worker_peak_rss_kib = peak_rss_kib(pid).ok().or(worker_peak_rss_kib);
        }
        if last_progress.elapsed() >= Duration::from_secs(1) {
            last_progress = Instant::now();
            eprintln!(
                "drain: t={:.0}s, emails still pending",
                drain_started.elapsed().as_secs_f64()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drain_seconds = drain_started.elapsed().as_secs_f64();
    if let Some(pid) = worker_pid {
        worker_peak_rss_kib = peak_rss_kib(pid).ok().or(worker_peak_rss_kib);
    }
    if let Some(mut child) = worker {
        child.start_kill().context("could not stop the worker")?;
        child.wait().await.context("waiting for the worker")?;
    }
    let rss_after = args.server_pid.map(rss_kib).transpose()?;

    let sent_now: Vec<pb::Email> = list_all(&mut emails, pb::EmailState::Sent)
        .await?
        .into_iter()
        .filter(|email| !sent_before.contains(&bare_id(&email.message_id)))
        .collect();
    let dead = (list_all(&mut emails, pb::EmailState::Dead).await?.len() as u64)
        .saturating_sub(dead_before);
    let send_times: Vec<f64> = sent_now
        .iter()
        .filter_map(|email| email.send_time)
        .map(|time| time.seconds as f64 + f64::from(time.nanos) / 1e9)
        .collect();
    let send_span_emails_per_s = match (
        send_times.iter().copied().reduce(f64::min),
        send_times.iter().copied().reduce(f64::max),
    ) {
        (Some(first), Some(last)) if last > first => {
            Some((send_times.len() - 1) as f64 / (last - first))
        }
        _ => None,
    };
    let sent_ids: HashSet<String> = sent_now
        .iter()
        .map(|email| bare_id(&email.message_id))
        .collect();
    let sent = sent_now.len() as u64;
    let sink = match &args.sink_dump {
        Some(path) => {
            // The sink writes its dump as each message ends; give it a moment.
            tokio::time::sleep(Duration::from_millis(500)).await;
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("could not read the sink dump {}", path.display()))?;
            Some(check_sink(&text, &sent_ids))
        }
        None => None,
    };
    let sink_ok = sink.as_ref().is_none_or(|sink| {
        sink.duplicates == 0
            && sink.lost == 0
            && sink.unexpected == 0
            && sink.without_message_id == 0
            && sink.messages == sent
    });
    Ok(MailReport {
        requests: args.requests,
        enqueue_seconds,
        ok: submit_errors.is_empty() && sent == queued && dead == 0 && sink_ok,
        submit_errors,
        queued,
        sent,
        dead,
        drain_seconds,
        emails_per_s: sent as f64 / drain_seconds,
        send_span_emails_per_s,
        sink,
        worker_peak_rss_kib,
        server_rss_kib_before: rss_before,
        server_rss_kib_after: rss_after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Guards the sink check: a duplicate, a loss and a stranger are each seen.
    #[test]
    fn sink_check_counts_duplicates_losses_and_strangers() {
        let message = |id: &str| {
            format!(
                "X-Client-Addr: 127.0.0.1\r\nX-Mail-Args: <a@example.com>\r\nMessage-ID: <{id}>\r\n\r\nbody\r\nMessage-ID: <not-a-header>\r\n"
            )
        };
        let dump = [
            message("a@x"),
            message("b@x"),
            message("b@x"),
            message("z@x"),
        ]
        .concat();
        let sent: HashSet<String> = ["a@x", "b@x", "c@x"]
            .iter()
            .map(|id| (*id).to_owned())
            .collect();
        let check = check_sink(&dump, &sent);
        assert_eq!(check.messages, 4);
        assert_eq!(check.duplicates, 1);
        assert_eq!(check.lost, 1);
        assert_eq!(check.unexpected, 1);
        assert_eq!(check.without_message_id, 0);
    }
}
