//! Personal data at rest: the columns of `access_requests` and `outbox` and
//! the `reason` of request events are sealed with the data subject's key
//! (see [`crate::crypto`]) before they are written, and opened after they
//! are read. Each value is bound to its place (table, column, row), so a
//! value copied elsewhere does not open. A value whose subject key was
//! erased opens as nothing: the row reads as an anonymous tombstone.
//!
//! Rows written before encryption existed hold clear values (no `e1.`
//! prefix); they are read as they are.

use std::sync::Arc;
use tracing::instrument;

use sea_orm::{ActiveValue, Set};

use super::entities::{access_request, outbox};
use super::{Result, Store, StoreError};
use crate::crypto::{KeyRing, Subject, SubjectId, Vault, VaultError, sealed_subject};
use crate::domain::NewEvent;

/// Key of the sealed personal part of an outbox row's `data`.
const SEALED_DATA_FIELD: &str = "sealed";

impl From<VaultError> for StoreError {
    fn from(error: VaultError) -> Self {
        match error {
            VaultError::Database(db) => db.into(),
            other => StoreError::Corrupt(other.to_string()),
        }
    }
}

/// What sealing one subject's values needs.
#[derive(Clone, Debug)]
pub(super) struct Sealer {
    pub subject: Subject,
    ring: Arc<KeyRing>,
    /// The email the sealer was found by and its blind index, computed
    /// once: a submission needs it for the key, the row and the
    /// applicant's emails.
    known: Option<(String, String)>,
}

fn context(column: &str, row: &str) -> String {
    format!("{column}:{row}")
}

/// Seals `value` in place when it is set.
fn seal_set(value: &mut ActiveValue<String>, subject: &Subject, context: &str) {
    if let ActiveValue::Set(plain) = value {
        *value = Set(subject.seal(context, plain));
    }
}

fn seal_set_option(value: &mut ActiveValue<Option<String>>, subject: &Subject, context: &str) {
    if let ActiveValue::Set(Some(plain)) = value {
        *value = Set(Some(subject.seal(context, plain)));
    }
}

impl Sealer {
    /// The blind index of an email address.
    pub fn blind_index(&self, email: &str) -> String {
        match &self.known {
            Some((known, index)) if known == email => index.clone(),
            _ => self.ring.blind_index(email),
        }
    }

    /// Seals the personal columns of a request row about to be inserted and
    /// sets its subject and blind index.
    pub fn seal_request(&self, row: &mut access_request::ActiveModel, applicant_email: &str) {
        let id = match &row.id {
            ActiveValue::Set(id) | ActiveValue::Unchanged(id) => id.clone(),
            ActiveValue::NotSet => unreachable!("a request row always has its id set"),
        };
        let s = &self.subject;
        let at = |column: &str| context(&format!("access_requests.{column}"), &id);
        seal_set(&mut row.applicant_email, s, &at("applicant_email"));
        seal_set(&mut row.applicant_full_name, s, &at("applicant_full_name"));
        seal_set(
            &mut row.applicant_organization,
            s,
            &at("applicant_organization"),
        );
        seal_set_option(&mut row.applicant_phone, s, &at("applicant_phone"));
        seal_set(&mut row.justification, s, &at("justification"));
        seal_set_option(&mut row.decision_reason, s, &at("decision_reason"));
        seal_set_option(&mut row.policy_explanation, s, &at("policy_explanation"));
        row.subject_id = Set(Some(self.subject.id.to_string()));
        row.applicant_index = Set(Some(self.blind_index(applicant_email)));
    }

    /// A decision's reason as stored in `access_requests.decision_reason`.
    pub fn seal_decision_reason(&self, request: &str, reason: Option<String>) -> Option<String> {
        reason.map(|reason| {
            self.subject.seal(
                &context("access_requests.decision_reason", request),
                &reason,
            )
        })
    }

    /// Seals a request event's `reason` (a note an administrator wrote).
    pub fn seal_event_reason(&self, event: &mut NewEvent) {
        if let Some(reason) = event.data.get("reason").and_then(|value| value.as_str()) {
            let sealed = self.subject.seal(
                &context("events.reason", &event.access_request.to_string()),
                reason,
            );
            event.data["reason"] = serde_json::Value::String(sealed);
        }
    }

