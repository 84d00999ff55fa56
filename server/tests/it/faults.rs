//! Faults the service must answer honestly: a database connection lost in
//! the middle of a call is UNAVAILABLE (clients retry it), never INTERNAL.

use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, Database, TransactionTrait};
use tonic::Code;

use crate::harness::{Backend, TestServer, assert_error, valid_submission};

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
    let holder = Database::connect(&url).await.expect("connect");
    let lock = holder.begin().await.expect("begin");
    lock.execute_unprepared("SELECT last_seq FROM event_counter WHERE id = 1 FOR UPDATE")
        .await
        .expect("lock the event counter");
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
