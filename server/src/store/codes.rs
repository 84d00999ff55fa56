//! Gateway codes: issued in the approval's transaction (with its event and
//! the applicant's email, which carries the code sealed with the server's
//! secret key), redeemed once under a row lock, revoked after too many
//! wrong guesses, by an administrator, or by a reissue.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, LockType};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseTransaction, DbBackend, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Set,
};
use serde_json::json;
use tracing::{info, warn};
use uuid::Uuid;

use super::entities::{access_request, gateway_code, outbox};
use super::events::append_event;
use super::outbox::enqueue;
use super::requests::to_domain;
use super::sealing::Sealer;
use super::{Result, Store, StoreError, from_micros, now, to_micros};
use crate::crypto::KeyRing;
use crate::domain::mail::{MailTemplate, NewEmail, emails_for};
use crate::domain::{AccessRequest, AccessRequestId, EventKind, GatewayCode, NewEvent, State};

/// Stored code states. Expiry is read from the clock; it is written
/// (`expired`) only when a new code needs the selector.
pub(super) const ACTIVE: &str = "active";
const REDEEMED: &str = "redeemed";
pub(super) const REVOKED: &str = "revoked";
const EXPIRED: &str = "expired";

/// Key of the sealed code in an outbox row's template data; removed once
/// the email is sent.
pub const SEALED_CODE_FIELD: &str = "gateway_code_sealed";

/// The purpose a code is sealed for: its request, so a sealed value copied
/// into another request's email does not open.
pub fn seal_purpose(request: AccessRequestId) -> String {
    format!("gateway_code:{request}")
}

/// How codes are issued.
#[derive(Clone, Debug)]
pub struct CodeOptions {
    /// Seals the code in the outbox until its email is sent.
    pub secret: KeyRing,
    /// Validity of a code.
    pub validity: Duration,
    /// Validity per resource (gateway), overriding `validity`.
    pub validity_by_resource: HashMap<String, Duration>,
    /// Wrong guesses of one code before it is revoked.
    pub max_failed_attempts: i32,
}

impl CodeOptions {
    fn validity_for(&self, resource: &str) -> Duration {
        self.validity_by_resource
            .get(resource)
            .copied()
            .unwrap_or(self.validity)
    }
}

/// Where a code is in its life, as reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodeState {
    Active,
    Redeemed,
    Revoked,
    Expired,
}

/// What is known about a code, never the code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodeStatus {
    pub state: CodeState,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub redeemed_at: Option<DateTime<Utc>>,
    pub redeemed_by: Option<String>,
    pub failed_attempts: i32,
}

impl CodeStatus {
    fn from_row(row: &gateway_code::Model, at: DateTime<Utc>) -> Result<CodeStatus> {
        let expires_at = from_micros(row.expires_at_us)?;
        let state = match row.state.as_str() {
            ACTIVE if expires_at <= at => CodeState::Expired,
            ACTIVE => CodeState::Active,
            REDEEMED => CodeState::Redeemed,
            REVOKED => CodeState::Revoked,
            EXPIRED => CodeState::Expired,
            other => {
                return Err(StoreError::Corrupt(format!(
                    "gateway code {}: unknown state {other:?}",
                    row.id
                )));
            }
        };
        Ok(CodeStatus {
            state,
            issued_at: from_micros(row.issued_at_us)?,
            expires_at,
            redeemed_at: row.redeemed_at_us.map(from_micros).transpose()?,
            redeemed_by: row.redeemed_by.clone(),
            failed_attempts: row.failed_attempts,
        })
    }
}

/// A successful redemption.
#[derive(Clone, Debug)]
pub struct Redeemed {
    pub request: AccessRequest,
}

/// Why a redemption failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RedeemError {
    #[error("no such gateway code")]
    NotFound,
    #[error("the gateway code was already redeemed")]
    Used,
    #[error("the gateway code was revoked")]
    Revoked,
    #[error("the gateway code has expired")]
    Expired,
}

