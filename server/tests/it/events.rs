//! The event log end to end: live watch, resume, ordering under concurrent
//! writers, slow watchers, cursors, filters, replicas, and tamper evidence.

use std::collections::HashSet;
use std::time::Duration;

use sea_orm::{ConnectionTrait, Statement};
use sesame_proto::v1 as pb;
use sesame_proto::v1::watch_events_response::Kind;
use tonic::{Code, Streaming};

use crate::harness::{
    Backend, Client, EventClient, TestServer, assert_error, both_backends, reason, valid_submission,
};

both_backends!(
    watch_live_then_resume_from_a_cursor,
    ordering_under_concurrent_writers,
    slow_watcher_reads_the_log_and_never_blocks_writers,
    watcher_too_far_behind_ends_with_its_cursor,
    a_stalled_watcher_with_a_large_window_is_cut_and_no_longer_counted,
    bad_and_expired_cursors_are_refused,
    idle_watchers_get_heartbeats,
    revoking_the_key_ends_its_streams,
    filters_roles_and_the_paged_audit_trail,
    replicas_see_each_others_events,
    verify_detects_edits_deletions_and_reordering,
);

const WAIT: Duration = Duration::from_secs(20);

async fn watch(
    client: &mut EventClient,
    request: pb::WatchEventsRequest,
) -> Streaming<pb::WatchEventsResponse> {
    client
        .watch_events(request)
        .await
        .expect("watch")
        .into_inner()
}

/// The next message of any kind.
async fn next(stream: &mut Streaming<pb::WatchEventsResponse>) -> Result<Kind, tonic::Status> {
    let message = tokio::time::timeout(WAIT, stream.message())
        .await
        .expect("a message within 20 s")?
        .expect("the stream is still open");
    Ok(message.kind.expect("every message has a kind"))
}

/// Reads `ready` and returns its cursor.
async fn ready(stream: &mut Streaming<pb::WatchEventsResponse>) -> String {
    match next(stream).await.expect("ready") {
        Kind::Ready(ready) => ready.cursor,
        other => panic!("the first message must be ready, got {other:?}"),
    }
}

/// The next event, skipping heartbeats.
async fn next_event(
    stream: &mut Streaming<pb::WatchEventsResponse>,
) -> Result<pb::Event, tonic::Status> {
    loop {
        match next(stream).await? {
            Kind::Event(event) => return Ok(event),
            Kind::Heartbeat(_) => continue,
            Kind::Ready(_) => panic!("ready is only sent first"),
        }
    }
}

async fn submit(client: &mut Client) -> pb::AccessRequest {
    client
        .submit_access_request(valid_submission())
        .await
        .expect("submit")
        .into_inner()
        .access_request
        .unwrap()
}

async fn approve(client: &mut Client, name: &str) {
    client
        .approve_access_request(pb::ApproveAccessRequestRequest {
            name: name.into(),
            note: "ok".into(),
            ..Default::default()
        })
        .await
        .expect("approve");
}

