//! Where emails go: `file://DIR` (one `.eml` per email; the embedded
//! default), `log` (a log line, no content), or `smtp://` / `smtps://` via
//! lettre with rustls, pooled connections and timeouts.

use std::path::PathBuf;
use std::time::Duration;

use lettre::transport::smtp::AsyncSmtpTransport;
use lettre::transport::smtp::PoolConfig;
use lettre::{AsyncTransport, Message, Tokio1Executor};
use tracing::info;

/// A transport URL that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("invalid mail_transport {url:?}: {reason}")]
pub struct TransportError {
    pub url: String,
    pub reason: String,
}

/// Why a send failed, classified per RFC 5321.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// 4xx replies, timeouts and connection errors: try again later.
    #[error("transient failure: {0}")]
    Transient(String),
    /// 5xx replies: do not try again.
    #[error("permanent failure: {0}")]
    Permanent(String),
}

/// A configured transport.
#[derive(Clone, Debug)]
pub enum Transport {
    File(PathBuf),
    Log,
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
}

impl Transport {
    /// Parses `file://DIR`, `log`, `smtp://[USER:PASS@]HOST[:PORT]` or
    /// `smtps://...` (see lettre's URL format for `?tls=required`).
    pub fn from_url(
        url: &str,
        timeout: Duration,
        connections: usize,
    ) -> Result<Transport, TransportError> {
        Self::check_url(url)?;
        if url == "log" {
            return Ok(Transport::Log);
        }
        if let Some(dir) = url.strip_prefix("file://") {
            return Ok(Transport::File(PathBuf::from(dir)));
        }
        let builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(url).map_err(|error| {
            TransportError {
                url: crate::config::redact_url(url),
                reason: error.to_string(),
            }
        })?;
        // One pooled connection per email in flight. lettre does not set
        // TCP_NODELAY, so each message can wait on a delayed ACK; parallel
        // connections hide that latency.
        let pool = PoolConfig::new().max_size(u32::try_from(connections.max(1)).unwrap_or(32));
        Ok(Transport::Smtp(
            builder.timeout(Some(timeout)).pool_config(pool).build(),
        ))
    }

    /// Checks `url` as [`Transport::from_url`] would, without opening
    /// anything (building an SMTP transport starts its connection pool).
    pub fn check_url(url: &str) -> Result<(), TransportError> {
        let invalid = |reason: String| TransportError {
            url: crate::config::redact_url(url),
            reason,
        };
        if url == "log" {
            return Ok(());
        }
        if let Some(dir) = url.strip_prefix("file://") {
            return if dir.is_empty() {
                Err(invalid("file:// needs a directory".to_owned()))
            } else {
                Ok(())
            };
        }
        if url.starts_with("smtp://") || url.starts_with("smtps://") {
            return AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
                .map(drop)
                .map_err(|error| invalid(error.to_string()));
        }
        Err(invalid(
            "expected file://DIR, log, smtp://HOST[:PORT] or smtps://HOST[:PORT]".to_owned(),
        ))
    }

    /// Sends `message`; `id` names the file of the file transport.
    pub async fn send(&self, id: &str, message: &Message) -> Result<(), SendError> {
        match self {
            Transport::Log => {
                info!(email = %id, "email not sent: the log transport only logs");
                Ok(())
            }
            Transport::File(dir) => write_file(dir, id, message).await,
            Transport::Smtp(smtp) => match smtp.send(message.clone()).await {
                Ok(_) => Ok(()),
                Err(error) if error.is_permanent() => Err(SendError::Permanent(error.to_string())),
                Err(error) => Err(SendError::Transient(error.to_string())),
            },
        }
    }
}

/// Writes `DIR/ID.eml` atomically (a temporary file renamed into place), so
/// a reader never sees half an email.
async fn write_file(dir: &PathBuf, id: &str, message: &Message) -> Result<(), SendError> {
    let failed =
        |error: std::io::Error| SendError::Transient(format!("{}: {error}", dir.display()));
    tokio::fs::create_dir_all(dir).await.map_err(failed)?;
    let final_path = dir.join(format!("{id}.eml"));
    let temporary = dir.join(format!(".{id}.eml.tmp"));
    tokio::fs::write(&temporary, message.formatted())
        .await
        .map_err(failed)?;
    tokio::fs::rename(&temporary, &final_path)
        .await
        .map_err(failed)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[tokio::test]
    async fn transport_urls() {
        let timeout = Duration::from_secs(5);
        assert!(matches!(
            Transport::from_url("log", timeout, 4),
            Ok(Transport::Log)
        ));
        assert!(matches!(
            Transport::from_url("file://mail-out", timeout, 4),
            Ok(Transport::File(dir)) if dir == Path::new("mail-out")
        ));
        assert!(matches!(
            Transport::from_url("smtp://user:secret@localhost:2525", timeout, 4),
            Ok(Transport::Smtp(_))
        ));
        assert!(Transport::check_url("smtps://mail.example.com:465").is_ok());
        let error = Transport::from_url("ftp://x:hunter2@host", timeout, 4).unwrap_err();
        assert!(!error.to_string().contains("hunter2"), "{error}");
        assert!(Transport::from_url("file://", timeout, 4).is_err());
    }
}
