//! One watcher's stream: `ready`, then a replay from the log when resuming,
//! then live events from the hub, with heartbeats when idle.
//!
//! The watcher subscribes to the hub BEFORE it reads the head of the log, so
//! every event after its starting position reaches it either from the log
//! or from the hub; events at or below its position are dropped, so the
//! seam between replay and live has no gap and no duplicate. When the hub
//! drops events for a watcher that lags, the watcher reads them from the
//! log. A watcher whose client stops reading ends, once `max_lag` events
//! were committed while it was stuck, with its cursor so the client can
//! resume; so does one whose transport accepts nothing for `stall` (a
//! client with a large HTTP/2 window fills it and the buffers first, and
//! then may never let `max_lag` events pile up). The watcher's presence
//! (what the caller counts it with) ends with its task, when the server
//! ends the stream, even if the stalled transport cannot deliver the end
//! yet.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{Semaphore, broadcast, mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Hub, SharedEvent};
use crate::store::{EventFilter, Store, StoreError};

/// Tuning of every watcher.
#[derive(Clone, Debug)]
pub struct WatchOptions {
    /// Idle time after which a heartbeat is sent.
    pub heartbeat: Duration,
    /// How many events may be committed while a watcher's client reads
    /// nothing before its stream ends with [`WatchEnd::TooSlow`].
    pub max_lag: i64,
    /// How long the transport may accept nothing before the stream ends
    /// with [`WatchEnd::TooSlow`].
    pub stall: Duration,
}

/// What a watcher asks for.
#[derive(Clone, Debug, Default)]
pub struct WatchRequest {
    /// The API key name of the caller: checked again every heartbeat
    /// interval, so revoking the key ends the stream.
    pub caller: Option<String>,
    /// Resume after this sequence; `None` starts at the head.
    pub after: Option<i64>,
    pub filter: EventFilter,
}

