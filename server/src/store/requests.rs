//! Access requests in the database: submit (idempotent, group-committed),
//! get, list, and the decisions. Each change is decided by the domain
//! (`domain::operations`) from the row read here and written by the one
//! writer (`commit.rs`).

use chrono::{DateTime, Utc};
use sea_orm::sea_query::LockType;
use sea_orm::{
    ColumnTrait, DatabaseTransaction, DbBackend, EntityTrait, QueryFilter, QuerySelect, Set,
};
use tracing::{debug, info, instrument};

use super::commit::{About, Writer};
use super::entities::{access_request, idempotency_key};
use super::pagination::{self, ListQuery, Page, Position};
use super::rows::to_domain;
use super::sealing::Sealer;
use super::{Result, Scope, Store, StoreError, now, to_micros, unique};
use crate::domain::operations::{self, Decider};
use crate::domain::policy::Evaluation;
use crate::domain::{
    AccessRequest, AccessRequestId, Action, Change, CodeStatus, DomainError, GatewayCode,
    NewAccessRequest,
};

/// A submission decided and ready to be written by
/// [`Store::write_submission`], alone or in a group commit.
#[derive(Clone, Debug)]
pub(super) struct Submission {
    pub(super) submitter: String,
    pub(super) request_id: Option<String>,
    /// Of the payload, to tell a retry from a reuse of its request_id.
    pub(super) fingerprint: String,
    /// What the domain decided: the request as stored (decided at once
    /// by a rule, or PENDING) and its effects.
    pub(super) change: Change,
    /// Seals the applicant's personal data with their subject key.
    pub(super) sealer: Sealer,
}

/// A request as stored by a change, with its gateway code's status when
/// the change issued one.
#[derive(Clone, Debug)]
pub struct Stored {
    pub request: AccessRequest,
    pub code: Option<CodeStatus>,
}

/// What writing a [`Submission`] did.
#[derive(Debug)]
pub(super) enum Written {
    /// Stored (boxed: it is large, and travels through the group commit's
    /// channel).
    Stored(Box<Stored>),
    /// Nothing: another call committed the same idempotency key first.
    RequestIdTaken,
}

impl Store {
    /// Stores a new request as the domain decides it ([`operations::submit`]
    /// with the policy's `evaluation`): its `request.submitted` event and,
    /// when a rule approves or rejects it at once, the decision (by
    /// `system`) with the gateway code of an approval, in one transaction.
    /// With an idempotency key already used by this submitter, returns the
    /// request the first call created instead (`false` = not created now).
    /// Concurrent submissions share one transaction (group commit); each
    /// answers after its commit.
    #[instrument(skip_all, fields(submitter = %submitter), err(level = "debug"))]
    pub async fn submit_request(
        &self,
        submitter: &str,
        submission: NewAccessRequest,
        evaluation: &Evaluation,
    ) -> Result<(Stored, bool)> {
        let fingerprint = submission.fingerprint();
        let request_id = submission.request_id.clone();
        if let Some(request_id) = &request_id
            && let Some(original) = self
                .idempotent_replay(submitter, request_id, &fingerprint)
                .await?
        {
            return Ok((original, false));
        }
        let change = operations::submit(
            AccessRequestId::generate(),
            submitter,
            submission,
            evaluation,
            &self.admin_emails,
            now(),
        )?;
        let sealer = self.sealer_for(&change.request.applicant.email).await?;
        let prepared = Submission {
            submitter: submitter.to_owned(),
            request_id,
            fingerprint,
            change,
            sealer,
        };
        let stored = match self.commit_submission(prepared.clone()).await? {
            Written::Stored(stored) => *stored,
            Written::RequestIdTaken => {
                // A concurrent call with this key committed first.
                debug!("concurrent retry lost the race; returning the original request");
                let request_id = prepared.request_id.as_deref().unwrap_or_default();
                return self
                    .idempotent_replay(submitter, request_id, &prepared.fingerprint)
                    .await?
                    .map(|original| (original, false))
                    .ok_or_else(|| StoreError::Corrupt("idempotency key vanished".into()));
            }
        };
        let request = &stored.request;
        info!(request = %request.id, state = request.state.as_str(), rule = ?evaluation.rule, "access request submitted");
        Ok((stored, true))
    }

