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

mod limits;
mod restart;

use self::limits::validate_limits;
pub use self::limits::{Limits, REQUEST_FIELDS_ALLOWANCE_BYTES};
pub use self::restart::{ReloadConfig, RestartOnly};

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
    /// Audit store settings.
    pub audit: AuditConfig,
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

/// `[audit]`: audit store settings.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// How long a decision may wait for its audit entry to become durable (SPEC §7 row 26).
    #[serde(with = "duration")]
    pub durable_timeout: Duration,
}

/// Why a configuration cannot be used. Displays as one line naming the file and the field.
#[derive(Debug)]
pub struct ConfigError {
    file: PathBuf,
    detail: String,
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

    /// Parses and validates `text` as if read from `path` (relative paths resolve against its
    /// directory).
    pub fn from_toml(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let raw: RawConfig =
            toml::from_str(text).map_err(|e| ConfigError::new(path, toml_error(&e, text)))?;
        let base = path.parent().unwrap_or(Path::new("")).to_path_buf();
        let base = if base.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            base
        };
        let err = |detail: String| ConfigError::new(path, detail);

        let listen = raw.listen.parse::<SocketAddr>().map_err(|_| {
            err(format!(
                "listen: {:?} is not an ip:port socket address",
                raw.listen
            ))
        })?;
        let tls = TlsPaths {
            cert: base.join(&raw.tls.cert),
            key: base.join(&raw.tls.key),
            client_ca: base.join(&raw.tls.client_ca),
            crls: raw.tls.crls.iter().map(|crl| base.join(crl)).collect(),
        };
        let material = TlsMaterial::read(&tls).map_err(err)?;
        let server_tls = tls::server_config(material).map_err(|e| err(e.to_string()))?;
        let key_set = base.join(raw.key_set);
        let key_ring = KeyRing::load(&key_set).map_err(|e| err(format!("key_set: {e}")))?;
        let signing = raw
            .signing
            .map(|signing| read_signing(&base, signing, &key_ring))
            .transpose()
            .map_err(err)?;
        let roles = role_bindings(raw.roles).map_err(err)?;
        validate_environments(&raw.environments).map_err(err)?;
        let policies = Policies::from_configs(raw.environments.clone())
            .map_err(|e| err(format!("[[environments]] {e}")))?;
        validate_limits(&raw.limits).map_err(err)?;
        let database_url = resolve_database_url(&base, &raw.database_url);
        let restart_only = RestartOnly {
            listen,
            database_url: database_url.clone(),
            limits: raw.limits.clone(),
            audit: raw.audit.clone(),
            reload: raw.reload.clone(),
        };

        Ok(Self {
            path: path.to_path_buf(),
            listen,
            database_url,
            key_set,
            tls,
            server_tls,
            signing,
            roles,
            environments: raw.environments,
            policies: Arc::new(policies),
            key_ring: Arc::new(key_ring),
            limits: raw.limits,
            audit: raw.audit,
            reload: raw.reload,
            restart_only,
        })
    }

    /// The environment with this `org/project/env` key, if configured.
    pub fn environment(&self, org: &str, project: &str, env: &str) -> Option<&EnvironmentConfig> {
        self.environments
            .iter()
            .find(|e| e.org_id == org && e.project_id == project && e.environment_id == env)
    }
}

/// Loads the signing key and checks it is an active key of the key set with the same public
/// key, so a bad key fails at startup rather than on the first approval.
fn read_signing(base: &Path, raw: RawSigning, key_ring: &KeyRing) -> Result<SigningConfig, String> {
    if raw.kid.trim().is_empty() {
        return Err("[signing] kid: must not be empty".to_owned());
    }
    let private_key = base.join(raw.private_key);
    let pem = std::fs::read_to_string(&private_key)
        .map_err(|e| format!("[signing] private_key: {}: {e}", private_key.display()))?;
    let key = SigningKey::from_pkcs8_pem(&raw.kid, &pem)
        .map_err(|e| format!("[signing] private_key: {}: {e}", private_key.display()))?;
    key_ring
        .current()
        .check_signing_key(&key)
        .map_err(|e| format!("[signing] kid: {e}"))?;
    Ok(SigningConfig {
        kid: raw.kid,
        private_key,
        key: Arc::new(key),
    })
}

fn role_bindings(raw: Vec<RawRoleBinding>) -> Result<RoleBindings, String> {
    let mut bindings = RoleBindings::default();
    for (index, binding) in raw.into_iter().enumerate() {
        let at = format!("[[roles]] #{}", index + 1);
        let identity =
            IdentityPattern::parse(&binding.identity).map_err(|e| format!("{at} identity: {e}"))?;
        if binding.roles.is_empty() {
            return Err(format!("{at} roles: must name at least one role"));
        }
        let environments = binding
            .environments
            .iter()
            .map(|p| EnvironmentPattern::parse(p).map_err(|e| format!("{at} environments: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        bindings.push(identity, binding.roles, environments);
    }
    Ok(bindings)
}

fn validate_environments(environments: &[EnvironmentConfig]) -> Result<(), String> {
    let mut seen = HashSet::new();
    for (index, env) in environments.iter().enumerate() {
        let at = format!("[[environments]] #{}", index + 1);
        for (field, value) in [
            ("org_id", &env.org_id),
            ("project_id", &env.project_id),
            ("environment_id", &env.environment_id),
        ] {
            if !is_environment_segment(value) {
                return Err(format!(
                    "{at} {field}: {value:?} must be non-empty without '/', '*' or whitespace"
                ));
            }
        }
        let key = format!("{}/{}/{}", env.org_id, env.project_id, env.environment_id);
        if !seen.insert(key.clone()) {
            return Err(format!("{at}: duplicate environment {key}"));
        }
        if env.required_approvals == Some(0) {
            return Err(format!("{at} required_approvals: must be at least 1"));
        }
        if env.max_uses == Some(0) {
            return Err(format!("{at} max_uses: must be at least 1"));
        }
    }
    Ok(())
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

/// The toml error's message with the line it points at, on one line; an error about a value
/// (the span is right of `=`) is prefixed with its table and key, so it names the field.
fn toml_error(error: &toml::de::Error, text: &str) -> String {
    let message = error.message().trim().replace('\n', " ");
    let Some(span) = error.span() else {
        return message;
    };
    let start = span.start.min(text.len());
    let line = text[..start].matches('\n').count() + 1;
    match value_field(text, start) {
        Some(field) => format!("{field}: {message} at line {line}"),
        None => format!("{message} at line {line}"),
    }
}

/// `[table] key` (or `key` at top level) when `offset` lies in the value of a `key = value`
/// line.
fn value_field(text: &str, offset: usize) -> Option<String> {
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let (key, _) = text[line_start..offset].split_once('=')?;
    let key = key.trim();
    if key.is_empty() || key.starts_with('[') {
        return None;
    }
    let table = text[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|line| line.starts_with('['));
    Some(match table {
        Some(table) => format!("{table} {key}"),
        None => key.to_owned(),
    })
}

// === impl AuditConfig ===

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            durable_timeout: Duration::from_secs(2),
        }
    }
}

// === impl ConfigError ===

impl ConfigError {
    /// An error about `file`; `detail` names the field.
    pub fn new(file: &Path, detail: impl Into<String>) -> Self {
        Self {
            file: file.to_path_buf(),
            detail: detail.into().replace('\n', " "),
        }
    }

    /// The config file the error is about.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// What is wrong, starting with the field's name.
    pub fn detail(&self) -> &str {
        &self.detail
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.file.display(), self.detail)
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
