//! Writes the seed corpus of every fuzz target under `fuzz/corpus/`: valid
//! inputs of each kind (encoded request messages, page tokens the fixture
//! store made, template values, policy files) and a few malformed ones.
//! Run from `fuzz/`: `cargo run --bin seeds` (docs/fuzzing.md).

use std::path::Path;

use prost::Message;
use prost_types::Timestamp;
use sesame_fuzz::{
    REQUEST_MESSAGES, TokenList, TokenMode, join_fields, list_page, token_payload, token_selector,
};
use sesame_proto::v1 as pb;
use sesame_server::domain::{AccessRequestId, GatewayCode, encode_cursor};

// `cargo fuzz build` builds every binary of this crate with coverage
// instrumentation, which calls into libFuzzer: this links it, as in the
// targets. The function is never called; `main` below is the program.
libfuzzer_sys::fuzz_target!(|_data: &[u8]| {});

const REQUEST: &str = "accessRequests/0190a5f0-0000-7000-8000-000000000000";

fn main() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let mut written = 0;
    let mut write = |target: &str, name: &str, bytes: &[u8]| {
        let dir = corpus.join(target);
        std::fs::create_dir_all(&dir).expect("the corpus directory");
        std::fs::write(dir.join(format!("seed-{name}")), bytes).expect("a seed file");
        written += 1;
    };
    for (name, bytes) in api_requests() {
        write("api_requests", &name, &bytes);
    }
    for (name, bytes) in page_tokens() {
        write("page_tokens", &name, &bytes);
    }
    for (name, bytes) in mail_render() {
        write("mail_render", &name, &bytes);
    }
    for (name, bytes) in policy_toml() {
        write("policy_toml", &name, &bytes);
    }
    println!("wrote {written} seeds under {}", corpus.display());
}

/// `(name, input)`: the message's selector byte, then the message.
fn message(name: &str, variant: &str, message: &impl Message) -> (String, Vec<u8>) {
    let index = REQUEST_MESSAGES
        .iter()
        .position(|known| *known == name)
        .expect("a request message of sesame.v1");
    let mut bytes = vec![u8::try_from(index).expect("fewer than 256 messages")];
    message.encode(&mut bytes).expect("a Vec grows");
    (format!("{name}-{variant}"), bytes)
}

fn submission() -> pb::SubmitAccessRequestRequest {
    pb::SubmitAccessRequestRequest {
        applicant: Some(pb::Applicant {
            email: "ada@Example.COM".into(),
            full_name: "  Rene\u{301}e Lovelace ".into(),
            organization: "Analytical Engines".into(),
            phone: "+33 (1) 23.45-67-89".into(),
        }),
        user_type: pb::UserType::Partner.into(),
        locale: "FR".into(),
        resource: "vpn-paris".into(),
        justification: "line one\r\nline two\tend".into(),
        consent: Some(pb::Consent {
            version: "2026-01".into(),
            purposes: vec!["access_management".into(), "security.audit".into()],
            grant_time: None,
        }),
        request_id: "walkthrough-1".into(),
    }
}

fn time(seconds: i64) -> Option<Timestamp> {
    Some(Timestamp { seconds, nanos: 0 })
}

