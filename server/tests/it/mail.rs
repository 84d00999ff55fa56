//! The email pipeline end to end: the outbox filled in the same transaction
//! as the change, the worker sending through the file transport and through
//! a real SMTP server (aiosmtpd), retries, dead letters and leases.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use sesame_proto::v1 as pb;
use sesame_server::mail::{WorkerOptions, run_worker};
use sesame_server::store::entities::{event, outbox};
use sesame_server::store::outbox::Outcome;

use crate::harness::{Backend, Client, TestServer, both_backends, valid_submission};

both_backends!(
    emails_reach_the_mail_folder_in_the_applicants_language,
    smtp_transient_failures_are_retried_and_delivered_once,
    smtp_permanent_failures_go_dead_at_once,
    an_expired_lease_cannot_record_an_outcome,
    outcomes_recorded_together_each_keep_their_own_fate,
    a_renewal_never_extends_a_lease_another_worker_took,
    leases_are_renewed_while_a_slow_server_sends_so_no_second_worker_resends,
    a_worker_crash_after_acceptance_resends_with_the_same_message_id,
    two_workers_never_send_the_same_email_twice,
    a_sigterm_mid_drain_records_every_outcome_so_nothing_is_sent_twice,
    a_sigkill_mid_drain_resends_only_the_last_moments_and_the_restart_takes_back_its_claims,
    admins_list_retry_and_preview_emails,
    a_resting_worker_wakes_on_new_emails_and_when_a_retry_falls_due,
);

/// Runs tests/support/dkim_verify.py (dkimpy) on a received email.
fn dkim_verifies(eml: &Path, public_key: &str) -> bool {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/dkim_verify.py");
    let output = Command::new("python3")
        .arg(script)
        .arg(eml)
        .args(["mail2026", "example.com", public_key])
        .output()
        .expect("python3 runs dkim_verify.py");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("dkim: "),
        "dkim_verify.py did not run (pip install dkimpy): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.status.success()
}

/// An RSA key pair from the openssl command: (PKCS#1 PEM file, public key
/// as the base64 DER of a DKIM DNS record).
fn rsa_key_pair(dir: &Path) -> (PathBuf, String) {
    let key = dir.join("dkim.pem");
    let status = Command::new("openssl")
        .args(["genrsa", "-traditional", "-out"])
        .arg(&key)
        .arg("2048")
        .stderr(Stdio::null())
        .status()
        .expect("the openssl command generates the test key");
    assert!(status.success());
    let public = Command::new("openssl")
        .args(["rsa", "-pubout", "-outform", "DER", "-in"])
        .arg(&key)
        .stderr(Stdio::null())
        .output()
        .expect("openssl rsa -pubout");
    assert!(public.status.success());
    (
        key,
        base64::engine::general_purpose::STANDARD.encode(public.stdout),
    )
}

#[tokio::test]
async fn emails_are_dkim_signed_when_a_key_is_configured() {
    let keys = tempfile::tempdir().unwrap();
    let (key_file, public_key) = rsa_key_pair(keys.path());
    let smtp = SmtpServer::start();
    let url = smtp.url();
    let server = TestServer::start_with(Backend::Sqlite, |config| {
        config.mail_worker = true;
        config.mail_poll_interval_ms = 50;
        config.mail_transport = url;
        config.mail_dkim_domain = Some("example.com".into());
        config.mail_dkim_selector = Some("mail2026".into());
        config.mail_dkim_key_file = Some(key_file.display().to_string());
    })
    .await;
    let mut alice = server.client(&server.keys.alice).await;
    submit(&mut alice).await;
    wait_for("delivery", async || smtp.received().len() == 1).await;
    let eml = std::fs::read_dir(&smtp.mail_dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| path.extension().is_some_and(|ext| ext == "eml"))
        .unwrap();
    let received = std::fs::read_to_string(&eml).unwrap();
    assert!(received.contains("DKIM-Signature:"), "{received}");
    assert!(received.contains("d=example.com"), "{received}");
    assert!(dkim_verifies(&eml, &public_key), "{received}");

    // The check is real: a changed subject no longer verifies.
    let tampered = keys.path().join("tampered.eml");
    std::fs::write(
        &tampered,
        received.replacen("Subject: ", "Subject: Re: ", 1),
    )
    .unwrap();
    assert!(!dkim_verifies(&tampered, &public_key));
    server.stop().await;
}

