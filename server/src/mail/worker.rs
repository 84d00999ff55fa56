//! The outbox worker: claims due emails under a lease, renders and sends
//! them, and records each outcome. Transient failures are retried on the
//! configured schedule until the email's lifetime runs out; permanent ones
//! go dead at once. A worker that dies leaves its leases to expire, and the
//! rows are claimed again. While a worker holds emails, it renews their
//! leases every third of a lease, so slow sends keep their emails.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::future::{BoxFuture, Fuse, FusedFuture};
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use lettre::Message;
use lettre::message::Mailbox;
use rand::Rng;
use tokio::sync::Notify;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::{Span, debug, info, instrument, warn};

use super::{OutgoingEmail, SendError, Templates, Transports};
use crate::crypto::KeyRing;
use crate::crypto::codes::{SEALED_CODE_FIELD, open_code};
use crate::domain::mail::retry_at;
use crate::redact::SecretUrl;
use crate::store::outbox::{ClaimedEmail, Completion, Outcome};
use crate::store::{self, EMAILS_CHANNEL, Store, StoreError, now, wake_on_notify};
use crate::telemetry::Metrics;

/// Tuning of the worker.
#[derive(Clone, Debug)]
pub struct WorkerOptions {
    /// The From of every email.
    pub from: Mailbox,
    /// Emails claimed per round.
    pub batch: u64,
    /// Emails of a round sent at the same time.
    pub concurrency: usize,
    /// How long a claim lasts before another worker may take the email.
    pub lease: Duration,
    /// The longest pause when nothing is due: the safety poll. The worker
    /// wakes sooner when this process commits new emails, when another
    /// process does (PostgreSQL, through `listen_url`), and when the next
    /// retry falls due.
    pub poll_interval: Duration,
    /// On PostgreSQL, the database to LISTEN on for emails other processes
    /// enqueue.
    pub listen_url: Option<SecretUrl>,
    /// No send starts while an outcome older than this waits to be
    /// recorded (`mail_record_within_ms`).
    pub record_within: Duration,
    /// `mail_worker_id`: leases carry it, and a restarted worker takes
    /// back its own at once.
    pub identity: Option<String>,
    /// Delay before retry N (the last one repeats).
    pub retry_schedule: Vec<Duration>,
    /// After this long since it was enqueued, a failing email goes dead.
    pub lifetime: Duration,
    /// Opens the gateway codes sealed in approval emails.
    pub secret: Option<KeyRing>,
}

/// Sends emails until `shutdown` is cancelled; the emails already claimed
/// are sent and recorded first, so no email is left half-recorded.
pub async fn run_worker(
    store: Store,
    templates: Arc<Templates>,
    transports: Arc<Transports>,
    options: WorkerOptions,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    info!("mail worker started");
    let held = HeldLeases::default();
    let sending_done = CancellationToken::new();
    let sending = async {
        send_until_shutdown(
            &store,
            &templates,
            &transports,
            &options,
            &metrics,
            &held,
            &shutdown,
        )
        .await;
        sending_done.cancel();
    };
    // Renewals run beside the sends, not between them: on SQLite a renewal
    // waits for the write turn that a send's outcome may hold.
    tokio::join!(
        sending,
        renew_held_leases(&store, &held, options.lease, &sending_done)
    );
    info!("mail worker stopped");
}

