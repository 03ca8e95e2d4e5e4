//! The trusted key set (`signing_keys.json`, a JWKS of Ed25519 keys) and the signing key.

use std::{collections::BTreeMap, fmt};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use rustls_pki_types::{PrivateKeyDer, pem::PemObject};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{CREDENTIAL_VERSION, Claims, TimeOutOfRange, format_time};

/// What a key in the key set may be used for (SPEC §5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyStatus {
    /// Verifies credentials; the service may sign with it.
    Active,
    /// Verifies credentials only (rotation overlap).
    Retired,
    /// Credentials signed with it are rejected.
    Revoked,
}

/// One Ed25519 public key of the key set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustedKey {
    status: KeyStatus,
    public: [u8; 32],
}

/// The trusted key set: Ed25519 public keys by `kid`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeySet {
    keys: BTreeMap<String, TrustedKey>,
}

/// A JWKS entry as written to `signing_keys.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Jwk {
    /// Always `OKP`.
    pub kty: &'static str,
    /// Always `Ed25519`.
    pub crv: &'static str,
    /// Key id.
    pub kid: String,
    /// Always `EdDSA`.
    pub alg: &'static str,
    /// The 32-byte public key, base64url without padding.
    pub x: String,
    /// Key status.
    pub status: KeyStatus,
}

/// Why a key set document is rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeySetError {
    /// The document is not a JSON object with a `keys` array.
    #[error("key set is not a JWKS document ({detail}); expected {{\"keys\":[…]}}")]
    NotJwks {
        /// What is wrong.
        detail: String,
    },
    /// The `keys` array is empty, so no credential could ever verify.
    #[error("key set has no keys; add at least one Ed25519 key")]
    Empty,
    /// One entry is invalid.
    #[error("key set entry {index}{} has an invalid `{field}`: {detail}", kid_suffix(.kid))]
    InvalidKey {
        /// 0-based position in `keys`.
        index: usize,
        /// The entry's kid, when it has a usable one.
        kid: Option<String>,
        /// The offending JWK member.
        field: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// Two entries share a kid.
    #[error("key set entries {first} and {index} both have kid {kid}; kids must be unique")]
    DuplicateKid {
        /// The repeated kid.
        kid: String,
        /// 0-based position of the first entry with it.
        first: usize,
        /// 0-based position of the repeat.
        index: usize,
    },
}

/// An Ed25519 private key with its kid, for issuing credentials.
pub struct SigningKey {
    kid: String,
    pub(super) pair: Ed25519KeyPair,
}

/// Why a signing key cannot be loaded or made.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SigningKeyError {
    /// The text holds no PKCS#8 `PRIVATE KEY` PEM block.
    #[error("signing key {kid} is not a PKCS#8 PEM private key ({detail})")]
    NotPkcs8Pem {
        /// The key id it was loaded for.
        kid: String,
        /// What the PEM parser reported.
        detail: String,
    },
    /// The PKCS#8 key is not a valid Ed25519 key.
    #[error(
        "signing key {kid} is not an Ed25519 key ({detail}); generate one with admissionctl keygen"
    )]
    NotEd25519 {
        /// The key id it was loaded for.
        kid: String,
        /// What ring reported.
        detail: String,
    },
    /// Key generation failed.
    #[error("cannot generate signing key {kid}: {detail}")]
    Generate {
        /// The key id.
        kid: String,
        /// What failed.
        detail: String,
    },
    /// The kid is empty.
    #[error("a signing key needs a non-empty kid")]
    EmptyKid,
}

/// Why a signing key may not issue credentials under a key set (SPEC §5: only `active` keys).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SigningKeyNotTrusted {
    /// The kid is not in the key set.
    #[error(
        "signing key {kid} is not in the key set; add its public key with admissionctl keygen --jwks"
    )]
    Unknown {
        /// The signing key's kid.
        kid: String,
    },
    /// The kid is retired or revoked.
    #[error("signing key {kid} is {status} in the key set; sign with an active key")]
    NotActive {
        /// The signing key's kid.
        kid: String,
        /// Its status in the key set.
        status: KeyStatus,
    },
    /// The key set holds a different public key under this kid.
    #[error(
        "signing key {kid} does not match the public key the key set holds for {kid}; credentials it signs would not verify"
    )]
    PublicKeyDiffers {
        /// The signing key's kid.
        kid: String,
    },
}

