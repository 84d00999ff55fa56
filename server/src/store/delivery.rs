//! What providers report after sending: delivery reports applied to their
//! email (its delivery state and an event on the log, once per provider
//! event id however often it is replayed), and the suppressed addresses a
//! hard bounce or a complaint leaves, kept by blind index only.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::OnConflict;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect, Set};
use serde_json::json;
use tracing::{info, instrument};
use uuid::Uuid;

use super::commit::About;
use super::entities::{access_request, outbox, suppression, webhook_event};
use super::{Result, Store, StoreError, from_micros, now, to_micros};
use crate::domain::codes::event_effect;
use crate::domain::mail::{Delivery, delivery_event, redact_addresses};
use crate::domain::{AccessRequestId, EventKind, State};

/// How long a provider event's id is remembered, so that its replays are
/// recognised.
pub const WEBHOOK_REPLAY_WINDOW: chrono::Duration = chrono::Duration::days(7);

/// A provider's report about one email, verified and parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryReport {
    /// `resend` or `sendgrid`.
    pub provider: &'static str,
    /// The provider's id of the event: a replay carries the same.
    pub event_id: String,
    /// The outbox id the email carried (Resend tag, SendGrid custom arg).
    pub email: Option<String>,
    /// The provider's id of the email.
    pub provider_message_id: Option<String>,
    pub delivery: Delivery,
    pub occurred_at: DateTime<Utc>,
    /// The provider's words (a bounce's reason).
    pub detail: Option<String>,
}

/// What applying a report did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    /// Recorded on the email, with its event; `suppressed` when it
    /// suppressed the address.
    Recorded {
        request: AccessRequestId,
        suppressed: bool,
    },
    /// This event was applied before: nothing changed.
    Replayed,
    /// No email of this server matches: acknowledged, nothing changed.
    Unmatched,
}

/// A suppressed address as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SuppressionRecord {
    pub id: String,
    /// Opened from the email that caused it; [`super::ERASED`] once gone.
    pub recipient: String,
    /// `hard_bounce` or `complaint`.
    pub reason: String,
    pub provider: String,
    pub detail: Option<String>,
    pub email: String,
    pub created_at: DateTime<Utc>,
}

/// A page of suppressions.
#[derive(Clone, Debug)]
pub struct SuppressionPage {
    pub suppressions: Vec<SuppressionRecord>,
    pub next_page_token: Option<String>,
}

