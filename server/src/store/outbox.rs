//! The email outbox: enqueue in the caller's transaction, claim due rows
//! under a lease, and record each outcome (with its event) only while the
//! lease is still ours, many outcomes in one transaction.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait,
    FromQueryResult, QueryFilter, QueryOrder, QuerySelect, Set, Statement, Value,
};
use serde_json::json;
use tracing::{info, instrument, warn};
use uuid::Uuid;

use super::commit::{About, Writer};
use super::entities::{access_request, outbox};
use super::{Result, Store, StoreError, from_micros, now, to_micros, unique};
use crate::crypto::codes::without_sealed_code;
use crate::domain::codes::event_effect;
use crate::domain::mail::{MailTemplate, delivery_event};
use crate::domain::{AccessRequestId, DomainError, EventKind, Locale, State, UserType};

pub use super::entities::outbox::{DEAD, PENDING, SENT, SUPPRESSED};

/// An email claimed by a worker.
#[derive(Clone, Debug)]
pub struct ClaimedEmail {
    pub id: String,
    pub message_id: String,
    pub access_request: AccessRequestId,
    pub template: MailTemplate,
    pub locale: Locale,
    pub user_type: UserType,
    pub recipient: String,
    pub data: serde_json::Value,
    /// This attempt's number, from 1.
    pub attempt: u32,
    /// Where the email's lifetime starts: when it was queued, or requeued.
    pub created_at: DateTime<Utc>,
    /// Proves the claim when the outcome is recorded.
    pub lease_token: String,
    /// The applicant's personal data was erased (or the email purged):
    /// recipient and data are empty and the email cannot be sent.
    pub erased: bool,
    /// The transport this attempt must use: the previous attempt's outcome
    /// is unknown (see [`Completion::pin`]).
    pub pinned_transport: Option<String>,
    /// Why the recipient's address is suppressed, if it is: the email is
    /// not sent.
    pub suppressed: Option<String>,
}

/// How an attempt ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Sent,
    /// Failed; try again at this time.
    RetryAt {
        error: String,
        at: DateTime<Utc>,
    },
    /// Failed for good, or out of time.
    Dead {
        error: String,
    },
    /// Not sent: the recipient's address is suppressed, for this reason.
    Suppressed {
        reason: String,
    },
}

/// An attempt's outcome with what the transport said about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Completion {
    pub outcome: Outcome,
    /// The transport that made the attempt (`resend`, `smtp`...).
    pub transport: Option<String>,
    /// The provider's id of the email, once sent.
    pub provider_message_id: Option<String>,
    /// The attempt's outcome is unknown (the request went out, no answer
    /// came back): the retry must use the same transport, which alone can
    /// recognise the resend.
    pub pin: bool,
    /// The transport took the email because the ones before it were
    /// resting after repeated failures.
    pub failed_over: bool,
}

impl From<Outcome> for Completion {
    fn from(outcome: Outcome) -> Completion {
        Completion {
            outcome,
            transport: None,
            provider_message_id: None,
            pin: false,
            failed_over: false,
        }
    }
}

/// A claimed row, its recipient and data opened (`None`: erased).
fn claimed(
    row: outbox::Model,
    opened: Option<(String, serde_json::Value)>,
    suppressed: Option<String>,
) -> Result<ClaimedEmail> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("outbox {}: {what}", row.id));
    Ok(ClaimedEmail {
        access_request: row
            .access_request_id
            .parse()
            .map_err(|_| corrupt("bad access request id"))?,
        template: MailTemplate::parse(&row.template).ok_or_else(|| corrupt("unknown template"))?,
        locale: Locale::parse(&row.locale).ok_or_else(|| corrupt("unknown locale"))?,
        user_type: UserType::parse(&row.user_type).ok_or_else(|| corrupt("unknown user type"))?,
        erased: opened.is_none(),
        attempt: u32::try_from(row.attempts).unwrap_or(1),
        created_at: from_micros(row.requeued_at_us.unwrap_or(row.created_at_us))?,
        lease_token: row
            .lease_token
            .clone()
            .ok_or_else(|| corrupt("claimed without lease"))?,
        pinned_transport: row.pinned_provider,
        suppressed,
        id: row.id,
        message_id: row.message_id,
        recipient: opened
            .as_ref()
            .map(|(to, _)| to.clone())
            .unwrap_or_default(),
        data: opened.map(|(_, data)| data).unwrap_or_default(),
    })
}