/// Why a watch could not start.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("the cursor is ahead of the event log (head is {head})")]
    CursorAhead { head: i64 },
    #[error(
        "the cursor is older than the retained event log (oldest event is {oldest}): list the current state again and watch without a cursor"
    )]
    CursorExpired { oldest: i64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One message for the watcher.
#[derive(Clone, Debug)]
pub enum WatchItem {
    /// The subscription is live; the stream starts after `cursor`.
    Ready {
        cursor: i64,
    },
    Event(Arc<SharedEvent>),
    /// Nothing to send for a while; the stream is at `cursor`.
    Heartbeat {
        cursor: i64,
    },
}

/// Why a stream ended early. Each carries the resume cursor.
#[derive(Debug)]
pub enum WatchEnd {
    TooSlow {
        cursor: i64,
        lag: i64,
    },
    /// The caller's API key was revoked.
    KeyRevoked {
        cursor: i64,
    },
    ShuttingDown {
        cursor: i64,
    },
    Failed {
        cursor: i64,
        error: StoreError,
    },
}

/// The two halves of a running watch: items in order, then, if the stream
/// ended early, why.
#[derive(Debug)]
pub struct WatchStream {
    pub items: mpsc::Receiver<WatchItem>,
    pub end: oneshot::Receiver<WatchEnd>,
}

/// Items buffered between the watcher task and the gRPC stream.
const OUTPUT_BUFFER: usize = 16;
/// Events read from the log per query while catching up.
const CATCH_UP_BATCH: u64 = 500;

/// Validates the cursor and starts the watcher task, which holds
/// `presence` until it ends.
pub async fn open(
    hub: &Hub,
    store: &Store,
    request: WatchRequest,
    options: WatchOptions,
    shutdown: CancellationToken,
    presence: impl Send + 'static,
) -> Result<WatchStream, WatchError> {
    // Subscribe first: anything committed after the head read below is
    // then certain to arrive through the hub.
    let receiver = hub.subscribe();
    let head = store.event_head().await?;
    if let Some(after) = request.after {
        if after > head {
            return Err(WatchError::CursorAhead { head });
        }
        if after < head {
            let oldest = store.first_event_seq().await?.unwrap_or(head + 1);
            if after < oldest - 1 {
                return Err(WatchError::CursorExpired { oldest });
            }
        }
    }
    let (items, items_out) = mpsc::channel(OUTPUT_BUFFER);
    let (end, end_out) = oneshot::channel();
    let watcher = Watcher {
        position: request.after.unwrap_or(head),
        caller: request.caller,
        idle_since: Instant::now(),
        catch_up: hub.catch_up_permits(),
        filter: request.filter,
        receiver,
        head: hub.head_watch(),
        store: store.clone(),
        items,
        options,
        shutdown,
    };
    tokio::spawn(async move {
        let reason = watcher.run().await;
        drop(presence);
        if let Some(reason) = reason {
            let _ = end.send(reason);
        }
    });
    Ok(WatchStream {
        items: items_out,
        end: end_out,
    })
}

/// Why the watcher loop stopped.
enum Stop {
    /// The client went away: nothing to report.
    ClientGone,
    /// Report this to the client.
    End(WatchEnd),
}

struct Watcher {
    /// Sequence of the last event delivered or filtered out.
    position: i64,
    caller: Option<String>,
    /// When the last item was sent; a heartbeat follows after `heartbeat`.
    idle_since: Instant,
    catch_up: Arc<Semaphore>,
    filter: EventFilter,
    receiver: broadcast::Receiver<Arc<SharedEvent>>,
    head: watch::Receiver<i64>,
    store: Store,
    items: mpsc::Sender<WatchItem>,
    options: WatchOptions,
    shutdown: CancellationToken,
}

impl Watcher {
    async fn run(mut self) -> Option<WatchEnd> {
        let cursor = self.position;
        let result = async {
            self.send(WatchItem::Ready { cursor }).await?;
            self.catch_up(None).await?;
            self.follow().await
        }
        .await;
        match result {
            Ok(()) | Err(Stop::ClientGone) => None,
            Err(Stop::End(reason)) => Some(reason),
        }
    }

    async fn follow(&mut self) -> Result<(), Stop> {
        let heartbeat = self.options.heartbeat;
        let mut recheck = tokio::time::interval_at(Instant::now() + heartbeat, heartbeat);
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => {
                    return Err(Stop::End(WatchEnd::ShuttingDown { cursor: self.position }));
                }
                () = self.items.closed() => return Err(Stop::ClientGone),
                received = self.receiver.recv() => match received {
                    Ok(event) => {
                        let seq = event.record.seq;
                        if seq <= self.position {
                            continue;
                        }
                        if seq > self.position + 1 {
                            self.catch_up(Some(seq - 1)).await?;
                        }
                        self.offer(event).await?;
                    }
                    Err(RecvError::Lagged(_)) => self.catch_up(None).await?,
                    Err(RecvError::Closed) => {
                        return Err(Stop::End(WatchEnd::ShuttingDown { cursor: self.position }));
                    }
                },
                () = tokio::time::sleep_until(self.idle_since + heartbeat) => {
                    let cursor = self.position;
                    self.send(WatchItem::Heartbeat { cursor }).await?;
                }
                _ = recheck.tick() => self.check_caller().await?,
            }
        }
    }

    /// Ends the stream once the caller's key is revoked.
    async fn check_caller(&self) -> Result<(), Stop> {
        let Some(caller) = &self.caller else {
            return Ok(());
        };
        match self.store.api_key_active(caller).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(Stop::End(WatchEnd::KeyRevoked {
                cursor: self.position,
            })),
            Err(error) => Err(self.failed(error)),
        }
    }

    /// Delivers every event after the position up to `until` (the head of
    /// the log when `None`) from the log.
    async fn catch_up(&mut self, until: Option<i64>) -> Result<(), Stop> {
        let target = match until {
            Some(until) => until,
            None => {
                let _permit = self.catch_up.acquire().await.map_err(|_| self.closing())?;
                self.store
                    .event_head()
                    .await
                    .map_err(|error| self.failed(error))?
            }
        };
        while self.position < target {
            let permit = self.catch_up.acquire().await.map_err(|_| self.closing())?;
            let batch = self
                .store
                .read_events(self.position, Some(target), &self.filter, CATCH_UP_BATCH)
                .await
                .map_err(|error| self.failed(error))?;
            drop(permit);
            let complete = (batch.len() as u64) < CATCH_UP_BATCH;
            for record in batch {
                let seq = record.seq;
                self.send(WatchItem::Event(SharedEvent::new(record)))
                    .await?;
                self.position = seq;
            }
            if complete {
                // The rest up to the target did not pass the filter.
                self.position = target;
            }
        }
        Ok(())
    }

    /// Delivers a live event if it passes the filter; advances either way.
    async fn offer(&mut self, event: Arc<SharedEvent>) -> Result<(), Stop> {
        let seq = event.record.seq;
        if self.filter.matches(&event.record) {
            self.send(WatchItem::Event(event)).await?;
        }
        self.position = seq;
        Ok(())
    }

    /// Sends one item. A client that reads, however slowly, is never cut
    /// off: what it misses from the hub it reads from the log. A client that
    /// reads nothing while more than `max_lag` events are committed, or for
    /// `stall`, ends with its cursor; so does every stream on shutdown.
    async fn send(&mut self, item: WatchItem) -> Result<(), Stop> {
        // Room in the buffer: no timers to arm.
        let item = match self.items.try_send(item) {
            Ok(()) => {
                self.idle_since = Instant::now();
                return Ok(());
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(Stop::ClientGone),
            Err(mpsc::error::TrySendError::Full(item)) => item,
        };
        let position = self.position;
        let max_lag = self.options.max_lag;
        let stall = self.options.stall;
        let mut head = self.head.clone();
        let head_before = *head.borrow_and_update();
        let head_now = self.head.clone();
        let stalled = async move {
            let reached = head
                .wait_for(|head| head - head_before > max_lag)
                .await
                .map(|head| *head - position);
            match reached {
                Ok(lag) => lag,
                // The hub stopped: only shutdown or the client can end this.
                Err(_) => std::future::pending().await,
            }
        };
        tokio::select! {
            sent = self.items.send(item) => {
                sent.map_err(|_| Stop::ClientGone)?;
                self.idle_since = Instant::now();
                Ok(())
            }
            lag = stalled => {
                Err(Stop::End(WatchEnd::TooSlow { cursor: position, lag }))
            }
            () = tokio::time::sleep(stall) => {
                let lag = *head_now.borrow() - position;
                Err(Stop::End(WatchEnd::TooSlow { cursor: position, lag }))
            }
            () = self.shutdown.cancelled() => {
                Err(Stop::End(WatchEnd::ShuttingDown { cursor: position }))
            }
        }
    }

    fn closing(&self) -> Stop {
        Stop::End(WatchEnd::ShuttingDown {
            cursor: self.position,
        })
    }

    fn failed(&self, error: StoreError) -> Stop {
        Stop::End(WatchEnd::Failed {
            cursor: self.position,
            error,
        })
    }
}
