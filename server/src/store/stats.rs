//! Aggregate figures for the metrics gauges: requests and outbox rows by
//! state, the oldest pending request, the longest-waiting due email, and
//! the connection pool. Read periodically, never per call.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, Func};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect};
use tracing::instrument;

use super::entities::outbox::PENDING;
use super::entities::{access_request, outbox};
use super::{Result, Store, from_micros, to_micros};

/// What the refresh of the gauges reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Access requests per state (states without rows are absent).
    pub requests_by_state: BTreeMap<String, u64>,
    /// Creation time of the oldest request still pending.
    pub oldest_pending_request: Option<DateTime<Utc>>,
    /// Outbox rows per state (states without rows are absent).
    pub outbox_by_state: BTreeMap<String, u64>,
    /// The earliest due time of a pending email that is due at `now`.
    pub oldest_due_email: Option<DateTime<Utc>>,
}

/// Connections of the database pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolUsage {
    /// Connections open (idle or in use).
    pub open: u32,
    /// Of those, connections waiting in the pool.
    pub idle: u32,
}

impl Store {
    /// Reads the figures behind the gauges: one grouped scan of
    /// `access_requests` (there is no index on state, so it reads the
    /// table: keep the refresh interval in seconds, not milliseconds) and
    /// two queries on the outbox's (state, due time) index.
    #[instrument(skip_all, err(level = "debug"))]
    pub async fn stats(&self, now: DateTime<Utc>) -> Result<Stats> {
        let requests: Vec<(String, i64, Option<i64>)> = access_request::Entity::find()
            .select_only()
            .column(access_request::Column::State)
            .column_as(
                Expr::from(Func::count(Expr::col(access_request::Column::Id))),
                "n",
            )
            .column_as(
                Expr::from(Func::min(Expr::col(access_request::Column::CreatedAtUs))),
                "oldest",
            )
            .group_by(access_request::Column::State)
            .into_tuple()
            .all(&self.db)
            .await?;
        let emails: Vec<(String, i64)> = outbox::Entity::find()
            .select_only()
            .column(outbox::Column::State)
            .column_as(Expr::from(Func::count(Expr::col(outbox::Column::Id))), "n")
            .group_by(outbox::Column::State)
            .into_tuple()
            .all(&self.db)
            .await?;
        let oldest_due: Option<Option<i64>> = outbox::Entity::find()
            .select_only()
            .column_as(
                Expr::from(Func::min(Expr::col(outbox::Column::NextAttemptAtUs))),
                "due",
            )
            .filter(outbox::Column::State.eq(PENDING))
            .filter(outbox::Column::NextAttemptAtUs.lte(to_micros(now)))
            .into_tuple()
            .one(&self.db)
            .await?;

        let mut stats = Stats::default();
        for (state, count, oldest) in requests {
            if state == crate::domain::State::Pending.as_str() {
                stats.oldest_pending_request = oldest.map(from_micros).transpose()?;
            }
            stats
                .requests_by_state
                .insert(state, u64::try_from(count).unwrap_or(0));
        }
        for (state, count) in emails {
            stats
                .outbox_by_state
                .insert(state, u64::try_from(count).unwrap_or(0));
        }
        stats.oldest_due_email = oldest_due.flatten().map(from_micros).transpose()?;
        Ok(stats)
    }

    /// The connections of the pool, read from sqlx without a query.
    pub fn pool_usage(&self) -> PoolUsage {
        let (open, idle) = match self.db.get_database_backend() {
            sea_orm::DbBackend::Postgres => {
                let pool = self.db.get_postgres_connection_pool();
                (pool.size(), pool.num_idle())
            }
            _ => {
                let pool = self.db.get_sqlite_connection_pool();
                (pool.size(), pool.num_idle())
            }
        };
        PoolUsage {
            open,
            idle: u32::try_from(idle).unwrap_or(u32::MAX),
        }
    }
}