fn api_requests() -> Vec<(String, Vec<u8>)> {
    let code = GatewayCode::generate().to_string();
    let cursor = encode_cursor(42);
    let id = AccessRequestId::from_name(REQUEST).expect("a valid name");
    let mut bad_submission = submission();
    bad_submission.applicant = Some(pb::Applicant {
        email: "not-an-email".into(),
        full_name: "evil\u{202E}txt".into(),
        organization: "x".repeat(201),
        phone: "call me".into(),
    });
    bad_submission.user_type = 42;
    bad_submission.consent = None;
    vec![
        message("SubmitAccessRequestRequest", "valid", &submission()),
        message("SubmitAccessRequestRequest", "invalid", &bad_submission),
        message(
            "ExplainDecisionRequest",
            "valid",
            &pb::ExplainDecisionRequest {
                submission: Some(submission()),
            },
        ),
        message(
            "ExplainDecisionRequest",
            "empty",
            &pb::ExplainDecisionRequest::default(),
        ),
        message(
            "GetAccessRequestRequest",
            "valid",
            &pb::GetAccessRequestRequest { name: id.name() },
        ),
        message(
            "GetAccessRequestRequest",
            "invalid",
            &pb::GetAccessRequestRequest {
                name: "accessRequests/../../etc".into(),
            },
        ),
        message(
            "ListAccessRequestsRequest",
            "valid",
            &pb::ListAccessRequestsRequest {
                page_size: 20,
                page_token: "eyJ0IjoxfQ.AAAAAAAAAAAAAAAAAAAAAA".into(),
                state: pb::AccessRequestState::Pending.into(),
                user_type: pb::UserType::Contractor.into(),
                create_time_start: time(1_700_000_000),
                create_time_end: time(1_800_000_000),
                ..Default::default()
            },
        ),
        message(
            "ListAccessRequestsRequest",
            "invalid",
            &pb::ListAccessRequestsRequest {
                page_size: -1,
                state: 99,
                create_time_start: Some(Timestamp {
                    seconds: i64::MAX,
                    nanos: -1,
                }),
                create_time_end: time(0),
                ..Default::default()
            },
        ),
        message(
            "ApproveAccessRequestRequest",
            "valid",
            &pb::ApproveAccessRequestRequest {
                name: REQUEST.into(),
                etag: "W/\"3\"".into(),
                note: "welcome\nsee you".into(),
                return_code: true,
            },
        ),
        message(
            "RejectAccessRequestRequest",
            "valid",
            &pb::RejectAccessRequestRequest {
                name: REQUEST.into(),
                etag: String::new(),
                reason: "no contract on file".into(),
            },
        ),
        message(
            "RejectAccessRequestRequest",
            "no-reason",
            &pb::RejectAccessRequestRequest {
                name: REQUEST.into(),
                etag: String::new(),
                reason: " \r\n ".into(),
            },
        ),
        message(
            "CancelAccessRequestRequest",
            "valid",
            &pb::CancelAccessRequestRequest {
                name: REQUEST.into(),
                etag: String::new(),
                reason: "no longer needed".into(),
            },
        ),
        message(
            "GetStatsRequest",
            "valid",
            &pb::GetStatsRequest {
                window_secs: 604_800,
            },
        ),
        message(
            "GetStatsRequest",
            "invalid",
            &pb::GetStatsRequest { window_secs: -1 },
        ),
        message(
            "ListEmailsRequest",
            "valid",
            &pb::ListEmailsRequest {
                page_size: 10,
                page_token: String::new(),
                state: pb::EmailState::Dead.into(),
                access_request: REQUEST.into(),
            },
        ),
        message(
            "RetryEmailRequest",
            "valid",
            &pb::RetryEmailRequest {
                name: "emails/0190a5f0-0000-7000-8000-000000000001".into(),
            },
        ),
        message(
            "PreviewEmailRequest",
            "valid",
            &pb::PreviewEmailRequest {
                template: pb::EmailTemplate::ApplicantApproved.into(),
                locale: "fr".into(),
                user_type: pb::UserType::Contractor.into(),
                data_json: r#"{"full_name": "Ada <b>", "gateway_code": "K7Q2-9MZX-ABCD-EFGH-JKMN-PQRS", "reissued": true}"#.into(),
            },
        ),
        message(
            "PreviewEmailRequest",
            "invalid",
            &pb::PreviewEmailRequest {
                template: 0,
                locale: "de".into(),
                user_type: 0,
                data_json: "[1, 2".into(),
            },
        ),
        message(
            "WatchEventsRequest",
            "valid",
            &pb::WatchEventsRequest {
                after: cursor.clone(),
                event_types: vec![
                    pb::EventType::RequestSubmitted.into(),
                    pb::EventType::CodeRedeemed.into(),
                ],
                access_request: REQUEST.into(),
            },
        ),
        message(
            "WatchEventsRequest",
            "bad-cursor",
            &pb::WatchEventsRequest {
                after: "e1.AAAA".into(),
                event_types: vec![0, 77],
                access_request: String::new(),
            },
        ),
        message(
            "ListEventsRequest",
            "valid",
            &pb::ListEventsRequest {
                page_size: 100,
                page_token: String::new(),
                event_types: vec![pb::EventType::EmailDead.into()],
                access_request: REQUEST.into(),
                actor: "admin".into(),
                occur_time_start: time(1_700_000_000),
                occur_time_end: None,
            },
        ),
        message(
            "VerifyAuditChainRequest",
            "valid",
            &pb::VerifyAuditChainRequest {
                start_sequence: 1,
                end_sequence: 100,
            },
        ),
        message(
            "RedeemGatewayCodeRequest",
            "valid",
            &pb::RedeemGatewayCodeRequest {
                code: code.to_lowercase().replace('0', "o"),
            },
        ),
        message(
            "RedeemGatewayCodeRequest",
            "invalid",
            &pb::RedeemGatewayCodeRequest {
                code: "K7Q2-9MZX-ABCD-EFGH-JKMN-PQRU".into(),
            },
        ),
        message(
            "RevokeGatewayCodeRequest",
            "valid",
            &pb::RevokeGatewayCodeRequest {
                access_request: REQUEST.into(),
                reason: "lost laptop".into(),
            },
        ),
        message(
            "ReissueGatewayCodeRequest",
            "valid",
            &pb::ReissueGatewayCodeRequest {
                access_request: REQUEST.into(),
            },
        ),
        message(
            "ExportSubjectDataRequest",
            "valid",
            &pb::ExportSubjectDataRequest {
                email: "Ada@Example.com".into(),
            },
        ),
        message(
            "EraseSubjectRequest",
            "valid",
            &pb::EraseSubjectRequest {
                email: "ada@example.com".into(),
                reason: "ticket GDPR-42".into(),
            },
        ),
        message(
            "EraseSubjectRequest",
            "invalid",
            &pb::EraseSubjectRequest {
                email: "ada@example.com\r\nBcc: x@evil.example".into(),
                reason: String::new(),
            },
        ),
        message(
            "ListConsentRecordsRequest",
            "valid",
            &pb::ListConsentRecordsRequest {
                email: "ada@example.com".into(),
                page_size: 10,
                page_token: String::new(),
            },
        ),
        // Not protobuf at all: a truncated length-delimited field.
        ("truncated".to_owned(), vec![0, 0x0a, 0xff, 0x01, b'x']),
    ]
}