/// A real SMTP server process (tests/support/smtp_server.py, aiosmtpd)
/// whose replies follow a plan file. It exits when dropped.
pub struct SmtpServer {
    child: Child,
    port: u16,
    mail_dir: PathBuf,
    plan: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmtpServer {
    pub fn start() -> SmtpServer {
        let dir = tempfile::tempdir().unwrap();
        let port_file = dir.path().join("port");
        let mail_dir = dir.path().join("received");
        let plan = dir.path().join("plan");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/smtp_server.py");
        let child = Command::new("python3")
            .arg(script)
            .arg(&port_file)
            .arg(&mail_dir)
            .arg(&plan)
            .stdin(Stdio::piped())
            .spawn()
            .expect("python3 runs the test SMTP server (needs `pip install aiosmtpd`)");
        let started = std::time::Instant::now();
        let port = loop {
            if let Ok(text) = std::fs::read_to_string(&port_file) {
                break text.trim().parse().expect("a port number");
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the test SMTP server did not start; is aiosmtpd installed (pip install aiosmtpd)?"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        SmtpServer {
            child,
            port,
            mail_dir,
            plan,
            _dir: dir,
        }
    }

    fn plan(&self, replies: &str) {
        std::fs::write(&self.plan, replies).unwrap();
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    pub fn received(&self) -> Vec<String> {
        read_emails(&self.mail_dir)
    }

    /// When each email received so far was accepted: its file's
    /// modification time (written just before the server answers 250).
    fn acceptance_times(&self) -> Vec<std::time::SystemTime> {
        std::fs::read_dir(&self.mail_dir)
            .unwrap()
            .filter_map(Result::ok)
            .filter(|entry| entry.path().extension().is_some_and(|ext| ext == "eml"))
            .map(|entry| entry.metadata().unwrap().modified().unwrap())
            .collect()
    }
}

/// The most of `times` that fall within any `window`.
fn most_within(times: &[std::time::SystemTime], window: Duration) -> usize {
    let mut times = times.to_vec();
    times.sort();
    let mut most = 0;
    let mut start = 0;
    for (end, time) in times.iter().enumerate() {
        while time.duration_since(times[start]).unwrap() > window {
            start += 1;
        }
        most = most.max(end - start + 1);
    }
    most
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every `.eml` in `dir`, sorted by name.
pub fn read_emails(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "eml"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|path| std::fs::read_to_string(path).unwrap())
        .collect()
}

pub(crate) async fn wait_for(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !done().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The outbox rows, recipient and data opened (they are stored sealed).
pub(crate) async fn outbox_rows(server: &TestServer) -> Vec<outbox::Model> {
    let rows = outbox::Entity::find()
        .order_by_asc(outbox::Column::CreatedAtUs)
        .order_by_asc(outbox::Column::Template)
        .all(server.store.connection())
        .await
        .unwrap();
    let mut opened = Vec::with_capacity(rows.len());
    for mut row in rows {
        if let Some((recipient, data)) = server.store.open_email(&row).await.unwrap() {
            row.recipient = recipient;
            row.data = data.to_string();
        }
        opened.push(row);
    }
    opened
}

pub(crate) async fn email_events(server: &TestServer) -> Vec<String> {
    event::Entity::find()
        .filter(event::Column::EventType.starts_with("email."))
        .order_by_asc(event::Column::Seq)
        .all(server.store.connection())
        .await
        .unwrap()
        .into_iter()
        .map(|row| row.event_type)
        .collect()
}

async fn submit(client: &mut Client) -> pb::AccessRequest {
    client
        .submit_access_request(valid_submission())
        .await
        .unwrap()
        .into_inner()
        .access_request
        .unwrap()
}

async fn emails_reach_the_mail_folder_in_the_applicants_language(backend: Backend) {
    let mail_dir = tempfile::tempdir().unwrap();
    let folder = mail_dir.path().to_path_buf();
    let server = TestServer::start_with(backend, |config| {
        config.mail_worker = true;
        config.mail_poll_interval_ms = 50;
        config.mail_transport = format!("file://{}", folder.display());
        config.admin_emails = vec!["ops@example.com".into()];
    })
    .await;
    let mut admin = server.client(&server.keys.admin).await;
    let mut alice = server.client(&server.keys.alice).await;
    let created = submit(&mut alice).await;
    admin
        .approve_access_request(pb::ApproveAccessRequestRequest {
            name: created.name.clone(),
            note: "Bienvenue <b>chez nous</b>".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    wait_for("three emails", async || read_emails(&folder).len() == 3).await;
    // The file lands just before the outcome is recorded.
    wait_for("three sent rows", async || {
        let rows = outbox_rows(&server).await;
        rows.len() == 3 && rows.iter().all(|row| row.state == "sent")
    })
    .await;

    let rows = outbox_rows(&server).await;
    assert_eq!(rows.len(), 3);
    assert!(
        rows.iter()
            .all(|row| row.state == "sent" && row.attempts == 1)
    );
    for row in &rows {
        let email = std::fs::read_to_string(folder.join(format!("{}.eml", row.id))).unwrap();
        assert!(
            email.contains(&format!("Message-ID: {}", row.message_id)),
            "{email}"
        );
        assert!(email.contains(&format!("To: {}", row.recipient)));
        assert!(email.contains("From: Sesame <sesame@localhost>"));
        assert!(email.contains("multipart/alternative"));
        assert!(email.contains("text/plain") && email.contains("text/html"));
    }
    let approved = rows
        .iter()
        .find(|row| row.template == "applicant_approved")
        .unwrap();
    let approval = std::fs::read_to_string(folder.join(format!("{}.eml", approved.id))).unwrap();
    // The applicant chose French.
    assert!(approval.contains("Subject: Votre"), "{approval}");
    assert!(
        approval.contains("lang=\"fr\"") || approval.contains("lang=3D\"fr\""),
        "{approval}"
    );
    assert_eq!(approved.recipient, "ada@example.com");
    assert_eq!(approved.locale, "fr");
    let admin_row = rows
        .iter()
        .find(|row| row.template == "admin_new_request")
        .unwrap();
    assert_eq!(
        (admin_row.recipient.as_str(), admin_row.locale.as_str()),
        ("ops@example.com", "en")
    );
    wait_for("three sent events", async || {
        email_events(&server).await.len() == 3
    })
    .await;
    assert_eq!(email_events(&server).await, ["email.sent"; 3]);
    server.stop().await;
}

/// 451, then a connection dropped mid-conversation, then 250: delivered
/// once, after three attempts.
async fn smtp_transient_failures_are_retried_and_delivered_once(backend: Backend) {
    let smtp = SmtpServer::start();
    smtp.plan("451,drop,250");
    let url = smtp.url();
    let server = TestServer::start_with(backend, |config| {
        config.mail_worker = true;
        config.mail_poll_interval_ms = 50;
        config.mail_transport = url;
        config.mail_retry_schedule_secs = vec![1];
    })
    .await;
    let mut alice = server.client(&server.keys.alice).await;
    submit(&mut alice).await;
    wait_for("delivery", async || smtp.received().len() == 1).await;
    wait_for("the sent event", async || {
        email_events(&server).await.last().map(String::as_str) == Some("email.sent")
    })
    .await;
    let rows = outbox_rows(&server).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].state, "sent");
    assert_eq!(rows[0].attempts, 3);
    // The last failure was the dropped connection.
    assert!(rows[0].last_error.is_some());
    assert_eq!(
        email_events(&server).await,
        ["email.failed", "email.failed", "email.sent"]
    );
    let delivered = &smtp.received()[0];
    assert!(delivered.contains(&format!("Message-ID: {}", rows[0].message_id)));
    // Nothing more arrives.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(smtp.received().len(), 1);
    server.stop().await;
}

async fn smtp_permanent_failures_go_dead_at_once(backend: Backend) {
    let smtp = SmtpServer::start();
    smtp.plan("550");
    let url = smtp.url();
    let server = TestServer::start_with(backend, |config| {
        config.mail_worker = true;
        config.mail_poll_interval_ms = 50;
        config.mail_transport = url;
        config.mail_retry_schedule_secs = vec![1];
    })
    .await;
    let mut alice = server.client(&server.keys.alice).await;
    submit(&mut alice).await;
    wait_for("the dead event", async || {
        email_events(&server).await == ["email.dead"]
    })
    .await;
    let rows = outbox_rows(&server).await;
    assert_eq!((rows[0].state.as_str(), rows[0].attempts), ("dead", 1));
    assert!(rows[0].last_error.as_deref().unwrap().contains("550"));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        smtp.received().is_empty(),
        "no retry after a permanent failure"
    );
    assert_eq!(email_events(&server).await, ["email.dead"]);

    // The failure is on the event log, with the server's reply.
    let mut events = server.events(&server.keys.admin).await;
    let listed = events
        .list_events(pb::ListEventsRequest {
            event_types: vec![pb::EventType::EmailDead.into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    assert_eq!(listed.len(), 1);
    assert!(listed[0].reason.contains("550"), "{:?}", listed[0]);
    assert!(
        !listed[0].reason.contains("@"),
        "no address in events: {:?}",
        listed[0]
    );
    assert_eq!(listed[0].actor, "system");
    server.stop().await;
}

async fn an_expired_lease_cannot_record_an_outcome(backend: Backend) {
    // No worker runs: the test claims by hand.
    let server = TestServer::start(backend).await;
    let mut alice = server.client(&server.keys.alice).await;
    submit(&mut alice).await;
    let first = server
        .store
        .claim_emails(10, Duration::from_millis(300))
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    assert!(
        server
            .store
            .claim_emails(10, Duration::from_secs(60))
            .await
            .unwrap()
            .is_empty(),
        "a leased email is not claimed twice"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    // The lease expired: another worker reclaims the email...
    let second = server
        .store
        .claim_emails(10, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].id, first[0].id);
    assert_eq!(second[0].attempt, 2);
    // ...and the first worker can no longer record its outcome.
    let late = server.store.complete_email(&first[0], Outcome::Sent).await;
    assert!(
        matches!(late, Err(sesame_server::store::StoreError::LeaseLost)),
        "{late:?}"
    );
    server
        .store
        .complete_email(&second[0], Outcome::Sent)
        .await
        .unwrap();
    let rows = outbox_rows(&server).await;
    assert_eq!((rows[0].state.as_str(), rows[0].attempts), ("sent", 2));
    assert_eq!(email_events(&server).await, ["email.sent"]);
    server.stop().await;
}

/// Guards the worker's group commit of outcomes: in one transaction, an
/// outcome whose lease another worker took changes nothing, while the
/// others are recorded, each with its own event.
async fn outcomes_recorded_together_each_keep_their_own_fate(backend: Backend) {
    // No worker runs: the test claims by hand.
    let server = TestServer::start(backend).await;
    let mut alice = server.client(&server.keys.alice).await;
    for _ in 0..3 {
        submit(&mut alice).await;
    }
    let store = &server.store;
    let first = store
        .claim_emails(10, Duration::from_millis(300))
        .await
        .unwrap();
    assert_eq!(first.len(), 3);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let mut second = store
        .claim_emails(10, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(second.len(), 3);
    second.sort_by(|a, b| a.id.cmp(&b.id));
    let stale = first
        .iter()
        .find(|email| email.id == second[1].id)
        .unwrap()
        .clone();
    let retry_at = chrono::Utc::now() + chrono::Duration::minutes(5);
    let results = store
        .complete_emails(&[
            (second[0].clone(), Outcome::Sent.into()),
            (stale, Outcome::Sent.into()),
            (
                second[2].clone(),
                Outcome::RetryAt {
                    error: "451 4.3.0 try later".into(),
                    at: retry_at,
                }
                .into(),
            ),
        ])
        .await;
    assert_eq!(results.len(), 3);
    assert!(results[0].is_ok(), "{:?}", results[0]);
    assert!(
        matches!(results[1], Err(sesame_server::store::StoreError::LeaseLost)),
        "{:?}",
        results[1]
    );
    assert!(results[2].is_ok(), "{:?}", results[2]);
    let rows: std::collections::HashMap<String, outbox::Model> = outbox_rows(&server)
        .await
        .into_iter()
        .map(|row| (row.id.clone(), row))
        .collect();
    let sent = &rows[&second[0].id];
    assert_eq!(
        (sent.state.as_str(), sent.lease_token.as_deref()),
        ("sent", None)
    );
    assert!(sent.sent_at_us.is_some());
    // The stale worker's outcome left the second worker's claim alone.
    let taken = &rows[&second[1].id];
    assert_eq!(
        (taken.state.as_str(), taken.lease_token.as_deref()),
        ("pending", Some(second[1].lease_token.as_str()))
    );
    let failed = &rows[&second[2].id];
    assert_eq!(
        (
            failed.state.as_str(),
            failed.lease_token.as_deref(),
            failed.last_error.as_deref()
        ),
        ("pending", None, Some("451 4.3.0 try later"))
    );
    assert_eq!(
        failed.next_attempt_at_us,
        sesame_server::store::to_micros(retry_at)
    );
    assert_eq!(email_events(&server).await, ["email.sent", "email.failed"]);
    // The event chain still verifies after the shared transaction.
    let check = store.verify_chain(1, None).await.unwrap();
    assert!(check.broken.is_none(), "{check:?}");
    server.stop().await;
}

/// Guards lease renewal: it extends only the leases still held under the
/// worker's token, never one another worker claimed since, nor a completed
/// email's.
async fn a_renewal_never_extends_a_lease_another_worker_took(backend: Backend) {
    // No worker runs: the test claims by hand.
    let server = TestServer::start(backend).await;
    let mut alice = server.client(&server.keys.alice).await;
    submit(&mut alice).await;
    let store = &server.store;
    let first = store
        .claim_emails(10, Duration::from_millis(300))
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    let first_token = vec![first[0].lease_token.clone()];
    // Renewed, the lease outlives its first 300 ms.
    assert_eq!(
        store
            .renew_leases(&first_token, Duration::from_secs(60))
            .await
            .unwrap(),
        1
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        store
            .claim_emails(10, Duration::from_secs(60))
            .await
            .unwrap()
            .is_empty(),
        "a renewed lease is not claimed by another worker"
    );
    // Renewed for almost nothing, it runs out, and a second worker claims
    // the email under a new token.
    store
        .renew_leases(&first_token, Duration::from_millis(1))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let second = store
        .claim_emails(10, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(second.len(), 1);
    let taken = outbox_rows(&server).await.remove(0);
    // The first worker's renewal now changes nothing.
    assert_eq!(
        store
            .renew_leases(&first_token, Duration::from_secs(3600))
            .await
            .unwrap(),
        0
    );
    let after = outbox_rows(&server).await.remove(0);
    assert_eq!(after.lease_token, Some(second[0].lease_token.clone()));
    assert_eq!(after.lease_expires_at_us, taken.lease_expires_at_us);
    // Nor does a renewal after completion.
    store
        .complete_email(&second[0], Outcome::Sent)
        .await
        .unwrap();
    assert_eq!(
        store
            .renew_leases(&[second[0].lease_token.clone()], Duration::from_secs(60))
            .await
            .unwrap(),
        0
    );
    let sent = outbox_rows(&server).await.remove(0);
    assert_eq!(
        (
            sent.state.as_str(),
            sent.lease_token,
            sent.lease_expires_at_us
        ),
        ("sent", None, None)
    );
    server.stop().await;
}

/// Guards against resending when a round outlasts its lease: every email
/// takes 3 s at the SMTP server, the lease lasts 2 s, and a second worker
/// polls all along; the first worker's renewals keep every email its own,
/// the ones waiting for a free connection included.
async fn leases_are_renewed_while_a_slow_server_sends_so_no_second_worker_resends(
    backend: Backend,
) {
    let smtp = SmtpServer::start();
    let server = TestServer::start(backend).await;
    let mut alice = server.client(&server.keys.alice).await;
    let request = submit(&mut alice).await;
    enqueue_directly(&server, &request, 5).await;
    // With the applicant's own received email.
    let total = 6;
    smtp.plan(&vec!["sleep:3"; total * 2].join(","));

    let stop = tokio_util::sync::CancellationToken::new();
    let spawn_worker = |store: sesame_server::store::Store| {
        // Three at a time: half of the batch waits 3 s for a connection,
        // longer than the lease.
        let options = WorkerOptions {
            from: "Sesame <sesame@localhost>".parse().unwrap(),
            batch: 10,
            concurrency: 3,
            lease: Duration::from_secs(2),
            poll_interval: Duration::from_millis(50),
            listen_url: None,
            record_within: Duration::from_millis(50),
            identity: None,
            retry_schedule: vec![Duration::from_secs(1)],
            lifetime: Duration::from_secs(3600),
            secret: None,
        };
        tokio::spawn(run_worker(
            store,
            std::sync::Arc::new(sesame_server::mail::Templates::builtin().unwrap()),
            std::sync::Arc::new(sesame_server::mail::Transports::single(
                sesame_server::mail::Transport::from_url(&smtp.url(), Duration::from_secs(10), 3)
                    .unwrap(),
            )),
            options,
            std::sync::Arc::new(sesame_server::telemetry::Metrics::default()),
            stop.clone(),
        ))
    };
    let open_store = async || server.other_store().await;
    let first = spawn_worker(open_store().await);
    wait_for("the first worker's claim", async || {
        outbox_rows(&server)
            .await
            .iter()
            .all(|row| row.lease_token.is_some())
    })
    .await;
    let second = spawn_worker(open_store().await);
    wait_for("every email sent", async || {
        server.store.count_emails("sent").await.unwrap() as usize == total
    })
    .await;
    // Time for a duplicate in flight to arrive.
    tokio::time::sleep(Duration::from_secs(4)).await;
    stop.cancel();
    first.await.unwrap();
    second.await.unwrap();
    let received = smtp.received();
    assert_eq!(received.len(), total, "the SMTP server got each email once");
    assert_eq!(message_ids(&received).len(), total, "no Message-ID twice");
    let rows = outbox_rows(&server).await;
    assert!(
        rows.iter()
            .all(|row| row.state == "sent" && row.attempts == 1),
        "{rows:?}"
    );
    assert_eq!(email_events(&server).await, vec!["email.sent"; total]);
    server.stop().await;
}

/// A worker that dies after the SMTP server accepted an email but before it
/// recorded the outcome: the lease expires, another worker sends it again
/// with the same Message-ID, and the row ends sent. Nothing is lost.
async fn a_worker_crash_after_acceptance_resends_with_the_same_message_id(backend: Backend) {
    let smtp = SmtpServer::start();
    let server = TestServer::start(backend).await;
    let mut alice = server.client(&server.keys.alice).await;
    submit(&mut alice).await;

    // The crashing worker: claims, sends, and dies before recording.
    let claimed = server
        .store
        .claim_emails(10, Duration::from_millis(500))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    let transport =
        sesame_server::mail::Transport::from_url(&smtp.url(), Duration::from_secs(5), 4).unwrap();
    let templates = sesame_server::mail::Templates::builtin().unwrap();
    let rendered = templates
        .render(
            claimed[0].template,
            claimed[0].locale,
            claimed[0].user_type,
            &claimed[0].data,
        )
        .unwrap();
    let email = sesame_server::mail::OutgoingEmail {
        id: claimed[0].id.clone(),
        from: "Sesame <sesame@localhost>".parse().unwrap(),
        to: claimed[0].recipient.parse().unwrap(),
        message_id: claimed[0].message_id.clone(),
        idempotency_key: claimed[0].id.clone(),
        subject: rendered.subject,
        text: rendered.text,
        html: rendered.html,
        headers: Vec::new(),
        template: None,
    };
    transport.send(&email).await.unwrap();
    drop(claimed);

    // A healthy worker takes over once the lease has expired.
    let options = WorkerOptions {
        from: "Sesame <sesame@localhost>".parse().unwrap(),
        batch: 10,
        concurrency: 4,
        lease: Duration::from_secs(30),
        poll_interval: Duration::from_millis(50),
        listen_url: None,
        record_within: Duration::from_millis(50),
        identity: None,
        retry_schedule: vec![Duration::from_secs(1)],
        lifetime: Duration::from_secs(3600),
        secret: None,
    };
    let stop = tokio_util::sync::CancellationToken::new();
    let worker = tokio::spawn(run_worker(
        server.store.clone(),
        std::sync::Arc::new(templates),
        std::sync::Arc::new(sesame_server::mail::Transports::single(transport)),
        options,
        std::sync::Arc::new(sesame_server::telemetry::Metrics::default()),
        stop.clone(),
    ));
    wait_for("the resend", async || smtp.received().len() == 2).await;
    wait_for("the sent row", async || {
        outbox_rows(&server)
            .await
            .iter()
            .all(|row| row.state == "sent")
    })
    .await;
    stop.cancel();
    worker.await.unwrap();
    let rows = outbox_rows(&server).await;
    assert_eq!(rows[0].attempts, 2);
    let received = smtp.received();
    let header = format!("Message-ID: {}", rows[0].message_id);
    assert!(
        received.iter().all(|email| email.contains(&header)),
        "both copies carry the same Message-ID"
    );
    assert_eq!(email_events(&server).await, ["email.sent"]);
    server.stop().await;
}

/// Queues `count` applicant emails about `request` straight into the
/// outbox, due now.
async fn enqueue_directly(server: &TestServer, request: &pb::AccessRequest, count: usize) {
    use sea_orm::Set;
    let request_id = request
        .name
        .trim_start_matches("accessRequests/")
        .to_owned();
    let now = chrono::Utc::now().timestamp_micros();
    let data = serde_json::json!({
        "full_name": "Ada", "organization": "AE", "applicant_email": "ada@example.com",
        "resource": "vpn", "request": request.name, "user_type": "partner", "reason": null,
    })
    .to_string();
    let rows: Vec<outbox::ActiveModel> = (0..count)
        .map(|index| {
            let id = uuid::Uuid::now_v7();
            outbox::ActiveModel {
                id: Set(id.to_string()),
                idempotency_key: Set(format!("bulk:{index}")),
                message_id: Set(format!("<{id}@sesame>")),
                access_request_id: Set(request_id.clone()),
                event_seq: Set(1),
                template: Set("applicant_received".into()),
                locale: Set("en".into()),
                user_type: Set("partner".into()),
                recipient: Set(format!("user{index}@example.com")),
                data: Set(data.clone()),
                state: Set("pending".into()),
                attempts: Set(0),
                next_attempt_at_us: Set(now),
                lease_token: Set(None),
                lease_expires_at_us: Set(None),
                last_error: Set(None),
                created_at_us: Set(now),
                updated_at_us: Set(now),
                sent_at_us: Set(None),
                requeued_at_us: Set(None),
                purged_at_us: Set(None),
                ..Default::default()
            }
        })
        .collect();
    for chunk in rows.chunks(500) {
        outbox::Entity::insert_many(chunk.to_vec())
            .exec(server.store.connection())
            .await
            .unwrap();
    }
}

/// The distinct Message-IDs of `received` emails.
fn message_ids(received: &[String]) -> std::collections::HashSet<String> {
    received
        .iter()
        .filter_map(|email| {
            email
                .lines()
                .find(|line| line.starts_with("Message-ID:"))
                .map(str::to_owned)
        })
        .collect()
}

/// Two workers on one database drain 10,000 emails on PostgreSQL (1,000 on
/// SQLite, whose claims are serialised anyway): each is sent exactly once.
async fn two_workers_never_send_the_same_email_twice(backend: Backend) {
    let emails: usize = match backend {
        Backend::Postgres => 10_000,
        Backend::Sqlite => 1_000,
    };
    let smtp = SmtpServer::start();
    let server = TestServer::start(backend).await;
    let mut alice = server.client(&server.keys.alice).await;
    let request = submit(&mut alice).await;
    // Enqueue directly: the submit path is covered above; here the volume
    // matters.
    enqueue_directly(&server, &request, emails).await;
    // The applicant's own received email is pending too.
    let total = emails + 1;

    let stop = tokio_util::sync::CancellationToken::new();
    let mut workers = Vec::new();
    for _ in 0..2 {
        let store = server.other_store().await;
        let options = WorkerOptions {
            from: "Sesame <sesame@localhost>".parse().unwrap(),
            batch: 50,
            concurrency: 8,
            lease: Duration::from_secs(120),
            poll_interval: Duration::from_millis(50),
            listen_url: None,
            record_within: Duration::from_millis(50),
            identity: None,
            retry_schedule: vec![Duration::from_secs(1)],
            lifetime: Duration::from_secs(3600),
            secret: None,
        };
        workers.push(tokio::spawn(run_worker(
            store,
            std::sync::Arc::new(sesame_server::mail::Templates::builtin().unwrap()),
            std::sync::Arc::new(sesame_server::mail::Transports::single(
                sesame_server::mail::Transport::from_url(&smtp.url(), Duration::from_secs(10), 8)
                    .unwrap(),
            )),
            options,
            std::sync::Arc::new(sesame_server::telemetry::Metrics::default()),
            stop.clone(),
        )));
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(240);
    loop {
        let sent = server.store.count_emails("sent").await.unwrap() as usize;
        if sent == total {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "only {sent} of {total} sent in 240 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.cancel();
    for worker in workers {
        worker.await.unwrap();
    }
    let received = smtp.received();
    assert_eq!(received.len(), total, "the SMTP server got each email once");
    assert_eq!(message_ids(&received).len(), total, "no Message-ID twice");
    let rows = outbox_rows(&server).await;
    assert!(
        rows.iter()
            .all(|row| row.state == "sent" && row.attempts == 1)
    );
    assert_eq!(email_events(&server).await.len(), total);
    server.stop().await;
}

async fn admins_list_retry_and_preview_emails(backend: Backend) {
    use tonic::Code;

    use crate::harness::assert_error;
    let smtp = SmtpServer::start();
    smtp.plan("550");
    let url = smtp.url();
    let server = TestServer::start_with(backend, |config| {
        config.mail_worker = true;
        config.mail_poll_interval_ms = 50;
        config.mail_transport = url;
        config.admin_emails = vec!["ops@example.com".into()];
    })
    .await;
    let mut alice = server.client(&server.keys.alice).await;
    let created = submit(&mut alice).await;
    // One of the two emails is refused for good, the other goes through.
    wait_for("both outcomes", async || {
        email_events(&server).await.len() == 2
    })
    .await;

    let mut emails = server.emails(&server.keys.admin).await;
    let dead = emails
        .list_emails(pb::ListEmailsRequest {
            state: pb::EmailState::Dead.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .emails;
    assert_eq!(dead.len(), 1, "{dead:?}");
    let dead = &dead[0];
    assert!(dead.name.starts_with("emails/"));
    assert_eq!(dead.access_request, created.name);
    assert!(["ada@example.com", "ops@example.com"].contains(&dead.recipient.as_str()));
    assert_eq!(dead.attempts, 1);
    assert!(dead.last_error.contains("550"));
    assert!(dead.next_attempt_time.is_none());

    // Paging through all emails of the request, one per page.
    let mut names = Vec::new();
    let mut token = String::new();
    loop {
        let page = emails
            .list_emails(pb::ListEmailsRequest {
                page_size: 1,
                page_token: token.clone(),
                access_request: created.name.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        names.extend(page.emails.into_iter().map(|email| email.name));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(names.len(), 2);

    // Retry the dead one: the server now accepts it.
    let retried = emails
        .retry_email(pb::RetryEmailRequest {
            name: dead.name.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .email
        .unwrap();
    assert_eq!(retried.state(), pb::EmailState::Pending);
    assert_eq!((retried.attempts, retried.last_error.as_str()), (0, ""));
    wait_for("the retried email", async || smtp.received().len() == 2).await;
    wait_for("the sent row", async || {
        outbox_rows(&server)
            .await
            .iter()
            .all(|row| row.state == "sent")
    })
    .await;
    assert_error(
        emails
            .retry_email(pb::RetryEmailRequest {
                name: dead.name.clone(),
            })
            .await,
        Code::FailedPrecondition,
        "EMAIL_NOT_DEAD",
    );
    assert_error(
        emails
            .retry_email(pb::RetryEmailRequest {
                name: "emails/0190a5f0-0000-7000-8000-000000000000".into(),
            })
            .await,
        Code::NotFound,
        "EMAIL_NOT_FOUND",
    );
    assert_error(
        emails
            .retry_email(pb::RetryEmailRequest {
                name: "nope".into(),
            })
            .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );

    // Preview: French, with given values escaped in HTML.
    let preview = emails
        .preview_email(pb::PreviewEmailRequest {
            template: pb::EmailTemplate::ApplicantApproved.into(),
            locale: "fr".into(),
            user_type: pb::UserType::Partner.into(),
            data_json: r#"{"full_name": "<b>Zoé</b>"}"#.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        preview.subject.starts_with("Votre accès"),
        "{}",
        preview.subject
    );
    assert!(preview.text.contains("<b>Zoé</b>"));
    assert!(preview.html.contains("&lt;b&gt;Zoé"), "{}", preview.html);
    assert!(!preview.html.contains("<b>Zoé"));
    let status = assert_error(
        emails
            .preview_email(pb::PreviewEmailRequest {
                template: 0,
                locale: "de".into(),
                data_json: "[1]".into(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(
        crate::harness::bad_fields(&status),
        ["template", "locale", "data_json"]
    );

    // Recipients are personal data: admins only.
    let mut auditor = server.emails(&server.keys.auditor).await;
    assert_error(
        auditor.list_emails(pb::ListEmailsRequest::default()).await,
        Code::PermissionDenied,
        "ROLE_NOT_ALLOWED",
    );
    server.stop().await;
}

/// `sesame worker` (the real process) drains 1,000 emails into a real SMTP
/// server and gets SIGTERM midway: it exits 0 having recorded every email
/// it sent, so a second worker sends each remaining email once and none
/// twice.
async fn a_sigterm_mid_drain_records_every_outcome_so_nothing_is_sent_twice(backend: Backend) {
    let smtp = SmtpServer::start();
    let server = TestServer::start(backend).await;
    let mut alice = server.client(&server.keys.alice).await;
    let request = submit(&mut alice).await;
    enqueue_directly(&server, &request, 1_000).await;
    let total = 1_001;
    let dir = tempfile::tempdir().unwrap();
    let worker = || {
        worker_command(dir.path(), &server, &smtp)
            .spawn()
            .expect("spawn sesame worker")
    };
    let mut first = worker();
    wait_for("a third of the emails", async || {
        smtp.received().len() >= 300
    })
    .await;
    let status = Command::new("kill")
        .args(["-TERM", &first.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || first.wait().unwrap())
        .await
        .unwrap();
    assert!(exit.success(), "the worker exits 0 on SIGTERM: {exit:?}");
    let sent_before = message_ids(&smtp.received());
    assert!(
        sent_before.len() < total,
        "SIGTERM came before the end of the drain"
    );
    let recorded = outbox::Entity::find()
        .filter(outbox::Column::State.eq("sent"))
        .all(server.store.connection())
        .await
        .unwrap();
    assert_eq!(
        recorded.len(),
        sent_before.len(),
        "every email the SMTP server accepted is recorded as sent"
    );

    let mut second = worker();
    // A shared CI machine drains slower than 20 s: allow two minutes.
    tokio::time::timeout(Duration::from_secs(120), async {
        while smtp.received().len() < total {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the second worker drains the rest within two minutes");
    // Anything sent twice would arrive just after.
    tokio::time::sleep(Duration::from_millis(500)).await;
    second.kill().unwrap();
    second.wait().unwrap();
    let received = smtp.received();
    assert_eq!(received.len(), total, "no email sent twice");
    assert_eq!(message_ids(&received).len(), total);
    server.stop().await;
}

/// `sesame worker` (the real process, `mail_concurrency` 4,
/// `mail_record_within_ms` 20, `mail_worker_id` w1, 10-minute leases)
/// drains 1,000 emails into a real SMTP server and is SIGKILLed midway.
/// Restarted with the same identity it takes back its claims at once (not
/// after the 10-minute leases) and finishes the drain; the emails sent
/// twice are at most those whose outcomes came within 20 ms of the oldest
/// outcome not recorded, and those in flight. The first is bounded by the
/// most emails the SMTP server accepted in any 20 ms of the first
/// process's drain (its busiest moment, not its average: a drain that
/// waits on slow recordings sends in bursts), the second by the
/// concurrency, once for the sends under way and once for the slack
/// between the server's acceptance and the worker reading the answer.
async fn a_sigkill_mid_drain_resends_only_the_last_moments_and_the_restart_takes_back_its_claims(
    backend: Backend,
) {
    const CONCURRENCY: usize = 4;
    const RECORD_WITHIN_MS: u64 = 20;
    let smtp = SmtpServer::start();
    let server = TestServer::start(backend).await;
    let mut alice = server.client(&server.keys.alice).await;
    let request = submit(&mut alice).await;
    enqueue_directly(&server, &request, 1_000).await;
    let total = 1_001;
    let dir = tempfile::tempdir().unwrap();
    let worker = || {
        worker_command(dir.path(), &server, &smtp)
            .env("SESAME_MAIL_CONCURRENCY", CONCURRENCY.to_string())
            .env("SESAME_MAIL_RECORD_WITHIN_MS", RECORD_WITHIN_MS.to_string())
            .env("SESAME_MAIL_WORKER_ID", "w1")
            .env("SESAME_MAIL_LEASE_SECS", "600")
            .spawn()
            .expect("spawn sesame worker")
    };
    let mut first = worker();
    wait_for("a third of the emails", async || {
        smtp.received().len() >= 300
    })
    .await;
    first.kill().unwrap();
    first.wait().unwrap();
    let sent_before = smtp.received().len();
    let busiest = most_within(
        &smtp.acceptance_times(),
        Duration::from_millis(RECORD_WITHIN_MS),
    );
    assert!(
        sent_before < total,
        "SIGKILL came before the end of the drain"
    );

    let restarted = std::time::Instant::now();
    let mut second = worker();
    // Without the take-back, the emails the first process held would wait
    // for their 10-minute leases.
    tokio::time::timeout(Duration::from_secs(120), async {
        while message_ids(&smtp.received()).len() < total {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the restarted worker drains the rest, its old claims included, within two minutes");
    let drained = restarted.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    second.kill().unwrap();
    second.wait().unwrap();
    let received = smtp.received();
    assert_eq!(message_ids(&received).len(), total, "every email arrived");
    let twice = received.len() - total;
    let bound = busiest + 2 * CONCURRENCY;
    eprintln!(
        "sigkill: {sent_before} received before the kill, at most {busiest} in any \
         {RECORD_WITHIN_MS} ms; {twice} sent twice (bound {bound}), the rest drained in \
         {drained:?} after the restart"
    );
    assert!(
        twice <= bound,
        "{twice} emails sent twice after the kill; the bound is {bound}"
    );
    server.stop().await;
}

/// A worker whose safety poll is a minute still sends at once: the commit
/// that enqueues an email wakes it, and after a failure it rests only
/// until the retry falls due (1 s here), not until the next poll.
async fn a_resting_worker_wakes_on_new_emails_and_when_a_retry_falls_due(backend: Backend) {
    let smtp = SmtpServer::start();
    smtp.plan("451");
    let url = smtp.url();
    let server = TestServer::start_with(backend, |config| {
        config.mail_worker = true;
        config.mail_poll_interval_ms = 60_000;
        config.mail_transport = url;
        config.mail_retry_schedule_secs = vec![1];
    })
    .await;
    // The worker's first claim found nothing: it rests for its poll.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut alice = server.client(&server.keys.alice).await;
    let started = std::time::Instant::now();
    submit(&mut alice).await;
    wait_for("the failure, then the retry's delivery", async || {
        smtp.received().len() == 1
    })
    .await;
    let retried = started.elapsed();
    assert_eq!(
        email_events(&server).await[..1],
        ["email.failed"],
        "the first attempt failed (451)"
    );
    assert!(
        retried < Duration::from_secs(10),
        "sent {retried:?} after the submit: the retry waited for the poll"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = std::time::Instant::now();
    submit(&mut alice).await;
    wait_for("the second email", async || smtp.received().len() == 2).await;
    let woken = started.elapsed();
    assert!(
        woken < Duration::from_secs(5),
        "sent {woken:?} after the submit: the enqueue did not wake the worker"
    );
    server.stop().await;
}

/// On PostgreSQL a separate `sesame worker` process, resting on a minute's
/// safety poll, is woken by the NOTIFY of the server's commit that
/// enqueued an email.
#[tokio::test]
async fn a_separate_worker_on_postgres_wakes_on_the_servers_commit() {
    let smtp = SmtpServer::start();
    let server = TestServer::start(Backend::Postgres).await;
    let dir = tempfile::tempdir().unwrap();
    let mut worker = worker_command(dir.path(), &server, &smtp)
        .env("SESAME_MAIL_POLL_INTERVAL_MS", "60000")
        .spawn()
        .expect("spawn sesame worker");
    // Its first claim found nothing and it is listening: it rests.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut alice = server.client(&server.keys.alice).await;
    let started = std::time::Instant::now();
    submit(&mut alice).await;
    wait_for("the email", async || smtp.received().len() == 1).await;
    let woken = started.elapsed();
    worker.kill().unwrap();
    worker.wait().unwrap();
    assert!(
        woken < Duration::from_secs(5),
        "sent {woken:?} after the submit: the NOTIFY did not wake the worker"
    );
    server.stop().await;
}

/// `sesame worker` (the real process) in `dir`, on `server`'s database and
/// key file, sending to `smtp`, polling every 50 ms, without a scheduler.
fn worker_command(dir: &Path, server: &TestServer, smtp: &SmtpServer) -> Command {
    let mut command = crate::cli::sesame(dir);
    command
        .arg("worker")
        .env("SESAME_DATABASE_URL", &server.config.database_url)
        .env(
            "SESAME_SECRET_KEY_FILE",
            server.config.secret_key_file.as_deref().unwrap(),
        )
        .env("SESAME_MAIL_TRANSPORT", smtp.url())
        .env("SESAME_MAIL_POLL_INTERVAL_MS", "50")
        .env("SESAME_SCHEDULER", "false")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}
