//! What the fuzz targets and the seed generator share: the input formats
//! (which byte picks which message, how text fields are separated) and the
//! store fixture the page-token target lists from. Each target is described
//! in docs/fuzzing.md.

use std::sync::OnceLock;
use std::time::Duration;

use sesame_server::crypto::{KeyRing, Vault};
use sesame_server::domain::policy::Policy;
use sesame_server::domain::validation::{
    EnumInput, RawApplicant, RawConsent, RawSubmission, validate_submission,
};
use sesame_server::domain::{Locale, NewAccessRequest, UserType};
use sesame_server::store::{self, DatabaseOptions, Store};

/// The request message of every RPC of every `sesame.v1` service; the
/// first byte of an `api_requests` input picks one (modulo the count).
pub const REQUEST_MESSAGES: [&str; 20] = [
    "SubmitAccessRequestRequest",
    "ExplainDecisionRequest",
    "GetAccessRequestRequest",
    "ListAccessRequestsRequest",
    "ApproveAccessRequestRequest",
    "RejectAccessRequestRequest",
    "CancelAccessRequestRequest",
    "GetStatsRequest",
    "ListEmailsRequest",
    "RetryEmailRequest",
    "PreviewEmailRequest",
    "WatchEventsRequest",
    "ListEventsRequest",
    "VerifyAuditChainRequest",
    "RedeemGatewayCodeRequest",
    "RevokeGatewayCodeRequest",
    "ReissueGatewayCodeRequest",
    "ExportSubjectDataRequest",
    "EraseSubjectRequest",
    "ListConsentRecordsRequest",
];

/// Separates the text fields of a `mail_render` input (ASCII unit
/// separator): a control character validation refuses anyway.
pub const FIELD_SEPARATOR: char = '\u{1f}';

/// Splits `text` into exactly `count` fields at [`FIELD_SEPARATOR`]; missing
/// ones are empty, extra separators stay in the last field.
pub fn split_fields(text: &str, count: usize) -> Vec<String> {
    let mut fields: Vec<String> = text
        .splitn(count, FIELD_SEPARATOR)
        .map(str::to_owned)
        .collect();
    fields.resize(count, String::new());
    fields
}

/// Joins fields in the format [`split_fields`] reads.
pub fn join_fields(fields: &[&str]) -> String {
    fields.join(&FIELD_SEPARATOR.to_string())
}

/// The decision policy the targets evaluate submissions against: one rule
/// of each kind and criterion, so that every matching path runs.
pub fn sample_policy() -> Policy {
    Policy::parse(
        r#"
[[rules]]
id = "blocked"
action = "reject"
reason = "this organisation is not a customer"
organizations = ["Blocked Ltd"]

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
email_domains = ["example.com"]
"#,
    )
    .expect("the sample policy is valid")
}

/// A valid submission, for fixtures and seeds; `index` 0, 1 and 2 meet
/// different rules of [`sample_policy`] (none, `prod-db`, `blocked`).
pub fn sample_submission(index: usize) -> NewAccessRequest {
    let (user_type, organization, resource) = match index % 3 {
        0 => (UserType::Partner, "Analytical Engines", "vpn-paris"),
        1 => (UserType::Employee, "Analytical Engines", "prod-db"),
        _ => (UserType::Contractor, "Blocked Ltd", "vpn-paris"),
    };
    let raw = RawSubmission {
        applicant: Some(RawApplicant {
            email: format!("ada{index}@example.com"),
            full_name: "Ada Lovelace".into(),
            organization: organization.into(),
            phone: "+33 1 23 45 67 89".into(),
        }),
        user_type: EnumInput::Value(user_type),
        locale: Locale::Fr.as_str().into(),
        resource: resource.into(),
        justification: "Maintenance of the difference engine".into(),
        consent: Some(RawConsent {
            version: "2026-01".into(),
            purposes: vec!["access_management".into()],
        }),
        request_id: format!("fuzz-{index}"),
    };
    validate_submission(&raw).expect("the sample submission is valid")
}

/// The fixture store's master key: fixed, so that its page-token key (derived
/// from the key ring) is too, and the tokens of the committed seed corpus
/// stay genuine from one run to the next.
pub const FIXTURE_MASTER_KEY: [u8; 32] = [0x5e; 32];

/// The key the fixture store signs page tokens with.
pub fn page_token_key() -> [u8; 32] {
    KeyRing::from_bytes(&FIXTURE_MASTER_KEY).derive("page tokens")
}

/// The caller whose requests the fixture lists.
pub const FIXTURE_CALLER: &str = "fuzz-submitter";

/// A store on a temporary SQLite file holding a few requests (with their
/// events and emails), and the runtime that drives it.
pub struct Fixture {
    pub runtime: tokio::runtime::Runtime,
    pub store: Store,
    /// Keeps the database file until the process ends.
    _dir: tempfile::TempDir,
}

/// How many requests the fixture holds.
pub const FIXTURE_REQUESTS: usize = 3;