    /// Writes one prepared submission with `writer`, whose transaction may
    /// hold others: the request row, its idempotency key, then its effects
    /// (events, emails, gateway code). [`Written::RequestIdTaken`] when
    /// another call committed the same idempotency key first (the
    /// transaction is then unusable on PostgreSQL and must be rolled back).
    pub(super) async fn write_submission(
        writer: &mut Writer,
        submission: &Submission,
    ) -> Result<Written> {
        let change = &submission.change;
        let request = &change.request;
        let sealer = Some(&submission.sealer);
        writer.write_request(change, sealer).await?;
        if let Some(request_id) = &submission.request_id {
            let key_row = idempotency_key::ActiveModel {
                principal: Set(submission.submitter.clone()),
                request_id: Set(request_id.clone()),
                request_hash: Set(submission.fingerprint.clone()),
                access_request_id: Set(request.id.to_string()),
                created_at_us: Set(to_micros(request.created_at)),
            };
            let inserted = idempotency_key::Entity::insert(key_row)
                .exec_without_returning(writer.txn())
                .await;
            if let Err(error) = inserted {
                if error.sql_err().is_none() {
                    return Err(error.into());
                }
                return Ok(Written::RequestIdTaken);
            }
        }
        let applied = writer
            .apply_effects(About::Request(request), &change.effects, sealer)
            .await?
            .ok_or_else(|| StoreError::Corrupt("a new request's effects met a guard".into()))?;
        Ok(Written::Stored(Box::new(Stored {
            request: request.clone(),
            code: applied.issued.map(|(_, status)| status),
        })))
    }

    async fn idempotent_replay(
        &self,
        submitter: &str,
        request_id: &str,
        fingerprint: &str,
    ) -> Result<Option<Stored>> {
        let select =
            idempotency_key::Entity::find_by_id((submitter.to_owned(), request_id.to_owned()));
        let Some(key_row) = unique(select, &self.db).await? else {
            return Ok(None);
        };
        if key_row.request_hash != fingerprint {
            return Err(DomainError::RequestIdReused.into());
        }
        let select = access_request::Entity::find_by_id(key_row.access_request_id);
        let row = unique(select, &self.db)
            .await?
            .ok_or_else(|| StoreError::Corrupt("idempotency key points nowhere".into()))?;
        let request = self.request_from_row(row).await?;
        let code = self.code_status_of(&request).await?;
        Ok(Some(Stored { request, code }))
    }

