//! DSSE (Dead Simple Signing Envelope) v1 with Ed25519: the JSON envelope and the
//! pre-authentication encoding the signature covers.

use base64::{Engine, engine::general_purpose::STANDARD};
use serde::{Deserialize, Serialize};

use crate::{
    LogError,
    key::{LogKey, VerifierKey},
};

/// A DSSE envelope as it travels (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The payload's media type.
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    /// The payload, base64.
    pub payload: String,
    /// The signatures over PAE(payloadType, payload).
    pub signatures: Vec<EnvelopeSignature>,
}

/// One signature of an envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeSignature {
    /// Which key signed: the log key's `<name>+<hex key ID>` (see [`dsse_key_id`]).
    #[serde(default)]
    pub keyid: String,
    /// The Ed25519 signature, base64.
    pub sig: String,
}

/// DSSE's pre-authentication encoding: `DSSEv1 <len(type)> <type> <len(body)> <body>`.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut encoded = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    )
    .into_bytes();
    encoded.extend_from_slice(payload);
    encoded
}

/// The DSSE `keyid` of a log key: its signed-note name and key ID, `<name>+<8 hex digits>`.
pub fn dsse_key_id(key: &VerifierKey) -> String {
    format!("{}+{:08x}", key.name(), key.id())
}

/// Signs `payload` of `payload_type` with `key`: the envelope's JSON bytes.
pub fn sign_envelope(
    payload_type: &str,
    payload: &[u8],
    key: &LogKey,
) -> Result<Vec<u8>, LogError> {
    let envelope = Envelope {
        payload_type: payload_type.to_owned(),
        payload: STANDARD.encode(payload),
        signatures: vec![EnvelopeSignature {
            keyid: dsse_key_id(&key.verifier()),
            sig: STANDARD.encode(key.sign(&pae(payload_type, payload))),
        }],
    };
    serde_json::to_vec(&envelope).map_err(|e| LogError::malformed("DSSE envelope", e.to_string()))
}

/// Verifies an envelope's JSON with `key` and returns its payload; the payload type must be
/// `payload_type`. Signatures naming another key ID are ignored; at least one must verify.
pub fn verify_envelope(
    envelope: &[u8],
    payload_type: &str,
    key: &VerifierKey,
) -> Result<Vec<u8>, LogError> {
    const WHAT: &str = "DSSE envelope";
    let envelope: Envelope =
        serde_json::from_slice(envelope).map_err(|e| LogError::malformed(WHAT, e.to_string()))?;
    if envelope.payload_type != payload_type {
        return Err(LogError::malformed(
            WHAT,
            format!(
                "payloadType is {:?}, not {payload_type:?}",
                envelope.payload_type
            ),
        ));
    }
    let payload = STANDARD
        .decode(&envelope.payload)
        .map_err(|e| LogError::malformed(WHAT, format!("payload is not base64: {e}")))?;
    let message = pae(&envelope.payload_type, &payload);
    let keyid = dsse_key_id(key);
    let mut candidates = envelope
        .signatures
        .iter()
        .filter(|s| s.keyid.is_empty() || s.keyid == keyid)
        .peekable();
    if candidates.peek().is_none() {
        return Err(LogError::NotSignedByKey {
            key_name: key.name().to_owned(),
            key_id: key.id(),
        });
    }
    let verified = candidates.any(|s| {
        STANDARD
            .decode(&s.sig)
            .is_ok_and(|sig| key.verifies(&message, &sig))
    });
    if !verified {
        return Err(LogError::BadSignature {
            key_name: key.name().to_owned(),
        });
    }
    Ok(payload)
}
