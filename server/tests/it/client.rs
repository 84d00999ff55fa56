//! The Rust client crate (`clients/rust`) against the real `sesame` binary:
//! the ergonomic calls, error details, retry of UNAVAILABLE across a server
//! restart, a watch that resumes from its cursor without gaps or
//! duplicates, and a submit retried after its attempt timed out (through
//! `clients/testing/delay_proxy.py`).

use std::time::Duration;

use sesame_client::{Options, RetryPolicy, SesameClient, error_reason, field_violations, v1 as pb};
use tonic::Code;

use crate::cli::{serve_at, terminate};
use crate::harness::valid_submission;

/// The next event of `watch`, within 20 s.
async fn next_event(watch: &mut sesame_client::Watch) -> pb::Event {
    tokio::time::timeout(Duration::from_secs(20), watch.next())
        .await
        .expect("an event within 20 s")
        .expect("the watch never ends by itself")
        .expect("no error")
}

/// `sesame serve` in `dir` with emails only logged and no mail worker,
/// and the admin key its first start printed.
async fn serve_without_mail(dir: &std::path::Path) -> (crate::cli::Served, String) {
    let served = serve_at(
        dir,
        "127.0.0.1:0",
        &[
            ("SESAME_MAIL_TRANSPORT", "log"),
            ("SESAME_MAIL_WORKER", "false"),
        ],
    )
    .await;
    let key = served
        .bootstrap_key()
        .expect("the bootstrap key is printed");
    (served, key)
}

fn submission(email: &str) -> pb::SubmitAccessRequestRequest {
    let mut request = valid_submission();
    request.applicant.as_mut().unwrap().email = email.to_owned();
    request
}