fn page_tokens() -> Vec<(String, Vec<u8>)> {
    let mut seeds = Vec::new();
    for (list, list_name) in [
        (TokenList::Requests, "requests"),
        (TokenList::Events, "events"),
        (TokenList::Emails, "emails"),
    ] {
        for filtered in [false, true] {
            let (_, token) = list_page(list, filtered, 1, None).expect("a first page");
            let token = token.expect("the fixture has more than one item");
            let suffix = if filtered { "-filtered" } else { "" };
            let raw = token_selector(list, TokenMode::Raw, filtered);
            let signed = token_selector(list, TokenMode::Signed, filtered);
            let walk = token_selector(list, TokenMode::Walk, filtered);
            let with = |selector: u8, rest: &[u8]| [&[selector], rest].concat();
            seeds.push((
                format!("{list_name}{suffix}-genuine"),
                with(raw, token.as_bytes()),
            ));
            seeds.push((
                format!("{list_name}{suffix}-payload"),
                with(signed, &token_payload(&token)),
            ));
            seeds.push((format!("{list_name}{suffix}-walk"), with(walk, &[0])));
        }
        let raw = token_selector(list, TokenMode::Raw, false);
        let (_, token) = list_page(list, false, 1, None).expect("a first page");
        let token = token.expect("a next page");
        let (payload, _) = token.split_once('.').expect("a tag");
        for (variant, forged) in [
            ("garbage", "garbage".to_owned()),
            ("untagged", payload.to_owned()),
            ("empty-tag", format!("{payload}.")),
            ("other-tag", format!("{payload}.AAAAAAAAAAAAAAAAAAAAAA")),
        ] {
            seeds.push((
                format!("{list_name}-{variant}"),
                [&[raw], forged.as_bytes()].concat(),
            ));
        }
    }
    // Cursors, read by every input.
    for seq in [0, 42, i64::MAX] {
        seeds.push((
            format!("cursor-{seq}"),
            [b"\x00", encode_cursor(seq).as_bytes()].concat(),
        ));
    }
    seeds
}

fn mail_render() -> Vec<(String, Vec<u8>)> {
    let values = |name: &str, email: &str, reason: &str| {
        join_fields(&[
            name,
            "Analytical Engines",
            email,
            "vpn-paris",
            reason,
            "accessRequests/0190a5f0-0000-7000-8000-000000000000",
            "K7Q2-9MZX-ABCD-EFGH-JKMN-PQRS",
            "2026-12-01 09:00 UTC",
            "2026-11-26 09:00 UTC",
        ])
    };
    let mut seeds = Vec::new();
    for decision in 0..5u8 {
        seeds.push((
            format!("valid-{decision}"),
            [
                &[decision, decision % 2, decision, decision][..],
                values("Ada Lovelace", "ada@example.com", "see you\nsoon").as_bytes(),
            ]
            .concat(),
        ));
    }
    seeds.push((
        "injection".to_owned(),
        [
            &[4u8, 0, 1, 0][..],
            values(
                "Eve\r\nBcc: victim@example.com",
                "eve@example.com\r\nBcc: victim@example.com",
                "x\r\n\r\n<html>",
            )
            .as_bytes(),
        ]
        .concat(),
    ));
    seeds.push((
        "unicode".to_owned(),
        [
            &[1u8, 1, 3, 1][..],
            values(
                "Ren\u{e9}e \u{202E}O'Brien <b>",
                "r\u{e9}n\u{e9}e@ex\u{e4}mple.com",
                "{{ reason }}",
            )
            .as_bytes(),
        ]
        .concat(),
    ));
    seeds
}

fn policy_toml() -> Vec<(String, Vec<u8>)> {
    let example = r#"
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

[[rules]]
id = "blocked"
action = "reject"
reason = "not a customer"
organizations = ["Blocked Ltd"]
email_domains = [".EXAMPLE.com "]
"#;
    vec![
        ("example".to_owned(), example.as_bytes().to_vec()),
        ("empty".to_owned(), Vec::new()),
        (
            "catch-all".to_owned(),
            b"[[rules]]\nid = \"all\"\naction = \"require_review\"\n".to_vec(),
        ),
        (
            "bad-approvals".to_owned(),
            b"[[rules]]\nid = \"x\"\naction = \"approve\"\napprovals = 11\n".to_vec(),
        ),
        (
            "duplicate-id".to_owned(),
            b"[[rules]]\nid = \"x\"\naction = \"approve\"\n[[rules]]\nid = \"x\"\naction = \"approve\"\n"
                .to_vec(),
        ),
        (
            "unknown-key".to_owned(),
            b"[[rules]]\nid = \"x\"\naction = \"reject\"\nreason = \" \"\ncolour = 1\n".to_vec(),
        ),
    ]
}
