//! ByteOr approval-credentials-v1 (SPEC §5): the token format, its claims, the trusted key set
//! and signing.
//!
//! A credential is `BASE64URL(payload) "." BASE64URL(signature)` without padding, where the
//! payload is RFC 8785 canonical JSON and the signature is Ed25519 over the payload bytes.
//! [`verify`] applies SPEC §7 rows 11–15 in order; the claim checks of rows 16–22 need the
//! request and the environment policy and live with the server.

use std::{
    fmt,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde::{
    Deserialize, Deserializer,
    de::{MapAccess, Visitor},
};
use serde_json::{Map, Value};

use crate::{Reason, echo::echo};

mod keys;

pub use keys::{
    Jwk, KeySet, KeySetError, KeyStatus, SignError, SigningKey, SigningKeyError,
    SigningKeyNotTrusted, TrustedKey,
};

/// The only credential version this contract defines.
pub const CREDENTIAL_VERSION: u64 = 1;

/// Default longest accepted credential (SPEC §3: each credential ≤ 16 KiB).
pub const DEFAULT_MAX_CREDENTIAL_LEN: usize = 16 * 1024;

/// The claims of an approval credential (SPEC §5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claims {
    /// Format version; only 1 is supported.
    pub v: u64,
    /// Id of the signing key in the trusted key set.
    pub kid: String,
    /// Organization the approval is for.
    pub org_id: String,
    /// Project the approval is for.
    pub project_id: String,
    /// Environment the approval is for.
    pub environment_id: String,
    /// Posture of that environment when approved: `dev`, `staging` or `prod`.
    pub environment_posture: String,
    /// `sha256:` digest of the approved spec.
    pub spec_hash: String,
    /// Capabilities the approval grants.
    pub capabilities: Vec<String>,
    /// When the approval was issued (whole seconds).
    pub issued_at: SystemTime,
    /// When the approval stops being valid (whole seconds).
    pub expires_at: SystemTime,
    /// Identity of the approver.
    pub issued_by: String,
    /// Id of the approval this credential carries.
    pub approval_id: String,
    /// When present, the config bundle digest the approval is bound to.
    pub config_bundle_digest: Option<String>,
}

/// A decoded but not yet verified credential.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decoded {
    /// The claims, parsed from the payload. Untrusted until [`verify_decoded`] succeeds.
    pub claims: Claims,
    /// The payload bytes exactly as received; the signature covers these.
    pub payload: Vec<u8>,
    /// The Ed25519 signature.
    pub signature: [u8; 64],
}

/// Why a credential is not accepted (SPEC §7 rows 11–15).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VerifyError {
    /// Row 11: the token cannot be decoded, misses a field or is too long.
    Malformed {
        /// What exactly is wrong, for the operator.
        detail: String,
    },
    /// Row 12: the `kid` is not in the trusted key set.
    KeyUnknown {
        /// The credential's key id.
        kid: String,
    },
    /// Row 13: the `kid` is revoked.
    KeyRevoked {
        /// The credential's key id.
        kid: String,
    },
    /// Row 14: the signature does not verify with the key named by `kid`.
    SignatureInvalid {
        /// The credential's key id.
        kid: String,
    },
    /// Row 15: the version is not 1.
    VersionUnsupported {
        /// The credential's key id.
        kid: String,
        /// The version the credential claims.
        v: u64,
    },
}

/// A time that cannot be written as an RFC 3339 credential time (before 1970 or after 9999).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("time {0:?} is outside 1970-01-01T00:00:00Z..=9999-12-31T23:59:59Z")]
pub struct TimeOutOfRange(pub SystemTime);

/// Seconds since the epoch of 10000-01-01T00:00:00Z, the first time RFC 3339 cannot write.
const YEAR_10000: u64 = 253_402_300_800;

/// Decodes a token (SPEC §7 row 11) without checking its key or signature.
pub fn decode(token: &str, max_len: usize) -> Result<Decoded, VerifyError> {
    if token.len() > max_len {
        return Err(malformed(format!(
            "it is {} bytes long, the limit is {max_len}",
            token.len()
        )));
    }
    let mut parts = token.split('.');
    let (Some(payload_b64), Some(signature_b64), None) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed(format!(
            "it has {} dot-separated parts, expected 2 (payload.signature)",
            token.split('.').count()
        )));
    };
    let payload = decode_part("payload", payload_b64)?;
    let signature_bytes = decode_part("signature", signature_b64)?;
    let signature: [u8; 64] = signature_bytes.as_slice().try_into().map_err(|_| {
        malformed(format!(
            "its signature is {} bytes, an Ed25519 signature is 64",
            signature_bytes.len()
        ))
    })?;
    let claims = parse_claims(&payload)?;
    Ok(Decoded {
        claims,
        payload,
        signature,
    })
}