    /// Seals an outbox row's recipient and template data (all but the
    /// gateway code, which the master key seals apart).
    pub fn seal_email(&self, row: &mut outbox::ActiveModel) {
        let id = match &row.id {
            ActiveValue::Set(id) | ActiveValue::Unchanged(id) => id.clone(),
            ActiveValue::NotSet => unreachable!("an outbox row always has its id set"),
        };
        seal_set(
            &mut row.recipient,
            &self.subject,
            &context("outbox.recipient", &id),
        );
        if let ActiveValue::Set(data) = &row.data {
            let mut personal: serde_json::Value =
                serde_json::from_str(data).expect("outbox data is a JSON object");
            let code = personal
                .as_object_mut()
                .and_then(|fields| fields.remove(crate::crypto::codes::SEALED_CODE_FIELD));
            let mut stored = serde_json::json!({
                SEALED_DATA_FIELD: self.subject.seal(&context("outbox.data", &id), &personal.to_string()),
            });
            if let Some(code) = code {
                stored[crate::crypto::codes::SEALED_CODE_FIELD] = code;
            }
            row.data = Set(stored.to_string());
        }
    }
}

impl Store {
    /// The key store; every store that holds personal data has one.
    pub(super) fn vault(&self) -> Result<&Vault> {
        self.vault
            .as_ref()
            .ok_or_else(|| StoreError::Corrupt("this store was opened without a key store".into()))
    }

    /// The key ring as the key file holds it now (read again if it
    /// changed); `None` without a key store.
    pub fn key_ring(&self) -> Option<Arc<KeyRing>> {
        self.vault.as_ref().map(Vault::current_ring)
    }

    /// The sealer of the person with this email (created on first use).
    pub(super) async fn sealer_for(&self, email: &str) -> Result<Sealer> {
        let vault = self.vault()?;
        let ring = vault.ring();
        let index = ring.blind_index(email);
        Ok(Sealer {
            subject: vault.subject_by_index(index.clone()).await?,
            ring,
            known: Some((email.to_owned(), index)),
        })
    }

