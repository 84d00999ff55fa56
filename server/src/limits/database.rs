//! Whether the database answers, as the last probe found it (see
//! `app::watch_database`): readiness follows it, and while it does not
//! answer the limits layer answers unary calls UNAVAILABLE
//! `DATABASE_UNAVAILABLE` at once, and ends those already waiting on the
//! database the same way, instead of letting them wait out the outage.

use std::sync::Arc;

use tokio::sync::watch;

/// The shared reachability of the database; clones see the same state.
#[derive(Clone, Debug)]
pub struct DatabaseState {
    reachable: Arc<watch::Sender<bool>>,
}

impl Default for DatabaseState {
    /// Reachable: the store was opened (and migrated) before serving.
    fn default() -> Self {
        DatabaseState {
            reachable: Arc::new(watch::Sender::new(true)),
        }
    }
}

impl DatabaseState {
    /// Records what a probe found; true when that changed the state.
    pub fn set_reachable(&self, reachable: bool) -> bool {
        self.reachable.send_if_modified(|current| {
            let changed = *current != reachable;
            *current = reachable;
            changed
        })
    }

    /// Whether the last probe reached the database.
    pub fn is_reachable(&self) -> bool {
        *self.reachable.borrow()
    }

    /// Resolves once the database is found unreachable (at once when it is).
    pub async fn unreachable(&self) {
        let mut receiver = self.reachable.subscribe();
        // The sender lives as long as `self`: this cannot fail.
        let _ = receiver.wait_for(|reachable| !reachable).await;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn waiters_learn_when_the_database_goes_away() {
        let state = DatabaseState::default();
        assert!(state.is_reachable());
        assert!(!state.set_reachable(true), "no change");
        let waiter = tokio::spawn({
            let state = state.clone();
            async move { state.unreachable().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        assert!(state.set_reachable(false));
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("the waiter is woken")
            .unwrap();
        // Already unreachable: at once.
        state.unreachable().await;
        assert!(state.set_reachable(true));
    }
}
