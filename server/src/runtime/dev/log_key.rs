//! The dev log key: `log.key` (PKCS#8 PEM) and `log.pub`, the signed-note verifier key line
//! that verifies its checkpoints and receipts (`admissionctl` reads it as the log key).

use std::{
    fs,
    path::{Path, PathBuf},
};

use admission_log::LogKey;

use super::{DevError, inconsistent, io_error, write_new};

/// The log origin (the log key's name) of dev mode.
pub const DEV_LOG_ORIGIN: &str = "dev.local/admission/log";

/// Makes `log.key` when missing, and `log.pub` from it when missing.
pub(super) fn log_key(dir: &Path, created: &mut Vec<PathBuf>) -> Result<(), DevError> {
    let key_path = dir.join("log.key");
    let pub_path = dir.join("log.pub");
    let key = if key_path.exists() {
        let pem = fs::read_to_string(&key_path).map_err(|source| io_error(&key_path, source))?;
        LogKey::from_pkcs8_pem(DEV_LOG_ORIGIN, &pem).map_err(|error| {
            inconsistent(
                &key_path,
                format!("{error}; remove it to have it made again"),
            )
        })?
    } else {
        let (key, pem) = LogKey::generate(DEV_LOG_ORIGIN)
            .map_err(|error| inconsistent(&key_path, error.to_string()))?;
        write_new(&key_path, pem.as_bytes(), true)?;
        created.push(key_path);
        key
    };
    if !pub_path.exists() {
        write_new(&pub_path, key.verifier().to_pub_file().as_bytes(), false)?;
        created.push(pub_path);
    }
    Ok(())
}
