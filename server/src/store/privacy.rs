//! Data subjects' rights over the store: export everything about one person,
//! erase them (tombstone their requests, then delete their key), list their
//! consents, and the retention job that erases closed requests and purges
//! sent emails after their periods. Every erasure appends a
//! `request.erased` event with no personal data.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};
use serde_json::json;
use tracing::{info, instrument};

use super::commit::{About, Writer};
use super::entities::{access_request, event, gateway_code, idempotency_key, outbox};
use super::pagination::{self, Position};
use super::rows::to_domain;
use super::{Result, Store, StoreError, now, to_micros};
use crate::crypto::SubjectId;
use crate::domain::operations;
use crate::domain::{AccessRequest, State};

/// Most requests one export holds.
pub const MAX_EXPORT_REQUESTS: u64 = 1000;
/// Most events one export holds.
pub const MAX_EXPORT_EVENTS: u64 = 10_000;
/// Requests erased per transaction.
const ERASE_BATCH: u64 = 100;

/// What one export holds.
#[derive(Debug)]
pub struct SubjectExport {
    pub document: serde_json::Value,
    pub requests: usize,
    pub truncated: bool,
}

/// What one erasure did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Erasure {
    pub erased_requests: u64,
    pub cancelled_requests: u64,
    pub dropped_emails: u64,
    /// Suppressions of the person's address removed (0 or 1).
    pub suppressions_deleted: u64,
    pub key_deleted: bool,
}

/// One consent as given with a submission.
#[derive(Debug)]
pub struct ConsentRecord {
    pub request: AccessRequest,
}

/// A page of consent records.
#[derive(Debug)]
pub struct ConsentPage {
    pub records: Vec<ConsentRecord>,
    pub next_page_token: Option<String>,
}

/// What one retention pass did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RetentionPass {
    pub erased_requests: u64,
    pub purged_emails: u64,
    pub deleted_keys: u64,
}

fn time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn micros_time(micros: i64) -> Option<String> {
    DateTime::from_timestamp_micros(micros).map(time)
}

fn request_json(request: &AccessRequest) -> serde_json::Value {
    json!({
        "name": request.id.name(),
        "state": request.state.as_str(),
        "applicant": {
            "email": request.applicant.email,
            "full_name": request.applicant.full_name,
            "organization": request.applicant.organization,
            "phone": request.applicant.phone,
        },
        "user_type": request.user_type.as_str(),
        "locale": request.locale.as_str(),
        "resource": request.resource,
        "justification": request.justification,
        "consent": consent_json(request),
        "decision": request.decision.as_ref().map(|decision| json!({
            "actor": decision.actor,
            "decide_time": time(decision.decided_at),
            "reason": decision.reason,
            "automatic": decision.automatic,
        })),
        "submitter": request.submitter,
        "create_time": time(request.created_at),
        "update_time": time(request.updated_at),
    })
}

fn consent_json(request: &AccessRequest) -> serde_json::Value {
    json!({
        "access_request": request.id.name(),
        "version": request.consent.version,
        "purposes": request.consent.purposes,
        "grant_time": time(request.created_at),
    })
}

