//! Live events: the in-process hub that publishes committed events once to
//! every watcher, the PostgreSQL LISTEN/NOTIFY bridge that tells a replica
//! about other replicas' commits, and the per-watcher stream logic.

mod hub;
mod watch;

pub use hub::{Hub, HubOptions, SharedEvent};
pub use watch::{WatchEnd, WatchError, WatchItem, WatchOptions, WatchRequest, WatchStream, open};
