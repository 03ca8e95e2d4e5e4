//! `admissionctl keygen` and `admissionctl sign`: make an Ed25519 signing key with its key set
//! entry, and issue an approval credential offline (approval-credentials-v1, described in
//! docs/reference.md). Both run without the service; their failures are usage errors.

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use admission_contract::{
    SpecHash,
    credential::{Claims, KeySet, KeyStatus, SigningKey, parse_time},
    spec::is_sha256_digest,
};
use serde_json::{Value, json};

use super::{CliError, ExitStatus, Output};

/// `admissionctl keygen`: a new Ed25519 signing key, optionally added to a key set.
#[derive(Clone, Debug, clap::Args)]
pub struct KeygenArgs {
    /// Key id to publish the key under, e.g. `org-2026-11`.
    #[arg(long)]
    pub kid: String,
    /// File for the PKCS#8 PEM private key (written with mode 0600).
    #[arg(long, default_value = "signing.key")]
    pub out: PathBuf,
    /// Key set (`signing_keys.json`) to add the public key to as `active`; created if missing.
    #[arg(long)]
    pub jwks: Option<PathBuf>,
    /// Replace an existing private key file.
    #[arg(long)]
    pub force: bool,
}

/// `admissionctl sign`: issue an approval credential with a local signing key.
#[derive(Clone, Debug, clap::Args)]
pub struct SignArgs {
    /// PKCS#8 PEM Ed25519 private key file (not the client key of --key).
    #[arg(long = "signing-key")]
    pub key: PathBuf,
    /// Key id of that key in the trusted key set.
    #[arg(long)]
    pub kid: String,
    /// Organization id.
    #[arg(long)]
    pub org: String,
    /// Project id.
    #[arg(long)]
    pub project: String,
    /// Environment id.
    #[arg(long)]
    pub env: String,
    /// Posture of the environment.
    #[arg(long, value_parser = ["dev", "staging", "prod"])]
    pub posture: String,
    /// Spec hash (`sha256:` + 64 lowercase hex) the approval is bound to.
    #[arg(long, required_unless_present = "spec", conflicts_with = "spec")]
    pub spec_hash: Option<String>,
    /// Spec file (`spec.kv`) whose hash the approval is bound to.
    #[arg(long)]
    pub spec: Option<PathBuf>,
    /// Capability granted; repeat or separate with commas.
    #[arg(long = "capability", required = true, value_delimiter = ',')]
    pub capabilities: Vec<String>,
    /// Lifetime, e.g. `15m`, `1h`, `2h30m`; whole seconds.
    #[arg(long, default_value = "15m", value_parser = humantime::parse_duration)]
    pub ttl: Duration,
    /// Identity of the approver.
    #[arg(long)]
    pub issued_by: String,
    /// Approval id.
    #[arg(long)]
    pub approval_id: String,
    /// Config bundle digest to bind the approval to.
    #[arg(long)]
    pub config_bundle_digest: Option<String>,
    /// Issue time, RFC 3339 UTC with whole seconds (default: now).
    #[arg(long)]
    pub issued_at: Option<String>,
}

/// What `keygen` wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeygenOutcome {
    /// The key id.
    pub kid: String,
    /// The private key file.
    pub key_file: PathBuf,
    /// The key set file, when one was updated.
    pub jwks_file: Option<PathBuf>,
    /// The public key, base64url.
    pub public_x: String,
}

/// Runs `admissionctl keygen` and prints what it wrote.
pub fn run_keygen(output: &Output, args: &KeygenArgs) -> Result<ExitStatus, CliError> {
    let outcome = keygen(args).map_err(CliError::usage)?;
    let text = match &outcome.jwks_file {
        Some(jwks) => format!(
            "wrote signing key {} to {} (mode 0600) and added it to {} as active",
            outcome.kid,
            outcome.key_file.display(),
            jwks.display()
        ),
        None => format!(
            "wrote signing key {} to {} (mode 0600); public key x = {}",
            outcome.kid,
            outcome.key_file.display(),
            outcome.public_x
        ),
    };
    output.print(
        text,
        json!({
            "kid": outcome.kid,
            "key_file": outcome.key_file.display().to_string(),
            "jwks_file": outcome.jwks_file.map(|path| path.display().to_string()),
            "x": outcome.public_x,
        }),
    );
    Ok(ExitStatus::Ok)
}

