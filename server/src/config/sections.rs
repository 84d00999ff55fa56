//! The validated configuration grouped by what it tunes (server, database,
//! TLS, mail, policy, privacy, limits, scheduler, telemetry), in plain std
//! types: durations as [`Duration`], files as [`PathBuf`], defaults that
//! depend on other keys already resolved. The flat [`Config`] keeps the
//! names of `sesame.toml` and `SESAME_*`; these are what code reads. No
//! subsystem is known here: `crate::options` maps sections to each
//! subsystem's options.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::{Config, LogFormat};
use crate::redact::{redact_transports, redact_url};

/// Every section of a configuration.
#[derive(Clone, Debug)]
pub struct Sections {
    /// The gRPC server and its watch streams.
    pub server: ServerSection,
    /// The database and the key store's database.
    pub database: DatabaseSection,
    /// TLS of the gRPC server; `None` serves plaintext.
    pub tls: Option<TlsSection>,
    /// Email: transport, sender, worker, templates, DKIM.
    pub mail: MailSection,
    /// Decisions: the policy file, review deadlines, consent, gateway codes.
    pub policy: PolicySection,
    /// The secret key and retention periods.
    pub privacy: PrivacySection,
    /// Protective limits on calls.
    pub limits: LimitsSection,
    /// The deadline scheduler.
    pub scheduler: SchedulerSection,
    /// Logs, metrics and traces.
    pub telemetry: TelemetrySection,
}

/// The gRPC server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerSection {
    /// `listen_addr`.
    pub listen_addr: SocketAddr,
    /// `console_enabled`: serve the console's files and gRPC-Web.
    pub console_enabled: bool,
    /// `console_listen_addr`: serve them there instead of `listen_addr`.
    pub console_listen_addr: Option<SocketAddr>,
    /// `allow_insecure`: plaintext off loopback was allowed.
    pub allow_insecure: bool,
    /// `max_decoding_message_bytes`.
    pub max_decoding_message_bytes: usize,
    /// `max_encoding_message_bytes`.
    pub max_encoding_message_bytes: usize,
    /// `shutdown_grace_secs`.
    pub shutdown_grace: Duration,
    /// `health_check_interval_secs`.
    pub health_check_interval: Duration,
    /// `watch_heartbeat_secs`.
    pub watch_heartbeat: Duration,
    /// `watch_buffer_events`.
    pub watch_buffer_events: usize,
    /// `watch_max_lag_events`.
    pub watch_max_lag_events: i64,
    /// `watch_stall_secs`.
    pub watch_stall: Duration,
    /// `event_poll_interval_ms`.
    pub event_poll_interval: Duration,
}

/// The database, and where the data subjects' keys are kept.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseSection {
    /// `database_url`.
    pub url: String,
    /// `database_max_connections`.
    pub max_connections: u32,
    /// `database_timeout_secs`.
    pub timeout: Duration,
    /// The key store's own database: `key_store_url`, else
    /// `sqlite://DATABASE_PATH.keys.db` beside a SQLite file; `None`: the
    /// main database's connections.
    pub key_store_url: Option<String>,
    /// The database's file when it is a SQLite file: the hub notices other
    /// processes' commits by its changes instead of reading the log.
    pub sqlite_file: Option<std::path::PathBuf>,
}

impl DatabaseSection {
    /// Whether the database is PostgreSQL (else SQLite).
    pub fn is_postgres(&self) -> bool {
        self.url.starts_with("postgres")
    }
}

impl fmt::Debug for DatabaseSection {
    /// The settings, with the passwords in the URLs redacted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseSection")
            .field("url", &redact_url(&self.url))
            .field("max_connections", &self.max_connections)
            .field("timeout", &self.timeout)
            .field(
                "key_store_url",
                &self.key_store_url.as_deref().map(redact_url),
            )
            .finish()
    }
}

/// TLS of the gRPC server: the files, not read yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsSection {
    /// `tls_cert_file`.
    pub cert_file: PathBuf,
    /// `tls_key_file`.
    pub key_file: PathBuf,
    /// `tls_client_ca_file`: mutual TLS when set.
    pub client_ca_file: Option<PathBuf>,
}

