//! The decision policy in force: read from `policy_file` at start, read
//! again on SIGHUP or when the file changes. A file that does not parse or
//! check is refused with its reason and the previous policy stays in force.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::domain::policy::{Policy, PolicyError};

/// Shares the current policy with the API; cheap to clone.
#[derive(Clone, Debug)]
pub struct PolicyHandle {
    current: Arc<RwLock<Arc<Policy>>>,
    path: Option<PathBuf>,
}

impl PolicyHandle {
    /// A policy that never changes (no file).
    pub fn fixed(policy: Policy) -> PolicyHandle {
        PolicyHandle {
            current: Arc::new(RwLock::new(Arc::new(policy))),
            path: None,
        }
    }

    /// Reads `path`; `None` means no rules (every request is reviewed by
    /// one administrator).
    pub fn load(path: Option<&Path>) -> Result<PolicyHandle, PolicyError> {
        let Some(path) = path else {
            return Ok(PolicyHandle::fixed(Policy::manual()));
        };
        let policy = read(path)?;
        info!(path = %path.display(), rules = policy.len(), "decision policy loaded");
        Ok(PolicyHandle {
            current: Arc::new(RwLock::new(Arc::new(policy))),
            path: Some(path.to_owned()),
        })
    }

    /// The policy in force now.
    pub fn current(&self) -> Arc<Policy> {
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Reads the file again; on error the policy in force stays.
    pub fn reload(&self) -> Result<usize, PolicyError> {
        let Some(path) = &self.path else {
            return Ok(self.current().len());
        };
        let policy = read(path)?;
        let rules = policy.len();
        *self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(policy);
        Ok(rules)
    }

    /// Reloads on SIGHUP and whenever the file's modification time or size
    /// changes (checked every `poll`), until `shutdown`.
    pub fn spawn_reloader(
        &self,
        poll: Duration,
        shutdown: CancellationToken,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let path = self.path.clone()?;
        let handle = self.clone();
        Some(tokio::spawn(async move {
            #[cfg(unix)]
            let mut hangup =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
            let mut seen = stamp(&path);
            let mut ticker = tokio::time::interval(poll);
            loop {
                #[cfg(unix)]
                let hangup_received = async {
                    match hangup.as_mut() {
                        Some(signal) => signal.recv().await,
                        None => std::future::pending().await,
                    }
                };
                #[cfg(not(unix))]
                let hangup_received = std::future::pending::<Option<()>>();
                let why = tokio::select! {
                    () = shutdown.cancelled() => return,
                    _ = hangup_received => "SIGHUP",
                    _ = ticker.tick() => {
                        let now = stamp(&path);
                        if now == seen {
                            continue;
                        }
                        seen = now;
                        "the file changed"
                    }
                };
                match handle.reload() {
                    Ok(rules) => {
                        info!(path = %path.display(), rules, why, "decision policy reloaded")
                    }
                    Err(problem) => error!(
                        path = %path.display(),
                        error = %problem,
                        why,
                        "decision policy refused; the previous one stays in force"
                    ),
                }
            }
        }))
    }
}

fn read(path: &Path) -> Result<Policy, PolicyError> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| PolicyError(format!("{}: {error}", path.display())))?;
    Policy::parse(&text).map_err(|error| PolicyError(format!("{}: {}", path.display(), error.0)))
}

/// What tells a changed file: modification time and size.
fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let metadata = std::fs::metadata(path).ok()?;
    Some((metadata.modified().ok()?, metadata.len()))
}
