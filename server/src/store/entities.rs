//! SeaORM entities, one module per table of `sesame-migrations`.
//!
//! Times are microseconds since the Unix epoch; ids are hyphenated UUIDs.

/// `api_keys`: hashed API keys and their roles.
pub mod api_key {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "api_keys")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub name: String,
        pub role: String,
        /// SHA-256 of the secret, hex. The secret itself is never stored.
        pub key_hash: String,
        /// First characters of the secret, to recognise a key in listings.
        pub key_prefix: String,
        pub created_at_us: i64,
        pub revoked_at_us: Option<i64>,
        /// A gateway key's resources, as a JSON array of names; `None` for
        /// an unbound gateway key and for every other role.
        pub resources: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `access_requests`: one row per request, current state only.
pub mod access_request {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "access_requests")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub submitter: String,
        pub request_id: Option<String>,
        pub applicant_email: String,
        pub applicant_full_name: String,
        pub applicant_organization: String,
        pub applicant_phone: Option<String>,
        pub user_type: String,
        pub locale: String,
        pub resource: String,
        pub justification: String,
        pub consent_version: String,
        /// JSON array of purposes.
        pub consent_purposes: String,
        pub state: String,
        pub decided_by: Option<String>,
        pub decided_at_us: Option<i64>,
        pub decision_reason: Option<String>,
        pub decision_automatic: bool,
        pub version: i64,
        pub created_at_us: i64,
        pub updated_at_us: i64,
        /// The policy rule that matched at submit, if any.
        pub policy_rule: Option<String>,
        pub policy_explanation: Option<String>,
        pub required_approvals: i32,
        /// JSON array of the administrators who approved so far.
        pub approvals: String,
        /// When the administrators were reminded (half the review SLA).
        pub reminded_at_us: Option<i64>,
        /// When the request was escalated (past the review SLA).
        pub escalated_at_us: Option<i64>,
        /// Whose data key seals the personal columns; `None` for rows
        /// stored before encryption and once erased.
        pub subject_id: Option<String>,
        /// Blind index of the applicant's email; `None` once erased.
        pub applicant_index: Option<String>,
        /// When the personal data was erased (erasure or retention).
        pub erased_at_us: Option<i64>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `idempotency_keys`: which request a (caller, request_id) pair created.
pub mod idempotency_key {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "idempotency_keys")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub principal: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub request_id: String,
        /// Fingerprint of the first call's payload.
        pub request_hash: String,
        pub access_request_id: String,
        pub created_at_us: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `events`: the append-only event log.
pub mod event {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "events")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub seq: i64,
        pub event_type: String,
        pub access_request_id: String,
        pub actor: String,
        pub state: String,
        /// JSON object with the event's facts.
        pub data: String,
        pub occurred_at_us: i64,
        /// `hash` of the previous event (genesis: 64 zeros).
        pub prev_hash: String,
        /// SHA-256 of `prev_hash` and this row's canonical encoding, hex.
        pub hash: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `settings`: server-wide values shared by every replica.
pub mod setting {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "settings")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub key: String,
        pub value: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `event_counter`: the single row that hands out event sequences and
/// remembers the head of the hash chain.
pub mod event_counter {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "event_counter")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: i32,
        pub last_seq: i64,
        pub last_hash: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `outbox`: emails to send and the record of those sent.
pub mod outbox {
    use sea_orm::entity::prelude::*;

