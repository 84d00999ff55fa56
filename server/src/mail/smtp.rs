//! Sesame's own pool of SMTP connections for `smtp://` transports. lettre
//! speaks the protocol, but the TCP connections are opened here, with
//! `TCP_NODELAY`: lettre's own connections leave Nagle's algorithm on, so
//! the last small write of every message (`\r\n.\r\n`) waited on the
//! server's delayed ACK, about 40 ms per email.
//!
//! At most `connections` conversations run at a time. A connection that
//! delivered its message goes back to the pool; one that returned an error
//! is aborted and never reused; one idle for longer than
//! [`IDLE_CHECK_AFTER`] is checked with NOOP before reuse.

use std::borrow::Cow;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, DEFAULT_MECHANISMS};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tracing::debug;

use super::SendError;

/// The port of `smtp://HOST` (RFC 5321).
const SMTP_PORT: u16 = 25;
/// The port of `smtp://HOST?tls=...` (submission, RFC 6409).
const SUBMISSION_PORT: u16 = 587;
/// A connection idle for longer than this is checked with NOOP before it
/// carries another message: servers close idle connections after a while
/// (Postfix after 300 s), and a send on a closed connection would count as
/// a failed attempt.
pub const IDLE_CHECK_AFTER: Duration = Duration::from_secs(30);

/// Whether and how a connection is upgraded with STARTTLS.
#[derive(Clone)]
pub enum StartTls {
    /// Plain text (`smtp://HOST`).
    Never,
    /// STARTTLS when the server offers it (`?tls=opportunistic`).
    Opportunistic(TlsParameters),
    /// STARTTLS or no conversation (`?tls=required`).
    Required(TlsParameters),
}

impl std::fmt::Debug for StartTls {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // lettre's TlsParameters has no Debug: show the mode and domain.
        match self {
            StartTls::Never => formatter.write_str("Never"),
            StartTls::Opportunistic(parameters) => formatter
                .debug_tuple("Opportunistic")
                .field(&parameters.domain())
                .finish(),
            StartTls::Required(parameters) => formatter
                .debug_tuple("Required")
                .field(&parameters.domain())
                .finish(),
        }
    }
}

/// An SMTP server as named by `smtp://[USER:PASS@]HOST[:PORT][/EHLO-NAME][?tls=...]`,
/// the URL format lettre reads (credentials only when a password is given,
/// percent-decoded). Its `Debug` output never shows the password.
#[derive(Clone, Debug)]
pub struct SmtpServer {
    pub host: String,
    pub port: u16,
    pub start_tls: StartTls,
    pub credentials: Option<Credentials>,
    /// The name sent with EHLO: the URL's path, or this machine's name.
    pub hello_name: ClientId,
}

impl SmtpServer {
    /// Parses an `smtp://` URL; the error is the reason, without the URL.
    pub fn parse(text: &str) -> Result<SmtpServer, String> {
        let url = url::Url::parse(text).map_err(|error| error.to_string())?;
        if url.scheme() != "smtp" {
            return Err(format!("expected smtp://, not {}://", url.scheme()));
        }
        // The bare host: IPv6 addresses without their brackets.
        let host = match url.host() {
            Some(url::Host::Domain(domain)) => domain.to_owned(),
            Some(url::Host::Ipv4(address)) => address.to_string(),
            Some(url::Host::Ipv6(address)) => address.to_string(),
            None => return Err("smtp host undefined".to_owned()),
        };
        let tls = url
            .query_pairs()
            .find(|(key, _)| key == "tls")
            .map(|(_, value)| value.into_owned());
        let tls_parameters =
            || TlsParameters::new(host.clone()).map_err(|error| format!("tls parameters: {error}"));
        let (start_tls, default_port) = match tls.as_deref() {
            None => (StartTls::Never, SMTP_PORT),
            Some("opportunistic") => (StartTls::Opportunistic(tls_parameters()?), SUBMISSION_PORT),
            Some("required") => (StartTls::Required(tls_parameters()?), SUBMISSION_PORT),
            Some(other) => {
                return Err(format!(
                    "unknown tls parameter {other:?}: expected required or opportunistic"
                ));
            }
        };
        let credentials = match url.password() {
            Some(password) => Some(Credentials::new(
                percent_decode(url.username())?,
                percent_decode(password)?,
            )),
            None => None,
        };
        let path = url.path().trim_matches('/');
        let hello_name = if path.is_empty() {
            ClientId::default()
        } else {
            ClientId::Domain(path.to_owned())
        };
        Ok(SmtpServer {
            port: url.port().unwrap_or(default_port),
            host,
            start_tls,
            credentials,
            hello_name,
        })
    }
}