/// Email.
#[derive(Clone, PartialEq, Eq)]
pub struct MailSection {
    /// `mail_transport`, as written (parsed by `options::mail`).
    pub transport: String,
    /// `mail_from`.
    pub from: String,
    /// `admin_emails`.
    pub admin_emails: Vec<String>,
    /// `mail_worker`: run the worker inside `serve`.
    pub worker: bool,
    /// `mail_retry_schedule_secs`.
    pub retry_schedule: Vec<Duration>,
    /// `mail_lifetime_secs`.
    pub lifetime: Duration,
    /// `mail_lease_secs`.
    pub lease: Duration,
    /// `mail_poll_interval_ms`.
    pub poll_interval: Duration,
    /// `mail_record_within_ms`.
    pub record_within: Duration,
    /// `mail_worker_id`.
    pub worker_id: Option<String>,
    /// `mail_batch`.
    pub batch: u64,
    /// `mail_concurrency`.
    pub concurrency: usize,
    /// `mail_timeout_secs`.
    pub timeout: Duration,
    /// `mail_templates_dir`.
    pub templates_dir: Option<PathBuf>,
    /// The three `mail_dkim_*` keys, when set.
    pub dkim: Option<DkimSection>,
    /// `mail_failover_after`, `_window_secs`, `_cooldown_secs`.
    pub failover: FailoverSection,
    /// The `mail_resend_*` keys.
    pub resend: ProviderSection,
    /// The `mail_sendgrid_*` keys.
    pub sendgrid: ProviderSection,
}

/// When to hand the traffic to the next transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FailoverSection {
    pub after: u32,
    pub window: Duration,
    pub cooldown: Duration,
}

/// One HTTP email provider's keys.
#[derive(Clone, PartialEq, Eq)]
pub struct ProviderSection {
    /// `mail_*_base_url`.
    pub base_url: String,
    /// `mail_*_api_key`.
    pub api_key: Option<String>,
    /// `mail_*_api_key_file`.
    pub api_key_file: Option<PathBuf>,
    /// The webhook's verification key: Resend's signing secret
    /// (`whsec_...`), SendGrid's public key.
    pub webhook_key: Option<String>,
}

impl fmt::Debug for ProviderSection {
    /// The settings, with the API key and webhook key redacted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderSection")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "[redacted]"))
            .field("api_key_file", &self.api_key_file)
            .field(
                "webhook_key",
                &self.webhook_key.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}

impl fmt::Debug for MailSection {
    /// The settings, with the transport's password redacted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MailSection")
            .field("transport", &redact_transports(&self.transport))
            .field("from", &self.from)
            .field("admin_emails", &self.admin_emails)
            .field("worker", &self.worker)
            .field("retry_schedule", &self.retry_schedule)
            .field("lifetime", &self.lifetime)
            .field("lease", &self.lease)
            .field("poll_interval", &self.poll_interval)
            .field("batch", &self.batch)
            .field("concurrency", &self.concurrency)
            .field("timeout", &self.timeout)
            .field("templates_dir", &self.templates_dir)
            .field("dkim", &self.dkim)
            .field("failover", &self.failover)
            .field("resend", &self.resend)
            .field("sendgrid", &self.sendgrid)
            .finish()
    }
}

/// DKIM signing: domain, selector and the key's file (not read yet).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DkimSection {
    /// `mail_dkim_domain` (`d=`).
    pub domain: String,
    /// `mail_dkim_selector` (`s=`).
    pub selector: String,
    /// `mail_dkim_key_file`.
    pub key_file: PathBuf,
}

/// Decisions and what follows them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicySection {
    /// `policy_file`.
    pub file: Option<PathBuf>,
    /// `policy_poll_interval_ms`.
    pub poll_interval: Duration,
    /// `review_sla_secs`.
    pub review_sla: Duration,
    /// `pending_max_age_secs`.
    pub pending_max_age: Duration,
    /// `consent_required_purposes`.
    pub consent_required_purposes: Vec<String>,
    /// `allow_self_approval`.
    pub allow_self_approval: bool,
    /// `gateway_code_validity_secs`.
    pub gateway_code_validity: Duration,
    /// `gateway_code_validity_by_resource`.
    pub gateway_code_validity_by_resource: BTreeMap<String, Duration>,
}

