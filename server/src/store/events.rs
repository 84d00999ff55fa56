//! The event log: append (sequence and hash chain assigned under the
//! counter row lock), read after a sequence, the paged audit trail, and
//! chain verification.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Set, Statement,
};
use tracing::instrument;

use super::entities::{event, event_counter};
use super::pagination::{self, EventPosition};
use super::{Result, Store, StoreError, from_micros, to_micros};
use crate::domain::{
    AccessRequestId, ChainedFields, EventKind, GENESIS_HASH, NewEvent, RecordedEvent, State,
};

/// PostgreSQL channel on which every commit announces its newest sequence.
pub const NOTIFY_CHANNEL: &str = "sesame_events";

/// Which events a reader wants. Empty fields match everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Any of these kinds; empty means every kind.
    pub kinds: Vec<EventKind>,
    pub access_request: Option<AccessRequestId>,
    pub actor: Option<String>,
    /// Occurred at or after.
    pub from: Option<DateTime<Utc>>,
    /// Occurred before.
    pub before: Option<DateTime<Utc>>,
}

impl EventFilter {
    /// Whether `event` passes the filter (the same test the SQL applies).
    pub fn matches(&self, event: &RecordedEvent) -> bool {
        (self.kinds.is_empty() || self.kinds.contains(&event.kind))
            && self
                .access_request
                .is_none_or(|id| id == event.access_request)
            && self
                .actor
                .as_ref()
                .is_none_or(|actor| *actor == event.actor)
            && self.from.is_none_or(|from| event.occurred_at >= from)
            && self.before.is_none_or(|before| event.occurred_at < before)
    }

    fn fingerprint(&self, caller: &str) -> String {
        let mut kinds: Vec<&str> = self.kinds.iter().map(|kind| kind.as_str()).collect();
        kinds.sort_unstable();
        pagination::fingerprint_text(&format!(
            "events|{caller}|{}|{}|{}|{}|{}",
            kinds.join(","),
            self.access_request
                .map(|id| id.to_string())
                .unwrap_or_default(),
            self.actor.clone().unwrap_or_default(),
            self.from
                .map(|t| t.timestamp_micros().to_string())
                .unwrap_or_default(),
            self.before
                .map(|t| t.timestamp_micros().to_string())
                .unwrap_or_default(),
        ))
    }

    fn apply(&self, mut select: sea_orm::Select<event::Entity>) -> sea_orm::Select<event::Entity> {
        if !self.kinds.is_empty() {
            select = select
                .filter(event::Column::EventType.is_in(self.kinds.iter().map(|k| k.as_str())));
        }
        if let Some(id) = self.access_request {
            select = select.filter(event::Column::AccessRequestId.eq(id.to_string()));
        }
        if let Some(actor) = &self.actor {
            select = select.filter(event::Column::Actor.eq(actor.as_str()));
        }
        if let Some(from) = self.from {
            select = select.filter(event::Column::OccurredAtUs.gte(to_micros(from)));
        }
        if let Some(before) = self.before {
            select = select.filter(event::Column::OccurredAtUs.lt(to_micros(before)));
        }
        select
    }
}

/// A page of the audit trail.
#[derive(Clone, Debug)]
pub struct EventPage {
    pub events: Vec<RecordedEvent>,
    pub next_page_token: Option<String>,
}

/// The outcome of a chain verification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainReport {
    /// First sequence checked.
    pub first_seq: i64,
    /// Last sequence checked and found intact (first_seq - 1 if none).
    pub last_verified_seq: i64,
    /// How many events were found intact.
    pub verified: i64,
    /// The first broken link and what is wrong with it.
    pub broken: Option<(i64, String)>,
    /// Where to continue when the range was longer than one call may check.
    pub next_start_seq: Option<i64>,
}

/// Appends the events of one transaction while touching the counter row
/// twice in all: the first append locks and reads it with `UPDATE ...
/// RETURNING` (the lock is held until the transaction ends, so sequences
/// become visible in the order they were assigned, with no gap, and each
/// hash chains to the one committed before it), later ones continue from
/// memory, and [`EventAppender::flush`] writes it back and, on PostgreSQL,
/// notifies the other replicas once. The store's one writer
/// (`commit.rs`) owns the only appender of a transaction and flushes it
/// before the commit.
#[derive(Debug, Default)]
pub(super) struct EventAppender {
    /// The last sequence and hash appended, once the counter is locked.
    head: Option<(i64, String)>,
}

