//! The one writer. Every change of an access request, its gateway codes
//! and its emails is a domain [`Change`] (or a list of [`Effect`]s) applied
//! here, inside one transaction: the request's row, then each effect in
//! order (events appended through one [`EventAppender`], emails enqueued
//! under their event's sequence, codes issued, changed or forgotten).
//! [`Writer::commit`] writes the event counter back, commits and tells the
//! live hub and the mail worker: begin, apply, commit, publish live in this
//! file only.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait, QueryFilter, Set,
};
use serde_json::json;
use tokio::sync::OwnedMutexGuard;
use tracing::instrument;
use uuid::Uuid;

use super::entities::gateway_code::{ACTIVE, EXPIRED, REDEEMED, REVOKED};
use super::entities::{access_request, gateway_code, outbox};
use super::events::EventAppender;
use super::listen::EMAILS_CHANNEL;
use super::rows::access_request_row;
use super::sealing::Sealer;
use super::{Result, Store, StoreError, now, to_micros};
use crate::crypto::codes::{SEALED_CODE_FIELD, seal_code, without_sealed_code};
use crate::domain::codes::issued;
use crate::domain::deadline::Due;
use crate::domain::mail::{MailTemplate, NewEmail};
use crate::domain::{
    AccessRequest, AccessRequestId, Change, CodeChange, CodeState, CodeStatus, Effect, GatewayCode,
    RequestWrite, State,
};

/// What applying a change produced that the reply needs.
#[derive(Debug, Default)]
pub(super) struct Applied {
    /// The gateway code issued, and its status (so no read after commit).
    pub issued: Option<(GatewayCode, CodeStatus)>,
}

/// What a list of effects is about: the request as the domain sees it, or
/// only its id for effects that need nothing more (code changes, events
/// without emails).
#[derive(Clone, Copy, Debug)]
pub(super) enum About<'a> {
    Request(&'a AccessRequest),
    Id(AccessRequestId),
}

impl About<'_> {
    fn id(&self) -> AccessRequestId {
        match self {
            About::Request(request) => request.id,
            About::Id(id) => *id,
        }
    }
}

/// A write transaction of the store, applying changes until it commits.
pub(super) struct Writer {
    store: Store,
    events: EventAppender,
    /// Emails became due in this transaction: the mail worker is woken on
    /// commit.
    emails_due: bool,
    txn: DatabaseTransaction,
    /// SQLite's write turn, released after the transaction ends (declared
    /// after `txn`: fields drop in order).
    _turn: Option<OwnedMutexGuard<()>>,
}

impl Store {
    /// Begins a write transaction (see [`Store::begin_write`]).
    pub(super) async fn writer(&self) -> Result<Writer> {
        let (turn, txn) = self.begin_write().await?;
        Ok(Writer {
            store: self.clone(),
            events: EventAppender::default(),
            emails_due: false,
            txn,
            _turn: turn,
        })
    }
}

impl Writer {
    /// The transaction, for the reads a change is decided from.
    pub(super) fn txn(&self) -> &DatabaseTransaction {
        &self.txn
    }

    /// Writes the event counter back (done by [`Writer::commit`] too).
    pub(super) async fn flush(&mut self) -> Result<()> {
        self.events.flush(&self.txn).await
    }

    /// Marks emails due in this transaction (enqueued or requeued): the
    /// mail workers are woken when it commits.
    pub(super) fn emails_due(&mut self) {
        self.emails_due = true;
    }

    /// Writes the event counter back, commits, and tells the live hub and,
    /// when emails became due, the mail workers (on PostgreSQL those of
    /// every replica, through NOTIFY).
    pub(super) async fn commit(mut self) -> Result<()> {
        self.events.flush(&self.txn).await?;
        if self.emails_due && self.txn.get_database_backend() == DbBackend::Postgres {
            let notify = format!("SELECT pg_notify('{EMAILS_CHANNEL}', '')");
            self.txn.execute_unprepared(&notify).await?;
        }
        self.txn.commit().await?;
        self.store.event_committed();
        if self.emails_due {
            self.store.emails_became_due();
        }
        Ok(())
    }

    /// Ends the transaction without a trace (also what dropping it does).
    pub(super) async fn rollback(self) -> Result<()> {
        Ok(self.txn.rollback().await?)
    }

