//! Turns validated configuration sections into each subsystem's options:
//! the only module that knows both the configuration and the subsystems.
//! What needs a subsystem to be checked (a DKIM key that parses, a
//! transport URL, mailboxes) is checked here, once, by building it; the
//! caller keeps what was built.

use std::sync::Arc;

use lettre::message::Mailbox;
use lettre::message::dkim::{
    DkimCanonicalization, DkimCanonicalizationType, DkimConfig, DkimSigningAlgorithm,
    DkimSigningKey,
};
use lettre::message::header::HeaderName;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use crate::config::{
    ConfigError, DatabaseSection, DkimSection, LimitsSection, MailSection, PolicySection,
    PrivacySection, ProviderSection, SchedulerSection, ServerSection, TelemetrySection, TlsSection,
};
use crate::crypto::KeyRing;
use crate::domain::deadline::Deadlines;
use crate::events::{HubOptions, WatchOptions};
use crate::limits::LimitOptions;
use crate::mail::providers::{ApiKey, ProviderKind, ProviderSettings};
use crate::mail::templates::TemplateError;
use crate::mail::webhooks::{ResendVerifier, SendGridVerifier};
use crate::mail::{
    FailoverPolicy, Templates, Transport, TransportError, TransportOptions, TransportUrl,
    Transports, WorkerOptions,
};
use crate::redact::SecretUrl;
use crate::scheduler::SchedulerOptions;
use crate::store::{CodeOptions, DatabaseOptions};
use crate::telemetry::OtlpOptions;
use crate::webhooks::WebhookKeys;

/// Failed redemptions before a gateway code is locked.
const MAX_FAILED_CODE_ATTEMPTS: i32 = 5;
/// Requests one scheduler pass handles per step.
const SCHEDULER_BATCH: u64 = 100;

/// The database settings for the store.
pub fn database(database: &DatabaseSection) -> DatabaseOptions {
    DatabaseOptions {
        url: database.url.clone(),
        max_connections: database.max_connections,
        acquire_timeout: database.timeout,
    }
}

/// Where traces are exported, when `otlp_endpoint` is set.
pub fn otlp(telemetry: &TelemetrySection) -> Option<OtlpOptions> {
    let otlp = telemetry.otlp.as_ref()?;
    Some(OtlpOptions {
        endpoint: otlp.endpoint.clone(),
        headers: otlp.headers.clone(),
        sampling_ratio: otlp.sampling_ratio,
        service_name: otlp.service_name.clone(),
    })
}

/// The key store's database, when it is not the main one (`None`: use the
/// main database's connections).
pub fn key_store(database: &DatabaseSection) -> Option<DatabaseOptions> {
    Some(DatabaseOptions {
        url: database.key_store_url.clone()?,
        max_connections: (database.max_connections / 2).max(2),
        acquire_timeout: database.timeout,
    })
}

/// Loads the secret key: the default SQLite-side file is created when
/// missing; a configured file must exist (replicas must share it).
pub fn secret_key(privacy: &PrivacySection) -> Result<KeyRing, ConfigError> {
    let path = privacy.secret_key_file.as_ref().ok_or_else(|| {
        ConfigError::Invalid(
            "secret_key_file is required with PostgreSQL: every replica and worker needs \
             the same key; create one with `openssl rand -base64 32 > sesame.key`"
                .to_owned(),
        )
    })?;
    KeyRing::load(path, privacy.create_secret_key)
        .map_err(|error| ConfigError::Invalid(error.to_string()))
}

/// How gateway codes are issued, sealed with `secret`.
pub fn codes(policy: &PolicySection, secret: KeyRing) -> CodeOptions {
    CodeOptions {
        secret,
        validity: policy.gateway_code_validity,
        validity_by_resource: policy
            .gateway_code_validity_by_resource
            .iter()
            .map(|(resource, validity)| (resource.clone(), *validity))
            .collect(),
        max_failed_attempts: MAX_FAILED_CODE_ATTEMPTS,
    }
}