impl EventAppender {
    /// Appends one event; returns its sequence.
    pub(super) async fn append(
        &mut self,
        txn: &DatabaseTransaction,
        new_event: &NewEvent,
    ) -> Result<i64> {
        let (last_seq, prev_hash) = match self.head.take() {
            Some(head) => head,
            None => lock_counter(txn).await?,
        };
        let seq = last_seq + 1;
        let data = new_event.data.to_string();
        let access_request_id = new_event.access_request.to_string();
        let occurred_at_us = to_micros(new_event.occurred_at);
        let hash = ChainedFields {
            seq,
            event_type: new_event.kind.as_str(),
            access_request_id: &access_request_id,
            actor: &new_event.actor,
            state: new_event.state.as_str(),
            occurred_at_us,
            data: &data,
        }
        .chain_hash(&prev_hash);
        let row = event::ActiveModel {
            seq: Set(seq),
            event_type: Set(new_event.kind.as_str().to_owned()),
            access_request_id: Set(access_request_id),
            actor: Set(new_event.actor.clone()),
            state: Set(new_event.state.as_str().to_owned()),
            data: Set(data),
            occurred_at_us: Set(occurred_at_us),
            prev_hash: Set(prev_hash),
            hash: Set(hash.clone()),
        };
        // Without RETURNING: on SQLite that would read the row back with a
        // statement prepared afresh each time.
        event::Entity::insert(row)
            .exec_without_returning(txn)
            .await?;
        self.head = Some((seq, hash));
        Ok(seq)
    }

    /// Writes the counter row back (the lock stays until the transaction
    /// ends). The next append locks and reads it again.
    pub(super) async fn flush(&mut self, txn: &DatabaseTransaction) -> Result<()> {
        let Some((seq, hash)) = self.head.take() else {
            return Ok(());
        };
        event_counter::Entity::update_many()
            .col_expr(event_counter::Column::LastSeq, Expr::value(seq))
            .col_expr(event_counter::Column::LastHash, Expr::value(hash))
            .filter(event_counter::Column::Id.eq(1))
            .exec(txn)
            .await?;
        if txn.get_database_backend() == DbBackend::Postgres {
            // Delivered to listeners on commit, in commit order.
            let notify = format!("SELECT pg_notify('{NOTIFY_CHANNEL}', '{seq}')");
            txn.execute_unprepared(&notify).await?;
        }
        Ok(())
    }
}

/// Locks the counter row until the transaction ends; its last sequence
/// and hash.
async fn lock_counter(txn: &DatabaseTransaction) -> Result<(i64, String)> {
    let statement = Statement::from_string(
        txn.get_database_backend(),
        "UPDATE event_counter SET last_seq = last_seq WHERE id = 1 RETURNING last_seq, last_hash",
    );
    let row = txn
        .query_one_raw(statement)
        .await?
        .ok_or_else(|| StoreError::Corrupt("event_counter row is missing".into()))?;
    Ok((row.try_get("", "last_seq")?, row.try_get("", "last_hash")?))
}

fn to_recorded(row: event::Model) -> Result<RecordedEvent> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("event {}: {what}", row.seq));
    Ok(RecordedEvent {
        seq: row.seq,
        kind: EventKind::parse(&row.event_type).ok_or_else(|| corrupt("unknown type"))?,
        access_request: row
            .access_request_id
            .parse()
            .map_err(|_| corrupt("bad access request id"))?,
        state: State::parse(&row.state).ok_or_else(|| corrupt("unknown state"))?,
        occurred_at: from_micros(row.occurred_at_us)?,
        actor: row.actor,
        data: row.data,
        prev_hash: row.prev_hash,
        hash: row.hash,
    })
}

/// Most events one verification call checks.
pub const MAX_VERIFY_EVENTS: i64 = 100_000;

impl Store {
    /// Tells the in-process hub that events were committed.
    pub(super) fn event_committed(&self) {
        self.commits.notify_one();
    }

    /// Resolves when this process commits events (a permit is kept if
    /// nobody is waiting, so no commit is missed).
    #[instrument(level = "debug", skip_all)]
    pub async fn event_commits(&self) {
        self.commits.notified().await;
    }

