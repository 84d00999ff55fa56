//! Layered configuration: embedded defaults < file (`sesame.toml`) <
//! environment (`SESAME_*`) < command-line flags, validated at start.
//!
//! Unknown keys are warned about, not fatal, so a typo is visible without
//! taking a replica down. Secrets (the password in `database_url`, API
//! keys, the values of `otlp_headers`) are redacted from `Debug`.
//!
//! Plain data: the flat [`Config`] keeps the names of `sesame.toml` and
//! `SESAME_*`, [`Config::sections`] groups them in typed sections. No
//! subsystem is imported here; `crate::options` turns sections into each
//! subsystem's options and checks what only a subsystem can (mailboxes,
//! the whole transport URL, the DKIM key).

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::domain::validation::MAX_PURPOSE_CHARS;
use crate::redact::redact_url;

mod sections;

pub use sections::{
    DatabaseSection, DkimSection, FailoverSection, LimitsSection, MailSection, OtlpSection,
    PolicySection, PrivacySection, ProviderSection, SchedulerSection, Sections, ServerSection,
    TelemetrySection, TlsSection,
};

/// Default config file, read from the working directory when present.
pub const DEFAULT_CONFIG_FILE: &str = "sesame.toml";
/// Prefix of the environment variables read as configuration.
pub const ENV_PREFIX: &str = "SESAME_";

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Every setting of the server. Field names are the keys of `sesame.toml`;
/// the environment variable is `SESAME_` + the key in upper case.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Address the gRPC server listens on.
    pub listen_addr: SocketAddr,
    /// Serve the admin console (its embedded files and gRPC-Web for it);
    /// false serves neither, native gRPC is unchanged.
    pub console_enabled: bool,
    /// Serve the console and gRPC-Web on this address instead of
    /// `listen_addr` (same services, layers and TLS); `listen_addr` then
    /// answers native gRPC only. None: on `listen_addr`.
    pub console_listen_addr: Option<SocketAddr>,
    /// `sqlite://PATH` (created if missing) or `postgres://USER:PASSWORD@HOST/DB`.
    pub database_url: String,
    /// Largest database connection pool.
    pub database_max_connections: u32,
    /// Seconds to wait for a database connection or a SQLite write lock.
    pub database_timeout_secs: u64,
    /// `text` or `json`.
    pub log_format: LogFormat,
    /// tracing filter directives, e.g. `info` or `sesame_server=debug,info`.
    pub log_filter: String,
    /// Largest request message accepted, in bytes.
    pub max_decoding_message_bytes: usize,
    /// Largest response message sent, in bytes.
    pub max_encoding_message_bytes: usize,
    /// Deadline applied to calls that carry none, in seconds.
    pub request_timeout_secs: u64,
    /// On shutdown, how long in-flight calls may take to finish, in seconds.
    pub shutdown_grace_secs: u64,
    /// How often the database is pinged for the health service, in seconds.
    pub health_check_interval_secs: u64,
    /// Idle seconds after which a WatchEvents stream gets a heartbeat.
    pub watch_heartbeat_secs: u64,
    /// Events the hub keeps for watchers that fall behind before they read
    /// the log instead.
    pub watch_buffer_events: usize,
    /// Events that may be committed while a watcher's client reads nothing
    /// before its stream ends with RESOURCE_EXHAUSTED and its resume cursor.
    pub watch_max_lag_events: i64,
    /// Seconds a watcher's transport may accept nothing (its client reads
    /// nothing: its HTTP/2 window and the buffers are full) before the
    /// stream ends with RESOURCE_EXHAUSTED and its resume cursor, however
    /// few events were committed meanwhile.
    pub watch_stall_secs: u64,
    /// How often the event log is polled when no commit was heard of, in
    /// milliseconds (a safety net behind commit and LISTEN/NOTIFY wake-ups).
    pub event_poll_interval_ms: u64,
    /// Where emails go: `file://DIR`, `log`, `smtp://[USER:PASS@]HOST[:PORT]`,
    /// `smtps://...`, `resend://` or `sendgrid://`; several, comma-separated,
    /// in order of preference, fail over (see `mail_failover_*`).
    pub mail_transport: String,
    /// The From of every email.
    pub mail_from: String,
    /// Who receives the administrators' emails (new requests).
    pub admin_emails: Vec<String>,
    /// Run the mail worker inside `sesame serve` (else run `sesame worker`).
    pub mail_worker: bool,
    /// Seconds before retry 1, 2, ...; the last delay repeats. Each delay
    /// varies by +-20 % so retries of many emails spread out.
    pub mail_retry_schedule_secs: Vec<u64>,
    /// Seconds after which a failing email gives up and goes dead.
    pub mail_lifetime_secs: u64,
    /// Seconds a worker's claim on an email lasts (a dead worker's claims
    /// expire after this); a live worker renews its claims every third of
    /// it. Must exceed `mail_timeout_secs`.
    pub mail_lease_secs: u64,
    /// Longest pause, in milliseconds, between outbox polls when nothing is
    /// due (a safety poll): the worker wakes at once when this process
    /// commits new emails, when another process does on PostgreSQL
    /// (LISTEN/NOTIFY), and when the next retry falls due.
    pub mail_poll_interval_ms: u64,
    /// Milliseconds within which a send's outcome is recorded: no new send
    /// starts while an outcome older than this is not recorded yet, so a
    /// crash resends at most the emails sent in that time (and those in
    /// flight).
    pub mail_record_within_ms: u64,
    /// This worker's stable identity (letters, digits, `.`, `_`, `-`; at
    /// most 64): restarted, the worker takes back at once the emails it
    /// had claimed instead of waiting `mail_lease_secs` for their leases.
    /// Never the same for two live workers. None: no identity.
    pub mail_worker_id: Option<String>,
    /// Emails claimed per round.
    pub mail_batch: u64,
    /// Emails sent at the same time by one worker.
    pub mail_concurrency: u64,
    /// Seconds an SMTP conversation or a provider's API call may take.
    pub mail_timeout_secs: u64,
    /// Consecutive retryable failures of one transport, within
    /// `mail_failover_window_secs` of the first, after which the next one
    /// listed in `mail_transport` takes the traffic.
    pub mail_failover_after: u32,
    /// Seconds within which those failures must fall.
    pub mail_failover_window_secs: u64,
    /// Seconds a failing transport rests before it is tried first again.
    pub mail_failover_cooldown_secs: u64,
    /// Resend's API base URL (tests and other regions set their own).
    pub mail_resend_base_url: String,
    /// Resend API key (`re_...`); better from the environment
    /// (`SESAME_MAIL_RESEND_API_KEY`) or `mail_resend_api_key_file`.
    pub mail_resend_api_key: Option<String>,
    /// A file holding the Resend API key.
    pub mail_resend_api_key_file: Option<String>,
    /// The signing secret of the Resend webhook (`whsec_...`): enables
    /// `POST /webhooks/resend`.
    pub mail_resend_webhook_secret: Option<String>,
    /// SendGrid's API base URL.
    pub mail_sendgrid_base_url: String,
    /// SendGrid API key (`SG....`); better from the environment
    /// (`SESAME_MAIL_SENDGRID_API_KEY`) or `mail_sendgrid_api_key_file`.
    pub mail_sendgrid_api_key: Option<String>,
    /// A file holding the SendGrid API key.
    pub mail_sendgrid_api_key_file: Option<String>,
    /// The public key of SendGrid's signed event webhook (base64, as its
    /// settings page shows it): enables `POST /webhooks/sendgrid`.
    pub mail_sendgrid_webhook_public_key: Option<String>,
    /// A directory of `.txt` / `.mjml` (or finished `.html`) email templates
    /// that override the built-in ones by file name.
    pub mail_templates_dir: Option<String>,
    /// DKIM signing domain (`d=`); set with the selector and key file, or
    /// none of the three.
    pub mail_dkim_domain: Option<String>,
    /// DKIM selector (`s=`): the key is published at
    /// `SELECTOR._domainkey.DOMAIN`.
    pub mail_dkim_selector: Option<String>,
    /// DKIM private key: an RSA key in PKCS#1 PEM (`BEGIN RSA PRIVATE KEY`)
    /// or an Ed25519 seed as one line of base64.
    pub mail_dkim_key_file: Option<String>,
    /// The server's secret key (32 bytes, base64): seals gateway codes until
    /// their email is sent. Default with SQLite: `DATABASE_PATH.key`, created
    /// on first start; required with PostgreSQL (every replica and worker
    /// needs the same file).
    pub secret_key_file: Option<String>,
    /// Seconds a gateway code stays redeemable.
    pub gateway_code_validity_secs: u64,
    /// Validity per resource (gateway), overriding the default:
    /// `{ "vpn-paris" = 3600 }`.
    pub gateway_code_validity_by_resource: BTreeMap<String, u64>,
    /// Failed redemptions a gateway key may make per minute before its calls
    /// are refused with RESOURCE_EXHAUSTED (per server process).
    pub gateway_failures_per_minute: u32,
    /// The decision policy (TOML rules); none: every request waits for one
    /// administrator's approval.
    pub policy_file: Option<String>,
    /// How often the policy file is checked for changes (SIGHUP reloads at
    /// once).
    pub policy_poll_interval_ms: u64,
    /// Calls a second one API key may make on average (per server
    /// process); 0 turns the limit off.
    pub rate_limit_per_key: u32,
    /// Calls one API key may make at once above the average.
    pub rate_limit_burst: u32,
    /// Calls a second one peer address (an IPv4 address, or an IPv6 /64)
    /// may make on average, checked before authentication so that floods
    /// without a valid key are held too (per server process); 0 turns the
    /// limit off. Behind a proxy every call comes from the proxy's address.
    pub rate_limit_per_peer: u32,
    /// Calls one peer address may make at once above the average.
    pub rate_limit_peer_burst: u32,
    /// Unary calls handled at once by this process; beyond it calls are
    /// shed at once with UNAVAILABLE and a RetryInfo, not queued; 0 turns
    /// the cap off.
    pub max_in_flight_calls: usize,
    /// Unary calls at work at once; the others (up to
    /// `max_in_flight_calls`) wait their turn in arrival order, and one
    /// whose deadline would pass before its turn and its own work is
    /// refused at once with UNAVAILABLE and a RetryInfo; 0: no turns.
    pub max_active_calls: usize,
    /// Server streams (WatchEvents, health Watch, reflection) open at once,
    /// counted apart from unary calls since they live long; beyond it new
    /// streams are shed the same way; 0 turns the cap off.
    pub max_open_streams: usize,
    /// Serve TLS with this certificate chain (PEM); with `tls_key_file`.
    pub tls_cert_file: Option<String>,
    /// The TLS private key (PEM).
    pub tls_key_file: Option<String>,
    /// Require client certificates signed by this CA (PEM): mutual TLS.
    pub tls_client_ca_file: Option<String>,
    /// Serve plaintext on a non-loopback address (behind a TLS-terminating
    /// proxy); otherwise refused, since API keys would cross the network in
    /// clear.
    pub allow_insecure: bool,
    /// Address of the Prometheus `/metrics` HTTP listener; none (the
    /// default) serves no metrics.
    pub metrics_addr: Option<SocketAddr>,
    /// Allow a `metrics_addr` that is not a loopback address. Metrics tell
    /// anyone who can reach them about traffic and backlog, so exposing
    /// them is a deliberate choice.
    pub metrics_allow_public: bool,
    /// How often the database gauges (requests by state, outbox) are read,
    /// in seconds. Each refresh scans `access_requests` once.
    pub metrics_refresh_secs: u64,
    /// Where traces are exported over OTLP/gRPC, e.g.
    /// `http://localhost:4317` (an OpenTelemetry Collector or the Datadog
    /// Agent) or `https://otlp.nr-data.net:4317` (New Relic). None (the
    /// default) exports nothing.
    pub otlp_endpoint: Option<String>,
    /// Metadata sent with every export, as `name=value` (e.g.
    /// `api-key=LICENSE_KEY` for New Relic). The values are secrets: never
    /// logged or shown.
    pub otlp_headers: Vec<String>,
    /// Share of new traces sampled, from 0.0 to 1.0; a call whose caller
    /// sent a `traceparent` follows the caller's decision instead.
    pub otlp_sampling_ratio: f64,
    /// The `service.name` of the exported traces.
    pub otlp_service_name: String,
    /// Seconds administrators have to decide a request: past half of it
    /// they are reminded by email, past all of it alerted (escalation).
    pub review_sla_secs: u64,
    /// Seconds after which a request still PENDING expires (the applicant
    /// is emailed). At least `review_sla_secs`.
    pub pending_max_age_secs: u64,
    /// Run the deadline scheduler inside `sesame serve` and `sesame worker`
    /// (several may run: each step still happens once).
    pub scheduler: bool,
    /// Seconds between two passes of the deadline scheduler.
    pub scheduler_interval_secs: u64,
    /// Where the data subjects' keys are kept (`sqlite://PATH` or
    /// `postgres://...`). Default with SQLite: `DATABASE_PATH.keys.db`
    /// beside the database; with PostgreSQL: the same database. Kept apart
    /// from the database (and its backups), erasing a person also makes
    /// their data in old backups of the database unreadable.
    pub key_store_url: Option<String>,
    /// Consent purposes every submission must include; a submission without
    /// one of them is refused (INVALID_ARGUMENT, reason `CONSENT_REQUIRED`).
    pub consent_required_purposes: Vec<String>,
    /// Whether an administrator may approve a request it submitted itself
    /// (with its own key). Off by default: separation of duties. A request
    /// a policy rule put under review is never approved by its submitter.
    pub allow_self_approval: bool,
    /// Days after its decision (or expiry) a closed request keeps the
    /// applicant's personal data; then the retention job erases it and the
    /// request stays as an anonymous record. 0 keeps it forever.
    pub retention_closed_request_days: u32,
    /// Days a sent email's recipient and template data are kept; then the
    /// retention job purges them (the record of the sending stays). 0 keeps
    /// them forever.
    pub retention_sent_email_days: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 50051)),
            console_enabled: true,
            console_listen_addr: None,
            database_url: "sqlite://sesame.db".to_owned(),
            database_max_connections: 10,
            database_timeout_secs: 5,
            log_format: LogFormat::Text,
            log_filter: "info".to_owned(),
            max_decoding_message_bytes: 64 * 1024,
            max_encoding_message_bytes: 8 * 1024 * 1024,
            request_timeout_secs: 30,
            shutdown_grace_secs: 10,
            health_check_interval_secs: 1,
            watch_heartbeat_secs: 15,
            watch_buffer_events: 1024,
            watch_max_lag_events: 10_000,
            watch_stall_secs: 30,
            event_poll_interval_ms: 1000,
            mail_transport: "file://mail-out".to_owned(),
            mail_from: "Sesame <sesame@localhost>".to_owned(),
            admin_emails: Vec::new(),
            mail_worker: true,
            mail_retry_schedule_secs: vec![30, 120, 600, 1800, 3600, 7200],
            mail_lifetime_secs: 2 * 24 * 3600,
            mail_lease_secs: 60,
            mail_poll_interval_ms: 10_000,
            mail_record_within_ms: 50,
            mail_worker_id: None,
            mail_batch: 128,
            mail_concurrency: 32,
            mail_timeout_secs: 30,
            mail_failover_after: 3,
            mail_failover_window_secs: 60,
            mail_failover_cooldown_secs: 300,
            mail_resend_base_url: "https://api.resend.com".to_owned(),
            mail_resend_api_key: None,
            mail_resend_api_key_file: None,
            mail_resend_webhook_secret: None,
            mail_sendgrid_base_url: "https://api.sendgrid.com".to_owned(),
            mail_sendgrid_api_key: None,
            mail_sendgrid_api_key_file: None,
            mail_sendgrid_webhook_public_key: None,
            mail_templates_dir: None,
            mail_dkim_domain: None,
            mail_dkim_selector: None,
            mail_dkim_key_file: None,
            secret_key_file: None,
            gateway_code_validity_secs: 72 * 3600,
            gateway_code_validity_by_resource: BTreeMap::new(),
            gateway_failures_per_minute: 20,
            policy_file: None,
            policy_poll_interval_ms: 2000,
            key_store_url: None,
            consent_required_purposes: vec!["access_management".to_owned()],
            allow_self_approval: false,
            retention_closed_request_days: 365,
            retention_sent_email_days: 30,
            rate_limit_per_key: 1000,
            rate_limit_burst: 2000,
            rate_limit_per_peer: 2000,
            rate_limit_peer_burst: 4000,
            max_in_flight_calls: 512,
            max_active_calls: 64,
            max_open_streams: 10_000,
            tls_cert_file: None,
            tls_key_file: None,
            tls_client_ca_file: None,
            allow_insecure: false,
            metrics_addr: None,
            metrics_allow_public: false,
            metrics_refresh_secs: 15,
            otlp_endpoint: None,
            otlp_headers: Vec::new(),
            otlp_sampling_ratio: 1.0,
            otlp_service_name: "sesame".to_owned(),
            review_sla_secs: 24 * 3600,
            pending_max_age_secs: 14 * 24 * 3600,
            scheduler: true,
            scheduler_interval_secs: 30,
        }
    }
}