/// Issues a new code for `request` in the caller's transaction: the row,
/// the `code.issued` event, and the applicant's email with the code sealed.
/// Returns the code (for `return_code`) and the email's event sequence.
pub(crate) async fn issue_code(
    txn: &DatabaseTransaction,
    options: &CodeOptions,
    sealer: &Sealer,
    request: &AccessRequest,
    actor: &str,
    reissued: bool,
    at: DateTime<Utc>,
) -> Result<GatewayCode> {
    // A selector is 20 bits: make sure no live code has it. Codes past
    // their validity give theirs up (written `expired` now). Two approvals
    // drawing the same one at the same instant fail the unique index and
    // are retried by the caller (UNAVAILABLE).
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
            .exec(txn)
            .await?;
        let taken = gateway_code::Entity::find()
            .filter(gateway_code::Column::Selector.eq(code.selector()))
            .filter(gateway_code::Column::State.eq(ACTIVE))
            .one(txn)
            .await?
            .is_some();
        if !taken {
            break;
        }
        code = GatewayCode::generate();
    }
    let validity = chrono::Duration::from_std(options.validity_for(&request.resource))
        .map_err(|_| StoreError::Corrupt("gateway code validity out of range".to_owned()))?;
    let expires_at = at + validity;
    gateway_code::ActiveModel {
        id: Set(Uuid::now_v7().to_string()),
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
    }
    .insert(txn)
    .await
    .map_err(|error| match error.sql_err() {
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_)) => StoreError::Unavailable(error),
        _ => error.into(),
    })?;
    let event = code_event(
        EventKind::CodeIssued,
        request.id,
        actor,
        at,
        json!({
            "expires_at": expires_at.to_rfc3339(),
            "reissued": reissued,
        }),
    );
    let seq = append_event(txn, &event).await?;
    let mut emails: Vec<NewEmail> = emails_for(EventKind::Approved, request, &[]);
    for email in &mut emails {
        if email.template == MailTemplate::ApplicantApproved {
            let sealed = options
                .secret
                .seal_str(&seal_purpose(request.id), &code.to_string());
            email.data[SEALED_CODE_FIELD] = json!(sealed);
            email.data["code_expires"] = json!(expires_at.format("%Y-%m-%d %H:%M UTC").to_string());
            if reissued {
                email.data["reissued"] = json!(true);
            }
        }
    }
    enqueue(txn, sealer, request.id, seq, emails, at).await?;
    Ok(code)
}

/// Drops the sealed code from the request's approval emails not sent yet
/// (pending or dead): once revoked, a code is never delivered. Such an email
/// still says the request was approved, without a code.
async fn forget_unsent_codes(txn: &DatabaseTransaction, request: AccessRequestId) -> Result<()> {
    let rows = outbox::Entity::find()
        .filter(outbox::Column::AccessRequestId.eq(request.to_string()))
        .filter(outbox::Column::Template.eq(MailTemplate::ApplicantApproved.as_str()))
        .filter(outbox::Column::State.ne(super::outbox::SENT))
        .all(txn)
        .await?;
    for row in rows {
        if let Some(data) = super::outbox::without_sealed_code(&row.data) {
            outbox::Entity::update_many()
                .col_expr(outbox::Column::Data, Expr::value(data))
                .filter(outbox::Column::Id.eq(row.id))
                .exec(txn)
                .await?;
        }
    }
    Ok(())
}

fn code_event(
    kind: EventKind,
    request: AccessRequestId,
    actor: &str,
    at: DateTime<Utc>,
    data: serde_json::Value,
) -> NewEvent {
    NewEvent {
        kind,
        access_request: request,
        actor: actor.to_owned(),
        // Codes exist only for approved requests.
        state: State::Approved,
        occurred_at: at,
        data,
    }
}

impl Store {
    /// The code settings; issuing or reissuing without them is a
    /// configuration error reported as such.
    pub(super) fn code_options(&self) -> Result<&Arc<CodeOptions>> {
        self.codes.as_ref().ok_or_else(|| {
            StoreError::Corrupt("no secret key configured: gateway codes cannot be issued".into())
        })
    }

