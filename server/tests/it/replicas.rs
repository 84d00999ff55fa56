//! Three `sesame serve` processes on one PostgreSQL, called round robin:
//! every watcher on every replica receives every event, each email is sent
//! exactly once by the three mail workers, and killing one replica (SIGKILL,
//! mid-traffic) loses nothing that was accepted. Two in-process replicas:
//! a key revoked on one is refused by the other within the key cache's TTL.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use sesame_client::{Options, RetryPolicy, SesameClient, Watch, v1 as pb};
use sesame_server::auth::Role;
use sesame_server::store::KEY_CACHE_TTL;
use tonic::Code;

use crate::cli::{Served, serve_at, terminate};
use crate::harness::{Backend, Client, TestServer, test_secret_key, valid_submission};
use crate::mail::SmtpServer;

/// Lists the caller's requests: any authenticated call would do.
async fn list(client: &mut Client) -> Result<(), Code> {
    let request = pb::ListAccessRequestsRequest {
        page_size: 1,
        ..Default::default()
    };
    client
        .list_access_requests(request)
        .await
        .map(drop)
        .map_err(|status| status.code())
}

/// Each replica caches verified keys: the one that revokes a key refuses it
/// at once, another one within `KEY_CACHE_TTL`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_revoked_on_one_replica_is_refused_by_another_within_the_cache_ttl() {
    let a = TestServer::start(Backend::Postgres).await;
    let b = a.replica().await;
    let secret = a
        .store
        .create_api_key("roaming", Role::Submitter)
        .await
        .unwrap()
        .1
        .secret;
    let mut on_a = a.client(&secret).await;
    let mut on_b = b.client(&secret).await;
    // Both replicas verify the key, and cache it.
    assert_eq!(list(&mut on_a).await, Ok(()));
    assert_eq!(list(&mut on_b).await, Ok(()));

    a.store.revoke_api_key("roaming").await.unwrap();
    let revoked_at = Instant::now();
    assert_eq!(list(&mut on_a).await, Err(Code::Unauthenticated));
    // The slack is for one call's time on a loaded machine.
    let bound = KEY_CACHE_TTL + Duration::from_secs(2);
    loop {
        match list(&mut on_b).await {
            Err(Code::Unauthenticated) => break,
            Ok(()) => assert!(
                revoked_at.elapsed() < bound,
                "replica b still accepts the key {:?} after it was revoked",
                revoked_at.elapsed()
            ),
            Err(other) => panic!("unexpected {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(revoked_at.elapsed() < bound);
    b.stop().await;
    a.stop().await;
}

fn submission(index: usize) -> pb::SubmitAccessRequestRequest {
    let mut submission = valid_submission();
    submission.applicant.as_mut().unwrap().email = format!("replica{index}@example.com");
    submission.request_id = format!("replica-test-{index}");
    submission
}

/// Reads `count` submitted events from `watch`, in order.
async fn submitted(watch: &mut Watch, count: usize) -> Vec<String> {
    let mut names = Vec::with_capacity(count);
    while names.len() < count {
        let event = tokio::time::timeout(Duration::from_secs(30), watch.next())
            .await
            .expect("an event within 30 s")
            .expect("a watch never ends")
            .expect("no error");
        names.push(event.access_request);
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_share_events_and_send_each_email_once() {
    let url = crate::postgres::fresh_database().await;
    let smtp = SmtpServer::start();
    let keys = tempfile::tempdir().unwrap();
    let secret = test_secret_key(keys.path());
    let smtp_url = smtp.url();
    let env = [
        ("SESAME_DATABASE_URL", url.as_str()),
        ("SESAME_SECRET_KEY_FILE", secret.as_str()),
        ("SESAME_MAIL_TRANSPORT", smtp_url.as_str()),
        ("SESAME_MAIL_POLL_INTERVAL_MS", "100"),
        ("SESAME_MAIL_TIMEOUT_SECS", "2"),
        ("SESAME_MAIL_LEASE_SECS", "3"),
    ];
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut replicas = Vec::new();
    for dir in &dirs {
        replicas.push(serve_at(dir.path(), "127.0.0.1:0", &env).await);
    }
    let key = replicas
        .iter()
        .find_map(Served::bootstrap_key)
        .expect("one replica prints the bootstrap key");
    let options = Options {
        timeout: Duration::from_secs(30),
        retry: RetryPolicy {
            max_attempts: 10,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(500),
        },
        ..Options::default()
    };
    let mut clients = Vec::new();
    for replica in &replicas {
        let url = format!("http://{}", replica.addr);
        clients.push(
            SesameClient::connect_with(&url, &key, options.clone())
                .await
                .unwrap(),
        );
    }
    let only_submits = || pb::WatchEventsRequest {
        event_types: vec![pb::EventType::RequestSubmitted.into()],
        ..Default::default()
    };
    let mut watches = Vec::new();
    for client in &clients {
        watches.push(client.watch(only_submits()).await.unwrap());
    }

    // 30 submits, round robin over the three replicas.
    const FIRST: usize = 30;
    let mut accepted = Vec::new();
    for index in 0..FIRST {
        let created = clients[index % 3].submit(submission(index)).await.unwrap();
        accepted.push(created.name);
    }
    for watch in &mut watches {
        assert_eq!(
            submitted(watch, FIRST).await,
            accepted,
            "every replica's watcher sees all, in order"
        );
    }

    // Kill one replica without warning while traffic goes on through the
    // other two; its claimed emails are taken over when their leases end.
    let killed = replicas.remove(0);
    let mut killed_child = killed.child;
    killed_child.start_kill().unwrap();
    killed_child.wait().await.unwrap();
    clients.remove(0);
    watches.remove(0);
    const SECOND: usize = 20;
    for index in FIRST..FIRST + SECOND {
        let created = clients[index % 2].submit(submission(index)).await.unwrap();
        accepted.push(created.name);
    }
    for watch in &mut watches {
        assert_eq!(
            submitted(watch, SECOND).await,
            accepted[FIRST..],
            "the survivors see the rest"
        );
    }

    // Every accepted request is there, and its applicant email was sent once.
    let total = FIRST + SECOND;
    let listed = clients[0]
        .list(pb::ListAccessRequestsRequest {
            page_size: 500,
            ..Default::default()
        })
        .await
        .unwrap();
    let stored: HashSet<String> = listed.access_requests.into_iter().map(|r| r.name).collect();
    assert_eq!(
        stored,
        accepted.iter().cloned().collect::<HashSet<_>>(),
        "nothing lost"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while smtp.received().len() < total {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {total} emails arrived",
            smtp.received().len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A little longer: no late duplicates either (beyond a resend after the
    // kill, which keeps its Message-ID).
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut by_message_id: HashMap<String, usize> = HashMap::new();
    for email in smtp.received() {
        let id = email
            .lines()
            .find_map(|line| line.strip_prefix("Message-ID: "))
            .expect("every email has a Message-ID")
            .to_owned();
        *by_message_id.entry(id).or_default() += 1;
    }
    assert_eq!(by_message_id.len(), total, "one distinct email per request");
    let resent: usize = by_message_id.values().map(|count| count - 1).sum();
    // Only an email the killed replica was sending may arrive twice.
    assert!(resent <= 32, "{resent} resends");
    for replica in replicas {
        terminate(replica).await;
    }
}