impl Store {
    /// Applies a provider's report: once per event id (a replay changes
    /// nothing), to the email it names (by outbox id, else by the
    /// provider's message id). The email's delivery state moves forward
    /// only (see [`Delivery::replaces`]); every report appends its event,
    /// whose actor is `provider:NAME`; a hard bounce or a complaint
    /// suppresses the address.
    #[instrument(skip_all, fields(provider = report.provider, delivery = report.delivery.report()), err(level = "debug"))]
    pub async fn apply_delivery(&self, report: &DeliveryReport) -> Result<Applied> {
        let at = now();
        let mut writer = self.writer().await?;
        let receipt = webhook_event::ActiveModel {
            provider: Set(report.provider.to_owned()),
            event_id: Set(report.event_id.clone()),
            received_at_us: Set(to_micros(at)),
        };
        let inserted = webhook_event::Entity::insert(receipt)
            .on_conflict(
                OnConflict::columns([
                    webhook_event::Column::Provider,
                    webhook_event::Column::EventId,
                ])
                .do_nothing()
                .to_owned(),
            )
            .exec_without_returning(writer.txn())
            .await?;
        if inserted == 0 {
            writer.rollback().await?;
            return Ok(Applied::Replayed);
        }
        let lock = self.backend() == sea_orm::DbBackend::Postgres;
        let Some(row) = reported_email(writer.txn(), report, lock).await? else {
            writer.commit().await?;
            return Ok(Applied::Unmatched);
        };
        let request: AccessRequestId = row
            .access_request_id
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("outbox {}: bad request id", row.id)))?;
        let request_state = access_request::Entity::find_by_id(row.access_request_id.clone())
            .one(writer.txn())
            .await?
            .and_then(|request| State::parse(&request.state))
            .ok_or_else(|| StoreError::Corrupt(format!("outbox {} has no request", row.id)))?;
        let delivery = report.delivery;
        let detail = report.detail.as_deref().map(redact_addresses);
        if delivery.replaces(row.delivery.as_deref()) {
            outbox::Entity::update_many()
                .col_expr(
                    outbox::Column::Delivery,
                    sea_orm::sea_query::Expr::value(Some(delivery.as_str())),
                )
                .col_expr(
                    outbox::Column::DeliveryAtUs,
                    sea_orm::sea_query::Expr::value(Some(to_micros(report.occurred_at))),
                )
                .col_expr(
                    outbox::Column::DeliveryDetail,
                    sea_orm::sea_query::Expr::value(detail.clone()),
                )
                .col_expr(
                    outbox::Column::UpdatedAtUs,
                    sea_orm::sea_query::Expr::value(to_micros(at)),
                )
                .filter(outbox::Column::Id.eq(row.id.clone()))
                .exec(writer.txn())
                .await?;
        }
        let mut data = json!({
            "template": row.template,
            "message_id": row.message_id,
            "provider": report.provider,
        });
        if let Delivery::Bounced { hard } = delivery {
            data["hard"] = hard.into();
        }
        let mut event = delivery_event(delivery.event_kind(), request, request_state, data, at);
        event.actor = format!("provider:{}", report.provider);
        writer
            .apply_effects(About::Id(request), &[event_effect(event)], None)
            .await?;
        let suppressed = match delivery.suppresses() {
            Some(reason) => {
                self.suppress(writer.txn(), &row, report.provider, reason, detail, at)
                    .await?
            }
            None => false,
        };
        writer.commit().await?;
        if suppressed {
            info!(email = %row.id, reason = delivery.suppresses(), "address suppressed");
        }
        Ok(Applied::Recorded {
            request,
            suppressed,
        })
    }

    /// Suppresses the recipient of `row` (unless erased), in `txn`; `true`
    /// when the address was not suppressed already.
    async fn suppress(
        &self,
        txn: &sea_orm::DatabaseTransaction,
        row: &outbox::Model,
        provider: &str,
        reason: &str,
        detail: Option<String>,
        at: DateTime<Utc>,
    ) -> Result<bool> {
        let Some((recipient, _)) = self.open_email(row).await? else {
            return Ok(false);
        };
        let suppression = suppression::ActiveModel {
            id: Set(Uuid::now_v7().to_string()),
            address_index: Set(self.vault()?.blind_index(&recipient)),
            reason: Set(reason.to_owned()),
            provider: Set(provider.to_owned()),
            detail: Set(detail),
            email_id: Set(row.id.clone()),
            created_at_us: Set(to_micros(at)),
        };
        let inserted = suppression::Entity::insert(suppression)
            .on_conflict(
                OnConflict::column(suppression::Column::AddressIndex)
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(txn)
            .await?;
        Ok(inserted > 0)
    }

    /// The suppressions of `recipients` that exist, by lowercased address,
    /// each with the reason an email to it is not sent. Empty without a key
    /// store (nothing can be suppressed then).
    pub(super) async fn suppressions_of<'a>(
        &self,
        recipients: impl Iterator<Item = &'a String>,
    ) -> Result<HashMap<String, String>> {
        let Some(vault) = &self.vault else {
            return Ok(HashMap::new());
        };
        let by_index: HashMap<String, String> = recipients
            .map(|recipient| (vault.blind_index(recipient), recipient.to_lowercase()))
            .collect();
        if by_index.is_empty() {
            return Ok(HashMap::new());
        }
        let rows = suppression::Entity::find()
            .filter(suppression::Column::AddressIndex.is_in(by_index.keys().cloned()))
            .all(&self.db)
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|row| {
                let address = by_index.get(&row.address_index)?.clone();
                let why = match row.reason.as_str() {
                    "complaint" => "a spam complaint",
                    _ => "a hard bounce",
                };
                Some((
                    address,
                    format!(
                        "the address is suppressed after {why} reported by {}",
                        row.provider
                    ),
                ))
            })
            .collect())
    }

    /// A page of suppressions, newest first, only `address`'s when given;
    /// tokens are bound to the filter and `caller`.
    #[instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn list_suppressions(
        &self,
        caller: &str,
        address: Option<&str>,
        page_size: u32,
        page_token: Option<&str>,
    ) -> Result<SuppressionPage> {
        use super::pagination::{self, Position};
        let index = address
            .map(|address| Ok::<_, StoreError>(self.vault()?.blind_index(address)))
            .transpose()?;
        let query = pagination::fingerprint_text(&format!(
            "suppressions|{caller}|{}",
            index.as_deref().unwrap_or("")
        ));
        let after = page_token
            .map(|token| pagination::decode::<Position>(&self.page_token_key, token, &query))
            .transpose()?;
        let mut select = suppression::Entity::find();
        if let Some(index) = index {
            select = select.filter(suppression::Column::AddressIndex.eq(index));
        }
        let (rows, next_page_token) = pagination::keyset_page(
            &self.db,
            &self.page_token_key,
            select,
            (suppression::Column::CreatedAtUs, suppression::Column::Id),
            pagination::Order::NewestFirst,
            after.as_ref(),
            page_size,
            query,
            |row| (row.created_at_us, row.id.clone()),
        )
        .await?;
        let mut suppressions = Vec::with_capacity(rows.len());
        for row in rows {
            let email = outbox::Entity::find_by_id(row.email_id.clone())
                .one(&self.db)
                .await?;
            let recipient = match email {
                Some(email) => self.open_email(&email).await?.map(|(to, _)| to),
                None => None,
            };
            suppressions.push(SuppressionRecord {
                recipient: recipient.unwrap_or_else(|| super::ERASED.to_owned()),
                created_at: from_micros(row.created_at_us)?,
                id: row.id,
                reason: row.reason,
                provider: row.provider,
                detail: row.detail,
                email: row.email_id,
            });
        }
        Ok(SuppressionPage {
            suppressions,
            next_page_token,
        })
    }

    /// Forgets the provider events received before `before`: a replay
    /// older than that would be applied again. Providers retry a delivery
    /// for a few days at most (Resend's Svix about 3, SendGrid 3), so the
    /// scheduler keeps [`WEBHOOK_REPLAY_WINDOW`]. Returns how many went.
    #[instrument(skip_all, err(level = "debug"))]
    pub async fn prune_webhook_events(&self, before: DateTime<Utc>) -> Result<u64> {
        let (_turn, txn) = self.begin_write().await?;
        let deleted = webhook_event::Entity::delete_many()
            .filter(webhook_event::Column::ReceivedAtUs.lt(to_micros(before)))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(deleted.rows_affected)
    }

    /// Lifts a suppression: later emails to the address are sent again. An
    /// `email.suppression_lifted` event by `actor` records it on the request
    /// of the email that caused it.
    #[instrument(skip_all, fields(suppression = %id), err(level = "debug"))]
    pub async fn delete_suppression(&self, id: Uuid, actor: &str) -> Result<()> {
        let at = now();
        let mut writer = self.writer().await?;
        let suppression = suppression::Entity::find_by_id(id.to_string())
            .one(writer.txn())
            .await?
            .ok_or(StoreError::SuppressionNotFound)?;
        let deleted = suppression::Entity::delete_by_id(id.to_string())
            .exec(writer.txn())
            .await?;
        if deleted.rows_affected == 0 {
            return Err(StoreError::SuppressionNotFound);
        }
        if let Some(email) = outbox::Entity::find_by_id(suppression.email_id.clone())
            .one(writer.txn())
            .await?
        {
            let request: AccessRequestId = email
                .access_request_id
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("outbox {}: bad request id", email.id)))?;
            let state = super::outbox::request_state(writer.txn(), &email).await?;
            let data = json!({
                "template": email.template,
                "message_id": email.message_id,
                "provider": suppression.provider,
                "reason": suppression.reason,
            });
            let mut event = delivery_event(EventKind::SuppressionLifted, request, state, data, at);
            event.actor = actor.to_owned();
            writer
                .apply_effects(About::Id(request), &[event_effect(event)], None)
                .await?;
        }
        writer.commit().await?;
        info!(actor, "suppression lifted");
        Ok(())
    }
}

