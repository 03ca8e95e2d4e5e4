//! The service configuration file (SPEC §8), strictly parsed.
//!
//! Loading resolves relative paths against the config file's directory and reads the TLS
//! material, so a missing or malformed certificate, key or CRL is reported as a config error
//! naming the file and the field, on one line.

use std::{
    collections::HashSet,
    fmt,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use serde::Deserialize;

use admission_contract::credential::SigningKey;

use crate::{
    domain::credential::KeyRing,
    domain::policy::{EnvironmentConfig, Policies},
    domain::request::RequestLimits,
    domain::request::is_environment_segment,
    grpc::call_limits::{CallSettings, GRPC_FRAME_HEADER_BYTES},
    identity::roles::{EnvironmentPattern, IdentityPattern, Role, RoleBindings},
    identity::tls::{self, TlsMaterial, TlsPaths},
};

mod env;
mod limits;
mod ops;
mod restart;
mod transparency;
mod validate;

use self::env::toml_error;
use self::limits::validate_limits;
pub use self::limits::{Limits, REQUEST_FIELDS_ALLOWANCE_BYTES};
pub use self::ops::OpsConfig;
pub use self::restart::{ReloadConfig, RestartOnly};
pub use self::transparency::{DEFAULT_CHECKPOINT_INTERVAL, DEFAULT_LOG_ORIGIN, LogConfig};
use self::validate::{Checked, Complete, validate_environments};

/// A loaded, validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// The config file this was loaded from.
    pub path: PathBuf,
    /// Address to serve on.
    pub listen: SocketAddr,
    /// Database URL; a relative `sqlite://` path is resolved against the config directory.
    pub database_url: String,
    /// The trusted signing key set (JWKS, SPEC §5).
    pub key_set: PathBuf,
    /// TLS file locations, as resolved.
    pub tls: TlsPaths,
    /// The rustls server configuration built from the TLS files.
    pub server_tls: Arc<rustls::ServerConfig>,
    /// Optional key the service signs approval credentials with.
    pub signing: Option<SigningConfig>,
    /// Who holds which role.
    pub roles: RoleBindings,
    /// Configured environments, in file order.
    pub environments: Vec<EnvironmentConfig>,
    /// The environments' policies with defaults applied (SPEC §6).
    pub policies: Arc<Policies>,
    /// The trusted key set as read with this file (a reload reads a new config whole).
    pub key_ring: Arc<KeyRing>,
    /// Request size limits and transport limits.
    pub limits: Limits,
    /// Audit store settings, as written.
    pub audit: AuditConfig,
    /// The transparency log: its key loaded, its paths resolved.
    pub log: LogConfig,
    /// The operations listener, when `[ops]` configures one.
    pub ops: Option<OpsConfig>,
    /// `[reload]`: how the running server notices changes to its files.
    pub reload: ReloadConfig,
    /// The fields a reload cannot change, as the file wrote them.
    pub restart_only: RestartOnly,
}

/// `[signing]`: the key the service issues approval credentials with.
#[derive(Clone, Debug)]
pub struct SigningConfig {
    /// Key id; must be an active key of the key set.
    pub kid: String,
    /// Ed25519 PKCS#8 PEM private key file.
    pub private_key: PathBuf,
    /// The loaded key, checked against the key set.
    pub key: Arc<SigningKey>,
}

/// `[audit]`: audit store and transparency log settings (all restart-only).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// How long a decision may wait for its audit entry to become durable (SPEC §7 row 26).
    #[serde(with = "duration")]
    pub durable_timeout: Duration,
    /// The Ed25519 PKCS#8 PEM log key that signs checkpoints and receipts (relative to the
    /// config file); without it receipts are empty and checkpoints are not served.
    pub log_key: Option<PathBuf>,
    /// The checkpoint origin and log key name ([`DEFAULT_LOG_ORIGIN`] by default).
    pub log_origin: String,
    /// How often a checkpoint is signed when the trail grew (default 1m).
    #[serde(with = "duration")]
    pub checkpoint_interval: Duration,
    /// A directory to write `checkpoint-<tree_size>` and `latest` into (relative to the config
    /// file).
    pub checkpoint_dir: Option<PathBuf>,
}

/// Why a configuration cannot be used: one or more problems, each displayed on its own line
/// naming the file and the field.
#[derive(Debug)]
pub struct ConfigError {
    file: PathBuf,
    problems: Vec<String>,
}