impl fmt::Debug for Config {
    /// Every setting, with the passwords in `database_url` and
    /// `mail_transport` redacted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = serde_json::to_value(self).map_err(|_| fmt::Error)?;
        shown["database_url"] = redact_url(&self.database_url).into();
        shown["mail_transport"] = crate::redact::redact_transports(&self.mail_transport).into();
        for secret in [
            "mail_resend_api_key",
            "mail_resend_webhook_secret",
            "mail_sendgrid_api_key",
        ] {
            if !shown[secret].is_null() {
                shown[secret] = "[redacted]".into();
            }
        }
        shown["otlp_headers"] = self
            .otlp_headers
            .iter()
            .map(|header| redact_header(header))
            .collect::<Vec<_>>()
            .into();
        write!(f, "Config {shown}")
    }
}

impl fmt::Debug for Overrides {
    /// The flags given, with the database password redacted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Overrides")
            .field("listen_addr", &self.listen_addr)
            .field(
                "database_url",
                &self.database_url.as_deref().map(redact_url),
            )
            .field("log_format", &self.log_format)
            .field("log_filter", &self.log_filter)
            .field("tls_cert_file", &self.tls_cert_file)
            .field("tls_key_file", &self.tls_key_file)
            .field("tls_client_ca_file", &self.tls_client_ca_file)
            .field("allow_insecure", &self.allow_insecure)
            .field("metrics_addr", &self.metrics_addr)
            .finish()
    }
}