#[tokio::test]
async fn the_rust_client_submits_decides_reads_and_watches() {
    let dir = tempfile::tempdir().unwrap();
    let (served, key) = serve_without_mail(dir.path()).await;
    let client = SesameClient::connect(&format!("http://{}", served.addr), &key)
        .await
        .unwrap();
    // Decisions only: an approval also appends code.issued.
    let decisions = pb::WatchEventsRequest {
        event_types: vec![
            pb::EventType::RequestSubmitted.into(),
            pb::EventType::RequestApproved.into(),
            pb::EventType::RequestRejected.into(),
        ],
        ..Default::default()
    };
    let mut watch = client.watch(decisions).await.unwrap();
    // A backend service submits with its own key; the admin decides.
    let submitter = crate::cli::submitter_key(dir.path());
    let backend = SesameClient::connect(&format!("http://{}", served.addr), submitter.trim())
        .await
        .unwrap();
    // `watch` returned once live: the submit made next is seen.
    let first = backend
        .submit(submission("first@example.com"))
        .await
        .unwrap();
    let seen = next_event(&mut watch).await;
    assert_eq!(seen.access_request, first.name);
    assert!(!watch.cursor().is_empty());

    // No request_id given: the client generated one, so a retry is safe.
    let second = backend
        .submit(submission("second@example.com"))
        .await
        .unwrap();
    assert_ne!(first.name, second.name);
    let approved = client
        .approve(pb::ApproveAccessRequestRequest {
            name: second.name.clone(),
            note: "welcome".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(approved.state(), pb::AccessRequestState::Approved);
    let rejected = client
        .reject(pb::RejectAccessRequestRequest {
            name: first.name.clone(),
            reason: "no longer needed".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(rejected.state(), pb::AccessRequestState::Rejected);
    assert_eq!(client.get(&second.name).await.unwrap(), approved);
    let listed = client
        .list(pb::ListAccessRequestsRequest::default())
        .await
        .unwrap();
    assert_eq!(listed.access_requests.len(), 2);

    let types: Vec<_> = [
        next_event(&mut watch).await,
        next_event(&mut watch).await,
        next_event(&mut watch).await,
    ]
    .iter()
    .map(|event| (event.access_request.clone(), event.r#type()))
    .collect();
    assert_eq!(
        types,
        [
            (second.name.clone(), pb::EventType::RequestSubmitted),
            (second.name.clone(), pb::EventType::RequestApproved),
            (first.name.clone(), pb::EventType::RequestRejected),
        ]
    );

    // Errors carry Sesame's reason and every invalid field.
    let mut bad = submission("not an email");
    bad.resource.clear();
    let status = client.submit(bad).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(error_reason(&status).as_deref(), Some("INVALID_ARGUMENT"));
    let fields: Vec<String> = field_violations(&status)
        .into_iter()
        .map(|(f, _)| f)
        .collect();
    assert!(fields.contains(&"applicant.email".to_owned()), "{fields:?}");
    assert!(fields.contains(&"resource".to_owned()), "{fields:?}");
    let missing = client
        .get("accessRequests/01935e2e-0000-7000-8000-000000000000")
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    assert_eq!(error_reason(&missing).as_deref(), Some("REQUEST_NOT_FOUND"));

    // A key that is not metadata is refused before anything is sent.
    let refused = SesameClient::connect(&format!("http://{}", served.addr), "bad\nkey").await;
    assert!(matches!(
        refused,
        Err(sesame_client::ConnectError::InvalidKey)
    ));
    terminate(served).await;
}

#[tokio::test]
async fn calls_are_retried_and_the_watch_resumes_across_a_server_restart() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("SESAME_MAIL_TRANSPORT", "log")];
    let served = serve_at(dir.path(), "127.0.0.1:0", &env).await;
    let addr = served.addr.clone();
    let key = served
        .bootstrap_key()
        .expect("the bootstrap key is printed");
    let options = Options {
        timeout: Duration::from_secs(60),
        retry: RetryPolicy {
            max_attempts: 200,
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(200),
        },
        ..Options::default()
    };
    let client = SesameClient::connect_with(&format!("http://{addr}"), &key, options)
        .await
        .unwrap();
    // The mail worker runs: email events are filtered out server-side.
    let only_submits = pb::WatchEventsRequest {
        event_types: vec![pb::EventType::RequestSubmitted.into()],
        ..Default::default()
    };
    let mut watch = client.watch(only_submits).await.unwrap();
    let before = client
        .submit(submission("before@example.com"))
        .await
        .unwrap();
    assert_eq!(next_event(&mut watch).await.access_request, before.name);
    let cursor_before = watch.cursor().to_owned();

    // Down: a submit made now waits (retrying UNAVAILABLE) for the restart.
    terminate(served).await;
    let pending = tokio::spawn({
        let client = client.clone();
        async move { client.submit(submission("during@example.com")).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!pending.is_finished(), "the submit waits for the server");
    let served = serve_at(dir.path(), &addr, &env).await;
    let during = pending
        .await
        .unwrap()
        .expect("retried until the server came back");

    let after = client
        .submit(submission("after@example.com"))
        .await
        .unwrap();
    let resumed = [next_event(&mut watch).await, next_event(&mut watch).await];
    assert_eq!(
        resumed[0].access_request, during.name,
        "nothing missed, nothing twice"
    );
    assert_eq!(resumed[1].access_request, after.name);
    assert!(watch.reconnects() >= 1);
    assert_ne!(watch.cursor(), cursor_before);

    // Not retried: a refusal comes back at once, on the first attempt.
    let started = std::time::Instant::now();
    let status = client.submit(submission("nope")).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(started.elapsed() < Duration::from_secs(5));
    terminate(served).await;
}

/// `clients/testing/delay_proxy.py` in front of `target`: the server's
/// answers on the first connection are held for `hold_ms` from the client's
/// first request on. Killed when dropped.
struct DelayProxy {
    child: tokio::process::Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl DelayProxy {
    async fn start(target: &str, hold_ms: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port_file = dir.path().join("port");
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../clients/testing/delay_proxy.py");
        let child = tokio::process::Command::new("python3")
            .arg(script)
            .arg(&port_file)
            .arg(target)
            .arg(hold_ms.to_string())
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 runs the delay proxy");
        let started = std::time::Instant::now();
        let port = loop {
            if let Ok(text) = std::fs::read_to_string(&port_file) {
                break text.trim().to_owned();
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the delay proxy wrote no port"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        Self {
            child,
            addr: format!("127.0.0.1:{port}"),
            _dir: dir,
        }
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// The requests stored for `email`, through a direct connection.
async fn stored_for(direct: &SesameClient, email: &str) -> Vec<pb::AccessRequest> {
    direct
        .list(pb::ListAccessRequestsRequest {
            applicant_email: email.to_owned(),
            ..Default::default()
        })
        .await
        .unwrap()
        .access_requests
}

// Guards the operator's finding: a submit whose attempt timed out while the
// server committed it is retried and returns that request, never a second.
#[tokio::test]
async fn a_submit_whose_attempt_times_out_is_retried_and_returns_the_committed_request() {
    let dir = tempfile::tempdir().unwrap();
    let (served, key) = serve_without_mail(dir.path()).await;
    let direct = SesameClient::connect(&format!("http://{}", served.addr), &key)
        .await
        .unwrap();
    let options = Options {
        timeout: Duration::from_secs(10),
        attempt_timeout: Some(Duration::from_millis(400)),
        ..Options::default()
    };

    // With a request_id: the first attempt is committed but its answer
    // held past 400 ms; a later attempt gets the same request back.
    let proxy = DelayProxy::start(&served.addr, 800).await;
    let delayed =
        SesameClient::connect_with(&format!("http://{}", proxy.addr), &key, options.clone())
            .await
            .unwrap();
    let started = std::time::Instant::now();
    let submitted = delayed
        .submit(submission("held@example.com"))
        .await
        .expect("retried until an attempt is answered");
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "the first attempt timed out: {:?}",
        started.elapsed()
    );
    let stored = stored_for(&direct, "held@example.com").await;
    assert_eq!(stored.len(), 1, "one request, never a second");
    assert_eq!(stored[0].name, submitted.name);
    assert_eq!(stored[0].request_id, submitted.request_id);
    drop(proxy);

    // Without a request_id (the raw stub through `call`): not retried, the
    // call ends DEADLINE_EXCEEDED after one attempt, and the server has it.
    let proxy = DelayProxy::start(&served.addr, 800).await;
    let delayed = SesameClient::connect_with(&format!("http://{}", proxy.addr), &key, options)
        .await
        .unwrap();
    let stub = delayed.access_requests();
    let started = std::time::Instant::now();
    let status = delayed
        .call(submission("unkeyed@example.com"), |r| {
            let mut stub = stub.clone();
            async move { stub.submit_access_request(r).await }
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "one attempt, not the whole deadline: {:?}",
        started.elapsed()
    );
    // The held answer reaches the server's side long before this reads.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(stored_for(&direct, "unkeyed@example.com").await.len(), 1);
    drop(proxy);
    terminate(served).await;
}
