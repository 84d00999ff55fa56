//! Faults the service must answer honestly: a database connection lost in
//! the middle of a call is UNAVAILABLE (clients retry it), never INTERNAL;
//! a full disk refuses writes with STORAGE_FULL, keeps reads, and recovers;
//! a database outage answers UNAVAILABLE at once and readiness follows it.

use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, Database, TransactionTrait};
use tonic::Code;

use sesame_proto::v1 as pb;
use sesame_server::store::storage::{StorageProblem, counts};
use tonic_types::StatusExt;

use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};

use crate::harness::{Backend, TestServer, assert_error, reason, valid_submission};

/// A connection PostgreSQL terminates mid-query ("terminating connection
/// due to administrator command", SQLSTATE 57P01, what `pg_ctl restart -m
/// fast` does to every session) answers UNAVAILABLE `DATABASE_UNAVAILABLE`,
/// which clients retry, not INTERNAL; the server then serves again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_terminated_mid_query_is_unavailable_not_internal() {
    let server = TestServer::start(Backend::Postgres).await;
    let url = server.config.database_url.clone();
    let mut alice = server.client(&server.keys.alice).await;
    alice
        .submit_access_request(valid_submission())
        .await
        .expect("a first submit");

    // The event counter held from another session: the next submit waits
    // inside its transaction, on the counter's row lock.
    let lock = lock_event_counter(&url).await;
    let mut submission = valid_submission();
    submission.request_id = "terminated".into();
    let call = tokio::spawn(async move { alice.submit_access_request(submission).await });

    let admin = Database::connect(&url).await.expect("connect");
    let waiting = "SELECT count(*) AS n FROM pg_stat_activity \
                   WHERE datname = current_database() AND wait_event_type = 'Lock'";
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let row = admin
            .query_one_raw(sea_orm::Statement::from_string(
                sea_orm::DbBackend::Postgres,
                waiting,
            ))
            .await
            .expect("read pg_stat_activity")
            .expect("one row");
        if row.try_get::<i64>("", "n").expect("a count") > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the submit never waited on the lock"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Every session of the server ends now, the waiting one mid-query; the
    // holder's and ours stay.
    admin
        .execute_unprepared(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid() \
             AND state IS DISTINCT FROM 'idle in transaction'",
        )
        .await
        .expect("terminate the server's sessions");
    let answer = tokio::time::timeout(Duration::from_secs(20), call)
        .await
        .expect("the submit answers")
        .expect("the call task");
    assert_error(answer, Code::Unavailable, "DATABASE_UNAVAILABLE");
    lock.rollback().await.expect("release the counter");

    // The pool reconnects: the retry a client makes is served.
    let mut alice = server.client(&server.keys.alice).await;
    let mut retry = valid_submission();
    retry.request_id = "terminated".into();
    alice
        .submit_access_request(retry)
        .await
        .expect("the retried submit is served");
    server.stop().await;
}

/// A transaction of another session holding the event counter's row lock
/// on the PostgreSQL database at `url`: every write of events waits on it
/// until it is rolled back.
async fn lock_event_counter(url: &str) -> sea_orm::DatabaseTransaction {
    let holder = Database::connect(url).await.expect("connect");
    let lock = holder.begin().await.expect("begin");
    lock.execute_unprepared("SELECT last_seq FROM event_counter WHERE id = 1 FOR UPDATE")
        .await
        .expect("lock the event counter");
    lock
}

/// A tmpfs of `size` mounted on a new directory, unmounted when dropped.
/// Mounting needs root, as CI has; elsewhere the test fails saying so.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().expect("temp dir");
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mounting a tmpfs for the full-disk test needs root: {status}"
        );
        Tmpfs { dir }
    }

    /// Writes zeros to `name` until the file system is full.
    fn fill(&self, name: &str) {
        use std::io::Write;
        let mut file = std::fs::File::create(self.dir.path().join(name)).expect("create filler");
        let block = vec![0u8; 64 * 1024];
        loop {
            match file.write(&block) {
                Ok(0) => break,
                Ok(_) => {}
                Err(error) if error.raw_os_error() == Some(28) => break,
                Err(error) => panic!("filling the tmpfs: {error}"),
            }
        }
        // The last partial blocks.
        while file.write(&[0u8; 512]).is_ok_and(|written| written > 0) {}
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}

