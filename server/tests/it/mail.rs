//! The email pipeline end to end: the outbox filled in the same transaction
//! as the change, the worker sending through the file transport and through
//! a real SMTP server (aiosmtpd), retries, dead letters and leases.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use sesame_proto::v1 as pb;
use sesame_server::store::entities::{event, outbox};
use sesame_server::store::outbox::Outcome;

use crate::harness::{Backend, Client, TestServer, both_backends, valid_submission};

both_backends!(
    emails_reach_the_mail_folder_in_the_applicants_language,
    smtp_transient_failures_are_retried_and_delivered_once,
    smtp_permanent_failures_go_dead_at_once,
    an_expired_lease_cannot_record_an_outcome,
);

/// A real SMTP server process (tests/support/smtp_server.py, aiosmtpd)
/// whose replies follow a plan file. It exits when dropped.
struct SmtpServer {
    child: Child,
    port: u16,
    mail_dir: PathBuf,
    plan: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmtpServer {
    fn start() -> SmtpServer {
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

    fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    fn received(&self) -> Vec<String> {
        read_emails(&self.mail_dir)
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every `.eml` in `dir`, sorted by name.
fn read_emails(dir: &Path) -> Vec<String> {
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

async fn wait_for(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !done().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn outbox_rows(server: &TestServer) -> Vec<outbox::Model> {
    outbox::Entity::find()
        .order_by_asc(outbox::Column::CreatedAtUs)
        .order_by_asc(outbox::Column::Template)
        .all(server.store.connection())
        .await
        .unwrap()
}

async fn email_events(server: &TestServer) -> Vec<String> {
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
    let created = submit(&mut admin).await;
    admin
        .approve_access_request(pb::ApproveAccessRequestRequest {
            name: created.name.clone(),
            note: "Bienvenue <b>chez nous</b>".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    wait_for("three emails", async || read_emails(&folder).len() == 3).await;

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

async fn smtp_transient_failures_are_retried_and_delivered_once(backend: Backend) {
    let smtp = SmtpServer::start();
    smtp.plan("451,421,250");
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
    assert!(
        rows[0]
            .last_error
            .as_deref()
            .unwrap_or_default()
            .contains("421")
    );
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
