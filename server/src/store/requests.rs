//! Access-request transactions: submit (idempotent), get, list, and the
//! decisions, each committed with its event in one transaction.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, LockType};
use sea_orm::{
    ColumnTrait, DatabaseTransaction, DbBackend, EntityTrait, QueryFilter, QuerySelect, Set,
};
use tracing::{debug, info, instrument};

use super::codes::issue_code;
use super::entities::{access_request, idempotency_key};
use super::events::{EventAppender, append_event};
use super::outbox::enqueue;
use super::pagination::{self, ListQuery, Page, Position};
use super::sealing::Sealer;
use super::{Result, Scope, Store, StoreError, from_micros, now, to_micros, unique};
use crate::domain::mail::emails_for;
use crate::domain::policy::Evaluation;
use crate::domain::request::Review;
use crate::domain::{
    AccessRequest, AccessRequestId, Action, Applicant, Consent, Decision, GatewayCode, Locale,
    NewAccessRequest, NewEvent, State, UserType,
};

/// A submission decided and ready to be written by
/// [`Store::write_submission`], alone or in a group commit.
#[derive(Clone, Debug)]
pub(super) struct Submission {
    pub(super) submitter: String,
    pub(super) request_id: Option<String>,
    /// Of the payload, to tell a retry from a reuse of its request_id.
    pub(super) fingerprint: String,
    /// As submitted, before any decision by the policy.
    pub(super) request: AccessRequest,
    /// `request.submitted`.
    pub(super) event: NewEvent,
    /// The policy's decision, when a rule decided at once: the request as
    /// decided and the decision's event (reason not sealed yet).
    pub(super) decided: Option<(AccessRequest, NewEvent)>,
    /// Seals the applicant's personal data with their subject key.
    pub(super) sealer: Sealer,
}

/// What writing a [`Submission`] did.
#[derive(Debug)]
pub(super) enum Written {
    /// Stored; the request as stored (boxed: it is large, and travels
    /// through the group commit's channel).
    Stored(Box<AccessRequest>),
    /// Nothing: another call committed the same idempotency key first.
    RequestIdTaken,
}