    /// Applies `change` of a request whose personal data `sealer` seals
    /// (`None`: the applicant was erased). `None` when a guard matched no
    /// row (a concurrent change won): the caller must roll back.
    #[instrument(skip_all, fields(request = %change.request.id, effects = change.effects.len()), err(level = "debug"))]
    pub(super) async fn apply(
        &mut self,
        change: &Change,
        sealer: Option<&Sealer>,
    ) -> Result<Option<Applied>> {
        if !self.write_request(change, sealer).await? {
            return Ok(None);
        }
        self.apply_effects(About::Request(&change.request), &change.effects, sealer)
            .await
    }

    /// Applies `effects` about `request`, in order; `None` as in
    /// [`Writer::apply`].
    pub(super) async fn apply_effects(
        &mut self,
        about: About<'_>,
        effects: &[Effect],
        sealer: Option<&Sealer>,
    ) -> Result<Option<Applied>> {
        let request_id = about.id();
        let mut applied = Applied::default();
        for effect in effects {
            match effect {
                Effect::Event {
                    event,
                    emails,
                    seal_reason,
                } => {
                    let mut event = event.clone();
                    if *seal_reason {
                        // A reason an administrator wrote is never stored
                        // in clear: without the applicant's key, nothing.
                        let sealer = sealer.ok_or_else(erased_applicant)?;
                        sealer.seal_event_reason(&mut event);
                    }
                    let seq = self.events.append(&self.txn, &event).await?;
                    if !emails.is_empty() {
                        let sealer = sealer.ok_or_else(erased_applicant)?;
                        let due = now().min(event.occurred_at);
                        enqueue(&self.txn, sealer, request_id, seq, emails.clone(), due).await?;
                        self.emails_due = true;
                    }
                }
                Effect::IssueCode {
                    actor,
                    reissued,
                    at,
                } => {
                    let About::Request(request) = about else {
                        return Err(StoreError::Corrupt(
                            "a code issue without its request reached the writer".to_owned(),
                        ));
                    };
                    let sealer = sealer.ok_or_else(erased_applicant)?;
                    let issued = self
                        .issue_code(request, sealer, actor, *reissued, *at)
                        .await?;
                    applied.issued = Some(issued);
                }
                Effect::CodeChange { code, change } => {
                    if !self.change_code(code, change).await? {
                        return Ok(None);
                    }
                }
                Effect::ForgetUnsentCodes => forget_unsent_codes(&self.txn, request_id).await?,
            }
        }
        Ok(Some(applied))
    }

    /// The request's row as `change.write` says; `false` when its guard
    /// matched no row.
    pub(super) async fn write_request(
        &self,
        change: &Change,
        sealer: Option<&Sealer>,
    ) -> Result<bool> {
        use access_request::Column;
        let request = &change.request;
        let updated = match &change.write {
            RequestWrite::Unchanged => return Ok(true),
            RequestWrite::Insert => {
                let sealer = sealer.ok_or_else(erased_applicant)?;
                let mut row = access_request_row(request);
                sealer.seal_request(&mut row, &request.applicant.email);
                access_request::Entity::insert(row)
                    .exec_without_returning(&self.txn)
                    .await?;
                return Ok(true);
            }
            RequestWrite::Update { expected_version } => {
                let sealer = sealer.ok_or_else(erased_applicant)?;
                access_request::Entity::update_many()
                    .set(decision_columns(request, sealer))
                    .filter(Column::Id.eq(request.id.to_string()))
                    .filter(Column::Version.eq(*expected_version))
                    .exec(&self.txn)
                    .await?
            }
            RequestWrite::MarkDeadline { step, at } => {
                let column = match step {
                    Due::Remind => Column::RemindedAtUs,
                    Due::Escalate => Column::EscalatedAtUs,
                    Due::Expire => {
                        return Err(StoreError::Corrupt(
                            "expiry is a decision, not a deadline mark".to_owned(),
                        ));
                    }
                };
                // The arbiter: of concurrent attempts, one UPDATE matches.
                let mut update = access_request::Entity::update_many()
                    .col_expr(column, Expr::value(Some(to_micros(*at))))
                    .filter(Column::Id.eq(request.id.to_string()))
                    .filter(Column::State.eq(State::Pending.as_str()))
                    .filter(column.is_null());
                if *step == Due::Remind {
                    // An escalated request gets no late reminder.
                    update = update.filter(Column::EscalatedAtUs.is_null());
                }
                update.exec(&self.txn).await?
            }
        };
        Ok(updated.rows_affected == 1)
    }