/// Most emails one take-back claims: more than a worker ever holds.
const TAKE_BACK_LIMIT: u64 = 100_000;

impl Store {
    /// Claims up to `limit` due emails for `lease`: rows never claimed,
    /// waiting for a retry, or whose previous lease expired (a worker died).
    /// PostgreSQL skips rows other workers are claiming; SQLite serialises
    /// claims in an immediate transaction.
    pub async fn claim_emails(&self, limit: u64, lease: Duration) -> Result<Vec<ClaimedEmail>> {
        self.claim_emails_as(None, limit, lease).await
    }

    /// [`Store::claim_emails`] for the worker `identity`, whose lease tokens
    /// then start with `identity/` (see [`Store::take_back_emails`]).
    pub async fn claim_emails_as(
        &self,
        identity: Option<&str>,
        limit: u64,
        lease: Duration,
    ) -> Result<Vec<ClaimedEmail>> {
        let due = "next_attempt_at_us <= $3 AND (lease_expires_at_us IS NULL OR lease_expires_at_us < $3)";
        self.claim_where(identity, due, None, limit, lease).await
    }

    /// Resolves when this process commits a change that made emails due
    /// (a permit is kept if nobody is waiting, so none is missed).
    pub async fn emails_due(&self) {
        self.emails_due.notified().await;
    }

    /// Tells this process's mail worker that emails became due.
    pub(super) fn emails_became_due(&self) {
        self.emails_due.notify_one();
    }

    /// When the next pending email falls due (its retry time, or its
    /// lease's end when a worker holds it); `None` when none is pending.
    #[instrument(skip_all, err(level = "debug"))]
    pub async fn next_email_due(&self) -> Result<Option<DateTime<Utc>>> {
        let statement = Statement::from_sql_and_values(
            self.backend(),
            "SELECT MIN(CASE WHEN lease_expires_at_us > next_attempt_at_us \
             THEN lease_expires_at_us ELSE next_attempt_at_us END) AS due \
             FROM outbox WHERE state = $1",
            [PENDING.into()],
        );
        let row = self.db.query_one_raw(statement).await?;
        let due: Option<i64> = match row {
            Some(row) => row.try_get("", "due")?,
            None => None,
        };
        due.map(from_micros).transpose()
    }

    /// Claims again, for `lease`, every pending email still leased under
    /// `identity` by a previous process of this worker that died, without
    /// waiting for the leases to expire. Only for a worker starting: a live
    /// worker with the same identity would lose its claims.
    pub async fn take_back_emails(
        &self,
        identity: &str,
        lease: Duration,
    ) -> Result<Vec<ClaimedEmail>> {
        let prefix = format!("{identity}/");
        let condition = format!(
            "lease_expires_at_us >= $3 AND substr(lease_token, 1, {}) = $5",
            prefix.len()
        );
        self.claim_where(
            Some(identity),
            &condition,
            Some(prefix),
            TAKE_BACK_LIMIT,
            lease,
        )
        .await
    }

