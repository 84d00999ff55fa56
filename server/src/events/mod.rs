//! Live events: the in-process hub that publishes committed events once to
//! every watcher, the PostgreSQL LISTEN/NOTIFY bridge that tells a replica
//! about other replicas' commits, the per-watcher stream logic, and the
//! wire form of an event.

mod hub;
mod watch;
pub mod wire;

pub use hub::{Hub, HubOptions, SharedEvent};
pub use watch::{WatchEnd, WatchError, WatchItem, WatchOptions, WatchRequest, WatchStream, open};