/// A SQLite database on a full disk (a small tmpfs filled by another file)
/// refuses writes with RESOURCE_EXHAUSTED `STORAGE_FULL` and RetryInfo,
/// counted in `sesame_database_storage_errors_total`; reads keep working;
/// once space returns writes succeed again, nothing of a refused write was
/// kept (its request_id is free) and the audit chain is intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_with_storage_full_keeps_reads_and_recovers() {
    let disk = Tmpfs::mount("16m");
    let url = format!("sqlite://{}", disk.dir.path().join("sesame.db").display());
    let server = TestServer::start_with(Backend::Sqlite, |config| config.database_url = url).await;
    let mut alice = server.client(&server.keys.alice).await;
    let first = alice
        .submit_access_request(valid_submission())
        .await
        .expect("a submit with room on the disk")
        .into_inner()
        .access_request
        .unwrap();
    let full_before = counts()[0].1;
    assert_eq!(counts()[0].0, StorageProblem::Full);

    disk.fill("filler");
    // Room left in the WAL may take a few more writes; then every write is
    // refused.
    let mut accepted_after_fill = 0;
    let mut refused = Vec::new();
    for attempt in 0..500 {
        let mut submission = valid_submission();
        submission.request_id = format!("full-{attempt}");
        match alice.submit_access_request(submission).await {
            Ok(_) => {
                assert!(refused.is_empty(), "a write succeeded after a refusal");
                accepted_after_fill += 1;
            }
            Err(status) => {
                refused.push(format!("full-{attempt}"));
                assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                assert_eq!(reason(&status), "STORAGE_FULL");
                assert!(
                    status.get_error_details().retry_info().is_some(),
                    "a RetryInfo says when to come back"
                );
                assert!(status.message().contains("nothing was written"));
                if refused.len() == 3 {
                    break;
                }
            }
        }
    }
    assert_eq!(refused.len(), 3, "the full disk refused writes");
    assert!(counts()[0].1 >= full_before + 3, "each refusal is counted");

    // Reads still work.
    let mut admin = server.client(&server.keys.admin).await;
    let fetched = admin
        .get_access_request(pb::GetAccessRequestRequest {
            name: first.name.clone(),
        })
        .await
        .expect("a read on a full disk")
        .into_inner()
        .access_request
        .unwrap();
    assert_eq!(fetched, first);
    let listed = admin
        .list_access_requests(pb::ListAccessRequestsRequest::default())
        .await
        .expect("a list on a full disk")
        .into_inner();
    assert_eq!(listed.access_requests.len(), 1 + accepted_after_fill);

    // Space returns: the refused request_id is free, nothing half-written.
    std::fs::remove_file(disk.dir.path().join("filler")).expect("free the disk");
    let mut retry = valid_submission();
    retry.request_id = refused[0].clone();
    alice
        .submit_access_request(retry)
        .await
        .expect("the write succeeds once space returns");
    assert_eq!(
        server.count("access_requests").await,
        2 + accepted_after_fill as i64
    );
    let mut auditor = server.events(&server.keys.auditor).await;
    let verified = auditor
        .verify_audit_chain(pb::VerifyAuditChainRequest::default())
        .await
        .expect("verify")
        .into_inner();
    assert!(verified.intact, "{verified:?}");
    server.stop().await;
}

/// Readiness (service `""`) as the server reports it now.
async fn readiness(
    health: &mut HealthClient<tonic::transport::Channel>,
    service: &str,
) -> ServingStatus {
    health
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .expect("health answers whatever the database does")
        .into_inner()
        .status()
}