    /// Claims up to `limit` pending emails matching `condition` (SQL over
    /// the outbox, with `$3` the time now and `$5` the `extra` value).
    #[instrument(skip_all, fields(limit), err(level = "debug"))]
    async fn claim_where(
        &self,
        identity: Option<&str>,
        condition: &str,
        extra: Option<String>,
        limit: u64,
        lease: Duration,
    ) -> Result<Vec<ClaimedEmail>> {
        let now = to_micros(now());
        let expires = now + i64::try_from(lease.as_micros()).unwrap_or(i64::MAX / 2);
        let token = match identity {
            Some(identity) => format!("{identity}/{}", Uuid::new_v4()),
            None => Uuid::new_v4().to_string(),
        };
        let backend = self.backend();
        let skip_locked = if backend == DbBackend::Postgres {
            " FOR UPDATE SKIP LOCKED"
        } else {
            ""
        };
        let sql = format!(
            "UPDATE outbox SET lease_token = $1, lease_expires_at_us = $2, attempts = attempts + 1, \
             updated_at_us = $3 WHERE id IN (SELECT id FROM outbox WHERE state = 'pending' \
             AND {condition} ORDER BY next_attempt_at_us LIMIT $4{skip_locked}) RETURNING *"
        );
        let sql = if backend == DbBackend::Sqlite {
            (1..=5).fold(sql, |sql, n| {
                sql.replace(&format!("${n}"), &format!("?{n}"))
            })
        } else {
            sql
        };
        let mut values: Vec<Value> = vec![
            token.into(),
            expires.into(),
            now.into(),
            i64::try_from(limit).unwrap_or(100).into(),
        ];
        values.extend(extra.map(Value::from));
        let (_turn, txn) = self.begin_write().await?;
        // RETURNING * yields whole rows: the entity reads them as it reads
        // any query result.
        let rows =
            outbox::Model::find_by_statement(Statement::from_sql_and_values(backend, sql, values))
                .all(&txn)
                .await?;
        txn.commit().await?;
        // One key-store query for the whole batch, not one per email.
        let subjects: Vec<_> = rows
            .iter()
            .filter_map(|row| crate::crypto::sealed_subject(&row.recipient))
            .collect();
        if let Some(vault) = &self.vault
            && !subjects.is_empty()
        {
            vault.prefetch(&subjects).await?;
        }
        let mut opened = Vec::with_capacity(rows.len());
        for row in rows {
            let email = self.open_email(&row).await?;
            opened.push((row, email));
        }
        let suppressions = self
            .suppressions_of(
                opened
                    .iter()
                    .filter_map(|(_, email)| email.as_ref().map(|(to, _)| to)),
            )
            .await?;
        let mut emails = Vec::with_capacity(opened.len());
        for (row, email) in opened {
            let suppressed = email
                .as_ref()
                .and_then(|(to, _)| suppressions.get(&to.to_lowercase()).cloned());
            emails.push(claimed(row, email, suppressed)?);
        }
        Ok(emails)
    }

    /// Extends, to `lease` from now, the leases of the emails claimed under
    /// `tokens` and not completed yet, in one UPDATE. An email claimed again
    /// since (its token changed) or completed (its token cleared) is left
    /// alone. Returns how many leases were extended.
    #[instrument(skip_all, fields(tokens = tokens.len()), err(level = "debug"))]
    pub async fn renew_leases(&self, tokens: &[String], lease: Duration) -> Result<u64> {
        if tokens.is_empty() {
            return Ok(0);
        }
        let expires = to_micros(now()) + i64::try_from(lease.as_micros()).unwrap_or(i64::MAX / 2);
        let held = || {
            Condition::all()
                .add(outbox::Column::LeaseToken.is_in(tokens.iter().cloned()))
                .add(outbox::Column::State.eq(PENDING))
        };
        let (_turn, txn) = self.begin_write().await?;
        if self.backend() == DbBackend::Postgres {
            // The rows locked in id order first, as recording outcomes
            // locks them: the worker's renewals and its recordings run
            // side by side and must not deadlock on each other's rows.
            outbox::Entity::find()
                .select_only()
                .column(outbox::Column::Id)
                .filter(held())
                .order_by_asc(outbox::Column::Id)
                .lock_exclusive()
                .into_tuple::<String>()
                .all(&txn)
                .await?;
        }
        let renewed = outbox::Entity::update_many()
            .col_expr(outbox::Column::LeaseExpiresAtUs, Expr::value(Some(expires)))
            .filter(held())
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(renewed.rows_affected)
    }

