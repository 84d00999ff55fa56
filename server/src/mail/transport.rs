//! Where emails go. Every transport takes an [`OutgoingEmail`] (rendered
//! parts, addresses, identifiers); the URL is parsed once into a
//! [`TransportUrl`]. `file://DIR` (one `.eml` per email; the embedded
//! default), `log` (a log line, no content), `smtp://` through Sesame's own
//! pool of `TCP_NODELAY` connections (see [`super::smtp`]; plain or
//! STARTTLS), `smtps://` through lettre's pooled transport, or the HTTP
//! providers `resend://` and `sendgrid://` (see [`super::providers`]). Every
//! conversation is bounded by the configured timeout. The SMTP transports
//! and the file one build the MIME message from the parts and DKIM-sign it
//! when a signer is configured; the providers sign with their own DKIM.
//!
//! `smtps://` (implicit TLS) stays on lettre's transport because lettre can
//! only start TLS on a stream it opened itself before the greeting; its
//! connections therefore run without `TCP_NODELAY` and are slower per
//! connection (about one delayed ACK per email).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use lettre::message::dkim::DkimConfig;
use lettre::transport::smtp::{AsyncSmtpTransport, AsyncSmtpTransportBuilder, PoolConfig};
use lettre::{AsyncTransport, Message, Tokio1Executor};
use tracing::info;

use super::OutgoingEmail;
use super::providers::{HttpProvider, ProviderKind, ProviderMessageId, ProviderSettings};
use super::smtp::{SmtpPool, SmtpServer, classify};
use crate::redact::redact_url;

/// A transport URL that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("invalid mail_transport {url:?}: {reason}")]
pub struct TransportError {
    /// The URL, its password redacted.
    pub url: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Why a send failed, classified per RFC 5321 (SMTP) or by HTTP status
/// (providers).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// SMTP 4xx replies, timeouts and connection errors: try again later.
    #[error("transient failure: {0}")]
    Transient(String),
    /// The provider is busy, down or out of quota (HTTP 429, 5xx): try
    /// again later, not before the wait it asked for, when it did.
    #[error("transient failure: {0}")]
    Throttled(String, Option<Duration>),
    /// The request went out and no answer came back: the email may have
    /// been accepted. Retried later on the same provider only, with the same
    /// idempotency key, never handed to another one.
    #[error("unknown outcome: {0}")]
    Unknown(String),
    /// SMTP 5xx replies, HTTP 4xx validation errors: do not try again.
    #[error("permanent failure: {0}")]
    Permanent(String),
}

impl SendError {
    /// The words of the failure, without its class.
    pub fn message(&self) -> &str {
        match self {
            SendError::Transient(message)
            | SendError::Throttled(message, _)
            | SendError::Unknown(message)
            | SendError::Permanent(message) => message,
        }
    }
}

/// A transport URL, parsed and checked once; nothing is opened yet.
#[derive(Clone)]
pub enum TransportUrl {
    /// `log`.
    Log,
    /// `file://DIR`.
    File(PathBuf),
    /// `smtp://...`: a server for Sesame's own connection pool.
    Smtp(SmtpServer),
    /// `smtps://...`: lettre's transport, configured but not built (building
    /// it starts its connection pool).
    Smtps(Box<AsyncSmtpTransportBuilder>),
    /// `resend://` or `sendgrid://`: an HTTP provider, whose base URL and
    /// API key are settings of their own.
    Provider(ProviderKind),
}

impl std::fmt::Debug for TransportUrl {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TransportUrl::Log => formatter.write_str("Log"),
            TransportUrl::File(dir) => formatter.debug_tuple("File").field(dir).finish(),
            TransportUrl::Smtp(server) => formatter.debug_tuple("Smtp").field(server).finish(),
            // The builder holds the credentials: not shown.
            TransportUrl::Smtps(_) => formatter.write_str("Smtps(..)"),
            TransportUrl::Provider(kind) => formatter.debug_tuple("Provider").field(kind).finish(),
        }
    }
}

