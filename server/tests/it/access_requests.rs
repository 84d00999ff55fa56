//! The access-request API end to end: lifecycle, validation, idempotency,
//! authorization, transitions, etags and pagination.

use std::collections::HashSet;

use sesame_proto::v1 as pb;
use tonic::Code;

use crate::harness::{
    Backend, Client, TestServer, assert_error, bad_fields, both_backends, valid_submission,
};

both_backends!(
    submit_get_list_approve,
    reject_and_cancel,
    invalid_submissions_list_every_field_and_store_nothing,
    each_validation_rule_is_enforced,
    idempotent_submit_under_concurrent_retries,
    auth_matrix,
    a_key_revoked_here_is_refused_at_once,
    submitters_only_see_their_own_requests,
    illegal_transitions_fail_with_reasons,
    stale_etag_aborts,
    pagination_through_a_thousand_requests,
    list_filters_and_bad_list_arguments,
    queue_filters_by_resource_and_applicant_oldest_first,
    decision_arguments_are_validated,
    get_caller_describes_the_key,
);

async fn submit(client: &mut Client) -> pb::AccessRequest {
    client
        .submit_access_request(valid_submission())
        .await
        .expect("submit")
        .into_inner()
        .access_request
        .expect("request in response")
}

/// Event types stored for one request, in sequence order.
async fn events_of(server: &TestServer, name: &str) -> Vec<(i64, String, String)> {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
    use sesame_server::store::entities::event;
    let id = name.trim_start_matches("accessRequests/");
    event::Entity::find()
        .filter(event::Column::AccessRequestId.eq(id))
        .order_by_asc(event::Column::Seq)
        .all(server.store.connection())
        .await
        .expect("read events")
        .into_iter()
        .map(|row| (row.seq, row.event_type, row.actor))
        .collect()
}

