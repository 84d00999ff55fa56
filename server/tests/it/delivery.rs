//! Email through the HTTP providers, end to end against local servers that
//! speak Resend's and SendGrid's APIs (`providers.rs`): what each provider
//! receives, delivery reports by signed webhook onto the email, the log,
//! the live stream and GetStats, suppression after a hard bounce, failover
//! and its way back, and an email accepted once however often it is
//! retried.

use std::time::Duration;

use base64::Engine;
use sea_orm::EntityTrait;
use sesame_proto::v1 as pb;
use sesame_proto::v1::watch_events_response::Kind;
use sesame_server::Config;

use crate::harness::{Backend, TestServer, both_backends, valid_submission};
use crate::mail::{email_events, outbox_rows, wait_for};
use crate::providers::{
    Answer, FakeProvider, post_resend_webhook, post_resend_webhook_raw, post_sendgrid_webhook,
    resend_event, sendgrid_event, sendgrid_key_pair,
};

both_backends!(
    resend_delivery_is_reported_by_webhook_onto_the_email_the_stream_and_the_stats,
    a_hard_bounce_suppresses_the_address_until_an_admin_lifts_it,
    sendgrid_answers_are_classified_and_its_webhooks_applied,
    a_failing_provider_hands_over_to_the_next_and_gets_the_traffic_back,
    an_unknown_outcome_is_retried_on_the_same_provider_and_accepted_once,
    a_worker_killed_after_resend_accepted_leaves_one_email,
);

const API_KEY: &str = "re_test_0123456789";
const SENDGRID_KEY: &str = "SG.test.0123456789";

/// A `whsec_` secret as Resend shows it.
fn webhook_secret() -> String {
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(b"sesame test webhook signing key!")
    )
}

/// Settings of a server whose worker sends through `transport`, quickly.
fn mail_through(config: &mut Config, transport: &str) {
    config.mail_worker = true;
    config.mail_poll_interval_ms = 50;
    config.mail_retry_schedule_secs = vec![1];
    config.mail_timeout_secs = 2;
    config.mail_lease_secs = 10;
    config.mail_transport = transport.to_owned();
    // The providers send only from a domain of the account.
    config.mail_from = "Sesame <sesame@example.com>".to_owned();
}

/// Sends through the local Resend at `base`, and takes its webhooks.
fn use_resend(config: &mut Config, base: String) {
    config.mail_resend_base_url = base;
    config.mail_resend_api_key = Some(API_KEY.into());
    config.mail_resend_webhook_secret = Some(webhook_secret());
}

/// Sends through the local SendGrid at `base`.
fn use_sendgrid(config: &mut Config, base: String) {
    config.mail_sendgrid_base_url = base;
    config.mail_sendgrid_api_key = Some(SENDGRID_KEY.into());
}

async fn submit(server: &TestServer) -> pb::AccessRequest {
    let mut alice = server.client(&server.keys.alice).await;
    alice
        .submit_access_request(valid_submission())
        .await
        .unwrap()
        .into_inner()
        .access_request
        .unwrap()
}