/// Decodes and verifies a token against `keys`: SPEC §7 rows 11–15, in that order.
pub fn verify(token: &str, keys: &KeySet, max_len: usize) -> Result<Claims, VerifyError> {
    let decoded = decode(token, max_len)?;
    verify_decoded(&decoded, keys)?;
    Ok(decoded.claims)
}

/// Rows 12–15 for an already decoded token; lets a caller read `approval_id` first.
pub fn verify_decoded(decoded: &Decoded, keys: &KeySet) -> Result<(), VerifyError> {
    let kid = &decoded.claims.kid;
    let Some(key) = keys.get(kid) else {
        return Err(VerifyError::KeyUnknown { kid: kid.clone() });
    };
    if key.status() == KeyStatus::Revoked {
        return Err(VerifyError::KeyRevoked { kid: kid.clone() });
    }
    if !key.verifies(&decoded.payload, &decoded.signature) {
        return Err(VerifyError::SignatureInvalid { kid: kid.clone() });
    }
    if decoded.claims.v != CREDENTIAL_VERSION {
        return Err(VerifyError::VersionUnsupported {
            kid: kid.clone(),
            v: decoded.claims.v,
        });
    }
    Ok(())
}

/// Parses a credential time: RFC 3339 UTC with `Z` and whole seconds, `2026-11-23T10:00:00Z`.
pub fn parse_time(text: &str) -> Option<SystemTime> {
    let b = text.as_bytes();
    let shape_ok = b.len() == 20
        && b.iter().enumerate().all(|(i, &c)| match i {
            4 | 7 => c == b'-',
            10 => c == b'T',
            13 | 16 => c == b':',
            19 => c == b'Z',
            _ => c.is_ascii_digit(),
        });
    // A leap second has no single SystemTime, so it would not round-trip.
    if !shape_ok || &b[17..19] == b"60" {
        return None;
    }
    humantime::parse_rfc3339(text).ok()
}

/// Formats a credential time, truncated to whole seconds.
pub fn format_time(time: SystemTime) -> Result<String, TimeOutOfRange> {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .map_err(|_| TimeOutOfRange(time))?
        .as_secs();
    if secs >= YEAR_10000 {
        return Err(TimeOutOfRange(time));
    }
    let whole = UNIX_EPOCH + Duration::from_secs(secs);
    Ok(humantime::format_rfc3339_seconds(whole).to_string())
}

fn malformed(detail: impl Into<String>) -> VerifyError {
    VerifyError::Malformed {
        detail: detail.into(),
    }
}

fn decode_part(name: &str, text: &str) -> Result<Vec<u8>, VerifyError> {
    if text.is_empty() {
        return Err(malformed(format!("its {name} part is empty")));
    }
    if text.contains('=') {
        return Err(malformed(format!(
            "its {name} part has base64 padding, which approval-credentials-v1 forbids"
        )));
    }
    URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|e| malformed(format!("its {name} part is not base64url ({e})")))
}

fn parse_claims(payload: &[u8]) -> Result<Claims, VerifyError> {
    let UniqueObject(mut object) = serde_json::from_slice(payload).map_err(|e| {
        // The parser's message may quote the payload, so it is bounded like any echo.
        malformed(format!(
            "its payload is not a JSON object ({})",
            echo(&e.to_string())
        ))
    })?;
    let v = match object.get("v") {
        None => return Err(missing("v")),
        Some(value) => value
            .as_u64()
            .ok_or_else(|| ill_typed("v", "an unsigned integer"))?,
    };
    let issued_at = take_time(&mut object, "issued_at")?;
    let expires_at = take_time(&mut object, "expires_at")?;
    // A validity window that ends before it starts is not a credential anyone issued on
    // purpose; without this check it would be admitted for the clock skew.
    if expires_at <= issued_at {
        return Err(malformed(
            "its `expires_at` is not after its `issued_at`, so it is never valid",
        ));
    }
    Ok(Claims {
        v,
        kid: take_string(&mut object, "kid")?,
        org_id: take_string(&mut object, "org_id")?,
        project_id: take_string(&mut object, "project_id")?,
        environment_id: take_string(&mut object, "environment_id")?,
        environment_posture: take_string(&mut object, "environment_posture")?,
        spec_hash: take_string(&mut object, "spec_hash")?,
        capabilities: take_capabilities(&mut object)?,
        issued_at,
        expires_at,
        issued_by: take_string(&mut object, "issued_by")?,
        approval_id: take_string(&mut object, "approval_id")?,
        config_bundle_digest: match object.remove("config_bundle_digest") {
            None | Some(Value::Null) => None,
            Some(Value::String(digest)) => Some(digest),
            Some(_) => return Err(ill_typed("config_bundle_digest", "a string")),
        },
    })
}