/// How long readiness takes to become `wanted`, polled every 20 ms, up to
/// 20 s.
async fn time_until(
    health: &mut HealthClient<tonic::transport::Channel>,
    wanted: ServingStatus,
) -> Duration {
    let started = Instant::now();
    while readiness(health, "").await != wanted {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "readiness never became {wanted:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

/// A call made while the database is away answers UNAVAILABLE
/// `DATABASE_UNAVAILABLE` with a RetryInfo; returns how long it took.
async fn refused_while_down(alice: &mut crate::harness::Client, request_id: &str) -> Duration {
    let mut submission = valid_submission();
    submission.request_id = request_id.into();
    let started = Instant::now();
    let status = alice
        .submit_access_request(submission)
        .await
        .expect_err("no submit succeeds without a database");
    let took = started.elapsed();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(reason(&status), "DATABASE_UNAVAILABLE");
    assert!(
        status.get_error_details().retry_info().is_some(),
        "a RetryInfo says when to come back"
    );
    took
}

/// A PostgreSQL outage (`pg_ctl stop -m fast`, then start again, as an
/// operator's restart with a pause): calls made during it answer
/// UNAVAILABLE `DATABASE_UNAVAILABLE` with a RetryInfo within about a
/// second, not after `database_timeout_secs` (5 s) or the whole outage;
/// readiness turns NOT_SERVING within about a second and SERVING again
/// within about a second of the database's return, while liveness stays
/// SERVING; then calls are served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_answers_unavailable_at_once_and_readiness_follows_it() {
    let cluster = crate::postgres::Cluster::start();
    let url = crate::postgres::fresh_database_on(&cluster.url()).await;
    let server = TestServer::start_with(Backend::Postgres, |config| {
        config.database_url = url;
        assert_eq!(config.health_check_interval_secs, 1, "the default");
        assert_eq!(config.database_timeout_secs, 5, "the default");
    })
    .await;
    let mut alice = server.client(&server.keys.alice).await;
    alice
        .submit_access_request(valid_submission())
        .await
        .expect("a submit with the database up");
    let mut health = HealthClient::new(server.channel().await);
    assert_eq!(readiness(&mut health, "").await, ServingStatus::Serving);

    let stopped = tokio::task::block_in_place(|| {
        cluster.stop();
        Instant::now()
    });
    // The first call after the stop, before or after the probe noticed.
    let first = refused_while_down(&mut alice, "during-outage-0").await;
    assert!(
        first < Duration::from_millis(2_500),
        "answered after {first:?}"
    );
    time_until(&mut health, ServingStatus::NotServing).await;
    // At most this long after the stop: it was noticed earlier still.
    let not_serving = stopped.elapsed();
    assert!(
        not_serving < Duration::from_millis(2_500),
        "NOT_SERVING {not_serving:?} after the stop"
    );
    assert_eq!(
        readiness(&mut health, "liveness").await,
        ServingStatus::Serving
    );
    // Known down: answered at once.
    for attempt in 1..=5 {
        let took = refused_while_down(&mut alice, &format!("during-outage-{attempt}")).await;
        assert!(took < Duration::from_millis(500), "answered after {took:?}");
    }
    tokio::time::sleep(Duration::from_secs(2).saturating_sub(stopped.elapsed())).await;

    tokio::task::block_in_place(|| cluster.resume());
    let serving = time_until(&mut health, ServingStatus::Serving).await;
    assert!(
        serving < Duration::from_millis(1_500),
        "SERVING {serving:?} after the database came back"
    );
    eprintln!(
        "outage: first call answered in {first:?}, NOT_SERVING within {not_serving:?} of the \
         stop, SERVING {serving:?} after the return"
    );
    let mut retry = valid_submission();
    retry.request_id = "during-outage-0".into();
    alice
        .submit_access_request(retry)
        .await
        .expect("served once the database is back");
    server.stop().await;
    drop(cluster);
}

/// Deadline-aware admission: with one turn (`max_active_calls` 1) held by a
/// submit that waits on a lock and 100 submits waiting their turn, a call
/// whose 300 ms deadline cannot cover the calls ahead is refused at once
/// (UNAVAILABLE `SERVER_OVERLOADED` with a RetryInfo), and one whose 2 s
/// deadline passes while it waits ends DEADLINE_EXCEEDED; neither wrote
/// anything, while every waiting call is served once the lock is released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_that_cannot_meet_their_deadline_are_refused_before_any_work() {
    let server = TestServer::start_with(Backend::Postgres, |config| {
        config.max_active_calls = 1;
    })
    .await;
    let url = server.config.database_url.clone();
    let mut alice = server.client(&server.keys.alice).await;
    alice
        .submit_access_request(valid_submission())
        .await
        .expect("a first submit");

    let lock = lock_event_counter(&url).await;
    let submit = |request_id: String, deadline: Duration| {
        let mut alice = alice.clone();
        async move {
            let mut submission = valid_submission();
            submission.request_id = request_id;
            let mut request = tonic::Request::new(submission);
            request.set_timeout(deadline);
            alice.submit_access_request(request).await
        }
    };
    let mut waiting = Vec::new();
    for n in 0..101 {
        waiting.push(tokio::spawn(submit(
            format!("waiting-{n}"),
            Duration::from_secs(60),
        )));
    }
    // Let them all arrive: the first holds the turn, the others queue.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let started = Instant::now();
    let refused = submit("hopeless".into(), Duration::from_millis(300)).await;
    let took = started.elapsed();
    let status = refused.expect_err("refused");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(reason(&status), "SERVER_OVERLOADED");
    assert!(status.get_error_details().retry_info().is_some());
    assert!(
        took < Duration::from_millis(200),
        "refused at once, not after {took:?}"
    );

    let expired = submit("expired".into(), Duration::from_secs(2))
        .await
        .expect_err("the deadline passed while it waited");
    // The server's DEADLINE_EXCEEDED, or the client's own timer firing first.
    assert!(
        matches!(expired.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{expired:?}"
    );

    lock.rollback().await.expect("release the counter");
    for call in waiting {
        tokio::time::timeout(Duration::from_secs(60), call)
            .await
            .expect("served")
            .unwrap()
            .expect("every waiting call is served");
    }
    assert_eq!(server.count("access_requests").await, 102);
    let db = server.store.connection();
    for never_written in ["hopeless", "expired"] {
        let row = db
            .query_one_raw(sea_orm::Statement::from_string(
                sea_orm::DbBackend::Postgres,
                format!("SELECT count(*) AS n FROM idempotency_keys WHERE request_id = '{never_written}'"),
            ))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            row.try_get::<i64>("", "n").unwrap(),
            0,
            "{never_written} was written"
        );
    }
    server.stop().await;
}
