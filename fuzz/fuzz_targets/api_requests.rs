//! Fuzz target `api_requests`: the first byte picks one of the 20 request
//! messages of `sesame.v1` ([`REQUEST_MESSAGES`]), the rest is decoded as
//! that message with prost, as tonic does, then given to the same
//! `check_*` function its handler runs before touching the store.
//!
//! Properties: nothing panics; a decoded message re-encodes to itself; a
//! refusal is INVALID_ARGUMENT naming at least one field; an accepted
//! message, rebuilt from the checked values (through the server's own
//! to-wire conversions where there is one), is accepted again with the same
//! values, so normalisation is idempotent and nothing accepted is later
//! refused.

#![no_main]

use std::fmt::Debug;
use std::sync::OnceLock;

use chrono::Utc;
use libfuzzer_sys::fuzz_target;
use prost::Message;
use sesame_fuzz::{REQUEST_MESSAGES, sample_policy};
use sesame_proto::v1 as pb;
use sesame_server::api::paging::{MAX_PAGE_SIZE, Paging};
use sesame_server::api::{access_requests, convert, emails, events, gateway, privacy};
use sesame_server::domain::policy::Policy;
use sesame_server::domain::{AccessRequest, AccessRequestId, NewAccessRequest, Violations};
use sesame_server::domain::{encode_cursor, validation::MAX_PURPOSES};
use sesame_server::mail::Templates;
use sesame_server::store::Order;
use tonic::{Code, Status};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let index = usize::from(selector) % REQUEST_MESSAGES.len();
    match index {
        0 => submit(body),
        1 => explain(body),
        2 => get(body),
        3 => list_access_requests(body),
        4 => approve(body),
        5 => reject(body),
        6 => cancel(body),
        7 => stats(body),
        8 => list_emails(body),
        9 => retry_email(body),
        10 => preview_email(body),
        11 => watch_events(body),
        12 => list_events(body),
        13 => verify_audit_chain(body),
        14 => redeem(body),
        15 => revoke(body),
        16 => reissue(body),
        17 => export_subject(body),
        18 => erase_subject(body),
        _ => list_consents(body),
    }
});

/// The message in `bytes`, if prost decodes it; a decoded message must
/// survive encode and decode unchanged.
fn decode<M: Message + Default + PartialEq + Debug>(bytes: &[u8]) -> Option<M> {
    let message = M::decode(bytes).ok()?;
    let again =
        M::decode(message.encode_to_vec().as_slice()).expect("a message prost encoded must decode");
    assert_eq!(again, message, "decode(encode(message)) differs");
    Some(message)
}

/// A refusal as the caller sees it: INVALID_ARGUMENT with a message.
fn refused(status: &Status) {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(!status.message().is_empty(), "{status:?}");
}

/// A refusal by the validator: every violation names its field and says
/// what is wrong.
fn refused_fields(violations: Violations) {
    assert!(!violations.as_slice().is_empty());
    for violation in violations.as_slice() {
        assert!(!violation.field.is_empty(), "{violations:?}");
        assert!(!violation.description.is_empty(), "{violations:?}");
    }
    refused(&Status::from(violations));
}

/// Checks `message` with `check`; when accepted, checks `rebuild(value)`
/// and expects the same value.
fn round_trip<M, T, E>(
    message: &M,
    check: impl Fn(&M) -> Result<T, E>,
    rebuild: impl Fn(&T) -> M,
    refusal: impl Fn(E),
) where
    T: PartialEq + Debug,
    E: Debug,
{
    match check(message) {
        Err(error) => refusal(error),
        Ok(value) => {
            let again = check(&rebuild(&value))
                .unwrap_or_else(|error| panic!("{value:?} was accepted, then {error:?}"));
            assert_eq!(
                again, value,
                "checking the rebuilt message changed the value"
            );
        }
    }
}

fn policy() -> &'static Policy {
    static POLICY: OnceLock<Policy> = OnceLock::new();
    POLICY.get_or_init(sample_policy)
}

fn templates() -> &'static Templates {
    static TEMPLATES: OnceLock<Templates> = OnceLock::new();
    TEMPLATES.get_or_init(|| Templates::builtin().expect("the built-in templates compile"))
}