/// The server's TLS settings, read from the configured files; `None` when
/// TLS is off.
pub fn tls(tls: Option<&TlsSection>) -> Result<Option<ServerTlsConfig>, ConfigError> {
    let Some(tls) = tls else {
        return Ok(None);
    };
    let read = |key: &str, path: &std::path::Path| {
        std::fs::read(path)
            .map_err(|error| ConfigError::Invalid(format!("{key} {path:?}: {error}")))
    };
    let identity = Identity::from_pem(
        read("tls_cert_file", &tls.cert_file)?,
        read("tls_key_file", &tls.key_file)?,
    );
    let mut config = ServerTlsConfig::new().identity(identity);
    if let Some(ca) = &tls.client_ca_file {
        let ca_pem = read("tls_client_ca_file", ca)?;
        config = config.client_ca_root(Certificate::from_pem(ca_pem));
    }
    Ok(Some(config))
}

/// Tuning of the event hub; it LISTENs on PostgreSQL for other replicas.
pub fn hub(server: &ServerSection, database: &DatabaseSection) -> HubOptions {
    HubOptions {
        buffer: server.watch_buffer_events,
        poll_interval: server.event_poll_interval,
        listen_url: database
            .is_postgres()
            .then(|| SecretUrl(database.url.clone())),
        catch_up_readers: (database.max_connections as usize / 2).max(1),
        sqlite_file: database.sqlite_file.clone(),
    }
}

/// Tuning of every WatchEvents stream.
pub fn watch(server: &ServerSection) -> WatchOptions {
    WatchOptions {
        heartbeat: server.watch_heartbeat,
        max_lag: server.watch_max_lag_events,
        stall: server.watch_stall,
    }
}

/// The review deadlines of PENDING requests.
pub fn deadlines(policy: &PolicySection) -> Deadlines {
    Deadlines {
        review_sla: policy.review_sla,
        pending_max_age: policy.pending_max_age,
    }
}

/// Tuning of the deadline scheduler, retention included.
pub fn scheduler(
    scheduler: &SchedulerSection,
    policy: &PolicySection,
    privacy: &PrivacySection,
) -> SchedulerOptions {
    // Validated to at most 36500 days: always in chrono's range.
    let retention = |period: Option<std::time::Duration>| {
        period.map(|period| chrono::Duration::from_std(period).unwrap_or(chrono::Duration::MAX))
    };
    SchedulerOptions {
        deadlines: deadlines(policy),
        interval: scheduler.interval,
        batch: SCHEDULER_BATCH,
        retain_closed_requests: retention(privacy.retain_closed_requests),
        retain_sent_emails: retention(privacy.retain_sent_emails),
    }
}

/// The protective limits applied to every call.
pub fn limits(limits: &LimitsSection) -> LimitOptions {
    LimitOptions {
        per_peer_rate: limits.per_peer_rate,
        per_peer_burst: limits.per_peer_burst,
        max_in_flight_calls: limits.max_in_flight_calls,
        max_open_streams: limits.max_open_streams,
        max_active_calls: limits.max_active_calls,
        request_timeout: limits.request_timeout,
        max_message_bytes: limits.max_message_bytes,
    }
}

/// The email templates: built-in, overridden by `mail_templates_dir`.
pub fn templates(mail: &MailSection) -> Result<Templates, TemplateError> {
    Templates::load(mail.templates_dir.as_deref())
}

/// What the mail settings build, checked once: the sender, the parsed
/// transport URL and the DKIM signer. Nothing is opened yet.
#[derive(Clone, Debug)]
pub struct Mail {
    /// The From of every email.
    pub from: Mailbox,
    /// Where emails go, in order of preference.
    pub transport_urls: Vec<TransportUrl>,
    /// The DKIM signer, when configured.
    pub dkim: Option<Arc<DkimConfig>>,
    /// The HTTP providers the transports use, with their API keys.
    pub providers: Vec<ProviderSettings>,
    /// The verification keys of the providers' delivery webhooks.
    pub webhooks: WebhookKeys,
}

