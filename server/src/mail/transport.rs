//! Where emails go: `file://DIR` (one `.eml` per email; the embedded
//! default), `log` (a log line, no content), `smtp://` through Sesame's own
//! pool of `TCP_NODELAY` connections (see [`super::smtp`]; plain or
//! STARTTLS), or `smtps://` through lettre's pooled transport. Every SMTP
//! conversation is bounded by the configured timeout.
//!
//! `smtps://` (implicit TLS) stays on lettre's transport because lettre can
//! only start TLS on a stream it opened itself before the greeting; its
//! connections therefore run without `TCP_NODELAY` and are slower per
//! connection (about one delayed ACK per email).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use lettre::transport::smtp::AsyncSmtpTransport;
use lettre::transport::smtp::PoolConfig;
use lettre::{AsyncTransport, Message, Tokio1Executor};
use tracing::info;

use super::smtp::{SmtpPool, SmtpServer, classify};

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
    /// `smtp://`: Sesame's own pool of `TCP_NODELAY` connections.
    Smtp(Arc<SmtpPool>),
    /// `smtps://`: lettre's pooled transport, and the conversation timeout.
    Smtps(AsyncSmtpTransport<Tokio1Executor>, Duration),
}

impl Transport {
    /// Parses `file://DIR`, `log`, `smtp://[USER:PASS@]HOST[:PORT]` (with
    /// `?tls=required` or `?tls=opportunistic` for STARTTLS) or
    /// `smtps://...`, lettre's URL format. At most `connections` SMTP
    /// conversations run at once, each bounded by `timeout`.
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
        let invalid = |reason: String| TransportError {
            url: crate::config::redact_url(url),
            reason,
        };
        if url.starts_with("smtp://") {
            let server = SmtpServer::parse(url).map_err(invalid)?;
            return Ok(Transport::Smtp(Arc::new(SmtpPool::new(
                server,
                timeout,
                connections,
            ))));
        }
        let builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|error| invalid(error.to_string()))?;
        // One pooled connection per email in flight: without TCP_NODELAY
        // each message can wait on a delayed ACK, which parallel
        // connections hide.
        let pool = PoolConfig::new().max_size(u32::try_from(connections.max(1)).unwrap_or(32));
        Ok(Transport::Smtps(
            builder.timeout(Some(timeout)).pool_config(pool).build(),
            timeout,
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
        if url.starts_with("smtp://") {
            return SmtpServer::parse(url).map(drop).map_err(invalid);
        }
        if url.starts_with("smtps://") {
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
            Transport::Smtp(pool) => pool.send(message.envelope(), &message.formatted()).await,
            Transport::Smtps(smtp, timeout) => {
                match tokio::time::timeout(*timeout, smtp.send(message.clone())).await {
                    Ok(Ok(_response)) => Ok(()),
                    Ok(Err(error)) => Err(classify(&error)),
                    Err(_elapsed) => Err(SendError::Transient(format!(
                        "no reply within {} s",
                        timeout.as_secs_f64()
                    ))),
                }
            }
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
        assert!(matches!(
            Transport::from_url("smtps://mail.example.com:465", timeout, 4),
            Ok(Transport::Smtps(..))
        ));
        assert!(Transport::check_url("smtp://mail.example.com?tls=required").is_ok());
        assert!(Transport::check_url("smtp://mail.example.com?tls=sometimes").is_err());
        let error = Transport::check_url("smtp://x:hunter2@?tls=sometimes").unwrap_err();
        assert!(!error.to_string().contains("hunter2"), "{error}");
        let error = Transport::from_url("ftp://x:hunter2@host", timeout, 4).unwrap_err();
        assert!(!error.to_string().contains("hunter2"), "{error}");
        assert!(Transport::from_url("file://", timeout, 4).is_err());
    }
}