/// Generates the key, writes it, and adds its public half to the key set.
///
/// The key set is checked before anything is written, so a kid clash leaves no stray key file.
pub fn keygen(args: &KeygenArgs) -> Result<KeygenOutcome, String> {
    if args.kid.is_empty() {
        return Err("--kid must not be empty".to_owned());
    }
    if !args.force && args.out.exists() {
        return Err(format!(
            "{} already exists; pass --force to replace it or choose another --out",
            args.out.display()
        ));
    }
    let (key, pem) = SigningKey::generate(&args.kid).map_err(|e| e.to_string())?;
    let jwk = serde_json::to_value(key.public_jwk(KeyStatus::Active))
        .map_err(|e| format!("cannot encode the public key of {}: {e}", args.kid))?;
    let updated_jwks = match &args.jwks {
        Some(path) => Some((path, jwks_with_key(path, &args.kid, jwk.clone())?)),
        None => None,
    };
    write_atomically(&args.out, pem.as_bytes(), true)?;
    if let Some((path, document)) = &updated_jwks {
        write_atomically(path, document.as_bytes(), false)?;
    }
    Ok(KeygenOutcome {
        kid: args.kid.clone(),
        key_file: args.out.clone(),
        jwks_file: updated_jwks.map(|(path, _)| path.clone()),
        public_x: jwk["x"].as_str().unwrap_or_default().to_owned(),
    })
}

/// Runs `admissionctl sign` and prints the credential (with `--json`, an object with the
/// credential and the claims a reviewer checks).
pub fn print_sign(output: &Output, args: &SignArgs) -> Result<ExitStatus, CliError> {
    let (claims, credential) = signed(args).map_err(CliError::usage)?;
    let time = |t| humantime::format_rfc3339_seconds(t).to_string();
    let environment = [&claims.org_id, &claims.project_id, &claims.environment_id];
    output.print(
        &credential,
        json!({
            "credential": credential,
            "kid": claims.kid,
            "approval_id": claims.approval_id,
            "environment": environment.map(String::as_str).join("/"),
            "spec_hash": claims.spec_hash,
            "capabilities": claims.capabilities,
            "issued_by": claims.issued_by,
            "issued_at": time(claims.issued_at),
            "expires_at": time(claims.expires_at),
        }),
    );
    Ok(ExitStatus::Ok)
}

/// Signs the credential `sign` issues and returns it.
pub fn run_sign(args: &SignArgs) -> Result<String, String> {
    signed(args).map(|(_, credential)| credential)
}

/// The claims and the signed credential.
fn signed(args: &SignArgs) -> Result<(Claims, String), String> {
    let pem = fs::read_to_string(&args.key)
        .map_err(|e| format!("cannot read signing key {}: {e}", args.key.display()))?;
    let key = SigningKey::from_pkcs8_pem(&args.kid, &pem)
        .map_err(|e| format!("cannot use {}: {e}", args.key.display()))?;
    let claims = sign_claims(args, SystemTime::now())?;
    let credential = key.sign(&claims).map_err(|e| e.to_string())?;
    Ok((claims, credential))
}

/// The claims `sign` issues; `now` is the issue time unless `--issued-at` is given.
pub fn sign_claims(args: &SignArgs, now: SystemTime) -> Result<Claims, String> {
    for (flag, value) in [
        ("--kid", &args.kid),
        ("--org", &args.org),
        ("--project", &args.project),
        ("--env", &args.env),
        ("--issued-by", &args.issued_by),
        ("--approval-id", &args.approval_id),
    ] {
        if value.is_empty() {
            return Err(format!("{flag} must not be empty"));
        }
    }
    let mut capabilities: Vec<String> = Vec::new();
    for capability in &args.capabilities {
        if capability.is_empty() {
            return Err("--capability must not be empty".to_owned());
        }
        if !capabilities.contains(capability) {
            capabilities.push(capability.clone());
        }
    }
    if let Some(digest) = &args.config_bundle_digest {
        if !is_sha256_digest(digest) {
            return Err(format!(
                "--config-bundle-digest {digest:?} is not sha256: followed by 64 lowercase hex \
                 digits"
            ));
        }
    }
    if args.ttl.is_zero() || args.ttl.subsec_nanos() != 0 {
        return Err(format!(
            "--ttl {} must be a positive whole number of seconds",
            humantime::format_duration(args.ttl)
        ));
    }
    let issued_at = match &args.issued_at {
        Some(text) => parse_time(text).ok_or_else(|| {
            format!("--issued-at {text:?} is not an RFC 3339 UTC time such as 2026-11-23T10:00:00Z")
        })?,
        None => now,
    };
    let expires_at = issued_at
        .checked_add(args.ttl)
        .ok_or_else(|| format!("--ttl {} is too long", humantime::format_duration(args.ttl)))?;
    Ok(Claims {
        v: 1,
        kid: args.kid.clone(),
        org_id: args.org.clone(),
        project_id: args.project.clone(),
        environment_id: args.env.clone(),
        environment_posture: args.posture.clone(),
        spec_hash: spec_hash(args)?,
        capabilities,
        issued_at,
        expires_at,
        issued_by: args.issued_by.clone(),
        approval_id: args.approval_id.clone(),
        config_bundle_digest: args.config_bundle_digest.clone(),
    })
}

