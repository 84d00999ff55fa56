//! Review deadlines in the database: the PENDING requests past a deadline,
//! the reminder and escalation of one request (each at most once, however
//! many replicas try), and the figures of GetStats.
//!
//! The database is the arbiter between replicas: a reminder sets
//! `reminded_at_us` with `UPDATE ... WHERE id = ? AND state = 'pending' AND
//! reminded_at_us IS NULL` in the transaction that appends the event and
//! queues the emails. A second replica's UPDATE waits for the first one's
//! row lock (PostgreSQL) or write lock (SQLite), then matches no row, and
//! that replica rolls back having done nothing. Expiry goes through the
//! versioned decision path, which refuses a request that is no longer
//! PENDING.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Condition;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect};
use tracing::{info, instrument};

use super::entities::{access_request, outbox};
use super::rows::to_domain;
use super::{Result, Store, StoreError, from_micros, to_micros};
use crate::domain::deadline::{Deadlines, Due};
use crate::domain::operations;
use crate::domain::{AccessRequestId, State};

/// A PENDING request past one of its deadlines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DueRequest {
    pub id: AccessRequestId,
    pub due: Due,
}

/// The raw figures of GetStats.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestStats {
    /// Requests per state, all time, in [`State::ALL`] order.
    pub counts: Vec<(State, i64)>,
    /// `(created, decided)` of the requests decided within the window.
    pub decided: Vec<(DateTime<Utc>, DateTime<Utc>)>,
    /// Of those, the ones decided automatically (policy rule, expiry).
    pub automatic: i64,
    /// PENDING requests created at or before the overdue cutoff.
    pub overdue: i64,
    /// Emails sent within the window.
    pub emails_sent: i64,
    /// Emails dead now that died within the window.
    pub emails_dead: i64,
    /// Emails pending now after at least one failed attempt.
    pub emails_retrying: i64,
    /// Delivery of the emails sent within the window through a provider
    /// that reports it.
    pub tracked: TrackedDelivery,
}

/// Emails sent through a provider that reports delivery, by what it
/// reported.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrackedDelivery {
    pub sent: i64,
    pub delivered: i64,
    pub bounced: i64,
    pub complained: i64,
}

impl TrackedDelivery {
    /// delivered / sent, when any was sent.
    pub fn rate(&self) -> Option<f64> {
        #[allow(clippy::cast_precision_loss)]
        (self.sent > 0).then(|| self.delivered as f64 / self.sent as f64)
    }
}

