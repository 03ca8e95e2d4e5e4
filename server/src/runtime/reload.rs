//! Reloading the whole config file while serving: key set, environment policies, role
//! bindings, signing key, server certificate and key, client CA and CRLs.
//!
//! A reload reads and validates everything first, exactly as a start would; only a complete,
//! valid config is put in force, in one step per holder ([`SharedSettings`] for decisions,
//! [`ServerTls`] for handshakes). Calls in flight finish on the settings they started with;
//! established connections keep their session, new handshakes use the new TLS files. A file
//! that fails validation changes nothing and is reported on one log line naming file and
//! field. Fields that shape what was built at start (see [`RestartOnly`]) are not applied: the
//! reload applies the rest and names them as requiring a restart.
//!
//! Every reload, applied or refused, is an audit entry carrying the SHA-256 of the config
//! file. The entry is made durable before the new config is put in force; a config whose
//! reload cannot be audited is not applied.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use sha2::{Digest, Sha256};

use crate::{
    app::settings::{Settings, SharedSettings},
    domain::decision::new_decision_id,
    domain::outcome::Outcome,
    grpc::prometheus::Metrics,
    identity::tls::ServerTls,
    runtime::config::{Config, ConfigError, RestartOnly},
    store::{Append, AuditStore, NewEntry},
};

/// Audit action of a reload.
pub const RELOAD_ACTION: &str = "config.reload";
/// `initiated_by` of a reload asked for with SIGHUP.
pub const TRIGGER_SIGHUP: &str = "SIGHUP";
/// `initiated_by` of a reload started by a change to a watched file.
pub const TRIGGER_WATCH: &str = "file watch";

/// Re-reads the config file into the running server's settings and TLS configuration.
pub struct Reloader {
    path: PathBuf,
    settings: SharedSettings,
    tls: ServerTls,
    store: AuditStore,
    metrics: Arc<Metrics>,
    /// What the server runs with; also serializes reloads.
    running: tokio::sync::Mutex<RestartOnly>,
}

/// What one reload did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// The new config is in force, except the named restart-only fields.
    Applied {
        /// `sha256:` + hex of the config file.
        digest: String,
        /// Fields that changed but take effect only on restart.
        requires_restart: Vec<&'static str>,
    },
    /// The file is invalid; the previous config stays in force.
    Refused {
        /// `sha256:` + hex of the config file, when it could be read.
        digest: Option<String>,
        /// The one-line error, naming file and field.
        error: String,
    },
    /// The file is valid but its audit entry could not be made durable, so it was not applied.
    NotRecorded {
        /// `sha256:` + hex of the config file.
        digest: String,
    },
}

// === impl Reloader ===