/// Claims and sends emails, `concurrency` at a time, until `shutdown` is
/// cancelled and every claimed email has been sent.
///
/// The next batch is claimed as soon as the last email of the previous one
/// has started, while its slowest sends are still in flight, so free
/// connections do not wait for a round's slowest email. At most one batch is
/// claimed and not started yet, and renewals cover it while it waits.
async fn send_until_shutdown(
    store: &Store,
    templates: &Templates,
    transports: &Transports,
    options: &WorkerOptions,
    metrics: &Metrics,
    held: &HeldLeases,
    shutdown: &CancellationToken,
) {
    let concurrency = options.concurrency.max(1);
    let woken = listen_for_emails(options, shutdown);
    let mut waiting: VecDeque<ClaimedEmail> = VecDeque::new();
    // The outcomes known are recorded together, in one transaction, while
    // the next ones are sent: whatever finished during a recording waits
    // for the next one (group commit). A crash before its outcome is
    // recorded leaves the lease to expire: the email is sent again, with
    // the same Message-ID.
    let mut in_flight = FuturesUnordered::new();
    let mut finished: Vec<(ClaimedEmail, Completion)> = Vec::new();
    let mut recording: Fuse<BoxFuture<'_, ()>> = Fuse::terminated();
    let mut claiming: Fuse<BoxFuture<'_, store::Result<Claimed>>> = Fuse::terminated();
    // When the oldest outcome not recorded yet came: in the recording under
    // way, and among those waiting for the next one. No send starts while
    // one is older than `record_within`, so a crash resends at most the
    // emails whose outcomes came in that time, and those in flight.
    let mut recording_since: Option<Instant> = None;
    let mut finished_since: Option<Instant> = None;
    // A worker with an identity first takes back what its previous
    // process held when it died.
    let mut taking_back = false;
    if let Some(identity) = &options.identity {
        claiming = take_back(store, identity, options.lease).boxed().fuse();
        taking_back = true;
    }
    // After a claim found nothing due: when to look again at the latest.
    let mut idle_until: Option<Instant> = None;
    loop {
        let behind = recording_since
            .or(finished_since)
            .is_some_and(|since| since.elapsed() > options.record_within);
        while !behind
            && in_flight.len() < concurrency
            && let Some(email) = waiting.pop_front()
        {
            in_flight.push(send_one(store, templates, transports, options, email));
        }
        if recording.is_terminated() && !finished.is_empty() {
            recording_since = finished_since.take();
            recording = record(store, metrics, held, std::mem::take(&mut finished))
                .boxed()
                .fuse();
        }
        let resting = idle_until.is_some_and(|until| Instant::now() < until);
        if waiting.is_empty() && claiming.is_terminated() && !resting && !shutdown.is_cancelled() {
            claiming = claim(store, options).boxed().fuse();
        }
        if shutdown.is_cancelled()
            && in_flight.is_empty()
            && claiming.is_terminated()
            && recording.is_terminated()
            && finished.is_empty()
        {
            // `waiting` is empty too: its emails start as soon as a send
            // is free.
            return;
        }
        tokio::select! {
            Some(done) = in_flight.next(), if !in_flight.is_empty() => {
                finished_since.get_or_insert_with(Instant::now);
                finished.push(done);
            }
            () = &mut recording, if !recording.is_terminated() => {
                recording_since = None;
                // A failure recorded has a retry time the last claim could
                // not see (the email was still leased): look again.
                idle_until = None;
            }
            claimed = &mut claiming, if !claiming.is_terminated() => {
                let claimed = claimed.unwrap_or_else(|error| {
                    warn!(error = %error, "could not claim emails; will retry");
                    Claimed { emails: Vec::new(), next_due: Some(now() + CLAIM_RETRY) }
                });
                // Nothing to take back: claim what is due at once.
                if claimed.emails.is_empty() && !std::mem::take(&mut taking_back) {
                    idle_until = Some(Instant::now() + idle_for(claimed.next_due, options.poll_interval));
                }
                held.claimed(&claimed.emails);
                waiting.extend(claimed.emails);
            }
            () = sleep_until(idle_until.unwrap_or_else(Instant::now)), if resting => {
                idle_until = None;
            }
            () = store.emails_due(), if resting => idle_until = None,
            () = woken.notified(), if resting => idle_until = None,
            () = shutdown.cancelled(), if !shutdown.is_cancelled() => {}
        }
    }
}

/// Signalled when another process commits emails (PostgreSQL: LISTEN on
/// `listen_url`, until `shutdown`); never on SQLite.
fn listen_for_emails(options: &WorkerOptions, shutdown: &CancellationToken) -> Arc<Notify> {
    let woken = Arc::new(Notify::new());
    if let Some(SecretUrl(url)) = options.listen_url.clone() {
        let channel = EMAILS_CHANNEL;
        tokio::spawn(wake_on_notify(
            url,
            channel,
            woken.clone(),
            shutdown.clone(),
        ));
    }
    woken
}

/// What a claim found: the emails claimed and, when there were none, when
/// the next pending email falls due.
struct Claimed {
    emails: Vec<ClaimedEmail>,
    next_due: Option<chrono::DateTime<chrono::Utc>>,
}