impl TransportUrl {
    /// Parses `file://DIR`, `log`, `smtp://[USER:PASS@]HOST[:PORT]` (with
    /// `?tls=required` or `?tls=opportunistic` for STARTTLS),
    /// `smtps://...`, lettre's URL format, `resend://` or `sendgrid://`,
    /// without opening anything. The error never shows the URL's password.
    pub fn parse(url: &str) -> Result<TransportUrl, TransportError> {
        let invalid = |reason: String| TransportError {
            url: redact_url(url),
            reason,
        };
        if url == "log" {
            return Ok(TransportUrl::Log);
        }
        if let Some(dir) = url.strip_prefix("file://") {
            if dir.is_empty() {
                return Err(invalid("file:// needs a directory".to_owned()));
            }
            return Ok(TransportUrl::File(PathBuf::from(dir)));
        }
        if url.starts_with("smtp://") {
            return SmtpServer::parse(url)
                .map(TransportUrl::Smtp)
                .map_err(invalid);
        }
        for kind in [ProviderKind::Resend, ProviderKind::SendGrid] {
            if let Some(rest) = url.strip_prefix(kind.as_str())
                && let Some(rest) = rest.strip_prefix("://")
            {
                if !rest.is_empty() {
                    return Err(invalid(format!(
                        "{}:// takes nothing after it: set the API's base URL with \
                         mail_{}_base_url",
                        kind.as_str(),
                        kind.as_str()
                    )));
                }
                return Ok(TransportUrl::Provider(kind));
            }
        }
        if url.starts_with("smtps://") {
            return AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
                .map(|builder| TransportUrl::Smtps(Box::new(builder)))
                .map_err(|error| invalid(error.to_string()));
        }
        Err(invalid(
            "expected file://DIR, log, smtp://HOST[:PORT], smtps://HOST[:PORT], resend:// or \
             sendgrid://"
                .to_owned(),
        ))
    }
}

/// How a transport sends, besides where.
#[derive(Clone, Debug, Default)]
pub struct TransportOptions {
    /// Bound of every SMTP conversation.
    pub timeout: Duration,
    /// SMTP conversations at once (pooled connections).
    pub connections: usize,
    /// DKIM signer of the messages the SMTP and file transports build.
    pub dkim: Option<Arc<DkimConfig>>,
    /// The HTTP providers' base URLs and API keys, for `resend://` and
    /// `sendgrid://`.
    pub providers: Vec<ProviderSettings>,
}

/// A configured transport.
#[derive(Clone)]
pub struct Transport {
    route: Route,
    dkim: Option<Arc<DkimConfig>>,
}

/// Where a transport's emails go.
#[derive(Clone, Debug)]
enum Route {
    File(PathBuf),
    Log,
    /// `smtp://`: Sesame's own pool of `TCP_NODELAY` connections.
    Smtp(Arc<SmtpPool>),
    /// `smtps://`: lettre's pooled transport, and the conversation timeout.
    Smtps(AsyncSmtpTransport<Tokio1Executor>, Duration),
    /// `resend://`, `sendgrid://`.
    Http(HttpProvider),
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The DKIM key is not shown, only whether emails are signed.
        formatter
            .debug_struct("Transport")
            .field("route", &self.route)
            .field("dkim", &self.dkim.is_some())
            .finish()
    }
}

impl Transport {
    /// The transport of a parsed URL. An SMTP pool opens nothing until its
    /// first send; lettre's `smtps://` pool starts here (inside a Tokio
    /// runtime). A provider needs its settings in `options`.
    pub fn new(url: TransportUrl, options: TransportOptions) -> Result<Transport, TransportError> {
        let route = match url {
            TransportUrl::Provider(kind) => {
                let invalid = |reason: String| TransportError {
                    url: format!("{}://", kind.as_str()),
                    reason,
                };
                let settings = options
                    .providers
                    .iter()
                    .find(|settings| settings.kind == kind)
                    .ok_or_else(|| {
                        invalid(format!(
                            "no API key: set mail_{0}_api_key_file, or \
                             SESAME_MAIL_{1}_API_KEY in the environment",
                            kind.as_str(),
                            kind.as_str().to_uppercase()
                        ))
                    })?;
                Route::Http(HttpProvider::new(settings.clone(), options.timeout).map_err(invalid)?)
            }
            TransportUrl::Log => Route::Log,
            TransportUrl::File(dir) => Route::File(dir),
            TransportUrl::Smtp(server) => Route::Smtp(Arc::new(SmtpPool::new(
                server,
                options.timeout,
                options.connections,
            ))),
            TransportUrl::Smtps(builder) => {
                // One pooled connection per email in flight: without
                // TCP_NODELAY each message can wait on a delayed ACK, which
                // parallel connections hide.
                let max_size = u32::try_from(options.connections.max(1)).unwrap_or(32);
                let pool = PoolConfig::new().max_size(max_size);
                Route::Smtps(
                    builder
                        .timeout(Some(options.timeout))
                        .pool_config(pool)
                        .build(),
                    options.timeout,
                )
            }
        };
        Ok(Transport {
            route,
            dkim: options.dkim,
        })
    }