impl Store {
    /// Up to `limit` PENDING requests owed a step at `now`, oldest first.
    #[instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn due_requests(
        &self,
        deadlines: &Deadlines,
        at: DateTime<Utc>,
        limit: u64,
    ) -> Result<Vec<DueRequest>> {
        use access_request::Column;
        let cutoffs = deadlines.cutoffs(at);
        let owed = Condition::any()
            .add(Column::CreatedAtUs.lte(to_micros(cutoffs.expire)))
            .add(
                Condition::all()
                    .add(Column::CreatedAtUs.lte(to_micros(cutoffs.escalate)))
                    .add(Column::EscalatedAtUs.is_null()),
            )
            .add(
                Condition::all()
                    .add(Column::CreatedAtUs.lte(to_micros(cutoffs.remind)))
                    .add(Column::RemindedAtUs.is_null())
                    .add(Column::EscalatedAtUs.is_null()),
            );
        let rows: Vec<(String, i64, Option<i64>, Option<i64>)> = access_request::Entity::find()
            .select_only()
            .column(Column::Id)
            .column(Column::CreatedAtUs)
            .column(Column::RemindedAtUs)
            .column(Column::EscalatedAtUs)
            .filter(Column::State.eq(State::Pending.as_str()))
            .filter(owed)
            .order_by_asc(Column::CreatedAtUs)
            .limit(limit)
            .into_tuple()
            .all(&self.db)
            .await?;
        let mut due = Vec::with_capacity(rows.len());
        for (id, created_at_us, reminded_at_us, escalated_at_us) in rows {
            let id = id
                .parse::<AccessRequestId>()
                .map_err(|_| StoreError::Corrupt(format!("access request {id}: bad id")))?;
            let step = deadlines.due(
                State::Pending,
                from_micros(created_at_us)?,
                reminded_at_us.is_some(),
                escalated_at_us.is_some(),
                at,
            );
            if let Some(step) = step {
                due.push(DueRequest { id, due: step });
            }
        }
        Ok(due)
    }

    /// Sends the reminder (`Due::Remind`) or escalation (`Due::Escalate`) of
    /// request `id` at `at`: marks the row, appends `request.reminded` or
    /// `request.escalated` by `system` and queues an email to every
    /// administrator, in one transaction. `false` (and no change) when the
    /// request is no longer PENDING or the step was already taken, by this
    /// replica or another.
    #[instrument(skip_all, fields(request = %id, step = ?step), err(level = "debug"))]
    pub async fn record_deadline(
        &self,
        id: AccessRequestId,
        step: Due,
        deadlines: &Deadlines,
        at: DateTime<Utc>,
    ) -> Result<bool> {
        let mut writer = self.writer().await?;
        let row = access_request::Entity::find_by_id(id.to_string())
            .one(writer.txn())
            .await?
            .ok_or(StoreError::NotFound)?;
        let (row, sealer) = self.open_request_row(row).await?;
        let request = to_domain(row)?;
        let change = operations::deadline_step(
            &request,
            sealer.is_none(),
            step,
            deadlines,
            &self.admin_emails,
            at,
        )
        .ok_or_else(|| StoreError::Corrupt("expiry is a decision, not a deadline mark".into()))?;
        if writer.apply(&change, sealer.as_ref()).await?.is_none() {
            // Not PENDING any more, or the step was taken meanwhile.
            writer.rollback().await?;
            return Ok(false);
        }
        writer.commit().await?;
        info!(request = %id, step = ?step, "review deadline reached");
        Ok(true)
    }

    /// The figures of GetStats: requests per state, the requests decided at
    /// or after `window_start`, and the PENDING ones created at or before
    /// `overdue_cutoff`.
    #[instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn request_stats(
        &self,
        window_start: DateTime<Utc>,
        overdue_cutoff: DateTime<Utc>,
    ) -> Result<RequestStats> {
        use access_request::Column;
        let grouped: Vec<(String, i64)> = access_request::Entity::find()
            .select_only()
            .column(Column::State)
            .column_as(Column::Id.count(), "n")
            .group_by(Column::State)
            .into_tuple()
            .all(&self.db)
            .await?;
        let counts = State::ALL
            .into_iter()
            .map(|state| {
                let count = grouped
                    .iter()
                    .find(|(name, _)| name == state.as_str())
                    .map_or(0, |(_, count)| *count);
                (state, count)
            })
            .collect();
        let spans: Vec<(i64, Option<i64>, bool)> = access_request::Entity::find()
            .select_only()
            .column(Column::CreatedAtUs)
            .column(Column::DecidedAtUs)
            .column(Column::DecisionAutomatic)
            .filter(Column::DecidedAtUs.gte(to_micros(window_start)))
            .into_tuple()
            .all(&self.db)
            .await?;
        let mut decided = Vec::with_capacity(spans.len());
        let mut automatic = 0;
        for (created_at_us, decided_at_us, by_rule) in spans {
            if let Some(decided_at_us) = decided_at_us {
                decided.push((from_micros(created_at_us)?, from_micros(decided_at_us)?));
                automatic += i64::from(by_rule);
            }
        }
        let overdue = access_request::Entity::find()
            .filter(Column::State.eq(State::Pending.as_str()))
            .filter(Column::CreatedAtUs.lte(to_micros(overdue_cutoff)))
            .count(&self.db)
            .await?;
        let since = to_micros(window_start);
        let count_emails = async |condition: Condition| -> Result<i64> {
            let count = outbox::Entity::find()
                .filter(condition)
                .count(&self.db)
                .await?;
            Ok(i64::try_from(count).unwrap_or(i64::MAX))
        };
        let emails_sent = count_emails(
            Condition::all()
                .add(outbox::Column::State.eq(outbox::SENT))
                .add(outbox::Column::SentAtUs.gte(since)),
        )
        .await?;
        let emails_dead = count_emails(
            Condition::all()
                .add(outbox::Column::State.eq(outbox::DEAD))
                .add(outbox::Column::UpdatedAtUs.gte(since)),
        )
        .await?;
        let emails_retrying = count_emails(
            Condition::all()
                .add(outbox::Column::State.eq(outbox::PENDING))
                .add(outbox::Column::Attempts.gt(0)),
        )
        .await?;
        let tracked = self.tracked_delivery(since).await?;
        Ok(RequestStats {
            counts,
            decided,
            automatic,
            overdue: i64::try_from(overdue).unwrap_or(i64::MAX),
            emails_sent,
            emails_dead,
            emails_retrying,
            tracked,
        })
    }
}
impl Store {
    /// Emails sent since `since` (micros) through a provider that reports
    /// delivery, by what it reported.
    async fn tracked_delivery(&self, since: i64) -> Result<TrackedDelivery> {
        let mut tracked_sent = Condition::any();
        for provider in crate::domain::mail::TRACKED_PROVIDERS {
            tracked_sent = tracked_sent.add(outbox::Column::Provider.starts_with(provider));
        }
        let by_delivery: Vec<(Option<String>, i64)> = outbox::Entity::find()
            .select_only()
            .column(outbox::Column::Delivery)
            .column_as(outbox::Column::Id.count(), "count")
            .filter(outbox::Column::State.eq(outbox::SENT))
            .filter(outbox::Column::SentAtUs.gte(since))
            .filter(tracked_sent)
            .group_by(outbox::Column::Delivery)
            .into_tuple()
            .all(&self.db)
            .await?;
        let mut tracked = TrackedDelivery::default();
        for (delivery, count) in by_delivery {
            tracked.sent += count;
            match delivery.as_deref() {
                Some("delivered") => tracked.delivered += count,
                Some("bounced") => tracked.bounced += count,
                Some("complained") => tracked.complained += count,
                _ => {}
            }
        }
        Ok(tracked)
    }
}