/// Claims a batch of due emails; when none is due, asks when the next one
/// will be (a retry's time, or a lease's end).
async fn claim(store: &Store, options: &WorkerOptions) -> store::Result<Claimed> {
    let emails = store
        .claim_emails_as(options.identity.as_deref(), options.batch, options.lease)
        .await?;
    let next_due = if emails.is_empty() {
        store.next_email_due().await?
    } else {
        None
    };
    Ok(Claimed { emails, next_due })
}

/// Pause after a claim that failed (at most the safety poll).
const CLAIM_RETRY: chrono::TimeDelta = chrono::TimeDelta::seconds(1);

/// Shortest pause after a claim that found nothing: lets a worker that
/// lost the rows due now to another one's claim not spin.
const MIN_IDLE: Duration = Duration::from_millis(100);

/// How long to rest after a claim found nothing due: until the next email
/// falls due, at most `poll_interval` (the safety poll) and at least
/// [`MIN_IDLE`] (unless the poll is shorter still).
fn idle_for(next_due: Option<chrono::DateTime<chrono::Utc>>, poll_interval: Duration) -> Duration {
    let until_due = next_due
        .map(|due| (due - now()).to_std().unwrap_or(Duration::ZERO))
        .unwrap_or(poll_interval);
    until_due.max(MIN_IDLE).min(poll_interval)
}

/// The emails a previous process of the worker `identity` held when it
/// died, claimed again at once.
async fn take_back(store: &Store, identity: &str, lease: Duration) -> store::Result<Claimed> {
    let taken = store.take_back_emails(identity, lease).await?;
    if !taken.is_empty() {
        info!(
            worker_id = identity,
            emails = taken.len(),
            "took back the emails this worker held before it restarted"
        );
    }
    Ok(Claimed {
        emails: taken,
        next_due: None,
    })
}

/// Sends one claimed email; the outcome is recorded later, with others.
/// Its span `mail_send` starts a trace of its own when traces are
/// exported: ids, the template, the attempt and the outcome, never the
/// recipient or the email's data.
#[instrument(
    name = "mail_send",
    skip_all,
    fields(
        otel.kind = "internal",
        email = %email.id,
        template = email.template.as_str(),
        attempt = email.attempt,
        transport = tracing::field::Empty,
        outcome = tracing::field::Empty,
    )
)]
async fn send_one(
    store: &Store,
    templates: &Templates,
    transports: &Transports,
    options: &WorkerOptions,
    email: ClaimedEmail,
) -> (ClaimedEmail, Completion) {
    // The key file as it is now (a rotation elsewhere adds master keys),
    // else the one read at start.
    let ring = store.key_ring();
    let ring = ring.as_deref().or(options.secret.as_ref());
    let completion = attempt(templates, transports, options, ring, &email).await;
    let span = Span::current();
    span.record(
        "outcome",
        match &completion.outcome {
            Outcome::Sent => "sent",
            Outcome::RetryAt { .. } => "retry",
            Outcome::Dead { .. } => "dead",
            Outcome::Suppressed { .. } => "suppressed",
        },
    );
    if let Some(transport) = &completion.transport {
        span.record("transport", transport.as_str());
    }
    (email, completion)
}

/// Records the outcomes of finished emails in one transaction and stops
/// renewing their leases.
async fn record(
    store: &Store,
    metrics: &Metrics,
    held: &HeldLeases,
    finished: Vec<(ClaimedEmail, Completion)>,
) {
    let results = store.complete_emails(&finished).await;
    for ((email, completion), result) in finished.iter().zip(results) {
        // Counted once recorded: an outcome another worker's lease
        // overrode is that worker's to count.
        let counter = match completion.outcome {
            Outcome::Sent => &metrics.emails_sent,
            Outcome::RetryAt { .. } => &metrics.emails_failed,
            Outcome::Dead { .. } => &metrics.emails_dead,
            Outcome::Suppressed { .. } => &metrics.delivery.suppressed,
        };
        match result {
            Ok(()) => {
                counter.inc(&[]);
                count_transport(metrics, completion);
            }
            Err(StoreError::LeaseLost) => {
                warn!(email = %email.id, "another worker claimed the email meanwhile; its outcome decides");
            }
            Err(error) => {
                warn!(email = %email.id, error = %error, "could not record the email outcome; its lease will expire and it will be retried");
            }
        }
        held.completed(email);
    }
}