/// Values given on the command line; `None` leaves the lower layers alone.
#[derive(Clone, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen_addr: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_filter: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_client_ca_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_insecure: Option<bool>,
    pub metrics_addr: Option<SocketAddr>,
}

/// A configuration that could not be loaded or is invalid.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {0} does not exist")]
    MissingFile(String),
    #[error("invalid configuration: {0}")]
    Invalid(String),
    #[error(transparent)]
    Parse(#[from] Box<figment::Error>),
}

/// The result of loading: the configuration and the unknown keys seen.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    /// Keys that no setting has; reported as warnings once logging is up.
    pub unknown_keys: Vec<String>,
}

impl Config {
    /// Loads the layers. `file` is an explicit `--config` path (must exist);
    /// without it, `sesame.toml` is read if present.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Loaded, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        match file {
            Some(path) if !path.exists() => {
                return Err(ConfigError::MissingFile(path.display().to_string()));
            }
            Some(path) => figment = figment.merge(Toml::file_exact(path)),
            None => figment = figment.merge(Toml::file(DEFAULT_CONFIG_FILE)),
        }
        figment = figment
            .merge(Env::prefixed(ENV_PREFIX))
            .merge(Serialized::defaults(overrides));
        let config: Config = figment.extract().map_err(Box::new)?;
        config.validate()?;
        let known = known_keys();
        let seen: BTreeMap<String, figment::value::Value> = figment.extract().map_err(Box::new)?;
        let unknown_keys = seen
            .into_keys()
            .filter(|key| !known.contains(key))
            .collect();
        Ok(Loaded {
            config,
            unknown_keys,
        })
    }

    /// Checks ranges and combinations that types alone cannot express,
    /// reporting every problem at once. What needs a subsystem to be
    /// checked is checked by `options::mail` when the mail settings are
    /// built.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        self.server_problems(&mut problems);
        self.access_problems(&mut problems);
        self.policy_problems(&mut problems);
        self.mail_problems(&mut problems);
        self.otlp_problems(&mut problems);
        if self.shutdown_grace_secs > 3600 {
            problems.push("shutdown_grace_secs must be at most 3600".to_owned());
        }
        if let Err(error) = tracing_subscriber::EnvFilter::try_new(&self.log_filter) {
            problems.push(format!(
                "log_filter {:?} is invalid: {error}",
                self.log_filter
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(problems.join("; ")))
        }
    }

    /// The database, message sizes, timeouts, metrics and watch streams.
    fn server_problems(&self, problems: &mut Vec<String>) {
        let scheme_ok = ["sqlite:", "postgres:", "postgresql:"]
            .iter()
            .any(|scheme| self.database_url.starts_with(scheme));
        if !scheme_ok {
            problems.push(format!(
                "database_url must start with sqlite:, postgres: or postgresql:, got {:?}",
                redact_url(&self.database_url)
            ));
        }
        if !(1..=1000).contains(&self.database_max_connections) {
            problems.push("database_max_connections must be between 1 and 1000".to_owned());
        }
        let message_range = 1024..=64 * 1024 * 1024;
        if !message_range.contains(&self.max_decoding_message_bytes) {
            problems.push("max_decoding_message_bytes must be between 1 KiB and 64 MiB".to_owned());
        }
        if !message_range.contains(&self.max_encoding_message_bytes) {
            problems.push("max_encoding_message_bytes must be between 1 KiB and 64 MiB".to_owned());
        }
        for (key, value) in [
            ("database_timeout_secs", self.database_timeout_secs),
            ("request_timeout_secs", self.request_timeout_secs),
            (
                "health_check_interval_secs",
                self.health_check_interval_secs,
            ),
            ("watch_heartbeat_secs", self.watch_heartbeat_secs),
            ("watch_stall_secs", self.watch_stall_secs),
            ("metrics_refresh_secs", self.metrics_refresh_secs),
        ] {
            if !(1..=3600).contains(&value) {
                problems.push(format!("{key} must be between 1 and 3600"));
            }
        }
        if let Some(problem) = self.metrics_addr_problem() {
            problems.push(problem);
        }
        if let Some(problem) = self.console_addr_problem() {
            problems.push(problem);
        }
        if !(1..=1_000_000).contains(&self.watch_buffer_events) {
            problems.push("watch_buffer_events must be between 1 and 1000000".to_owned());
        }
        if self.watch_max_lag_events < 1 {
            problems.push("watch_max_lag_events must be at least 1".to_owned());
        }
        if !(10..=60_000).contains(&self.event_poll_interval_ms) {
            problems.push("event_poll_interval_ms must be between 10 and 60000".to_owned());
        }
    }

    /// Gateway codes, TLS and the protective limits.
    fn access_problems(&self, problems: &mut Vec<String>) {
        if !(60..=90 * 86_400).contains(&self.gateway_code_validity_secs)
            || self
                .gateway_code_validity_by_resource
                .values()
                .any(|secs| !(60..=90 * 86_400).contains(secs))
        {
            problems
                .push("gateway code validities must be between 60 seconds and 90 days".to_owned());
        }
        match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(_), Some(_)) => {}
            (None, None) => {
                if self.tls_client_ca_file.is_some() {
                    problems
                        .push("tls_client_ca_file needs tls_cert_file and tls_key_file".to_owned());
                }
                problems.extend(self.plaintext_problem("listen_addr", self.listen_addr));
            }
            _ => problems.push("tls_cert_file and tls_key_file go together".to_owned()),
        }
        if self.rate_limit_per_key > 0 && self.rate_limit_burst == 0 {
            problems.push(
                "rate_limit_burst must be at least 1 when rate_limit_per_key is set".to_owned(),
            );
        }
        if self.rate_limit_per_peer > 0 && self.rate_limit_peer_burst == 0 {
            problems.push(
                "rate_limit_peer_burst must be at least 1 when rate_limit_per_peer is set"
                    .to_owned(),
            );
        }
        for (key, value) in [
            ("max_in_flight_calls", self.max_in_flight_calls),
            ("max_active_calls", self.max_active_calls),
            ("max_open_streams", self.max_open_streams),
        ] {
            if value > 1_000_000 {
                problems.push(format!("{key} must be at most 1000000 (0 turns it off)"));
            }
        }
    }

    /// Decisions, deadlines, the key store, retention, consent and the scheduler.
    fn policy_problems(&self, problems: &mut Vec<String>) {
        if !(50..=3_600_000).contains(&self.policy_poll_interval_ms) {
            problems.push("policy_poll_interval_ms must be between 50 and 3600000".to_owned());
        }
        if self.gateway_failures_per_minute == 0 {
            problems.push("gateway_failures_per_minute must be at least 1".to_owned());
        }
        if !(60..=90 * 86_400).contains(&self.review_sla_secs) {
            problems.push("review_sla_secs must be between 60 seconds and 90 days".to_owned());
        }
        if self.pending_max_age_secs < self.review_sla_secs
            || self.pending_max_age_secs > 366 * 86_400
        {
            problems.push(
                "pending_max_age_secs must be at least review_sla_secs and at most 366 days"
                    .to_owned(),
            );
        }
        if let Some(url) = &self.key_store_url
            && !(url.starts_with("sqlite:") || url.starts_with("postgres"))
        {
            problems.push("key_store_url must be a sqlite:// or postgres:// URL".to_owned());
        }
        if self.retention_closed_request_days > 36_500 || self.retention_sent_email_days > 36_500 {
            problems
                .push("retention periods must be at most 36500 days (0 keeps forever)".to_owned());
        }
        if let Some(bad) = self.consent_required_purposes.iter().find(|purpose| {
            purpose.is_empty()
                || purpose.len() > MAX_PURPOSE_CHARS
                || !purpose.chars().all(|c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-' | '.')
                })
        }) {
            problems.push(format!(
                "consent_required_purposes: {bad:?} is not a valid purpose (1 to 64 characters \
                 from a-z, 0-9, _, - and .)"
            ));
        }
        if !(1..=3600).contains(&self.scheduler_interval_secs) {
            problems.push("scheduler_interval_secs must be between 1 and 3600".to_owned());
        }
    }

    /// The sender, administrators, DKIM, transport and mail timings.
    fn mail_problems(&self, problems: &mut Vec<String>) {
        if self.mail_from.trim().is_empty() {
            problems.push("mail_from must not be empty".to_owned());
        }
        let mut seen_admins = std::collections::HashSet::new();
        for admin in &self.admin_emails {
            if !seen_admins.insert(admin.to_lowercase()) {
                problems.push(format!("admin_emails: {admin:?} is listed twice"));
            }
        }
        if let Some(problem) = self.dkim_problem() {
            problems.push(problem);
        }
        if let Some(problem) = self.mail_transport_problem() {
            problems.push(problem);
        }
        if self.mail_retry_schedule_secs.is_empty() || self.mail_retry_schedule_secs.contains(&0) {
            problems.push(
                "mail_retry_schedule_secs must list at least one delay, each at least 1".to_owned(),
            );
        }
        for (key, value) in [
            ("mail_lifetime_secs", self.mail_lifetime_secs),
            ("mail_lease_secs", self.mail_lease_secs),
            ("mail_timeout_secs", self.mail_timeout_secs),
            ("mail_batch", self.mail_batch),
            ("mail_concurrency", self.mail_concurrency),
            ("mail_poll_interval_ms", self.mail_poll_interval_ms),
            ("mail_record_within_ms", self.mail_record_within_ms),
            ("mail_failover_after", u64::from(self.mail_failover_after)),
        ] {
            if value == 0 {
                problems.push(format!("{key} must be at least 1"));
            }
        }
        if let Some(id) = &self.mail_worker_id
            && (id.is_empty()
                || id.len() > 64
                || !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            problems.push(format!(
                "mail_worker_id {id:?} must be 1 to 64 letters, digits, '.', '_' or '-'"
            ));
        }
        if self.mail_lease_secs <= self.mail_timeout_secs {
            problems.push(format!(
                "mail_lease_secs ({}) must exceed mail_timeout_secs ({}): one email's SMTP \
                 conversation must fit in a lease even before the lease is renewed, or another \
                 worker may send the email again",
                self.mail_lease_secs, self.mail_timeout_secs
            ));
        }
    }

    /// Why the DKIM settings cannot be used, if they cannot: the three go
    /// together, and the domain and selector are DNS names. Whether the
    /// key parses is checked when the signer is built (`options::mail`).
    fn dkim_problem(&self) -> Option<String> {
        let (domain, selector) = match (
            &self.mail_dkim_domain,
            &self.mail_dkim_selector,
            &self.mail_dkim_key_file,
        ) {
            (None, None, None) => return None,
            (Some(domain), Some(selector), Some(_key_file)) => (domain, selector),
            _ => {
                return Some(
                    "mail_dkim_domain, mail_dkim_selector and mail_dkim_key_file \
                            go together: set all three or none"
                        .to_owned(),
                );
            }
        };
        let label_ok = |value: &str| {
            !value.is_empty()
                && value.split('.').all(|label| {
                    !label.is_empty()
                        && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                })
        };
        if label_ok(domain) && label_ok(selector) {
            return None;
        }
        Some(format!(
            "mail_dkim_domain {domain:?} and mail_dkim_selector {selector:?} must be DNS names"
        ))
    }

    /// Why `mail_transport` cannot be used, if its shape already says so
    /// (the scheme, a directory, a host); the whole URL is parsed when the
    /// transport is built (`options::mail`). Never shows the password.
    fn mail_transport_problem(&self) -> Option<String> {
        let urls: Vec<&str> = self.mail_transport.split(',').map(str::trim).collect();
        let mut seen = std::collections::HashSet::new();
        for url in &urls {
            if !seen.insert(*url) {
                return Some(format!("mail_transport lists {:?} twice", redact_url(url)));
            }
        }
        urls.into_iter().find_map(Self::one_transport_problem)
    }

    /// Why one transport URL of `mail_transport` cannot be used, if it
    /// cannot.
    fn one_transport_problem(url: &str) -> Option<String> {
        let invalid = |reason: &str| {
            Some(format!(
                "invalid mail_transport {:?}: {reason}",
                redact_url(url)
            ))
        };
        if url == "log" || url == "resend://" || url == "sendgrid://" {
            return None;
        }
        if url.is_empty() {
            return invalid("empty entry (a stray comma?)");
        }
        if let Some(dir) = url.strip_prefix("file://") {
            return dir
                .is_empty()
                .then(|| invalid("file:// needs a directory"))
                .flatten();
        }
        if !(url.starts_with("smtp://") || url.starts_with("smtps://")) {
            return invalid(
                "expected file://DIR, log, smtp://HOST[:PORT], smtps://HOST[:PORT], resend:// or \
                 sendgrid://",
            );
        }
        match url::Url::parse(url) {
            Ok(parsed) if parsed.host_str().is_some_and(|host| !host.is_empty()) => None,
            Ok(_) => invalid("smtp host undefined"),
            Err(error) => invalid(&error.to_string()),
        }
    }

    /// The trace export: the endpoint's URL, the headers' shape, the
    /// sampling ratio and the service name. Never shows a header's value.
    fn otlp_problems(&self, problems: &mut Vec<String>) {
        if let Some(endpoint) = &self.otlp_endpoint {
            match url::Url::parse(endpoint) {
                Ok(url) if !matches!(url.scheme(), "http" | "https") => problems.push(format!(
                    "otlp_endpoint {:?} must be an http:// or https:// URL (OTLP over gRPC, \
                     e.g. http://localhost:4317)",
                    redact_url(endpoint)
                )),
                Ok(url) if url.host_str().is_none_or(str::is_empty) => problems.push(format!(
                    "otlp_endpoint {:?} has no host",
                    redact_url(endpoint)
                )),
                Ok(_) => {}
                Err(error) => problems.push(format!(
                    "otlp_endpoint {:?} is not a URL: {error} (e.g. http://localhost:4317)",
                    redact_url(endpoint)
                )),
            }
        }
        for header in &self.otlp_headers {
            if let Some(problem) = otlp_header_problem(header) {
                problems.push(problem);
            }
        }
        if !(0.0..=1.0).contains(&self.otlp_sampling_ratio) {
            problems.push(format!(
                "otlp_sampling_ratio must be between 0.0 and 1.0, got {}",
                self.otlp_sampling_ratio
            ));
        }
        if self.otlp_service_name.trim().is_empty() {
            problems.push("otlp_service_name must not be empty".to_owned());
        }
    }

    /// Why `metrics_addr` cannot be used, if it cannot.
    fn metrics_addr_problem(&self) -> Option<String> {
        let addr = self.metrics_addr?;
        if !addr.ip().is_loopback() && !self.metrics_allow_public {
            return Some(format!(
                "metrics_addr {addr} is not a loopback address: /metrics shows traffic and \
                 backlog to anyone who reaches it; listen on 127.0.0.1, or set \
                 metrics_allow_public = true to expose it (behind a firewall or NetworkPolicy)"
            ));
        }
        if addr.port() != 0 && addr == self.listen_addr {
            return Some(format!(
                "metrics_addr {addr} is also listen_addr: give metrics a port of their own"
            ));
        }
        None
    }

    /// Why `console_listen_addr` cannot be used, if it cannot.
    fn console_addr_problem(&self) -> Option<String> {
        let addr = self.console_listen_addr?;
        if !self.console_enabled {
            return Some(
                "console_listen_addr is set but console_enabled is false: remove one".to_owned(),
            );
        }
        if addr.port() != 0 && (addr == self.listen_addr || Some(addr) == self.metrics_addr) {
            return Some(format!(
                "console_listen_addr {addr} is also listen_addr or metrics_addr: give the \
                 console a port of its own"
            ));
        }
        self.plaintext_problem("console_listen_addr", addr)
    }

    /// Why serving API calls on `addr` (the setting `name`) would expose
    /// keys: plaintext (no TLS) off loopback without `allow_insecure`.
    fn plaintext_problem(&self, name: &str, addr: SocketAddr) -> Option<String> {
        let tls = self.tls_cert_file.is_some() && self.tls_key_file.is_some();
        (!addr.ip().is_loopback() && !tls && !self.allow_insecure).then(|| {
            format!(
                "{name} {addr} is not loopback and TLS is off: API keys would cross the network \
                 in clear; set tls_cert_file and tls_key_file, or allow_insecure = true behind a \
                 TLS-terminating proxy"
            )
        })
    }
}

