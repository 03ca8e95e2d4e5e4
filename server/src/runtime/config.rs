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
    /// The trusted key set, reloadable on SIGHUP.
    pub key_ring: Arc<KeyRing>,
    /// Request size limits and transport limits.
    pub limits: Limits,
    /// Audit store settings.
    pub audit: AuditConfig,
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

/// `[limits]`: request and transport limits (SPEC §3 defaults).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest accepted `spec_kv`, in bytes.
    pub spec_kv_max_bytes: usize,
    /// Most credentials accepted on one request.
    pub max_credentials: usize,
    /// Largest accepted credential, in bytes.
    pub credential_max_bytes: usize,
    /// Time a client has to complete the TLS handshake.
    #[serde(with = "duration")]
    pub handshake_timeout: Duration,
    /// TLS handshakes in progress at once; when full, the oldest one is dropped for a newcomer.
    pub max_pending_handshakes: usize,
    /// TLS handshakes in progress at once from one source address; more are refused.
    pub max_pending_handshakes_per_address: usize,
    /// HTTP/2 streams (calls) a client may have open at once on one connection.
    pub max_concurrent_streams: u32,
    /// Request bytes buffered across all calls at once; a call that would exceed it is
    /// refused with OVERLOADED before its body is read.
    pub max_buffered_request_bytes: usize,
    /// Calls in flight at once for one caller identity; more are refused with OVERLOADED.
    pub max_calls_per_identity: usize,
    /// Connections one caller identity may hold open at once; more are closed after the
    /// handshake.
    pub max_connections_per_identity: usize,
    /// Time one call may take from its headers to its answer.
    #[serde(with = "duration")]
    pub request_timeout: Duration,
    /// A connection without a call in flight for this long is closed.
    #[serde(with = "duration")]
    pub idle_timeout: Duration,
    /// Interval between HTTP/2 keepalive pings the server sends.
    #[serde(with = "duration")]
    pub keepalive_interval: Duration,
    /// Time a keepalive ping may go unacknowledged before the connection is closed.
    #[serde(with = "duration")]
    pub keepalive_timeout: Duration,

    // Request body and field lengths, in bytes; longer input is REQUEST_INVALID.
    /// Longest id (request_id, bundle_id, artifact_id, incident_id, approval_id, …).
    pub id_max_bytes: usize,
    /// Longest org_id, project_id or environment_id.
    pub environment_part_max_bytes: usize,
    /// Longest free text (initiated_by, justification, reason).
    pub text_max_bytes: usize,
    /// Longest capability name.
    pub capability_max_bytes: usize,
    /// Most capabilities named on one request.
    pub max_capabilities: usize,
}

/// `[audit]`: audit store settings.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// How long a decision may wait for its audit entry to become durable (SPEC §7 row 26).
    #[serde(with = "duration")]
    pub durable_timeout: Duration,
}

/// Bytes a request may hold beyond `spec_kv` and its credentials: ids, environment parts, free
/// text and protobuf framing, with room to spare.
pub const REQUEST_FIELDS_ALLOWANCE_BYTES: usize = 64 * 1024;

