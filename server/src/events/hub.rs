//! The hub: one publisher task per server reads newly committed events from
//! the log, in sequence order, and broadcasts each one, converted to its
//! wire form once, to every watcher. Writers never wait for watchers: the
//! broadcast channel drops the oldest entries for a receiver that lags, and
//! that receiver catches up from the log.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sesame_proto::v1 as pb;
use tokio::sync::{Notify, Semaphore, broadcast, watch};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::domain::RecordedEvent;
use crate::redact::SecretUrl;
use crate::store::{EventFilter, NOTIFY_CHANNEL, Store, StoreError, wake_on_notify};

/// An event as fanned out: the record (for filtering) and its wire form,
/// built once and shared by every watcher.
#[derive(Debug)]
pub struct SharedEvent {
    pub record: RecordedEvent,
    pub wire: pb::Event,
}

impl SharedEvent {
    /// Wraps a record read from the log.
    pub fn new(record: RecordedEvent) -> Arc<SharedEvent> {
        let wire = super::wire::event(&record);
        Arc::new(SharedEvent { record, wire })
    }
}

/// Tuning of the hub.
#[derive(Clone, Debug)]
pub struct HubOptions {
    /// Events kept for receivers that fall behind before they must read the
    /// log instead.
    pub buffer: usize,
    /// Safety net: how often the log is polled when no commit was heard of.
    pub poll_interval: Duration,
    /// The SQLite database's file: at each poll the log is read only when
    /// the file or its write-ahead log changed (another process committed).
    pub sqlite_file: Option<PathBuf>,
    /// PostgreSQL URL to LISTEN on, for commits of other replicas.
    pub listen_url: Option<SecretUrl>,
    /// Most log reads that catching-up watchers may run at once, so that a
    /// burst of lagging watchers cannot take every pooled connection from
    /// the writers.
    pub catch_up_readers: usize,
}

/// Hands out subscriptions to the live event stream. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Hub {
    sender: broadcast::Sender<Arc<SharedEvent>>,
    head: watch::Receiver<i64>,
    catch_up: Arc<Semaphore>,
}

const PUBLISH_BATCH: u64 = 1000;

impl Hub {
    /// Starts the publisher (and, on PostgreSQL, the listener) until
    /// `shutdown` is cancelled.
    pub async fn start(
        store: Store,
        options: HubOptions,
        shutdown: CancellationToken,
    ) -> Result<Hub, StoreError> {
        let start_head = store.event_head().await?;
        let (sender, _) = broadcast::channel(options.buffer.max(1));
        let (head_sender, head) = watch::channel(start_head);
        let wake = Arc::new(Notify::new());
        if let Some(SecretUrl(url)) = options.listen_url.clone() {
            tokio::spawn(wake_on_notify(
                url,
                NOTIFY_CHANNEL,
                wake.clone(),
                shutdown.clone(),
            ));
        }
        tokio::spawn(publish(
            store,
            sender.clone(),
            head_sender,
            wake,
            options.poll_interval,
            options.sqlite_file,
            shutdown,
        ));
        Ok(Hub {
            sender,
            head,
            catch_up: Arc::new(Semaphore::new(options.catch_up_readers.max(1))),
        })
    }

    /// A receiver of every event published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<SharedEvent>> {
        self.sender.subscribe()
    }

    /// Follows the published head.
    pub fn head_watch(&self) -> watch::Receiver<i64> {
        self.head.clone()
    }

    /// Permits for watchers' catch-up reads of the log.
    pub fn catch_up_permits(&self) -> Arc<Semaphore> {
        self.catch_up.clone()
    }
}

async fn publish(
    store: Store,
    sender: broadcast::Sender<Arc<SharedEvent>>,
    head: watch::Sender<i64>,
    wake: Arc<Notify>,
    poll_interval: Duration,
    sqlite_file: Option<PathBuf>,
    shutdown: CancellationToken,
) {
    let mut published = *head.borrow();
    loop {
        // Taken before the read: a commit after it changes the files.
        let mut read_at = sqlite_file.as_deref().map(FileStamp::of);
        loop {
            let batch = match store
                .read_events(published, None, &EventFilter::default(), PUBLISH_BATCH)
                .await
            {
                Ok(batch) => batch,
                Err(error) => {
                    warn!(error = %error, "could not read new events; will retry");
                    // The next poll reads again, changed files or not.
                    read_at = None;
                    break;
                }
            };
            let full = batch.len() as u64 == PUBLISH_BATCH;
            for record in batch {
                published = record.seq;
                // No receiver is fine: nobody is watching.
                let _ = sender.send(SharedEvent::new(record));
            }
            head.send_replace(published);
            if !full {
                break;
            }
        }
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = store.event_commits() => break,
                () = wake.notified() => break,
                () = tokio::time::sleep(poll_interval) => {
                    // On SQLite, nothing changed on disk since a read that
                    // worked: nobody committed.
                    let unchanged = read_at.is_some()
                        && sqlite_file.as_deref().map(FileStamp::of) == read_at;
                    if !unchanged {
                        break;
                    }
                }
            }
        }
    }
}

/// The sizes and modification times of a SQLite database file and its
/// write-ahead log: a commit by any process changes them.
#[derive(Debug, PartialEq, Eq)]
struct FileStamp([Option<(u64, SystemTime)>; 2]);

impl FileStamp {
    fn of(database: &Path) -> FileStamp {
        let mut wal = database.as_os_str().to_owned();
        wal.push("-wal");
        let stamp = |path: &Path| {
            let metadata = std::fs::metadata(path).ok()?;
            Some((metadata.len(), metadata.modified().ok()?))
        };
        FileStamp([stamp(database), stamp(Path::new(&wal))])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards against the database password reaching a log line through
    /// the hub's options.
    #[test]
    fn the_listen_url_password_is_redacted() {
        let options = HubOptions {
            buffer: 1,
            poll_interval: Duration::from_secs(1),
            listen_url: Some(SecretUrl("postgres://sesame:hunter2@db/sesame".into())),
            catch_up_readers: 1,
            sqlite_file: None,
        };
        let shown = format!("{options:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("postgres://sesame:***@db/sesame"), "{shown}");
    }
}