impl Store {
    /// Everything held about the person with `email`; `None` when nothing
    /// is.
    #[instrument(skip_all, err(level = "debug"))]
    pub async fn export_subject(&self, email: &str) -> Result<Option<SubjectExport>> {
        let vault = self.vault()?;
        let index = vault.blind_index(email);
        let rows = access_request::Entity::find()
            .filter(access_request::Column::ApplicantIndex.eq(index))
            .order_by_asc(access_request::Column::CreatedAtUs)
            .order_by_asc(access_request::Column::Id)
            .limit(MAX_EXPORT_REQUESTS + 1)
            .all(&self.db)
            .await?;
        if rows.is_empty() {
            return Ok(None);
        }
        let mut truncated = rows.len() as u64 > MAX_EXPORT_REQUESTS;
        let mut requests = Vec::with_capacity(rows.len());
        for row in rows.into_iter().take(MAX_EXPORT_REQUESTS as usize) {
            requests.push(self.request_from_row(row).await?);
        }
        let ids: Vec<String> = requests.iter().map(|r| r.id.to_string()).collect();

        let event_rows = event::Entity::find()
            .filter(event::Column::AccessRequestId.is_in(ids.clone()))
            .order_by_asc(event::Column::Seq)
            .limit(MAX_EXPORT_EVENTS + 1)
            .all(&self.db)
            .await?;
        truncated |= event_rows.len() as u64 > MAX_EXPORT_EVENTS;
        let mut events = Vec::with_capacity(event_rows.len());
        for row in event_rows.into_iter().take(MAX_EXPORT_EVENTS as usize) {
            let data: serde_json::Value = serde_json::from_str(
                &self
                    .open_event_data(&row.access_request_id, row.data)
                    .await?,
            )
            .unwrap_or_default();
            events.push(json!({
                "sequence": row.seq,
                "type": row.event_type,
                "access_request": format!("accessRequests/{}", row.access_request_id),
                "actor": row.actor,
                "state": row.state,
                "occur_time": micros_time(row.occurred_at_us),
                "data": data,
            }));
        }

        // Emails to this person; those to administrators hold their
        // addresses, which are not this person's data.
        let normalised = email.trim().to_lowercase();
        let email_rows = outbox::Entity::find()
            .filter(outbox::Column::AccessRequestId.is_in(ids))
            .order_by_asc(outbox::Column::CreatedAtUs)
            .all(&self.db)
            .await?;
        let mut emails = Vec::new();
        for row in email_rows {
            let Some((recipient, data)) = self.open_email(&row).await? else {
                continue;
            };
            if recipient.trim().to_lowercase() != normalised {
                continue;
            }
            let mut data = data;
            if let Some(fields) = data.as_object_mut() {
                fields.remove(crate::crypto::codes::SEALED_CODE_FIELD);
            }
            emails.push(json!({
                "name": format!("emails/{}", row.id),
                "access_request": format!("accessRequests/{}", row.access_request_id),
                "template": row.template,
                "locale": row.locale,
                "recipient": recipient,
                "state": row.state,
                "attempts": row.attempts,
                "message_id": row.message_id,
                "create_time": micros_time(row.created_at_us),
                "send_time": row.sent_at_us.and_then(micros_time),
                "data": data,
            }));
        }
        let document = json!({
            "subject": { "email": email.trim() },
            "exported_at": time(now()),
            "access_requests": requests.iter().map(request_json).collect::<Vec<_>>(),
            "consent_records": requests.iter().map(consent_json).collect::<Vec<_>>(),
            "events": events,
            "emails": emails,
            "truncated": truncated,
        });
        info!(
            requests = requests.len(),
            events = document["events"].as_array().map_or(0, Vec::len),
            "subject data exported"
        );
        Ok(Some(SubjectExport {
            document,
            requests: requests.len(),
            truncated,
        }))
    }