/// Why one `otlp_headers` entry cannot be sent as gRPC metadata, if it
/// cannot: `name=value`, the name a lowercase-able token, the value visible
/// ASCII. The value is never shown.
fn otlp_header_problem(header: &str) -> Option<String> {
    let Some((name, value)) = header.split_once('=') else {
        return Some(format!(
            "otlp_headers entry {:?} must be name=value (e.g. api-key=...)",
            redact_header(header)
        ));
    };
    let name = name.trim();
    let name_ok = !name.is_empty()
        && !name.starts_with("grpc-")
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.'));
    if !name_ok || name.ends_with("-bin") {
        return Some(format!(
            "otlp_headers name {name:?} must be letters, digits, '-', '_' or '.' (not grpc-* \
             nor *-bin)"
        ));
    }
    let value = value.trim();
    if value.is_empty() || !value.bytes().all(|byte| (0x20..0x7f).contains(&byte)) {
        return Some(format!(
            "otlp_headers value of {name:?} must be non-empty visible ASCII"
        ));
    }
    None
}

/// An `otlp_headers` entry as shown: its name, never its value.
fn redact_header(header: &str) -> String {
    match header.split_once('=') {
        Some((name, _)) => format!("{}=[redacted]", name.trim()),
        None => "[redacted]".to_owned(),
    }
}

