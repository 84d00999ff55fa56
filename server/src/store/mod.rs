//! Persistence: SeaORM entities and the transactions that store domain
//! changes, on SQLite (embedded default) or PostgreSQL (production).
//!
//! Every change is decided by the domain and written by the one writer
//! (`commit.rs`) together with its event-log rows, emails and gateway codes
//! in one transaction. Read functions take a [`Scope`], so a submitter's query can
//! only ever see that submitter's rows.
//!
//! Functions return their errors and do not log them as errors: a refusal
//! (a stale etag, a decided request) is an ordinary answer, and what is
//! really wrong is logged once where it is handled (the status mapping of
//! `api::status`, the worker's and the scheduler's warnings). Their spans
//! record every error at DEBUG.

mod codes;
mod commit;
mod deadlines;
pub mod delivery;
pub mod entities;
mod events;
mod group_commit;
mod key_cache;
mod keys;
mod listen;
pub mod outbox;
mod pagination;
mod privacy;
mod requests;
mod rows;
mod sealing;
mod stats;
pub mod storage;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::TryRngCore;
use sea_orm::sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend,
    DbErr, RuntimeErr, SqliteTransactionMode, TransactionOptions, TransactionTrait,
};
use sesame_migrations::{Migrator, MigratorTrait};
use tokio::sync::OwnedMutexGuard;
use tracing::{info, instrument};

use crate::crypto::Vault;
use crate::domain::DomainError;
pub use codes::{CodeOptions, Redeemed};
pub use deadlines::{DueRequest, RequestStats};
pub use events::{ChainReport, EventFilter, EventPage, MAX_VERIFY_EVENTS, NOTIFY_CHANNEL};
pub use key_cache::{KEY_CACHE_TTL, KeyDigest};
pub use keys::{
    ApiKeyInfo, BOOTSTRAP_KEY_NAME, validate_key_name as keys_validate_name,
    validate_key_resources as keys_validate_resources,
};
pub use listen::{EMAILS_CHANNEL, wake_on_notify};
pub use pagination::{ListQuery, Order, Page};
pub use privacy::{
    ConsentPage, ConsentRecord, Erasure, MAX_EXPORT_EVENTS, MAX_EXPORT_REQUESTS, RetentionPass,
    SubjectExport,
};
pub use requests::Stored;
pub use sealing::ERASED;
pub use stats::{PoolUsage, Stats};