    /// Issues a new code for `request`: the row, the `code.issued` event,
    /// and the applicant's email with the code sealed.
    async fn issue_code(
        &mut self,
        request: &AccessRequest,
        sealer: &Sealer,
        actor: &str,
        reissued: bool,
        at: DateTime<Utc>,
    ) -> Result<(GatewayCode, CodeStatus)> {
        let codes = self.store.code_settings()?;
        let code = self.free_selector(at).await?;
        let validity = chrono::Duration::from_std(codes.policy.validity_for(&request.resource))
            .map_err(|_| StoreError::Corrupt("gateway code validity out of range".to_owned()))?;
        let expires_at = at + validity;
        let id = Uuid::now_v7().to_string();
        let row = gateway_code::ActiveModel {
            id: Set(id.clone()),
            access_request_id: Set(request.id.to_string()),
            selector: Set(code.selector().to_owned()),
            digest: Set(code.digest()),
            state: Set(ACTIVE.to_owned()),
            failed_attempts: Set(0),
            issued_by: Set(actor.to_owned()),
            issued_at_us: Set(to_micros(at)),
            expires_at_us: Set(to_micros(expires_at)),
            redeemed_at_us: Set(None),
            redeemed_by: Set(None),
            updated_at_us: Set(to_micros(at)),
        };
        gateway_code::Entity::insert(row)
            .exec_without_returning(&self.txn)
            .await
            .map_err(|error| match error.sql_err() {
                Some(sea_orm::SqlErr::UniqueConstraintViolation(_)) => {
                    StoreError::Unavailable(error)
                }
                _ => error.into(),
            })?;
        let (event, mut emails) = issued(request, actor, reissued, at, expires_at);
        for email in &mut emails {
            if email.template == MailTemplate::ApplicantApproved {
                email.data[SEALED_CODE_FIELD] = json!(seal_code(&codes.secret, request.id, &code));
            }
        }
        let seq = self.events.append(&self.txn, &event).await?;
        enqueue(&self.txn, sealer, request.id, seq, emails, at).await?;
        self.emails_due = true;
        let status = CodeStatus {
            id,
            state: CodeState::Active,
            issued_at: at,
            expires_at,
            redeemed_at: None,
            redeemed_by: None,
            failed_attempts: 0,
        };
        Ok((code, status))
    }

    /// A new code whose 20-bit selector no live code has. Codes past their
    /// validity give theirs up (written `expired` now). Two approvals
    /// drawing the same one at the same instant fail the unique index and
    /// are retried by the caller (UNAVAILABLE).
    async fn free_selector(&self, at: DateTime<Utc>) -> Result<GatewayCode> {
        let mut code = GatewayCode::generate();
        for _ in 0..8 {
            gateway_code::Entity::update_many()
                .col_expr(gateway_code::Column::State, Expr::value(EXPIRED))
                .col_expr(
                    gateway_code::Column::UpdatedAtUs,
                    Expr::value(to_micros(at)),
                )
                .filter(gateway_code::Column::Selector.eq(code.selector()))
                .filter(gateway_code::Column::State.eq(ACTIVE))
                .filter(gateway_code::Column::ExpiresAtUs.lte(to_micros(at)))
                .exec(&self.txn)
                .await?;
            let taken = gateway_code::Entity::find()
                .filter(gateway_code::Column::Selector.eq(code.selector()))
                .filter(gateway_code::Column::State.eq(ACTIVE))
                .one(&self.txn)
                .await?
                .is_some();
            if !taken {
                break;
            }
            code = GatewayCode::generate();
        }
        Ok(code)
    }

    /// Changes the stored code `id`; `false` when a redemption's guard
    /// (still active) matched no row.
    async fn change_code(&self, id: &str, change: &CodeChange) -> Result<bool> {
        use gateway_code::Column;
        let mut update = gateway_code::Entity::update_many().filter(Column::Id.eq(id));
        let at = match change {
            CodeChange::Redeemed { gateway, at } => {
                // The row is locked (PostgreSQL) or the database is
                // (SQLite); the state guard keeps a code single-use even
                // without the lock.
                update = update
                    .col_expr(Column::State, Expr::value(REDEEMED))
                    .col_expr(Column::RedeemedAtUs, Expr::value(to_micros(*at)))
                    .col_expr(Column::RedeemedBy, Expr::value(gateway.as_str()))
                    .filter(Column::State.eq(ACTIVE));
                at
            }
            CodeChange::FailedAttempt {
                attempts,
                revoke,
                at,
            } => {
                update = update.col_expr(Column::FailedAttempts, Expr::value(*attempts));
                if *revoke {
                    update = update.col_expr(Column::State, Expr::value(REVOKED));
                }
                at
            }
            CodeChange::Revoked { at } => {
                update = update.col_expr(Column::State, Expr::value(REVOKED));
                at
            }
        };
        let updated = update
            .col_expr(Column::UpdatedAtUs, Expr::value(to_micros(*at)))
            .exec(&self.txn)
            .await?;
        Ok(updated.rows_affected == 1)
    }
}

