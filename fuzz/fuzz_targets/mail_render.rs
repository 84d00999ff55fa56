//! Fuzz target `mail_render`: email templates rendered with the values a
//! caller controls, and the message the worker builds from them.
//!
//! Input: four selector bytes (template, locale, user type, decision), then
//! text fields separated by U+001F: full name, organization, applicant
//! email, resource, reason, request name, gateway code, code expiry,
//! submission time.
//!
//! Properties:
//! - any values (as PreviewEmail or a custom template directory could pass
//!   them): rendering never panics; a rendered subject is one line; the
//!   message `mail::worker::compose` builds around it has exactly the
//!   expected headers, CRLF-terminated, whatever the subject or recipient
//!   holds (no header injection);
//! - values that passed the API's checks (SubmitAccessRequest, then
//!   Approve/Reject/Cancel or expiry): every email the domain enqueues for
//!   them renders, its subject has no control character, and the worker
//!   builds it with the applicant (or administrator) as its only recipient.

#![no_main]

use chrono::Utc;
use lettre::message::Mailbox;
use libfuzzer_sys::fuzz_target;
use sesame_fuzz::split_fields;
use sesame_proto::v1 as pb;
use sesame_server::api::{access_requests, convert};
use sesame_server::domain::mail::{MailTemplate, emails_for};
use sesame_server::domain::{AccessRequest, AccessRequestId, Action, EventKind, GatewayCode};
use sesame_server::domain::{Locale, UserType};
use sesame_server::mail::Templates;
use sesame_server::mail::worker::compose;
use std::sync::OnceLock;

/// The text fields of an input, in order.
const FIELDS: usize = 9;
const ADMIN: &str = "ops@example.com";

fuzz_target!(|data: &[u8]| {
    let [template, locale, user_type, decision, rest @ ..] = data else {
        return;
    };
    let template = MailTemplate::ALL[usize::from(*template) % MailTemplate::ALL.len()];
    let locale = Locale::ALL[usize::from(*locale) % Locale::ALL.len()];
    let user_type = UserType::ALL[usize::from(*user_type) % UserType::ALL.len()];
    let text = String::from_utf8_lossy(rest);
    let fields = split_fields(&text, FIELDS);
    let [
        full_name,
        organization,
        email,
        resource,
        reason,
        request,
        gateway_code,
        code_expires,
        submitted,
    ] = <[String; FIELDS]>::try_from(fields).expect("split_fields gives FIELDS fields");

    // Any values.
    let mut values = serde_json::json!({
        "full_name": full_name,
        "organization": organization,
        "applicant_email": email,
        "resource": resource,
        "request": request,
        "user_type": user_type.as_str(),
        "reason": reason,
        "submitted": submitted,
    });
    if !gateway_code.is_empty() {
        values["gateway_code"] = gateway_code.clone().into();
        values["code_expires"] = code_expires.clone().into();
        if decision & 1 == 1 {
            values["reissued"] = true.into();
        }
    }
    if let Ok(rendered) = templates().render(template, locale, user_type, &values) {
        assert!(!rendered.subject.contains('\n'), "{:?}", rendered.subject);
        if let Ok(message) = compose(from(), &email, "<fuzz@sesame>", rendered) {
            check_headers(&message.formatted(), None);
        }
    }

    // Values a caller could get past the API.
    let submitted = access_requests::check_submit_access_request(pb::SubmitAccessRequestRequest {
        applicant: Some(pb::Applicant {
            email,
            full_name,
            organization,
            phone: String::new(),
        }),
        user_type: convert::user_type_to_proto(user_type).into(),
        locale: locale.as_str().to_owned(),
        resource,
        justification: "fuzzing".to_owned(),
        consent: Some(pb::Consent {
            version: "1".to_owned(),
            purposes: vec!["access_management".to_owned()],
            grant_time: None,
        }),
        request_id: String::new(),
    });
    let Ok(submission) = submitted else {
        return;
    };
    let now = Utc::now();
    let (pending, _) = AccessRequest::submit(AccessRequestId::generate(), "svc", submission, now);
    let name = pending.id.name();
    let (kind, action) = match decision % 5 {
        0 => (EventKind::Submitted, None),
        1 => {
            let message = pb::ApproveAccessRequestRequest {
                name,
                note: reason,
                ..Default::default()
            };
            let Ok(args) = access_requests::check_approve_access_request(&message) else {
                return;
            };
            let note = args.text;
            (EventKind::Approved, Some(Action::Approve { note }))
        }
        2 => {
            let message = pb::RejectAccessRequestRequest {
                name,
                reason,
                ..Default::default()
            };
            let Ok(args) = access_requests::check_reject_access_request(&message) else {
                return;
            };
            let reason = args.text.expect("a rejection has a reason");
            (EventKind::Rejected, Some(Action::Reject { reason }))
        }
        3 => {
            let message = pb::CancelAccessRequestRequest {
                name,
                reason,
                ..Default::default()
            };
            let Ok(args) = access_requests::check_cancel_access_request(&message) else {
                return;
            };
            let reason = args.text;
            (EventKind::Cancelled, Some(Action::Cancel { reason }))
        }
        _ => (EventKind::Expired, Some(Action::Expire)),
    };
    let request = match action {
        Some(action) => match pending.apply(action, "admin", now) {
            Ok((changed, _)) => changed,
            Err(error) => panic!("a pending request refused {kind:?}: {error:?}"),
        },
        None => pending,
    };
    let mut kinds = vec![kind];
    if kind == EventKind::Submitted {
        kinds.extend([EventKind::Reminded, EventKind::Escalated]);
    }
    for kind in kinds {
        for mut email in emails_for(kind, &request, &[ADMIN.to_owned()]) {
            if email.template == MailTemplate::ApplicantApproved {
                // What the store seals and the worker opens.
                email.data["gateway_code"] = GatewayCode::generate().to_string().into();
                email.data["code_expires"] = "2026-12-01 09:00 UTC".into();
            }
            let rendered = templates()
                .render(email.template, email.locale, email.user_type, &email.data)
                .unwrap_or_else(|error| panic!("{:?} does not render: {error}", email.template));
            assert!(
                !rendered.subject.chars().any(char::is_control),
                "{:?}",
                rendered.subject
            );
            let message = compose(from(), &email.recipient, "<fuzz@sesame>", rendered)
                .unwrap_or_else(|error| panic!("the worker cannot build {email:?}: {error}"));
            check_headers(&message.formatted(), Some(&email.recipient));
        }
    }
});