/// Why claims cannot be signed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// The claims name a different key than the one signing them.
    #[error(
        "claims name key {claims_kid} but are being signed with key {key_kid}; set kid to {key_kid}"
    )]
    KidMismatch {
        /// The `kid` in the claims.
        claims_kid: String,
        /// The signing key's kid.
        key_kid: String,
    },
    /// The claims have a version this contract cannot produce.
    #[error("claims have version {v} but only version 1 can be signed")]
    VersionUnsupported {
        /// The claims' version.
        v: u64,
    },
    /// A time cannot be written in RFC 3339.
    #[error("claims field {field} cannot be written as an rfc 3339 time: {source}")]
    Time {
        /// `issued_at` or `expires_at`.
        field: &'static str,
        /// The out-of-range time.
        source: TimeOutOfRange,
    },
    /// Canonical JSON serialization failed.
    #[error("claims cannot be serialized as canonical json: {0}")]
    Json(String),
}

fn kid_suffix(kid: &Option<String>) -> String {
    kid.as_ref()
        .map(|kid| format!(" (kid {kid})"))
        .unwrap_or_default()
}

/// The payload exactly as producers emit it; canonicalized before signing.
#[derive(Serialize)]
struct WireClaims<'a> {
    v: u64,
    kid: &'a str,
    org_id: &'a str,
    project_id: &'a str,
    environment_id: &'a str,
    environment_posture: &'a str,
    spec_hash: &'a str,
    capabilities: &'a [String],
    issued_at: String,
    expires_at: String,
    issued_by: &'a str,
    approval_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    config_bundle_digest: Option<&'a str>,
}

// === impl TrustedKey ===

impl TrustedKey {
    /// The key's status.
    pub fn status(&self) -> KeyStatus {
        self.status
    }

    /// The raw 32-byte Ed25519 public key.
    pub fn public_key(&self) -> &[u8; 32] {
        &self.public
    }

    /// True when `signature` is a valid Ed25519 signature of `message` by this key.
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&ED25519, &self.public)
            .verify(message, signature)
            .is_ok()
    }
}

// === impl KeySet ===

impl KeySet {
    /// Parses a JWKS document (SPEC §5). A missing `status` means `active`.
    pub fn from_jwks(bytes: &[u8]) -> Result<KeySet, KeySetError> {
        let document: Value = serde_json::from_slice(bytes).map_err(|e| KeySetError::NotJwks {
            detail: e.to_string(),
        })?;
        let Some(entries) = document.get("keys").and_then(Value::as_array) else {
            return Err(KeySetError::NotJwks {
                detail: "there is no `keys` array".to_owned(),
            });
        };
        if entries.is_empty() {
            return Err(KeySetError::Empty);
        }
        let mut keys = BTreeMap::new();
        let mut positions = BTreeMap::new();
        for (index, entry) in entries.iter().enumerate() {
            let (kid, key) = parse_jwk(index, entry)?;
            if let Some(&first) = positions.get(&kid) {
                return Err(KeySetError::DuplicateKid { kid, first, index });
            }
            positions.insert(kid.clone(), index);
            keys.insert(kid, key);
        }
        Ok(KeySet { keys })
    }

    /// The key with this kid.
    pub fn get(&self, kid: &str) -> Option<&TrustedKey> {
        self.keys.get(kid)
    }

