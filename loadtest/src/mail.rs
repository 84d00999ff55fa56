//! The mail scenarios: `mail-enqueue` submits requests (one applicant email
//! each) while the server's worker is off; `mail-drain` then waits until a
//! worker has sent them all and reports emails per second.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;
use sesame_proto::v1 as pb;
use sesame_proto::v1::access_request_service_client::AccessRequestServiceClient;
use sesame_proto::v1::email_service_client::EmailServiceClient;
use tokio::sync::Semaphore;

use crate::connect::{bearer, channels};

/// Result of `mail-enqueue`.
#[derive(Clone, Debug, Serialize)]
pub struct EnqueueReport {
    pub submitted: u64,
    pub failed: u64,
    pub seconds: f64,
}

/// Result of `mail-drain`.
#[derive(Clone, Debug, Serialize)]
pub struct DrainReport {
    pub emails: u64,
    pub seconds: f64,
    pub emails_per_s: f64,
}

fn submission(index: u64) -> pb::SubmitAccessRequestRequest {
    pb::SubmitAccessRequestRequest {
        applicant: Some(pb::Applicant {
            email: format!("mail{index}@example.com"),
            full_name: "Mail Load".into(),
            organization: "Loadtest".into(),
            phone: String::new(),
        }),
        user_type: pb::UserType::Customer.into(),
        locale: if index.is_multiple_of(2) { "en" } else { "fr" }.into(),
        resource: "loadtest".into(),
        justification: "mail load test".into(),
        consent: Some(pb::Consent {
            version: "loadtest".into(),
            purposes: vec!["access_management".into()],
            grant_time: None,
        }),
        request_id: String::new(),
    }
}

/// Submits `requests` requests with `concurrency` calls in flight.
pub async fn enqueue(
    target: &str,
    key: &str,
    requests: u64,
    concurrency: usize,
) -> anyhow::Result<EnqueueReport> {
    let channels = channels(target, 4).await?;
    let bearer = bearer(key)?;
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for index in 0..requests {
        let permit = permits
            .clone()
            .acquire_owned()
            .await
            .expect("open semaphore");
        let mut client = AccessRequestServiceClient::with_interceptor(
            channels[index as usize % 4].clone(),
            bearer.clone(),
        );
        let failed = failed.clone();
        tasks.push(tokio::spawn(async move {
            if client
                .submit_access_request(submission(index))
                .await
                .is_err()
            {
                failed.fetch_add(1, Ordering::Relaxed);
            }
            drop(permit);
        }));
    }
    for task in tasks {
        task.await.context("submit task panicked")?;
    }
    let failed = failed.load(Ordering::Relaxed);
    Ok(EnqueueReport {
        submitted: requests - failed,
        failed,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Waits (at most `timeout`) until no email is pending, and reports the
/// rate for `emails` emails since the call started.
pub async fn drain(
    target: &str,
    key: &str,
    emails: u64,
    timeout: Duration,
) -> anyhow::Result<DrainReport> {
    let channel = channels(target, 1).await?.remove(0);
    let mut client = EmailServiceClient::with_interceptor(channel, bearer(key)?);
    let started = Instant::now();
    loop {
        let pending = client
            .list_emails(pb::ListEmailsRequest {
                page_size: 1,
                state: pb::EmailState::Pending.into(),
                ..Default::default()
            })
            .await
            .context("ListEmails failed")?
            .into_inner()
            .emails;
        if pending.is_empty() {
            break;
        }
        if started.elapsed() > timeout {
            bail!("emails still pending after {:.0} s", timeout.as_secs_f64());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(DrainReport {
        emails,
        seconds,
        emails_per_s: emails as f64 / seconds,
    })
}
