//! The semantic checks of a parsed config: each part is checked on its own and every problem
//! is collected, so one run of `check-config` names them all.

use super::*;

/// The parts of a config read from files or parsed from strings, each `None` when it failed
/// (its problem is then recorded).
pub(super) struct Checked {
    listen: Option<SocketAddr>,
    key_set: PathBuf,
    tls: TlsPaths,
    server_tls: Option<Arc<rustls::ServerConfig>>,
    key_ring: Option<KeyRing>,
    signing: Option<Option<SigningConfig>>,
    roles: Option<RoleBindings>,
}

/// [`Checked`] with every part present.
pub(super) struct Complete {
    pub(super) listen: SocketAddr,
    pub(super) key_set: PathBuf,
    pub(super) tls: TlsPaths,
    pub(super) server_tls: Arc<rustls::ServerConfig>,
    pub(super) key_ring: KeyRing,
    pub(super) signing: Option<SigningConfig>,
    pub(super) roles: RoleBindings,
}

impl Checked {
    /// Checks the listen address, TLS files, key set, signing key and role bindings of `raw`,
    /// adding each problem to `problems`.
    pub(super) fn new(base: &Path, raw: &RawConfig, problems: &mut Vec<String>) -> Self {
        let listen = keep(
            problems,
            raw.listen
                .parse::<SocketAddr>()
                .map_err(|_| format!("listen: {:?} is not an ip:port socket address", raw.listen)),
        );
        let tls = TlsPaths {
            cert: base.join(&raw.tls.cert),
            key: base.join(&raw.tls.key),
            client_ca: base.join(&raw.tls.client_ca),
            crls: raw.tls.crls.iter().map(|crl| base.join(crl)).collect(),
        };
        let server_tls = keep(
            problems,
            TlsMaterial::read(&tls)
                .and_then(|material| tls::server_config(material).map_err(|e| e.to_string())),
        );
        let key_set = base.join(&raw.key_set);
        let key_ring = keep(
            problems,
            KeyRing::load(&key_set).map_err(|e| format!("key_set: {e}")),
        );
        // Without a key set the signing key cannot be checked against it; the key set's own
        // problem is already recorded.
        let signing = match (&raw.signing, &key_ring) {
            (None, _) => Some(None),
            (Some(signing), Some(ring)) => {
                keep(problems, read_signing(base, signing, ring)).map(Some)
            }
            (Some(_), None) => None,
        };
        let roles = role_bindings(&raw.roles, problems);
        Self {
            listen,
            key_set,
            tls,
            server_tls,
            key_ring,
            signing,
            roles,
        }
    }

    pub(super) fn complete(self) -> Option<Complete> {
        Some(Complete {
            listen: self.listen?,
            key_set: self.key_set,
            tls: self.tls,
            server_tls: self.server_tls?,
            key_ring: self.key_ring?,
            signing: self.signing?,
            roles: self.roles?,
        })
    }
}

/// The value of `result`, or `None` with its problem added to `problems`.
fn keep<T>(problems: &mut Vec<String>, result: Result<T, String>) -> Option<T> {
    result.map_err(|problem| problems.push(problem)).ok()
}

/// Loads the signing key and checks it is an active key of the key set with the same public
/// key, so a bad key fails at startup rather than on the first approval.
fn read_signing(
    base: &Path,
    raw: &RawSigning,
    key_ring: &KeyRing,
) -> Result<SigningConfig, String> {
    if raw.kid.trim().is_empty() {
        return Err("[signing] kid: must not be empty".to_owned());
    }
    let private_key = base.join(&raw.private_key);
    let pem = std::fs::read_to_string(&private_key)
        .map_err(|e| format!("[signing] private_key: {}: {e}", private_key.display()))?;
    let key = SigningKey::from_pkcs8_pem(&raw.kid, &pem)
        .map_err(|e| format!("[signing] private_key: {}: {e}", private_key.display()))?;
    key_ring
        .current()
        .check_signing_key(&key)
        .map_err(|e| format!("[signing] kid: {e}"))?;
    Ok(SigningConfig {
        kid: raw.kid.clone(),
        private_key,
        key: Arc::new(key),
    })
}

/// The role bindings, or `None` when any is invalid (each problem added to `problems`).
fn role_bindings(raw: &[RawRoleBinding], problems: &mut Vec<String>) -> Option<RoleBindings> {
    let mut bindings = RoleBindings::default();
    let before = problems.len();
    for (index, binding) in raw.iter().enumerate() {
        let at = format!("[[roles]] #{}", index + 1);
        let identity = IdentityPattern::parse(&binding.identity)
            .map_err(|e| problems.push(format!("{at} identity: {e}")));
        if binding.roles.is_empty() {
            problems.push(format!("{at} roles: must name at least one role"));
        }
        let mut environments = Vec::new();
        for pattern in &binding.environments {
            match EnvironmentPattern::parse(pattern) {
                Ok(pattern) => environments.push(pattern),
                Err(e) => problems.push(format!("{at} environments: {e}")),
            }
        }
        if let Ok(identity) = identity {
            bindings.push(identity, binding.roles.clone(), environments);
        }
    }
    (problems.len() == before).then_some(bindings)
}

/// Adds a problem for every environment field that is out of range and every duplicate.
pub(super) fn validate_environments(
    environments: &[EnvironmentConfig],
    problems: &mut Vec<String>,
) {
    let mut seen = HashSet::new();
    for (index, env) in environments.iter().enumerate() {
        let at = format!("[[environments]] #{}", index + 1);
        for (field, value) in [
            ("org_id", &env.org_id),
            ("project_id", &env.project_id),
            ("environment_id", &env.environment_id),
        ] {
            if !is_environment_segment(value) {
                problems.push(format!(
                    "{at} {field}: {value:?} must be non-empty without '/', '*' or whitespace"
                ));
            }
        }
        let key = format!("{}/{}/{}", env.org_id, env.project_id, env.environment_id);
        if !seen.insert(key.clone()) {
            problems.push(format!("{at}: duplicate environment {key}"));
        }
        if env.required_approvals == Some(0) {
            problems.push(format!("{at} required_approvals: must be at least 1"));
        }
        if env.max_uses == Some(0) {
            problems.push(format!("{at} max_uses: must be at least 1"));
        }
    }
}
