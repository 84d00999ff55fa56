//! The `sesame` command line: `serve`, `migrate` and `keys`. Errors are
//! reported once, with their causes, and a non-zero exit code.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::app::App;
use crate::auth::Role;
use crate::config::{Config, LogFormat, Overrides};
use crate::crypto::KeyRing;
use crate::domain::mail::MailTemplate;
use crate::domain::{Locale, UserType};
use crate::options;
use crate::redact::redact_url;
use crate::store::{self, Store, keys_validate_name, keys_validate_resources};

/// Sesame: access requests, decisions and gateway codes over gRPC.
#[derive(Debug, Parser)]
#[command(name = "sesame", version, about)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct GlobalArgs {
    /// Config file (TOML). Default: ./sesame.toml when it exists.
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB.
    #[arg(long, global = true, value_name = "URL")]
    database_url: Option<String>,
    /// Log format.
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormat>,
    /// Log filter directives, e.g. `debug` or `sesame_server=debug,info`.
    #[arg(long, global = true, value_name = "FILTER")]
    log_filter: Option<String>,
}

/// TLS flags of `serve`.
#[derive(Debug, Default, Args)]
struct TlsFlags {
    /// Serve TLS with this certificate chain (PEM).
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<String>,
    /// The TLS private key (PEM).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<String>,
    /// Require client certificates signed by this CA (mutual TLS).
    #[arg(long, value_name = "PEM")]
    client_ca: Option<String>,
    /// Serve plaintext on a non-loopback address (behind a TLS proxy).
    #[arg(long)]
    allow_insecure: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Apply migrations and serve gRPC until SIGINT or SIGTERM.
    Serve {
        /// Address to listen on (default 127.0.0.1:50051).
        #[arg(long, value_name = "ADDR")]
        listen: Option<SocketAddr>,
        #[command(flatten)]
        tls: TlsFlags,
        /// Serve Prometheus metrics at http://ADDR/metrics (default: off).
        /// A non-loopback address also needs `metrics_allow_public = true`.
        #[arg(long, value_name = "ADDR")]
        metrics_addr: Option<SocketAddr>,
    },
    /// Run only the mail worker (for deployments with `mail_worker = false`
    /// on the API servers), and the deadline scheduler unless `scheduler =
    /// false`, until SIGINT or SIGTERM.
    Worker {
        /// Serve its Prometheus metrics (email counters, outbox gauges) at
        /// http://ADDR/metrics (default: off).
        #[arg(long, value_name = "ADDR")]
        metrics_addr: Option<SocketAddr>,
    },
    /// Apply pending database migrations and exit.
    Migrate {
        /// Only report how many migrations are pending.
        #[arg(long)]
        status: bool,
    },
    /// Manage API keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Work with the email templates.
    #[command(subcommand)]
    Templates(TemplatesCommand),
    /// Check the mail transports.
    #[command(subcommand)]
    Mail(MailCommand),
}

#[derive(Debug, Subcommand)]
enum MailCommand {
    /// Send one test email through each transport of `mail_transport`,
    /// directly (not through the outbox), and print each answer and its
    /// latency. Exits non-zero when any transport fails.
    Test {
        /// The address the test emails go to.
        #[arg(long, value_name = "ADDRESS")]
        to: String,
    },
}

#[derive(Debug, Subcommand)]
enum TemplatesCommand {
    /// Render one email with sample (or given) values and print it, so it
    /// can be checked in a browser or a terminal.
    Render {
        /// applicant_received, applicant_approved, applicant_rejected,
        /// applicant_cancelled or admin_new_request.
        kind: String,
        /// en or fr.
        #[arg(long, default_value = "en")]
        locale: String,
        /// employee, partner, customer or contractor.
        #[arg(long, default_value = "employee")]
        user_type: String,
        /// A JSON object of values merged over the sample values.
        #[arg(long, value_name = "FILE")]
        data: Option<PathBuf>,
        /// What to print.
        #[arg(long, value_enum, default_value_t = Part::All)]
        part: Part,
    },
}