async fn watch_live_then_resume_from_a_cursor(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut admin = server.client(&server.keys.admin).await;
    let mut alice = server.client(&server.keys.alice).await;
    let mut events = server.events(&server.keys.auditor).await;
    let mut live = watch(&mut events, pb::WatchEventsRequest::default()).await;
    ready(&mut live).await;

    let created = submit(&mut alice).await;
    approve(&mut admin, &created.name).await;
    let submitted = next_event(&mut live).await.unwrap();
    assert_eq!(submitted.r#type(), pb::EventType::RequestSubmitted);
    assert_eq!(submitted.access_request, created.name);
    assert_eq!(submitted.state(), pb::AccessRequestState::Pending);
    assert_eq!(submitted.actor, "alice");
    assert_eq!(submitted.sequence, 1);
    let approved = next_event(&mut live).await.unwrap();
    assert_eq!(approved.r#type(), pb::EventType::RequestApproved);
    assert_eq!(approved.state(), pb::AccessRequestState::Approved);
    assert_eq!(approved.reason, "ok");
    assert_eq!(approved.sequence, 2);
    assert_ne!(approved.hash, submitted.hash);

    // A client that saw only the first event resumes from its cursor: it
    // gets ready, the missed event from the log, then live events.
    let mut resumed = watch(
        &mut events,
        pb::WatchEventsRequest {
            after: submitted.cursor.clone(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(ready(&mut resumed).await, submitted.cursor);
    assert_eq!(next_event(&mut resumed).await.unwrap(), approved);
    let issued = next_event(&mut resumed).await.unwrap();
    assert_eq!(issued.r#type(), pb::EventType::CodeIssued);
    assert_eq!(issued.sequence, 3);
    assert_eq!(next_event(&mut live).await.unwrap(), issued);
    let another = submit(&mut alice).await;
    let live_event = next_event(&mut resumed).await.unwrap();
    assert_eq!(live_event.sequence, 4);
    assert_eq!(live_event.access_request, another.name);
    assert_eq!(next_event(&mut live).await.unwrap(), live_event);
    server.stop_after_dropping(vec![live, resumed]).await;
}

async fn ordering_under_concurrent_writers(backend: Backend) {
    const WRITERS: usize = 8;
    const PER_WRITER: usize = 500;
    let server = TestServer::start(backend).await;
    let mut writers = Vec::new();
    for _ in 0..WRITERS {
        let mut client = server.client(&server.keys.alice).await;
        writers.push(tokio::spawn(async move {
            for _ in 0..PER_WRITER {
                submit(&mut client).await;
            }
        }));
    }
    // Three watchers join while the writers run, each resuming from a
    // random cursor at or below the head it sees.
    let mut watchers = Vec::new();
    for index in 0..3i64 {
        tokio::time::sleep(Duration::from_millis(300 * (index as u64 + 1))).await;
        let head = server.store.event_head().await.unwrap();
        let after = (head * (index + 1) * 7919) % (head + 1);
        let mut client = server.events(&server.keys.admin).await;
        watchers.push(tokio::spawn(async move {
            let cursor = sesame_server::domain::encode_cursor(after);
            let mut stream = watch(
                &mut client,
                pb::WatchEventsRequest {
                    after: cursor,
                    ..Default::default()
                },
            )
            .await;
            ready(&mut stream).await;
            let total = (WRITERS * PER_WRITER) as i64;
            let mut seen = Vec::new();
            while seen.last().copied().unwrap_or(after) < total {
                seen.push(next_event(&mut stream).await.expect("no error").sequence);
            }
            (after, seen)
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }
    let total = (WRITERS * PER_WRITER) as i64;
    assert_eq!(server.store.event_head().await.unwrap(), total);
    for watcher in watchers {
        let (after, seen) = watcher.await.unwrap();
        let expected: Vec<i64> = (after + 1..=total).collect();
        assert_eq!(
            seen, expected,
            "watcher after {after}: every sequence once, in order"
        );
    }
    let report = server.store.verify_chain(1, None).await.unwrap();
    assert_eq!(report.broken, None);
    assert_eq!(report.verified, total);
    server.stop().await;
}

async fn slow_watcher_reads_the_log_and_never_blocks_writers(backend: Backend) {
    let server = TestServer::start_with(backend, |config| {
        config.watch_buffer_events = 4;
        config.watch_max_lag_events = 1_000_000;
        config.watch_stall_secs = 3_600;
    })
    .await;
    let mut events = server.events_small_window(&server.keys.admin).await;
    let mut slow = watch(&mut events, pb::WatchEventsRequest::default()).await;
    ready(&mut slow).await;

    // The watcher reads nothing while 1,000 events are written: the writers
    // finish anyway, in bounded time.
    let mut writers = Vec::new();
    for _ in 0..4 {
        let mut client = server.client(&server.keys.alice).await;
        writers.push(tokio::spawn(async move {
            for _ in 0..250 {
                submit(&mut client).await;
            }
        }));
    }
    tokio::time::timeout(Duration::from_secs(120), async {
        for writer in writers {
            writer.await.unwrap();
        }
    })
    .await
    .expect("writers are never blocked by a slow watcher");

    // Then it reads: nothing was lost, nothing repeated, order kept.
    let mut seen = Vec::new();
    while seen.len() < 1000 {
        seen.push(next_event(&mut slow).await.expect("no error").sequence);
    }
    assert_eq!(seen, (1..=1000).collect::<Vec<i64>>());
    server.stop_after_dropping(vec![slow]).await;
}

/// A watcher whose client has a large HTTP/2 window (1 MiB each way, as
/// grpcio's grow to) and reads nothing: the transport takes everything
/// until that window and the send buffers are full, so the 10,000 events of
/// `watch_max_lag_events` never pile up behind a blocked send. It is cut
/// `watch_stall_secs` (1 s) after its transport stopped taking events, and
/// `sesame_watchers_connected` drops although the stalled transport cannot
/// deliver the end yet; when the client reads at last, it gets every event
/// up to the cursor, then WATCHER_TOO_SLOW with that cursor.
async fn a_stalled_watcher_with_a_large_window_is_cut_and_no_longer_counted(backend: Backend) {
    let server = TestServer::start_with(backend, |config| {
        config.watch_stall_secs = 1;
        config.metrics_addr = Some("127.0.0.1:0".parse().unwrap());
        assert_eq!(config.watch_max_lag_events, 10_000, "the default");
    })
    .await;
    let metrics = server.metrics_addr.expect("metrics are on");
    let mut events = server.events_with_window(&server.keys.admin, 1 << 20).await;
    let mut stalled = watch(&mut events, pb::WatchEventsRequest::default()).await;
    ready(&mut stalled).await;
    crate::metrics::scrape_until(metrics, "the watcher counted", |scraped| {
        scraped.value("sesame_watchers_connected", &[]) == Some(1.0)
    })
    .await;

    // About 3 MB of events: approvals with long notes, written by four
    // callers.
    const REQUESTS: usize = 1_200;
    let mut writers = Vec::new();
    for _ in 0..4 {
        let mut alice = server.client(&server.keys.alice).await;
        let mut admin = server.client(&server.keys.admin).await;
        writers.push(tokio::spawn(async move {
            for _ in 0..REQUESTS / 4 {
                let created = submit(&mut alice).await;
                admin
                    .approve_access_request(pb::ApproveAccessRequestRequest {
                        name: created.name,
                        note: "n".repeat(1_000),
                        ..Default::default()
                    })
                    .await
                    .expect("approve");
            }
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }
    let total = server.count("events").await;
    crate::metrics::scrape_until(
        metrics,
        "the stalled watcher cut and uncounted",
        |scraped| scraped.value("sesame_watchers_connected", &[]) == Some(0.0),
    )
    .await;

    let mut seen = Vec::new();
    let status = loop {
        match next_event(&mut stalled).await {
            Ok(event) => seen.push(event.sequence),
            Err(status) => break status,
        }
    };
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert_eq!(reason(&status), "WATCHER_TOO_SLOW");
    let (_, resume_after) = resume_cursor(&status);
    assert!(resume_after < total, "cut before the end of {total} events");
    assert_eq!(
        seen,
        (1..=resume_after).collect::<Vec<i64>>(),
        "every event up to the cursor, in order"
    );
    server.stop().await;
}

async fn watcher_too_far_behind_ends_with_its_cursor(backend: Backend) {
    let server = TestServer::start_with(backend, |config| {
        config.watch_buffer_events = 4;
        config.watch_max_lag_events = 50;
    })
    .await;
    let mut events = server.events_small_window(&server.keys.admin).await;
    let mut slow = watch(&mut events, pb::WatchEventsRequest::default()).await;
    ready(&mut slow).await;
    // Enough data to overrun every buffer on the way (the hub's, the
    // stream's, HTTP/2's send buffer of about 400 KiB and the client's
    // 64 KiB window): approvals with long notes.
    const REQUESTS: i64 = 500;
    const TOTAL: i64 = 2 * REQUESTS;
    let mut admin = server.client(&server.keys.admin).await;
    let mut alice = server.client(&server.keys.alice).await;
    let note = "n".repeat(1000);
    for _ in 0..REQUESTS {
        let created = submit(&mut alice).await;
        admin
            .approve_access_request(pb::ApproveAccessRequestRequest {
                name: created.name,
                note: note.clone(),
                ..Default::default()
            })
            .await
            .expect("approve");
    }
    let mut seen = Vec::new();
    let status = loop {
        match next_event(&mut slow).await {
            Ok(event) => seen.push(event.sequence),
            Err(status) => break status,
        }
        assert!(
            (seen.len() as i64) < TOTAL,
            "the watcher received everything instead of being cut off"
        );
    };
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert_eq!(reason(&status), "WATCHER_TOO_SLOW");
    let (cursor, resume_after) = resume_cursor(&status);
    assert!(resume_after < TOTAL, "it ended before the end");
    assert_eq!(
        seen,
        (1..=resume_after).collect::<Vec<i64>>(),
        "delivered up to the cursor"
    );

    let mut resumed = watch(
        &mut events,
        pb::WatchEventsRequest {
            after: cursor,
            ..Default::default()
        },
    )
    .await;
    ready(&mut resumed).await;
    let mut rest = Vec::new();
    while rest.len() < (TOTAL - resume_after) as usize {
        rest.push(next_event(&mut resumed).await.unwrap().sequence);
    }
    assert_eq!(rest, (resume_after + 1..=TOTAL).collect::<Vec<i64>>());
    server.stop_after_dropping(vec![slow, resumed]).await;
}

async fn bad_and_expired_cursors_are_refused(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut admin = server.client(&server.keys.admin).await;
    for _ in 0..5 {
        submit(&mut admin).await;
    }
    let mut events = server.events(&server.keys.admin).await;
    for bad in [
        "garbage".to_owned(),
        sesame_server::domain::encode_cursor(6),
    ] {
        assert_error(
            events
                .watch_events(pb::WatchEventsRequest {
                    after: bad,
                    ..Default::default()
                })
                .await,
            Code::InvalidArgument,
            "CURSOR_INVALID",
        );
    }
    // The head itself is a valid cursor: nothing to replay.
    let mut at_head = watch(
        &mut events,
        pb::WatchEventsRequest {
            after: sesame_server::domain::encode_cursor(5),
            ..Default::default()
        },
    )
    .await;
    ready(&mut at_head).await;
    drop(at_head);

    // Simulate retention removing the oldest events.
    let db = server.store.connection();
    db.execute_raw(Statement::from_string(
        db.get_database_backend(),
        "DELETE FROM events WHERE seq <= 3",
    ))
    .await
    .unwrap();
    assert_error(
        events
            .watch_events(pb::WatchEventsRequest {
                after: sesame_server::domain::encode_cursor(1),
                ..Default::default()
            })
            .await,
        Code::OutOfRange,
        "CURSOR_EXPIRED",
    );
    // Right before the oldest retained event is still complete.
    let mut resumed = watch(
        &mut events,
        pb::WatchEventsRequest {
            after: sesame_server::domain::encode_cursor(3),
            ..Default::default()
        },
    )
    .await;
    ready(&mut resumed).await;
    assert_eq!(next_event(&mut resumed).await.unwrap().sequence, 4);
    server.stop_after_dropping(vec![resumed]).await;
}

async fn idle_watchers_get_heartbeats(backend: Backend) {
    let server = TestServer::start_with(backend, |config| config.watch_heartbeat_secs = 1).await;
    let mut admin = server.client(&server.keys.admin).await;
    submit(&mut admin).await;
    let mut events = server.events(&server.keys.admin).await;
    let mut stream = watch(&mut events, pb::WatchEventsRequest::default()).await;
    let start = ready(&mut stream).await;
    let started = std::time::Instant::now();
    match next(&mut stream).await.unwrap() {
        Kind::Heartbeat(heartbeat) => {
            assert_eq!(heartbeat.cursor, start);
            assert!(heartbeat.time.is_some());
        }
        other => panic!("expected a heartbeat, got {other:?}"),
    }
    assert!(started.elapsed() >= Duration::from_millis(900));

    // A watcher whose filter drops all the traffic is idle too: its
    // heartbeats carry the advancing cursor.
    let mut approvals = watch(
        &mut events,
        pb::WatchEventsRequest {
            event_types: vec![pb::EventType::RequestApproved.into()],
            ..Default::default()
        },
    )
    .await;
    ready(&mut approvals).await;
    let busy_until = std::time::Instant::now() + Duration::from_millis(2500);
    while std::time::Instant::now() < busy_until {
        submit(&mut admin).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let head = server.store.event_head().await.unwrap();
    let mut last_cursor = None;
    while let Ok(Ok(Kind::Heartbeat(heartbeat))) =
        tokio::time::timeout(Duration::from_millis(1500), next(&mut approvals)).await
    {
        last_cursor = Some(heartbeat.cursor);
        if sesame_server::domain::decode_cursor(last_cursor.as_ref().unwrap()) == Some(head) {
            break;
        }
    }
    let cursor = last_cursor.expect("heartbeats while the filter drops every event");
    assert_eq!(sesame_server::domain::decode_cursor(&cursor), Some(head));
    server.stop_after_dropping(vec![stream, approvals]).await;
}

async fn revoking_the_key_ends_its_streams(backend: Backend) {
    let server = TestServer::start_with(backend, |config| config.watch_heartbeat_secs = 1).await;
    let secret = server
        .store
        .create_api_key("short-lived", sesame_server::auth::Role::Auditor)
        .await
        .unwrap()
        .1
        .secret;
    let mut events = server.events(&secret).await;
    let mut stream = watch(&mut events, pb::WatchEventsRequest::default()).await;
    ready(&mut stream).await;
    server.store.revoke_api_key("short-lived").await.unwrap();
    let status = loop {
        match next(&mut stream).await {
            Ok(Kind::Heartbeat(_)) => continue,
            Ok(other) => panic!("unexpected {other:?}"),
            Err(status) => break status,
        }
    };
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert_eq!(reason(&status), "API_KEY_INVALID");
    server.stop_after_dropping(vec![stream]).await;
}

async fn filters_roles_and_the_paged_audit_trail(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut admin = server.client(&server.keys.admin).await;
    let mut alice = server.client(&server.keys.alice).await;
    let mut events = server.events(&server.keys.admin).await;
    let mut approvals = watch(
        &mut events,
        pb::WatchEventsRequest {
            event_types: vec![pb::EventType::RequestApproved.into()],
            ..Default::default()
        },
    )
    .await;
    ready(&mut approvals).await;
    let first = submit(&mut alice).await;
    let second = submit(&mut alice).await;
    let mut one_request = watch(
        &mut events,
        pb::WatchEventsRequest {
            after: sesame_server::domain::encode_cursor(0),
            access_request: second.name.clone(),
            ..Default::default()
        },
    )
    .await;
    ready(&mut one_request).await;
    approve(&mut admin, &first.name).await;
    approve(&mut admin, &second.name).await;

    let approval = next_event(&mut approvals).await.unwrap();
    assert_eq!(
        (approval.sequence, approval.access_request.as_str()),
        (3, first.name.as_str())
    );
    // 4 is the first request's code.issued.
    assert_eq!(next_event(&mut approvals).await.unwrap().sequence, 5);
    let replayed = next_event(&mut one_request).await.unwrap();
    assert_eq!(
        (replayed.sequence, replayed.r#type()),
        (2, pb::EventType::RequestSubmitted)
    );
    let live = next_event(&mut one_request).await.unwrap();
    assert_eq!(
        (live.sequence, live.r#type()),
        (5, pb::EventType::RequestApproved)
    );

    // The audit trail, paged and filtered.
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        let page = events
            .list_events(pb::ListEventsRequest {
                page_size: 3,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        all.extend(page.events);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(
        all.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5, 6]
    );
    let by_admin = events
        .list_events(pb::ListEventsRequest {
            actor: "admin".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    assert_eq!(
        by_admin.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        [3, 4, 5, 6],
        "the approvals and the codes they issued"
    );
    let of_first = events
        .list_events(pb::ListEventsRequest {
            access_request: first.name.clone(),
            event_types: vec![pb::EventType::RequestSubmitted.into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    assert_eq!(of_first.iter().map(|e| e.sequence).collect::<Vec<_>>(), [1]);
    let status = assert_error(
        events
            .list_events(pb::ListEventsRequest {
                page_size: -1,
                event_types: vec![0, 99],
                access_request: "nope".into(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(
        crate::harness::bad_fields(&status),
        [
            "page_size",
            "event_types[0]",
            "event_types[1]",
            "access_request"
        ]
    );

    // Submitters may not read the event log; auditors may.
    let mut submitter = server.events(&server.keys.alice).await;
    assert_error(
        submitter
            .watch_events(pb::WatchEventsRequest::default())
            .await,
        Code::PermissionDenied,
        "ROLE_NOT_ALLOWED",
    );
    assert_error(
        submitter
            .list_events(pb::ListEventsRequest::default())
            .await,
        Code::PermissionDenied,
        "ROLE_NOT_ALLOWED",
    );
    assert_error(
        submitter
            .verify_audit_chain(pb::VerifyAuditChainRequest::default())
            .await,
        Code::PermissionDenied,
        "ROLE_NOT_ALLOWED",
    );
    let mut auditor = server.events(&server.keys.auditor).await;
    let verified = auditor
        .verify_audit_chain(pb::VerifyAuditChainRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(verified.intact);
    assert_eq!(verified.verified_events, 6);
    let beyond = auditor
        .verify_audit_chain(pb::VerifyAuditChainRequest {
            start_sequence: 10,
            end_sequence: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        beyond.intact,
        "nothing to check is not tampering: {beyond:?}"
    );
    assert_eq!(beyond.verified_events, 0);

    // A page token belongs to the caller that received it.
    let first_page = events
        .list_events(pb::ListEventsRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_error(
        auditor
            .list_events(pb::ListEventsRequest {
                page_size: 1,
                page_token: first_page.next_page_token,
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "PAGE_TOKEN_INVALID",
    );
    server
        .stop_after_dropping(vec![approvals, one_request])
        .await;
}

async fn replicas_see_each_others_events(backend: Backend) {
    // On PostgreSQL polling is slowed to a minute, so only LISTEN/NOTIFY can
    // deliver in time; SQLite replicas rely on polling the shared file.
    let poll_ms = match backend {
        Backend::Postgres => 60_000,
        Backend::Sqlite => 100,
    };
    let a = TestServer::start_with(backend, |config| config.event_poll_interval_ms = poll_ms).await;
    let b = a.replica().await;
    let mut watch_a = a.events(&a.keys.admin).await;
    let mut on_a = watch(&mut watch_a, pb::WatchEventsRequest::default()).await;
    ready(&mut on_a).await;
    let mut watch_b = b.events(&b.keys.admin).await;
    let mut on_b = watch(&mut watch_b, pb::WatchEventsRequest::default()).await;
    ready(&mut on_b).await;

    let mut via_b = b.client(&b.keys.alice).await;
    let mut via_a = a.client(&a.keys.alice).await;
    let mut submitted = HashSet::new();
    for round in 0..10 {
        let client = if round % 2 == 0 {
            &mut via_b
        } else {
            &mut via_a
        };
        submitted.insert(submit(client).await.name);
    }
    for stream in [&mut on_a, &mut on_b] {
        let mut seen = Vec::new();
        let mut names = HashSet::new();
        while seen.len() < 10 {
            let event = tokio::time::timeout(Duration::from_secs(10), next_event(stream))
                .await
                .expect("replicated events arrive within 10 s")
                .unwrap();
            seen.push(event.sequence);
            names.insert(event.access_request);
        }
        assert_eq!(seen, (1..=10).collect::<Vec<i64>>());
        assert_eq!(names, submitted);
    }
    drop((on_a, on_b));
    b.stop().await;
    a.stop().await;
}

async fn execute(server: &TestServer, sql: &str) {
    let db = server.store.connection();
    db.execute_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap_or_else(|error| panic!("{sql}: {error}"));
}

async fn verify(events: &mut EventClient) -> pb::VerifyAuditChainResponse {
    events
        .verify_audit_chain(pb::VerifyAuditChainRequest::default())
        .await
        .unwrap()
        .into_inner()
}

async fn verify_detects_edits_deletions_and_reordering(backend: Backend) {
    type Tamper = &'static [&'static str];
    let cases: [(&str, Tamper, i64); 4] = [
        (
            "edit",
            &["UPDATE events SET actor = 'mallory' WHERE seq = 4"],
            4,
        ),
        ("delete", &["DELETE FROM events WHERE seq = 3"], 3),
        (
            "reorder",
            &[
                "UPDATE events SET seq = -1 WHERE seq = 2",
                "UPDATE events SET seq = 2 WHERE seq = 3",
                "UPDATE events SET seq = 3 WHERE seq = -1",
            ],
            2,
        ),
        (
            "truncate the tail",
            &["DELETE FROM events WHERE seq >= 5"],
            5,
        ),
    ];
    for (what, statements, broken_at) in cases {
        let server = TestServer::start(backend).await;
        let mut admin = server.client(&server.keys.admin).await;
        let mut alice = server.client(&server.keys.alice).await;
        for _ in 0..3 {
            let created = submit(&mut alice).await;
            approve(&mut admin, &created.name).await;
        }
        let mut events = server.events(&server.keys.auditor).await;
        let intact = verify(&mut events).await;
        assert!(intact.intact, "{intact:?}");
        // Each approval appends request.approved and code.issued.
        assert_eq!(intact.verified_events, 9);
        assert_eq!(intact.last_verified_sequence, 9);

        for statement in statements {
            execute(&server, statement).await;
        }
        let report = verify(&mut events).await;
        assert!(!report.intact, "{what}: {report:?}");
        assert_eq!(report.broken_sequence, broken_at, "{what}: {report:?}");
        assert!(!report.problem.is_empty());
        assert_eq!(report.last_verified_sequence, broken_at - 1, "{what}");
        server.stop().await;
    }
}

/// The resume cursor an ended stream carries, and the sequence it stands
/// for.
fn resume_cursor(status: &tonic::Status) -> (String, i64) {
    let cursor = tonic_types::StatusExt::get_error_details(status)
        .error_info()
        .expect("an ErrorInfo")
        .metadata["cursor"]
        .clone();
    let after = sesame_server::domain::decode_cursor(&cursor).expect("a valid cursor");
    (cursor, after)
}