async fn submit_get_list_approve(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut alice = server.client(&server.keys.alice).await;
    let mut admin = server.client(&server.keys.admin).await;

    let created = submit(&mut alice).await;
    assert!(created.name.starts_with("accessRequests/"));
    assert_eq!(created.state(), pb::AccessRequestState::Pending);
    assert_eq!(created.submitter, "alice");
    assert_eq!(created.locale, "fr");
    assert_eq!(created.applicant.as_ref().unwrap().email, "ada@example.com");
    assert!(created.decision.is_none());
    assert!(created.create_time.is_some());
    assert_eq!(
        created.consent.as_ref().unwrap().grant_time,
        created.create_time
    );

    let fetched = admin
        .get_access_request(pb::GetAccessRequestRequest {
            name: created.name.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .access_request
        .unwrap();
    assert_eq!(fetched, created);

    let listed = admin
        .list_access_requests(pb::ListAccessRequestsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.access_requests, vec![created.clone()]);
    assert_eq!(listed.next_page_token, "");

    let approved = admin
        .approve_access_request(pb::ApproveAccessRequestRequest {
            name: created.name.clone(),
            etag: created.etag.clone(),
            note: "welcome aboard".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .access_request
        .unwrap();
    assert_eq!(approved.state(), pb::AccessRequestState::Approved);
    assert_ne!(approved.etag, created.etag);
    let decision = approved.decision.clone().unwrap();
    assert_eq!(decision.actor, "admin");
    assert_eq!(decision.reason, "welcome aboard");
    assert!(!decision.automatic);
    assert!(decision.decide_time.is_some());
    assert_eq!(approved.update_time, decision.decide_time);

    let events = events_of(&server, &created.name).await;
    let kinds: Vec<&str> = events.iter().map(|(_, kind, _)| kind.as_str()).collect();
    // The approval issues the gateway code in the same transaction.
    assert_eq!(
        kinds,
        ["request.submitted", "request.approved", "code.issued"]
    );
    assert_eq!(events[0].2, "alice");
    assert_eq!(events[1].2, "admin");
    assert_eq!(events[1].0, events[0].0 + 1, "sequences are contiguous");
    assert_eq!(events[2].0, events[1].0 + 1);
    let code = approved.gateway_code.unwrap();
    assert_eq!(code.state(), pb::GatewayCodeState::Active);
    server.stop().await;
}

async fn reject_and_cancel(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut alice = server.client(&server.keys.alice).await;
    let mut admin = server.client(&server.keys.admin).await;

    let to_reject = submit(&mut alice).await;
    let rejected = admin
        .reject_access_request(pb::RejectAccessRequestRequest {
            name: to_reject.name.clone(),
            etag: String::new(),
            reason: "not a current partner".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .access_request
        .unwrap();
    assert_eq!(rejected.state(), pb::AccessRequestState::Rejected);
    assert_eq!(rejected.decision.unwrap().reason, "not a current partner");

    let to_cancel = submit(&mut alice).await;
    let cancelled = alice
        .cancel_access_request(pb::CancelAccessRequestRequest {
            name: to_cancel.name.clone(),
            etag: to_cancel.etag.clone(),
            reason: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .access_request
        .unwrap();
    assert_eq!(cancelled.state(), pb::AccessRequestState::Cancelled);
    let decision = cancelled.decision.unwrap();
    assert_eq!(decision.actor, "alice");
    assert_eq!(decision.reason, "");

    let by_admin = submit(&mut alice).await;
    let cancelled_by_admin = admin
        .cancel_access_request(pb::CancelAccessRequestRequest {
            name: by_admin.name.clone(),
            etag: String::new(),
            reason: "duplicate".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .access_request
        .unwrap();
    assert_eq!(
        cancelled_by_admin.state(),
        pb::AccessRequestState::Cancelled
    );

    let kinds: Vec<String> = events_of(&server, &to_reject.name)
        .await
        .into_iter()
        .map(|(_, kind, _)| kind)
        .collect();
    assert_eq!(kinds, ["request.submitted", "request.rejected"]);
    let kinds: Vec<String> = events_of(&server, &to_cancel.name)
        .await
        .into_iter()
        .map(|(_, kind, _)| kind)
        .collect();
    assert_eq!(kinds, ["request.submitted", "request.cancelled"]);
    server.stop().await;
}

async fn invalid_submissions_list_every_field_and_store_nothing(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut alice = server.client(&server.keys.alice).await;
    let request = pb::SubmitAccessRequestRequest {
        applicant: Some(pb::Applicant {
            email: "not an email".into(),
            full_name: String::new(),
            organization: "ok".into(),
            phone: "12".into(),
        }),
        user_type: 99,
        locale: "de".into(),
        resource: String::new(),
        justification: "x".repeat(2001),
        consent: None,
        request_id: "white space".into(),
    };
    let status = assert_error(
        alice.submit_access_request(request).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(
        bad_fields(&status),
        [
            "applicant.email",
            "applicant.full_name",
            "applicant.phone",
            "user_type",
            "locale",
            "resource",
            "justification",
            "consent",
            "request_id",
        ]
    );
    assert_eq!(server.count("access_requests").await, 0);
    assert_eq!(server.count("events").await, 0);
    assert_eq!(server.count("idempotency_keys").await, 0);
    server.stop().await;
}

async fn each_validation_rule_is_enforced(backend: Backend) {
    type Mutation = fn(&mut pb::SubmitAccessRequestRequest);
    let cases: Vec<(&str, Mutation)> = vec![
        ("applicant", |r| r.applicant = None),
        ("applicant.email", |r| {
            r.applicant.as_mut().unwrap().email = String::new()
        }),
        ("applicant.email", |r| {
            r.applicant.as_mut().unwrap().email = "ada@localhost".into()
        }),
        ("applicant.email", |r| {
            r.applicant.as_mut().unwrap().email = format!("{}@example.com", "a".repeat(250))
        }),
        ("applicant.full_name", |r| {
            r.applicant.as_mut().unwrap().full_name = "x".repeat(201)
        }),
        ("applicant.full_name", |r| {
            r.applicant.as_mut().unwrap().full_name = "Ada\u{0}".into()
        }),
        ("applicant.full_name", |r| {
            r.applicant.as_mut().unwrap().full_name = "Ada\nLovelace".into()
        }),
        ("applicant.full_name", |r| {
            r.applicant.as_mut().unwrap().full_name = "Ada\u{202E}".into()
        }),
        ("applicant.organization", |r| {
            r.applicant.as_mut().unwrap().organization = "   ".into()
        }),
        ("applicant.phone", |r| {
            r.applicant.as_mut().unwrap().phone = "+1 (555) CALL-NOW".into()
        }),
        ("applicant.phone", |r| {
            r.applicant.as_mut().unwrap().phone = "1".repeat(16)
        }),
        ("user_type", |r| {
            r.user_type = pb::UserType::Unspecified.into()
        }),
        ("user_type", |r| r.user_type = 7),
        ("locale", |r| r.locale = "en-US".into()),
        ("resource", |r| r.resource = "r".repeat(201)),
        ("justification", |r| r.justification = String::new()),
        ("justification", |r| r.justification = "bell\u{7}".into()),
        ("consent", |r| r.consent = None),
        ("consent.version", |r| {
            r.consent.as_mut().unwrap().version = String::new()
        }),
        ("consent.purposes", |r| {
            r.consent.as_mut().unwrap().purposes.clear()
        }),
        ("consent.purposes", |r| {
            r.consent.as_mut().unwrap().purposes = (0..17).map(|i| format!("p{i}")).collect()
        }),
        ("consent.purposes[0]", |r| {
            r.consent.as_mut().unwrap().purposes = vec!["Has Space".into()]
        }),
        ("consent.purposes[1]", |r| {
            r.consent.as_mut().unwrap().purposes = vec!["same".into(), "same".into()]
        }),
        ("request_id", |r| r.request_id = "x".repeat(129)),
        ("request_id", |r| r.request_id = "é".into()),
    ];
    let server = TestServer::start(backend).await;
    let mut alice = server.client(&server.keys.alice).await;
    for (field, mutate) in cases {
        let mut request = valid_submission();
        mutate(&mut request);
        let status = assert_error(
            alice.submit_access_request(request).await,
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        );
        assert_eq!(bad_fields(&status), [field], "{}", status.message());
    }
    assert_eq!(server.count("access_requests").await, 0);
    assert_eq!(server.count("events").await, 0);

    // Text is stored NFC-normalised and trimmed.
    let mut decomposed = valid_submission();
    decomposed.applicant.as_mut().unwrap().full_name = "  Rene\u{301}e ".into();
    let stored = alice
        .submit_access_request(decomposed)
        .await
        .unwrap()
        .into_inner()
        .access_request
        .unwrap();
    assert_eq!(stored.applicant.unwrap().full_name, "Ren\u{e9}e");
    server.stop().await;
}

async fn idempotent_submit_under_concurrent_retries(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut request = valid_submission();
    request.request_id = "6f9619ff-8b86-d011-b42d-00cf4fc964ff".into();

    let mut retries = Vec::new();
    for _ in 0..20 {
        let mut client = server.client(&server.keys.alice).await;
        let request = request.clone();
        retries.push(tokio::spawn(async move {
            client.submit_access_request(request).await
        }));
    }
    let mut names = HashSet::new();
    for retry in retries {
        let response = retry.await.unwrap().expect("every retry succeeds");
        let stored = response.into_inner().access_request.unwrap();
        assert_eq!(stored.request_id, request.request_id);
        names.insert(stored.name);
    }
    assert_eq!(names.len(), 1, "all retries return the same request");
    assert_eq!(server.count("access_requests").await, 1);
    assert_eq!(server.count("events").await, 1);

    // The same key with another payload is refused and stores nothing.
    let mut alice = server.client(&server.keys.alice).await;
    let mut changed = request.clone();
    changed.resource = "vpn-lyon".into();
    assert_error(
        alice.submit_access_request(changed).await,
        Code::AlreadyExists,
        "REQUEST_ID_REUSED",
    );
    // Idempotency keys are per caller: bob's identical key is his own request.
    let mut bob = server.client(&server.keys.bob).await;
    let bobs = bob
        .submit_access_request(request.clone())
        .await
        .unwrap()
        .into_inner()
        .access_request
        .unwrap();
    assert!(!names.contains(&bobs.name));
    assert_eq!(server.count("access_requests").await, 2);
    assert_eq!(server.count("events").await, 2);
    server.stop().await;
}

/// What one call returned: Ok, or the status code.
async fn outcome(client: &mut Client, rpc: &str, target: &str) -> Result<(), Code> {
    let result = match rpc {
        "submit" => client
            .submit_access_request(valid_submission())
            .await
            .map(drop),
        "get" => client
            .get_access_request(pb::GetAccessRequestRequest {
                name: target.into(),
            })
            .await
            .map(drop),
        "list" => client
            .list_access_requests(pb::ListAccessRequestsRequest::default())
            .await
            .map(drop),
        "approve" => client
            .approve_access_request(pb::ApproveAccessRequestRequest {
                name: target.into(),
                ..Default::default()
            })
            .await
            .map(drop),
        "reject" => client
            .reject_access_request(pb::RejectAccessRequestRequest {
                name: target.into(),
                reason: "no".into(),
                ..Default::default()
            })
            .await
            .map(drop),
        "cancel" => client
            .cancel_access_request(pb::CancelAccessRequestRequest {
                name: target.into(),
                ..Default::default()
            })
            .await
            .map(drop),
        other => panic!("unknown rpc {other}"),
    };
    result.map_err(|status| status.code())
}

/// The key cache must not outlive a revocation made through the server's
/// own store: the very next call is refused.
async fn a_key_revoked_here_is_refused_at_once(backend: Backend) {
    let server = TestServer::start(backend).await;
    let secret = server
        .store
        .create_api_key("cached", sesame_server::auth::Role::Submitter)
        .await
        .unwrap()
        .1
        .secret;
    let mut client = server.client(&secret).await;
    // Twice: the second call is answered from the cache.
    submit(&mut client).await;
    submit(&mut client).await;
    server.store.revoke_api_key("cached").await.unwrap();
    let status = client
        .submit_access_request(valid_submission())
        .await
        .expect_err("a revoked key is refused");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    server.stop().await;
}

async fn auth_matrix(backend: Backend) {
    let server = TestServer::start(backend).await;
    let revoked = server
        .store
        .create_api_key("revoked", sesame_server::auth::Role::Admin)
        .await
        .unwrap()
        .1
        .secret;
    server.store.revoke_api_key("revoked").await.unwrap();

    let ok = Ok(());
    let denied = Err(Code::PermissionDenied);
    let unauthenticated = Err(Code::Unauthenticated);
    // Columns: submit, get, list, approve, reject, cancel. Each decision
    // runs on a fresh pending request of alice's.
    let rpcs = ["submit", "get", "list", "approve", "reject", "cancel"];
    type Row = (&'static str, Option<String>, [Result<(), Code>; 6]);
    let matrix: Vec<Row> = vec![
        (
            "admin",
            Some(server.keys.admin.clone()),
            [ok, ok, ok, ok, ok, ok],
        ),
        (
            "auditor",
            Some(server.keys.auditor.clone()),
            [denied, ok, ok, denied, denied, denied],
        ),
        (
            "owner",
            Some(server.keys.alice.clone()),
            [ok, ok, ok, denied, denied, ok],
        ),
        (
            "other submitter",
            Some(server.keys.bob.clone()),
            [ok, denied, ok, denied, denied, denied],
        ),
        ("no key", None, [unauthenticated; 6]),
        (
            "unknown key",
            Some("sesame_not-a-real-key".into()),
            [unauthenticated; 6],
        ),
        ("revoked key", Some(revoked), [unauthenticated; 6]),
    ];
    let mut alice = server.client(&server.keys.alice).await;
    for (who, key, expected) in matrix {
        let mut client = match &key {
            Some(key) => server.client(key).await,
            None => server.anonymous().await,
        };
        for (rpc, want) in rpcs.iter().zip(expected) {
            let target = submit(&mut alice).await.name;
            let got = outcome(&mut client, rpc, &target).await;
            assert_eq!(got, want, "{who} calling {rpc}");
        }
    }

    // The reasons tell the caller what to fix.
    let mut anonymous = server.anonymous().await;
    assert_error(
        anonymous
            .list_access_requests(pb::ListAccessRequestsRequest::default())
            .await,
        Code::Unauthenticated,
        "API_KEY_MISSING",
    );
    let mut auditor = server.client(&server.keys.auditor).await;
    assert_error(
        auditor.submit_access_request(valid_submission()).await,
        Code::PermissionDenied,
        "ROLE_NOT_ALLOWED",
    );
    let mut basic =
        sesame_proto::v1::access_request_service_client::AccessRequestServiceClient::new(
            server.channel().await,
        );
    let mut malformed = tonic::Request::new(pb::ListAccessRequestsRequest::default());
    malformed
        .metadata_mut()
        .insert("authorization", "Basic dXNlcjpwYXNz".parse().unwrap());
    assert_error(
        basic.list_access_requests(malformed).await,
        Code::Unauthenticated,
        "API_KEY_MALFORMED",
    );
    server.stop().await;
}

async fn submitters_only_see_their_own_requests(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut alice = server.client(&server.keys.alice).await;
    let mut bob = server.client(&server.keys.bob).await;
    let alices = submit(&mut alice).await;
    let bobs = submit(&mut bob).await;

    assert_error(
        bob.get_access_request(pb::GetAccessRequestRequest {
            name: alices.name.clone(),
        })
        .await,
        Code::PermissionDenied,
        "NOT_REQUEST_OWNER",
    );
    assert_error(
        bob.cancel_access_request(pb::CancelAccessRequestRequest {
            name: alices.name.clone(),
            ..Default::default()
        })
        .await,
        Code::PermissionDenied,
        "NOT_REQUEST_OWNER",
    );
    let bobs_list = bob
        .list_access_requests(pb::ListAccessRequestsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .access_requests;
    assert_eq!(bobs_list, vec![bobs.clone()]);
    let mut auditor = server.client(&server.keys.auditor).await;
    let everything = auditor
        .list_access_requests(pb::ListAccessRequestsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .access_requests;
    assert_eq!(everything, vec![bobs, alices.clone()], "newest first");
    let unchanged = auditor
        .get_access_request(pb::GetAccessRequestRequest { name: alices.name })
        .await
        .unwrap()
        .into_inner()
        .access_request
        .unwrap();
    assert_eq!(unchanged.state(), pb::AccessRequestState::Pending);
    server.stop().await;
}

async fn illegal_transitions_fail_with_reasons(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut alice = server.client(&server.keys.alice).await;
    let mut admin = server.client(&server.keys.admin).await;

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
    let events_before = server.count("events").await;

    for (name, reason) in [
        (&approved.name, "REQUEST_ALREADY_DECIDED"),
        (&cancelled.name, "REQUEST_ALREADY_CANCELLED"),
    ] {
        let status = assert_error(
            admin
                .approve_access_request(pb::ApproveAccessRequestRequest {
                    name: name.clone(),
                    ..Default::default()
                })
                .await,
            Code::FailedPrecondition,
            reason,
        );
        assert!(
            status.message().contains("cannot approve"),
            "{}",
            status.message()
        );
        assert_error(
            admin
                .reject_access_request(pb::RejectAccessRequestRequest {
                    name: name.clone(),
                    reason: "late".into(),
                    ..Default::default()
                })
                .await,
            Code::FailedPrecondition,
            reason,
        );
        assert_error(
            alice
                .cancel_access_request(pb::CancelAccessRequestRequest {
                    name: name.clone(),
                    ..Default::default()
                })
                .await,
            Code::FailedPrecondition,
            reason,
        );
    }
    assert_eq!(
        server.count("events").await,
        events_before,
        "refused calls append nothing"
    );

    let missing = "accessRequests/0190a5f0-0000-7000-8000-000000000000";
    assert_error(
        admin
            .approve_access_request(pb::ApproveAccessRequestRequest {
                name: missing.into(),
                ..Default::default()
            })
            .await,
        Code::NotFound,
        "REQUEST_NOT_FOUND",
    );
    assert_error(
        admin
            .get_access_request(pb::GetAccessRequestRequest {
                name: missing.into(),
            })
            .await,
        Code::NotFound,
        "REQUEST_NOT_FOUND",
    );
    server.stop().await;
}

async fn stale_etag_aborts(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut alice = server.client(&server.keys.alice).await;
    let mut admin = server.client(&server.keys.admin).await;
    let seen = submit(&mut alice).await;

    // Another admin decides first; a decision based on the old view aborts.
    admin
        .approve_access_request(pb::ApproveAccessRequestRequest {
            name: seen.name.clone(),
            etag: seen.etag.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_error(
        admin
            .reject_access_request(pb::RejectAccessRequestRequest {
                name: seen.name.clone(),
                etag: seen.etag.clone(),
                reason: "too late".into(),
            })
            .await,
        Code::Aborted,
        "ETAG_MISMATCH",
    );

    let other = submit(&mut alice).await;
    assert_error(
        admin
            .approve_access_request(pb::ApproveAccessRequestRequest {
                name: other.name.clone(),
                etag: "0000000000000000".into(),
                ..Default::default()
            })
            .await,
        Code::Aborted,
        "ETAG_MISMATCH",
    );
    let still = admin
        .get_access_request(pb::GetAccessRequestRequest {
            name: other.name.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .access_request
        .unwrap();
    assert_eq!(still.state(), pb::AccessRequestState::Pending);
    assert_eq!(still.etag, other.etag);
    server.stop().await;
}

async fn list_all(
    client: &mut Client,
    page_size: i32,
    filter: pb::ListAccessRequestsRequest,
) -> (Vec<pb::AccessRequest>, usize) {
    let mut items = Vec::new();
    let mut pages = 0;
    let mut page_token = String::new();
    loop {
        let page = client
            .list_access_requests(pb::ListAccessRequestsRequest {
                page_size,
                page_token: page_token.clone(),
                ..filter.clone()
            })
            .await
            .expect("list page")
            .into_inner();
        pages += 1;
        assert!(page.access_requests.len() <= page_size as usize);
        items.extend(page.access_requests);
        if page.next_page_token.is_empty() {
            return (items, pages);
        }
        page_token = page.next_page_token;
    }
}

async fn pagination_through_a_thousand_requests(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut workers = Vec::new();
    for worker in 0..8 {
        let mut client = server.client(&server.keys.alice).await;
        workers.push(tokio::spawn(async move {
            let mut names = Vec::new();
            for index in 0..125 {
                let mut request = valid_submission();
                request.resource = format!("gateway-{worker}-{index}");
                let created = client.submit_access_request(request).await.expect("submit");
                names.push(created.into_inner().access_request.unwrap().name);
            }
            names
        }));
    }
    let mut submitted = HashSet::new();
    for worker in workers {
        submitted.extend(worker.await.unwrap());
    }
    assert_eq!(submitted.len(), 1000);

    let mut admin = server.client(&server.keys.admin).await;
    let (items, pages) = list_all(&mut admin, 37, Default::default()).await;
    assert_eq!(pages, 1000usize.div_ceil(37));
    let listed: Vec<String> = items.iter().map(|item| item.name.clone()).collect();
    let unique: HashSet<String> = listed.iter().cloned().collect();
    assert_eq!(listed.len(), 1000, "no duplicates");
    assert_eq!(unique, submitted, "no gaps");
    let times: Vec<(i64, i32)> = items
        .iter()
        .map(|item| {
            let time = item.create_time.unwrap();
            (time.seconds, time.nanos)
        })
        .collect();
    assert!(
        times.windows(2).all(|pair| pair[0] >= pair[1]),
        "newest first"
    );

    // Default and maximum page sizes.
    let default_page = admin
        .list_access_requests(pb::ListAccessRequestsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(default_page.access_requests.len(), 50);
    let max_page = admin
        .list_access_requests(pb::ListAccessRequestsRequest {
            page_size: 100_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(max_page.access_requests.len(), 500);

    // A page token only works for the query and caller that received it.
    let token = default_page.next_page_token;
    assert!(!token.is_empty());
    assert_error(
        admin
            .list_access_requests(pb::ListAccessRequestsRequest {
                page_token: token.clone(),
                state: pb::AccessRequestState::Pending.into(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "PAGE_TOKEN_INVALID",
    );
    let mut alice = server.client(&server.keys.alice).await;
    assert_error(
        alice
            .list_access_requests(pb::ListAccessRequestsRequest {
                page_token: token.clone(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "PAGE_TOKEN_INVALID",
    );
    let mut forged = token.clone();
    forged.insert(3, 'x');
    for bad in [forged, "garbage".to_owned(), format!("{token}A")] {
        let status = assert_error(
            admin
                .list_access_requests(pb::ListAccessRequestsRequest {
                    page_token: bad,
                    ..Default::default()
                })
                .await,
            Code::InvalidArgument,
            "PAGE_TOKEN_INVALID",
        );
        assert_eq!(bad_fields(&status), ["page_token"]);
    }
    server.stop().await;
}

async fn list_filters_and_bad_list_arguments(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut alice = server.client(&server.keys.alice).await;
    let mut admin = server.client(&server.keys.admin).await;
    let first = submit(&mut alice).await;
    let mut customer = valid_submission();
    customer.user_type = pb::UserType::Customer.into();
    let second = alice
        .submit_access_request(customer)
        .await
        .unwrap()
        .into_inner()
        .access_request
        .unwrap();
    admin
        .approve_access_request(pb::ApproveAccessRequestRequest {
            name: first.name.clone(),
            ..Default::default()
        })
        .await
        .unwrap();

    let names = async |admin: &mut Client, filter: pb::ListAccessRequestsRequest| -> Vec<String> {
        list_all(admin, 10, filter)
            .await
            .0
            .into_iter()
            .map(|item| item.name)
            .collect()
    };
    let approved = names(
        &mut admin,
        pb::ListAccessRequestsRequest {
            state: pb::AccessRequestState::Approved.into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(approved, [first.name.as_str()]);
    let customers = names(
        &mut admin,
        pb::ListAccessRequestsRequest {
            user_type: pb::UserType::Customer.into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(customers, [second.name.as_str()]);
    let second_time = second.create_time.unwrap();
    let from_second = names(
        &mut admin,
        pb::ListAccessRequestsRequest {
            create_time_start: Some(second_time),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(from_second, [second.name.as_str()]);
    let before_second = names(
        &mut admin,
        pb::ListAccessRequestsRequest {
            create_time_end: Some(second_time),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(before_second, [first.name.as_str()]);

    let status = assert_error(
        admin
            .list_access_requests(pb::ListAccessRequestsRequest {
                page_size: -1,
                state: 42,
                user_type: 42,
                create_time_start: Some(second_time),
                create_time_end: Some(second_time),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(
        bad_fields(&status),
        ["page_size", "state", "user_type", "create_time_end"]
    );
    let status = assert_error(
        admin
            .list_access_requests(pb::ListAccessRequestsRequest {
                create_time_start: Some(prost_types::Timestamp {
                    seconds: 0,
                    nanos: -5,
                }),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(bad_fields(&status), ["create_time_start"]);
    server.stop().await;
}

async fn decision_arguments_are_validated(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut admin = server.client(&server.keys.admin).await;
    let mut alice = server.client(&server.keys.alice).await;
    let pending = submit(&mut alice).await;

    let status = assert_error(
        admin
            .reject_access_request(pb::RejectAccessRequestRequest {
                name: "requests/42".into(),
                etag: String::new(),
                reason: " ".into(),
            })
            .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(bad_fields(&status), ["name", "reason"]);
    let status = assert_error(
        admin
            .approve_access_request(pb::ApproveAccessRequestRequest {
                name: pending.name.clone(),
                etag: String::new(),
                note: "n".repeat(1001),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(bad_fields(&status), ["note"]);
    let status = assert_error(
        admin
            .get_access_request(pb::GetAccessRequestRequest {
                name: String::new(),
            })
            .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(bad_fields(&status), ["name"]);
    let still = admin
        .get_access_request(pb::GetAccessRequestRequest {
            name: pending.name.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .access_request
        .unwrap();
    assert_eq!(still, pending, "refused decisions change nothing");
    server.stop().await;
}

/// The console's queue: oldest first across pages, one resource, one
/// applicant (through the blind index, ignoring case), and the new
/// arguments' violations.
async fn queue_filters_by_resource_and_applicant_oldest_first(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut alice = server.client(&server.keys.alice).await;
    let mut admin = server.client(&server.keys.admin).await;
    let mut submitted = Vec::new();
    for (resource, email) in [
        ("vpn-paris", "ada@example.com"),
        ("vpn-lyon", "grace@example.com"),
        ("vpn-paris", "Ada@Example.COM"),
        ("vpn-paris", "grace@example.com"),
        ("vpn-lyon", "ada@example.com"),
    ] {
        let mut request = valid_submission();
        request.resource = resource.into();
        request.applicant.as_mut().unwrap().email = email.into();
        let created = alice
            .submit_access_request(request)
            .await
            .expect("submit")
            .into_inner()
            .access_request
            .unwrap();
        submitted.push((created.name, resource, email.to_lowercase()));
    }
    let names = async |admin: &mut Client, filter: pb::ListAccessRequestsRequest| -> Vec<String> {
        list_all(admin, 2, filter)
            .await
            .0
            .into_iter()
            .map(|item| item.name)
            .collect()
    };
    let expect = |keep: &dyn Fn(&str, &str) -> bool| -> Vec<String> {
        submitted
            .iter()
            .filter(|(_, resource, email)| keep(resource, email))
            .map(|(name, _, _)| name.clone())
            .collect()
    };
    let oldest_first = expect(&|_, _| true);
    let mut newest_first = oldest_first.clone();
    newest_first.reverse();

    for order_by in ["create_time", "create_time asc", "  create_time   asc "] {
        let listed = names(
            &mut admin,
            pb::ListAccessRequestsRequest {
                order_by: order_by.into(),
                ..Default::default()
            },
        )
        .await;
        assert_eq!(listed, oldest_first, "order_by {order_by:?}");
    }
    for order_by in ["", "create_time desc"] {
        let listed = names(
            &mut admin,
            pb::ListAccessRequestsRequest {
                order_by: order_by.into(),
                ..Default::default()
            },
        )
        .await;
        assert_eq!(listed, newest_first, "order_by {order_by:?}");
    }
    let paris = names(
        &mut admin,
        pb::ListAccessRequestsRequest {
            resource: "vpn-paris".into(),
            order_by: "create_time".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(paris, expect(&|resource, _| resource == "vpn-paris"));
    let ada = names(
        &mut admin,
        pb::ListAccessRequestsRequest {
            applicant_email: " ADA@example.com ".into(),
            order_by: "create_time".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(ada, expect(&|_, email| email == "ada@example.com"));
    assert_eq!(ada.len(), 3, "matched whatever case the submission used");
    let ada_in_paris = names(
        &mut admin,
        pb::ListAccessRequestsRequest {
            applicant_email: "ada@example.com".into(),
            resource: "vpn-paris".into(),
            state: pb::AccessRequestState::Pending.into(),
            ..Default::default()
        },
    )
    .await;
    let mut expected =
        expect(&|resource, email| resource == "vpn-paris" && email == "ada@example.com");
    expected.reverse();
    assert_eq!(ada_in_paris, expected);
    let nobody = names(
        &mut admin,
        pb::ListAccessRequestsRequest {
            applicant_email: "nobody@example.com".into(),
            ..Default::default()
        },
    )
    .await;
    assert!(nobody.is_empty());
    // A submitter's filters apply within its own requests.
    let mut bob = server.client(&server.keys.bob).await;
    let bobs = names(
        &mut bob,
        pb::ListAccessRequestsRequest {
            resource: "vpn-paris".into(),
            ..Default::default()
        },
    )
    .await;
    assert!(bobs.is_empty(), "bob sees none of alice's requests");

    // A token of the oldest-first list is refused by the newest-first one.
    let first_page = admin
        .list_access_requests(pb::ListAccessRequestsRequest {
            page_size: 2,
            order_by: "create_time".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    for other in [
        pb::ListAccessRequestsRequest::default(),
        pb::ListAccessRequestsRequest {
            order_by: "create_time".into(),
            resource: "vpn-paris".into(),
            ..Default::default()
        },
        pb::ListAccessRequestsRequest {
            order_by: "create_time".into(),
            applicant_email: "ada@example.com".into(),
            ..Default::default()
        },
    ] {
        assert_error(
            admin
                .list_access_requests(pb::ListAccessRequestsRequest {
                    page_size: 2,
                    page_token: first_page.next_page_token.clone(),
                    ..other
                })
                .await,
            Code::InvalidArgument,
            "PAGE_TOKEN_INVALID",
        );
    }

    let status = assert_error(
        admin
            .list_access_requests(pb::ListAccessRequestsRequest {
                resource: "r".repeat(201),
                applicant_email: "not an address".into(),
                order_by: "update_time desc".into(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(
        bad_fields(&status),
        ["resource", "applicant_email", "order_by"]
    );
    server.stop().await;
}

/// GetCaller names the key and its role for any valid key, refuses others.
async fn get_caller_describes_the_key(backend: Backend) {
    use sesame_proto::v1::caller_service_client::CallerServiceClient;
    let server = TestServer::start(backend).await;
    for (key, name, role) in [
        (&server.keys.admin, "admin", pb::CallerRole::Admin),
        (&server.keys.auditor, "auditor", pb::CallerRole::Auditor),
        (&server.keys.alice, "alice", pb::CallerRole::Submitter),
    ] {
        let bearer = crate::harness::Bearer::new(key).unwrap();
        let mut caller = CallerServiceClient::with_interceptor(server.channel().await, bearer);
        let answer = caller
            .get_caller(pb::GetCallerRequest {})
            .await
            .expect("get caller")
            .into_inner();
        assert_eq!(answer.name, name);
        assert_eq!(answer.role(), role);
        let sla = answer.review_sla.expect("review sla");
        assert_eq!(
            sla.seconds as u64, server.config.review_sla_secs,
            "the server's review SLA"
        );
    }
    // Well-formed, but no such key.
    let mut forged = server.keys.admin.clone();
    let last = if forged.ends_with('A') { 'B' } else { 'A' };
    forged.pop();
    forged.push(last);
    let bearer = crate::harness::Bearer::new(&forged).unwrap();
    let mut unknown = CallerServiceClient::with_interceptor(server.channel().await, bearer);
    assert_error(
        unknown.get_caller(pb::GetCallerRequest {}).await,
        Code::Unauthenticated,
        "API_KEY_INVALID",
    );
    server.stop().await;
}
