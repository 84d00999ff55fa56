//! A backend submits a request with its submitter key, an administrator
//! approves it with the admin key, and both events are printed from the
//! administrator's watch (the key that submitted a request may not approve it):
//! `SESAME_URL=http://127.0.0.1:50051 SESAME_SUBMITTER_KEY=sesame_... SESAME_ADMIN_KEY=sesame_... cargo run -p sesame-client --example quickstart`

use sesame_client::{SesameClient, v1};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("SESAME_URL")?;
    let backend = SesameClient::connect(&url, &std::env::var("SESAME_SUBMITTER_KEY")?).await?;
    let admin = SesameClient::connect(&url, &std::env::var("SESAME_ADMIN_KEY")?).await?;
    let mut watch = admin
        .watch(v1::WatchEventsRequest {
            event_types: vec![
                v1::EventType::RequestSubmitted.into(),
                v1::EventType::RequestApproved.into(),
            ],
            ..Default::default()
        })
        .await?;
    let applicant = v1::Applicant {
        email: "ada@example.com".into(),
        full_name: "Ada Lovelace".into(),
        organization: "Analytical Engines".into(),
        ..Default::default()
    };
    let consent = v1::Consent {
        version: "2026-01".into(),
        purposes: vec!["access_management".into()],
        ..Default::default()
    };
    let request = backend
        .submit(v1::SubmitAccessRequestRequest {
            applicant: Some(applicant),
            user_type: v1::UserType::Partner.into(),
            resource: "vpn-paris".into(),
            justification: "Maintenance".into(),
            consent: Some(consent),
            ..Default::default()
        })
        .await?;
    admin
        .approve(v1::ApproveAccessRequestRequest {
            name: request.name.clone(),
            ..Default::default()
        })
        .await?;
    for _ in 0..2 {
        let event = watch.next().await.expect("a watch never ends")?;
        println!("{:?} {}", event.r#type(), event.access_request);
    }
    Ok(())
}
