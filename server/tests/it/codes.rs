//! Gateway codes end to end: issued by an approval and emailed, redeemed
//! once (also under concurrent calls), refused when used, revoked, expired,
//! guessed too often or malformed, reissued; never stored or shown in clear.

use std::path::Path;
use std::time::Duration;

use sea_orm::{ConnectionTrait, EntityTrait, FromQueryResult, JsonValue, Statement};
use sesame_client::{Bearer, v1 as pb};
use sesame_proto::v1::gateway_service_client::GatewayServiceClient;
use sesame_server::auth::Role;
use sesame_server::store::entities::outbox;
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic_types::StatusExt;

use crate::harness::{Backend, Client, TestServer, assert_error, both_backends, valid_submission};
use crate::mail::read_emails;

both_backends!(
    a_revoked_code_is_never_delivered,
    an_approval_issues_a_code_that_redeems_once,
    concurrent_redemptions_have_exactly_one_winner,
    wrong_guesses_revoke_the_code_and_callers_are_rate_limited,
    expired_revoked_and_reissued_codes,
    the_stored_data_holds_no_clear_code,
    gateway_keys_bound_to_resources_redeem_only_their_codes,
);

type Gateway = GatewayServiceClient<InterceptedService<Channel, Bearer>>;

async fn gateway_client(server: &TestServer, name: &str) -> Gateway {
    let (_, key) = server
        .store
        .create_api_key(name, Role::Gateway)
        .await
        .expect("create a gateway key");
    let bearer = Bearer::new(&key.secret).expect("ascii key");
    GatewayServiceClient::with_interceptor(server.channel().await, bearer)
}

async fn admin_gateway(server: &TestServer) -> Gateway {
    let bearer = Bearer::new(&server.keys.admin).expect("ascii key");
    GatewayServiceClient::with_interceptor(server.channel().await, bearer)
}