/// What the handlers do next with an accepted submission (policy and its
/// explanation), and the round trip through the wire form of the request
/// the store would keep.
fn accepted_submission(submission: &NewAccessRequest) {
    assert!(submission.consent.purposes.len() <= MAX_PURPOSES);
    let evaluation = policy().evaluate(submission);
    let explained = convert::explanation(&evaluation);
    assert!(explained.verdict.is_some());
    let (stored, _event) = AccessRequest::submit(
        AccessRequestId::generate(),
        "fuzz",
        submission.clone(),
        Utc::now(),
    );
    let wire = convert::access_request(&stored, None);
    let resubmitted = pb::SubmitAccessRequestRequest {
        applicant: wire.applicant,
        user_type: wire.user_type,
        locale: wire.locale,
        resource: wire.resource,
        justification: wire.justification,
        consent: wire.consent,
        request_id: wire.request_id,
    };
    let again = access_requests::check_submit_access_request(resubmitted)
        .unwrap_or_else(|error| panic!("{submission:?} was accepted, then {error}"));
    assert_eq!(&again, submission, "validating a stored request changed it");
}

fn submit(body: &[u8]) {
    let Some(message) = decode::<pb::SubmitAccessRequestRequest>(body) else {
        return;
    };
    match access_requests::check_submit_access_request(message) {
        Ok(submission) => accepted_submission(&submission),
        Err(violations) => refused_fields(violations),
    }
}

fn explain(body: &[u8]) {
    let Some(message) = decode::<pb::ExplainDecisionRequest>(body) else {
        return;
    };
    let had_submission = message.submission.is_some();
    match access_requests::check_explain_decision(message) {
        Ok(submission) => {
            assert!(had_submission);
            accepted_submission(&submission);
        }
        Err(violations) => refused_fields(violations),
    }
}

fn get(body: &[u8]) {
    let Some(message) = decode::<pb::GetAccessRequestRequest>(body) else {
        return;
    };
    round_trip(
        &message,
        access_requests::check_get_access_request,
        |id| pb::GetAccessRequestRequest { name: id.name() },
        refused_fields,
    );
}

/// The wire page size and token of checked paging.
fn paging_fields(paging: &Paging<'_>) -> (i32, String) {
    assert!(
        (1..=MAX_PAGE_SIZE).contains(&paging.page_size),
        "{paging:?}"
    );
    let size = i32::try_from(paging.page_size).expect("a page size fits an i32");
    (size, paging.page_token.unwrap_or_default().to_owned())
}

fn list_access_requests(body: &[u8]) {
    let Some(message) = decode::<pb::ListAccessRequestsRequest>(body) else {
        return;
    };
    let (paging, query) = match access_requests::check_list_access_requests(&message) {
        Ok(checked) => checked,
        Err(violations) => return refused_fields(violations),
    };
    {
        let (page_size, page_token) = paging_fields(&paging);
        let rebuilt = pb::ListAccessRequestsRequest {
            page_size,
            page_token,
            state: query
                .state
                .map_or(0, |state| convert::state_to_proto(state).into()),
            user_type: query
                .user_type
                .map_or(0, |user_type| convert::user_type_to_proto(user_type).into()),
            create_time_start: query.created_from.map(convert::timestamp),
            create_time_end: query.created_before.map(convert::timestamp),
            resource: query.resource.clone().unwrap_or_default(),
            applicant_email: query.applicant_email.clone().unwrap_or_default(),
            order_by: match query.order {
                Order::NewestFirst => "create_time desc",
                Order::OldestFirst => "create_time asc",
            }
            .into(),
        };
        let (paging_again, query_again) =
            access_requests::check_list_access_requests(&rebuilt).expect("accepted again");
        assert_eq!((paging_again, query_again), (paging, query));
    }
}

fn approve(body: &[u8]) {
    let Some(message) = decode::<pb::ApproveAccessRequestRequest>(body) else {
        return;
    };
    round_trip(
        &message,
        access_requests::check_approve_access_request,
        |args| pb::ApproveAccessRequestRequest {
            name: args.id.name(),
            etag: args.etag.clone().unwrap_or_default(),
            note: args.text.clone().unwrap_or_default(),
            return_code: message.return_code,
        },
        refused_fields,
    );
}

fn reject(body: &[u8]) {
    let Some(message) = decode::<pb::RejectAccessRequestRequest>(body) else {
        return;
    };
    if let Ok(args) = access_requests::check_reject_access_request(&message) {
        assert!(args.text.is_some(), "a rejection needs its reason");
    }
    round_trip(
        &message,
        access_requests::check_reject_access_request,
        |args| pb::RejectAccessRequestRequest {
            name: args.id.name(),
            etag: args.etag.clone().unwrap_or_default(),
            reason: args.text.clone().unwrap_or_default(),
        },
        refused_fields,
    );
}

