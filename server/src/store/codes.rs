//! Gateway codes in the database: their statuses, and the transactions of
//! redeeming, revoking and reissuing one. The rules are the domain's
//! (`domain::codes`); issuing a code is the writer's (`commit.rs`), in the
//! approval's transaction. A redemption runs under a row lock (PostgreSQL)
//! or the write lock (SQLite), so a code is redeemed once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, DatabaseTransaction, DbBackend, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};
use tracing::{info, instrument, warn};

use super::commit::About;
use super::entities::gateway_code::{ACTIVE, EXPIRED, REDEEMED, REVOKED};
use super::entities::{access_request, gateway_code};
use super::rows::to_domain;
use super::{Result, Store, StoreError, from_micros, now};
use crate::crypto::KeyRing;
use crate::domain::codes::{self, CodePolicy};
use crate::domain::{
    AccessRequest, AccessRequestId, CodeState, CodeStatus, DomainError, GatewayCode, RedeemError,
    Redeemer, State,
};

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

/// The code settings a store holds: the sealing key and the domain's
/// policy.
#[derive(Debug)]
pub(super) struct CodeSettings {
    pub secret: KeyRing,
    pub policy: CodePolicy,
}

impl From<CodeOptions> for CodeSettings {
    fn from(options: CodeOptions) -> Self {
        CodeSettings {
            secret: options.secret,
            policy: CodePolicy {
                validity: options.validity,
                validity_by_resource: options.validity_by_resource,
                max_failed_attempts: options.max_failed_attempts,
            },
        }
    }
}

/// A successful redemption.
#[derive(Clone, Debug)]
pub struct Redeemed {
    pub request: AccessRequest,
}

/// The status of a stored code at `at`.
fn status_from_row(row: &gateway_code::Model, at: DateTime<Utc>) -> Result<CodeStatus> {
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
        id: row.id.clone(),
        state,
        issued_at: from_micros(row.issued_at_us)?,
        expires_at,
        redeemed_at: row.redeemed_at_us.map(from_micros).transpose()?,
        redeemed_by: row.redeemed_by.clone(),
        failed_attempts: row.failed_attempts,
    })
}

impl Store {
    /// The code settings; issuing or reissuing without them is a
    /// configuration error reported as such.
    pub(super) fn code_settings(&self) -> Result<&Arc<CodeSettings>> {
        self.codes.as_ref().ok_or_else(|| {
            StoreError::Corrupt("no secret key configured: gateway codes cannot be issued".into())
        })
    }

    /// Redeems `code` for `gateway`. A wrong guess whose selector matches a
    /// live code counts against that code and is committed even though the
    /// call fails; the last allowed one revokes it. A right code for a
    /// resource the gateway is not bound to changes nothing.
    #[instrument(skip_all, fields(gateway = %gateway.name), err(level = "debug"))]
    pub async fn redeem_code(
        &self,
        code: &GatewayCode,
        gateway: Redeemer<'_>,
    ) -> Result<std::result::Result<Redeemed, RedeemError>> {
        let at = now();
        let mut writer = self.writer().await?;
        let mut select = gateway_code::Entity::find()
            .filter(gateway_code::Column::Selector.eq(code.selector()))
            .order_by_desc(gateway_code::Column::IssuedAtUs);
        if self.backend() == DbBackend::Postgres {
            select = select.lock_exclusive();
        }
        let rows = select.all(writer.txn()).await?;
        if let Some(row) = rows.iter().find(|row| code.matches(&row.digest)) {
            let status = status_from_row(row, at)?;
            let request_id = code_request_id(row)?;
            let request_row = access_request::Entity::find_by_id(row.access_request_id.clone())
                .one(writer.txn())
                .await?
                .ok_or_else(|| {
                    StoreError::Corrupt(format!("gateway code {} has no request", row.id))
                })?;
            let effects =
                match codes::redeem(request_id, &request_row.resource, &status, gateway, at) {
                    Ok(effects) => effects,
                    Err(refused) => {
                        if let RedeemError::ResourceNotAllowed { resource } = &refused {
                            warn!(request = %request_id, gateway = gateway.name, resource,
                                "gateway code presented by a gateway bound to other resources");
                        }
                        return Ok(Err(refused));
                    }
                };
            let applied = writer
                .apply_effects(About::Id(request_id), &effects, None)
                .await?;
            if applied.is_none() {
                return Ok(Err(RedeemError::Used));
            }
            let request = self.request_from_row(request_row).await?;
            writer.commit().await?;
            info!(request = %request.id, gateway = gateway.name, "gateway code redeemed");
            return Ok(Ok(Redeemed { request }));
        }
        // A wrong code. When its selector names a live code, the guess
        // counts against it.
        let live = rows.iter().find_map(|row| {
            status_from_row(row, at)
                .ok()
                .filter(|status| status.state == CodeState::Active)
                .map(|status| (row, status))
        });
        let Some((live_row, live)) = live else {
            return Ok(Err(RedeemError::NotFound));
        };
        let request = code_request_id(live_row)?;
        let max_failed_attempts = self.code_settings()?.policy.max_failed_attempts;
        let (revoked, effects) =
            codes::wrong_guess(request, &live, gateway.name, max_failed_attempts, at);
        writer
            .apply_effects(About::Id(request), &effects, None)
            .await?;
        writer.commit().await?;
        let attempts = live.failed_attempts + 1;
        warn!(%request, gateway = gateway.name, attempts, revoked, "wrong gateway code presented");
        Ok(Err(RedeemError::NotFound))
    }