/// Submits as alice (emails in English) and approves as admin, asking for
/// the code back.
async fn approved(server: &TestServer) -> (pb::AccessRequest, String) {
    let mut alice = server.client(&server.keys.alice).await;
    let mut admin: Client = server.client(&server.keys.admin).await;
    let mut submission = valid_submission();
    submission.locale = "en".into();
    let created = alice
        .submit_access_request(submission)
        .await
        .unwrap()
        .into_inner()
        .access_request
        .unwrap();
    let response = admin
        .approve_access_request(pb::ApproveAccessRequestRequest {
            name: created.name,
            return_code: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    (response.access_request.unwrap(), response.gateway_code)
}

async fn redeem(
    gateway: &mut Gateway,
    code: &str,
) -> Result<pb::RedeemGatewayCodeResponse, tonic::Status> {
    gateway
        .redeem_gateway_code(pb::RedeemGatewayCodeRequest { code: code.into() })
        .await
        .map(tonic::Response::into_inner)
}

async fn event_types(server: &TestServer, name: &str) -> Vec<(String, String, String)> {
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
        .into_iter()
        .map(|event| (format!("{:?}", event.r#type()), event.actor, event.reason))
        .collect()
}

async fn wait_for_email_containing(dir: &Path, needle: &str) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(email) = read_emails(dir)
            .into_iter()
            .find(|email| email.contains(needle))
        {
            return email;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no email containing {needle} within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn mail_dir(server: &TestServer) -> std::path::PathBuf {
    server
        .config
        .mail_transport
        .strip_prefix("file://")
        .expect("the test server writes emails to files")
        .into()
}

async fn an_approval_issues_a_code_that_redeems_once(backend: Backend) {
    let server = TestServer::start_with(backend, |config| {
        config.mail_worker = true;
        config.mail_poll_interval_ms = 50;
    })
    .await;
    let (request, code) = approved(&server).await;
    assert_eq!(code.len(), 29, "{code}");
    let status = request.gateway_code.clone().unwrap();
    assert_eq!(status.state(), pb::GatewayCodeState::Active);
    let validity = status.expire_time.unwrap().seconds - status.issue_time.unwrap().seconds;
    assert_eq!(validity, 72 * 3600, "the default validity");

    // The applicant's approval email carries the code.
    let email = wait_for_email_containing(&mail_dir(&server), &code).await;
    assert!(email.contains("To: ada@example.com"), "{email}");
    assert!(email.contains("Your gateway code"), "{email}");
    // Once the email is sent, the outbox row no longer holds the sealed code.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let rows = outbox::Entity::find()
            .all(server.store.connection())
            .await
            .unwrap();
        let approval = rows
            .iter()
            .find(|row| row.template == "applicant_approved")
            .expect("the approval email is queued");
        if approval.state == "sent" {
            assert!(!approval.data.contains("gateway_code"), "{}", approval.data);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the approval email is sent"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Only gateways redeem; typing is forgiving.
    let status = redeem(&mut admin_gateway(&server).await, &code).await;
    assert_error(status, Code::PermissionDenied, "ROLE_NOT_ALLOWED");
    let mut gateway = gateway_client(&server, "gate-paris").await;
    let typed = code.to_lowercase().replace('-', " ");
    let redeemed = redeem(&mut gateway, &typed).await.unwrap();
    assert_eq!(redeemed.access_request, request.name);
    assert_eq!(redeemed.applicant.unwrap().email, "ada@example.com");
    assert_eq!(redeemed.resource, "vpn-paris");
    assert_error(
        redeem(&mut gateway, &code).await,
        Code::FailedPrecondition,
        "GATEWAY_CODE_USED",
    );

    let mut admin = server.client(&server.keys.admin).await;
    let read = admin
        .get_access_request(pb::GetAccessRequestRequest {
            name: request.name.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .access_request
        .unwrap();
    let status = read.gateway_code.unwrap();
    assert_eq!(status.state(), pb::GatewayCodeState::Redeemed);
    assert_eq!(status.redeemed_by, "gate-paris");
    assert!(status.redeem_time.is_some());

    let events = event_types(&server, &request.name).await;
    // The mail worker's `EmailSent` events interleave with these.
    let kinds: Vec<&str> = events
        .iter()
        .map(|(kind, _, _)| kind.as_str())
        .filter(|kind| !kind.starts_with("Email"))
        .collect();
    assert!(
        kinds.starts_with(&["RequestSubmitted", "RequestApproved", "CodeIssued"]),
        "{kinds:?}"
    );
    assert!(events.contains(&("CodeRedeemed".into(), "gate-paris".into(), String::new())));
    server.stop().await;
}

async fn concurrent_redemptions_have_exactly_one_winner(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (_, code) = approved(&server).await;
    let gateway = gateway_client(&server, "gate").await;
    let calls = (0..20).map(|_| {
        let mut gateway = gateway.clone();
        let code = code.clone();
        tokio::spawn(async move { redeem(&mut gateway, &code).await })
    });
    let outcomes = futures::future::join_all(calls).await;
    let mut wins = 0;
    for outcome in outcomes {
        match outcome.unwrap() {
            Ok(_) => wins += 1,
            Err(status) => {
                assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
                assert_eq!(crate::harness::reason(&status), "GATEWAY_CODE_USED");
            }
        }
    }
    assert_eq!(wins, 1, "exactly one concurrent redemption wins");
    server.stop().await;
}

async fn wrong_guesses_revoke_the_code_and_callers_are_rate_limited(backend: Backend) {
    let server = TestServer::start_with(backend, |config| {
        config.gateway_failures_per_minute = 7;
    })
    .await;
    let (request, code) = approved(&server).await;
    let mut gateway = gateway_client(&server, "guesser").await;

    // Not a code at all: refused before any lookup, and counted.
    let status = assert_error(
        redeem(&mut gateway, "K7Q2-9MZX").await,
        Code::InvalidArgument,
        "GATEWAY_CODE_MALFORMED",
    );
    assert_eq!(crate::harness::bad_fields(&status), ["code"]);

    // Same selector, wrong secret: five guesses revoke the code.
    let wrong = |n: usize| {
        let mut chars: Vec<char> = code.chars().collect();
        let secret: Vec<usize> = (5..chars.len()).filter(|&i| chars[i] != '-').collect();
        let at = secret[secret.len() - 1 - n];
        chars[at] = if chars[at] == 'Z' { 'Y' } else { 'Z' };
        chars.into_iter().collect::<String>()
    };
    for n in 0..5 {
        assert_error(
            redeem(&mut gateway, &wrong(n)).await,
            Code::NotFound,
            "GATEWAY_CODE_NOT_FOUND",
        );
    }
    assert_error(
        redeem(&mut gateway, &code).await,
        Code::FailedPrecondition,
        "GATEWAY_CODE_REVOKED",
    );
    let events = event_types(&server, &request.name).await;
    let failed: Vec<&(String, String, String)> = events
        .iter()
        .filter(|(kind, _, _)| kind == "CodeRedemptionFailed")
        .collect();
    assert_eq!(failed.len(), 5);
    assert_eq!(failed[4].2, "wrong code, attempt 5 of 5");
    assert!(
        events
            .iter()
            .any(|(kind, actor, reason)| kind == "CodeRevoked"
                && actor == "system"
                && reason == "5 wrong guesses")
    );

    // 1 malformed + 5 wrong + 1 revoked = 7 failures: the next call waits.
    let status = redeem(&mut gateway, &code).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert_eq!(
        crate::harness::reason(&status),
        "TOO_MANY_FAILED_REDEMPTIONS"
    );
    let retry = status
        .get_error_details()
        .retry_info()
        .unwrap()
        .retry_delay
        .unwrap();
    assert!(
        retry > Duration::ZERO && retry <= Duration::from_secs(60),
        "{retry:?}"
    );
    // Another gateway is not held back.
    let mut other = gateway_client(&server, "other").await;
    assert_error(
        redeem(&mut other, &code).await,
        Code::FailedPrecondition,
        "GATEWAY_CODE_REVOKED",
    );
    server.stop().await;
}

async fn expired_revoked_and_reissued_codes(backend: Backend) {
    let server = TestServer::start_with(backend, |config| {
        config.mail_worker = true;
        config.mail_poll_interval_ms = 50;
        config.gateway_code_validity_by_resource = [("vpn-paris".to_owned(), 600)].into();
    })
    .await;
    let mut gateway = gateway_client(&server, "gate").await;
    let mut codes = admin_gateway(&server).await;

    // Validity per resource.
    let (expiring, code) = approved(&server).await;
    let status = expiring.gateway_code.unwrap();
    assert_eq!(
        status.expire_time.unwrap().seconds - status.issue_time.unwrap().seconds,
        600
    );
    // Time passes (the stored expiry is moved into the past).
    let db = server.store.connection();
    db.execute_raw(Statement::from_string(
        db.get_database_backend(),
        "UPDATE gateway_codes SET expires_at_us = expires_at_us - 601000000",
    ))
    .await
    .unwrap();
    assert_error(
        redeem(&mut gateway, &code).await,
        Code::FailedPrecondition,
        "GATEWAY_CODE_EXPIRED",
    );

    // Revoked by an administrator.
    let (revocable, code) = approved(&server).await;
    let revoked = codes
        .revoke_gateway_code(pb::RevokeGatewayCodeRequest {
            access_request: revocable.name.clone(),
            reason: "laptop stolen".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .gateway_code
        .unwrap();
    assert_eq!(revoked.state(), pb::GatewayCodeState::Revoked);
    assert_error(
        redeem(&mut gateway, &code).await,
        Code::FailedPrecondition,
        "GATEWAY_CODE_REVOKED",
    );
    assert_error(
        codes
            .revoke_gateway_code(pb::RevokeGatewayCodeRequest {
                access_request: revocable.name.clone(),
                reason: String::new(),
            })
            .await,
        Code::FailedPrecondition,
        "GATEWAY_CODE_NOT_ACTIVE",
    );

    // Reissued: a new code by email, the old one dead. UNAVAILABLE (a
    // transient database error, seen once on PostgreSQL under the full
    // suite's load) is retried, as AIP-194 asks of every client.
    let mut attempts = 0;
    let reissued = loop {
        attempts += 1;
        match codes
            .reissue_gateway_code(pb::ReissueGatewayCodeRequest {
                access_request: revocable.name.clone(),
            })
            .await
        {
            Err(status) if status.code() == Code::Unavailable && attempts < 5 => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            outcome => break outcome.unwrap().into_inner().gateway_code.unwrap(),
        }
    };
    assert_eq!(reissued.state(), pb::GatewayCodeState::Active);
    let email =
        wait_for_email_containing(&mail_dir(&server), "replaces the code sent earlier").await;
    let new_code = email
        .lines()
        .find_map(|line| line.strip_prefix("Your gateway code: "))
        .expect("the reissue email shows the code")
        .trim()
        .to_owned();
    assert_ne!(new_code, code);
    redeem(&mut gateway, &new_code).await.unwrap();
    assert_error(
        codes
            .reissue_gateway_code(pb::ReissueGatewayCodeRequest {
                access_request: revocable.name.clone(),
            })
            .await,
        Code::FailedPrecondition,
        "GATEWAY_CODE_USED",
    );

    // Only approved requests have codes.
    let mut alice = server.client(&server.keys.alice).await;
    let pending = alice
        .submit_access_request(valid_submission())
        .await
        .unwrap()
        .into_inner()
        .access_request
        .unwrap();
    assert_error(
        codes
            .reissue_gateway_code(pb::ReissueGatewayCodeRequest {
                access_request: pending.name,
            })
            .await,
        Code::FailedPrecondition,
        "REQUEST_NOT_APPROVED",
    );
    server.stop().await;
}

async fn the_stored_data_holds_no_clear_code(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (request, code) = approved(&server).await;
    let bare = code.replace('-', "");

    // Every row of every table, as JSON: the code is in none of them, in
    // either form, though the approval email (not sent yet: the worker is
    // off) carries it sealed.
    let db = server.store.connection();
    let backend_kind = db.get_database_backend();
    let tables_sql = match backend {
        Backend::Sqlite => "SELECT name AS t FROM sqlite_master WHERE type = 'table'",
        Backend::Postgres => {
            "SELECT tablename AS t FROM pg_tables WHERE schemaname = current_schema()"
        }
    };
    let tables = JsonValue::find_by_statement(Statement::from_string(backend_kind, tables_sql))
        .all(db)
        .await
        .unwrap();
    let mut dump = String::new();
    for table in tables {
        let name = table["t"].as_str().unwrap().to_owned();
        let rows = JsonValue::find_by_statement(Statement::from_string(
            backend_kind,
            format!("SELECT * FROM {name}"),
        ))
        .all(db)
        .await
        .unwrap();
        dump.push_str(&serde_json::to_string(&rows).unwrap());
    }
    assert!(
        dump.contains("gateway_code_sealed"),
        "the email waits with its sealed code"
    );
    assert!(dump.contains(&request.name.replace("accessRequests/", "")));
    assert!(
        !dump.contains(&code) && !dump.contains(&bare),
        "a clear code is stored"
    );
    if backend == Backend::Sqlite {
        // The database files themselves, write-ahead log included.
        let path = server.config.database_url.trim_start_matches("sqlite://");
        for file in [path.to_owned(), format!("{path}-wal")] {
            if let Ok(bytes) = std::fs::read(&file) {
                let text = String::from_utf8_lossy(&bytes);
                assert!(!text.contains(&code) && !text.contains(&bare), "{file}");
            }
        }
    }
    server.stop().await;
}

/// The approval emails of `name` that still carry a sealed code.
async fn sealed_approval_emails(server: &TestServer, name: &str) -> usize {
    use sea_orm::{ColumnTrait, QueryFilter};
    outbox::Entity::find()
        .filter(outbox::Column::AccessRequestId.eq(name.trim_start_matches("accessRequests/")))
        .filter(outbox::Column::Template.eq("applicant_approved"))
        .all(server.store.connection())
        .await
        .unwrap()
        .iter()
        .filter(|row| row.data.contains("gateway_code_sealed"))
        .count()
}

async fn a_revoked_code_is_never_delivered(backend: Backend) {
    // The worker is off: the approval email waits with its sealed code.
    let server = TestServer::start(backend).await;
    let (request, _) = approved(&server).await;
    assert_eq!(sealed_approval_emails(&server, &request.name).await, 1);
    let mut codes = admin_gateway(&server).await;
    codes
        .revoke_gateway_code(pb::RevokeGatewayCodeRequest {
            access_request: request.name.clone(),
            reason: "sent to the wrong person".into(),
        })
        .await
        .unwrap();
    assert_eq!(
        sealed_approval_emails(&server, &request.name).await,
        0,
        "the unsent email loses the revoked code"
    );
    codes
        .reissue_gateway_code(pb::ReissueGatewayCodeRequest {
            access_request: request.name.clone(),
        })
        .await
        .unwrap();
    assert_eq!(
        sealed_approval_emails(&server, &request.name).await,
        1,
        "only the reissued code waits to be sent"
    );
    server.stop().await;
}

/// A gateway key bound to resources redeems only their codes: another
/// resource's right code is PERMISSION_DENIED, changes nothing (the code
/// still redeems at its own gateway) and counts toward the key's failure
/// budget; an unbound key (made before keys could be bound) still redeems.
async fn gateway_keys_bound_to_resources_redeem_only_their_codes(backend: Backend) {
    let server = TestServer::start_with(backend, |config| {
        config.gateway_failures_per_minute = 3;
    })
    .await;
    let bound_client = async |name: &str, resources: &[&str]| -> Gateway {
        let resources: Vec<String> = resources.iter().map(|r| (*r).to_owned()).collect();
        let (info, key) = server
            .store
            .create_bound_api_key(name, Role::Gateway, &resources)
            .await
            .expect("create a bound gateway key");
        assert_eq!(info.resources, resources);
        let bearer = Bearer::new(&key.secret).expect("ascii key");
        GatewayServiceClient::with_interceptor(server.channel().await, bearer)
    };
    // valid_submission() asks for vpn-paris.
    let (request, code) = approved(&server).await;
    assert_eq!(request.resource, "vpn-paris");
    let mut lyon = bound_client("gw-lyon", &["vpn-lyon", "vpn-lyon-2"]).await;
    for _ in 0..3 {
        let status = assert_error(
            redeem(&mut lyon, &code).await,
            Code::PermissionDenied,
            "GATEWAY_RESOURCE_NOT_ALLOWED",
        );
        assert!(status.message().contains("vpn-paris"), "{status:?}");
    }
    // Three refusals spent gw-lyon's budget of 3 a minute.
    assert_error(
        redeem(&mut lyon, &code).await,
        Code::ResourceExhausted,
        "TOO_MANY_FAILED_REDEMPTIONS",
    );
    let events = event_types(&server, &request.name).await;
    assert!(
        !events
            .iter()
            .any(|(kind, _, _)| kind.starts_with("Code") && kind != "CodeIssued"),
        "a refused gateway changed nothing: {events:?}"
    );

    let mut paris = bound_client("gw-paris", &["vpn-paris"]).await;
    let redeemed = redeem(&mut paris, &code).await.expect("its own resource");
    assert_eq!(redeemed.resource, "vpn-paris");
    assert_eq!(redeemed.access_request, request.name);

    let (_, second_code) = approved(&server).await;
    let mut unbound = gateway_client(&server, "gw-anywhere").await;
    redeem(&mut unbound, &second_code)
        .await
        .expect("an unbound key redeems any resource");
    assert_eq!(
        server.store.unbound_gateway_keys().await.unwrap(),
        ["gw-anywhere"]
    );
    server.stop().await;
}