/// The secret key and how long personal data is kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrivacySection {
    /// The key file in use: `secret_key_file`, or `DATABASE_PATH.key`
    /// beside a SQLite file; `None` with PostgreSQL and no file set.
    pub secret_key_file: Option<PathBuf>,
    /// Whether a missing key file is created (the SQLite default), rather
    /// than an error (a configured file: replicas must share it).
    pub create_secret_key: bool,
    /// `retention_closed_request_days`; `None` keeps forever.
    pub retain_closed_requests: Option<Duration>,
    /// `retention_sent_email_days`; `None` keeps forever.
    pub retain_sent_emails: Option<Duration>,
}

/// Protective limits on calls, per server process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitsSection {
    /// `rate_limit_per_key` (0: off).
    pub per_key_rate: u32,
    /// `rate_limit_burst`.
    pub per_key_burst: u32,
    /// `rate_limit_per_peer` (0: off).
    pub per_peer_rate: u32,
    /// `rate_limit_peer_burst`.
    pub per_peer_burst: u32,
    /// `max_in_flight_calls` (0: off).
    pub max_in_flight_calls: usize,
    /// `max_open_streams` (0: off).
    pub max_open_streams: usize,
    /// `max_active_calls` (0: off).
    pub max_active_calls: usize,
    /// `request_timeout_secs`.
    pub request_timeout: Duration,
    /// `max_decoding_message_bytes`.
    pub max_message_bytes: usize,
    /// `gateway_failures_per_minute`.
    pub gateway_failures_per_minute: u32,
}

/// The deadline scheduler.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchedulerSection {
    /// `scheduler`: run it inside `serve` and `worker`.
    pub enabled: bool,
    /// `scheduler_interval_secs`.
    pub interval: Duration,
}

/// Logs, metrics and traces.
#[derive(Clone, Debug, PartialEq)]
pub struct TelemetrySection {
    /// `log_format`.
    pub log_format: LogFormat,
    /// `log_filter`.
    pub log_filter: String,
    /// `metrics_addr`: none serves no metrics.
    pub metrics_addr: Option<SocketAddr>,
    /// `metrics_refresh_secs`.
    pub metrics_refresh: Duration,
    /// The `otlp_*` keys; `None` (no `otlp_endpoint`) exports no traces.
    pub otlp: Option<OtlpSection>,
}

/// Trace export over OTLP/gRPC.
#[derive(Clone, PartialEq)]
pub struct OtlpSection {
    /// `otlp_endpoint`.
    pub endpoint: String,
    /// `otlp_headers`, split into name (lowercase) and value.
    pub headers: Vec<(String, String)>,
    /// `otlp_sampling_ratio`.
    pub sampling_ratio: f64,
    /// `otlp_service_name`.
    pub service_name: String,
}

impl fmt::Debug for OtlpSection {
    /// The settings, with the headers' values redacted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<String> = self
            .headers
            .iter()
            .map(|(name, _)| format!("{name}=[redacted]"))
            .collect();
        f.debug_struct("OtlpSection")
            .field("endpoint", &redact_url(&self.endpoint))
            .field("headers", &headers)
            .field("sampling_ratio", &self.sampling_ratio)
            .field("service_name", &self.service_name)
            .finish()
    }
}

/// Seconds in a day, for the `*_days` keys.
const DAY_SECS: u64 = 86_400;

impl Config {
    /// The settings grouped by section, defaults that depend on other keys
    /// resolved. Meant for a validated configuration (as
    /// [`Config::load`] returns).
    pub fn sections(&self) -> Sections {
        Sections {
            server: self.server_section(),
            database: self.database_section(),
            tls: self.tls_section(),
            mail: self.mail_section(),
            policy: self.policy_section(),
            privacy: self.privacy_section(),
            limits: self.limits_section(),
            scheduler: SchedulerSection {
                enabled: self.scheduler,
                interval: Duration::from_secs(self.scheduler_interval_secs),
            },
            telemetry: TelemetrySection {
                log_format: self.log_format,
                log_filter: self.log_filter.clone(),
                metrics_addr: self.metrics_addr,
                metrics_refresh: Duration::from_secs(self.metrics_refresh_secs),
                otlp: self.otlp_section(),
            },
        }
    }

    fn otlp_section(&self) -> Option<OtlpSection> {
        let endpoint = self.otlp_endpoint.clone()?;
        let headers = self
            .otlp_headers
            .iter()
            .filter_map(|header| header.split_once('='))
            .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
            .collect();
        Some(OtlpSection {
            endpoint,
            headers,
            sampling_ratio: self.otlp_sampling_ratio,
            service_name: self.otlp_service_name.clone(),
        })
    }