impl Store {
    /// Stores a new request and its `request.submitted` event; when the
    /// policy's `evaluation` approves or rejects it, the decision (by
    /// `system`) and its event follow in the same transaction, with the
    /// gateway code of an approval. With an idempotency key already used by
    /// this submitter, returns the request the first call created instead
    /// (`false` = not created now). Concurrent submissions share one
    /// transaction (group commit); each answers after its commit.
    #[instrument(skip_all, fields(submitter = %submitter), err)]
    pub async fn submit_request(
        &self,
        submitter: &str,
        submission: NewAccessRequest,
        evaluation: &Evaluation,
    ) -> Result<(AccessRequest, bool)> {
        let fingerprint = submission.fingerprint();
        let request_id = submission.request_id.clone();
        if let Some(request_id) = &request_id
            && let Some(original) = self
                .idempotent_replay(submitter, request_id, &fingerprint)
                .await?
        {
            return Ok((original, false));
        }

        let (mut request, mut event) =
            AccessRequest::submit(AccessRequestId::generate(), submitter, submission, now());
        request.review = Review::from_evaluation(evaluation);
        event.data["rule"] = serde_json::json!(evaluation.rule);
        let decided = request
            .decide_by_policy(evaluation, event.occurred_at)
            .transpose()?;
        let sealer = self.sealer_for(&request.applicant.email).await?;
        let prepared = Submission {
            submitter: submitter.to_owned(),
            request_id,
            fingerprint,
            request,
            event,
            decided,
            sealer,
        };
        let request = match self.commit_submission(prepared.clone()).await? {
            Written::Stored(request) => *request,
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
        info!(request = %request.id, state = request.state.as_str(), rule = ?evaluation.rule, "access request submitted");
        Ok((request, true))
    }

    /// Writes one prepared submission in `txn`, which may hold others: the
    /// request row, its idempotency key, its events, emails and gateway
    /// code. [`Written::RequestIdTaken`] when another call committed the
    /// same idempotency key first (the transaction is then unusable on
    /// PostgreSQL and must be rolled back).
    pub(super) async fn write_submission(
        &self,
        txn: &DatabaseTransaction,
        events: &mut EventAppender,
        submission: &Submission,
    ) -> Result<Written> {
        let request = &submission.request;
        let event = &submission.event;
        let stored = submission
            .decided
            .as_ref()
            .map_or(request, |(changed, _)| changed);
        let sealer = &submission.sealer;
        let mut row = access_request_row(stored);
        sealer.seal_request(&mut row, &request.applicant.email);
        access_request::Entity::insert(row)
            .exec_without_returning(txn)
            .await?;
        if let Some(request_id) = &submission.request_id {
            let key_row = idempotency_key::ActiveModel {
                principal: Set(submission.submitter.clone()),
                request_id: Set(request_id.clone()),
                request_hash: Set(submission.fingerprint.clone()),
                access_request_id: Set(request.id.to_string()),
                created_at_us: Set(to_micros(request.created_at)),
            };
            let inserted = idempotency_key::Entity::insert(key_row)
                .exec_without_returning(txn)
                .await;
            if let Err(error) = inserted {
                if error.sql_err().is_none() {
                    return Err(error.into());
                }
                return Ok(Written::RequestIdTaken);
            }
        }
        let seq = events.append(txn, event).await?;
        // A request a rule decided at once asks no administrator to review it.
        let admins: &[String] = if submission.decided.is_some() {
            &[]
        } else {
            &self.admin_emails
        };
        let emails = emails_for(event.kind, request, admins);
        enqueue(txn, sealer, request.id, seq, emails, event.occurred_at).await?;
        let Some((changed, decision)) = &submission.decided else {
            return Ok(Written::Stored(Box::new(request.clone())));
        };
        let mut decision = decision.clone();
        sealer.seal_event_reason(&mut decision);
        let seq = events.append(txn, &decision).await?;
        if changed.state == State::Approved {
            let options = self.code_options()?.clone();
            // issue_code appends through the counter row: bring it up to date.
            events.flush(txn).await?;
            issue_code(
                txn,
                &options,
                sealer,
                changed,
                &decision.actor,
                false,
                decision.occurred_at,
            )
            .await?;
        } else {
            let emails = emails_for(decision.kind, changed, &self.admin_emails);
            enqueue(txn, sealer, changed.id, seq, emails, decision.occurred_at).await?;
        }
        Ok(Written::Stored(Box::new(changed.clone())))
    }

    async fn idempotent_replay(
        &self,
        submitter: &str,
        request_id: &str,
        fingerprint: &str,
    ) -> Result<Option<AccessRequest>> {
        let select =
            idempotency_key::Entity::find_by_id((submitter.to_owned(), request_id.to_owned()));
        let Some(key_row) = unique(select, &self.db).await? else {
            return Ok(None);
        };
        if key_row.request_hash != fingerprint {
            return Err(StoreError::RequestIdReused);
        }
        let select = access_request::Entity::find_by_id(key_row.access_request_id);
        let row = unique(select, &self.db)
            .await?
            .ok_or_else(|| StoreError::Corrupt("idempotency key points nowhere".into()))?;
        Ok(Some(self.request_from_row(row).await?))
    }

    /// One request, if the scope may see it.
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

    /// A page of requests, newest first. `page_size` must be at least 1.
    pub async fn list_requests(
        &self,
        scope: &Scope,
        query: &ListQuery,
        page_size: u32,
        page_token: Option<&str>,
    ) -> Result<Page> {
        let query_fingerprint = pagination::fingerprint(scope, query);
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
        let (rows, next_page_token) = pagination::newest_first_page(
            &self.db,
            &self.page_token_key,
            select,
            (
                access_request::Column::CreatedAtUs,
                access_request::Column::Id,
            ),
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
    /// With `expected_etag`, fails with [`StoreError::EtagMismatch`] if the
    /// request changed since the caller read it.
    pub async fn decide_request(
        &self,
        scope: &Scope,
        id: AccessRequestId,
        expected_etag: Option<&str>,
        action: Action,
        actor: &str,
    ) -> Result<(AccessRequest, Option<GatewayCode>)> {
        self.decide_request_at(scope, id, expected_etag, action, actor, now())
            .await
    }

    /// [`Store::decide_request`] at time `at` (the scheduler's clock, which
    /// tests set ahead). Emails are due at `at` or now, whichever is
    /// earlier: the mail worker reads the wall clock, and an email queued
    /// by a clock set ahead must not wait for the wall clock to catch up.
    #[instrument(skip_all, fields(request = %id, action = action.verb(), actor = %actor), err)]
    pub(crate) async fn decide_request_at(
        &self,
        scope: &Scope,
        id: AccessRequestId,
        expected_etag: Option<&str>,
        action: Action,
        actor: &str,
        at: DateTime<Utc>,
    ) -> Result<(AccessRequest, Option<GatewayCode>)> {
        let (_turn, txn) = self.begin_write().await?;
        let mut select = access_request::Entity::find_by_id(id.to_string());
        if self.backend() == DbBackend::Postgres {
            // FOR NO KEY UPDATE, not FOR UPDATE: the decision changes no key,
            // and a mail worker recording an outcome of this request holds
            // the event counter while its event's foreign key takes FOR KEY
            // SHARE on this row; FOR UPDATE would deadlock with it.
            select = select.lock(LockType::NoKeyUpdate);
        }
        let row = select.one(&txn).await?.ok_or(StoreError::NotFound)?;
        check_scope(scope, &row)?;
        let (row, sealer) = self.open_request_row(row).await?;
        let sealer = sealer.ok_or(StoreError::Erased)?;
        let current = to_domain(row)?;
        if let Some(etag) = expected_etag
            && etag != current.etag()
        {
            return Err(StoreError::EtagMismatch);
        }
        let (changed, mut event) = current.apply(action, actor, at)?;
        sealer.seal_event_reason(&mut event);
        let decision = changed.decision.as_ref();
        let updated = access_request::Entity::update_many()
            .col_expr(
                access_request::Column::State,
                Expr::value(changed.state.as_str()),
            )
            .col_expr(
                access_request::Column::DecidedBy,
                Expr::value(decision.map(|d| d.actor.clone())),
            )
            .col_expr(
                access_request::Column::DecidedAtUs,
                Expr::value(decision.map(|d| to_micros(d.decided_at))),
            )
            .col_expr(
                access_request::Column::DecisionReason,
                Expr::value(sealer.seal_decision_reason(
                    &id.to_string(),
                    decision.and_then(|d| d.reason.clone()),
                )),
            )
            .col_expr(
                access_request::Column::DecisionAutomatic,
                Expr::value(decision.is_some_and(|d| d.automatic)),
            )
            .col_expr(
                access_request::Column::Version,
                Expr::value(changed.version),
            )
            .col_expr(
                access_request::Column::UpdatedAtUs,
                Expr::value(to_micros(changed.updated_at)),
            )
            .col_expr(
                access_request::Column::Approvals,
                Expr::value(approvals_json(&changed.review.approvals)),
            )
            .filter(access_request::Column::Id.eq(id.to_string()))
            .filter(access_request::Column::Version.eq(current.version))
            .exec(&txn)
            .await?;
        if updated.rows_affected != 1 {
            return Err(StoreError::EtagMismatch);
        }
        let seq = append_event(&txn, &event).await?;
        // An approval issues the gateway code; its event carries the
        // applicant's email, code included. Other decisions email at once.
        let code = if changed.state == State::Approved {
            let options = self.code_options()?.clone();
            let code = issue_code(
                &txn,
                &options,
                &sealer,
                &changed,
                actor,
                false,
                event.occurred_at,
            )
            .await?;
            Some(code)
        } else {
            let emails = emails_for(event.kind, &changed, &self.admin_emails);
            let at = now().min(event.occurred_at);
            enqueue(&txn, &sealer, changed.id, seq, emails, at).await?;
            None
        };
        txn.commit().await?;
        self.event_committed();
        info!(state = changed.state.as_str(), "access request decided");
        Ok((changed, code))
    }
}

fn approvals_json(approvals: &[String]) -> String {
    serde_json::to_string(approvals).expect("strings always serialize")
}

fn check_scope(scope: &Scope, row: &access_request::Model) -> Result<()> {
    match scope {
        Scope::All => Ok(()),
        Scope::OwnedBy(owner) if *owner == row.submitter => Ok(()),
        Scope::OwnedBy(_) => Err(StoreError::NotOwner),
    }
}

fn access_request_row(request: &AccessRequest) -> access_request::ActiveModel {
    let decision = request.decision.as_ref();
    access_request::ActiveModel {
        id: Set(request.id.to_string()),
        submitter: Set(request.submitter.clone()),
        request_id: Set(request.request_id.clone()),
        applicant_email: Set(request.applicant.email.clone()),
        applicant_full_name: Set(request.applicant.full_name.clone()),
        applicant_organization: Set(request.applicant.organization.clone()),
        applicant_phone: Set(request.applicant.phone.clone()),
        user_type: Set(request.user_type.as_str().to_owned()),
        locale: Set(request.locale.as_str().to_owned()),
        resource: Set(request.resource.clone()),
        justification: Set(request.justification.clone()),
        consent_version: Set(request.consent.version.clone()),
        consent_purposes: Set(
            serde_json::to_string(&request.consent.purposes).expect("strings always serialize")
        ),
        state: Set(request.state.as_str().to_owned()),
        decided_by: Set(decision.map(|d| d.actor.clone())),
        decided_at_us: Set(decision.map(|d| to_micros(d.decided_at))),
        decision_reason: Set(decision.and_then(|d| d.reason.clone())),
        decision_automatic: Set(decision.is_some_and(|d| d.automatic)),
        version: Set(request.version),
        created_at_us: Set(to_micros(request.created_at)),
        updated_at_us: Set(to_micros(request.updated_at)),
        policy_rule: Set(request.review.rule.clone()),
        policy_explanation: Set(request.review.explanation.clone()),
        required_approvals: Set(i32::try_from(request.review.required_approvals).unwrap_or(1)),
        approvals: Set(approvals_json(&request.review.approvals)),
        reminded_at_us: Set(None),
        escalated_at_us: Set(None),
        subject_id: Set(None),
        applicant_index: Set(None),
        erased_at_us: Set(None),
    }
}

pub(super) fn to_domain(row: access_request::Model) -> Result<AccessRequest> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("access request {}: {what}", row.id));
    let id = row
        .id
        .parse::<AccessRequestId>()
        .map_err(|_| corrupt("bad id"))?;
    let state = State::parse(&row.state).ok_or_else(|| corrupt("unknown state"))?;
    let user_type = UserType::parse(&row.user_type).ok_or_else(|| corrupt("unknown user type"))?;
    let locale = Locale::parse(&row.locale).ok_or_else(|| corrupt("unknown locale"))?;
    let purposes: Vec<String> =
        serde_json::from_str(&row.consent_purposes).map_err(|_| corrupt("bad consent purposes"))?;
    let decision = match (row.decided_by, row.decided_at_us) {
        (Some(actor), Some(decided_at_us)) => Some(Decision {
            actor,
            decided_at: from_micros(decided_at_us)?,
            reason: row.decision_reason,
            automatic: row.decision_automatic,
        }),
        _ => None,
    };
    Ok(AccessRequest {
        id,
        submitter: row.submitter,
        request_id: row.request_id,
        applicant: Applicant {
            email: row.applicant_email,
            full_name: row.applicant_full_name,
            organization: row.applicant_organization,
            phone: row.applicant_phone,
        },
        user_type,
        locale,
        resource: row.resource,
        justification: row.justification,
        consent: Consent {
            version: row.consent_version,
            purposes,
        },
        state,
        decision,
        version: row.version,
        created_at: from_micros(row.created_at_us)?,
        updated_at: from_micros(row.updated_at_us)?,
        review: Review {
            rule: row.policy_rule,
            explanation: row.policy_explanation,
            required_approvals: u32::try_from(row.required_approvals)
                .map_err(|_| corrupt("bad required approvals"))?,
            approvals: serde_json::from_str(&row.approvals)
                .map_err(|_| corrupt("bad approvals"))?,
        },
    })
}
