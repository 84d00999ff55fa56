//! What the real binary writes to its logs during a full scenario (submit,
//! approve with an emailed code, wrong and right redemptions, a rejection)
//! at debug level: never the applicant's address or name, a gateway code,
//! or an API key.

use std::process::Stdio;
use std::time::Duration;

use sesame_client::{Bearer, SesameClient, v1 as pb};
use sesame_proto::v1::gateway_service_client::GatewayServiceClient;

use crate::harness::valid_submission;

const SESAME: &str = env!("CARGO_BIN_EXE_sesame");

#[tokio::test]
async fn logs_hold_no_personal_data_code_or_key() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("stderr.log");
    let stdout_path = dir.path().join("stdout.log");
    let mut child = tokio::process::Command::new(SESAME)
        .current_dir(dir.path())
        .env_remove("RUST_LOG")
        .env("SESAME_MAIL_POLL_INTERVAL_MS", "50")
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--log-filter",
            "debug",
            "--log-format",
            "json",
        ])
        .stdout(Stdio::from(std::fs::File::create(&stdout_path).unwrap()))
        .stderr(Stdio::from(std::fs::File::create(&log_path).unwrap()))
        .kill_on_drop(true)
        .spawn()
        .expect("spawn sesame");
    let addr = {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            let found = log.lines().find_map(|line| {
                let parsed: serde_json::Value = serde_json::from_str(line).ok()?;
                (parsed["fields"]["message"] == "sesame listening")
                    .then(|| parsed["fields"]["addr"].as_str().unwrap().to_owned())
            });
            if let Some(addr) = found {
                break addr;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "sesame listens: {log}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let admin_key = std::fs::read_to_string(&stdout_path)
        .unwrap()
        .lines()
        .map(str::trim)
        .find(|line| line.starts_with("sesame_"))
        .expect("the bootstrap key")
        .to_owned();
    let create_key = |name: &str, role: &str| {
        let output = std::process::Command::new(SESAME)
            .current_dir(dir.path())
            .args(["keys", "create", "--name", name, "--role", role])
            .output()
            .unwrap();
        assert!(output.status.success());
        String::from_utf8(output.stdout)
            .unwrap()
            .lines()
            .map(str::trim)
            .find(|line| line.starts_with("sesame_"))
            .expect("the new key")
            .to_owned()
    };
    let gateway_key = create_key("gate", "gateway");
    let submitter_key = create_key("backend", "submitter");

    let client = SesameClient::connect(&format!("http://{addr}"), &admin_key)
        .await
        .unwrap();
    let backend = SesameClient::connect(&format!("http://{addr}"), &submitter_key)
        .await
        .unwrap();
    let mut submission = valid_submission();
    let applicant = submission.applicant.as_mut().unwrap();
    applicant.email = "leak.check.ada@example.com".into();
    applicant.full_name = "Adaline Leakcheck".into();
    let created = backend.submit(submission.clone()).await.unwrap();
    let approved = client
        .access_requests()
        .approve_access_request(pb::ApproveAccessRequestRequest {
            name: created.name.clone(),
            return_code: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let code = approved.gateway_code;
    assert!(!code.is_empty());
    let mut gateway = GatewayServiceClient::with_interceptor(
        client.channel(),
        Bearer::new(&gateway_key).unwrap(),
    );
    let mut wrong = code.clone();
    wrong.replace_range(
        wrong.len() - 1..,
        if code.ends_with('Z') { "Y" } else { "Z" },
    );
    let _ = gateway
        .redeem_gateway_code(pb::RedeemGatewayCodeRequest {
            code: wrong.clone(),
        })
        .await
        .unwrap_err();
    gateway
        .redeem_gateway_code(pb::RedeemGatewayCodeRequest { code: code.clone() })
        .await
        .unwrap();
    let mut another = submission;
    another.request_id = "second".into();
    let second = backend.submit(another).await.unwrap();
    client
        .reject(pb::RejectAccessRequestRequest {
            name: second.name,
            reason: "no".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    // The emails, code included, are sent (written) before we look.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while std::fs::read_dir(dir.path().join("mail-out"))
        .map(|entries| entries.count())
        .unwrap_or(0)
        < 4
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "four emails are written"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid = child.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    child.wait().await.unwrap();

    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.lines().count() > 20, "the scenario was logged: {log}");
    assert!(log.contains("gateway code redeemed"), "{log}");
    for (what, secret) in [
        (
            "the applicant's address",
            "leak.check.ada@example.com".to_owned(),
        ),
        ("the applicant's name", "Leakcheck".to_owned()),
        ("the gateway code", code.clone()),
        ("the gateway code, bare", code.replace('-', "")),
        ("the wrong guess", wrong.clone()),
        ("the admin key", admin_key.clone()),
        (
            "the admin key's secret part",
            admin_key["sesame_".len()..].to_owned(),
        ),
        ("the gateway key", gateway_key.clone()),
        ("the submitter key", submitter_key.clone()),
    ] {
        assert!(!log.contains(&secret), "{what} is in the log");
    }
}