/// Errors of the persistence layer. Database details stay in the source
/// chain for logs and never reach a caller. A change the business rules
/// refuse is [`StoreError::Refused`], carrying the domain's reason.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Refused(#[from] DomainError),
    #[error("access request not found")]
    NotFound,
    #[error("the access request belongs to another submitter")]
    NotOwner,
    #[error("page_token is invalid: {0}")]
    InvalidPageToken(&'static str),
    #[error("API key {0:?} not found")]
    ApiKeyNotFound(String),
    #[error("an API key named {0:?} already exists")]
    ApiKeyNameTaken(String),
    #[error("email not found")]
    EmailNotFound,
    #[error("suppression not found")]
    SuppressionNotFound,
    #[error("the email's lease expired: another worker may have claimed it")]
    LeaseLost,
    #[error("the database is unavailable")]
    Unavailable(#[source] DbErr),
    /// The storage refused the write (a full disk...): nothing of it was
    /// kept, and reads still work.
    #[error("{problem}")]
    Storage {
        problem: storage::StorageProblem,
        #[source]
        source: DbErr,
    },
    #[error("database error")]
    Database(#[source] DbErr),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
}

impl From<DbErr> for StoreError {
    fn from(error: DbErr) -> Self {
        let sqlx = match &error {
            DbErr::Exec(RuntimeErr::SqlxError(inner))
            | DbErr::Query(RuntimeErr::SqlxError(inner))
            | DbErr::Conn(RuntimeErr::SqlxError(inner)) => Some(inner),
            _ => None,
        };
        if let Some(problem) = sqlx.and_then(|inner| storage_problem(inner)) {
            storage::note(problem, &error);
            return StoreError::Storage {
                problem,
                source: error,
            };
        }
        let transient = match &error {
            DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
            _ => sqlx.is_some_and(|inner| is_transient(inner)),
        };
        if transient {
            StoreError::Unavailable(error)
        } else {
            StoreError::Database(error)
        }
    }
}

/// Errors worth retrying: the connection, or contention that outlasted the
/// lock timeout (SQLite busy or locked; PostgreSQL serialization failure,
/// deadlock, lock not available, statement timeout), or a server that ended
/// or refused the session (connection exceptions, class 08; "terminating
/// connection due to administrator command" and the other operator
/// interventions, 57P01-57P03, as `pg_ctl restart -m fast` causes; too many
/// connections, 53300).
fn is_transient(error: &sea_orm::sqlx::Error) -> bool {
    use sea_orm::sqlx::Error;
    match error {
        Error::Io(_) | Error::PoolTimedOut | Error::PoolClosed => true,
        Error::Database(database) => {
            let code = database.code().unwrap_or_default();
            // SQLite reports (extended) result codes of up to 4 digits;
            // PostgreSQL SQLSTATEs always have 5 characters.
            let sqlite_busy_or_locked = code.len() < 5
                && code
                    .parse::<i32>()
                    .is_ok_and(|extended| matches!(extended & 0xff, 5 | 6));
            sqlite_busy_or_locked || is_transient_sqlstate(&code)
        }
        _ => false,
    }
}

/// The storage problem behind a database error, if it is one.
fn storage_problem(error: &sea_orm::sqlx::Error) -> Option<storage::StorageProblem> {
    match error {
        sea_orm::sqlx::Error::Database(database) => {
            storage::problem_of_code(&database.code().unwrap_or_default())
        }
        _ => None,
    }
}

/// The PostgreSQL SQLSTATEs after which the same call may succeed: see
/// [`is_transient`].
fn is_transient_sqlstate(code: &str) -> bool {
    code.len() == 5
        && (code.starts_with("08")
            || matches!(
                code,
                "40001" | "40P01" | "55P03" | "57014" | "57P01" | "57P02" | "57P03" | "53300"
            ))
}

/// Shorthand for store results.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Which requests a caller may see.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Admins and auditors: every request.
    All,
    /// A submitter: only the requests it created.
    OwnedBy(String),
}

/// How to reach the database.
#[derive(Clone)]
pub struct DatabaseOptions {
    /// `sqlite://PATH` or `postgres://USER@HOST/DB`.
    pub url: String,
    /// Largest connection pool.
    pub max_connections: u32,
    /// How long to wait for a free connection, or for a SQLite lock.
    pub acquire_timeout: Duration,
}

/// The database, shared by the API and the background tasks. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    db: DatabaseConnection,
    /// Signs page tokens, so a forged or altered token is refused. Derived
    /// from the key file (the same on every replica) once the key store is
    /// set; random for this process until then. Never stored.
    page_token_key: Arc<[u8; 32]>,
    /// Signalled after every commit that appended events.
    commits: Arc<tokio::sync::Notify>,
    /// Signalled after every commit that made emails due.
    emails_due: Arc<tokio::sync::Notify>,
    /// Who receives the administrators' emails.
    admin_emails: Arc<Vec<String>>,
    /// `allow_self_approval`: an admin may approve a request it submitted.
    allow_self_approval: bool,
    /// How gateway codes are issued; approvals need it.
    codes: Option<Arc<codes::CodeSettings>>,
    /// On SQLite, the turn to write: one write transaction of this process
    /// at a time. Writers on several pooled connections otherwise meet
    /// SQLITE_BUSY and back off in sleeps of milliseconds (the busy
    /// handler); here they queue instead. Unused on PostgreSQL.
    write_turn: Arc<tokio::sync::Mutex<()>>,
    /// The key store sealing personal data; see [`sealing`].
    vault: Option<Vault>,
    /// Submissions waiting for a group commit, written with this store's
    /// settings: every `with_*` method that changes what a submission
    /// writes starts a queue of its own.
    group_commit: Arc<group_commit::GroupCommit>,
    /// Verified API keys, so that most calls authenticate without a query.
    key_cache: Arc<key_cache::KeyCache>,
}