    /// Revokes the request's live code.
    #[instrument(skip_all, fields(request = %request, actor = %actor), err(level = "debug"))]
    pub async fn revoke_code(
        &self,
        request: AccessRequestId,
        actor: &str,
        reason: Option<String>,
    ) -> Result<CodeStatus> {
        let at = now();
        let mut writer = self.writer().await?;
        let latest = self.latest_code(writer.txn(), request, at).await?;
        let (revoked, effects) = codes::revoke(request, latest.as_ref(), actor, reason, at)?;
        writer
            .apply_effects(About::Id(request), &effects, None)
            .await?;
        writer.commit().await?;
        info!(%request, "gateway code revoked");
        Ok(revoked)
    }

    /// Revokes the request's live code, if any, and issues and emails a new
    /// one. The request must be approved and its code not redeemed.
    #[instrument(skip_all, fields(request = %request, actor = %actor), err(level = "debug"))]
    pub async fn reissue_code(&self, request: AccessRequestId, actor: &str) -> Result<CodeStatus> {
        self.code_settings()?;
        let at = now();
        let mut writer = self.writer().await?;
        // Serialises reissues of the request (see `lock_request_row`).
        let row = self.lock_request_row(writer.txn(), request).await?;
        let (row, sealer) = self.open_request_row(row).await?;
        let sealer = sealer.ok_or(DomainError::Erased)?;
        let current = to_domain(row)?;
        let latest = self.latest_code(writer.txn(), request, at).await?;
        let effects = codes::reissue(&current, latest.as_ref(), actor, at)?;
        let applied = writer
            .apply_effects(About::Request(&current), &effects, Some(&sealer))
            .await?
            .ok_or_else(|| StoreError::Corrupt("the reissued code's guard failed".into()))?;
        writer.commit().await?;
        info!(%request, "gateway code reissued");
        applied
            .issued
            .map(|(_, status)| status)
            .ok_or_else(|| StoreError::Corrupt("a reissue issued no code".to_owned()))
    }

    /// The latest code of each request in `requests` that has one.
    #[instrument(level = "debug", skip_all, err(level = "debug"))]
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
                latest.insert(id, status_from_row(&row, at)?);
            }
        }
        Ok(latest)
    }

    /// The latest code's status of `request`, when it is approved.
    pub(super) async fn code_status_of(
        &self,
        request: &AccessRequest,
    ) -> Result<Option<CodeStatus>> {
        if request.state != State::Approved {
            return Ok(None);
        }
        Ok(self.code_statuses(&[request.id]).await?.remove(&request.id))
    }

    /// The status of the request's latest code, locked (PostgreSQL) until
    /// the transaction ends.
    async fn latest_code(
        &self,
        txn: &DatabaseTransaction,
        request: AccessRequestId,
        at: DateTime<Utc>,
    ) -> Result<Option<CodeStatus>> {
        let mut select = gateway_code::Entity::find()
            .filter(gateway_code::Column::AccessRequestId.eq(request.to_string()))
            .order_by_desc(gateway_code::Column::IssuedAtUs);
        if self.backend() == DbBackend::Postgres {
            select = select.lock_exclusive();
        }
        select
            .one(txn)
            .await?
            .map(|row| status_from_row(&row, at))
            .transpose()
    }
}

/// The request a stored code belongs to.
fn code_request_id(row: &gateway_code::Model) -> Result<AccessRequestId> {
    row.access_request_id
        .parse()
        .map_err(|_| StoreError::Corrupt(format!("gateway code {}: bad request id", row.id)))
}