    /// Records the outcome of an attempt and its event, if `email` was not
    /// claimed again since (by another worker, after its lease expired);
    /// otherwise it returns [`StoreError::LeaseLost`] and changes nothing.
    #[instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn complete_email(
        &self,
        email: &ClaimedEmail,
        outcome: impl Into<Completion>,
    ) -> Result<()> {
        self.complete_emails(&[(email.clone(), outcome.into())])
            .await
            .pop()
            .expect("one result per outcome")
    }

    /// Records the outcomes of several attempts, each with its event, in one
    /// transaction: one commit for all of them (group commit). Returns one
    /// result per outcome, in order: `Ok`, or [`StoreError::LeaseLost`] for
    /// an email claimed again since, which changes nothing. If the shared
    /// transaction fails, each outcome is recorded again in a transaction of
    /// its own, so that one bad row fails alone.
    #[instrument(skip_all, fields(emails = outcomes.len()))]
    pub async fn complete_emails(
        &self,
        outcomes: &[(ClaimedEmail, Completion)],
    ) -> Vec<Result<()>> {
        if outcomes.len() > 1 {
            match self.record_outcomes(outcomes).await {
                Ok(results) => return results,
                Err(error) => {
                    warn!(%error, emails = outcomes.len(), "could not record a batch of email outcomes; each is recorded alone");
                }
            }
        }
        let mut results = Vec::with_capacity(outcomes.len());
        for one in outcomes {
            results.push(
                match self.record_outcomes(std::slice::from_ref(one)).await {
                    Ok(mut result) => result.pop().expect("one result per outcome"),
                    Err(error) => Err(error),
                },
            );
        }
        results
    }

    async fn record_outcomes(
        &self,
        outcomes: &[(ClaimedEmail, Completion)],
    ) -> Result<Vec<Result<()>>> {
        let mut writer = self.writer().await?;
        let at = now();
        // The rows in one query, locked on PostgreSQL (in id order, as any
        // other batch locks them) so that a claim by another worker, which
        // skips locked rows, cannot slip in between the check and the update.
        let mut select = outbox::Entity::find()
            .filter(outbox::Column::Id.is_in(outcomes.iter().map(|(email, _)| email.id.clone())))
            .order_by_asc(outbox::Column::Id);
        if self.backend() == DbBackend::Postgres {
            select = select.lock_exclusive();
        }
        let mut rows: HashMap<String, outbox::Model> = select
            .all(writer.txn())
            .await?
            .into_iter()
            .map(|row| (row.id.clone(), row))
            .collect();
        // Email events record the state of their request.
        let request_states: HashMap<String, String> = access_request::Entity::find()
            .select_only()
            .columns([access_request::Column::Id, access_request::Column::State])
            .filter(
                access_request::Column::Id
                    .is_in(rows.values().map(|row| row.access_request_id.clone())),
            )
            .into_tuple::<(String, String)>()
            .all(writer.txn())
            .await?
            .into_iter()
            .collect();
        let mut results = Vec::with_capacity(outcomes.len());
        for (email, outcome) in outcomes {
            let recorded = match rows.remove(&email.id) {
                Some(row) => {
                    let request_state = request_states
                        .get(&row.access_request_id)
                        .and_then(|state| State::parse(state))
                        .ok_or_else(|| {
                            StoreError::Corrupt(format!("outbox {} has no request", row.id))
                        })?;
                    record_outcome(&mut writer, row, request_state, email, outcome, at).await?
                }
                None => false,
            };
            results.push(if recorded {
                Ok(())
            } else {
                Err(StoreError::LeaseLost)
            });
        }
        writer.commit().await?;
        Ok(results)
    }

    /// Counts outbox rows in `state`.
    #[instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn count_emails(&self, state: &str) -> Result<u64> {
        use sea_orm::PaginatorTrait;
        Ok(outbox::Entity::find()
            .filter(outbox::Column::State.eq(state))
            .count(&self.db)
            .await?)
    }
}

