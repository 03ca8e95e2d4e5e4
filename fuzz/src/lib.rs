//! What the fuzz targets share: a fixed signing key and its key set, the request limits the
//! server uses by default, and a directory of real TLS and key files for config parsing.
//!
//! Everything here is test material made at run time (or from fixed bytes); none of it is a
//! secret.
#![forbid(unsafe_code)]

use std::{
    path::{Path, PathBuf},
    sync::LazyLock,
};

use admission_contract::credential::{KeySet, KeyStatus, SigningKey};
use admission_server::domain::request::RequestLimits;
use base64::{Engine, engine::general_purpose::STANDARD};

/// Key id of [`signing_key`]; the committed credential seeds are signed with it.
pub const FUZZ_KID: &str = "fuzz-2026";

/// Key id of the retired key in [`key_set`]: it still verifies (rotation overlap).
pub const RETIRED_KID: &str = "fuzz-retired";

/// The 32-byte Ed25519 seed of [`signing_key`]: fixed, so committed seeds stay verifiable.
const FUZZ_SEED: [u8; 32] = [7; 32];

/// RFC 8410 PKCS#8 v1 prefix of an Ed25519 private key, followed by the 32-byte seed.
const ED25519_PKCS8_V1_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// Largest credential the targets accept, as the server does by default.
pub const CREDENTIAL_MAX_BYTES: usize = 16 * 1024;

/// The PKCS#8 PEM of the fixed fuzz signing key.
pub fn signing_key_pem() -> String {
    pem_with_seed(FUZZ_SEED)
}

/// The fixed fuzz signing key.
pub fn signing_key() -> &'static SigningKey {
    static KEY: LazyLock<SigningKey> = LazyLock::new(|| {
        SigningKey::from_pkcs8_pem(FUZZ_KID, &signing_key_pem()).expect("fixed fuzz key loads")
    });
    &KEY
}

/// A key set trusting [`signing_key`] (active), a retired and a revoked key.
pub fn key_set() -> &'static KeySet {
    static KEYS: LazyLock<KeySet> = LazyLock::new(|| {
        KeySet::from_jwks(key_set_json().as_bytes()).expect("fuzz key set parses")
    });
    &KEYS
}

/// The JWKS text of [`key_set`].
pub fn key_set_json() -> String {
    let other = |kid: &str, byte: u8, status: KeyStatus| {
        let key = SigningKey::from_pkcs8_pem(kid, &pem_with_seed([byte; 32]))
            .expect("fixed fuzz key loads");
        key.public_jwk(status)
    };
    let keys = [
        signing_key().public_jwk(KeyStatus::Active),
        other(RETIRED_KID, 8, KeyStatus::Retired),
        other("fuzz-revoked", 9, KeyStatus::Revoked),
    ];
    serde_json::json!({ "keys": keys }).to_string()
}

fn pem_with_seed(seed: [u8; 32]) -> String {
    let mut der = ED25519_PKCS8_V1_PREFIX.to_vec();
    der.extend_from_slice(&seed);
    format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        STANDARD.encode(der)
    )
}

/// The server's default request limits.
pub fn request_limits() -> RequestLimits {
    RequestLimits {
        credential_max_bytes: CREDENTIAL_MAX_BYTES,
        ..RequestLimits::default()
    }
}

/// A directory holding what the committed config seeds name: the files `admission-server dev`
/// makes (`server.pem`, `server.key`, `ca.pem`, …) plus `fuzz-keys.json` and
/// `fuzz-signing.key` for [`FUZZ_KID`]. Made once per process, reused across runs.
pub fn config_dir() -> &'static Path {
    static DIR: LazyLock<PathBuf> = LazyLock::new(|| {
        let dir = std::env::temp_dir().join("admission-fuzz-config");
        // Another fuzzing process may be preparing the same directory; a second attempt
        // reuses whatever the first one finished.
        if admission_server::runtime::dev::prepare(&dir).is_err() {
            admission_server::runtime::dev::prepare(&dir)
                .expect("prepare the config fixture directory");
        }
        write_if_changed(&dir.join("fuzz-keys.json"), &key_set_json());
        write_if_changed(&dir.join("fuzz-signing.key"), &signing_key_pem());
        dir
    });
    &DIR
}

/// Writes through a temporary file and a rename, so a concurrent reader never sees half a file.
fn write_if_changed(path: &Path, contents: &str) {
    if std::fs::read_to_string(path).is_ok_and(|current| current == contents) {
        return;
    }
    let temporary = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&temporary, contents).expect("write a config fixture file");
    std::fs::rename(&temporary, path).expect("move a config fixture file into place");
}
