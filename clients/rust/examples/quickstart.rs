//! Submit a request, approve it, and print both events from a watch:
//! `SESAME_URL=http://127.0.0.1:50051 SESAME_KEY=sesame_... cargo run -p sesame-client --example quickstart`

use sesame_client::{SesameClient, v1};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let client =
        SesameClient::connect(&std::env::var("SESAME_URL")?, &std::env::var("SESAME_KEY")?).await?;
    let mut watch = client
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
    let request = client
        .submit(v1::SubmitAccessRequestRequest {
            applicant: Some(applicant),
            user_type: v1::UserType::Partner.into(),
            resource: "vpn-paris".into(),
            justification: "Maintenance".into(),
            consent: Some(consent),
            ..Default::default()
        })
        .await?;
    client
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
