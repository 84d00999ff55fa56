//! Group commit of submissions: many concurrent submits, written in shared
//! transactions, each answer as if it had been alone; the event log stays
//! gap-free and chained, and each email is enqueued once.

use std::collections::{BTreeMap, HashSet};

use sesame_proto::v1 as pb;
use sesame_server::api::convert::raw_submission;
use sesame_server::domain::policy::{Evaluation, Outcome};
use sesame_server::domain::validation::validate_submission;
use sesame_server::domain::{DomainError, NewAccessRequest};
use sesame_server::store::{Store, StoreError};
use tonic::Code;

use crate::harness::{Backend, TestServer, both_backends, valid_submission};

both_backends!(
    concurrent_store_submits_fail_alone_and_replay_their_keys,
    sixty_four_concurrent_rpc_submits_answer_as_if_alone,
);

/// The requests that have an email in the outbox.
const EMAILED_REQUESTS: &str = "(SELECT DISTINCT access_request_id FROM outbox) AS emailed";

fn submission(email: &str, request_id: &str, resource: &str) -> NewAccessRequest {
    let mut message = valid_submission();
    message.applicant.as_mut().unwrap().email = email.into();
    message.request_id = request_id.into();
    message.resource = resource.into();
    validate_submission(&raw_submission(message)).expect("a valid submission")
}

fn review() -> Evaluation {
    Evaluation {
        rule: None,
        outcome: Outcome::Review { approvals: 1 },
        matched: BTreeMap::new(),
    }
}

/// Events are numbered 1..=n without a gap, and their hash chain holds.
async fn assert_log_intact(server: &TestServer) -> i64 {
    let events = server.count("events").await;
    let head = server.store.event_head().await.unwrap();
    assert_eq!(head, events, "no gap: the head is the number of events");
    let report = server.store.verify_chain(1, None).await.unwrap();
    assert_eq!(report.broken, None);
    assert_eq!(report.verified, events);
    events
}

/// What a store-level submission answered: the request's id and whether
/// it was created by this call, or the error.
type Answer = Result<(String, bool), StoreError>;

async fn store_submit(
    store: Store,
    submission: NewAccessRequest,
    evaluation: Evaluation,
) -> Answer {
    store
        .submit_request("alice", submission, &evaluation)
        .await
        .map(|(stored, created)| (stored.request.id.to_string(), created))
}