/// The lease tokens under which this worker holds emails not completed
/// yet, with how many emails each still covers: what renewals extend.
#[derive(Debug, Default)]
struct HeldLeases {
    outstanding: Mutex<HashMap<String, usize>>,
}

impl HeldLeases {
    fn claimed(&self, emails: &[ClaimedEmail]) {
        let mut outstanding = self.lock();
        for email in emails {
            *outstanding.entry(email.lease_token.clone()).or_default() += 1;
        }
    }

    /// Forgets a token once its last email is completed (whatever the
    /// outcome): renewals stop there.
    fn completed(&self, email: &ClaimedEmail) {
        let mut outstanding = self.lock();
        if let Some(count) = outstanding.get_mut(&email.lease_token) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                outstanding.remove(&email.lease_token);
            }
        }
    }

    fn tokens(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        // The map stays consistent even if a holder panicked.
        self.outstanding
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Every third of `lease`, extends the leases `held` by another `lease`,
/// until `stop` is cancelled (checked between renewals, so a renewal is
/// never cut off halfway). A failed renewal is logged and tried again at
/// the next tick, while a third of the lease is still left.
async fn renew_held_leases(
    store: &Store,
    held: &HeldLeases,
    lease: Duration,
    stop: &CancellationToken,
) {
    let every = (lease / 3).max(Duration::from_millis(10));
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        let tokens = held.tokens();
        if tokens.is_empty() {
            continue;
        }
        match store.renew_leases(&tokens, lease).await {
            Ok(renewed) => debug!(renewed, "email leases renewed"),
            Err(error) => {
                warn!(error = %error, "could not renew email leases; will retry");
            }
        }
    }
}

/// The provider-side counters of a recorded attempt: failovers, and
/// emails accepted by a provider that reports delivery.
fn count_transport(metrics: &Metrics, completion: &Completion) {
    let Some(transport) = completion.transport.as_deref() else {
        return;
    };
    if completion.failed_over {
        metrics.delivery.failovers.inc(&[transport]);
    }
    let kind = transport.split('#').next().unwrap_or(transport);
    if completion.outcome == Outcome::Sent && crate::domain::mail::TRACKED_PROVIDERS.contains(&kind)
    {
        metrics.delivery.provider_accepted.inc(&[kind]);
    }
}

async fn attempt(
    templates: &Templates,
    transports: &Transports,
    options: &WorkerOptions,
    ring: Option<&KeyRing>,
    email: &ClaimedEmail,
) -> Completion {
    if email.erased {
        return Outcome::Dead {
            error: "the applicant's personal data was erased: nothing to send".to_owned(),
        }
        .into();
    }
    if let Some(reason) = &email.suppressed {
        return Outcome::Suppressed {
            reason: reason.clone(),
        }
        .into();
    }
    // A code that does not open is the server's configuration (a missing
    // or different secret key), not the email's fault: retried on the
    // schedule, so fixing the key delivers it, rather than dead at once.
    let data = match unseal_code(ring, email) {
        Ok(data) => data,
        Err(error) => return retry_or_give_up(options, email, error, None).into(),
    };
    let outgoing = match outgoing(templates, options, email, &data) {
        Ok(outgoing) => outgoing,
        Err(error) => return Outcome::Dead { error }.into(),
    };
    let attempt = transports
        .send(&outgoing, email.pinned_transport.as_deref())
        .await;
    let mut pin = false;
    let mut provider_message_id = None;
    let outcome = match attempt.result {
        Ok(id) => {
            provider_message_id = id;
            Outcome::Sent
        }
        Err(SendError::Permanent(error)) => Outcome::Dead { error },
        Err(SendError::Transient(error)) => retry_or_give_up(options, email, error, None),
        Err(SendError::Throttled(error, wait)) => retry_or_give_up(options, email, error, wait),
        Err(SendError::Unknown(error)) => {
            pin = true;
            retry_or_give_up(options, email, error, None)
        }
    };
    Completion {
        outcome,
        transport: Some(attempt.transport),
        provider_message_id,
        pin,
        failed_over: attempt.failed_over,
    }
}