    fn server_section(&self) -> ServerSection {
        ServerSection {
            listen_addr: self.listen_addr,
            console_enabled: self.console_enabled,
            console_listen_addr: self.console_listen_addr,
            allow_insecure: self.allow_insecure,
            max_decoding_message_bytes: self.max_decoding_message_bytes,
            max_encoding_message_bytes: self.max_encoding_message_bytes,
            shutdown_grace: Duration::from_secs(self.shutdown_grace_secs),
            health_check_interval: Duration::from_secs(self.health_check_interval_secs),
            watch_heartbeat: Duration::from_secs(self.watch_heartbeat_secs),
            watch_buffer_events: self.watch_buffer_events,
            watch_max_lag_events: self.watch_max_lag_events,
            watch_stall: Duration::from_secs(self.watch_stall_secs),
            event_poll_interval: Duration::from_millis(self.event_poll_interval_ms),
        }
    }

    fn database_section(&self) -> DatabaseSection {
        let key_store_url = match &self.key_store_url {
            Some(url) => Some(url.clone()),
            None => self
                .sqlite_path()
                .map(|path| format!("sqlite://{path}.keys.db")),
        };
        DatabaseSection {
            url: self.database_url.clone(),
            max_connections: self.database_max_connections,
            timeout: Duration::from_secs(self.database_timeout_secs),
            key_store_url,
            sqlite_file: self.sqlite_path().map(Into::into),
        }
    }

    fn tls_section(&self) -> Option<TlsSection> {
        let (Some(cert), Some(key)) = (&self.tls_cert_file, &self.tls_key_file) else {
            return None;
        };
        Some(TlsSection {
            cert_file: cert.into(),
            key_file: key.into(),
            client_ca_file: self.tls_client_ca_file.as_ref().map(PathBuf::from),
        })
    }

    fn mail_section(&self) -> MailSection {
        let dkim = match (
            &self.mail_dkim_domain,
            &self.mail_dkim_selector,
            &self.mail_dkim_key_file,
        ) {
            (Some(domain), Some(selector), Some(key_file)) => Some(DkimSection {
                domain: domain.clone(),
                selector: selector.clone(),
                key_file: key_file.into(),
            }),
            _ => None,
        };
        MailSection {
            transport: self.mail_transport.clone(),
            from: self.mail_from.clone(),
            admin_emails: self.admin_emails.clone(),
            worker: self.mail_worker,
            retry_schedule: self
                .mail_retry_schedule_secs
                .iter()
                .map(|secs| Duration::from_secs(*secs))
                .collect(),
            lifetime: Duration::from_secs(self.mail_lifetime_secs),
            lease: Duration::from_secs(self.mail_lease_secs),
            poll_interval: Duration::from_millis(self.mail_poll_interval_ms),
            record_within: Duration::from_millis(self.mail_record_within_ms),
            worker_id: self.mail_worker_id.clone(),
            batch: self.mail_batch,
            concurrency: usize::try_from(self.mail_concurrency).unwrap_or(32),
            timeout: Duration::from_secs(self.mail_timeout_secs),
            templates_dir: self.mail_templates_dir.as_ref().map(PathBuf::from),
            dkim,
            failover: FailoverSection {
                after: self.mail_failover_after,
                window: Duration::from_secs(self.mail_failover_window_secs),
                cooldown: Duration::from_secs(self.mail_failover_cooldown_secs),
            },
            resend: ProviderSection {
                base_url: self.mail_resend_base_url.clone(),
                api_key: self.mail_resend_api_key.clone(),
                api_key_file: self.mail_resend_api_key_file.as_ref().map(PathBuf::from),
                webhook_key: self.mail_resend_webhook_secret.clone(),
            },
            sendgrid: ProviderSection {
                base_url: self.mail_sendgrid_base_url.clone(),
                api_key: self.mail_sendgrid_api_key.clone(),
                api_key_file: self.mail_sendgrid_api_key_file.as_ref().map(PathBuf::from),
                webhook_key: self.mail_sendgrid_webhook_public_key.clone(),
            },
        }
    }