    /// Redeems `code` for `gateway`. A wrong guess whose selector matches a
    /// live code counts against that code and is committed even though the
    /// call fails; the last allowed one revokes it.
    pub async fn redeem_code(
        &self,
        code: &GatewayCode,
        gateway: &str,
    ) -> Result<std::result::Result<Redeemed, RedeemError>> {
        let at = now();
        let (_turn, txn) = self.begin_write().await?;
        let mut select = gateway_code::Entity::find()
            .filter(gateway_code::Column::Selector.eq(code.selector()))
            .order_by_desc(gateway_code::Column::IssuedAtUs);
        if self.backend() == DbBackend::Postgres {
            select = select.lock_exclusive();
        }
        let rows = select.all(&txn).await?;
        if let Some(row) = rows.iter().find(|row| code.matches(&row.digest)) {
            let status = CodeStatus::from_row(row, at)?;
            let refused = match status.state {
                CodeState::Redeemed => Some(RedeemError::Used),
                CodeState::Revoked => Some(RedeemError::Revoked),
                CodeState::Expired => Some(RedeemError::Expired),
                CodeState::Active => None,
            };
            if let Some(refused) = refused {
                return Ok(Err(refused));
            }
            // The row is locked (PostgreSQL) or the database is (SQLite);
            // the state check keeps this single-use even without the lock.
            let updated = gateway_code::Entity::update_many()
                .col_expr(gateway_code::Column::State, Expr::value(REDEEMED))
                .col_expr(
                    gateway_code::Column::RedeemedAtUs,
                    Expr::value(to_micros(at)),
                )
                .col_expr(gateway_code::Column::RedeemedBy, Expr::value(gateway))
                .col_expr(
                    gateway_code::Column::UpdatedAtUs,
                    Expr::value(to_micros(at)),
                )
                .filter(gateway_code::Column::Id.eq(row.id.clone()))
                .filter(gateway_code::Column::State.eq(ACTIVE))
                .exec(&txn)
                .await?;
            if updated.rows_affected != 1 {
                return Ok(Err(RedeemError::Used));
            }
            let request_row = access_request::Entity::find_by_id(row.access_request_id.clone())
                .one(&txn)
                .await?
                .ok_or_else(|| {
                    StoreError::Corrupt(format!("gateway code {} has no request", row.id))
                })?;
            let request = self.request_from_row(request_row).await?;
            let event = code_event(EventKind::CodeRedeemed, request.id, gateway, at, json!({}));
            append_event(&txn, &event).await?;
            txn.commit().await?;
            self.event_committed();
            info!(request = %request.id, gateway, "gateway code redeemed");
            return Ok(Ok(Redeemed { request }));
        }
        // A wrong code. When its selector names a live code, the guess
        // counts against it.
        let live = rows.iter().find(|row| {
            CodeStatus::from_row(row, at).is_ok_and(|status| status.state == CodeState::Active)
        });
        let Some(live) = live else {
            return Ok(Err(RedeemError::NotFound));
        };
        let options = self.code_options()?;
        let attempts = live.failed_attempts + 1;
        let revoke = attempts >= options.max_failed_attempts;
        let request: AccessRequestId = live.access_request_id.parse().map_err(|_| {
            StoreError::Corrupt(format!("gateway code {}: bad request id", live.id))
        })?;
        let mut active: gateway_code::ActiveModel = live.clone().into();
        active.failed_attempts = Set(attempts);
        active.updated_at_us = Set(to_micros(at));
        if revoke {
            active.state = Set(REVOKED.to_owned());
        }
        active.update(&txn).await?;
        let failed = code_event(
            EventKind::CodeRedemptionFailed,
            request,
            gateway,
            at,
            json!({
                "reason": format!("wrong code, attempt {attempts} of {}", options.max_failed_attempts),
            }),
        );
        append_event(&txn, &failed).await?;
        if revoke {
            forget_unsent_codes(&txn, request).await?;
            let revoked = code_event(
                EventKind::CodeRevoked,
                request,
                "system",
                at,
                json!({
                    "reason": format!("{attempts} wrong guesses"),
                    "automatic": true,
                }),
            );
            append_event(&txn, &revoked).await?;
        }
        txn.commit().await?;
        self.event_committed();
        warn!(%request, gateway, attempts, revoked = revoke, "wrong gateway code presented");
        Ok(Err(RedeemError::NotFound))
    }

    /// Revokes the request's live code.
    pub async fn revoke_code(
        &self,
        request: AccessRequestId,
        actor: &str,
        reason: Option<String>,
    ) -> Result<CodeStatus> {
        let at = now();
        let (_turn, txn) = self.begin_write().await?;
        let latest = self.latest_code_row(&txn, request).await?;
        let Some(row) = latest.filter(|row| {
            CodeStatus::from_row(row, at).is_ok_and(|status| status.state == CodeState::Active)
        }) else {
            return Err(StoreError::CodeNotActive);
        };
        let mut active: gateway_code::ActiveModel = row.into();
        active.state = Set(REVOKED.to_owned());
        active.updated_at_us = Set(to_micros(at));
        let row = active.update(&txn).await?;
        forget_unsent_codes(&txn, request).await?;
        let event = code_event(
            EventKind::CodeRevoked,
            request,
            actor,
            at,
            json!({ "reason": reason }),
        );
        append_event(&txn, &event).await?;
        txn.commit().await?;
        self.event_committed();
        CodeStatus::from_row(&row, at)
    }