/// An email as listed to administrators.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmailRecord {
    pub id: String,
    pub access_request: AccessRequestId,
    pub template: MailTemplate,
    pub locale: Locale,
    pub recipient: String,
    /// `pending`, `sent` or `dead`.
    pub state: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub message_id: String,
    pub created_at: DateTime<Utc>,
    pub next_attempt_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    /// The transport of the last attempt.
    pub transport: Option<String>,
    pub provider_message_id: Option<String>,
    /// `delivered`, `delayed`, `bounced` or `complained`, as reported.
    pub delivery: Option<String>,
    pub delivery_at: Option<DateTime<Utc>>,
    pub delivery_detail: Option<String>,
}

impl Store {
    /// An outbox row as listed, its recipient opened ([`super::ERASED`]
    /// once erased or purged).
    async fn email_record(&self, row: outbox::Model) -> Result<EmailRecord> {
        let recipient = match self.open_email(&row).await? {
            Some((recipient, _)) => recipient,
            None => super::ERASED.to_owned(),
        };
        EmailRecord::from_row(row, recipient)
    }
}

impl EmailRecord {
    fn from_row(row: outbox::Model, recipient: String) -> Result<Self> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("outbox {}: {what}", row.id));
        Ok(EmailRecord {
            access_request: row
                .access_request_id
                .parse()
                .map_err(|_| corrupt("bad access request id"))?,
            template: MailTemplate::parse(&row.template)
                .ok_or_else(|| corrupt("unknown template"))?,
            locale: Locale::parse(&row.locale).ok_or_else(|| corrupt("unknown locale"))?,
            created_at: from_micros(row.created_at_us)?,
            next_attempt_at: from_micros(row.next_attempt_at_us)?,
            sent_at: row.sent_at_us.map(from_micros).transpose()?,
            delivery_at: row.delivery_at_us.map(from_micros).transpose()?,
            transport: row.provider,
            provider_message_id: row.provider_message_id,
            delivery: row.delivery,
            delivery_detail: row.delivery_detail,
            id: row.id,
            recipient,
            state: row.state,
            attempts: row.attempts,
            last_error: row.last_error,
            message_id: row.message_id,
        })
    }
}

/// Filters of ListEmails.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EmailFilter {
    /// `pending`, `sent` or `dead`.
    pub state: Option<&'static str>,
    pub access_request: Option<AccessRequestId>,
}

/// A page of emails.
#[derive(Clone, Debug)]
pub struct EmailPage {
    pub emails: Vec<EmailRecord>,
    pub next_page_token: Option<String>,
}