fn missing(field: &str) -> VerifyError {
    malformed(format!("its payload has no `{field}` field"))
}

fn ill_typed(field: &str, expected: &str) -> VerifyError {
    malformed(format!("its `{field}` field is not {expected}"))
}

fn take_string(object: &mut Map<String, Value>, field: &str) -> Result<String, VerifyError> {
    match object.remove(field) {
        None => Err(missing(field)),
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(_) => Err(ill_typed(field, "a non-empty string")),
    }
}

fn take_capabilities(object: &mut Map<String, Value>) -> Result<Vec<String>, VerifyError> {
    let Some(value) = object.remove("capabilities") else {
        return Err(missing("capabilities"));
    };
    let Value::Array(items) = value else {
        return Err(ill_typed("capabilities", "an array of strings"));
    };
    items
        .into_iter()
        .map(|item| match item {
            Value::String(s) => Ok(s),
            _ => Err(ill_typed("capabilities", "an array of strings")),
        })
        .collect()
}

fn take_time(object: &mut Map<String, Value>, field: &str) -> Result<SystemTime, VerifyError> {
    let text = take_string(object, field)?;
    parse_time(&text).ok_or_else(|| {
        ill_typed(
            field,
            "an RFC 3339 UTC time with whole seconds such as 2026-11-23T10:00:00Z",
        )
    })
}

/// A JSON object that rejects repeated keys: readers in other languages may pick a different
/// one of two `spec_hash` fields, so a signed payload must not be ambiguous.
struct UniqueObject(Map<String, Value>);

impl<'de> Deserialize<'de> for UniqueObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor;

        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = UniqueObject;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<UniqueObject, A::Error> {
                let mut map = Map::new();
                while let Some(key) = access.next_key::<String>()? {
                    let value: Value = access.next_value()?;
                    if map.contains_key(&key) {
                        return Err(serde::de::Error::custom(format!(
                            "field `{}` appears twice",
                            echo(&key)
                        )));
                    }
                    map.insert(key, value);
                }
                Ok(UniqueObject(map))
            }
        }

        deserializer.deserialize_map(ObjectVisitor)
    }
}

// === impl VerifyError ===

impl VerifyError {
    /// The ErrorInfo reason of SPEC §7.
    pub fn reason(&self) -> Reason {
        match self {
            VerifyError::Malformed { .. } => Reason::CredentialMalformed,
            VerifyError::KeyUnknown { .. } => Reason::SigningKeyUnknown,
            VerifyError::KeyRevoked { .. } => Reason::SigningKeyRevoked,
            VerifyError::SignatureInvalid { .. } => Reason::SignatureInvalid,
            VerifyError::VersionUnsupported { .. } => Reason::CredentialVersionUnsupported,
        }
    }

    /// The key id the credential names, when it could be decoded.
    pub fn kid(&self) -> Option<&str> {
        match self {
            VerifyError::Malformed { .. } => None,
            VerifyError::KeyUnknown { kid }
            | VerifyError::KeyRevoked { kid }
            | VerifyError::SignatureInvalid { kid }
            | VerifyError::VersionUnsupported { kid, .. } => Some(kid),
        }
    }
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VerifyError::Malformed { detail } => write!(
                f,
                "approval credential cannot be decoded because {detail}; attach the credential \
                 exactly as issued"
            ),
            VerifyError::KeyUnknown { kid } => write!(
                f,
                "approval credential is signed with key {}, which is not in the trusted key \
                 set; add the key to the key set and reload, or re-sign with a trusted key",
                echo(kid)
            ),
            VerifyError::KeyRevoked { kid } => write!(
                f,
                "approval credential is signed with revoked key {}; re-issue it with an \
                 active key",
                echo(kid)
            ),
            VerifyError::SignatureInvalid { kid } => write!(
                f,
                "approval credential signature does not verify with key {}; the credential \
                 was altered or signed with another key, so re-issue it",
                echo(kid)
            ),
            VerifyError::VersionUnsupported { kid, v } => write!(
                f,
                "approval credential signed with key {} has version {v} but only version \
                 {CREDENTIAL_VERSION} is supported; re-issue it as approval-credentials-v1",
                echo(kid)
            ),
        }
    }
}

impl std::error::Error for VerifyError {}

#[cfg(test)]
mod tests;