/// The file exactly as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: String,
    #[serde(default = "default_database_url")]
    database_url: String,
    key_set: PathBuf,
    tls: RawTls,
    signing: Option<RawSigning>,
    #[serde(default)]
    roles: Vec<RawRoleBinding>,
    #[serde(default)]
    environments: Vec<EnvironmentConfig>,
    #[serde(default)]
    limits: Limits,
    #[serde(default)]
    audit: AuditConfig,
    #[serde(default)]
    reload: ReloadConfig,
    ops: Option<ops::RawOps>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: PathBuf,
    key: PathBuf,
    client_ca: PathBuf,
    #[serde(default)]
    crls: Vec<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSigning {
    kid: String,
    private_key: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoleBinding {
    identity: String,
    roles: Vec<Role>,
    #[serde(default)]
    environments: Vec<String>,
}

fn default_database_url() -> String {
    "sqlite://admission.db".to_owned()
}

// === impl Config ===

impl Config {
    /// Reads, parses and validates the config file at `path`, including its TLS files.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(path, format!("cannot read: {e}")))?;
        Self::from_toml(path, &text)
    }

    /// Expands `${VAR}` references from the environment, then parses and validates `text` as
    /// if read from `path` (relative paths resolve against its directory). Every problem found
    /// is reported, not just the first.
    pub fn from_toml(path: &Path, text: &str) -> Result<Self, ConfigError> {
        Self::from_toml_with(path, text, env::process_var)
    }

    /// [`Config::from_toml`] with `var` as the environment.
    pub fn from_toml_with(
        path: &Path,
        text: &str,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let text = env::expand(text, var).map_err(|problems| ConfigError::many(path, problems))?;
        let raw: RawConfig =
            toml::from_str(&text).map_err(|e| ConfigError::new(path, toml_error(&e, &text)))?;
        let base = path.parent().unwrap_or(Path::new("")).to_path_buf();
        let base = if base.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            base
        };
        let mut problems = Vec::new();
        let checked = Checked::new(&base, &raw, &mut problems);
        let before = problems.len();
        validate_environments(&raw.environments, &mut problems);
        // The policies repeat the field checks above; build them only from valid fields.
        let policies = (problems.len() == before)
            .then(|| {
                Policies::from_configs(raw.environments.clone())
                    .map_err(|e| problems.push(format!("[[environments]] {e}")))
                    .ok()
            })
            .flatten();
        if let Err(problem) = validate_limits(&raw.limits) {
            problems.push(problem);
        }
        let ops = ops::ops_config(raw.ops.as_ref())
            .map_err(|problem| problems.push(problem))
            .ok();
        let log = transparency::log_config(&base, &raw)
            .map_err(|found| problems.extend(found))
            .ok();
        match (checked.complete(), policies, ops, log) {
            (Some(checked), Some(policies), Some(ops), Some(log)) if problems.is_empty() => Ok(
                Self::assemble(path, &base, raw, checked, (policies, ops, log)),
            ),
            _ => Err(ConfigError::many(path, problems)),
        }
    }

    /// The config from a file whose every field checked out.
    fn assemble(
        path: &Path,
        base: &Path,
        raw: RawConfig,
        checked: Complete,
        (policies, ops, log): (Policies, Option<OpsConfig>, LogConfig),
    ) -> Self {
        let database_url = resolve_database_url(base, &raw.database_url);
        let restart_only = RestartOnly {
            listen: checked.listen,
            database_url: database_url.clone(),
            limits: raw.limits.clone(),
            audit: raw.audit.clone(),
            reload: raw.reload.clone(),
            ops,
        };
        Self {
            path: path.to_path_buf(),
            listen: checked.listen,
            database_url,
            key_set: checked.key_set,
            tls: checked.tls,
            server_tls: checked.server_tls,
            signing: checked.signing,
            roles: checked.roles,
            environments: raw.environments,
            policies: Arc::new(policies),
            key_ring: Arc::new(checked.key_ring),
            limits: raw.limits,
            audit: raw.audit,
            log,
            ops,
            reload: raw.reload,
            restart_only,
        }
    }

    /// The environment with this `org/project/env` key, if configured.
    pub fn environment(&self, org: &str, project: &str, env: &str) -> Option<&EnvironmentConfig> {
        self.environments
            .iter()
            .find(|e| e.org_id == org && e.project_id == project && e.environment_id == env)
    }
}

/// `sqlite://relative.db` resolves against the config directory, so the database sits beside
/// the config file whatever the working directory; other URLs are used as written.
fn resolve_database_url(base: &Path, url: &str) -> String {
    let Some(rest) = url.strip_prefix("sqlite://") else {
        return url.to_owned();
    };
    let (file, query) = match rest.split_once('?') {
        Some((file, query)) => (file, Some(query)),
        None => (rest, None),
    };
    if file.is_empty() || file.starts_with('/') || file.starts_with(':') {
        return url.to_owned();
    }
    let absolute = std::path::absolute(base.join(file)).unwrap_or_else(|_| base.join(file));
    match query {
        Some(query) => format!("sqlite://{}?{query}", absolute.display()),
        None => format!("sqlite://{}", absolute.display()),
    }
}

// === impl AuditConfig ===

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            durable_timeout: Duration::from_secs(2),
            log_key: None,
            log_origin: DEFAULT_LOG_ORIGIN.to_owned(),
            checkpoint_interval: DEFAULT_CHECKPOINT_INTERVAL,
            checkpoint_dir: None,
        }
    }
}

// === impl ConfigError ===

impl ConfigError {
    /// An error about `file`; `detail` names the field.
    pub fn new(file: &Path, detail: impl Into<String>) -> Self {
        Self::many(file, vec![detail.into()])
    }

    /// Several problems with `file`, each naming its field.
    pub fn many(file: &Path, problems: Vec<String>) -> Self {
        Self {
            file: file.to_path_buf(),
            problems: problems
                .into_iter()
                .map(|problem| problem.replace('\n', " "))
                .collect(),
        }
    }

    /// The config file the error is about.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// Each problem, without the file name.
    pub fn problems(&self) -> &[String] {
        &self.problems
    }
}

impl fmt::Display for ConfigError {
    /// One line per problem, each starting with the file.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, problem) in self.problems.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            write!(f, "{}: {problem}", self.file.display())?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Durations written as `"90s"`, `"15m"`, `"1h"`, `"2h30m"`.
mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text)
            .map_err(|e| serde::de::Error::custom(format!("invalid duration {text:?}: {e}")))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