fn templates() -> &'static Templates {
    static TEMPLATES: OnceLock<Templates> = OnceLock::new();
    TEMPLATES.get_or_init(|| Templates::builtin().expect("the built-in templates compile"))
}

fn from() -> &'static Mailbox {
    static FROM: OnceLock<Mailbox> = OnceLock::new();
    FROM.get_or_init(|| {
        "Sesame <sesame@localhost>"
            .parse()
            .expect("a valid From address")
    })
}

/// The headers of a message built by `compose`: CRLF lines, folded lines
/// start with a space or tab, and each header the worker sets once and only
/// those. `recipient`: the To header must hold this address.
fn check_headers(message: &[u8], recipient: Option<&str>) {
    let end = message
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .expect("a message has a header section");
    let section = &message[..end + 2];
    for (index, byte) in section.iter().enumerate() {
        match byte {
            b'\r' => assert_eq!(section.get(index + 1), Some(&b'\n'), "bare CR in headers"),
            b'\n' => assert!(
                index > 0 && section[index - 1] == b'\r',
                "bare LF in headers"
            ),
            _ => {}
        }
    }
    let text = String::from_utf8_lossy(section);
    let mut names = Vec::new();
    let mut to = String::new();
    for line in text.split("\r\n").filter(|line| !line.is_empty()) {
        if line.starts_with([' ', '\t']) {
            if names.last().is_some_and(|name: &String| name == "to") {
                to.push_str(line);
            }
            continue;
        }
        let (name, value) = line
            .split_once(':')
            .unwrap_or_else(|| panic!("not a header line: {line:?}"));
        let name = name.to_ascii_lowercase();
        if name == "to" {
            to.push_str(value);
        }
        names.push(name);
    }
    names.sort();
    let expected = [
        "content-type",
        "date",
        "from",
        "message-id",
        "mime-version",
        "subject",
        "to",
    ];
    assert_eq!(names, expected, "headers of {text:?}");
    if let Some(recipient) = recipient {
        let to = to.trim();
        assert!(
            to == recipient || to.ends_with(&format!("<{recipient}>")),
            "To: {to:?} for {recipient:?}"
        );
    }
}