impl Reloader {
    /// A reloader of `config`'s file into `settings` and `tls`, auditing to `store`.
    pub fn new(
        config: &Config,
        settings: SharedSettings,
        tls: ServerTls,
        store: AuditStore,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            path: config.path.clone(),
            settings,
            tls,
            store,
            metrics,
            running: tokio::sync::Mutex::new(config.restart_only.clone()),
        }
    }

    /// Reads, validates and (when valid and audited) applies the config file; `trigger` is
    /// recorded as the entry's `initiated_by`. One reload runs at a time.
    pub async fn reload(&self, trigger: &str) -> ReloadOutcome {
        let outcome = self.reload_once(trigger).await;
        self.metrics
            .record_reload(matches!(outcome, ReloadOutcome::Applied { .. }));
        outcome
    }

    async fn reload_once(&self, trigger: &str) -> ReloadOutcome {
        let running = self.running.lock().await;
        let digest = file_digest(&self.path);
        let config = match (Config::load(&self.path), digest) {
            (Ok(config), Some(digest)) => (config, digest),
            (Err(error), digest) => return self.refuse(trigger, digest, &error).await,
            (Ok(_), None) => {
                let error = ConfigError::new(&self.path, "cannot read the file to digest it");
                return self.refuse(trigger, None, &error).await;
            }
        };
        let (config, digest) = config;
        let requires_restart = running.changed(&config.restart_only);
        let mut detail = format!("config {digest} ({})", self.path.display());
        if !requires_restart.is_empty() {
            detail.push_str(&format!(
                "; requires restart: {}",
                requires_restart.join(", ")
            ));
        }
        if !self.record(trigger, Outcome::ConfigReloaded, detail).await {
            tracing::error!(
                config = %self.path.display(),
                %digest,
                "config reload not applied: its audit entry could not be made durable"
            );
            return ReloadOutcome::NotRecorded { digest };
        }
        self.apply(&config);
        log_applied(&config, &digest, &requires_restart);
        ReloadOutcome::Applied {
            digest,
            requires_restart,
        }
    }

    /// Reloads on every SIGHUP, for the life of the runtime.
    #[cfg(unix)]
    pub fn spawn_on_sighup(self: Arc<Self>) -> std::io::Result<tokio::task::JoinHandle<()>> {
        use tokio::signal::unix::{SignalKind, signal};

        let mut hangups = signal(SignalKind::hangup())?;
        Ok(tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                tracing::info!(config = %self.path.display(), "SIGHUP received, reloading the config");
                // The outcome is logged and audited by reload().
                let _ = self.reload(TRIGGER_SIGHUP).await;
            }
        }))
    }

    /// Puts `config` in force: decisions first, then handshakes.
    fn apply(&self, config: &Config) {
        self.settings.replace(settings_of(config));
        self.tls.replace(config.server_tls.clone());
    }

    async fn refuse(
        &self,
        trigger: &str,
        digest: Option<String>,
        error: &ConfigError,
    ) -> ReloadOutcome {
        let shown = digest.as_deref().unwrap_or("unreadable");
        let detail = format!("config {shown} ({}) refused: {error}", self.path.display());
        // A refusal changes nothing, so it is reported even when its entry cannot be written;
        // the log line comes once the entry is durable, as for an applied reload.
        let _ = self
            .record(trigger, Outcome::ConfigReloadRefused, detail)
            .await;
        // One line naming the file and the field; the key set has its own wording, as the
        // key set reload always had.
        if error.problems().iter().any(|p| p.starts_with("key_set:")) {
            tracing::warn!(digest = %shown, %error, "key set reload failed, keeping the previous key set and config");
        } else {
            tracing::warn!(digest = %shown, %error, "config reload failed, keeping the previous config");
        }
        ReloadOutcome::Refused {
            digest,
            error: error.to_string(),
        }
    }

    /// Appends the reload's audit entry; `false` when it could not be made durable.
    async fn record(&self, trigger: &str, outcome: Outcome, detail: String) -> bool {
        let entry = NewEntry {
            entry_id: new_decision_id(),
            actor: crate::SERVICE_NAME.to_owned(),
            initiated_by: trigger.to_owned(),
            action: RELOAD_ACTION.to_owned(),
            outcome: outcome.as_str().to_owned(),
            detail,
            ..NewEntry::default()
        };
        let append = Append {
            entry,
            consume: Vec::new(),
            on_refused: None,
            idempotency: None,
            admission: None,
            approval_write: None,
        };
        match self.store.append(append).await {
            Ok(_) => true,
            Err(error) => {
                tracing::warn!(%error, %outcome, "config reload audit entry not recorded");
                false
            }
        }
    }
}

/// The reloadable part of `config`.
pub fn settings_of(config: &Config) -> Settings {
    Settings {
        policies: config.policies.clone(),
        roles: Arc::new(config.roles.clone()),
        keys: config.key_ring.current(),
        signer: config.signing.as_ref().map(|signing| signing.key.clone()),
    }
}

/// `sha256:` + hex of the file's bytes; `None` when it cannot be read.
fn file_digest(path: &Path) -> Option<String> {
    let bytes = std::fs::read(path).ok()?;
    Some(format!("sha256:{}", hex::encode(Sha256::digest(&bytes))))
}

fn log_applied(config: &Config, digest: &str, requires_restart: &[&str]) {
    let keys = config.key_ring.current().len();
    let environments = config.environments.len();
    let role_bindings = config.roles.len();
    let file = config.path.display();
    if requires_restart.is_empty() {
        tracing::info!(config = %file, %digest, keys, environments, role_bindings, "config and key set reloaded");
    } else {
        tracing::warn!(
            config = %file,
            %digest,
            keys,
            environments,
            role_bindings,
            requires_restart = %requires_restart.join(", "),
            "config and key set reloaded; the fields named require a restart and keep their running values"
        );
    }
}