    /// The status of the key with this kid.
    pub fn status(&self, kid: &str) -> Option<KeyStatus> {
        self.keys.get(kid).map(TrustedKey::status)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when there are no keys.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The kids, in sorted order.
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    /// Checks that `key` may sign: its kid is here, `active`, with the same public key.
    pub fn check_signing_key(&self, key: &SigningKey) -> Result<(), SigningKeyNotTrusted> {
        let kid = key.kid().to_owned();
        let Some(trusted) = self.keys.get(&kid) else {
            return Err(SigningKeyNotTrusted::Unknown { kid });
        };
        if trusted.status != KeyStatus::Active {
            let status = trusted.status;
            return Err(SigningKeyNotTrusted::NotActive { kid, status });
        }
        if trusted.public.as_slice() != key.public_key() {
            return Err(SigningKeyNotTrusted::PublicKeyDiffers { kid });
        }
        Ok(())
    }

    /// The JWKS entries, sorted by kid.
    pub fn jwks(&self) -> Vec<Jwk> {
        self.keys
            .iter()
            .map(|(kid, key)| Jwk::ed25519(kid, &key.public, key.status))
            .collect()
    }

    /// The key set as a `signing_keys.json` document.
    pub fn to_jwks_json(&self) -> Value {
        serde_json::json!({ "keys": self.jwks() })
    }
}

fn parse_jwk(index: usize, entry: &Value) -> Result<(String, TrustedKey), KeySetError> {
    let invalid =
        |kid: Option<&str>, field: &'static str, detail: String| KeySetError::InvalidKey {
            index,
            kid: kid.map(str::to_owned),
            field,
            detail,
        };
    let Some(object) = entry.as_object() else {
        return Err(invalid(None, "entry", "it is not a JSON object".to_owned()));
    };
    let kid = match object.get("kid") {
        Some(Value::String(kid)) if !kid.is_empty() => kid.clone(),
        Some(_) => return Err(invalid(None, "kid", "it is not a non-empty string".into())),
        None => return Err(invalid(None, "kid", "it is missing".into())),
    };
    let member = |name: &'static str, expected: &str| -> Result<(), KeySetError> {
        match object.get(name) {
            Some(Value::String(s)) if s == expected => Ok(()),
            Some(other) => Err(invalid(
                Some(&kid),
                name,
                format!("it is {other}, expected \"{expected}\""),
            )),
            None => Err(invalid(
                Some(&kid),
                name,
                format!("it is missing, expected \"{expected}\""),
            )),
        }
    };
    member("kty", "OKP")?;
    member("crv", "Ed25519")?;
    member("alg", "EdDSA")?;
    if object.contains_key("d") {
        return Err(invalid(
            Some(&kid),
            "d",
            "the entry holds private key material; publish only the public key".into(),
        ));
    }
    let public = match object.get("x") {
        Some(Value::String(x)) => decode_public_key(x).map_err(|e| invalid(Some(&kid), "x", e))?,
        Some(_) => return Err(invalid(Some(&kid), "x", "it is not a string".into())),
        None => return Err(invalid(Some(&kid), "x", "it is missing".into())),
    };
    let status = match object.get("status") {
        None => KeyStatus::Active,
        Some(value) => KeyStatus::deserialize(value).map_err(|_| {
            invalid(
                Some(&kid),
                "status",
                format!("it is {value}, expected \"active\", \"retired\" or \"revoked\""),
            )
        })?,
    };
    Ok((kid, TrustedKey { status, public }))
}

fn decode_public_key(x: &str) -> Result<[u8; 32], String> {
    let bytes = URL_SAFE_NO_PAD
        .decode(x)
        .map_err(|e| format!("it is not base64url without padding ({e})"))?;
    bytes
        .as_slice()
        .try_into()
        .map_err(|_| format!("it is {} bytes, an Ed25519 public key is 32", bytes.len()))
}

// === impl KeyStatus ===

impl KeyStatus {
    /// The JWKS text: `active`, `retired` or `revoked`.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Active => "active",
            KeyStatus::Retired => "retired",
            KeyStatus::Revoked => "revoked",
        }
    }
}

impl fmt::Display for KeyStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// === impl Jwk ===

impl Jwk {
    /// The JWKS entry of an Ed25519 public key.
    pub fn ed25519(kid: &str, public: &[u8], status: KeyStatus) -> Jwk {
        Jwk {
            kty: "OKP",
            crv: "Ed25519",
            kid: kid.to_owned(),
            alg: "EdDSA",
            x: URL_SAFE_NO_PAD.encode(public),
            status,
        }
    }
}

// === impl SigningKey ===