impl Store {
    /// Connects and applies pending migrations when `migrate` is true.
    #[instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn open(options: &DatabaseOptions, migrate: bool) -> Result<Store> {
        let db = connect(options).await?;
        if migrate {
            run_migrations(&db).await?;
        }
        let mut page_token_key = [0u8; 32];
        rand::rngs::OsRng
            .try_fill_bytes(&mut page_token_key)
            .expect("the operating system's random number generator failed");
        Ok(Store {
            db,
            page_token_key: Arc::new(page_token_key),
            commits: Arc::new(tokio::sync::Notify::new()),
            emails_due: Arc::new(tokio::sync::Notify::new()),
            admin_emails: Arc::new(Vec::new()),
            allow_self_approval: false,
            codes: None,
            write_turn: Arc::new(tokio::sync::Mutex::new(())),
            vault: None,
            group_commit: Arc::default(),
            key_cache: Arc::default(),
        })
    }

    /// The same store, issuing gateway codes with `options`.
    pub fn with_codes(mut self, options: CodeOptions) -> Store {
        self.codes = Some(Arc::new(options.into()));
        self.group_commit = Arc::default();
        self
    }

    /// The same store, sealing personal data with `vault`'s keys, and
    /// signing page tokens with a key derived from its key file.
    pub fn with_vault(mut self, vault: Vault) -> Store {
        self.page_token_key = Arc::new(vault.ring().derive("page tokens"));
        self.vault = Some(vault);
        self.group_commit = Arc::default();
        self
    }

    /// The same store, letting an administrator approve a request it
    /// submitted itself when `allowed` (`allow_self_approval`).
    pub fn with_self_approval(mut self, allowed: bool) -> Store {
        self.allow_self_approval = allowed;
        self
    }

    /// The same store, mailing administrators at `admin_emails`.
    pub fn with_admin_emails(mut self, admin_emails: Vec<String>) -> Store {
        self.admin_emails = Arc::new(admin_emails);
        self.group_commit = Arc::default();
        self
    }

    /// The underlying connection, for tests and tools.
    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Answers when the database answers a trivial query.
    #[instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn ping(&self) -> Result<()> {
        self.db.ping().await.map_err(StoreError::Unavailable)
    }

    /// Starts a write transaction. On SQLite it takes the write lock at once
    /// (BEGIN IMMEDIATE), so two writers never deadlock upgrading read locks,
    /// and waits first for this process's write turn, held until the
    /// returned guard drops (declare it before the transaction: `let (_turn,
    /// txn)`, so the transaction ends first).
    async fn begin_write(&self) -> Result<(Option<OwnedMutexGuard<()>>, DatabaseTransaction)> {
        let turn = if self.backend() == DbBackend::Sqlite {
            Some(Arc::clone(&self.write_turn).lock_owned().await)
        } else {
            None
        };
        let options = TransactionOptions {
            sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
            ..TransactionOptions::default()
        };
        Ok((turn, self.db.begin_with_options(options).await?))
    }

    fn backend(&self) -> DbBackend {
        self.db.get_database_backend()
    }
}

/// Opens the connection pool with the settings each backend needs.
#[instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn connect(options: &DatabaseOptions) -> Result<DatabaseConnection> {
    let mut connect_options = ConnectOptions::new(options.url.clone());
    let busy_timeout = options.acquire_timeout;
    // A SQLite connection is a file handle that never goes stale: no ping
    // before each use (a round trip to its worker thread per query). A
    // PostgreSQL connection may have been closed by the server.
    let sqlite = options.url.starts_with("sqlite");
    connect_options
        .test_before_acquire(!sqlite)
        .max_connections(options.max_connections)
        .acquire_timeout(options.acquire_timeout)
        .connect_timeout(options.acquire_timeout)
        .sqlx_logging(false)
        .map_sqlx_sqlite_opts(move |sqlite: SqliteConnectOptions| {
            sqlite
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // FULL: a commit is on disk before the call answers, so an
                // accepted request survives a power loss too (NORMAL in WAL
                // mode survives only a crash of the process).
                .synchronous(SqliteSynchronous::Full)
                .foreign_keys(true)
                .busy_timeout(busy_timeout)
        });
    Database::connect(connect_options)
        .await
        .map_err(StoreError::Unavailable)
}