    /// The sealer of an existing subject; `None` once erased.
    pub(super) async fn sealer_of(&self, subject: Option<&str>) -> Result<Option<Sealer>> {
        let Some(subject) = subject else {
            return Ok(None);
        };
        let id: SubjectId = subject
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("bad subject id {subject:?}")))?;
        let vault = self.vault()?;
        Ok(vault.subject(id).await?.map(|subject| Sealer {
            subject,
            ring: vault.ring(),
            known: None,
        }))
    }

    /// Opens one stored value for `context`: clear values (stored before
    /// encryption) as they are, sealed ones with their subject's key;
    /// `None` when that key was erased.
    pub(super) async fn open_value(&self, context: &str, value: &str) -> Result<Option<String>> {
        let Some(subject) = sealed_subject(value) else {
            return Ok(Some(value.to_owned()));
        };
        let Some(subject) = self.vault()?.subject(subject).await? else {
            return Ok(None);
        };
        subject
            .open(context, value)
            .map(Some)
            .map_err(|_| StoreError::Corrupt(format!("{context} does not open with its key")))
    }

    /// A request row with its personal columns opened: blank (an anonymous
    /// tombstone) when erased. Also returns the subject's sealer, for
    /// changes to the row.
    pub(super) async fn open_request_row(
        &self,
        mut row: access_request::Model,
    ) -> Result<(access_request::Model, Option<Sealer>)> {
        if row.erased_at_us.is_some() {
            return Ok((tombstone(row), None));
        }
        let sealer = match row.subject_id.clone() {
            Some(subject) => match self.sealer_of(Some(&subject)).await? {
                Some(sealer) => sealer,
                None => return Ok((tombstone(row), None)),
            },
            // Stored in clear before encryption existed: what is written
            // about it from now on (a decision's reason) is sealed, with
            // the key its email gets.
            None => self.sealer_for(&row.applicant_email).await?,
        };
        let id = row.id.clone();
        let open = |column: &str, value: &str| -> Result<String> {
            let at = context(&format!("access_requests.{column}"), &id);
            match sealed_subject(value) {
                None => Ok(value.to_owned()),
                Some(_) => sealer.subject.open(&at, value).map_err(|_| {
                    StoreError::Corrupt(format!("access request {id}: {column} does not open"))
                }),
            }
        };
        row.applicant_email = open("applicant_email", &row.applicant_email)?;
        row.applicant_full_name = open("applicant_full_name", &row.applicant_full_name)?;
        row.applicant_organization = open("applicant_organization", &row.applicant_organization)?;
        row.justification = open("justification", &row.justification)?;
        row.applicant_phone = row
            .applicant_phone
            .map(|value| open("applicant_phone", &value))
            .transpose()?;
        row.decision_reason = row
            .decision_reason
            .map(|value| open("decision_reason", &value))
            .transpose()?;
        row.policy_explanation = row
            .policy_explanation
            .map(|value| open("policy_explanation", &value))
            .transpose()?;
        Ok((row, Some(sealer)))
    }

    /// Opens a request event's sealed `reason` in its JSON `data`: erased
    /// ones become `[erased]`.
    pub(super) async fn open_event_data(&self, request: &str, data: String) -> Result<String> {
        if !data.contains("\"e1.") {
            return Ok(data);
        }
        let Ok(mut value) = serde_json::from_str::<serde_json::Value>(&data) else {
            return Ok(data);
        };
        let Some(reason) = value.get("reason").and_then(|reason| reason.as_str()) else {
            return Ok(data);
        };
        if sealed_subject(reason).is_none() {
            return Ok(data);
        }
        let opened = self
            .open_value(&context("events.reason", request), reason)
            .await?;
        value["reason"] = serde_json::Value::String(opened.unwrap_or_else(|| ERASED.to_owned()));
        Ok(value.to_string())
    }

    /// An outbox row's recipient and data opened; `None` when the subject
    /// was erased or the row purged.
    #[instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn open_email(
        &self,
        row: &outbox::Model,
    ) -> Result<Option<(String, serde_json::Value)>> {
        if row.purged_at_us.is_some() {
            return Ok(None);
        }
        let Some(recipient) = self
            .open_value(&context("outbox.recipient", &row.id), &row.recipient)
            .await?
        else {
            return Ok(None);
        };
        let mut stored: serde_json::Value = serde_json::from_str(&row.data)
            .map_err(|_| StoreError::Corrupt(format!("outbox {}: bad data", row.id)))?;
        let Some(sealed) = stored
            .get(SEALED_DATA_FIELD)
            .and_then(|sealed| sealed.as_str())
        else {
            // Stored in clear before encryption existed.
            return Ok(Some((recipient, stored)));
        };
        let Some(personal) = self
            .open_value(&context("outbox.data", &row.id), sealed)
            .await?
        else {
            return Ok(None);
        };
        let mut data: serde_json::Value = serde_json::from_str(&personal)
            .map_err(|_| StoreError::Corrupt(format!("outbox {}: bad sealed data", row.id)))?;
        if let Some(code) = stored
            .as_object_mut()
            .and_then(|fields| fields.remove(crate::crypto::codes::SEALED_CODE_FIELD))
        {
            data[crate::crypto::codes::SEALED_CODE_FIELD] = code;
        }
        Ok(Some((recipient, data)))
    }
}

/// What an erased value reads as where a text must be shown.
pub const ERASED: &str = "[erased]";

/// A request row whose personal data is gone.
fn tombstone(mut row: access_request::Model) -> access_request::Model {
    row.applicant_email = String::new();
    row.applicant_full_name = String::new();
    row.applicant_organization = String::new();
    row.applicant_phone = None;
    row.justification = String::new();
    row.decision_reason = row.decision_reason.map(|_| ERASED.to_owned());
    row.policy_explanation = row.policy_explanation.map(|_| ERASED.to_owned());
    row
}