    /// Erases the person with `email`: every request of theirs becomes an
    /// anonymous record (PENDING ones cancelled first, active codes
    /// revoked, unsent emails dropped), then their key is deleted.
    /// Idempotent.
    #[instrument(skip_all, fields(actor = %actor), err(level = "debug"))]
    pub async fn erase_subject(&self, email: &str, actor: &str, reason: &str) -> Result<Erasure> {
        let vault = self.vault()?;
        let index = vault.blind_index(email);
        let subject = vault.find_subject(email).await?.map(|subject| subject.id);
        let mut erasure = Erasure::default();
        // Rows first, the key last: a crash in between leaves the key, and
        // running the erasure again finishes it.
        let mut subjects: Vec<SubjectId> = subject.into_iter().collect();
        let mut stalled = 0;
        while stalled < 5 {
            let rows = access_request::Entity::find()
                .filter(access_request::Column::ApplicantIndex.eq(index.clone()))
                .filter(access_request::Column::ErasedAtUs.is_null())
                .limit(ERASE_BATCH)
                .all(&self.db)
                .await?;
            if rows.is_empty() {
                break;
            }
            let mut writer = self.writer().await?;
            let at = now();
            let mut progressed = false;
            for row in rows {
                if let Some(id) = row.subject_id.as_deref().and_then(|id| id.parse().ok())
                    && !subjects.contains(&id)
                {
                    subjects.push(id);
                }
                if let Some(done) =
                    erase_request(&mut writer, row, actor, false, reason, at).await?
                {
                    progressed = true;
                    erasure.erased_requests += 1;
                    erasure.cancelled_requests += u64::from(done.cancelled);
                    erasure.dropped_emails += done.dropped_emails;
                }
            }
            writer.commit().await?;
            if progressed {
                stalled = 0;
            } else {
                // Every row changed under us (a concurrent decision): they
                // are read again, a few times at most; the key goes anyway.
                stalled += 1;
                tokio::task::yield_now().await;
            }
        }
        {
            let (_turn, txn) = self.begin_write().await?;
            erasure.suppressions_deleted =
                super::delivery::delete_suppressions_of(&txn, &index).await?;
            txn.commit().await?;
        }
        for subject in subjects {
            erasure.key_deleted |= vault.erase(subject).await?;
        }
        info!(
            requests = erasure.erased_requests,
            cancelled = erasure.cancelled_requests,
            dropped_emails = erasure.dropped_emails,
            suppressions = erasure.suppressions_deleted,
            key_deleted = erasure.key_deleted,
            "data subject erased"
        );
        Ok(erasure)
    }

