//! Review deadlines end to end: the scheduler's reminder, escalation and
//! expiry, each exactly once although two replicas run their passes at the
//! same time; nothing for requests decided in time; the emails they cause;
//! and GetStats.
//!
//! The scheduler's time is chosen by the test (`run_once` at now + 13 h,
//! 25 h, 15 days), so nothing sleeps.

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Statement};
use sesame_proto::v1 as pb;
use sesame_server::scheduler::{PassReport, run_once};
use sesame_server::store::Store;
use sesame_server::store::entities::{event, outbox};
use tonic::Code;

use crate::harness::{
    Backend, TestServer, assert_error, bad_fields, both_backends, valid_submission,
};
use crate::mail::read_emails;

both_backends!(
    deadlines_fire_once_even_when_two_replicas_race,
    get_stats_counts_states_decision_times_and_overdue_requests,
);

const ADMINS: [&str; 2] = ["ops@example.com", "sec@example.com"];

/// A store of another replica on the server's database, mailing the
/// administrators as the server does.
async fn replica_store(server: &TestServer) -> Store {
    server
        .other_store()
        .await
        .with_admin_emails(server.config.admin_emails.clone())
}

/// Two replicas' passes at the same `at`, side by side, added up.
async fn two_passes(
    first: &Store,
    second: &Store,
    server: &TestServer,
    at: DateTime<Utc>,
) -> PassReport {
    let sections = server.config.sections();
    let options =
        sesame_server::options::scheduler(&sections.scheduler, &sections.policy, &sections.privacy);
    let (one, two) = tokio::join!(
        run_once(first, &options, at),
        run_once(second, &options, at)
    );
    let (one, two) = (one.expect("first pass"), two.expect("second pass"));
    assert_eq!((one.failed, two.failed), (0, 0), "{one:?} {two:?}");
    PassReport {
        reminded: one.reminded + two.reminded,
        escalated: one.escalated + two.escalated,
        expired: one.expired + two.expired,
        skipped: one.skipped + two.skipped,
        failed: 0,
    }
}

fn acted(report: &PassReport) -> (u64, u64, u64) {
    (report.reminded, report.escalated, report.expired)
}