/// Parts of a rendered email.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Part {
    All,
    Subject,
    Text,
    Html,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Create a key and print its secret once on stdout.
    Create {
        /// Unique name, recorded as the actor of what the key does.
        #[arg(long)]
        name: String,
        /// submitter (submits and reads its own requests), admin
        /// (everything), auditor (reads everything, changes nothing) or
        /// gateway (redeems gateway codes, nothing else).
        #[arg(long)]
        role: Role,
        /// A gateway key only: a resource whose codes it may redeem (repeat
        /// for several). A code for any other resource is refused with
        /// PERMISSION_DENIED. Without it a gateway key redeems codes for
        /// every resource (the server warns about such keys at start).
        #[arg(long = "resource", value_name = "RESOURCE")]
        resources: Vec<String>,
    },
    /// List keys (never their secrets).
    List,
    /// Revoke a key by name. Servers refuse it within 2 s (the time they
    /// trust a verified key from memory), and its open watch streams end
    /// at their next heartbeat.
    Revoke {
        /// Name of the key.
        name: String,
    },
    /// Add a new master key to the key file (`secret_key_file`) and rewrap
    /// every data subject's key with it, while servers keep running: they
    /// read the file again when they meet the new master key. Older master
    /// keys stay in the file, so everything sealed before still opens.
    RotateMaster,
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: could not start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    let (listen_addr, tls, metrics_addr) = match &cli.command {
        Command::Serve {
            listen,
            tls,
            metrics_addr,
        } => (*listen, Some(tls), *metrics_addr),
        Command::Worker { metrics_addr } => (None, None, *metrics_addr),
        _ => (None, None, None),
    };
    let overrides = Overrides {
        listen_addr,
        database_url: cli.global.database_url.clone(),
        log_format: cli.global.log_format,
        log_filter: cli.global.log_filter.clone(),
        tls_cert_file: tls.and_then(|tls| tls.tls_cert.clone()),
        tls_key_file: tls.and_then(|tls| tls.tls_key.clone()),
        tls_client_ca_file: tls.and_then(|tls| tls.client_ca.clone()),
        allow_insecure: tls.and_then(|tls| tls.allow_insecure.then_some(true)),
        metrics_addr,
    };
    let loaded = Config::load(cli.global.config.as_deref(), &overrides)?;
    let config = loaded.config;
    let traces = options::otlp(&config.sections().telemetry);
    let traces = crate::telemetry::init(config.log_format, &config.log_filter, traces.as_ref())?;
    for key in &loaded.unknown_keys {
        warn!(key = %key, "unknown configuration key ignored");
    }

    let result = match cli.command {
        Command::Serve { .. } => serve(config).await,
        Command::Worker { .. } => worker(config).await,
        Command::Migrate { status } => migrate(&config, status).await,
        Command::Keys(command) => keys(&config, command).await,
        Command::Templates(command) => templates(&config, command),
        Command::Mail(MailCommand::Test { to }) => mail_test(&config, &to).await,
    };
    // The spans of the last seconds are exported before the process ends
    // (blocking, off the runtime's workers, while the runtime still runs).
    let _ = tokio::task::spawn_blocking(move || traces.shutdown()).await;
    result
}

async fn serve(config: Config) -> anyhow::Result<()> {
    info!(
        database = %redact_url(&config.database_url),
        addr = %config.listen_addr,
        "starting sesame"
    );
    let listener = tokio::net::TcpListener::bind(config.listen_addr)
        .await
        .with_context(|| format!("could not listen on {}", config.listen_addr))?;
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    crate::run(config, listener, shutdown).await
}