impl Store {
    /// Seals the personal data of requests stored in clear before encryption
    /// existed (no subject), and of their emails, in batches; returns how
    /// many requests were sealed. Their event notes stay as they are (the
    /// log is never rewritten). Safe to run on several replicas at once:
    /// each row changes only if it is still unsealed.
    #[instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn seal_legacy_requests(&self) -> Result<u64> {
        use sea_orm::sea_query::Expr;
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect};

        use access_request::Column;
        let mut sealed = 0;
        loop {
            let rows = access_request::Entity::find()
                .filter(Column::SubjectId.is_null())
                .filter(Column::ErasedAtUs.is_null())
                .limit(100)
                .all(&self.db)
                .await?;
            if rows.is_empty() {
                return Ok(sealed);
            }
            let mut progressed = false;
            for row in rows {
                let sealer = self.sealer_for(&row.applicant_email).await?;
                let s = &sealer.subject;
                let at = |column: &str| context(&format!("access_requests.{column}"), &row.id);
                let seal = |column: &str, value: &str| s.seal(&at(column), value);
                // A reason written since the upgrade is sealed already.
                let seal_option = |column: &str, value: &Option<String>| {
                    value.as_deref().map(|value| match sealed_subject(value) {
                        Some(_) => value.to_owned(),
                        None => seal(column, value),
                    })
                };
                let (_turn, txn) = self.begin_write().await?;
                let updated = access_request::Entity::update_many()
                    .col_expr(
                        Column::ApplicantEmail,
                        Expr::value(seal("applicant_email", &row.applicant_email)),
                    )
                    .col_expr(
                        Column::ApplicantFullName,
                        Expr::value(seal("applicant_full_name", &row.applicant_full_name)),
                    )
                    .col_expr(
                        Column::ApplicantOrganization,
                        Expr::value(seal("applicant_organization", &row.applicant_organization)),
                    )
                    .col_expr(
                        Column::ApplicantPhone,
                        Expr::value(seal_option("applicant_phone", &row.applicant_phone)),
                    )
                    .col_expr(
                        Column::Justification,
                        Expr::value(seal("justification", &row.justification)),
                    )
                    .col_expr(
                        Column::DecisionReason,
                        Expr::value(seal_option("decision_reason", &row.decision_reason)),
                    )
                    .col_expr(
                        Column::PolicyExplanation,
                        Expr::value(seal_option("policy_explanation", &row.policy_explanation)),
                    )
                    .col_expr(Column::SubjectId, Expr::value(Some(s.id.to_string())))
                    .col_expr(
                        Column::ApplicantIndex,
                        Expr::value(Some(sealer.blind_index(&row.applicant_email))),
                    )
                    .filter(Column::Id.eq(row.id.clone()))
                    .filter(Column::Version.eq(row.version))
                    .filter(Column::SubjectId.is_null())
                    .exec(&txn)
                    .await?;
                if updated.rows_affected == 1 {
                    seal_legacy_emails(&txn, &sealer, &row.id).await?;
                    sealed += 1;
                    progressed = true;
                }
                txn.commit().await?;
            }
            if !progressed {
                // Rows changed under us (decisions); the next start
                // finishes them.
                return Ok(sealed);
            }
        }
    }
}

/// Seals the emails of legacy request `request` still stored in clear, in
/// `txn`; their idempotency keys name the recipient by its blind index.
async fn seal_legacy_emails(
    txn: &sea_orm::DatabaseTransaction,
    sealer: &Sealer,
    request: &str,
) -> Result<()> {
    use sea_orm::sea_query::Expr;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

    let emails = outbox::Entity::find()
        .filter(outbox::Column::AccessRequestId.eq(request))
        .filter(outbox::Column::PurgedAtUs.is_null())
        .all(txn)
        .await?;
    for email in emails {
        let clear = sealed_subject(&email.recipient).is_none()
            && !email.data.contains(&format!("\"{SEALED_DATA_FIELD}\""));
        if !clear {
            continue;
        }
        // The old idempotency key ended with the address.
        let key = match email.idempotency_key.strip_suffix(email.recipient.as_str()) {
            Some(prefix) => {
                format!("{prefix}{}", sealer.blind_index(&email.recipient))
            }
            None => email.idempotency_key.clone(),
        };
        let mut active = outbox::ActiveModel {
            id: Set(email.id.clone()),
            recipient: Set(email.recipient),
            data: Set(email.data),
            ..Default::default()
        };
        sealer.seal_email(&mut active);
        outbox::Entity::update_many()
            .col_expr(outbox::Column::IdempotencyKey, Expr::value(key))
            .col_expr(
                outbox::Column::Recipient,
                Expr::value(active.recipient.unwrap()),
            )
            .col_expr(outbox::Column::Data, Expr::value(active.data.unwrap()))
            .filter(outbox::Column::Id.eq(email.id))
            .exec(txn)
            .await?;
    }
    Ok(())
}