fn cancel(body: &[u8]) {
    let Some(message) = decode::<pb::CancelAccessRequestRequest>(body) else {
        return;
    };
    round_trip(
        &message,
        access_requests::check_cancel_access_request,
        |args| pb::CancelAccessRequestRequest {
            name: args.id.name(),
            etag: args.etag.clone().unwrap_or_default(),
            reason: args.text.clone().unwrap_or_default(),
        },
        refused_fields,
    );
}

fn stats(body: &[u8]) {
    let Some(message) = decode::<pb::GetStatsRequest>(body) else {
        return;
    };
    round_trip(
        &message,
        access_requests::check_get_stats,
        |window| pb::GetStatsRequest {
            window_secs: i64::try_from(window.as_secs()).expect("a window fits an i64"),
        },
        refused_fields,
    );
}

fn list_emails(body: &[u8]) {
    let Some(message) = decode::<pb::ListEmailsRequest>(body) else {
        return;
    };
    let (paging, filter) = match emails::check_list_emails(&message) {
        Ok(checked) => checked,
        Err(violations) => return refused_fields(violations),
    };
    {
        let (page_size, page_token) = paging_fields(&paging);
        let state = filter.state.map_or(0, |state| {
            pb::EmailState::from_str_name(&format!("EMAIL_STATE_{}", state.to_uppercase()))
                .expect("every stored email state has a wire value")
                .into()
        });
        let rebuilt = pb::ListEmailsRequest {
            page_size,
            page_token,
            state,
            access_request: filter
                .access_request
                .map(|id| id.name())
                .unwrap_or_default(),
        };
        let again = emails::check_list_emails(&rebuilt).expect("accepted again");
        assert_eq!(again, (paging, filter));
    }
}

fn retry_email(body: &[u8]) {
    let Some(message) = decode::<pb::RetryEmailRequest>(body) else {
        return;
    };
    round_trip(
        &message,
        emails::check_retry_email,
        |id| pb::RetryEmailRequest {
            name: format!("emails/{id}"),
        },
        refused_fields,
    );
}

fn preview_email(body: &[u8]) {
    let Some(message) = decode::<pb::PreviewEmailRequest>(body) else {
        return;
    };
    let args = match emails::check_preview_email(&message) {
        Ok(args) => args,
        Err(violations) => return refused_fields(violations),
    };
    // The handler answers a rendering error with INVALID_ARGUMENT too.
    if let Ok(rendered) = templates().render(args.template, args.locale, args.user_type, &args.data)
    {
        assert!(!rendered.subject.contains('\n'), "{:?}", rendered.subject);
    }
    let template = pb::EmailTemplate::from_str_name(&format!(
        "EMAIL_TEMPLATE_{}",
        args.template.as_str().to_uppercase()
    ))
    .expect("every template has a wire value");
    let data_json = args.data.to_string();
    if data_json.len() > emails::MAX_PREVIEW_DATA_BYTES {
        // The sample values merged in made it too long to send back.
        return;
    }
    let rebuilt = pb::PreviewEmailRequest {
        template: template.into(),
        locale: args.locale.as_str().to_owned(),
        user_type: convert::user_type_to_proto(args.user_type).into(),
        data_json,
    };
    let again = emails::check_preview_email(&rebuilt)
        .unwrap_or_else(|error| panic!("{args:?} was accepted, then {error}"));
    // Floats may move by one unit in the last place through JSON text, so
    // the values are compared by their keys.
    assert_eq!(
        (again.template, again.locale, again.user_type),
        (args.template, args.locale, args.user_type)
    );
    let keys = |value: &serde_json::Value| -> Vec<String> {
        value
            .as_object()
            .map(|object| object.keys().cloned().collect())
            .unwrap_or_default()
    };
    assert_eq!(keys(&again.data), keys(&args.data));
}