    /// One request, if the scope may see it.
    #[instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn get_request(&self, scope: &Scope, id: AccessRequestId) -> Result<AccessRequest> {
        let select = access_request::Entity::find_by_id(id.to_string());
        let row = unique(select, &self.db)
            .await?
            .ok_or(StoreError::NotFound)?;
        check_scope(scope, &row)?;
        self.request_from_row(row).await
    }

    /// The domain request of a stored row, personal data opened.
    pub(super) async fn request_from_row(
        &self,
        row: access_request::Model,
    ) -> Result<AccessRequest> {
        to_domain(self.open_request_row(row).await?.0)
    }

    /// A page of requests in the query's order. `page_size` must be at
    /// least 1.
    #[instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn list_requests(
        &self,
        caller: &str,
        scope: &Scope,
        query: &ListQuery,
        page_size: u32,
        page_token: Option<&str>,
    ) -> Result<Page> {
        let query_fingerprint = pagination::fingerprint(caller, scope, query);
        let after = page_token
            .map(|token| {
                pagination::decode::<Position>(&self.page_token_key, token, &query_fingerprint)
            })
            .transpose()?;

        let mut select = access_request::Entity::find();
        if let Scope::OwnedBy(owner) = scope {
            select = select.filter(access_request::Column::Submitter.eq(owner.as_str()));
        }
        if let Some(state) = query.state {
            select = select.filter(access_request::Column::State.eq(state.as_str()));
        }
        if let Some(user_type) = query.user_type {
            select = select.filter(access_request::Column::UserType.eq(user_type.as_str()));
        }
        if let Some(from) = query.created_from {
            select = select.filter(access_request::Column::CreatedAtUs.gte(to_micros(from)));
        }
        if let Some(before) = query.created_before {
            select = select.filter(access_request::Column::CreatedAtUs.lt(to_micros(before)));
        }
        if let Some(resource) = &query.resource {
            select = select.filter(access_request::Column::Resource.eq(resource.as_str()));
        }
        if let Some(email) = &query.applicant_email {
            let index = self.vault()?.blind_index(email);
            select = select.filter(access_request::Column::ApplicantIndex.eq(index));
        }
        let (rows, next_page_token) = pagination::keyset_page(
            &self.db,
            &self.page_token_key,
            select,
            (
                access_request::Column::CreatedAtUs,
                access_request::Column::Id,
            ),
            query.order,
            after.as_ref(),
            page_size,
            query_fingerprint,
            |row| (row.created_at_us, row.id.clone()),
        )
        .await?;
        let mut items = Vec::with_capacity(rows.len());
        for row in rows {
            items.push(self.request_from_row(row).await?);
        }
        Ok(Page {
            items,
            next_page_token,
        })
    }

    /// Applies a decision (approve, reject, cancel, expire) by `actor`.
    /// With `expected_etag`, fails with [`DomainError::EtagMismatch`] if the
    /// request changed since the caller read it. An approval returns the
    /// gateway code it issued.
    #[instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn decide_request(
        &self,
        scope: &Scope,
        id: AccessRequestId,
        expected_etag: Option<&str>,
        action: Action,
        actor: &str,
    ) -> Result<(Stored, Option<GatewayCode>)> {
        self.decide_request_at(scope, id, expected_etag, action, actor, now())
            .await
    }

    /// [`Store::decide_request`] at time `at` (the scheduler's clock, which
    /// tests set ahead). Emails are due at `at` or now, whichever is
    /// earlier: the mail worker reads the wall clock, and an email queued
    /// by a clock set ahead must not wait for the wall clock to catch up.
    #[instrument(skip_all, fields(request = %id, action = action.verb(), actor = %actor), err(level = "debug"))]
    pub(crate) async fn decide_request_at(
        &self,
        scope: &Scope,
        id: AccessRequestId,
        expected_etag: Option<&str>,
        action: Action,
        actor: &str,
        at: DateTime<Utc>,
    ) -> Result<(Stored, Option<GatewayCode>)> {
        let mut writer = self.writer().await?;
        let row = self.lock_request_row(writer.txn(), id).await?;
        check_scope(scope, &row)?;
        let (row, sealer) = self.open_request_row(row).await?;
        let current = to_domain(row)?;
        let change = operations::decide(
            &current,
            sealer.is_none(),
            expected_etag,
            action,
            Decider {
                name: actor,
                may_approve_own: self.allow_self_approval,
            },
            &self.admin_emails,
            at,
        )?;
        let Some(applied) = writer.apply(&change, sealer.as_ref()).await? else {
            return Err(DomainError::EtagMismatch.into());
        };
        writer.commit().await?;
        info!(
            state = change.request.state.as_str(),
            "access request decided"
        );
        let (code, status) = applied.issued.unzip();
        let stored = Stored {
            request: change.request,
            code: status,
        };
        Ok((stored, code))
    }

    /// The row of request `id` in `txn`, locked against concurrent changes
    /// until the transaction ends.
    pub(super) async fn lock_request_row(
        &self,
        txn: &DatabaseTransaction,
        id: AccessRequestId,
    ) -> Result<access_request::Model> {
        let mut select = access_request::Entity::find_by_id(id.to_string());
        if self.backend() == DbBackend::Postgres {
            // FOR NO KEY UPDATE, not FOR UPDATE: a change writes no key,
            // and a mail worker recording an outcome of this request holds
            // the event counter while its event's foreign key takes FOR KEY
            // SHARE on this row; FOR UPDATE would deadlock with it.
            select = select.lock(LockType::NoKeyUpdate);
        }
        select.one(txn).await?.ok_or(StoreError::NotFound)
    }
}

fn check_scope(scope: &Scope, row: &access_request::Model) -> Result<()> {
    match scope {
        Scope::All => Ok(()),
        Scope::OwnedBy(owner) if *owner == row.submitter => Ok(()),
        Scope::OwnedBy(_) => Err(StoreError::NotOwner),
    }
}