    /// The consents of the person with `email`, newest first; tokens are
    /// bound to the person and `caller`.
    #[instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn list_consents(
        &self,
        caller: &str,
        email: &str,
        page_size: u32,
        page_token: Option<&str>,
    ) -> Result<ConsentPage> {
        let index = self.vault()?.blind_index(email);
        let query = pagination::fingerprint_text(&format!("consents|{caller}|{index}"));
        let after = page_token
            .map(|token| pagination::decode::<Position>(&self.page_token_key, token, &query))
            .transpose()?;
        let select =
            access_request::Entity::find().filter(access_request::Column::ApplicantIndex.eq(index));
        let (rows, next_page_token) = pagination::keyset_page(
            &self.db,
            &self.page_token_key,
            select,
            (
                access_request::Column::CreatedAtUs,
                access_request::Column::Id,
            ),
            pagination::Order::NewestFirst,
            after.as_ref(),
            page_size,
            query,
            |row| (row.created_at_us, row.id.clone()),
        )
        .await?;
        let mut records = Vec::with_capacity(rows.len());
        for row in rows {
            // The consent columns are not sealed; the request is opened
            // only to build the domain value.
            records.push(ConsentRecord {
                request: to_domain(row)?,
            });
        }
        Ok(ConsentPage {
            records,
            next_page_token,
        })
    }

    /// One pass of the retention job at `at`: requests closed (decided or
    /// expired) more than `closed_for` ago are erased, and the recipient and
    /// data of emails sent more than `sent_for` ago purged; a person left
    /// with no request that holds their data loses their key. `None`
    /// periods keep data forever. Safe with several replicas: each change
    /// is conditional on the row not being erased or purged yet.
    #[instrument(skip_all, err(level = "debug"))]
    pub async fn apply_retention(
        &self,
        at: DateTime<Utc>,
        closed_for: Option<chrono::Duration>,
        sent_for: Option<chrono::Duration>,
    ) -> Result<RetentionPass> {
        let mut pass = RetentionPass::default();
        if let Some(sent_for) = sent_for {
            let cutoff = to_micros(at - sent_for);
            let purged = outbox::Entity::update_many()
                .col_expr(outbox::Column::Recipient, Expr::value(""))
                .col_expr(outbox::Column::Data, Expr::value("{}"))
                .col_expr(outbox::Column::PurgedAtUs, Expr::value(to_micros(at)))
                .filter(outbox::Column::State.eq(outbox::SENT))
                .filter(outbox::Column::SentAtUs.lte(cutoff))
                .filter(outbox::Column::PurgedAtUs.is_null())
                .exec(&self.db)
                .await?;
            pass.purged_emails = purged.rows_affected;
        }
        let Some(closed_for) = closed_for else {
            return Ok(pass);
        };
        let cutoff = to_micros(at - closed_for);
        let mut subjects: Vec<String> = Vec::new();
        loop {
            let rows = access_request::Entity::find()
                .filter(access_request::Column::ErasedAtUs.is_null())
                .filter(access_request::Column::State.ne(State::Pending.as_str()))
                .filter(access_request::Column::DecidedAtUs.lte(cutoff))
                .limit(ERASE_BATCH)
                .all(&self.db)
                .await?;
            if rows.is_empty() {
                break;
            }
            let mut writer = self.writer().await?;
            let mut progressed = false;
            for row in rows {
                let subject = row.subject_id.clone();
                let reason = "the retention period of closed requests passed";
                if erase_request(&mut writer, row, "system", true, reason, at)
                    .await?
                    .is_some()
                {
                    progressed = true;
                    pass.erased_requests += 1;
                    subjects.extend(subject);
                }
            }
            writer.commit().await?;
            if !progressed {
                break;
            }
        }
        // A person none of whose requests hold data any more: their key
        // (still opening old event reasons) goes too.
        subjects.sort();
        subjects.dedup();
        let vault = self.vault()?;
        for subject in subjects {
            let remaining = access_request::Entity::find()
                .filter(access_request::Column::SubjectId.eq(subject.clone()))
                .one(&self.db)
                .await?;
            if remaining.is_none()
                && let Ok(id) = subject.parse()
                && vault.erase(id).await?
            {
                pass.deleted_keys += 1;
            }
        }
        if pass != RetentionPass::default() {
            info!(
                requests = pass.erased_requests,
                emails = pass.purged_emails,
                keys = pass.deleted_keys,
                "retention applied"
            );
        }
        Ok(pass)
    }
}

/// What erasing one request did.
struct ErasedRequest {
    cancelled: bool,
    dropped_emails: u64,
}