fn percent_decode(text: &str) -> Result<String, String> {
    percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .map(Cow::into_owned)
        .map_err(|_| "credentials are not valid UTF-8 once percent-decoded".to_owned())
}

/// A connection waiting in the pool, and since when.
struct Idle {
    connection: AsyncSmtpConnection,
    since: Instant,
}

/// The pool: at most `connections` conversations at a time, each bounded
/// by `timeout` from connect to the reply to the message.
pub struct SmtpPool {
    server: SmtpServer,
    timeout: Duration,
    slots: Semaphore,
    idle: Mutex<Vec<Idle>>,
}

impl std::fmt::Debug for SmtpPool {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("SmtpPool")
            .field("server", &self.server)
            .field("timeout", &self.timeout)
            .field("free_slots", &self.slots.available_permits())
            .finish_non_exhaustive()
    }
}

impl SmtpPool {
    /// A pool that opens nothing until the first send.
    pub fn new(server: SmtpServer, timeout: Duration, connections: usize) -> SmtpPool {
        SmtpPool {
            server,
            timeout,
            slots: Semaphore::new(connections.max(1)),
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Sends `email` (the formatted message) to the envelope's recipients.
    /// Waiting for a free slot is not counted in the timeout; the whole
    /// conversation (connect, EHLO, STARTTLS, AUTH, MAIL/RCPT/DATA) is.
    pub async fn send(&self, envelope: &Envelope, email: &[u8]) -> Result<(), SendError> {
        let Ok(_slot) = self.slots.acquire().await else {
            return Err(SendError::Transient("the smtp pool is closed".to_owned()));
        };
        // On timeout the conversation's future is dropped, and with it its
        // connection: the socket closes and nothing is pooled.
        match tokio::time::timeout(self.timeout, self.converse(envelope, email)).await {
            Ok(result) => result,
            Err(_elapsed) => Err(SendError::Transient(format!(
                "no reply from {}:{} within {} s",
                self.server.host,
                self.server.port,
                self.timeout.as_secs_f64()
            ))),
        }
    }

    async fn converse(&self, envelope: &Envelope, email: &[u8]) -> Result<(), SendError> {
        let mut connection = self.checkout().await?;
        match connection.send(envelope, email).await {
            Ok(_response) => {
                self.checkin(connection);
                Ok(())
            }
            Err(error) => {
                discard(connection).await;
                Err(classify(&error))
            }
        }
    }

    /// The most recently used idle connection that is still alive, or a
    /// new one.
    async fn checkout(&self) -> Result<AsyncSmtpConnection, SendError> {
        loop {
            let idle = self
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop();
            let Some(Idle {
                mut connection,
                since,
            }) = idle
            else {
                return self.connect().await;
            };
            if since.elapsed() <= IDLE_CHECK_AFTER || connection.test_connected().await {
                return Ok(connection);
            }
            debug!(
                idle_secs = since.elapsed().as_secs(),
                "dropping an idle smtp connection that failed its noop"
            );
            discard(connection).await;
        }
    }

    fn checkin(&self, connection: AsyncSmtpConnection) {
        if connection.has_broken() {
            return;
        }
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Idle {
                connection,
                since: Instant::now(),
            });
    }

    /// Opens a TCP connection with `TCP_NODELAY`, reads the greeting, says
    /// EHLO, then STARTTLS and AUTH as the URL asks.
    async fn connect(&self) -> Result<AsyncSmtpConnection, SendError> {
        let server = &self.server;
        let unreachable = |error: std::io::Error| {
            SendError::Transient(format!(
                "could not connect to {}:{}: {error}",
                server.host, server.port
            ))
        };
        let stream = TcpStream::connect((server.host.as_str(), server.port))
            .await
            .map_err(unreachable)?;
        stream.set_nodelay(true).map_err(unreachable)?;
        let mut connection =
            AsyncSmtpConnection::connect_with_transport(Box::new(stream), &server.hello_name)
                .await
                .map_err(|error| classify(&error))?;
        let upgraded = match &server.start_tls {
            StartTls::Never => Ok(()),
            StartTls::Opportunistic(_) if !connection.can_starttls() => Ok(()),
            StartTls::Opportunistic(parameters) | StartTls::Required(parameters) => {
                connection
                    .starttls(parameters.clone(), &server.hello_name)
                    .await
            }
        };
        if let Err(error) = upgraded {
            discard(connection).await;
            return Err(classify(&error));
        }
        if let Some(credentials) = &server.credentials
            && let Err(error) = connection.auth(DEFAULT_MECHANISMS, credentials).await
        {
            discard(connection).await;
            return Err(classify(&error));
        }
        debug!(
            host = %server.host,
            port = server.port,
            encrypted = connection.is_encrypted(),
            "smtp connection opened"
        );
        Ok(connection)
    }
}

/// Ends a connection that failed: QUIT unless lettre already aborted it.
async fn discard(mut connection: AsyncSmtpConnection) {
    if !connection.has_broken() {
        connection.abort().await;
    }
}

/// 5xx replies are permanent; 4xx replies, network and protocol errors are
/// worth another attempt.
pub fn classify(error: &lettre::transport::smtp::Error) -> SendError {
    if error.is_permanent() {
        SendError::Permanent(error.to_string())
    } else {
        SendError::Transient(error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_urls() {
        let server = SmtpServer::parse("smtp://127.0.0.1:2525").unwrap();
        assert_eq!((server.host.as_str(), server.port), ("127.0.0.1", 2525));
        assert!(matches!(server.start_tls, StartTls::Never));
        assert!(server.credentials.is_none());
        assert_eq!(server.hello_name, ClientId::default());

        let server = SmtpServer::parse("smtp://mail.example.com").unwrap();
        assert_eq!(server.port, SMTP_PORT);
        let server = SmtpServer::parse("smtp://[::1]:25/sesame.example.com").unwrap();
        assert_eq!(server.host, "::1");
        assert_eq!(
            server.hello_name,
            ClientId::Domain("sesame.example.com".to_owned())
        );
    }

    #[test]
    fn starttls_urls() {
        let server = SmtpServer::parse("smtp://mail.example.com?tls=required").unwrap();
        assert_eq!(server.port, SUBMISSION_PORT);
        assert!(matches!(
            &server.start_tls,
            StartTls::Required(parameters) if parameters.domain() == "mail.example.com"
        ));
        let server = SmtpServer::parse("smtp://mail.example.com:2587?tls=opportunistic").unwrap();
        assert_eq!(server.port, 2587);
        assert!(matches!(server.start_tls, StartTls::Opportunistic(_)));
        let error = SmtpServer::parse("smtp://mail.example.com?tls=maybe").unwrap_err();
        assert!(error.contains("maybe"), "{error}");
    }

    #[test]
    fn credentials_are_percent_decoded_and_never_shown() {
        let server =
            SmtpServer::parse("smtp://sesame%40example.com:p%40ss%3Aword@mail.example.com")
                .unwrap();
        assert_eq!(
            server.credentials,
            Some(Credentials::new(
                "sesame@example.com".to_owned(),
                "p@ss:word".to_owned()
            ))
        );
        let shown = format!("{server:?}");
        assert!(!shown.contains("p@ss"), "{shown}");
        let pool = SmtpPool::new(server, Duration::from_secs(1), 2);
        let shown = format!("{pool:?}");
        assert!(!shown.contains("p@ss"), "{shown}");
        // A user without a password is not a credential (as in lettre).
        let server = SmtpServer::parse("smtp://sesame@mail.example.com").unwrap();
        assert!(server.credentials.is_none());
    }

    #[test]
    fn other_urls_are_refused() {
        assert!(SmtpServer::parse("smtps://mail.example.com").is_err());
        assert!(SmtpServer::parse("smtp://").is_err());
        assert!(SmtpServer::parse("not a url").is_err());
    }

    /// The pool opens nothing until it sends; a refused connection is a
    /// transient failure, not a hang.
    #[tokio::test]
    async fn an_unreachable_server_is_a_transient_failure() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let server = SmtpServer::parse(&format!("smtp://127.0.0.1:{port}")).unwrap();
        let pool = SmtpPool::new(server, Duration::from_secs(5), 1);
        let message = lettre::Message::builder()
            .from("a@example.com".parse().unwrap())
            .to("b@example.com".parse().unwrap())
            .body(String::from("hello"))
            .unwrap();
        let result = pool.send(message.envelope(), &message.formatted()).await;
        assert!(matches!(result, Err(SendError::Transient(_))), "{result:?}");
    }

    /// A server that accepts the connection and never greets: the timeout
    /// bounds the conversation.
    #[tokio::test]
    async fn a_silent_server_times_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepting = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(10)).await;
            drop(socket);
        });
        let server = SmtpServer::parse(&format!("smtp://127.0.0.1:{port}")).unwrap();
        let pool = SmtpPool::new(server, Duration::from_millis(300), 1);
        let message = lettre::Message::builder()
            .from("a@example.com".parse().unwrap())
            .to("b@example.com".parse().unwrap())
            .body(String::from("hello"))
            .unwrap();
        let started = Instant::now();
        let result = pool.send(message.envelope(), &message.formatted()).await;
        assert!(matches!(result, Err(SendError::Transient(_))), "{result:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
        accepting.abort();
    }
}