fn watch_events(body: &[u8]) {
    let Some(message) = decode::<pb::WatchEventsRequest>(body) else {
        return;
    };
    round_trip(
        &message,
        events::check_watch_events,
        |args| pb::WatchEventsRequest {
            after: args.after.map(encode_cursor).unwrap_or_default(),
            event_types: args
                .filter
                .kinds
                .iter()
                .map(|kind| convert::event_type_to_proto(*kind).into())
                .collect(),
            access_request: args
                .filter
                .access_request
                .map(|id| id.name())
                .unwrap_or_default(),
        },
        |status| refused(&status),
    );
}

fn list_events(body: &[u8]) {
    let Some(message) = decode::<pb::ListEventsRequest>(body) else {
        return;
    };
    let (paging, filter) = match events::check_list_events(&message) {
        Ok(checked) => checked,
        Err(violations) => return refused_fields(violations),
    };
    {
        let (page_size, page_token) = paging_fields(&paging);
        let rebuilt = pb::ListEventsRequest {
            page_size,
            page_token,
            event_types: filter
                .kinds
                .iter()
                .map(|kind| convert::event_type_to_proto(*kind).into())
                .collect(),
            access_request: filter
                .access_request
                .map(|id| id.name())
                .unwrap_or_default(),
            actor: filter.actor.clone().unwrap_or_default(),
            occur_time_start: filter.from.map(convert::timestamp),
            occur_time_end: filter.before.map(convert::timestamp),
        };
        let again = events::check_list_events(&rebuilt).expect("accepted again");
        assert_eq!(again, (paging, filter));
    }
}

fn verify_audit_chain(body: &[u8]) {
    let Some(message) = decode::<pb::VerifyAuditChainRequest>(body) else {
        return;
    };
    round_trip(
        &message,
        events::check_verify_audit_chain,
        |(start, end)| pb::VerifyAuditChainRequest {
            start_sequence: *start,
            end_sequence: end.unwrap_or(0),
        },
        refused_fields,
    );
}

fn redeem(body: &[u8]) {
    let Some(message) = decode::<pb::RedeemGatewayCodeRequest>(body) else {
        return;
    };
    if let Ok(code) = gateway::check_redeem_gateway_code(&message) {
        let shown = code.to_string();
        assert_eq!(shown.len(), 29, "{shown:?}");
        assert!(code.matches(&code.digest()));
    }
    round_trip(
        &message,
        gateway::check_redeem_gateway_code,
        |code| pb::RedeemGatewayCodeRequest {
            code: code.to_string(),
        },
        |status| refused(&status),
    );
}

fn revoke(body: &[u8]) {
    let Some(message) = decode::<pb::RevokeGatewayCodeRequest>(body) else {
        return;
    };
    round_trip(
        &message,
        gateway::check_revoke_gateway_code,
        |(id, reason)| pb::RevokeGatewayCodeRequest {
            access_request: id.name(),
            reason: reason.clone().unwrap_or_default(),
        },
        refused_fields,
    );
}

fn reissue(body: &[u8]) {
    let Some(message) = decode::<pb::ReissueGatewayCodeRequest>(body) else {
        return;
    };
    round_trip(
        &message,
        gateway::check_reissue_gateway_code,
        |id| pb::ReissueGatewayCodeRequest {
            access_request: id.name(),
        },
        refused_fields,
    );
}

fn export_subject(body: &[u8]) {
    let Some(message) = decode::<pb::ExportSubjectDataRequest>(body) else {
        return;
    };
    round_trip(
        &message,
        privacy::check_export_subject_data,
        |email| pb::ExportSubjectDataRequest {
            email: email.clone(),
        },
        refused_fields,
    );
}

fn erase_subject(body: &[u8]) {
    let Some(message) = decode::<pb::EraseSubjectRequest>(body) else {
        return;
    };
    round_trip(
        &message,
        privacy::check_erase_subject,
        |(email, reason)| pb::EraseSubjectRequest {
            email: email.clone(),
            reason: reason.clone(),
        },
        refused_fields,
    );
}

fn list_consents(body: &[u8]) {
    let Some(message) = decode::<pb::ListConsentRecordsRequest>(body) else {
        return;
    };
    let (email, paging) = match privacy::check_list_consent_records(&message) {
        Ok(checked) => checked,
        Err(violations) => return refused_fields(violations),
    };
    let (page_size, page_token) = paging_fields(&paging);
    let rebuilt = pb::ListConsentRecordsRequest {
        email: email.clone(),
        page_size,
        page_token,
    };
    let again = privacy::check_list_consent_records(&rebuilt).expect("accepted again");
    assert_eq!(again, (email, paging));
}