/// The largest request buffer budget: a gRPC message length is 32 bits, and no server holds
/// more than 4 GiB of requests in flight.
const MAX_BUFFER_BUDGET_BYTES: usize = u32::MAX as usize;

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

        Ok(Self {
            path: path.to_path_buf(),
            listen,
            database_url: resolve_database_url(&base, &raw.database_url),
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

fn validate_limits(limits: &Limits) -> Result<(), String> {
    for (field, value) in [
        ("spec_kv_max_bytes", limits.spec_kv_max_bytes),
        ("max_credentials", limits.max_credentials),
        ("credential_max_bytes", limits.credential_max_bytes),
        ("max_pending_handshakes", limits.max_pending_handshakes),
        ("id_max_bytes", limits.id_max_bytes),
        (
            "environment_part_max_bytes",
            limits.environment_part_max_bytes,
        ),
        ("text_max_bytes", limits.text_max_bytes),
        ("capability_max_bytes", limits.capability_max_bytes),
        ("max_capabilities", limits.max_capabilities),
        (
            "max_pending_handshakes_per_address",
            limits.max_pending_handshakes_per_address,
        ),
        (
            "max_concurrent_streams",
            limits.max_concurrent_streams as usize,
        ),
        (
            "max_buffered_request_bytes",
            limits.max_buffered_request_bytes,
        ),
        ("max_calls_per_identity", limits.max_calls_per_identity),
        (
            "max_connections_per_identity",
            limits.max_connections_per_identity,
        ),
    ] {
        if value == 0 {
            return Err(format!("[limits] {field}: must be at least 1"));
        }
    }
    for (field, value) in [
        ("handshake_timeout", limits.handshake_timeout),
        ("request_timeout", limits.request_timeout),
        ("idle_timeout", limits.idle_timeout),
        ("keepalive_interval", limits.keepalive_interval),
        ("keepalive_timeout", limits.keepalive_timeout),
    ] {
        if value.is_zero() {
            return Err(format!("[limits] {field}: must be longer than zero"));
        }
    }
    if limits.max_buffered_request_bytes > MAX_BUFFER_BUDGET_BYTES {
        return Err(format!(
            "[limits] max_buffered_request_bytes: must be at most {MAX_BUFFER_BUDGET_BYTES}"
        ));
    }
    let largest = limits
        .max_request_bytes()
        .saturating_add(GRPC_FRAME_HEADER_BYTES);
    if largest > MAX_BUFFER_BUDGET_BYTES {
        return Err(format!(
            "[limits] credential_max_bytes: with spec_kv_max_bytes and max_credentials it allows \
             requests of {largest} bytes, more than the {MAX_BUFFER_BUDGET_BYTES} a gRPC \
             message can hold"
        ));
    }
    if limits.max_buffered_request_bytes < largest {
        return Err(format!(
            "[limits] max_buffered_request_bytes: must be at least {largest}, the largest \
             request the other limits allow"
        ));
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

// === impl Limits ===

impl Limits {
    /// The largest request message the API accepts, in bytes: the largest `spec_kv`, the most
    /// credentials at their largest, and room for every other field.
    pub fn max_request_bytes(&self) -> usize {
        self.max_credentials
            .saturating_mul(self.credential_max_bytes)
            .saturating_add(self.spec_kv_max_bytes)
            .saturating_add(REQUEST_FIELDS_ALLOWANCE_BYTES)
    }

    /// What the per-call layer enforces.
    pub fn call_settings(&self) -> CallSettings {
        CallSettings {
            max_buffered_request_bytes: self.max_buffered_request_bytes,
            max_message_bytes: self.max_request_bytes(),
            max_calls_per_identity: self.max_calls_per_identity,
            request_timeout: self.request_timeout,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            spec_kv_max_bytes: 1024 * 1024,
            max_credentials: 8,
            credential_max_bytes: 16 * 1024,
            handshake_timeout: Duration::from_secs(5),
            max_pending_handshakes: 1024,
            max_pending_handshakes_per_address: 64,
            max_concurrent_streams: 64,
            max_buffered_request_bytes: 128 * 1024 * 1024,
            max_calls_per_identity: 64,
            max_connections_per_identity: 256,
            request_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(300),
            keepalive_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(10),
            id_max_bytes: 128,
            environment_part_max_bytes: 63,
            text_max_bytes: 1024,
            capability_max_bytes: 128,
            max_capabilities: 32,
        }
    }
}

impl Limits {
    /// The limits request validation applies.
    pub fn request_limits(&self) -> RequestLimits {
        RequestLimits {
            spec_kv_max_bytes: self.spec_kv_max_bytes,
            max_credentials: self.max_credentials,
            credential_max_bytes: self.credential_max_bytes,
            id_max_bytes: self.id_max_bytes,
            environment_part_max_bytes: self.environment_part_max_bytes,
            text_max_bytes: self.text_max_bytes,
            capability_max_bytes: self.capability_max_bytes,
            max_capabilities: self.max_capabilities,
        }
    }
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

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text)
            .map_err(|e| serde::de::Error::custom(format!("invalid duration {text:?}: {e}")))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
