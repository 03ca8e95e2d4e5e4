//! `admission-server dev`: a throwaway local PKI, signing key, key set, log key and config
//! (SPEC §8).
//!
//! Every file is created only when missing, so re-running reuses the directory: certificates
//! already handed to tools keep working.

use std::{
    fs,
    io::{self, Write},
    net::SocketAddr,
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

use admission_contract::credential::SigningKey;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

/// The default directory, relative to the working directory.
pub const DEFAULT_DIR: &str = ".admission-dev";

/// The default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:50051";

/// The client identities dev mode issues certificates for: file stem and SPIFFE URI.
pub const DEV_CLIENTS: [(&str, &str); 4] = [
    ("orchestrator", "spiffe://dev.local/orchestrator/ci"),
    ("reviewer", "spiffe://dev.local/reviewer/alice"),
    ("reviewer2", "spiffe://dev.local/reviewer/bob"),
    ("auditor", "spiffe://dev.local/auditor/audit"),
];

/// The prepared directory.
#[derive(Clone, Debug)]
pub struct DevEnvironment {
    /// Absolute directory holding every file.
    pub dir: PathBuf,
    /// The config file in it.
    pub config: PathBuf,
    /// Files created by this run (the rest were reused).
    pub created: Vec<PathBuf>,
}

/// Why the directory cannot be prepared.
#[derive(Debug, thiserror::Error)]
pub enum DevError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// Key or certificate generation failed.
    #[error("{path}: {source}")]
    Generate {
        /// The file being made.
        path: PathBuf,
        /// The error.
        source: rcgen::Error,
    },
    /// A file exists but its partner is missing, or an existing file is unusable.
    #[error("{path}: {message}")]
    Inconsistent {
        /// The file.
        path: PathBuf,
        /// What is wrong, and what to do.
        message: String,
    },
}

/// Creates whatever is missing under `dir` and returns where everything is.
pub fn prepare(dir: &Path) -> Result<DevEnvironment, DevError> {
    fs::create_dir_all(dir).map_err(|source| io_error(dir, source))?;
    let dir = std::path::absolute(dir).map_err(|source| io_error(dir, source))?;
    let mut created = Vec::new();

    let ca = ca_issuer(&dir, &mut created)?;
    let server = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .map_err(|source| generate_error(&dir.join("server.pem"), source))?;
    leaf(
        &dir,
        "server",
        server,
        "admission dev server",
        ExtendedKeyUsagePurpose::ServerAuth,
        &ca,
        &mut created,
    )?;
    for (stem, uri) in DEV_CLIENTS {
        let mut params = CertificateParams::default();
        let san = uri
            .try_into()
            .map_err(|source| generate_error(&dir.join(format!("{stem}.pem")), source))?;
        params.subject_alt_names = vec![SanType::URI(san)];
        leaf(
            &dir,
            stem,
            params,
            uri,
            ExtendedKeyUsagePurpose::ClientAuth,
            &ca,
            &mut created,
        )?;
    }
    let kid = signing_key(&dir, &mut created)?;
    log_key::log_key(&dir, &mut created)?;
    let config = dir.join("admission.toml");
    if !config.exists() {
        write_new(&config, config_text(&kid).as_bytes(), false)?;
        created.push(config.clone());
    }
    Ok(DevEnvironment {
        dir,
        config,
        created,
    })
}

/// What to paste into a shell to call the dev server at `addr` with `admissionctl`.
pub fn instructions(env: &DevEnvironment, addr: SocketAddr) -> String {
    let dir = env.dir.display();
    let port = addr.port();
    format!(
        "admission dev environment in {dir}\n\
         \n\
         call it as the orchestrator:\n\
         \x20 export ADMISSION_ENDPOINT=https://localhost:{port} ADMISSION_CA={dir}/ca.pem \
         ADMISSION_CERT={dir}/orchestrator.pem ADMISSION_KEY={dir}/orchestrator.key\n\
         \x20 admissionctl health\n\
         \n\
         as a reviewer:   ADMISSION_CERT={dir}/reviewer.pem ADMISSION_KEY={dir}/reviewer.key \
         (second reviewer: reviewer2.pem, reviewer2.key)\n\
         as the auditor:  ADMISSION_CERT={dir}/auditor.pem ADMISSION_KEY={dir}/auditor.key\n\
         or as flags:     admissionctl --endpoint https://localhost:{port} --ca {dir}/ca.pem \
         --cert {dir}/orchestrator.pem --key {dir}/orchestrator.key health\n"
    )
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, "ByteOr admission dev CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

/// Loads the CA key, or makes a new CA. The issuer is rebuilt from the same parameters, so
/// certificates signed on a later run chain to the `ca.pem` written on the first.
fn ca_issuer(dir: &Path, created: &mut Vec<PathBuf>) -> Result<Issuer<'static, KeyPair>, DevError> {
    let (cert_path, key_path) = (dir.join("ca.pem"), dir.join("ca.key"));
    let key = match (cert_path.exists(), key_path.exists()) {
        (true, true) => load_key(&key_path)?,
        (false, false) => {
            let key = KeyPair::generate().map_err(|source| generate_error(&key_path, source))?;
            let cert = ca_params()
                .self_signed(&key)
                .map_err(|source| generate_error(&cert_path, source))?;
            write_new(&key_path, key.serialize_pem().as_bytes(), true)?;
            write_new(&cert_path, cert.pem().as_bytes(), false)?;
            created.extend([cert_path, key_path]);
            key
        }
        (has_cert, _) => return Err(half_pair(&cert_path, &key_path, has_cert)),
    };
    Ok(Issuer::new(ca_params(), key))
}