impl Store {
    /// A page of emails, newest first; tokens are bound to the filter and
    /// `caller`.
    #[instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn list_emails(
        &self,
        caller: &str,
        filter: &EmailFilter,
        page_size: u32,
        page_token: Option<&str>,
    ) -> Result<EmailPage> {
        use super::pagination::{self, Position};
        let query = pagination::fingerprint_text(&format!(
            "emails|{caller}|{}|{}",
            filter.state.unwrap_or(""),
            filter
                .access_request
                .map(|id| id.to_string())
                .unwrap_or_default()
        ));
        let after = page_token
            .map(|token| pagination::decode::<Position>(&self.page_token_key, token, &query))
            .transpose()?;
        let mut select = outbox::Entity::find();
        if let Some(state) = filter.state {
            select = select.filter(outbox::Column::State.eq(state));
        }
        if let Some(id) = filter.access_request {
            select = select.filter(outbox::Column::AccessRequestId.eq(id.to_string()));
        }
        let (rows, next_page_token) = pagination::keyset_page(
            &self.db,
            &self.page_token_key,
            select,
            (outbox::Column::CreatedAtUs, outbox::Column::Id),
            pagination::Order::NewestFirst,
            after.as_ref(),
            page_size,
            query,
            |row| (row.created_at_us, row.id.clone()),
        )
        .await?;
        let mut emails = Vec::with_capacity(rows.len());
        for row in rows {
            emails.push(self.email_record(row).await?);
        }
        Ok(EmailPage {
            emails,
            next_page_token,
        })
    }

    /// Queues a dead email again, due now, with a fresh lifetime.
    #[instrument(skip_all, fields(email = %id), err(level = "debug"))]
    pub async fn retry_email(&self, id: Uuid, actor: &str) -> Result<EmailRecord> {
        let at = now();
        let mut writer = self.writer().await?;
        let row = outbox::Entity::find_by_id(id.to_string())
            .one(writer.txn())
            .await?
            .ok_or(StoreError::EmailNotFound)?;
        // Conditional on the state, so two admins retrying at once requeue
        // the email once.
        let updated = outbox::Entity::update_many()
            .col_expr(outbox::Column::State, Expr::value(PENDING))
            .col_expr(outbox::Column::Attempts, Expr::value(0))
            .col_expr(
                outbox::Column::LastError,
                Expr::value(Option::<String>::None),
            )
            .col_expr(outbox::Column::NextAttemptAtUs, Expr::value(to_micros(at)))
            .col_expr(
                outbox::Column::RequeuedAtUs,
                Expr::value(Some(to_micros(at))),
            )
            .col_expr(outbox::Column::UpdatedAtUs, Expr::value(to_micros(at)))
            .filter(outbox::Column::Id.eq(id.to_string()))
            .filter(outbox::Column::State.eq(DEAD))
            .exec(writer.txn())
            .await?;
        if updated.rows_affected != 1 {
            return Err(DomainError::EmailNotDead(row.state).into());
        }
        writer.emails_due();
        let request_state = request_state(writer.txn(), &row).await?;
        let request: AccessRequestId = row
            .access_request_id
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("outbox {}: bad request id", row.id)))?;
        let mut event = delivery_event(
            EventKind::EmailRequeued,
            request,
            request_state,
            json!({ "template": row.template, "message_id": row.message_id }),
            at,
        );
        event.actor = actor.to_owned();
        writer
            .apply_effects(About::Id(request), &[event_effect(event)], None)
            .await?;
        let fresh = outbox::Entity::find_by_id(id.to_string())
            .one(writer.txn())
            .await?
            .ok_or(StoreError::EmailNotFound)?;
        writer.commit().await?;
        info!("dead email queued again");
        self.email_record(fresh).await
    }
}

/// The current state of the request an email is about: email events record
/// it as the request's state.
pub(super) async fn request_state(txn: &DatabaseTransaction, row: &outbox::Model) -> Result<State> {
    unique(
        access_request::Entity::find_by_id(row.access_request_id.clone()),
        txn,
    )
    .await?
    .and_then(|request| State::parse(&request.state))
    .ok_or_else(|| StoreError::Corrupt(format!("outbox {} has no request", row.id)))
}