/// The columns a decision changes (state, decision, version, approvals),
/// from the same row mapping an insert uses; the decision's reason sealed.
fn decision_columns(request: &AccessRequest, sealer: &Sealer) -> access_request::ActiveModel {
    let full = access_request_row(request);
    let id = request.id.to_string();
    let reason = request.decision.as_ref().and_then(|d| d.reason.clone());
    access_request::ActiveModel {
        state: full.state,
        decided_by: full.decided_by,
        decided_at_us: full.decided_at_us,
        decision_reason: Set(sealer.seal_decision_reason(&id, reason)),
        decision_automatic: full.decision_automatic,
        version: full.version,
        updated_at_us: full.updated_at_us,
        approvals: full.approvals,
        ..Default::default()
    }
}

/// Personal data (an email, a code, a reason to seal) about a request whose
/// applicant was erased: a domain rule should have left it out.
fn erased_applicant() -> StoreError {
    StoreError::Corrupt("personal data for an erased applicant reached the writer".to_owned())
}

/// Drops the sealed code from the request's approval emails not sent yet
/// (pending or dead): once revoked, a code is never delivered. Such an email
/// still says the request was approved, without a code.
async fn forget_unsent_codes(txn: &DatabaseTransaction, request: AccessRequestId) -> Result<()> {
    let rows = outbox::Entity::find()
        .filter(outbox::Column::AccessRequestId.eq(request.to_string()))
        .filter(outbox::Column::Template.eq(MailTemplate::ApplicantApproved.as_str()))
        .filter(outbox::Column::State.ne(outbox::SENT))
        .all(txn)
        .await?;
    for row in rows {
        if let Some(data) = without_sealed_code(&row.data) {
            outbox::Entity::update_many()
                .col_expr(outbox::Column::Data, Expr::value(data))
                .filter(outbox::Column::Id.eq(row.id))
                .exec(txn)
                .await?;
        }
    }
    Ok(())
}

/// Inserts `emails` caused by event `event_seq` in the caller's transaction.
/// A second enqueue of the same email fails on the idempotency key.
async fn enqueue(
    txn: &DatabaseTransaction,
    sealer: &Sealer,
    request: AccessRequestId,
    event_seq: i64,
    emails: Vec<NewEmail>,
    at: DateTime<Utc>,
) -> Result<()> {
    for email in emails {
        let id = Uuid::now_v7();
        // The recipient by its blind index: the key must not hold the
        // address in clear.
        let key = format!(
            "{request}:{event_seq}:{}:{}",
            email.template.as_str(),
            sealer.blind_index(&email.recipient)
        );
        let mut row = outbox::ActiveModel {
            id: Set(id.to_string()),
            idempotency_key: Set(key),
            message_id: Set(format!("<{id}@sesame>")),
            access_request_id: Set(request.to_string()),
            event_seq: Set(event_seq),
            template: Set(email.template.as_str().to_owned()),
            locale: Set(email.locale.as_str().to_owned()),
            user_type: Set(email.user_type.as_str().to_owned()),
            recipient: Set(email.recipient),
            data: Set(email.data.to_string()),
            state: Set(outbox::PENDING.to_owned()),
            attempts: Set(0),
            next_attempt_at_us: Set(to_micros(at)),
            lease_token: Set(None),
            lease_expires_at_us: Set(None),
            last_error: Set(None),
            created_at_us: Set(to_micros(at)),
            updated_at_us: Set(to_micros(at)),
            sent_at_us: Set(None),
            requeued_at_us: Set(None),
            purged_at_us: Set(None),
            ..Default::default()
        };
        sealer.seal_email(&mut row);
        outbox::Entity::insert(row)
            .exec_without_returning(txn)
            .await?;
    }
    Ok(())
}