/// Applies every pending migration; returns how many ran. On PostgreSQL the
/// migrations run in one transaction holding an advisory lock, so replicas
/// starting together take turns and the later ones find nothing to do.
#[instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn run_migrations(db: &DatabaseConnection) -> Result<usize> {
    if db.get_database_backend() != DbBackend::Postgres {
        return apply_pending(db).await;
    }
    let txn = db.begin().await?;
    txn.execute_unprepared(&format!(
        "SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})"
    ))
    .await?;
    let applied = apply_pending(&txn).await?;
    txn.commit().await?;
    Ok(applied)
}

/// Advisory lock key that serialises migrations between replicas.
impl std::fmt::Debug for DatabaseOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseOptions")
            .field("url", &crate::redact::redact_url(&self.url))
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout", &self.acquire_timeout)
            .finish()
    }
}

const MIGRATION_LOCK_KEY: i64 = 0x5e5a_4d00;

async fn apply_pending<'c, C>(db: &'c C) -> Result<usize>
where
    &'c C: sea_orm::IntoDatabaseExecutor<'c>,
    C: ConnectionTrait + Sync,
{
    let pending = Migrator::get_pending_migrations(db).await?.len();
    if pending > 0 {
        info!(pending, "applying database migrations");
        Migrator::up(db, None).await?;
    }
    Ok(pending)
}

/// How many migrations are not applied yet.
#[instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn pending_migrations(db: &DatabaseConnection) -> Result<usize> {
    Ok(Migrator::get_pending_migrations(db).await?.len())
}

/// The row a unique key selects, if any. Not `Select::one`: it binds its
/// `LIMIT 1` as a parameter, and SQLite re-prepares (parses and plans
/// again) a statement whose LIMIT is a bound parameter each time it runs
/// with new bindings; without a LIMIT the cached statement is reused.
#[instrument(level = "debug", skip_all, err(level = "debug"))]
pub(crate) async fn unique<E, C>(select: sea_orm::Select<E>, db: &C) -> Result<Option<E::Model>>
where
    E: sea_orm::EntityTrait,
    C: ConnectionTrait,
{
    let mut rows = select.all(db).await?;
    if rows.len() > 1 {
        return Err(StoreError::Corrupt(
            "a unique key selected several rows".into(),
        ));
    }
    Ok(rows.pop())
}

/// Microseconds since the Unix epoch, the stored form of every time.
pub fn to_micros(time: DateTime<Utc>) -> i64 {
    time.timestamp_micros()
}

/// The inverse of [`to_micros`].
pub fn from_micros(micros: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_micros(micros)
        .ok_or_else(|| StoreError::Corrupt(format!("time {micros} out of range")))
}

/// The current time, truncated to what the database keeps, so a value read
/// back equals the value written.
pub fn now() -> DateTime<Utc> {
    let current = Utc::now();
    from_micros(current.timestamp_micros()).unwrap_or(current)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_loss_and_contention_are_transient_other_states_are_not() {
        for code in [
            "08000", "08003", "08006", "08001", "08P01", "57P01", "57P02", "57P03", "53300",
            "40001", "40P01", "55P03", "57014",
        ] {
            assert!(is_transient_sqlstate(code), "{code}");
        }
        for code in ["23505", "42P01", "22001", "57000", "0800", ""] {
            assert!(!is_transient_sqlstate(code), "{code}");
        }
    }

    #[test]
    fn database_options_never_print_the_password() {
        let options = DatabaseOptions {
            url: "postgres://sesame:hunter2@db.internal/sesame".to_owned(),
            max_connections: 4,
            acquire_timeout: Duration::from_secs(1),
        };
        let shown = format!("{options:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("db.internal"), "{shown}");
    }
}