fn known_keys() -> Vec<String> {
    match serde_json::to_value(Config::default()) {
        Ok(serde_json::Value::Object(map)) => map.into_iter().map(|(key, _)| key).collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn passwords_are_redacted() {
        let config = Config {
            database_url: "postgres://u:hunter2@h/d".into(),
            ..Config::default()
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("postgres://u:***@h/d"), "{shown}");
        assert!(shown.contains("watch_heartbeat_secs"), "{shown}");
    }

    /// Guards against a secret in the configuration reaching a log line or
    /// an error message through `Debug`.
    #[test]
    fn every_secret_in_the_configuration_is_redacted() {
        let config = Config {
            database_url: "postgres://u:db-secret@h/d".into(),
            mail_transport: "smtp://mailer:smtp-secret@smtp.example.com:587".into(),
            mail_dkim_key_file: Some("/etc/sesame/dkim.key".into()),
            secret_key_file: Some("/etc/sesame/secret.key".into()),
            ..Config::default()
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("db-secret"), "{shown}");
        assert!(!shown.contains("smtp-secret"), "{shown}");
        assert!(
            shown.contains("smtp://mailer:***@smtp.example.com:587"),
            "{shown}"
        );
        // Paths to key files are not secrets; the keys are never read into
        // the configuration.
        assert!(shown.contains("/etc/sesame/secret.key"), "{shown}");
        let overrides = Overrides {
            database_url: Some("postgres://u:flag-secret@h/d".into()),
            ..Overrides::default()
        };
        let shown = format!("{overrides:?}");
        assert!(!shown.contains("flag-secret"), "{shown}");
        assert!(shown.contains("postgres://u:***@h/d"), "{shown}");
        // A bad transport URL is refused without echoing its password.
        let bad = Config {
            mail_transport: "smtp://mailer:smtp-secret@".into(),
            ..Config::default()
        };
        let message = bad.validate().unwrap_err().to_string();
        assert!(!message.contains("smtp-secret"), "{message}");
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API returns its own error type
    fn protective_limits_come_from_the_environment_and_are_checked() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("SESAME_RATE_LIMIT_PER_PEER", "50");
            jail.set_env("SESAME_RATE_LIMIT_PEER_BURST", "80");
            jail.set_env("SESAME_MAX_IN_FLIGHT_CALLS", "7");
            jail.set_env("SESAME_MAX_OPEN_STREAMS", "0");
            let loaded = Config::load(None, &Overrides::default()).expect("valid config");
            assert!(loaded.unknown_keys.is_empty(), "{:?}", loaded.unknown_keys);
            let limits = loaded.config.sections().limits;
            assert_eq!((limits.per_peer_rate, limits.per_peer_burst), (50, 80));
            assert_eq!(limits.max_in_flight_calls, 7);
            assert_eq!(limits.max_open_streams, 0, "0 turns the cap off");
            assert_eq!(limits.request_timeout, Duration::from_secs(30));
            assert_eq!(limits.max_message_bytes, 64 * 1024);
            Ok(())
        });
        let config = Config {
            rate_limit_per_peer: 10,
            rate_limit_peer_burst: 0,
            max_in_flight_calls: 2_000_000,
            ..Config::default()
        };
        let message = config.validate().unwrap_err().to_string();
        assert!(message.contains("rate_limit_peer_burst"), "{message}");
        assert!(message.contains("max_in_flight_calls"), "{message}");
    }

    #[test]
    fn plaintext_off_loopback_needs_an_explicit_opt_in() {
        let mut config = Config {
            listen_addr: "0.0.0.0:50051".parse().unwrap(),
            ..Config::default()
        };
        let message = config.validate().unwrap_err().to_string();
        assert!(
            message.contains("API keys would cross the network in clear"),
            "{message}"
        );
        config.allow_insecure = true;
        assert!(config.validate().is_ok());
        config.tls_cert_file = Some("cert.pem".into());
        let message = config.validate().unwrap_err().to_string();
        assert!(message.contains("go together"), "{message}");
        let only_ca = Config {
            tls_client_ca_file: Some("ca.pem".into()),
            ..Config::default()
        };
        assert!(only_ca.validate().is_err());
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API returns its own error type
    fn layers_apply_in_order_and_unknown_keys_are_reported() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "sesame.toml",
                "listen_addr = \"127.0.0.1:6000\"\nlog_filter = \"debug\"\ntypo_key = 1\n",
            )?;
            jail.set_env("SESAME_LOG_FILTER", "warn");
            jail.set_env("SESAME_DATABASE_URL", "sqlite://from-env.db");
            jail.set_env(
                "SESAME_GATEWAY_CODE_VALIDITY_BY_RESOURCE",
                "{vpn-paris=3600, \"door 2\"=600}",
            );
            let overrides = Overrides {
                database_url: Some("sqlite://from-flag.db".into()),
                ..Overrides::default()
            };
            let loaded = Config::load(None, &overrides).expect("valid config");
            assert_eq!(loaded.config.listen_addr.port(), 6000);
            assert_eq!(loaded.config.log_filter, "warn");
            assert_eq!(loaded.config.database_url, "sqlite://from-flag.db");
            assert_eq!(loaded.unknown_keys, vec!["typo_key".to_owned()]);
            let by_resource = &loaded.config.gateway_code_validity_by_resource;
            assert_eq!(by_resource.get("vpn-paris"), Some(&3600));
            assert_eq!(by_resource.get("door 2"), Some(&600));
            Ok(())
        });
    }

    #[test]
    fn invalid_values_are_all_reported() {
        let config = Config {
            database_url: "mysql://x".into(),
            database_max_connections: 0,
            request_timeout_secs: 0,
            watch_heartbeat_secs: 0,
            ..Config::default()
        };
        let message = config.validate().unwrap_err().to_string();
        assert!(message.contains("database_url"), "{message}");
        assert!(message.contains("database_max_connections"), "{message}");
        assert!(message.contains("request_timeout_secs"), "{message}");
        assert!(message.contains("watch_heartbeat_secs"), "{message}");

        let config = Config {
            review_sla_secs: 7200,
            pending_max_age_secs: 3600,
            scheduler_interval_secs: 0,
            ..Config::default()
        };
        let message = config.validate().unwrap_err().to_string();
        assert!(message.contains("pending_max_age_secs"), "{message}");
        assert!(message.contains("scheduler_interval_secs"), "{message}");
        assert!(Config::default().validate().is_ok());
    }

    #[test]
    fn a_public_metrics_addr_needs_the_opt_in() {
        let mut config = Config {
            metrics_addr: Some("0.0.0.0:9090".parse().unwrap()),
            ..Config::default()
        };
        let message = config.validate().unwrap_err().to_string();
        assert!(message.contains("metrics_allow_public"), "{message}");
        config.metrics_allow_public = true;
        config.validate().expect("allowed once opted in");
        config.metrics_allow_public = false;
        config.metrics_addr = Some("127.0.0.1:9090".parse().unwrap());
        config.validate().expect("loopback is always allowed");
        config.metrics_addr = Some("[::1]:9090".parse().unwrap());
        config.validate().expect("IPv6 loopback too");
        config.metrics_addr = Some(config.listen_addr);
        let message = config.validate().unwrap_err().to_string();
        assert!(message.contains("port of their own"), "{message}");
    }

    #[test]
    fn a_console_listen_addr_is_checked_like_listen_addr() {
        let mut config = Config {
            console_listen_addr: Some("127.0.0.1:8080".parse().unwrap()),
            ..Config::default()
        };
        config.validate().expect("a loopback console address");
        config.console_listen_addr = Some(config.listen_addr);
        let message = config.validate().unwrap_err().to_string();
        assert!(message.contains("port of its own"), "{message}");
        config.console_listen_addr = Some("0.0.0.0:8080".parse().unwrap());
        let message = config.validate().unwrap_err().to_string();
        assert!(message.contains("TLS is off"), "{message}");
        config.allow_insecure = true;
        config.validate().expect("behind a TLS-terminating proxy");
        config.console_enabled = false;
        let message = config.validate().unwrap_err().to_string();
        assert!(message.contains("console_enabled is false"), "{message}");
    }

    #[test]
    fn a_mail_worker_id_is_a_short_name_and_recording_has_a_window() {
        for good in ["w1", "sesame-worker-0", "host.example_2"] {
            let config = Config {
                mail_worker_id: Some(good.into()),
                ..Config::default()
            };
            config.validate().expect(good);
        }
        for bad in ["", "a/b", "w 1", "%", &"x".repeat(65)] {
            let config = Config {
                mail_worker_id: Some(bad.into()),
                ..Config::default()
            };
            let message = config.validate().unwrap_err().to_string();
            assert!(message.contains("mail_worker_id"), "{bad:?}: {message}");
        }
        let config = Config {
            mail_record_within_ms: 0,
            ..Config::default()
        };
        let message = config.validate().unwrap_err().to_string();
        assert!(
            message.contains("mail_record_within_ms must be at least 1"),
            "{message}"
        );
    }

    #[test]
    fn a_mail_lease_must_outlast_one_smtp_conversation() {
        let config = Config {
            mail_lease_secs: 30,
            mail_timeout_secs: 30,
            ..Config::default()
        };
        let message = config.validate().unwrap_err().to_string();
        assert!(
            message.contains("mail_lease_secs (30) must exceed mail_timeout_secs (30)"),
            "{message}"
        );
        let config = Config {
            mail_lease_secs: 31,
            mail_timeout_secs: 30,
            ..Config::default()
        };
        assert!(config.validate().is_ok());
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API returns its own error type
    fn otlp_export_is_off_by_default_checked_and_its_headers_are_secret() {
        assert_eq!(Config::default().sections().telemetry.otlp, None);
        figment::Jail::expect_with(|jail| {
            jail.set_env("SESAME_OTLP_ENDPOINT", "https://otlp.nr-data.net:4317");
            jail.set_env("SESAME_OTLP_HEADERS", "[\"api-key=nr-secret-key\"]");
            jail.set_env("SESAME_OTLP_SAMPLING_RATIO", "0.25");
            jail.set_env("SESAME_OTLP_SERVICE_NAME", "sesame-eu");
            let loaded = Config::load(None, &Overrides::default()).expect("valid config");
            assert!(loaded.unknown_keys.is_empty(), "{:?}", loaded.unknown_keys);
            let otlp = loaded.config.sections().telemetry.otlp.expect("export on");
            assert_eq!(otlp.endpoint, "https://otlp.nr-data.net:4317");
            assert_eq!(
                otlp.headers,
                vec![("api-key".to_owned(), "nr-secret-key".to_owned())]
            );
            assert!((otlp.sampling_ratio - 0.25).abs() < f64::EPSILON);
            assert_eq!(otlp.service_name, "sesame-eu");
            let shown = format!("{:?} {otlp:?}", loaded.config);
            assert!(!shown.contains("nr-secret-key"), "{shown}");
            assert!(shown.contains("api-key=[redacted]"), "{shown}");
            Ok(())
        });
        let bad = Config {
            otlp_endpoint: Some("localhost:4317".into()),
            otlp_headers: vec!["api-key: hidden-value".into(), "bad name=x".into()],
            otlp_sampling_ratio: 1.5,
            otlp_service_name: " ".into(),
            ..Config::default()
        };
        let message = bad.validate().unwrap_err().to_string();
        assert!(message.contains("otlp_endpoint"), "{message}");
        assert!(
            message.contains("must be name=value (e.g. api-key=...)"),
            "{message}"
        );
        assert!(
            message.contains("otlp_headers name \"bad name\""),
            "{message}"
        );
        assert!(
            message.contains("otlp_sampling_ratio must be between 0.0 and 1.0, got 1.5"),
            "{message}"
        );
        assert!(message.contains("otlp_service_name"), "{message}");
        assert!(!message.contains("hidden-value"), "{message}");
        for endpoint in ["not a url", "ftp://collector:4317"] {
            let bad = Config {
                otlp_endpoint: Some(endpoint.into()),
                ..Config::default()
            };
            let message = bad.validate().unwrap_err().to_string();
            assert!(message.contains("otlp_endpoint"), "{endpoint}: {message}");
        }
        let negative = Config {
            otlp_sampling_ratio: -0.1,
            ..Config::default()
        };
        assert!(negative.validate().is_err());
    }

    #[test]
    fn an_explicit_missing_file_is_an_error() {
        let error = Config::load(
            Some(Path::new("/nonexistent/sesame.toml")),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(matches!(error, ConfigError::MissingFile(_)));
    }
}