/// One submission that fails inside the transaction (an approval needs a
/// gateway code, and this store has no secret key) among 63 good ones:
/// it fails alone. Repeated idempotency keys in the same burst answer
/// like concurrent retries: the same request, or REQUEST_ID_REUSED for a
/// different payload.
async fn concurrent_store_submits_fail_alone_and_replay_their_keys(backend: Backend) {
    let server = TestServer::start(backend).await;
    let approve = Evaluation {
        rule: Some("approve-all".into()),
        outcome: Outcome::Approve,
        matched: BTreeMap::new(),
    };
    let mut calls = Vec::new();
    let mut spawn = |submission: NewAccessRequest, evaluation: Evaluation| {
        calls.push(tokio::spawn(store_submit(
            server.store.clone(),
            submission,
            evaluation,
        )));
    };
    for index in 0..48 {
        spawn(
            submission(&format!("s{index}@example.com"), "", "vpn-paris"),
            review(),
        );
    }
    spawn(submission("bad@example.com", "", "vpn-paris"), approve);
    for _ in 0..8 {
        spawn(
            submission("same@example.com", "same-key", "vpn-paris"),
            review(),
        );
    }
    for index in 0..4 {
        let resource = if index % 2 == 0 {
            "vpn-paris"
        } else {
            "vpn-lyon"
        };
        spawn(
            submission("clash@example.com", "clash-key", resource),
            review(),
        );
    }
    for index in 0..3 {
        let key = format!("own-key-{index}");
        spawn(
            submission(&format!("k{index}@example.com"), &key, "vpn-paris"),
            review(),
        );
    }
    assert_eq!(calls.len(), 64);
    let mut answers = Vec::new();
    for call in calls {
        answers.push(call.await.expect("no panic"));
    }

    let distinct: HashSet<&String> = answers[..48]
        .iter()
        .map(|answer| &answer.as_ref().expect("a good submission succeeds").0)
        .collect();
    assert_eq!(distinct.len(), 48);
    assert!(
        answers[..48]
            .iter()
            .all(|answer| answer.as_ref().unwrap().1)
    );
    assert!(answers[48].is_err(), "{:?}", answers[48]);
    let same: Vec<&(String, bool)> = answers[49..57]
        .iter()
        .map(|answer| answer.as_ref().expect("a retry succeeds"))
        .collect();
    assert!(same.iter().all(|(id, _)| *id == same[0].0), "one request");
    assert_eq!(same.iter().filter(|(_, created)| *created).count(), 1);
    let clash = &answers[57..61];
    let accepted: HashSet<&String> = clash
        .iter()
        .filter_map(|answer| answer.as_ref().ok().map(|(id, _)| id))
        .collect();
    assert_eq!(accepted.len(), 1, "{clash:?}");
    for answer in clash {
        match answer {
            Ok(_) => {}
            Err(StoreError::Refused(DomainError::RequestIdReused)) => {}
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    // The two with the winner's payload are accepted, the two others not.
    assert_eq!(clash.iter().filter(|answer| answer.is_ok()).count(), 2);
    assert!(
        answers[61..]
            .iter()
            .all(|answer| answer.as_ref().unwrap().1)
    );

    let stored = 48 + 1 + 1 + 3;
    assert_eq!(server.count("access_requests").await, stored);
    assert_eq!(server.count("idempotency_keys").await, 1 + 1 + 3);
    assert_eq!(assert_log_intact(&server).await, stored);
    // One applicant email per stored request, no administrators set.
    assert_eq!(server.count("outbox").await, stored);
    assert_eq!(server.count(EMAILED_REQUESTS).await, stored);
    server.stop().await;
}

/// 64 calls at once through the API: distinct ones, retries of one key,
/// and one invalid call, which alone fails.
async fn sixty_four_concurrent_rpc_submits_answer_as_if_alone(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut calls = Vec::new();
    for index in 0..64 {
        let mut client = server.client(&server.keys.alice).await;
        let mut request = valid_submission();
        let applicant = request.applicant.as_mut().unwrap();
        applicant.email = format!("rpc{index}@example.com");
        if (50..60).contains(&index) {
            applicant.email = "retry@example.com".into();
            request.request_id = "rpc-retried".into();
        }
        if index == 63 {
            applicant.email = "not an email".into();
        }
        calls.push(tokio::spawn(async move {
            client
                .submit_access_request(request)
                .await
                .map(|response| response.into_inner().access_request.unwrap().name)
        }));
    }
    let mut names = Vec::new();
    for call in calls {
        names.push(call.await.expect("no panic"));
    }
    let status = names[63].as_ref().expect_err("the invalid call fails");
    assert_eq!(status.code(), Code::InvalidArgument);
    let distinct: HashSet<&String> = names[..50]
        .iter()
        .chain(&names[60..63])
        .map(|name| name.as_ref().expect("a good call succeeds"))
        .collect();
    assert_eq!(distinct.len(), 53);
    let retried: HashSet<&String> = names[50..60]
        .iter()
        .map(|name| name.as_ref().expect("a retry succeeds"))
        .collect();
    assert_eq!(retried.len(), 1, "every retry answers the same request");
    assert!(!distinct.contains(retried.iter().next().unwrap()));

    let stored = 54;
    assert_eq!(server.count("access_requests").await, stored);
    assert_eq!(assert_log_intact(&server).await, stored);
    assert_eq!(server.count("outbox").await, stored);
    assert_eq!(server.count(EMAILED_REQUESTS).await, stored);
    let mut client = server.client(&server.keys.admin).await;
    let page = client
        .list_access_requests(pb::ListAccessRequestsRequest {
            page_size: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.access_requests.len(), 54);
    server.stop().await;
}