async fn request_events(server: &TestServer, name: &str) -> Vec<pb::Event> {
    let mut events = server.events(&server.keys.auditor).await;
    events
        .list_events(pb::ListEventsRequest {
            access_request: name.into(),
            page_size: 500,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events
}

async fn outbox_templates(server: &TestServer, name: &str) -> Vec<(String, String)> {
    let id = name.trim_start_matches("accessRequests/");
    let stored = outbox::Entity::find()
        .filter(outbox::Column::AccessRequestId.eq(id))
        .all(server.store.connection())
        .await
        .unwrap();
    let mut rows = Vec::new();
    for row in stored {
        // Recipients are stored sealed.
        let (recipient, _) = server.store.open_email(&row).await.unwrap().unwrap();
        rows.push((row.template, recipient));
    }
    rows.sort();
    rows
}

async fn wait_for_email(dir: &Path, needles: &[&str]) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(email) = read_emails(dir)
            .into_iter()
            .find(|email| needles.iter().all(|needle| email.contains(needle)))
        {
            return email;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no email containing {needles:?} within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn deadlines_fire_once_even_when_two_replicas_race(backend: Backend) {
    let server = TestServer::start_with(backend, |config| {
        config.mail_worker = true;
        config.mail_poll_interval_ms = 50;
        config.admin_emails = ADMINS.map(str::to_owned).to_vec();
    })
    .await;
    let mut alice = server.client(&server.keys.alice).await;
    let mut admin = server.client(&server.keys.admin).await;
    let submit = async |client: &mut crate::harness::Client| {
        client
            .submit_access_request(valid_submission())
            .await
            .unwrap()
            .into_inner()
            .access_request
            .unwrap()
    };
    // Left waiting; the applicant chose French.
    let waiting = submit(&mut alice).await;
    // Decided in time: owed nothing.
    let approved = submit(&mut alice).await;
    admin
        .approve_access_request(pb::ApproveAccessRequestRequest {
            name: approved.name.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let cancelled = submit(&mut alice).await;
    alice
        .cancel_access_request(pb::CancelAccessRequestRequest {
            name: cancelled.name.clone(),
            ..Default::default()
        })
        .await
        .unwrap();

    let first = replica_store(&server).await;
    let second = replica_store(&server).await;
    let start = Utc::now();
    let hours = |n: i64| start + chrono::Duration::hours(n);

    let early = two_passes(&first, &second, &server, hours(11)).await;
    assert_eq!(
        acted(&early),
        (0, 0, 0),
        "nothing is due before half the SLA"
    );
    let reminded = two_passes(&first, &second, &server, hours(13)).await;
    assert_eq!(acted(&reminded), (1, 0, 0), "one reminder: {reminded:?}");
    let again = two_passes(&first, &second, &server, hours(14)).await;
    assert_eq!(acted(&again), (0, 0, 0), "no second reminder");
    let escalated = two_passes(&first, &second, &server, hours(25)).await;
    assert_eq!(
        acted(&escalated),
        (0, 1, 0),
        "one escalation: {escalated:?}"
    );
    let again = two_passes(&first, &second, &server, hours(26)).await;
    assert_eq!(acted(&again), (0, 0, 0), "no second escalation");
    let expired = two_passes(&first, &second, &server, hours(15 * 24)).await;
    assert_eq!(acted(&expired), (0, 0, 1), "one expiry: {expired:?}");
    let again = two_passes(&first, &second, &server, hours(16 * 24)).await;
    assert_eq!(
        acted(&again),
        (0, 0, 0),
        "an expired request is owed nothing"
    );

    // The waiting request's log: each step once, by `system`, automatic.
    let events = request_events(&server, &waiting.name).await;
    let steps: Vec<(pb::EventType, &str, bool)> = events
        .iter()
        .map(|event| (event.r#type(), event.actor.as_str(), event.automatic))
        .filter(|(kind, _, _)| {
            !matches!(
                kind,
                pb::EventType::EmailSent | pb::EventType::EmailFailed | pb::EventType::EmailDead
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            (pb::EventType::RequestSubmitted, "alice", false),
            (pb::EventType::RequestReminded, "system", true),
            (pb::EventType::RequestEscalated, "system", true),
            (pb::EventType::RequestExpired, "system", true),
        ]
    );
    let escalation = events
        .iter()
        .find(|event| event.r#type() == pb::EventType::RequestEscalated)
        .unwrap();
    assert_eq!(escalation.state(), pb::AccessRequestState::Pending);
    assert!(
        escalation.reason.contains("review SLA of 24 h"),
        "{escalation:?}"
    );
    assert!(
        !escalation.reason.contains('@'),
        "no personal data in events"
    );

    let read = admin
        .get_access_request(pb::GetAccessRequestRequest {
            name: waiting.name.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .access_request
        .unwrap();
    assert_eq!(read.state(), pb::AccessRequestState::Expired);
    let decision = read.decision.unwrap();
    assert_eq!(
        (decision.actor.as_str(), decision.automatic),
        ("system", true)
    );
    // Deciding it now is refused as for any expired request.
    assert_error(
        admin
            .approve_access_request(pb::ApproveAccessRequestRequest {
                name: waiting.name.clone(),
                ..Default::default()
            })
            .await,
        Code::FailedPrecondition,
        "REQUEST_EXPIRED",
    );

    // Emails: one reminder and one escalation per administrator, one
    // expiry notice to the applicant; none for the requests decided in time.
    let mut expected = vec![
        ("admin_new_request".to_owned(), ADMINS[0].to_owned()),
        ("admin_new_request".to_owned(), ADMINS[1].to_owned()),
        (
            "applicant_received".to_owned(),
            "ada@example.com".to_owned(),
        ),
        ("applicant_expired".to_owned(), "ada@example.com".to_owned()),
    ];
    for admin in ADMINS {
        expected.push(("admin_reminder".to_owned(), admin.to_owned()));
        expected.push(("admin_escalation".to_owned(), admin.to_owned()));
    }
    expected.sort();
    assert_eq!(outbox_templates(&server, &waiting.name).await, expected);
    for decided in [&approved, &cancelled] {
        let templates = outbox_templates(&server, &decided.name).await;
        assert!(
            templates.iter().all(|(template, _)| !matches!(
                template.as_str(),
                "admin_reminder" | "admin_escalation" | "applicant_expired"
            )),
            "{templates:?}"
        );
        let kinds: Vec<pb::EventType> = request_events(&server, &decided.name)
            .await
            .iter()
            .map(pb::Event::r#type)
            .collect();
        assert!(
            !kinds.contains(&pb::EventType::RequestReminded),
            "{kinds:?}"
        );
        assert!(
            !kinds.contains(&pb::EventType::RequestEscalated),
            "{kinds:?}"
        );
    }

    // The mail worker sends them: the applicant in French, admins in English.
    let mail_dir: std::path::PathBuf = server
        .config
        .mail_transport
        .strip_prefix("file://")
        .unwrap()
        .into();
    let expiry_row = outbox::Entity::find()
        .filter(outbox::Column::Template.eq("applicant_expired"))
        .one(server.store.connection())
        .await
        .unwrap()
        .unwrap();
    let expired_email = wait_for_email(&mail_dir, &[expiry_row.message_id.as_str()]).await;
    assert!(
        expired_email.contains("To: ada@example.com"),
        "{expired_email}"
    );
    assert!(
        expired_email.contains("lang=\"fr\"") || expired_email.contains("lang=3D\"fr\""),
        "{expired_email}"
    );
    for admin in ADMINS {
        let to = format!("To: {admin}");
        wait_for_email(
            &mail_dir,
            &[to.as_str(), "Subject: Reminder: access request"],
        )
        .await;
        wait_for_email(
            &mail_dir,
            &[to.as_str(), "Subject: Overdue: access request"],
        )
        .await;
    }
    // Deadline events are on the log once, whatever the replicas did.
    let deadline_events = event::Entity::find()
        .filter(event::Column::EventType.is_in([
            "request.reminded",
            "request.escalated",
            "request.expired",
        ]))
        .all(server.store.connection())
        .await
        .unwrap();
    assert_eq!(deadline_events.len(), 3);
    server.stop().await;
}

/// Moves a request's submission `hours` into the past, as if it had waited.
async fn age(server: &TestServer, name: &str, hours: i64) {
    let db = server.store.connection();
    let id = name.trim_start_matches("accessRequests/");
    db.execute_raw(Statement::from_string(
        db.get_database_backend(),
        format!(
            "UPDATE access_requests SET created_at_us = created_at_us - {} WHERE id = '{id}'",
            hours * 3_600_000_000
        ),
    ))
    .await
    .unwrap();
}

async fn get_stats_counts_states_decision_times_and_overdue_requests(backend: Backend) {
    let server = TestServer::start_with(backend, |config| {
        // Nothing but this test changes the requests.
        config.scheduler = false;
    })
    .await;
    let mut alice = server.client(&server.keys.alice).await;
    let mut admin = server.client(&server.keys.admin).await;
    let mut names = Vec::new();
    for _ in 0..4 {
        let created = alice
            .submit_access_request(valid_submission())
            .await
            .unwrap()
            .into_inner()
            .access_request
            .unwrap();
        names.push(created.name);
    }
    // Submitted 2 h and 4 h ago, decided now; one overdue; one fresh.
    age(&server, &names[0], 2).await;
    age(&server, &names[1], 4).await;
    age(&server, &names[2], 25).await;
    admin
        .approve_access_request(pb::ApproveAccessRequestRequest {
            name: names[0].clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    admin
        .reject_access_request(pb::RejectAccessRequestRequest {
            name: names[1].clone(),
            reason: "no contract on file".into(),
            ..Default::default()
        })
        .await
        .unwrap();

    // The rejection counts as automatic (as a policy rule's would), and the
    // emails' fates are set by hand: the mail worker is off here.
    let db = server.store.connection();
    let exec = async |sql: String| {
        db.execute_raw(Statement::from_string(db.get_database_backend(), sql))
            .await
            .unwrap();
    };
    let id_of = |name: &str| name.trim_start_matches("accessRequests/").to_owned();
    exec(format!(
        "UPDATE access_requests SET decision_automatic = TRUE WHERE id = '{}'",
        id_of(&names[1])
    ))
    .await;
    let emails: Vec<String> = {
        use sea_orm::QueryOrder;
        outbox::Entity::find()
            .order_by_asc(outbox::Column::Id)
            .all(db)
            .await
            .unwrap()
            .into_iter()
            .map(|row| row.id)
            .collect()
    };
    assert!(emails.len() >= 4, "submissions and decisions queued emails");
    let now_us = Utc::now().timestamp_micros();
    let long_ago_us = now_us - 40 * 86_400_000_000;
    for (id, set) in [
        (&emails[0], format!("state = 'sent', sent_at_us = {now_us}")),
        (
            &emails[1],
            format!("state = 'sent', sent_at_us = {long_ago_us}"),
        ),
        (
            &emails[2],
            format!("state = 'dead', attempts = 8, updated_at_us = {now_us}"),
        ),
        (&emails[3], "attempts = 2".to_owned()),
    ] {
        exec(format!("UPDATE outbox SET {set} WHERE id = '{id}'")).await;
    }

    let stats = admin
        .get_stats(pb::GetStatsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stats.automatic_decided_count, 1);
    assert_eq!(
        stats.emails_sent_count, 1,
        "the one sent 40 days ago is outside"
    );
    assert_eq!(stats.emails_dead_count, 1);
    assert_eq!(stats.emails_retrying_count, 1);
    let counts: Vec<(pb::AccessRequestState, i64)> = stats
        .state_counts
        .iter()
        .map(|count| (count.state(), count.count))
        .collect();
    assert_eq!(
        counts,
        [
            (pb::AccessRequestState::Pending, 2),
            (pb::AccessRequestState::Approved, 1),
            (pb::AccessRequestState::Rejected, 1),
            (pb::AccessRequestState::Cancelled, 0),
            (pb::AccessRequestState::Expired, 0),
        ]
    );
    assert_eq!(stats.decided_count, 2);
    assert_eq!(stats.overdue_count, 1);
    let median = stats.median_decision_time.unwrap().seconds;
    let p95 = stats.p95_decision_time.unwrap().seconds;
    assert!((7200..7260).contains(&median), "{median}");
    assert!((14_400..14_460).contains(&p95), "{p95}");
    assert_eq!(stats.review_sla.unwrap().seconds, 24 * 3600);
    let window = Utc::now().timestamp() - stats.window_start_time.unwrap().seconds;
    assert!(
        (30 * 86_400 - 5..=30 * 86_400 + 5).contains(&window),
        "{window}"
    );

    let status = assert_error(
        admin
            .get_stats(pb::GetStatsRequest { window_secs: -1 })
            .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(bad_fields(&status), ["window_secs"]);
    assert_error(
        admin
            .get_stats(pb::GetStatsRequest {
                window_secs: 400 * 86_400,
            })
            .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    let mut auditor = server.client(&server.keys.auditor).await;
    assert_error(
        auditor.get_stats(pb::GetStatsRequest::default()).await,
        Code::PermissionDenied,
        "ROLE_NOT_ALLOWED",
    );
    assert_error(
        alice.get_stats(pb::GetStatsRequest::default()).await,
        Code::PermissionDenied,
        "ROLE_NOT_ALLOWED",
    );
    server.stop().await;
}