fn leaf(
    dir: &Path,
    stem: &str,
    mut params: CertificateParams,
    common_name: &str,
    usage: ExtendedKeyUsagePurpose,
    ca: &Issuer<'static, KeyPair>,
    created: &mut Vec<PathBuf>,
) -> Result<(), DevError> {
    let (cert_path, key_path) = (
        dir.join(format!("{stem}.pem")),
        dir.join(format!("{stem}.key")),
    );
    match (cert_path.exists(), key_path.exists()) {
        (true, true) => return Ok(()),
        (false, false) => {}
        (has_cert, _) => return Err(half_pair(&cert_path, &key_path, has_cert)),
    }
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.extended_key_usages = vec![usage];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate().map_err(|source| generate_error(&key_path, source))?;
    let cert = params
        .signed_by(&key, ca)
        .map_err(|source| generate_error(&cert_path, source))?;
    write_new(&key_path, key.serialize_pem().as_bytes(), true)?;
    write_new(&cert_path, cert.pem().as_bytes(), false)?;
    created.extend([cert_path, key_path]);
    Ok(())
}

/// Makes `signing.key` and `signing_keys.json` when missing; returns the kid of the signing key.
fn signing_key(dir: &Path, created: &mut Vec<PathBuf>) -> Result<String, DevError> {
    let key_path = dir.join("signing.key");
    let set_path = dir.join("signing_keys.json");
    let key = if key_path.exists() {
        load_key(&key_path)?
    } else {
        // RFC 8410 PKCS#8 v1, which OpenSSL, Python and Node read as well.
        let (_, pem) = SigningKey::generate("dev")
            .map_err(|error| inconsistent(&key_path, error.to_string()))?;
        write_new(&key_path, pem.as_bytes(), true)?;
        created.push(key_path.clone());
        KeyPair::from_pem(&pem).map_err(|source| generate_error(&key_path, source))?
    };
    let x = URL_SAFE_NO_PAD.encode(key.public_key_raw());
    if set_path.exists() {
        return kid_in_key_set(&set_path, &x);
    }
    let kid = dev_kid(SystemTime::now());
    let key_set = serde_json::json!({
        "keys": [{
            "kty": "OKP",
            "crv": "Ed25519",
            "kid": kid,
            "alg": "EdDSA",
            "x": x,
            "status": "active",
        }]
    });
    let text = format!("{key_set:#}\n");
    write_new(&set_path, text.as_bytes(), false)?;
    created.push(set_path);
    Ok(kid)
}

fn kid_in_key_set(path: &Path, x: &str) -> Result<String, DevError> {
    let text = fs::read_to_string(path).map_err(|source| io_error(path, source))?;
    let key_set: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| inconsistent(path, format!("not json: {e}")))?;
    key_set["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|key| key["x"] == x)
        .and_then(|key| key["kid"].as_str())
        .map(str::to_owned)
        .ok_or_else(|| {
            inconsistent(
                path,
                "has no key matching signing.key; remove both to have them made again".to_owned(),
            )
        })
}

/// `dev-<yyyy-mm>` for the month of `now` (UTC).
pub fn dev_kid(now: SystemTime) -> String {
    let seconds = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (year, month) = year_month(seconds);
    format!("dev-{year:04}-{month:02}")
}

/// Civil year and month of a Unix time (Howard Hinnant's days-to-civil algorithm).
fn year_month(unix_seconds: u64) -> (i64, i64) {
    let days = i64::try_from(unix_seconds / 86_400).unwrap_or(0);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month)
}

fn load_key(path: &Path) -> Result<KeyPair, DevError> {
    let pem = fs::read_to_string(path).map_err(|source| io_error(path, source))?;
    KeyPair::from_pem(&pem).map_err(|source| generate_error(path, source))
}

/// Writes a file that must not exist yet; private keys are readable by the owner only.
fn write_new(path: &Path, contents: &[u8], private: bool) -> Result<(), DevError> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if private { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options
        .open(path)
        .map_err(|source| io_error(path, source))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(|source| io_error(path, source))
}

fn half_pair(cert: &Path, key: &Path, has_cert: bool) -> DevError {
    let (present, missing) = if has_cert { (cert, key) } else { (key, cert) };
    inconsistent(
        missing,
        format!(
            "is missing but {} exists; remove it to have both made again",
            present.display()
        ),
    )
}

fn io_error(path: &Path, source: io::Error) -> DevError {
    DevError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn generate_error(path: &Path, source: rcgen::Error) -> DevError {
    DevError::Generate {
        path: path.to_path_buf(),
        source,
    }
}

fn inconsistent(path: &Path, message: String) -> DevError {
    DevError::Inconsistent {
        path: path.to_path_buf(),
        message,
    }
}

mod config_text;
mod log_key;

use self::config_text::config_text;
pub use self::log_key::DEV_LOG_ORIGIN;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