    fn policy_section(&self) -> PolicySection {
        PolicySection {
            file: self.policy_file.as_ref().map(PathBuf::from),
            poll_interval: Duration::from_millis(self.policy_poll_interval_ms),
            review_sla: Duration::from_secs(self.review_sla_secs),
            pending_max_age: Duration::from_secs(self.pending_max_age_secs),
            consent_required_purposes: self.consent_required_purposes.clone(),
            allow_self_approval: self.allow_self_approval,
            gateway_code_validity: Duration::from_secs(self.gateway_code_validity_secs),
            gateway_code_validity_by_resource: self
                .gateway_code_validity_by_resource
                .iter()
                .map(|(resource, secs)| (resource.clone(), Duration::from_secs(*secs)))
                .collect(),
        }
    }

    fn privacy_section(&self) -> PrivacySection {
        let days =
            |count: u32| (count > 0).then(|| Duration::from_secs(u64::from(count) * DAY_SECS));
        let secret_key_file = match &self.secret_key_file {
            Some(path) => Some(PathBuf::from(path)),
            None => self.sqlite_path().map(|path| format!("{path}.key").into()),
        };
        PrivacySection {
            secret_key_file,
            create_secret_key: self.secret_key_file.is_none(),
            retain_closed_requests: days(self.retention_closed_request_days),
            retain_sent_emails: days(self.retention_sent_email_days),
        }
    }

    fn limits_section(&self) -> LimitsSection {
        LimitsSection {
            per_key_rate: self.rate_limit_per_key,
            per_key_burst: self.rate_limit_burst,
            per_peer_rate: self.rate_limit_per_peer,
            per_peer_burst: self.rate_limit_peer_burst,
            max_in_flight_calls: self.max_in_flight_calls,
            max_open_streams: self.max_open_streams,
            max_active_calls: self.max_active_calls,
            request_timeout: Duration::from_secs(self.request_timeout_secs),
            max_message_bytes: self.max_decoding_message_bytes,
            gateway_failures_per_minute: self.gateway_failures_per_minute,
        }
    }

    /// The SQLite database's file, when the database is a SQLite file (not
    /// in memory).
    fn sqlite_path(&self) -> Option<&str> {
        let rest = self
            .database_url
            .strip_prefix("sqlite://")
            .or_else(|| self.database_url.strip_prefix("sqlite:"))?;
        let path = rest.split('?').next().unwrap_or(rest);
        (!path.is_empty() && !path.contains(":memory:")).then_some(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_defaults_sit_beside_the_database() {
        let config = Config {
            database_url: "sqlite://data/sesame.db?mode=rwc".into(),
            ..Config::default()
        };
        let sections = config.sections();
        assert_eq!(
            sections.database.key_store_url.as_deref(),
            Some("sqlite://data/sesame.db.keys.db")
        );
        assert_eq!(
            sections.privacy.secret_key_file,
            Some(PathBuf::from("data/sesame.db.key"))
        );
        assert!(sections.privacy.create_secret_key);
        let postgres = Config {
            database_url: "postgres://u:secret@h/d".into(),
            ..Config::default()
        };
        let sections = postgres.sections();
        assert_eq!(sections.database.key_store_url, None);
        assert_eq!(sections.privacy.secret_key_file, None);
        assert!(!format!("{:?}", sections.database).contains("secret"));
        let memory = Config {
            database_url: "sqlite::memory:".into(),
            ..Config::default()
        };
        assert_eq!(memory.sections().database.key_store_url, None);
    }

    #[test]
    fn durations_and_optional_sections_are_typed() {
        let config = Config {
            retention_closed_request_days: 0,
            retention_sent_email_days: 2,
            tls_cert_file: Some("cert.pem".into()),
            tls_key_file: Some("key.pem".into()),
            ..Config::default()
        };
        let sections = config.sections();
        assert_eq!(sections.privacy.retain_closed_requests, None);
        assert_eq!(
            sections.privacy.retain_sent_emails,
            Some(Duration::from_secs(2 * 86_400))
        );
        assert_eq!(sections.mail.poll_interval, Duration::from_millis(10_000));
        assert_eq!(
            sections.tls.map(|tls| tls.cert_file),
            Some(PathBuf::from("cert.pem"))
        );
        assert_eq!(sections.mail.dkim, None);
        assert!(Config::default().sections().tls.is_none());
    }
}