impl SigningKey {
    /// Loads an Ed25519 PKCS#8 (v1 or v2) PEM private key.
    pub fn from_pkcs8_pem(kid: &str, pem: &str) -> Result<SigningKey, SigningKeyError> {
        if kid.is_empty() {
            return Err(SigningKeyError::EmptyKid);
        }
        let der = PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| {
            SigningKeyError::NotPkcs8Pem {
                kid: kid.to_owned(),
                detail: e.to_string(),
            }
        })?;
        let PrivateKeyDer::Pkcs8(pkcs8) = der else {
            return Err(SigningKeyError::NotPkcs8Pem {
                kid: kid.to_owned(),
                detail: "the PEM block is a PKCS#1 or SEC1 key".to_owned(),
            });
        };
        let pair =
            Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8.secret_pkcs8_der()).map_err(|e| {
                SigningKeyError::NotEd25519 {
                    kid: kid.to_owned(),
                    detail: e.to_string(),
                }
            })?;
        Ok(SigningKey {
            kid: kid.to_owned(),
            pair,
        })
    }

    /// Generates a new key; returns it with its PKCS#8 PEM text for `signing.key`.
    pub fn generate(kid: &str) -> Result<(SigningKey, String), SigningKeyError> {
        let generated = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).map_err(|e| {
            SigningKeyError::Generate {
                kid: kid.to_owned(),
                detail: e.to_string(),
            }
        })?;
        let pem = pkcs8_v1_pem(kid, &generated.serialize_der())?;
        let key = SigningKey::from_pkcs8_pem(kid, &pem)?;
        Ok((key, pem))
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The raw 32-byte public key.
    pub fn public_key(&self) -> &[u8] {
        self.pair.public_key().as_ref()
    }

    /// The JWKS entry for this key's public half.
    pub fn public_jwk(&self, status: KeyStatus) -> Jwk {
        Jwk::ed25519(&self.kid, self.public_key(), status)
    }

    /// Signs `claims`: canonical RFC 8785 payload, `b64url(payload).b64url(signature)`.
    ///
    /// Times are written in whole seconds; sub-second parts are dropped.
    pub fn sign(&self, claims: &Claims) -> Result<String, SignError> {
        if claims.kid != self.kid {
            return Err(SignError::KidMismatch {
                claims_kid: claims.kid.clone(),
                key_kid: self.kid.clone(),
            });
        }
        if claims.v != CREDENTIAL_VERSION {
            return Err(SignError::VersionUnsupported { v: claims.v });
        }
        let time =
            |field, value| format_time(value).map_err(|source| SignError::Time { field, source });
        let wire = WireClaims {
            v: claims.v,
            kid: &claims.kid,
            org_id: &claims.org_id,
            project_id: &claims.project_id,
            environment_id: &claims.environment_id,
            environment_posture: &claims.environment_posture,
            spec_hash: &claims.spec_hash,
            capabilities: &claims.capabilities,
            issued_at: time("issued_at", claims.issued_at)?,
            expires_at: time("expires_at", claims.expires_at)?,
            issued_by: &claims.issued_by,
            approval_id: &claims.approval_id,
            config_bundle_digest: claims.config_bundle_digest.as_deref(),
        };
        let payload =
            serde_json_canonicalizer::to_vec(&wire).map_err(|e| SignError::Json(e.to_string()))?;
        let signature = self.pair.sign(&payload);
        Ok(format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&payload),
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        ))
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print private key material.
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("public_key", &URL_SAFE_NO_PAD.encode(self.public_key()))
            .finish()
    }
}

/// DER prefix of an RFC 8410 PKCS#8 v1 Ed25519 private key: version 0, the Ed25519 algorithm,
/// and an OCTET STRING holding the 32-byte seed as an OCTET STRING.
pub(super) const ED25519_PKCS8_V1_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// Rewrites a PKCS#8 v2 Ed25519 key (as ring generates it: the v1 fields plus the public key)
/// as RFC 8410 PKCS#8 v1 PEM, the form OpenSSL, Python `cryptography` and Node read.
fn pkcs8_v1_pem(kid: &str, v2_der: &[u8]) -> Result<String, SigningKeyError> {
    // ring's v2 document: `30 51 02 01 01 30 05 06 03 2b 65 70 04 22 04 20 <seed> a1 23 03 21 00 <public>`;
    // only the version byte and the outer length differ from v1 before the seed.
    let seed = v2_der
        .get(16..48)
        .filter(|_| v2_der.get(5..16) == ED25519_PKCS8_V1_PREFIX.get(5..16))
        .ok_or_else(|| SigningKeyError::Generate {
            kid: kid.to_owned(),
            detail: "the generated key is not an Ed25519 PKCS#8 document".to_owned(),
        })?;
    let mut der = ED25519_PKCS8_V1_PREFIX.to_vec();
    der.extend_from_slice(seed);
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    Ok(format!(
        "-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n"
    ))
}