    /// Revokes the request's live code, if any, and issues and emails a new
    /// one. The request must be approved and its code not redeemed.
    pub async fn reissue_code(&self, request: AccessRequestId, actor: &str) -> Result<CodeStatus> {
        let options = self.code_options()?.clone();
        let at = now();
        let (_turn, txn) = self.begin_write().await?;
        let mut select = access_request::Entity::find_by_id(request.to_string());
        if self.backend() == DbBackend::Postgres {
            // Serialises reissues of the request without FOR UPDATE, which
            // would deadlock with a mail worker whose event's foreign key
            // takes FOR KEY SHARE on this row while it holds the event
            // counter (see `decide_request_at`).
            select = select.lock(LockType::NoKeyUpdate);
        }
        let row = select.one(&txn).await?.ok_or(StoreError::NotFound)?;
        let (row, sealer) = self.open_request_row(row).await?;
        let sealer = sealer.ok_or(StoreError::Erased)?;
        let current = to_domain(row)?;
        if current.state != State::Approved {
            return Err(StoreError::RequestNotApproved);
        }
        if let Some(previous) = self.latest_code_row(&txn, request).await? {
            match CodeStatus::from_row(&previous, at)?.state {
                CodeState::Redeemed => return Err(StoreError::CodeUsed),
                CodeState::Active => {
                    let mut active: gateway_code::ActiveModel = previous.into();
                    active.state = Set(REVOKED.to_owned());
                    active.updated_at_us = Set(to_micros(at));
                    active.update(&txn).await?;
                    let event = code_event(
                        EventKind::CodeRevoked,
                        request,
                        actor,
                        at,
                        json!({
                            "reason": "replaced by a reissued code",
                        }),
                    );
                    append_event(&txn, &event).await?;
                }
                CodeState::Revoked | CodeState::Expired => {}
            }
        }
        // The previous approval email, if not sent yet, must not deliver
        // the revoked code (nor RetryEmail later).
        forget_unsent_codes(&txn, request).await?;
        issue_code(&txn, &options, &sealer, &current, actor, true, at).await?;
        let latest = self
            .latest_code_row(&txn, request)
            .await?
            .ok_or_else(|| StoreError::Corrupt("the reissued code vanished".to_owned()))?;
        txn.commit().await?;
        self.event_committed();
        info!(%request, "gateway code reissued");
        CodeStatus::from_row(&latest, at)
    }

    /// The latest code of each request in `requests` that has one.
    pub async fn code_statuses(
        &self,
        requests: &[AccessRequestId],
    ) -> Result<HashMap<AccessRequestId, CodeStatus>> {
        if requests.is_empty() {
            return Ok(HashMap::new());
        }
        let at = now();
        let rows = gateway_code::Entity::find()
            .filter(
                gateway_code::Column::AccessRequestId
                    .is_in(requests.iter().map(ToString::to_string)),
            )
            .order_by_asc(gateway_code::Column::IssuedAtUs)
            .all(&self.db)
            .await?;
        let mut latest = HashMap::new();
        for row in rows {
            if let Ok(id) = row.access_request_id.parse::<AccessRequestId>() {
                // Ascending order: the last one seen is the latest.
                latest.insert(id, CodeStatus::from_row(&row, at)?);
            }
        }
        Ok(latest)
    }

    async fn latest_code_row(
        &self,
        txn: &DatabaseTransaction,
        request: AccessRequestId,
    ) -> Result<Option<gateway_code::Model>> {
        let mut select = gateway_code::Entity::find()
            .filter(gateway_code::Column::AccessRequestId.eq(request.to_string()))
            .order_by_desc(gateway_code::Column::IssuedAtUs);
        if self.backend() == DbBackend::Postgres {
            select = select.lock_exclusive();
        }
        Ok(select.one(txn).await?)
    }
}
