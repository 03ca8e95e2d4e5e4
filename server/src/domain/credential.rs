//! The trusted key set at runtime: loaded from `signing_keys.json`, swapped atomically on
//! SIGHUP, and the mapping of credential verification failures (SPEC §7 rows 11–15) to
//! rejections.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
};

use admission_contract::{
    credential::{KeySet, KeySetError, VerifyError},
    echo::truncated,
};

use crate::domain::rejection::Rejection;

/// The trusted key set, readable cheaply by every request and replaceable without restart.
#[derive(Debug)]
pub struct KeyRing {
    path: PathBuf,
    current: RwLock<Arc<KeySet>>,
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
            current: RwLock::new(Arc::new(keys)),
        })
    }

    /// A key ring over an already parsed key set (tests, `dev`).
    pub fn from_key_set(path: impl Into<PathBuf>, keys: KeySet) -> KeyRing {
        KeyRing {
            path: path.into(),
            current: RwLock::new(Arc::new(keys)),
        }
    }

    /// The key set file this ring reloads from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The key set in force now; hold the `Arc` for the whole of one decision.
    pub fn current(&self) -> Arc<KeySet> {
        // A writer cannot panic while holding the lock (it only swaps an Arc), so a poisoned
        // lock still holds a complete key set.
        let guard = self
            .current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Arc::clone(&guard)
    }

    /// Re-reads the file. On success the new set replaces the old one and its size is
    /// returned; on failure the old set stays in force.
    pub fn reload(&self) -> Result<usize, KeyRingError> {
        match read_key_set(&self.path) {
            Ok(keys) => {
                let count = keys.len();
                let mut guard = self
                    .current
                    .write()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                *guard = Arc::new(keys);
                drop(guard);
                tracing::info!(path = %self.path.display(), keys = count, "key set reloaded");
                Ok(count)
            }
            Err(error) => {
                tracing::warn!(
                    path = %self.path.display(),
                    error = %error,
                    "key set reload failed, keeping the previous key set"
                );
                Err(error)
            }
        }
    }

    /// Reloads the key set on every SIGHUP, for the life of the runtime.
    #[cfg(unix)]
    pub fn spawn_sighup_reloader(self: Arc<Self>) -> std::io::Result<tokio::task::JoinHandle<()>> {
        use tokio::signal::unix::{SignalKind, signal};

        let mut hangups = signal(SignalKind::hangup())?;
        Ok(tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                tracing::info!(path = %self.path.display(), "SIGHUP received, reloading key set");
                // A failed reload is logged by reload() and keeps the old set.
                let _ = self.reload();
            }
        }))
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
    fn reload_swaps_valid_sets_and_keeps_the_old_one_otherwise() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing_keys.json");
        let (a, _) = SigningKey::generate("a").unwrap();
        let (b, _) = SigningKey::generate("b").unwrap();
        std::fs::write(&path, jwks(&[(&a, KeyStatus::Active)])).unwrap();
        let ring = KeyRing::load(&path).unwrap();
        let before = ring.current();
        assert_eq!(before.status("a"), Some(KeyStatus::Active));

        std::fs::write(
            &path,
            jwks(&[(&a, KeyStatus::Retired), (&b, KeyStatus::Active)]),
        )
        .unwrap();
        assert_eq!(ring.reload().unwrap(), 2);
        assert_eq!(ring.current().status("a"), Some(KeyStatus::Retired));
        assert_eq!(ring.current().status("b"), Some(KeyStatus::Active));
        // A set held by an in-flight decision is unaffected by the swap.
        assert_eq!(before.status("a"), Some(KeyStatus::Active));

        std::fs::write(&path, r#"{"keys":[{"kty":"RSA","kid":"c"}]}"#).unwrap();
        let error = ring.reload().unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "key set {} is invalid: key set entry 0 (kid c) has an invalid `kty`: it is \
                 \"RSA\", expected \"OKP\"",
                path.display()
            )
        );
        assert_eq!(ring.current().len(), 2);
        assert_eq!(ring.current().status("b"), Some(KeyStatus::Active));

        std::fs::remove_file(&path).unwrap();
        assert!(matches!(ring.reload(), Err(KeyRingError::Read { .. })));
        assert_eq!(ring.current().len(), 2);
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

    #[cfg(unix)]
    #[tokio::test]
    async fn sighup_reloads_the_key_set() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing_keys.json");
        let (a, _) = SigningKey::generate("a").unwrap();
        let (b, _) = SigningKey::generate("b").unwrap();
        std::fs::write(&path, jwks(&[(&a, KeyStatus::Active)])).unwrap();
        let ring = Arc::new(KeyRing::load(&path).unwrap());
        let task = Arc::clone(&ring).spawn_sighup_reloader().unwrap();
        std::fs::write(&path, jwks(&[(&b, KeyStatus::Active)])).unwrap();

        let status = std::process::Command::new("kill")
            .args(["-HUP", &std::process::id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        // Wait for the reloader to observe the signal; the bound only stops a broken test.
        for _ in 0..500 {
            if ring.current().status("b").is_some() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(ring.current().status("b"), Some(KeyStatus::Active));
        assert_eq!(ring.current().status("a"), None);
        task.abort();
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