/// Erases one request with `writer`: cancels it if PENDING, revokes its active
/// code, drops its unsent emails and purges the others, blanks its personal
/// columns, forgets its idempotency key, and appends the events. `None`
/// when the row changed or was erased meanwhile (nothing done).
async fn erase_request(
    writer: &mut Writer,
    row: access_request::Model,
    actor: &str,
    automatic: bool,
    reason: &str,
    at: DateTime<Utc>,
) -> Result<Option<ErasedRequest>> {
    use access_request::Column;
    let id = row.id.clone();
    let request: crate::domain::AccessRequestId = id
        .parse()
        .map_err(|_| StoreError::Corrupt(format!("access request {id}: bad id")))?;
    let pending = row.state == State::Pending.as_str();
    let state = if pending {
        State::Cancelled
    } else {
        State::parse(&row.state)
            .ok_or_else(|| StoreError::Corrupt(format!("access request {id}: unknown state")))?
    };
    let mut update = access_request::Entity::update_many()
        .col_expr(Column::ApplicantEmail, Expr::value(""))
        .col_expr(Column::ApplicantFullName, Expr::value(""))
        .col_expr(Column::ApplicantOrganization, Expr::value(""))
        .col_expr(Column::ApplicantPhone, Expr::value(Option::<String>::None))
        .col_expr(Column::Justification, Expr::value(""))
        .col_expr(Column::DecisionReason, Expr::value(Option::<String>::None))
        .col_expr(
            Column::PolicyExplanation,
            Expr::value(Option::<String>::None),
        )
        .col_expr(Column::SubjectId, Expr::value(Option::<String>::None))
        // The caller's idempotency key may name the person too.
        .col_expr(Column::RequestId, Expr::value(Option::<String>::None))
        .col_expr(Column::ApplicantIndex, Expr::value(Option::<String>::None))
        .col_expr(Column::ErasedAtUs, Expr::value(Some(to_micros(at))))
        .col_expr(Column::Version, Expr::value(row.version + 1))
        .col_expr(Column::UpdatedAtUs, Expr::value(to_micros(at)));
    if pending {
        update = update
            .col_expr(Column::State, Expr::value(State::Cancelled.as_str()))
            .col_expr(Column::DecidedBy, Expr::value(Some(actor.to_owned())))
            .col_expr(Column::DecidedAtUs, Expr::value(Some(to_micros(at))))
            .col_expr(Column::DecisionAutomatic, Expr::value(automatic));
    }
    let updated = update
        .filter(Column::Id.eq(id.clone()))
        .filter(Column::Version.eq(row.version))
        .filter(Column::ErasedAtUs.is_null())
        .exec(writer.txn())
        .await?;
    if updated.rows_affected != 1 {
        return Ok(None);
    }
    let (code_revoked, dropped_emails) = forget_codes_and_emails(writer.txn(), &id, at).await?;
    let state_before = if pending { State::Pending } else { state };
    let effects = operations::erasure_effects(
        request,
        state_before,
        code_revoked,
        actor,
        reason,
        automatic,
        at,
    );
    writer
        .apply_effects(About::Id(request), &effects, None)
        .await?;
    Ok(Some(ErasedRequest {
        cancelled: pending,
        dropped_emails,
    }))
}

/// Revokes the active code of erased request `id`, drops its unsent
/// emails, purges the others and forgets its idempotency key: whether a
/// code was revoked, and how many emails were dropped.
async fn forget_codes_and_emails(
    txn: &DatabaseTransaction,
    id: &str,
    at: DateTime<Utc>,
) -> Result<(bool, u64)> {
    let revoked = gateway_code::Entity::update_many()
        .col_expr(
            gateway_code::Column::State,
            Expr::value(gateway_code::REVOKED),
        )
        .col_expr(
            gateway_code::Column::UpdatedAtUs,
            Expr::value(to_micros(at)),
        )
        .filter(gateway_code::Column::AccessRequestId.eq(id))
        .filter(gateway_code::Column::State.eq(gateway_code::ACTIVE))
        .exec(txn)
        .await?;
    let dropped = outbox::Entity::update_many()
        .col_expr(outbox::Column::State, Expr::value(outbox::DEAD))
        .col_expr(
            outbox::Column::LastError,
            Expr::value(Some("the applicant's personal data was erased".to_owned())),
        )
        .col_expr(
            outbox::Column::LeaseToken,
            Expr::value(Option::<String>::None),
        )
        .filter(outbox::Column::AccessRequestId.eq(id))
        .filter(outbox::Column::State.eq(outbox::PENDING))
        .exec(txn)
        .await?;
    outbox::Entity::update_many()
        .col_expr(outbox::Column::Recipient, Expr::value(""))
        .col_expr(outbox::Column::Data, Expr::value("{}"))
        .col_expr(outbox::Column::PurgedAtUs, Expr::value(Some(to_micros(at))))
        .col_expr(outbox::Column::UpdatedAtUs, Expr::value(to_micros(at)))
        .filter(outbox::Column::AccessRequestId.eq(id))
        .filter(outbox::Column::PurgedAtUs.is_null())
        .exec(txn)
        .await?;
    idempotency_key::Entity::delete_many()
        .filter(idempotency_key::Column::AccessRequestId.eq(id))
        .exec(txn)
        .await?;
    Ok((revoked.rows_affected > 0, dropped.rows_affected))
}