/// The next attempt on the retry schedule (no sooner than `wait` when the
/// transport asked for one), or dead past the lifetime.
fn retry_or_give_up(
    options: &WorkerOptions,
    email: &ClaimedEmail,
    error: String,
    wait: Option<Duration>,
) -> Outcome {
    let jitter = rand::rng().random::<f64>();
    let now = now();
    let asked = wait
        .and_then(|wait| chrono::Duration::from_std(wait).ok())
        .map(|wait| now + wait);
    let scheduled = retry_at(
        email.attempt,
        &options.retry_schedule,
        options.lifetime,
        email.created_at,
        now,
        jitter,
    );
    let lifetime_end = chrono::Duration::from_std(options.lifetime)
        .ok()
        .map(|lifetime| email.created_at + lifetime);
    // The wait asked for, when it fits in the email's lifetime; else the
    // schedule's slot (a quota's hour must not kill an email that still has
    // a retry left).
    let next = match (scheduled, asked) {
        (Some(at), Some(asked)) if asked > at => Some(
            Some(asked)
                .filter(|asked| lifetime_end.is_some_and(|end| *asked <= end))
                .unwrap_or(at),
        ),
        (scheduled, _) => scheduled,
    };
    match next {
        Some(at) => {
            debug!(email = %email.id, attempt = email.attempt, "will retry");
            Outcome::RetryAt { error, at }
        }
        None => Outcome::Dead {
            error: format!("gave up after {} attempts: {error}", email.attempt),
        },
    }
}

/// The email's template values with its sealed gateway code, if any,
/// opened into `gateway_code`.
fn unseal_code(ring: Option<&KeyRing>, email: &ClaimedEmail) -> Result<serde_json::Value, String> {
    let mut data = email.data.clone();
    let Some(sealed) = data
        .as_object_mut()
        .and_then(|fields| fields.remove(SEALED_CODE_FIELD))
    else {
        return Ok(data);
    };
    let secret = ring.ok_or("the email carries a gateway code but no secret key is configured")?;
    let code = sealed
        .as_str()
        .and_then(|sealed| open_code(secret, email.access_request, sealed).ok())
        .ok_or("the gateway code does not open with this server's secret key")?;
    data["gateway_code"] = serde_json::Value::String(code);
    Ok(data)
}

/// The email as every transport takes it: rendered parts, addresses and
/// the stable Message-ID.
fn outgoing(
    templates: &Templates,
    options: &WorkerOptions,
    email: &ClaimedEmail,
    data: &serde_json::Value,
) -> Result<OutgoingEmail, String> {
    let rendered = templates
        .render(email.template, email.locale, email.user_type, data)
        .map_err(|error| error.to_string())?;
    let mut outgoing = address(
        &options.from,
        &email.id,
        &email.recipient,
        &email.message_id,
        rendered,
    )?;
    outgoing.template = Some(email.template.as_str().to_owned());
    Ok(outgoing)
}

/// The rendered parts addressed from `from` to `recipient`. The outbox id
/// `id` names the email and keys its idempotency.
fn address(
    from: &Mailbox,
    id: &str,
    recipient: &str,
    message_id: &str,
    rendered: super::Rendered,
) -> Result<OutgoingEmail, String> {
    let to: Mailbox = recipient
        .parse()
        .map_err(|error| format!("invalid recipient address: {error}"))?;
    Ok(OutgoingEmail {
        id: id.to_owned(),
        from: from.clone(),
        to,
        message_id: message_id.to_owned(),
        idempotency_key: id.to_owned(),
        subject: rendered.subject,
        text: rendered.text,
        html: rendered.html,
        headers: Vec::new(),
        template: None,
    })
}

/// The message (headers and both parts) the SMTP transports build for a
/// rendered email, before any DKIM signature. Public so that the fuzz
/// targets (`fuzz/`) check the headers really sent.
pub fn compose(
    from: &Mailbox,
    recipient: &str,
    message_id: &str,
    rendered: super::Rendered,
) -> Result<Message, String> {
    address(from, message_id, recipient, message_id, rendered)?
        .to_message(None)
        .map_err(|error| error.message().to_owned())
}