async fn approve(server: &TestServer, request: &pb::AccessRequest) {
    let mut admin = server.client(&server.keys.admin).await;
    admin
        .approve_access_request(pb::ApproveAccessRequestRequest {
            name: request.name.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
}

async fn list_emails(server: &TestServer) -> Vec<pb::Email> {
    let mut emails = server.emails(&server.keys.admin).await;
    emails
        .list_emails(pb::ListEmailsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .emails
}

fn webhook_url(server: &TestServer, provider: &str) -> String {
    format!("http://{}/webhooks/{provider}", server.addr)
}

/// The outbox id of an email's resource name.
fn outbox_id(email: &pb::Email) -> &str {
    email.name.strip_prefix("emails/").unwrap()
}

/// Submit, then approve: the received email goes out at once; the approval
/// email after. The provider gets every field as its API documents them;
/// the delivered webhook reaches the email, the log, a watcher and
/// GetStats; a replay changes nothing; a bad signature or body stores
/// nothing.
async fn resend_delivery_is_reported_by_webhook_onto_the_email_the_stream_and_the_stats(
    backend: Backend,
) {
    let resend = FakeProvider::resend(API_KEY).await;
    let base = resend.base_url();
    let server = TestServer::start_with(backend, |config| {
        mail_through(config, "resend://");
        use_resend(config, base);
    })
    .await;
    let request = submit(&server).await;
    let accepted = resend.wait_accepted(1, Duration::from_secs(20)).await;
    let emails = list_emails(&server).await;
    assert_eq!(emails.len(), 1);
    let received = &emails[0];
    // What Resend got: the parts, the outbox id as idempotency key and tag.
    let body = &accepted[0].body;
    assert_eq!(body["to"], serde_json::json!(["ada@example.com"]));
    assert_eq!(body["from"], "Sesame <sesame@example.com>");
    assert!(body["subject"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(body["html"].as_str().is_some_and(|h| h.contains("<")));
    assert_eq!(body["headers"]["Message-ID"], received.message_id);
    assert_eq!(
        accepted[0].idempotency_key.as_deref(),
        Some(outbox_id(received))
    );
    // The address and the name, not "ada" alone: the ids in the tags are
    // hexadecimal and may hold it.
    let tags = body["tags"].to_string();
    assert!(
        !tags.contains("ada@example.com") && !tags.contains("Lovelace"),
        "tags carry no personal data: {tags}"
    );
    wait_for("the sent state", async || {
        list_emails(&server).await[0].state == pb::EmailState::Sent as i32
    })
    .await;
    let received = list_emails(&server).await.remove(0);
    assert_eq!(received.provider, "resend");
    assert_eq!(received.provider_message_id, accepted[0].id);
    assert_eq!(received.delivery, pb::EmailDelivery::Unspecified as i32);

    // A watcher sees the delivery live.
    let mut events = server.events(&server.keys.auditor).await;
    let mut stream = events
        .watch_events(pb::WatchEventsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let url = webhook_url(&server, "resend");
    let secret = webhook_secret();
    let delivered = resend_event(
        "email.delivered",
        &accepted[0].id,
        Some(outbox_id(&received)),
    );
    let (status, answer) = post_resend_webhook(&url, &secret, "msg_delivered_1", &delivered).await;
    assert_eq!(status, 200, "{answer}");
    let seen = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let message = stream.message().await.unwrap().unwrap();
            if let Some(Kind::Event(event)) = message.kind
                && event.r#type == pb::EventType::EmailDelivered as i32
            {
                return event;
            }
        }
    })
    .await
    .expect("email.delivered on the live stream");
    assert_eq!(seen.access_request, request.name);
    assert_eq!(seen.actor, "provider:resend");
    let listed = list_emails(&server).await.remove(0);
    assert_eq!(listed.delivery, pb::EmailDelivery::Delivered as i32);
    assert!(listed.delivery_time.is_some());

    // The same event again (the provider retries): accepted, applied once.
    let (status, _) = post_resend_webhook(&url, &secret, "msg_delivered_1", &delivered).await;
    assert_eq!(status, 200);
    // A wrong secret, a stale timestamp, no signature: 401, nothing stored.
    let wrong = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(b"not the secret of this webhook!!")
    );
    let (status, answer) = post_resend_webhook(&url, &wrong, "msg_forged", &delivered).await;
    assert_eq!(status, 401, "{answer}");
    let stale = (chrono::Utc::now().timestamp() - 3600).to_string();
    let body = serde_json::to_vec(&delivered).unwrap();
    let signature =
        crate::providers::resend_signature(&secret, "msg_stale", stale.parse().unwrap(), &body);
    let (status, _) = post_resend_webhook_raw(&url, "msg_stale", &stale, &signature, &body).await;
    assert_eq!(status, 401);
    // Signed, but not an event: 400, nothing stored.
    let (status, answer) =
        post_resend_webhook(&url, &secret, "msg_bad", &serde_json::json!(["no"])).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(
        email_events(&server).await,
        ["email.sent", "email.delivered"],
        "one delivery event, whatever was replayed or forged"
    );
    assert_eq!(server.count("webhook_events").await, 1);

    // The approval email goes out too; GetStats shows 1 of 2 delivered.
    approve(&server, &request).await;
    resend.wait_accepted(2, Duration::from_secs(20)).await;
    wait_for("both sent", async || {
        list_emails(&server)
            .await
            .iter()
            .all(|email| email.state == pb::EmailState::Sent as i32)
    })
    .await;
    let mut admin = server.client(&server.keys.admin).await;
    let stats = admin
        .get_stats(pb::GetStatsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stats.emails_tracked_count, 2);
    assert_eq!(stats.emails_delivered_count, 1);
    assert_eq!(stats.delivery_rate, Some(0.5));
    // Event ids are remembered a week, then forgotten by the scheduler.
    let store = &server.store;
    let now = chrono::Utc::now();
    let week = sesame_server::store::delivery::WEBHOOK_REPLAY_WINDOW;
    assert_eq!(store.prune_webhook_events(now - week).await.unwrap(), 0);
    let later = now + chrono::Duration::seconds(1);
    assert_eq!(store.prune_webhook_events(later).await.unwrap(), 1);
    assert_eq!(server.count("webhook_events").await, 0);
    server.stop().await;
}

/// A hard bounce of the received email suppresses the address: the
/// approval email is not sent (SUPPRESSED, with the reason); an admin
/// lists the suppression and lifts it; the next email goes out; erasing
/// the person removes a suppression of theirs.
async fn a_hard_bounce_suppresses_the_address_until_an_admin_lifts_it(backend: Backend) {
    let resend = FakeProvider::resend(API_KEY).await;
    let base = resend.base_url();
    let server = TestServer::start_with(backend, |config| {
        mail_through(config, "resend://");
        use_resend(config, base);
    })
    .await;
    let first = submit(&server).await;
    let accepted = resend.wait_accepted(1, Duration::from_secs(20)).await;
    wait_for("the sent state", async || {
        list_emails(&server).await[0].state == pb::EmailState::Sent as i32
    })
    .await;
    let received = list_emails(&server).await.remove(0);
    let bounced = resend_event("email.bounced", &accepted[0].id, Some(outbox_id(&received)));
    let (status, answer) = post_resend_webhook(
        &webhook_url(&server, "resend"),
        &webhook_secret(),
        "msg_bounce",
        &bounced,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let mut emails = server.emails(&server.keys.admin).await;
    let suppressions = emails
        .list_suppressions(pb::ListSuppressionsRequest {
            address: "ADA@example.com".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .suppressions;
    assert_eq!(suppressions.len(), 1);
    assert_eq!(suppressions[0].recipient, "ada@example.com");
    assert_eq!(
        suppressions[0].reason,
        pb::SuppressionReason::HardBounce as i32
    );
    assert_eq!(suppressions[0].email, received.name);
    // Not in clear in the database.
    let stored = sesame_server::store::entities::suppression::Entity::find()
        .all(server.store.connection())
        .await
        .unwrap();
    assert!(!format!("{stored:?}").contains("ada@"), "{stored:?}");

    // The approval and two more requests at once (their emails claimed
    // together): none is sent.
    approve(&server, &first).await;
    tokio::join!(submit(&server), submit(&server));
    wait_for("three suppressed emails", async || {
        list_emails(&server)
            .await
            .iter()
            .filter(|email| email.state == pb::EmailState::Suppressed as i32)
            .count()
            == 3
    })
    .await;
    let approval = list_emails(&server)
        .await
        .into_iter()
        .find(|email| {
            email.state == pb::EmailState::Suppressed as i32
                && email.template == pb::EmailTemplate::ApplicantApproved as i32
        })
        .unwrap();
    assert!(
        approval.last_error.contains("hard bounce"),
        "{}",
        approval.last_error
    );
    assert_eq!(
        resend.accepted().len(),
        1,
        "nothing sent to a suppressed address"
    );
    assert!(
        email_events(&server)
            .await
            .contains(&"email.suppressed".to_owned())
    );
    // A bad name is a field error; a lifted one is gone.
    let refused = emails
        .delete_suppression(pb::DeleteSuppressionRequest {
            name: "suppressions/nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    emails
        .delete_suppression(pb::DeleteSuppressionRequest {
            name: suppressions[0].name.clone(),
        })
        .await
        .unwrap();
    let again = emails
        .delete_suppression(pb::DeleteSuppressionRequest {
            name: suppressions[0].name.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), tonic::Code::NotFound);
    // The audit trail says who lifted it, once.
    let lifted = sesame_server::store::entities::event::Entity::find()
        .all(server.store.connection())
        .await
        .unwrap()
        .into_iter()
        .filter(|event| event.event_type == "email.suppression_lifted")
        .collect::<Vec<_>>();
    assert_eq!(lifted.len(), 1);
    assert_eq!(lifted[0].actor, "admin");
    assert!(!lifted[0].data.contains("ada@"), "{}", lifted[0].data);
    submit(&server).await;
    resend.wait_accepted(2, Duration::from_secs(20)).await;

    // A complaint suppresses again; erasing Ada removes it.
    let latest = resend.accepted().pop().unwrap();
    let complained = resend_event("email.complained", &latest.id, None);
    wait_for("the provider id on the email", async || {
        list_emails(&server)
            .await
            .iter()
            .any(|email| email.provider_message_id == latest.id)
    })
    .await;
    let (status, _) = post_resend_webhook(
        &webhook_url(&server, "resend"),
        &webhook_secret(),
        "msg_complaint",
        &complained,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(server.count("suppressions").await, 1);
    let mut privacy = server.privacy(&server.keys.admin).await;
    privacy
        .erase_subject(pb::EraseSubjectRequest {
            email: "ada@example.com".into(),
            reason: "asked to be forgotten".into(),
        })
        .await
        .unwrap();
    assert_eq!(server.count("suppressions").await, 0);
    server.stop().await;
}

/// SendGrid: text before HTML, the outbox id in custom_args, the
/// X-Message-Id kept; a 422-like 400 goes dead at once with SendGrid's
/// words; a 429 waits at least its Retry-After; a signed webhook (ECDSA)
/// is applied, a forged one refused.
async fn sendgrid_answers_are_classified_and_its_webhooks_applied(backend: Backend) {
    let sendgrid = FakeProvider::sendgrid(SENDGRID_KEY).await;
    let base = sendgrid.base_url();
    let (signing_key, public_key) = sendgrid_key_pair();
    let server = TestServer::start_with(backend, |config| {
        mail_through(config, "sendgrid://");
        use_sendgrid(config, base);
        config.mail_sendgrid_webhook_public_key = Some(public_key);
    })
    .await;
    // First a throttle of 3 s, then acceptance.
    sendgrid.plan(vec![Answer::rate_limited(3)]);
    let started = std::time::Instant::now();
    submit(&server).await;
    let accepted = sendgrid.wait_accepted(1, Duration::from_secs(20)).await;
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "Retry-After honoured: {:?}",
        started.elapsed()
    );
    let body = &accepted[0].body;
    assert_eq!(body["content"][0]["type"], "text/plain");
    assert_eq!(body["content"][1]["type"], "text/html");
    wait_for("the sent state", async || {
        list_emails(&server).await[0].state == pb::EmailState::Sent as i32
    })
    .await;
    let email = list_emails(&server).await.remove(0);
    assert_eq!(body["custom_args"]["sesame_email"], outbox_id(&email));
    assert_eq!(email.provider, "sendgrid");
    assert_eq!(email.provider_message_id, accepted[0].id);
    assert_eq!(email.attempts, 2);

    let url = webhook_url(&server, "sendgrid");
    let events = serde_json::json!([
        sendgrid_event("processed", &accepted[0].id, Some(outbox_id(&email))),
        sendgrid_event("delivered", &accepted[0].id, Some(outbox_id(&email))),
        sendgrid_event("open", &accepted[0].id, Some(outbox_id(&email))),
    ]);
    let (other_key, _) = sendgrid_key_pair();
    let (status, _) = post_sendgrid_webhook(&url, &other_key, &events).await;
    assert_eq!(status, 401, "signed with another key");
    let (status, answer) = post_sendgrid_webhook(&url, &signing_key, &events).await;
    assert_eq!(status, 200, "{answer}");
    let email = list_emails(&server).await.remove(0);
    assert_eq!(email.delivery, pb::EmailDelivery::Delivered as i32);

    // A validation error is dead at once, with SendGrid's words.
    sendgrid.plan(vec![Answer::Status {
        status: 400,
        retry_after: None,
        body: Some(
            r#"{"errors":[{"message":"The from address does not match a verified Sender Identity.","field":"from","help":null}]}"#
                .into(),
        ),
    }]);
    submit(&server).await;
    wait_for("the dead email", async || {
        list_emails(&server)
            .await
            .iter()
            .any(|email| email.state == pb::EmailState::Dead as i32)
    })
    .await;
    let dead = list_emails(&server)
        .await
        .into_iter()
        .find(|email| email.state == pb::EmailState::Dead as i32)
        .unwrap();
    assert!(
        dead.last_error.contains("verified Sender Identity") && dead.attempts == 1,
        "{dead:?}"
    );
    server.stop().await;
}

/// `resend://,sendgrid://` with failover after 2 failures and a 2 s
/// cool-down: Resend answers 503 twice, SendGrid takes the email; once the
/// cool-down is over, Resend gets the traffic back.
async fn a_failing_provider_hands_over_to_the_next_and_gets_the_traffic_back(backend: Backend) {
    let resend = FakeProvider::resend(API_KEY).await;
    let sendgrid = FakeProvider::sendgrid(SENDGRID_KEY).await;
    let (resend_base, sendgrid_base) = (resend.base_url(), sendgrid.base_url());
    let server = TestServer::start_with(backend, |config| {
        mail_through(config, "resend://,sendgrid://");
        use_resend(config, resend_base);
        use_sendgrid(config, sendgrid_base);
        config.mail_failover_after = 2;
        config.mail_failover_cooldown_secs = 2;
    })
    .await;
    resend.plan(vec![Answer::status(503), Answer::status(503)]);
    submit(&server).await;
    sendgrid.wait_accepted(1, Duration::from_secs(20)).await;
    assert_eq!(resend.accepted().len(), 0);
    assert_eq!(resend.requests(), 2);
    wait_for("the sent state", async || {
        list_emails(&server).await[0].state == pb::EmailState::Sent as i32
    })
    .await;
    let email = list_emails(&server).await.remove(0);
    assert_eq!(email.provider, "sendgrid");
    assert_eq!(email.attempts, 3);
    let events = crate::mail::email_events(&server).await;
    assert_eq!(events, ["email.failed", "email.failed", "email.sent"]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    submit(&server).await;
    resend.wait_accepted(1, Duration::from_secs(20)).await;
    assert_eq!(sendgrid.accepted().len(), 1, "back on the first provider");
    server.stop().await;
}

/// Resend accepts the email, then the answer never comes (a timeout after
/// the request went out): the retry goes to Resend again, not to the
/// second provider, with the same idempotency key, and Resend answers the
/// first id without accepting it twice.
async fn an_unknown_outcome_is_retried_on_the_same_provider_and_accepted_once(backend: Backend) {
    let resend = FakeProvider::resend(API_KEY).await;
    let sendgrid = FakeProvider::sendgrid(SENDGRID_KEY).await;
    let (resend_base, sendgrid_base) = (resend.base_url(), sendgrid.base_url());
    let server = TestServer::start_with(backend, |config| {
        mail_through(config, "resend://,sendgrid://");
        use_resend(config, resend_base);
        use_sendgrid(config, sendgrid_base);
        // One unknown outcome would rest Resend; the email stays with it.
        config.mail_failover_after = 1;
    })
    .await;
    // Accepted, then no answer; then a 503 from Resend's front (which says
    // nothing about the first attempt, and rests Resend): the email stays
    // with Resend.
    resend.plan(vec![
        Answer::AcceptThenHang(Duration::from_secs(5)),
        Answer::status(503),
    ]);
    submit(&server).await;
    wait_for("the last retry's answer", async || resend.requests() >= 3).await;
    wait_for("the sent state", async || {
        list_emails(&server).await[0].state == pb::EmailState::Sent as i32
    })
    .await;
    let email = list_emails(&server).await.remove(0);
    assert_eq!(email.provider, "resend");
    assert_eq!(email.attempts, 3);
    assert_eq!(resend.accepted().len(), 1, "accepted once");
    assert_eq!(
        sendgrid.requests(),
        0,
        "never handed to the second provider"
    );
    assert_eq!(email.provider_message_id, resend.accepted()[0].id);
    let rows = outbox_rows(&server).await;
    assert_eq!(
        rows[0].pinned_provider, None,
        "the pin ends with the answer"
    );
    server.stop().await;
}

/// `sesame mail test` (the real binary) sends one email through each
/// transport listed, prints each answer with its latency, and exits
/// non-zero when one fails; the API keys never show.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_test_reports_each_transport_and_fails_when_one_does() {
    let resend = FakeProvider::resend(API_KEY).await;
    let sendgrid = FakeProvider::sendgrid(SENDGRID_KEY).await;
    let dir = tempfile::tempdir().unwrap();
    let run = |dir: std::path::PathBuf, resend: String, sendgrid: String| {
        tokio::task::spawn_blocking(move || {
            crate::cli::sesame(&dir)
                .args(["mail", "test", "--to", "ada@example.com"])
                .env("SESAME_MAIL_TRANSPORT", "resend://,sendgrid://")
                .env("SESAME_MAIL_FROM", "Sesame <sesame@example.com>")
                .env("SESAME_MAIL_RESEND_BASE_URL", resend)
                .env("SESAME_MAIL_RESEND_API_KEY", API_KEY)
                .env("SESAME_MAIL_SENDGRID_BASE_URL", sendgrid)
                .env("SESAME_MAIL_SENDGRID_API_KEY", SENDGRID_KEY)
                .output()
                .expect("run sesame")
        })
    };
    let output = run(dir.path().into(), resend.base_url(), sendgrid.base_url())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{stdout}");
    let resend_id = &resend.accepted()[0].id;
    let sendgrid_id = &sendgrid.accepted()[0].id;
    assert!(
        stdout.contains(&format!("(provider id {resend_id})"))
            && stdout.contains(&format!("(provider id {sendgrid_id})")),
        "{stdout}"
    );
    assert_eq!(
        resend.accepted()[0].body["to"],
        serde_json::json!(["ada@example.com"])
    );

    sendgrid.plan(vec![Answer::status(500)]);
    let output = run(dir.path().into(), resend.base_url(), sendgrid.base_url())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("resend: ok in "), "{stdout}");
    assert!(
        lines[1].starts_with("sendgrid: FAILED in ") && lines[1].contains("500"),
        "{stdout}"
    );
    assert!(
        stderr.contains("1 of the mail transports failed"),
        "{stderr}"
    );
    for secret in [API_KEY, SENDGRID_KEY] {
        assert!(!stdout.contains(secret) && !stderr.contains(secret));
    }
}

/// A worker claims an email, Resend accepts it, and the worker dies before
/// recording it. Once the lease expires, a healthy worker sends it again
/// with the same idempotency key: Resend answers the first id and delivers
/// nothing more.
async fn a_worker_killed_after_resend_accepted_leaves_one_email(backend: Backend) {
    use sesame_server::mail::providers::{ApiKey, ProviderKind, ProviderSettings};
    use sesame_server::mail::{
        OutgoingEmail, Templates, Transport, TransportOptions, TransportUrl, Transports,
        WorkerOptions, run_worker,
    };
    let resend = FakeProvider::resend(API_KEY).await;
    let server = TestServer::start(backend).await;
    submit(&server).await;
    let transport = || {
        Transport::new(
            TransportUrl::Provider(ProviderKind::Resend),
            TransportOptions {
                timeout: Duration::from_secs(5),
                connections: 4,
                dkim: None,
                providers: vec![ProviderSettings {
                    kind: ProviderKind::Resend,
                    base_url: resend.base_url(),
                    api_key: ApiKey::new(API_KEY),
                }],
            },
        )
        .unwrap()
    };
    let from: lettre::message::Mailbox = "Sesame <sesame@example.com>".parse().unwrap();

    // The dying worker: claims, sends as the worker would, never records.
    let claimed = server
        .store
        .claim_emails(10, Duration::from_millis(500))
        .await
        .unwrap();
    let email = &claimed[0];
    let templates = Templates::builtin().unwrap();
    let rendered = templates
        .render(email.template, email.locale, email.user_type, &email.data)
        .unwrap();
    let outgoing = OutgoingEmail {
        id: email.id.clone(),
        from: from.clone(),
        to: email.recipient.parse().unwrap(),
        message_id: email.message_id.clone(),
        idempotency_key: email.id.clone(),
        subject: rendered.subject,
        text: rendered.text,
        html: rendered.html,
        headers: Vec::new(),
        template: Some(email.template.as_str().to_owned()),
    };
    let first = transport().send(&outgoing).await.unwrap();
    drop(claimed);

    let options = WorkerOptions {
        from,
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
        std::sync::Arc::new(Transports::single(transport())),
        options,
        std::sync::Arc::new(sesame_server::telemetry::Metrics::default()),
        stop.clone(),
    ));
    wait_for("the resend's answer", async || resend.requests() >= 2).await;
    wait_for("the sent state", async || {
        list_emails(&server).await[0].state == pb::EmailState::Sent as i32
    })
    .await;
    stop.cancel();
    worker.await.unwrap();
    assert_eq!(resend.accepted().len(), 1, "Resend delivered it once");
    let listed = list_emails(&server).await.remove(0);
    assert_eq!(Some(listed.provider_message_id), first);
    assert_eq!(listed.attempts, 2);
    server.stop().await;
}
