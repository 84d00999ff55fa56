//! The cross-client agreement scenario, as every client runs it: submit with a
//! request id twice, list, approve with the etag, approve again with the now
//! stale etag, read the request's events from a watch opened before the
//! first submit, and one invalid submit. Prints one JSON document with the
//! volatile values (names, etags, cursors, sequences) replaced by relations;
//! `server/tests/it/agreement.rs` runs it in each of the five clients against
//! one server and checks that the documents are equal.
//!
//! `SESAME_URL=http://127.0.0.1:50051 SESAME_ADMIN_KEY=sesame_... SESAME_SUBMITTER_KEY=sesame_... SESAME_RUN=r1 cargo run -p sesame-client --example agreement`
//! (`SESAME_RUN` keeps runs apart on one server: it is the request id and the
//! resource of the run's request).

use serde_json::{Value, json};
use sesame_client::{SesameClient, error_reason, field_violations, v1};
use tonic::{Code, Status};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let env = |name: &str| std::env::var(name).map_err(|_| format!("{name} is not set"));
    let document = scenario(
        &env("SESAME_URL")?,
        &env("SESAME_ADMIN_KEY")?,
        &env("SESAME_SUBMITTER_KEY")?,
        &env("SESAME_RUN")?,
    )
    .await?;
    println!("{}", serde_json::to_string_pretty(&document)?);
    Ok(())
}

/// Runs the scenario against `url` and returns its normalized document.
pub async fn scenario(
    url: &str,
    admin_key: &str,
    submitter_key: &str,
    run: &str,
) -> Result<Value, Box<dyn std::error::Error>> {
    let admin = SesameClient::connect(url, admin_key).await?;
    let submitter = SesameClient::connect(url, submitter_key).await?;
    let resource = format!("agreement-{run}");
    let request_id = format!("agreement-{run}");

    // Live before the first submit: every event of the request comes through it.
    let mut watch = admin.watch(v1::WatchEventsRequest::default()).await?;

    let submission = v1::SubmitAccessRequestRequest {
        applicant: Some(v1::Applicant {
            email: "ada@example.com".into(),
            full_name: "Ada Lovelace".into(),
            organization: "Analytical Engines".into(),
            ..Default::default()
        }),
        user_type: v1::UserType::Partner.into(),
        locale: "en".into(),
        resource: resource.clone(),
        justification: format!("Agreement run {run}"),
        consent: Some(v1::Consent {
            version: "2026-01".into(),
            purposes: vec!["access_management".into()],
            ..Default::default()
        }),
        request_id: request_id.clone(),
    };
    let first = submitter.submit(submission.clone()).await?;
    let retry = submitter.submit(submission.clone()).await?;

    let mut this_run = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = admin
            .list(v1::ListAccessRequestsRequest {
                state: v1::AccessRequestState::Pending.into(),
                user_type: v1::UserType::Partner.into(),
                page_token: page_token.clone(),
                ..Default::default()
            })
            .await?;
        this_run.extend(
            page.access_requests
                .into_iter()
                .filter(|request| request.resource == resource)
                .map(|request| request.name),
        );
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }

    let approve = v1::ApproveAccessRequestRequest {
        name: first.name.clone(),
        etag: first.etag.clone(),
        ..Default::default()
    };
    let approved = admin.approve(approve.clone()).await?;
    let stale = admin
        .approve(approve)
        .await
        .err()
        .ok_or("an approve with a stale etag succeeded")?;

    // The audit trail says which events the request has; the watch is read
    // up to the last of them (events arrive in log order).
    let audit = admin
        .events()
        .list_events(v1::ListEventsRequest {
            access_request: first.name.clone(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .events;
    let last = audit.last().ok_or("the request has no event")?.sequence;
    let mut watched = Vec::new();
    loop {
        let event = watch.next().await.ok_or("the watch ended")??;
        let sequence = event.sequence;
        if event.access_request == first.name {
            watched.push(event);
        }
        if sequence >= last {
            break;
        }
    }
    let trail = |events: &[v1::Event]| -> Vec<(i64, i32)> {
        events
            .iter()
            .map(|event| (event.sequence, event.r#type))
            .collect()
    };

    let invalid = submitter
        .submit(v1::SubmitAccessRequestRequest {
            applicant: Some(v1::Applicant {
                email: String::new(),
                ..submission.applicant.clone().unwrap_or_default()
            }),
            justification: "x".repeat(2001),
            request_id: String::new(),
            ..submission
        })
        .await
        .err()
        .ok_or("an invalid submit succeeded")?;
    let mut violations = field_violations(&invalid);
    violations.sort();
    let mut invalid_json = error_json(&invalid);
    invalid_json["field_violations"] = violations
        .into_iter()
        .map(|(field, description)| json!({"field": field, "description": description}))
        .collect();

    let decided_by = approved
        .decision
        .as_ref()
        .map(|decision| decision.actor.as_str())
        .unwrap_or_default();
    let gateway_code = approved
        .gateway_code
        .as_ref()
        .map(|code| code.state().as_str_name())
        .unwrap_or_default();
    let event_types: Vec<&str> = watched
        .iter()
        .map(|event| event.r#type().as_str_name())
        .collect();
    let actors: Vec<&str> = watched.iter().map(|event| event.actor.as_str()).collect();
    let states: Vec<&str> = watched
        .iter()
        .map(|event| event.state().as_str_name())
        .collect();
    Ok(json!({
        "submit": {
            "name": name_shape(&first.name),
            "state": first.state().as_str_name(),
            "submitter": first.submitter,
            "request_id_echoed": first.request_id == request_id,
            "resource_echoed": first.resource == resource,
            "retry_same_name": retry.name == first.name,
            "retry_same_etag": retry.etag == first.etag,
            "retry_state": retry.state().as_str_name(),
        },
        "list": {
            "this_run": this_run.len(),
            "this_run_is_the_submitted": this_run == [first.name.clone()],
        },
        "approve": {
            "state": approved.state().as_str_name(),
            "same_name": approved.name == first.name,
            "etag_changed": approved.etag != first.etag,
            "decided_by": decided_by,
            "gateway_code": gateway_code,
        },
        "approve_stale_etag": error_json(&stale),
        "watch": {
            "event_types": event_types,
            "actors": actors,
            "states": states,
            "same_as_audit_trail": trail(&watched) == trail(&audit),
        },
        "invalid_submit": invalid_json,
    }))
}

/// `accessRequests/{uuid}` when `name` has that shape, else `name` itself.
fn name_shape(name: &str) -> String {
    match name.strip_prefix("accessRequests/") {
        Some(id)
            if id.len() == 36
                && id == id.to_ascii_lowercase()
                && uuid::Uuid::try_parse(id).is_ok() =>
        {
            "accessRequests/{uuid}".to_owned()
        }
        _ => name.to_owned(),
    }
}

/// The code (gRPC's UPPER_SNAKE name), ErrorInfo reason and message of an error.
fn error_json(status: &Status) -> Value {
    json!({
        "code": code_name(status.code()),
        "reason": error_reason(status).unwrap_or_default(),
        "message": status.message(),
    })
}

/// tonic names codes in CamelCase (`InvalidArgument`); gRPC's canonical names
/// are UPPER_SNAKE (`INVALID_ARGUMENT`).
fn code_name(code: Code) -> String {
    let mut name = String::new();
    let mut previous_lowercase = false;
    for letter in format!("{code:?}").chars() {
        if letter.is_ascii_uppercase() && previous_lowercase {
            name.push('_');
        }
        previous_lowercase = letter.is_ascii_lowercase();
        name.push(letter.to_ascii_uppercase());
    }
    name
}