/// Checks and builds the mail settings: `mail_from` and every
/// `admin_emails` entry are mailboxes, the transport URL parses, the DKIM
/// key parses. Every problem is reported at once.
pub fn mail(mail: &MailSection) -> Result<Mail, ConfigError> {
    let mut problems = Vec::new();
    let from = match mail.from.parse::<Mailbox>() {
        Ok(from) => Some(from),
        Err(error) => {
            problems.push(format!(
                "mail_from {:?} is not a mailbox: {error}",
                mail.from
            ));
            None
        }
    };
    for admin in &mail.admin_emails {
        if admin.parse::<Mailbox>().is_err() {
            problems.push(format!("admin_emails: {admin:?} is not an email address"));
        }
    }
    let signer = match mail.dkim.as_ref().map(dkim).transpose() {
        Ok(signer) => signer.map(Arc::new),
        Err(problem) => {
            problems.push(problem);
            None
        }
    };
    let mut transport_urls = Vec::new();
    let mut providers = Vec::new();
    for url in mail.transport.split(',').map(str::trim) {
        match TransportUrl::parse(url) {
            Ok(url) => {
                if let TransportUrl::Provider(kind) = &url {
                    match provider(*kind, mail) {
                        Ok(settings) => providers.push(settings),
                        Err(problem) => problems.push(problem),
                    }
                }
                transport_urls.push(url);
            }
            Err(error) => problems.push(error.to_string()),
        }
    }
    let mut webhooks = WebhookKeys::default();
    if let Some(secret) = &mail.resend.webhook_key {
        match ResendVerifier::new(secret) {
            Ok(verifier) => webhooks.resend = Some(verifier),
            Err(problem) => problems.push(format!("mail_resend_webhook_secret: {problem}")),
        }
    }
    if let Some(key) = &mail.sendgrid.webhook_key {
        match SendGridVerifier::new(key) {
            Ok(verifier) => webhooks.sendgrid = Some(verifier),
            Err(problem) => problems.push(format!("mail_sendgrid_webhook_public_key: {problem}")),
        }
    }
    match from {
        Some(from) if problems.is_empty() => Ok(Mail {
            from,
            transport_urls,
            dkim: signer,
            providers,
            webhooks,
        }),
        _ => Err(ConfigError::Invalid(problems.join("; "))),
    }
}

/// The settings of the provider `kind`: its base URL (HTTPS, or plain
/// HTTP to a loopback address only) and API key (the key itself, else
/// read from its file).
fn provider(kind: ProviderKind, mail: &MailSection) -> Result<ProviderSettings, String> {
    let name = kind.as_str();
    let section: &ProviderSection = match kind {
        ProviderKind::Resend => &mail.resend,
        ProviderKind::SendGrid => &mail.sendgrid,
    };
    let base_url = section.base_url.trim_end_matches('/').to_owned();
    let parsed = url::Url::parse(&base_url)
        .map_err(|error| format!("mail_{name}_base_url {base_url:?} is not a URL: {error}"))?;
    let loopback = match parsed.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(domain)) => domain == "localhost",
        None => false,
    };
    if parsed.scheme() != "https" && !(parsed.scheme() == "http" && loopback) {
        return Err(format!(
            "mail_{name}_base_url {base_url:?} must be https:// (plain http:// only to a \
             loopback address): the API key travels with every call"
        ));
    }
    let key = match (&section.api_key, &section.api_key_file) {
        (Some(key), _) => key.clone(),
        (None, Some(file)) => std::fs::read_to_string(file).map_err(|error| {
            format!(
                "mail_{name}_api_key_file {}: could not read it: {error}",
                file.display()
            )
        })?,
        (None, None) => {
            return Err(format!(
                "mail_transport uses {name}:// but no API key is set: set \
                 SESAME_MAIL_{}_API_KEY in the environment or mail_{name}_api_key_file",
                name.to_uppercase()
            ));
        }
    };
    let api_key = ApiKey::new(&key);
    if api_key == ApiKey::new("") {
        return Err(format!("the {name} API key is empty"));
    }
    Ok(ProviderSettings {
        kind,
        base_url,
        api_key,
    })
}