async fn worker(config: Config) -> anyhow::Result<()> {
    // A bad mailbox, transport URL, DKIM key or template stops the worker
    // before it opens anything.
    let prepared = App::prepare(config)?;
    let store = Store::open(&options::database(&prepared.sections().database), true)
        .await
        .context("could not open the database")?;
    let metrics_listener = match prepared.config().metrics_addr {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("could not listen on {addr} for metrics"))?,
        ),
        None => None,
    };
    // No gRPC here: the metrics are the email counters, the database
    // gauges and the pool. The deadline scheduler may run here too: each
    // step still happens once.
    let app = App::build(prepared, store).await?;
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    let background = app.start_background(metrics_listener, true, &shutdown, &shutdown)?;
    background.join().await;
    Ok(())
}

async fn cancel_on_signal(shutdown: CancellationToken) {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(terminate) => terminate,
                Err(error) => {
                    warn!(error = %error, "could not listen for SIGTERM");
                    let _ = interrupt.await;
                    shutdown.cancel();
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => info!("received SIGINT"),
            _ = terminate.recv() => info!("received SIGTERM"),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
    shutdown.cancel();
}

fn templates(config: &Config, command: TemplatesCommand) -> anyhow::Result<()> {
    let TemplatesCommand::Render {
        kind,
        locale,
        user_type,
        data,
        part,
    } = command;
    let Some(template) = MailTemplate::parse(&kind) else {
        let known: Vec<&str> = MailTemplate::ALL.iter().map(|t| t.as_str()).collect();
        bail!(
            "unknown email kind {kind:?}: expected one of {}",
            known.join(", ")
        );
    };
    let Some(locale) = Locale::parse(&locale) else {
        bail!("unknown locale {locale:?}: expected en or fr");
    };
    let Some(user_type) = UserType::parse(&user_type) else {
        bail!(
            "unknown user type {user_type:?}: expected employee, partner, customer or contractor"
        );
    };
    let mut values = crate::mail::sample_data(user_type.as_str());
    if let Some(path) = data {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let given: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not valid JSON", path.display()))?;
        let Some(given) = given.as_object() else {
            bail!("{} must hold a JSON object", path.display());
        };
        for (key, value) in given {
            values[key] = value.clone();
        }
    }
    let templates = options::templates(&config.sections().mail)?;
    let rendered = templates.render(template, locale, user_type, &values)?;
    match part {
        Part::Subject => println!("{}", rendered.subject),
        Part::Text => println!("{}", rendered.text),
        Part::Html => println!("{}", rendered.html),
        Part::All => println!(
            "Subject: {}\n\n{}\n----- HTML -----\n{}",
            rendered.subject, rendered.text, rendered.html
        ),
    }
    Ok(())
}

/// `sesame mail test`: one email through each transport, in order.
async fn mail_test(config: &Config, to: &str) -> anyhow::Result<()> {
    let sections = config.sections();
    let mail = options::mail(&sections.mail)?;
    let to: lettre::message::Mailbox = to
        .parse()
        .with_context(|| format!("--to {to:?} is not an email address"))?;
    let transports = options::transports(&sections.mail, &mail)?;
    let mut failed = 0;
    for (name, transport) in transports.names() {
        let id = uuid::Uuid::now_v7().to_string();
        let email = crate::mail::OutgoingEmail {
            from: mail.from.clone(),
            to: to.clone(),
            message_id: format!("<{id}@sesame>"),
            idempotency_key: id.clone(),
            subject: format!("Sesame mail test through {name}"),
            text: format!(
                "This is a test email sent by `sesame mail test` through the {name} transport. \
                 Nothing needs doing."
            ),
            html: format!(
                "<p>This is a test email sent by <code>sesame mail test</code> through the \
                 <b>{name}</b> transport. Nothing needs doing.</p>"
            ),
            headers: Vec::new(),
            template: Some("mail_test".to_owned()),
            id,
        };
        let started = std::time::Instant::now();
        let result = transport.send(&email).await;
        let millis = started.elapsed().as_millis();
        match result {
            Ok(Some(provider_id)) => {
                println!("{name}: ok in {millis} ms (provider id {provider_id})");
            }
            Ok(None) => println!("{name}: ok in {millis} ms"),
            Err(error) => {
                failed += 1;
                println!("{name}: FAILED in {millis} ms: {error}");
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of the mail transports failed");
    }
    Ok(())
}

async fn migrate(config: &Config, status_only: bool) -> anyhow::Result<()> {
    let db = store::connect(&options::database(&config.sections().database))
        .await
        .context("could not connect to the database")?;
    if status_only {
        let pending = store::pending_migrations(&db).await?;
        println!("{pending} pending migration(s)");
        return Ok(());
    }
    let applied = store::run_migrations(&db)
        .await
        .context("migration failed")?;
    println!("applied {applied} migration(s); the schema is up to date");
    Ok(())
}

async fn keys(config: &Config, command: KeysCommand) -> anyhow::Result<()> {
    let store = Store::open(&options::database(&config.sections().database), true)
        .await
        .context("could not open the database")?;
    match command {
        KeysCommand::Create {
            name,
            role,
            resources,
        } => {
            if let Err(problem) =
                keys_validate_name(&name).and_then(|()| keys_validate_resources(role, &resources))
            {
                bail!(problem);
            }
            let (info, key) = store.create_bound_api_key(&name, role, &resources).await?;
            let bound = if info.resources.is_empty() {
                String::new()
            } else {
                format!(" for {}", info.resources.join(", "))
            };
            eprintln!(
                "created {} key {:?}{bound}; the secret below is shown only once:",
                info.role, info.name
            );
            println!("{}", key.secret);
        }
        KeysCommand::List => {
            let keys = store.list_api_keys().await?;
            println!(
                "{:<32} {:<10} {:<14} {:<20} {:<28} RESOURCES",
                "NAME", "ROLE", "PREFIX", "CREATED", "STATUS"
            );
            for key in keys {
                let status = match key.revoked_at {
                    Some(revoked) => format!("revoked {}", revoked.format("%Y-%m-%d %H:%M:%S")),
                    None => "active".to_owned(),
                };
                let resources = match (key.role, key.resources.is_empty()) {
                    (Role::Gateway, true) => "any (unbound)".to_owned(),
                    (_, true) => "-".to_owned(),
                    (_, false) => key.resources.join(","),
                };
                println!(
                    "{:<32} {:<10} {:<14} {:<20} {status:<28} {resources}",
                    key.name,
                    key.role,
                    key.display_prefix,
                    key.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                );
            }
        }
        KeysCommand::Revoke { name } => {
            let info = store.revoke_api_key(&name).await?;
            println!("revoked key {:?} ({})", info.name, info.role);
        }
        KeysCommand::RotateMaster => rotate_master(config, &store).await?,
    }
    Ok(())
}

/// `sesame keys rotate-master`: a new active master key in the key file,
/// then every subject key rewrapped with it, with progress on stderr.
async fn rotate_master(config: &Config, store: &Store) -> anyhow::Result<()> {
    let Some(path) = config.sections().privacy.secret_key_file else {
        bail!("secret_key_file is not set: there is no key file to rotate");
    };
    if !path.exists() {
        bail!(
            "key file {} does not exist: start the server once to create it, or set \
             secret_key_file",
            path.display()
        );
    }
    let (ring, id) = KeyRing::rotate_file(&path)?;
    eprintln!(
        "added master key {id} to {}; copy the file to every replica and worker",
        path.display()
    );
    let vault = crate::app::open_vault(config, store).await?;
    let started = std::time::Instant::now();
    let rewrapped = vault
        .rewrap(&ring, |done| {
            eprintln!("rewrapped {done} subject key(s)...")
        })
        .await?;
    eprintln!(
        "rewrapped {rewrapped} subject key(s) with master key {id} in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    for (master, count) in vault.keys_per_master().await? {
        println!("master key {master}: {count} subject key(s)");
    }
    println!(
        "master key {id} is active; keep the older master keys in the file while values sealed \
         with them may remain (queued emails' gateway codes, backups)"
    );
    Ok(())
}