    /// The transport's kind, as outbox rows and metrics name it: `file`,
    /// `log`, `smtp`, `smtps`, `resend` or `sendgrid`.
    pub fn kind(&self) -> &'static str {
        match &self.route {
            Route::File(_) => "file",
            Route::Log => "log",
            Route::Smtp(_) => "smtp",
            Route::Smtps(..) => "smtps",
            Route::Http(provider) => provider.kind().as_str(),
        }
    }

    /// Parses `url` (see [`TransportUrl::parse`]) into a transport without
    /// DKIM signing. At most `connections` SMTP conversations run at once,
    /// each bounded by `timeout`.
    pub fn from_url(
        url: &str,
        timeout: Duration,
        connections: usize,
    ) -> Result<Transport, TransportError> {
        let options = TransportOptions {
            timeout,
            connections,
            dkim: None,
            providers: Vec::new(),
        };
        Transport::new(TransportUrl::parse(url)?, options)
    }

    /// Sends `email`: through SMTP as a (signed) MIME message, into its
    /// `.eml` file, as a log line, or through a provider's API. `Ok` carries
    /// the provider's id of the email (HTTP providers only).
    pub async fn send(&self, email: &OutgoingEmail) -> Result<ProviderMessageId, SendError> {
        let dkim = self.dkim.as_deref();
        match &self.route {
            Route::Log => {
                info!(email = %email.id, "email not sent: the log transport only logs");
                Ok(None)
            }
            Route::File(dir) => write_file(dir, &email.id, &email.to_message(dkim)?)
                .await
                .map(|()| None),
            Route::Smtp(pool) => {
                let message = email.to_message(dkim)?;
                pool.send(message.envelope(), &message.formatted())
                    .await
                    .map(|()| None)
            }
            Route::Smtps(smtp, timeout) => send_smtps(smtp, *timeout, email.to_message(dkim)?)
                .await
                .map(|()| None),
            Route::Http(provider) => provider.send(email).await,
        }
    }
}

/// Sends through lettre's `smtps://` transport, bounded by `timeout`.
async fn send_smtps(
    smtp: &AsyncSmtpTransport<Tokio1Executor>,
    timeout: Duration,
    message: Message,
) -> Result<(), SendError> {
    match tokio::time::timeout(timeout, smtp.send(message)).await {
        Ok(Ok(_response)) => Ok(()),
        Ok(Err(error)) => Err(classify(&error)),
        Err(_elapsed) => Err(SendError::Transient(format!(
            "no reply within {} s",
            timeout.as_secs_f64()
        ))),
    }
}

/// Writes `DIR/ID.eml` atomically (a temporary file renamed into place), so
/// a reader never sees half an email.
async fn write_file(dir: &Path, id: &str, message: &Message) -> Result<(), SendError> {
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
        assert!(matches!(TransportUrl::parse("log"), Ok(TransportUrl::Log)));
        assert!(matches!(
            TransportUrl::parse("file://mail-out"),
            Ok(TransportUrl::File(dir)) if dir == Path::new("mail-out")
        ));
        assert!(matches!(
            TransportUrl::parse("smtp://user:secret@localhost:2525"),
            Ok(TransportUrl::Smtp(_))
        ));
        assert!(matches!(
            Transport::from_url("smtp://user:secret@localhost:2525", timeout, 4),
            Ok(Transport {
                route: Route::Smtp(_),
                dkim: None
            })
        ));
        assert!(matches!(
            TransportUrl::parse("smtps://mail.example.com:465"),
            Ok(TransportUrl::Smtps(_))
        ));
        assert!(matches!(
            Transport::from_url("smtps://mail.example.com:465", timeout, 4),
            Ok(Transport {
                route: Route::Smtps(..),
                ..
            })
        ));
        assert!(TransportUrl::parse("smtp://mail.example.com?tls=required").is_ok());
        assert!(TransportUrl::parse("smtp://mail.example.com?tls=sometimes").is_err());
        let error = TransportUrl::parse("smtp://x:hunter2@?tls=sometimes").unwrap_err();
        assert!(!error.to_string().contains("hunter2"), "{error}");
        let error = Transport::from_url("ftp://x:hunter2@host", timeout, 4).unwrap_err();
        assert!(!error.to_string().contains("hunter2"), "{error}");
        assert!(Transport::from_url("file://", timeout, 4).is_err());
        let shown = format!(
            "{:?}",
            TransportUrl::parse("smtps://u:hunter2@h:465").unwrap()
        );
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    /// The file transport writes the MIME message an SMTP server would get.
    #[tokio::test]
    async fn the_file_transport_writes_one_eml_per_email() {
        let dir = tempfile::tempdir().unwrap();
        let transport = Transport::from_url(
            &format!("file://{}", dir.path().display()),
            Duration::ZERO,
            1,
        )
        .unwrap();
        let email = OutgoingEmail {
            id: "0190".to_owned(),
            from: "Sesame <sesame@localhost>".parse().unwrap(),
            to: "ada@example.com".parse().unwrap(),
            message_id: "<0190@sesame>".to_owned(),
            idempotency_key: "0190".to_owned(),
            subject: "Hello".to_owned(),
            text: "text part".to_owned(),
            html: "<p>html part</p>".to_owned(),
            headers: Vec::new(),
            template: None,
        };
        transport.send(&email).await.unwrap();
        let written = std::fs::read_to_string(dir.path().join("0190.eml")).unwrap();
        assert!(
            written.contains("Message-ID: <0190@sesame>\r\n"),
            "{written}"
        );
        assert!(written.contains("text part"), "{written}");
    }
}