/// The transports of the built mail settings, in order, signing with
/// their DKIM key, failing over as `mail_failover_*` say. Starts lettre's
/// pool for `smtps://` (inside a Tokio runtime).
pub fn transports(section: &MailSection, mail: &Mail) -> Result<Transports, TransportError> {
    let transports = mail
        .transport_urls
        .iter()
        .map(|url| {
            Transport::new(
                url.clone(),
                TransportOptions {
                    timeout: section.timeout,
                    connections: section.concurrency,
                    dkim: mail.dkim.clone(),
                    providers: mail.providers.clone(),
                },
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    let failover = section.failover;
    Ok(Transports::new(
        transports,
        FailoverPolicy {
            after: failover.after,
            window: failover.window,
            cooldown: failover.cooldown,
        },
    ))
}

/// Tuning of the mail worker; `secret` opens the sealed gateway codes. On
/// PostgreSQL it LISTENs for emails other processes enqueue.
pub fn worker(
    section: &MailSection,
    database: &DatabaseSection,
    mail: &Mail,
    secret: KeyRing,
) -> WorkerOptions {
    WorkerOptions {
        from: mail.from.clone(),
        batch: section.batch,
        concurrency: section.concurrency,
        lease: section.lease,
        poll_interval: section.poll_interval,
        listen_url: database
            .is_postgres()
            .then(|| SecretUrl(database.url.clone())),
        record_within: section.record_within,
        identity: section.worker_id.clone(),
        retry_schedule: section.retry_schedule.clone(),
        lifetime: section.lifetime,
        secret: Some(secret),
    }
}

/// The DKIM signer of the configured key: an RSA key in PKCS#1 PEM or an
/// Ed25519 seed in base64. The error says why the key does not load.
pub fn dkim(dkim: &DkimSection) -> Result<DkimConfig, String> {
    let key_file = &dkim.key_file;
    let key_text = std::fs::read_to_string(key_file)
        .map_err(|error| format!("mail_dkim_key_file {key_file:?}: {error}"))?;
    let key = if key_text.contains("BEGIN RSA PRIVATE KEY") {
        DkimSigningKey::new(&key_text, DkimSigningAlgorithm::Rsa)
    } else if key_text.contains("BEGIN") {
        return Err(format!(
            "mail_dkim_key_file {key_file:?}: expected an RSA key in PKCS#1 PEM \
             (BEGIN RSA PRIVATE KEY); convert with `openssl rsa -in KEY -traditional`, \
             or give an Ed25519 seed in base64"
        ));
    } else {
        DkimSigningKey::new(key_text.trim(), DkimSigningAlgorithm::Ed25519)
    }
    .map_err(|error| format!("mail_dkim_key_file {key_file:?}: invalid key: {error}"))?;
    // Relaxed canonicalization survives relays that rewrap headers.
    let relaxed = DkimCanonicalization {
        header: DkimCanonicalizationType::Relaxed,
        body: DkimCanonicalizationType::Relaxed,
    };
    // Not Content-Type: lettre writes a multipart's Content-Type with the
    // body, after signing, so a signature listing it would not verify.
    let headers = [
        "From",
        "To",
        "Subject",
        "Date",
        "Message-ID",
        "MIME-Version",
    ]
    .into_iter()
    .map(HeaderName::new_from_ascii_str)
    .collect();
    Ok(DkimConfig::new(
        dkim.selector.clone(),
        dkim.domain.clone(),
        key,
        headers,
        relaxed,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn dkim_settings_go_together_and_bad_keys_are_explained() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            mail_dkim_domain: Some("example.com".into()),
            ..Config::default()
        };
        let message = config.validate().unwrap_err().to_string();
        assert!(message.contains("set all three or none"), "{message}");

        let pkcs8 = dir.path().join("pkcs8.pem");
        std::fs::write(
            &pkcs8,
            "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        config.mail_dkim_selector = Some("mail2026".into());
        config.mail_dkim_key_file = Some(pkcs8.display().to_string());
        config
            .validate()
            .expect("the key is read when the signer is built");
        let error = mail(&config.sections().mail).unwrap_err().to_string();
        assert!(error.contains("-traditional"), "{error}");

        let ed25519 = dir.path().join("ed25519.key");
        std::fs::write(&ed25519, "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n").unwrap();
        config.mail_dkim_key_file = Some(ed25519.display().to_string());
        let built = mail(&config.sections().mail).expect("an Ed25519 seed loads");
        assert!(built.dkim.is_some());
        config.mail_dkim_selector = Some("bad selector".into());
        let message = config.validate().unwrap_err().to_string();
        assert!(message.contains("DNS names"), "{message}");
        config.mail_dkim_selector = Some("mail2026".into());
        config.mail_dkim_key_file = Some(dir.path().join("missing").display().to_string());
        let error = mail(&config.sections().mail).unwrap_err().to_string();
        assert!(error.contains("mail_dkim_key_file"), "{error}");
    }

    #[test]
    fn bad_mailboxes_and_transports_are_all_reported_without_passwords() {
        let config = Config {
            mail_from: "not a mailbox".into(),
            admin_emails: vec!["ops@example.com".into(), "nobody".into()],
            mail_transport: "smtp://mailer:smtp-secret@host?tls=sometimes".into(),
            ..Config::default()
        };
        let message = mail(&config.sections().mail).unwrap_err().to_string();
        assert!(message.contains("mail_from"), "{message}");
        assert!(
            message.contains("\"nobody\" is not an email address"),
            "{message}"
        );
        assert!(message.contains("sometimes"), "{message}");
        assert!(!message.contains("smtp-secret"), "{message}");
        let built = mail(&Config::default().sections().mail).expect("the defaults build");
        assert!(matches!(built.transport_urls[..], [TransportUrl::File(_)]));
    }

    #[test]
    fn providers_need_an_api_key_and_https() {
        let config = Config {
            mail_transport: "resend://, sendgrid://".into(),
            ..Config::default()
        };
        let message = mail(&config.sections().mail).unwrap_err().to_string();
        assert!(message.contains("SESAME_MAIL_RESEND_API_KEY"), "{message}");
        assert!(
            message.contains("SESAME_MAIL_SENDGRID_API_KEY"),
            "{message}"
        );
        let config = Config {
            mail_transport: "resend://,smtp://localhost:2525".into(),
            mail_resend_api_key: Some("re_123".into()),
            mail_resend_base_url: "http://api.example.com".into(),
            ..Config::default()
        };
        let message = mail(&config.sections().mail).unwrap_err().to_string();
        assert!(message.contains("must be https://"), "{message}");
        assert!(!message.contains("re_123"), "{message}");
        let config = Config {
            mail_resend_base_url: "http://127.0.0.1:8080/".into(),
            ..config
        };
        for shown in [format!("{config:?}"), format!("{:?}", config.sections())] {
            assert!(!shown.contains("re_123"), "{shown}");
        }
        let built = mail(&config.sections().mail).unwrap();
        assert_eq!(built.transport_urls.len(), 2);
        assert_eq!(built.providers[0].base_url, "http://127.0.0.1:8080");
        assert!(!format!("{built:?}").contains("re_123"));
    }

    #[test]
    fn sections_map_to_the_options_they_always_gave() {
        let config = Config {
            database_url: "sqlite://data/sesame.db".into(),
            database_max_connections: 10,
            retention_closed_request_days: 0,
            retention_sent_email_days: 30,
            ..Config::default()
        };
        let sections = config.sections();
        let key_store = key_store(&sections.database).expect("beside the SQLite file");
        assert_eq!(key_store.url, "sqlite://data/sesame.db.keys.db");
        assert_eq!(key_store.max_connections, 5);
        let scheduler = scheduler(&sections.scheduler, &sections.policy, &sections.privacy);
        assert_eq!(scheduler.retain_closed_requests, None);
        assert_eq!(
            scheduler.retain_sent_emails,
            Some(chrono::Duration::days(30))
        );
        assert_eq!(scheduler.batch, 100);
        let hub = hub(&sections.server, &sections.database);
        assert_eq!((hub.listen_url, hub.catch_up_readers), (None, 5));
        assert!(tls(sections.tls.as_ref()).unwrap().is_none());
    }
}