/// Records one outcome and its event in `txn`, given the email's `row`
/// (locked on PostgreSQL); `false` (and no change) when the lease is no
/// longer ours.
async fn record_outcome(
    writer: &mut Writer,
    row: outbox::Model,
    request_state: State,
    email: &ClaimedEmail,
    completion: &Completion,
    at: DateTime<Utc>,
) -> Result<bool> {
    let outcome = &completion.outcome;
    // Every claim sets a new token, so a matching token proves no other
    // worker has claimed the email since, even if the lease ran out: the
    // outcome is real and is kept (dropping it would send the email again).
    let ours =
        row.lease_token.as_deref() == Some(email.lease_token.as_str()) && row.state == PENDING;
    if !ours {
        return Ok(false);
    }
    let (state, kind, error, next_attempt) = match outcome {
        Outcome::Sent => (SENT, EventKind::EmailSent, None, row.next_attempt_at_us),
        Outcome::RetryAt { error, at: retry } => (
            PENDING,
            EventKind::EmailFailed,
            Some(error.clone()),
            to_micros(*retry),
        ),
        Outcome::Dead { error } => (
            DEAD,
            EventKind::EmailDead,
            Some(error.clone()),
            row.next_attempt_at_us,
        ),
        Outcome::Suppressed { reason } => (
            SUPPRESSED,
            EventKind::EmailSuppressed,
            Some(reason.clone()),
            row.next_attempt_at_us,
        ),
    };
    // Once sent, the sealed gateway code has done its job: drop it. A dead
    // email keeps it, so that RetryEmail can still deliver the code.
    let purged = (state == SENT)
        .then(|| without_sealed_code(&row.data))
        .flatten();
    let pinned = next_pin(completion, row.pinned_provider.clone());
    let mut active: outbox::ActiveModel = row.into();
    if let Some(data) = purged {
        active.data = Set(data);
    }
    active.state = Set(state.to_owned());
    active.lease_token = Set(None);
    active.lease_expires_at_us = Set(None);
    active.next_attempt_at_us = Set(next_attempt);
    active.updated_at_us = Set(to_micros(at));
    if let Some(error) = &error {
        active.last_error = Set(Some(error.clone()));
    }
    if *outcome == Outcome::Sent {
        active.sent_at_us = Set(Some(to_micros(at)));
    }
    if completion.transport.is_some() {
        active.provider = Set(completion.transport.clone());
        active.provider_message_id = Set(completion.provider_message_id.clone());
    }
    active.pinned_provider = Set(pinned);
    // Not `ActiveModel::update`, which reads the row back.
    outbox::Entity::update_many()
        .set(active)
        .filter(outbox::Column::Id.eq(email.id.clone()))
        .exec(writer.txn())
        .await?;
    let event = delivery_event(
        kind,
        email.access_request,
        request_state,
        attempt_data(email, completion, error.as_deref()),
        at,
    );
    writer
        .apply_effects(
            About::Id(email.access_request),
            &[event_effect(event)],
            None,
        )
        .await?;
    log_outcome(email, outcome);
    Ok(true)
}

/// The transport the email's next attempt must use. A pin holds until an
/// attempt ends the email's fate (sent, dead, suppressed): a failure
/// answered after an unknown outcome says nothing about that first attempt,
/// which the pinned provider alone can recognise when it is sent again.
fn next_pin(completion: &Completion, pinned: Option<String>) -> Option<String> {
    match completion.outcome {
        Outcome::RetryAt { .. } if completion.pin => completion.transport.clone(),
        Outcome::RetryAt { .. } => pinned,
        Outcome::Sent | Outcome::Dead { .. } | Outcome::Suppressed { .. } => None,
    }
}

/// One log line per recorded outcome.
fn log_outcome(email: &ClaimedEmail, outcome: &Outcome) {
    match outcome {
        Outcome::Sent => info!(email = %email.id, template = email.template.as_str(), "email sent"),
        Outcome::RetryAt { .. } => {
            warn!(email = %email.id, template = email.template.as_str(), "email attempt failed; will retry")
        }
        Outcome::Dead { .. } => {
            warn!(email = %email.id, template = email.template.as_str(), "email is dead")
        }
        Outcome::Suppressed { .. } => {
            info!(email = %email.id, template = email.template.as_str(), "email not sent: its address is suppressed")
        }
    }
}

/// The data of an attempt's event: no personal data (an error loses its
/// addresses in [`delivery_event`]).
fn attempt_data(
    email: &ClaimedEmail,
    completion: &Completion,
    error: Option<&str>,
) -> serde_json::Value {
    let mut data = json!({
        "template": email.template.as_str(),
        "message_id": email.message_id,
        "attempt": email.attempt,
        "error": error,
    });
    if let Some(transport) = &completion.transport {
        data["transport"] = transport.clone().into();
    }
    if completion.failed_over {
        data["failed_over"] = true.into();
    }
    data
}
