//! The log key: an Ed25519 key loaded from PKCS#8 PEM, and its public half as a C2SP
//! signed-note verifier key (`<name>+<hex key ID>+<base64(0x01 || public key)>`).
//!
//! A `log.pub` file is that verifier key on one line, ending in a newline: the same string the
//! Go and C2SP tools take, so a checkpoint can be checked with them as well.

use std::fmt;

use base64::{Engine, engine::general_purpose::STANDARD};
use ring::{
    rand::{SecureRandom, SystemRandom},
    signature::{self, Ed25519KeyPair, KeyPair},
};
use rustls_pki_types::{PrivateKeyDer, pem::PemObject};
use sha2::{Digest, Sha256};

use crate::LogError;

/// The signature type byte of Ed25519 in C2SP signed-note keys.
const ED25519_ALGORITHM: u8 = 0x01;

/// The 16 bytes that begin an RFC 8410 PKCS#8 v1 Ed25519 private key; the 32-byte seed follows.
const PKCS8_V1_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// The log's signing key, named (the name is the checkpoint origin and the note key name).
pub struct LogKey {
    name: String,
    pair: Ed25519KeyPair,
}

/// A log's public key as signed-note verifier key: name, key ID and Ed25519 public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierKey {
    name: String,
    id: u32,
    public: [u8; 32],
}

/// The signed-note key ID: the first 4 bytes of SHA-256(name || 0x0A || 0x01 || public key).
pub fn key_id(name: &str, public: &[u8; 32]) -> u32 {
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update([b'\n', ED25519_ALGORITHM]);
    hasher.update(public);
    let digest = hasher.finalize();
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// Checks a key name against C2SP signed-note: non-empty, no `+`, no whitespace.
pub(crate) fn check_key_name(name: &str) -> Result<(), LogError> {
    if name.is_empty() {
        return Err(LogError::malformed("key name", "it is empty"));
    }
    if name
        .chars()
        .any(|c| c == '+' || c.is_whitespace() || c.is_control())
    {
        return Err(LogError::malformed(
            "key name",
            format!("{name:?} contains '+', a space or a control character"),
        ));
    }
    Ok(())
}

// === impl LogKey ===

impl LogKey {
    /// Loads an Ed25519 PKCS#8 (v1 or v2) PEM private key under `name`.
    pub fn from_pkcs8_pem(name: &str, pem: &str) -> Result<LogKey, LogError> {
        check_key_name(name)?;
        let der = PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| LogError::Key {
            detail: format!("not a PEM private key: {e}"),
        })?;
        let PrivateKeyDer::Pkcs8(pkcs8) = der else {
            return Err(LogError::Key {
                detail: "the PEM block is a PKCS#1 or SEC1 key, not PKCS#8 Ed25519".to_owned(),
            });
        };
        let pair =
            Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8.secret_pkcs8_der()).map_err(|e| {
                LogError::Key {
                    detail: format!("not an Ed25519 PKCS#8 key: {e}"),
                }
            })?;
        Ok(LogKey {
            name: name.to_owned(),
            pair,
        })
    }

    /// The key with this 32-byte Ed25519 seed (RFC 8032 private key).
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Result<LogKey, LogError> {
        check_key_name(name)?;
        let pair = Ed25519KeyPair::from_seed_unchecked(seed).map_err(|e| LogError::Key {
            detail: format!("bad Ed25519 seed: {e}"),
        })?;
        Ok(LogKey {
            name: name.to_owned(),
            pair,
        })
    }

    /// Generates a new key; returns it with its PKCS#8 v1 PEM text.
    pub fn generate(name: &str) -> Result<(LogKey, String), LogError> {
        let mut seed = [0u8; 32];
        SystemRandom::new()
            .fill(&mut seed)
            .map_err(|_| LogError::Key {
                detail: "the system random source failed".to_owned(),
            })?;
        let mut der = PKCS8_V1_PREFIX.to_vec();
        der.extend_from_slice(&seed);
        let body = STANDARD.encode(der);
        let pem = format!("-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n");
        Ok((LogKey::from_seed(name, &seed)?, pem))
    }

    /// The key name (the log origin).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The Ed25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        let mut public = [0u8; 32];
        public.copy_from_slice(self.pair.public_key().as_ref());
        public
    }

    /// The public half as a verifier key.
    pub fn verifier(&self) -> VerifierKey {
        let public = self.public_key();
        VerifierKey {
            id: key_id(&self.name, &public),
            name: self.name.clone(),
            public,
        }
    }

    /// An Ed25519 signature over `message`.
    pub(crate) fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.pair.sign(message).as_ref().to_vec()
    }
}

impl fmt::Debug for LogKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogKey")
            .field("name", &self.name)
            .field("verifier", &self.verifier().to_string())
            .finish()
    }
}

// === impl VerifierKey ===

impl VerifierKey {
    /// The verifier key of Ed25519 `public` under `name`.
    pub fn new(name: &str, public: [u8; 32]) -> Result<VerifierKey, LogError> {
        check_key_name(name)?;
        Ok(VerifierKey {
            id: key_id(name, &public),
            name: name.to_owned(),
            public,
        })
    }

    /// Parses `<name>+<hex key ID>+<base64(0x01 || public key)>`, e.g. a `log.pub` file's text
    /// (surrounding whitespace is ignored).
    pub fn parse(text: &str) -> Result<VerifierKey, LogError> {
        const WHAT: &str = "verifier key";
        let text = text.trim();
        let mut parts = text.splitn(3, '+');
        let (Some(name), Some(id_hex), Some(key_b64)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(LogError::malformed(WHAT, "expected <name>+<key id>+<key>"));
        };
        check_key_name(name)?;
        if id_hex.len() != 8 || !id_hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(LogError::malformed(WHAT, "the key id is not 8 hex digits"));
        }
        let id = u32::from_str_radix(id_hex, 16)
            .map_err(|e| LogError::malformed(WHAT, format!("the key id: {e}")))?;
        let key = STANDARD
            .decode(key_b64)
            .map_err(|e| LogError::malformed(WHAT, format!("the key is not base64: {e}")))?;
        let Some((&ED25519_ALGORITHM, public)) = key.split_first() else {
            return Err(LogError::malformed(
                WHAT,
                "the key is not of type 0x01 (Ed25519)",
            ));
        };
        let public: [u8; 32] = public
            .try_into()
            .map_err(|_| LogError::malformed(WHAT, "the Ed25519 key is not 32 bytes"))?;
        let parsed = VerifierKey::new(name, public)?;
        if parsed.id != id {
            return Err(LogError::malformed(
                WHAT,
                format!(
                    "key id {id_hex} does not match the name and key ({:08x})",
                    parsed.id
                ),
            ));
        }
        Ok(parsed)
    }

    /// The `log.pub` file text: the verifier key and a newline.
    pub fn to_pub_file(&self) -> String {
        format!("{self}\n")
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key ID.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The Ed25519 public key.
    pub fn public_key(&self) -> &[u8; 32] {
        &self.public
    }

    /// Whether `sig` is this key's Ed25519 signature over `message`.
    pub fn verifies(&self, message: &[u8], sig: &[u8]) -> bool {
        signature::UnparsedPublicKey::new(&signature::ED25519, &self.public)
            .verify(message, sig)
            .is_ok()
    }
}

impl fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut key = vec![ED25519_ALGORITHM];
        key.extend_from_slice(&self.public);
        write!(f, "{}+{:08x}+{}", self.name, self.id, STANDARD.encode(key))
    }
}