fn spec_hash(args: &SignArgs) -> Result<String, String> {
    match (&args.spec_hash, &args.spec) {
        (Some(hash), None) if is_sha256_digest(hash) => Ok(hash.clone()),
        (Some(hash), None) => Err(format!(
            "--spec-hash {hash:?} is not sha256: followed by 64 lowercase hex digits"
        )),
        (None, Some(path)) => {
            let bytes =
                fs::read(path).map_err(|e| format!("cannot read spec {}: {e}", path.display()))?;
            SpecHash::of_spec(&bytes)
                .map(|hash| hash.to_string())
                .map_err(|e| format!("{} is not a canonical spec: {e}", path.display()))
        }
        _ => Err("give exactly one of --spec-hash or --spec".to_owned()),
    }
}

/// The key set document at `path` (or a new one) with `jwk` added, checked as a whole.
fn jwks_with_key(path: &Path, kid: &str, jwk: Value) -> Result<String, String> {
    let mut document = match fs::read(path) {
        Ok(bytes) => serde_json::from_slice::<Value>(&bytes)
            .map_err(|e| format!("key set {} is not JSON: {e}", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => serde_json::json!({ "keys": [] }),
        Err(e) => return Err(format!("cannot read key set {}: {e}", path.display())),
    };
    let Some(keys) = document.get_mut("keys").and_then(Value::as_array_mut) else {
        return Err(format!(
            "key set {} has no \"keys\" array; fix or remove it",
            path.display()
        ));
    };
    if keys.iter().any(|entry| entry["kid"].as_str() == Some(kid)) {
        return Err(format!(
            "key set {} already has a key with kid {kid}; choose another --kid",
            path.display()
        ));
    }
    keys.push(jwk);
    let mut text = serde_json::to_string_pretty(&document)
        .map_err(|e| format!("cannot encode key set {}: {e}", path.display()))?;
    text.push('\n');
    KeySet::from_jwks(text.as_bytes())
        .map_err(|e| format!("cannot add {kid} to {}: {e}", path.display()))?;
    Ok(text)
}

/// Writes through a temporary file in the same directory and renames it into place, so a
/// reader (the server's SIGHUP reload) never sees a half-written file.
fn write_atomically(path: &Path, contents: &[u8], private: bool) -> Result<(), String> {
    let name = path
        .file_name()
        .ok_or_else(|| format!("{} is not a file path", path.display()))?;
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(name);
    temp_name.push(format!(".tmp-{}", std::process::id()));
    let temp = path.with_file_name(temp_name);
    let write = || -> std::io::Result<()> {
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(if private { 0o600 } else { 0o644 });
        }
        let mut file = options.open(&temp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        fs::rename(&temp, path)
    };
    write().map_err(|e| {
        // Best effort: the temporary file may not exist if opening it failed.
        let _ = fs::remove_file(&temp);
        format!("cannot write {}: {e}", path.display())
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use admission_contract::credential::{DEFAULT_MAX_CREDENTIAL_LEN, verify};
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Keygen {
        #[command(flatten)]
        args: KeygenArgs,
    }

    #[derive(Parser)]
    struct Sign {
        #[command(flatten)]
        args: SignArgs,
    }

    const SPEC_HASH: &str =
        "sha256:fe3209d6d4f51935b391288a43df48d9ddece1a992597ae53387ca16611a9179";

    fn sign_args(dir: &Path, extra: &[&str]) -> SignArgs {
        let key = dir.join("signing.key");
        let mut argv = vec![
            "sign",
            "--signing-key",
            key.to_str().unwrap(),
            "--kid",
            "org-2026-11",
            "--org",
            "acme",
            "--project",
            "payments",
            "--env",
            "prod",
            "--posture",
            "prod",
            "--capability",
            "deploy",
            "--capability",
            "db.migrate,deploy",
            "--ttl",
            "15m",
            "--issued-by",
            "bob",
            "--approval-id",
            "apr_123",
            "--issued-at",
            "2026-11-23T10:00:00Z",
        ];
        argv.extend_from_slice(extra);
        Sign::try_parse_from(argv).unwrap().args
    }

    fn keygen_in(dir: &Path) -> KeygenArgs {
        let out = dir.join("signing.key");
        let jwks = dir.join("signing_keys.json");
        Keygen::try_parse_from([
            "keygen",
            "--kid",
            "org-2026-11",
            "--out",
            out.to_str().unwrap(),
            "--jwks",
            jwks.to_str().unwrap(),
        ])
        .unwrap()
        .args
    }

    #[test]
    fn keygen_then_sign_verifies_against_the_written_key_set() {
        let dir = tempfile::tempdir().unwrap();
        let outcome = keygen(&keygen_in(dir.path())).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&outcome.key_file)
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let keys =
            KeySet::from_jwks(&fs::read(dir.path().join("signing_keys.json")).unwrap()).unwrap();
        assert_eq!(keys.status("org-2026-11"), Some(KeyStatus::Active));

        let args = sign_args(dir.path(), &["--spec-hash", SPEC_HASH]);
        let token = run_sign(&args).unwrap();
        let claims = verify(&token, &keys, DEFAULT_MAX_CREDENTIAL_LEN).unwrap();
        assert_eq!(claims, sign_claims(&args, SystemTime::UNIX_EPOCH).unwrap());
        assert_eq!(claims.capabilities, vec!["deploy", "db.migrate"]);
        assert_eq!(
            humantime::format_rfc3339_seconds(claims.expires_at).to_string(),
            "2026-11-23T10:15:00Z"
        );
    }

    #[test]
    fn keygen_adds_to_an_existing_key_set_and_refuses_clashes() {
        let dir = tempfile::tempdir().unwrap();
        let first = keygen_in(dir.path());
        keygen(&first).unwrap();
        let clash = KeygenArgs {
            out: dir.path().join("other.key"),
            ..first.clone()
        };
        assert_eq!(
            keygen(&clash).unwrap_err(),
            format!(
                "key set {} already has a key with kid org-2026-11; choose another --kid",
                dir.path().join("signing_keys.json").display()
            )
        );
        assert!(!clash.out.exists(), "no stray key file on a clash");
        assert_eq!(
            keygen(&first).unwrap_err(),
            format!(
                "{} already exists; pass --force to replace it or choose another --out",
                first.out.display()
            )
        );
        let second = KeygenArgs {
            kid: "org-2027-01".into(),
            out: dir.path().join("next.key"),
            ..first
        };
        keygen(&second).unwrap();
        let keys =
            KeySet::from_jwks(&fs::read(dir.path().join("signing_keys.json")).unwrap()).unwrap();
        assert_eq!(
            keys.kids().collect::<Vec<_>>(),
            vec!["org-2026-11", "org-2027-01"]
        );
    }

    #[test]
    fn sign_hashes_a_spec_file_and_checks_inputs() {
        let dir = tempfile::tempdir().unwrap();
        let spec = dir.path().join("spec.kv");
        fs::write(&spec, "a=1\n").unwrap();
        let args = sign_args(dir.path(), &["--spec", spec.to_str().unwrap()]);
        let now = SystemTime::UNIX_EPOCH;
        assert_eq!(sign_claims(&args, now).unwrap().spec_hash, SPEC_HASH);

        fs::write(&spec, "a=1").unwrap();
        assert_eq!(
            sign_claims(&args, now).unwrap_err(),
            format!(
                "{} is not a canonical spec: spec_kv line 1 does not end with a newline",
                spec.display()
            )
        );
        let bad = sign_args(dir.path(), &["--spec-hash", "sha256:AB"]);
        assert_eq!(
            sign_claims(&bad, now).unwrap_err(),
            "--spec-hash \"sha256:AB\" is not sha256: followed by 64 lowercase hex digits"
        );
        let mut late = sign_args(dir.path(), &["--spec-hash", SPEC_HASH]);
        late.issued_at = Some("2026-11-23 10:00:00".into());
        assert_eq!(
            sign_claims(&late, now).unwrap_err(),
            "--issued-at \"2026-11-23 10:00:00\" is not an RFC 3339 UTC time such as \
             2026-11-23T10:00:00Z"
        );
        assert!(
            Sign::try_parse_from(["sign", "--signing-key", "k", "--kid", "k"]).is_err(),
            "required flags are enforced by clap"
        );
        let key_missing = sign_args(dir.path(), &["--spec-hash", SPEC_HASH]);
        assert!(
            run_sign(&key_missing)
                .unwrap_err()
                .starts_with("cannot read signing key ")
        );
    }
}