    /// The highest committed sequence (0 for an empty log). Every event up
    /// to it is committed and visible.
    #[instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn event_head(&self) -> Result<i64> {
        let head = event_counter::Entity::find_by_id(1)
            .one(&self.db)
            .await?
            .ok_or_else(|| StoreError::Corrupt("event_counter row is missing".into()))?;
        Ok(head.last_seq)
    }

    /// The oldest sequence still in the log, if any.
    #[instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn first_event_seq(&self) -> Result<Option<i64>> {
        let first = event::Entity::find()
            .order_by_asc(event::Column::Seq)
            .one(&self.db)
            .await?;
        Ok(first.map(|row| row.seq))
    }

    /// Events after `after_seq` (exclusive) up to `until_seq` (inclusive)
    /// that pass `filter`, oldest first, at most `limit`.
    #[instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn read_events(
        &self,
        after_seq: i64,
        until_seq: Option<i64>,
        filter: &EventFilter,
        limit: u64,
    ) -> Result<Vec<RecordedEvent>> {
        let mut select =
            filter.apply(event::Entity::find().filter(event::Column::Seq.gt(after_seq)));
        if let Some(until) = until_seq {
            select = select.filter(event::Column::Seq.lte(until));
        }
        let rows = select
            .order_by_asc(event::Column::Seq)
            .limit(limit)
            .all(&self.db)
            .await?;
        let mut events = Vec::with_capacity(rows.len());
        for mut row in rows {
            row.data = self
                .open_event_data(&row.access_request_id, row.data)
                .await?;
            events.push(to_recorded(row)?);
        }
        Ok(events)
    }

    /// A page of the audit trail, oldest first. Page tokens are bound to
    /// the filter and to `caller`.
    #[instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn list_events(
        &self,
        caller: &str,
        filter: &EventFilter,
        page_size: u32,
        page_token: Option<&str>,
    ) -> Result<EventPage> {
        let query = filter.fingerprint(caller);
        let after_seq = match page_token {
            Some(token) => {
                pagination::decode::<EventPosition>(&self.page_token_key, token, &query)?.after_seq
            }
            None => 0,
        };
        let mut events = self
            .read_events(after_seq, None, filter, u64::from(page_size) + 1)
            .await?;
        let has_more = events.len() > page_size as usize;
        events.truncate(page_size as usize);
        let next_page_token = match events.last() {
            Some(last) if has_more => Some(pagination::encode(
                &self.page_token_key,
                &EventPosition {
                    after_seq: last.seq,
                    query,
                },
            )),
            _ => None,
        };
        Ok(EventPage {
            events,
            next_page_token,
        })
    }

    /// Recomputes the hash chain from `start_seq` to `end_seq` (the end of
    /// the log when `None`), at most [`MAX_VERIFY_EVENTS`] per call, and
    /// reports the first broken link: an altered row (its hash no longer
    /// matches), a missing row (a gap, or a tail shorter than the counter
    /// says), or rows out of order (`prev_hash` not the previous hash).
    #[instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn verify_chain(&self, start_seq: i64, end_seq: Option<i64>) -> Result<ChainReport> {
        let start_seq = start_seq.max(1);
        let head = event_counter::Entity::find_by_id(1)
            .one(&self.db)
            .await?
            .ok_or_else(|| StoreError::Corrupt("event_counter row is missing".into()))?;
        let last_wanted = end_seq.unwrap_or(head.last_seq).min(head.last_seq);
        let limit_seq = last_wanted.min(start_seq - 1 + MAX_VERIFY_EVENTS);
        let mut report = ChainReport {
            first_seq: start_seq,
            last_verified_seq: start_seq - 1,
            verified: 0,
            broken: None,
            next_start_seq: None,
        };
        if start_seq > last_wanted {
            // Nothing to check: the range starts after the end of the log.
            return Ok(report);
        }
        let mut prev_hash = if start_seq == 1 {
            GENESIS_HASH.to_owned()
        } else {
            match event::Entity::find_by_id(start_seq - 1)
                .one(&self.db)
                .await?
            {
                Some(anchor) => anchor.hash,
                None => {
                    report.broken = Some((start_seq - 1, "event is missing".to_owned()));
                    return Ok(report);
                }
            }
        };
        let mut expected = start_seq;
        while expected <= limit_seq {
            let batch = event::Entity::find()
                .filter(event::Column::Seq.gte(expected))
                .filter(event::Column::Seq.lte(limit_seq))
                .order_by_asc(event::Column::Seq)
                .limit(1000)
                .all(&self.db)
                .await?;
            if batch.is_empty() {
                break;
            }
            for row in batch {
                if row.seq != expected {
                    report.broken = Some((expected, "event is missing".to_owned()));
                    return Ok(report);
                }
                if row.prev_hash != prev_hash {
                    report.broken = Some((
                        row.seq,
                        "prev_hash does not match the previous event: rows were removed or reordered"
                            .to_owned(),
                    ));
                    return Ok(report);
                }
                let recomputed = ChainedFields {
                    seq: row.seq,
                    event_type: &row.event_type,
                    access_request_id: &row.access_request_id,
                    actor: &row.actor,
                    state: &row.state,
                    occurred_at_us: row.occurred_at_us,
                    data: &row.data,
                }
                .chain_hash(&prev_hash);
                if recomputed != row.hash {
                    report.broken = Some((
                        row.seq,
                        "event content does not match its hash: the row was altered".to_owned(),
                    ));
                    return Ok(report);
                }
                prev_hash = row.hash;
                report.last_verified_seq = row.seq;
                report.verified += 1;
                expected += 1;
            }
        }
        if expected <= limit_seq {
            report.broken = Some((expected, "event is missing".to_owned()));
            return Ok(report);
        }
        if limit_seq < last_wanted {
            report.next_start_seq = Some(limit_seq + 1);
        } else if last_wanted == head.last_seq
            && report.last_verified_seq == head.last_seq
            && prev_hash != head.last_hash
        {
            report.broken = Some((
                head.last_seq,
                "the last event does not match the recorded chain head".to_owned(),
            ));
        }
        Ok(report)
    }
}
