//! The trusted key set at runtime: loaded from `signing_keys.json` (a reload builds a new one
//! with the rest of the config), and the mapping of credential verification failures (SPEC §7 rows 11–15) to
//! rejections.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use admission_contract::{
    credential::{KeySet, KeySetError, VerifyError},
    echo::truncated,
};

use crate::domain::rejection::Rejection;

/// The trusted key set and the file it was read from, shared cheaply by every request.
#[derive(Debug)]
pub struct KeyRing {
    path: PathBuf,
    current: Arc<KeySet>,
}

/// Why a key set file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyRingError {
    /// The file cannot be read.
    #[error("cannot read key set {}: {source}", path.display())]
    Read {
        /// The key set file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a valid key set.
    #[error("key set {} is invalid: {source}", path.display())]
    Invalid {
        /// The key set file.
        path: PathBuf,
        /// What is wrong with it.
        source: KeySetError,
    },
}

// === impl KeyRing ===

impl KeyRing {
    /// Loads the key set file; fails naming the file when it is unreadable or invalid.
    pub fn load(path: impl Into<PathBuf>) -> Result<KeyRing, KeyRingError> {
        let path = path.into();
        let keys = read_key_set(&path)?;
        Ok(KeyRing {
            path,
            current: Arc::new(keys),
        })
    }

    /// A key ring over an already parsed key set (tests, `dev`).
    pub fn from_key_set(path: impl Into<PathBuf>, keys: KeySet) -> KeyRing {
        KeyRing {
            path: path.into(),
            current: Arc::new(keys),
        }
    }

    /// The key set file this ring was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The key set in force now; hold the `Arc` for the whole of one decision.
    pub fn current(&self) -> Arc<KeySet> {
        Arc::clone(&self.current)
    }
}

fn read_key_set(path: &Path) -> Result<KeySet, KeyRingError> {
    let bytes = std::fs::read(path).map_err(|source| KeyRingError::Read {
        path: path.to_owned(),
        source,
    })?;
    KeySet::from_jwks(&bytes).map_err(|source| KeyRingError::Invalid {
        path: path.to_owned(),
        source,
    })
}

/// The rejection for a credential that fails SPEC §7 rows 11–15, with `kid` and (when the
/// credential could be decoded) `approval_id` metadata; the caller adds `decision_id`.
pub fn verify_rejection(error: &VerifyError, approval_id: Option<&str>) -> Rejection {
    let mut rejection = Rejection::new(error.reason(), error.to_string());
    if let Some(kid) = error.kid() {
        rejection = rejection.with("kid", truncated(kid));
    }
    if let Some(approval_id) = approval_id {
        rejection = rejection.with("approval_id", truncated(approval_id));
    }
    rejection
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use admission_contract::{
        Reason,
        credential::{KeyStatus, SigningKey},
    };

    use super::*;

    fn jwks(keys: &[(&SigningKey, KeyStatus)]) -> String {
        let keys: Vec<_> = keys.iter().map(|(k, s)| k.public_jwk(*s)).collect();
        serde_json::json!({ "keys": keys }).to_string()
    }

    #[test]
    fn load_reads_each_status_and_refuses_an_invalid_set_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing_keys.json");
        let (a, _) = SigningKey::generate("a").unwrap();
        let (b, _) = SigningKey::generate("b").unwrap();
        std::fs::write(
            &path,
            jwks(&[(&a, KeyStatus::Retired), (&b, KeyStatus::Active)]),
        )
        .unwrap();
        let ring = KeyRing::load(&path).unwrap();
        assert_eq!(ring.current().len(), 2);
        assert_eq!(ring.current().status("a"), Some(KeyStatus::Retired));
        assert_eq!(ring.current().status("b"), Some(KeyStatus::Active));

        std::fs::write(&path, r#"{"keys":[{"kty":"RSA","kid":"c"}]}"#).unwrap();
        let error = KeyRing::load(&path).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "key set {} is invalid: key set entry 0 (kid c) has an invalid `kty`: it is \
                 \"RSA\", expected \"OKP\"",
                path.display()
            )
        );
    }

    #[test]
    fn load_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing.json");
        let error = KeyRing::load(&path).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with(&format!("cannot read key set {}: ", path.display())),
            "{error}"
        );
    }

    #[test]
    fn verify_errors_become_rejections_with_kid_and_approval_id() {
        let rejection = verify_rejection(
            &VerifyError::SignatureInvalid { kid: "k1".into() },
            Some("apr_1"),
        );
        assert_eq!(rejection.reason, Reason::SignatureInvalid);
        assert_eq!(rejection.metadata["kid"], "k1");
        assert_eq!(rejection.metadata["approval_id"], "apr_1");
        let malformed = verify_rejection(
            &VerifyError::Malformed {
                detail: "its payload part is empty".into(),
            },
            None,
        );
        assert_eq!(malformed.reason, Reason::CredentialMalformed);
        assert!(malformed.metadata.is_empty());
    }
}