/// The email a report is about: by the outbox id it carried, else by the
/// provider's id of it; locked on PostgreSQL (`lock`), so that two reports
/// about one email applied at once cannot move its delivery backwards.
async fn reported_email(
    txn: &sea_orm::DatabaseTransaction,
    report: &DeliveryReport,
    lock: bool,
) -> Result<Option<outbox::Model>> {
    let select = outbox::Entity::find();
    let select = match (&report.email, &report.provider_message_id) {
        (Some(id), _) if Uuid::parse_str(id).is_ok() => {
            select.filter(outbox::Column::Id.eq(id.clone()))
        }
        (_, Some(message)) => select
            .filter(outbox::Column::ProviderMessageId.eq(message.clone()))
            .filter(outbox::Column::Provider.starts_with(report.provider)),
        _ => return Ok(None),
    };
    let select = if lock {
        select.lock_exclusive()
    } else {
        select
    };
    Ok(select.one(txn).await?)
}

/// Deletes the suppression of the address with blind index `index`, if
/// any, in `txn`: erasing a person removes theirs.
pub(super) async fn delete_suppressions_of(
    txn: &sea_orm::DatabaseTransaction,
    index: &str,
) -> Result<u64> {
    Ok(suppression::Entity::delete_many()
        .filter(suppression::Column::AddressIndex.eq(index))
        .exec(txn)
        .await?
        .rows_affected)
}
