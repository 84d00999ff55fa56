//! Wake-ups from other processes on PostgreSQL: a LISTEN connection that
//! signals a [`Notify`] whenever a commit elsewhere (another replica, a
//! separate worker) notifies a channel. What this process commits wakes its
//! own tasks in-process; this covers the rest, so background tasks wait for
//! work instead of polling for it, with a slow poll kept as a safety net.

use std::sync::Arc;
use std::time::Duration;

use sea_orm::sqlx::postgres::PgListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// The channel a commit that made emails due notifies, so the mail workers
/// of every process wake.
pub const EMAILS_CHANNEL: &str = "sesame_emails";

/// Listens on `channel` of the PostgreSQL database at `url` until
/// `shutdown`, waking `wake` on every notification, and once after each
/// (re)connection: what was committed while nobody listened is caught by
/// that wake. A lost connection is retried every second.
pub async fn wake_on_notify(
    url: String,
    channel: &'static str,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) {
    loop {
        let mut listener = match PgListener::connect(&url).await {
            Ok(listener) => listener,
            Err(error) => {
                warn!(error = %error, channel, "could not connect a listener; retrying");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        if let Err(error) = listener.listen(channel).await {
            warn!(error = %error, channel, "could not LISTEN; retrying");
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(Duration::from_secs(1)) => continue,
            }
        }
        info!(channel, "listening for other processes' commits");
        wake.notify_one();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                received = listener.recv() => match received {
                    Ok(notification) => {
                        debug!(channel, payload = notification.payload(), "notification");
                        wake.notify_one();
                    }
                    Err(error) => {
                        warn!(error = %error, channel, "listener failed; reconnecting");
                        break;
                    }
                }
            }
        }
    }
}
