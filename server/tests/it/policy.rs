//! The decision policy end to end: a rule approves at submit (with a code
//! that a gateway redeems once), rejects, or asks for N distinct admins;
//! ExplainDecision is a dry run; the file is reloaded when it changes and a
//! bad file leaves the previous policy in force.

use std::path::Path;
use std::time::Duration;

use sesame_client::{Bearer, v1 as pb};
use sesame_proto::v1::gateway_service_client::GatewayServiceClient;
use sesame_server::auth::Role;
use tonic::Code;

use crate::harness::{Backend, TestServer, assert_error, both_backends, valid_submission};

both_backends!(
    a_partner_domain_is_approved_at_once_and_its_code_redeems_once,
    reviews_need_distinct_admins_and_never_the_submitter,
);

const PARTNERS: &str = r#"
[[rules]]
id = "blocked-domain"
action = "reject"
reason = "this domain may not get access"
email_domains = ["evil.example"]

[[rules]]
id = "partners"
action = "approve"
user_types = ["partner"]
email_domain_suffixes = ["partner.example"]

[[rules]]
id = "prod-db"
action = "require_review"
approvals = 2
resources = ["prod-db"]
"#;

fn write_policy(dir: &Path, text: &str) -> String {
    let path = dir.join("policy.toml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn submission(email: &str, resource: &str) -> pb::SubmitAccessRequestRequest {
    let mut submission = valid_submission();
    let applicant = submission.applicant.as_mut().unwrap();
    applicant.email = email.into();
    submission.user_type = pb::UserType::Partner.into();
    submission.resource = resource.into();
    submission.locale = "en".into();
    submission
}

async fn a_partner_domain_is_approved_at_once_and_its_code_redeems_once(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let policy = write_policy(dir.path(), PARTNERS);
    let server = TestServer::start_with(backend, |config| {
        config.policy_file = Some(policy);
        config.mail_worker = true;
        config.mail_poll_interval_ms = 50;
    })
    .await;
    let mut events = server.events(&server.keys.auditor).await;
    let mut watch = events
        .watch_events(pb::WatchEventsRequest {
            event_types: vec![pb::EventType::RequestApproved.into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    watch.message().await.unwrap().unwrap(); // ready

    let mut alice = server.client(&server.keys.alice).await;
    let created = alice
        .submit_access_request(submission("ada@eu.partner.example", "vpn-paris"))
        .await
        .unwrap()
        .into_inner()
        .access_request
        .unwrap();
    assert_eq!(
        created.state(),
        pb::AccessRequestState::Approved,
        "approved at once"
    );
    let decision = created.decision.clone().unwrap();
    assert_eq!(decision.actor, "system");
    assert!(decision.automatic);
    assert_eq!(
        decision.reason,
        "rule partners matched email_domain=eu.partner.example, user_type=partner"
    );
    let verdict = created.policy.clone().unwrap();
    assert_eq!(verdict.rule_id, "partners");
    assert_eq!(
        created.gateway_code.clone().unwrap().state(),
        pb::GatewayCodeState::Active
    );

    // The approval is on the event stream with its rule.
    let approved = loop {
        let message = tokio::time::timeout(Duration::from_secs(10), watch.message())
            .await
            .expect("an event within 10 s")
            .unwrap()
            .unwrap();
        if let Some(pb::watch_events_response::Kind::Event(event)) = message.kind {
            break event;
        }
    };
    assert_eq!(approved.access_request, created.name);
    assert_eq!(approved.rule_id, "partners");
    assert!(approved.automatic);

    // The applicant's email has the code; a gateway redeems it once.
    let mail_dir = server
        .config
        .mail_transport
        .trim_start_matches("file://")
        .to_owned();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let code = loop {
        let found = std::fs::read_dir(&mail_dir).ok().and_then(|entries| {
            entries.filter_map(Result::ok).find_map(|entry| {
                let text = std::fs::read_to_string(entry.path()).ok()?;
                text.lines()
                    .find_map(|line| line.strip_prefix("Your gateway code: "))
                    .map(|code| code.trim().to_owned())
            })
        });
        if let Some(code) = found {
            break code;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the approval email arrives"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (_, gateway_key) = server
        .store
        .create_api_key("gate", Role::Gateway)
        .await
        .unwrap();
    let mut gateway = GatewayServiceClient::with_interceptor(
        server.channel().await,
        Bearer::new(&gateway_key.secret).unwrap(),
    );
    let redeemed = gateway
        .redeem_gateway_code(pb::RedeemGatewayCodeRequest { code: code.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(redeemed.access_request, created.name);
    assert_error(
        gateway
            .redeem_gateway_code(pb::RedeemGatewayCodeRequest { code })
            .await,
        Code::FailedPrecondition,
        "GATEWAY_CODE_USED",
    );

    // A rejecting rule comes first for its domain.
    let rejected = alice
        .submit_access_request(submission("mallory@evil.example", "vpn-paris"))
        .await
        .unwrap()
        .into_inner()
        .access_request
        .unwrap();
    assert_eq!(rejected.state(), pb::AccessRequestState::Rejected);
    assert!(
        rejected
            .decision
            .unwrap()
            .reason
            .starts_with("this domain may not get access (rule blocked-domain matched")
    );
    server.stop().await;
}

async fn reviews_need_distinct_admins_and_never_the_submitter(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let policy = write_policy(dir.path(), PARTNERS);
    let server = TestServer::start_with(backend, |config| {
        config.policy_file = Some(policy);
    })
    .await;
    let mut first_admin = server.client(&server.keys.admin).await;
    let created = first_admin
        .submit_access_request(submission("ada@else.example", "prod-db"))
        .await
        .unwrap()
        .into_inner()
        .access_request
        .unwrap();
    assert_eq!(created.state(), pb::AccessRequestState::Pending);
    let verdict = created.policy.unwrap();
    assert_eq!(
        (verdict.rule_id.as_str(), verdict.required_approvals),
        ("prod-db", 2)
    );

    let approve = |name: &str| pb::ApproveAccessRequestRequest {
        name: name.into(),
        ..Default::default()
    };
    assert_error(
        first_admin
            .approve_access_request(approve(&created.name))
            .await,
        Code::PermissionDenied,
        "SELF_APPROVAL",
    );
    let mut others = Vec::new();
    for name in ["second-admin", "third-admin"] {
        let (_, key) = server
            .store
            .create_api_key(name, Role::Admin)
            .await
            .unwrap();
        others.push(server.client(&key.secret).await);
    }
    let once = others[0]
        .approve_access_request(approve(&created.name))
        .await
        .unwrap()
        .into_inner()
        .access_request
        .unwrap();
    assert_eq!(once.state(), pb::AccessRequestState::Pending);
    assert_eq!(once.policy.unwrap().approved_by, ["second-admin"]);
    assert!(once.gateway_code.is_none());
    assert_error(
        others[0]
            .approve_access_request(approve(&created.name))
            .await,
        Code::FailedPrecondition,
        "ALREADY_APPROVED_BY_CALLER",
    );
    let twice = others[1]
        .approve_access_request(approve(&created.name))
        .await
        .unwrap()
        .into_inner()
        .access_request
        .unwrap();
    assert_eq!(twice.state(), pb::AccessRequestState::Approved);
    assert_eq!(
        twice.policy.unwrap().approved_by,
        ["second-admin", "third-admin"]
    );
    assert_eq!(twice.decision.unwrap().actor, "third-admin");
    assert!(twice.gateway_code.is_some());
    server.stop().await;
}

#[tokio::test]
async fn explain_is_a_dry_run_and_the_policy_reloads_without_restart() {
    let dir = tempfile::tempdir().unwrap();
    let policy = write_policy(dir.path(), PARTNERS);
    let server = TestServer::start_with(Backend::Sqlite, |config| {
        config.policy_file = Some(policy.clone());
        config.policy_poll_interval_ms = 50;
    })
    .await;
    let mut alice = server.client(&server.keys.alice).await;
    let explain = async |alice: &mut crate::harness::Client| {
        alice
            .explain_decision(pb::ExplainDecisionRequest {
                submission: Some(submission("ada@partner.example", "vpn-paris")),
            })
            .await
            .unwrap()
            .into_inner()
    };
    let answer = explain(&mut alice).await;
    assert_eq!(answer.action(), pb::PolicyAction::Approve);
    let verdict = answer.verdict.unwrap();
    assert_eq!(verdict.rule_id, "partners");
    assert_eq!(verdict.matched["email_domain"], "partner.example");
    assert_eq!(verdict.matched["user_type"], "partner");
    let listed = alice
        .list_access_requests(pb::ListAccessRequestsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(
        listed.access_requests.is_empty(),
        "a dry run stores nothing"
    );
    let invalid = assert_error(
        alice
            .explain_decision(pb::ExplainDecisionRequest {
                submission: Some(submission("not an email", "vpn-paris")),
            })
            .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(crate::harness::bad_fields(&invalid), ["applicant.email"]);

    // A bad file is refused: the previous policy stays in force.
    std::fs::write(&policy, "[[rules]]\nid = \"x\"\naction = \"maybe\"\n").unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        explain(&mut alice).await.action(),
        pb::PolicyAction::Approve
    );

    // A good new file takes over without a restart.
    std::fs::write(
        &policy,
        "[[rules]]\nid = \"closed\"\naction = \"reject\"\nreason = \"closed for maintenance\"\n",
    )
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let answer = explain(&mut alice).await;
        if answer.action() == pb::PolicyAction::Reject {
            assert_eq!(answer.reject_reason, "closed for maintenance");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new policy is loaded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.stop().await;

    // A server does not start on a bad policy file, and says why.
    std::fs::write(&policy, "[[rules]]\nid = \"x\"\naction = \"maybe\"\n").unwrap();
    let config = sesame_server::Config {
        database_url: format!("sqlite://{}", dir.path().join("other.db").display()),
        policy_file: Some(policy.clone()),
        mail_worker: false,
        ..sesame_server::Config::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let error = sesame_server::server::run(config, listener, Default::default())
        .await
        .unwrap_err();
    let shown = format!("{error:#}");
    assert!(
        shown.contains("decision policy") && shown.contains("policy.toml"),
        "{shown}"
    );
    assert!(shown.contains("action \"maybe\""), "{shown}");
}