/// The shared fixture, made on first use.
pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let dir = tempfile::tempdir().expect("a temporary directory");
        let options = DatabaseOptions {
            url: format!("sqlite://{}", dir.path().join("fuzz.db").display()),
            max_connections: 1,
            acquire_timeout: Duration::from_secs(30),
        };
        let store = runtime.block_on(async {
            let db = store::connect(&options)
                .await
                .expect("the fixture database");
            store::run_migrations(&db).await.expect("migrations");
            // The key store in the same database, the ring fixed.
            let vault = Vault::open(db, KeyRing::from_bytes(&FIXTURE_MASTER_KEY), None)
                .await
                .expect("the fixture key store");
            let store = Store::open(&options, false)
                .await
                .expect("the fixture store")
                .with_admin_emails(vec!["ops@example.com".into()])
                .with_vault(vault);
            let policy = sample_policy();
            for index in 0..FIXTURE_REQUESTS {
                let submission = sample_submission(index);
                let evaluation = policy.evaluate(&submission);
                store
                    .submit_request(FIXTURE_CALLER, submission, &evaluation)
                    .await
                    .expect("a fixture request");
            }
            store
        });
        Fixture {
            runtime,
            store,
            _dir: dir,
        }
    })
}

/// A page token signed with [`page_token_key`] around any `payload`, in
/// the server's token format (`base64url(payload).base64url(tag)`, the tag
/// the first 16 bytes of HMAC-SHA256 over the encoded payload). This is the
/// forger who stole the key: it lets the fuzzer reach the parsing behind
/// the signature check.
pub fn sign_payload(payload: &[u8]) -> String {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use hmac::{Hmac, Mac};
    let encoded = URL_SAFE_NO_PAD.encode(payload);
    let mut mac =
        Hmac::<sha2::Sha256>::new_from_slice(&page_token_key()).expect("HMAC takes any key");
    mac.update(encoded.as_bytes());
    let tag = mac.finalize().into_bytes();
    format!("{encoded}.{}", URL_SAFE_NO_PAD.encode(&tag[..16]))
}

/// The payload (JSON) of a token the server made.
pub fn token_payload(token: &str) -> Vec<u8> {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let (payload, _tag) = token.split_once('.').expect("a token has a tag");
    URL_SAFE_NO_PAD
        .decode(payload)
        .expect("a token's payload is base64url")
}

/// Which list a `page_tokens` input runs (low two bits of its first byte,
/// modulo 3) and under which filters (bit 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenList {
    Requests,
    Events,
    Emails,
}

/// How a `page_tokens` input is used (bits 6 and 7 of its first byte).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenMode {
    /// The rest is the token as a caller sends it.
    Raw,
    /// The rest is a payload, signed with the fixture's key.
    Signed,
    /// Lists every page, following the server's own tokens.
    Walk,
}

/// The first byte of a `page_tokens` input for `list`, `mode` and
/// filtered or not.
pub fn token_selector(list: TokenList, mode: TokenMode, filtered: bool) -> u8 {
    let list_bits = match list {
        TokenList::Requests => 0,
        TokenList::Events => 1,
        TokenList::Emails => 2,
    };
    let mode_bits = match mode {
        TokenMode::Raw => 0,
        TokenMode::Signed => 0x40,
        TokenMode::Walk => 0x80,
    };
    list_bits | mode_bits | if filtered { 4 } else { 0 }
}

/// Reads a first byte written by [`token_selector`] (any byte reads as
/// something).
pub fn parse_token_selector(selector: u8) -> (TokenList, TokenMode, bool) {
    let list = match selector & 3 {
        0 | 3 => TokenList::Requests,
        1 => TokenList::Events,
        _ => TokenList::Emails,
    };
    let mode = match selector >> 6 {
        0 => TokenMode::Raw,
        1 => TokenMode::Signed,
        _ => TokenMode::Walk,
    };
    (list, mode, selector & 4 != 0)
}

/// One page of `list` from the fixture: the names of its items and the
/// next page's token.
pub fn list_page(
    list: TokenList,
    filtered: bool,
    page_size: u32,
    token: Option<&str>,
) -> Result<(Vec<String>, Option<String>), store::StoreError> {
    use sesame_server::domain::State;
    use sesame_server::store::outbox::{EmailFilter, PENDING};
    use sesame_server::store::{EventFilter, ListQuery, Scope};
    let fixture = fixture();
    fixture.runtime.block_on(async {
        match list {
            TokenList::Requests => {
                let (scope, query) = if filtered {
                    let query = ListQuery {
                        state: Some(State::Pending),
                        ..ListQuery::default()
                    };
                    (Scope::OwnedBy(FIXTURE_CALLER.to_owned()), query)
                } else {
                    (Scope::All, ListQuery::default())
                };
                let page = fixture
                    .store
                    .list_requests(FIXTURE_CALLER, &scope, &query, page_size, token)
                    .await?;
                let names = page.items.iter().map(|item| item.id.name()).collect();
                Ok((names, page.next_page_token))
            }
            TokenList::Events => {
                let filter = if filtered {
                    EventFilter {
                        actor: Some(FIXTURE_CALLER.to_owned()),
                        ..EventFilter::default()
                    }
                } else {
                    EventFilter::default()
                };
                let page = fixture
                    .store
                    .list_events(FIXTURE_CALLER, &filter, page_size, token)
                    .await?;
                let names = page.events.iter().map(|event| event.seq.to_string());
                Ok((names.collect(), page.next_page_token))
            }
            TokenList::Emails => {
                let filter = EmailFilter {
                    state: filtered.then_some(PENDING),
                    access_request: None,
                };
                let page = fixture
                    .store
                    .list_emails(FIXTURE_CALLER, &filter, page_size, token)
                    .await?;
                let names = page.emails.iter().map(|email| email.id.to_string());
                Ok((names.collect(), page.next_page_token))
            }
        }
    })
}