    /// Waiting to be sent (or being sent, under a lease).
    pub const PENDING: &str = "pending";
    /// Accepted by the mail server.
    pub const SENT: &str = "sent";
    /// Will not be sent.
    pub const DEAD: &str = "dead";
    /// Not sent: the address is suppressed.
    pub const SUPPRESSED: &str = "suppressed";

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "outbox")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// request + event + template + recipient: enqueuing twice fails.
        pub idempotency_key: String,
        /// Stable across retries, so a resend is recognisable as the same.
        pub message_id: String,
        pub access_request_id: String,
        pub event_seq: i64,
        pub template: String,
        pub locale: String,
        pub user_type: String,
        pub recipient: String,
        /// JSON template variables.
        pub data: String,
        /// `pending`, `sent` or `dead`.
        pub state: String,
        pub attempts: i32,
        pub next_attempt_at_us: i64,
        /// Set while a worker holds the row; completing checks it.
        pub lease_token: Option<String>,
        pub lease_expires_at_us: Option<i64>,
        pub last_error: Option<String>,
        pub created_at_us: i64,
        pub updated_at_us: i64,
        pub sent_at_us: Option<i64>,
        /// When RetryEmail last queued the dead email again; its lifetime
        /// counts from here.
        pub requeued_at_us: Option<i64>,
        /// When the retention job purged the sent email's recipient and data.
        pub purged_at_us: Option<i64>,
        /// The transport of the last attempt (`resend`, `smtp`, ...).
        pub provider: Option<String>,
        /// The provider's id of the sent email.
        pub provider_message_id: Option<String>,
        /// The provider the next attempt must use: the last attempt's
        /// outcome is unknown (sent, then no answer), and only that
        /// provider can recognise a resend.
        pub pinned_provider: Option<String>,
        /// What the provider reported since: `delivered`, `delayed`,
        /// `bounced` or `complained`.
        pub delivery: Option<String>,
        pub delivery_at_us: Option<i64>,
        /// The provider's words with its last report (a bounce's reason).
        pub delivery_detail: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod gateway_code {
    use sea_orm::entity::prelude::*;

    /// Stored code states. Expiry is read from the clock; it is written
    /// (`expired`) only when a new code needs the selector.
    pub const ACTIVE: &str = "active";
    pub const REDEEMED: &str = "redeemed";
    pub const REVOKED: &str = "revoked";
    pub const EXPIRED: &str = "expired";

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "gateway_codes")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub access_request_id: String,
        /// The code's public first group; finds the row.
        pub selector: String,
        /// SHA-256 of the whole normalized code, hex. Never the code.
        pub digest: String,
        /// `active`, `redeemed` or `revoked` (expiry is read from the time).
        pub state: String,
        pub failed_attempts: i32,
        pub issued_by: String,
        pub issued_at_us: i64,
        pub expires_at_us: i64,
        pub redeemed_at_us: Option<i64>,
        pub redeemed_by: Option<String>,
        pub updated_at_us: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `subject_keys`: one wrapped data key per data subject.
pub mod subject_key {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "subject_keys")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub subject_id: String,
        /// Blind index of the subject's email (see `KeyRing::blind_index`).
        pub blind_index: String,
        /// Which master key wrapped `wrapped_key`.
        pub master_key_id: i32,
        /// The data key sealed by that master key.
        pub wrapped_key: String,
        pub created_at_us: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}

    /// The key store's schema, created by the key store when it opens: it
    /// may live in a database of its own, which the migrations never see.
    pub const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS subject_keys (
    subject_id VARCHAR(36) NOT NULL PRIMARY KEY,
    blind_index VARCHAR(64) NOT NULL UNIQUE,
    master_key_id INTEGER NOT NULL,
    wrapped_key TEXT NOT NULL,
    created_at_us BIGINT NOT NULL
)";
}

/// `suppressions`: addresses no email is sent to, by blind index only.
pub mod suppression {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "suppressions")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// Blind index of the address (see `KeyRing::blind_index`).
        pub address_index: String,
        /// `hard_bounce` or `complaint`.
        pub reason: String,
        pub provider: String,
        pub detail: Option<String>,
        /// The outbox row whose report caused it.
        pub email_id: String,
        pub created_at_us: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `webhook_events`: provider events already applied (replays are no-ops).
pub mod webhook_event {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "webhook_events")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub provider: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub event_id: String,
        pub received_at_us: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
