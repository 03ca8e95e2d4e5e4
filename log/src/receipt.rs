//! Admission receipts: an in-toto Statement v1 about one admitted decision, in a DSSE envelope
//! signed with the log key. The predicate borrows SLSA Verification Summary Attestation's
//! `verifier`, `timeVerified` and `verificationResult` so VSA-aware policy engines read it.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{
    LogError,
    dsse::{sign_envelope, verify_envelope},
    key::{LogKey, VerifierKey},
};

/// The in-toto Statement v1 type.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// The DSSE payload type of an in-toto statement.
pub const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// The predicate type of an admission receipt.
pub const PREDICATE_TYPE: &str = "https://byteor.dev/admission/v1";
/// The subject name of the spec.
pub const SUBJECT_NAME: &str = "spec.kv";
/// What a predicate's `entry_hash` starts with, before the 64 hex digits.
pub const ENTRY_HASH_PREFIX: &str = "sha256:";
/// `verificationResult` of an admitted decision.
pub const RESULT_PASSED: &str = "PASSED";

/// The facts of one admission a receipt records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptFacts {
    /// The decision id (the audit entry's entry_id).
    pub decision_id: String,
    /// "org/project/env".
    pub environment: String,
    /// The action admitted, e.g. "deploy".
    pub action: String,
    /// The approvals whose credentials admitted it.
    pub approval_ids: Vec<String>,
    /// When it was decided.
    pub decided_at: SystemTime,
    /// The audit entry's seq.
    pub seq: u64,
    /// The audit entry's entry_hash (64 lowercase hex, as the trail stores it).
    pub entry_hash: String,
    /// Whether it was admitted through break-glass.
    pub break_glass: bool,
}

/// An in-toto Statement v1 whose predicate is an admission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Statement {
    /// Always [`STATEMENT_TYPE`].
    #[serde(rename = "_type")]
    pub statement_type: String,
    /// The spec: one subject named [`SUBJECT_NAME`].
    pub subject: Vec<Subject>,
    /// Always [`PREDICATE_TYPE`].
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    /// The decision.
    pub predicate: AdmissionPredicate,
}

/// An in-toto subject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    /// The subject's name.
    pub name: String,
    /// Its digests by algorithm.
    pub digest: SubjectDigest,
}

/// The digests of a subject; receipts carry SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubjectDigest {
    /// Lowercase hex SHA-256.
    pub sha256: String,
}

/// The predicate of an admission receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdmissionPredicate {
    /// The decision id.
    pub decision_id: String,
    /// "org/project/env".
    pub environment: String,
    /// The action admitted.
    pub action: String,
    /// The approvals used.
    pub approval_ids: Vec<String>,
    /// RFC 3339 time of the decision.
    pub decided_at: String,
    /// The entry's leaf index in the log (seq − 1).
    pub log_index: u64,
    /// The entry's entry_hash as `sha256:` + 64 lowercase hex (SPEC's format for hashes): the
    /// leaf an inclusion proof proves.
    pub entry_hash: String,
    /// Whether break-glass admitted it.
    #[serde(default)]
    pub break_glass: bool,
    /// Who decided (VSA `verifier`): the log's origin.
    pub verifier: ReceiptVerifier,
    /// VSA `timeVerified`: the same instant as `decided_at`.
    #[serde(rename = "timeVerified")]
    pub time_verified: String,
    /// VSA `verificationResult`: "PASSED" for an admission.
    #[serde(rename = "verificationResult")]
    pub verification_result: String,
}

/// VSA's `verifier` object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptVerifier {
    /// The deciding service, named by the log origin.
    pub id: String,
}

// === impl AdmissionPredicate ===

impl AdmissionPredicate {
    /// The raw 32 bytes of `entry_hash` (the log's leaf), if it is in the receipt format.
    pub fn entry_hash_bytes(&self) -> Option<[u8; 32]> {
        let hex = self.entry_hash.strip_prefix(ENTRY_HASH_PREFIX)?;
        hex::decode(hex).ok()?.try_into().ok()
    }
}

// === impl Statement ===

impl Statement {
    /// The statement that `spec_kv` was admitted as `facts` by the log of `origin`.
    pub fn new(spec_kv: &[u8], facts: &ReceiptFacts, origin: &str) -> Result<Statement, LogError> {
        Statement::of_spec_sha256(&hex::encode(Sha256::digest(spec_kv)), facts, origin)
    }

    /// The statement that the spec whose SHA-256 is `spec_sha256` (64 lowercase hex) was
    /// admitted as `facts` by the log of `origin`: what a service that keeps only the spec hash
    /// signs.
    pub fn of_spec_sha256(
        spec_sha256: &str,
        facts: &ReceiptFacts,
        origin: &str,
    ) -> Result<Statement, LogError> {
        let log_index = facts
            .seq
            .checked_sub(1)
            .ok_or_else(|| LogError::malformed("receipt", "seq starts at 1"))?;
        if !is_sha256_hex(spec_sha256) {
            return Err(LogError::malformed(
                "receipt",
                "the spec digest is not 64 lowercase hex digits",
            ));
        }
        if !is_sha256_hex(&facts.entry_hash) {
            return Err(LogError::malformed(
                "receipt",
                "entry_hash is not 64 lowercase hex digits",
            ));
        }
        let decided_at = humantime::format_rfc3339_micros(facts.decided_at).to_string();
        Ok(Statement {
            statement_type: STATEMENT_TYPE.to_owned(),
            subject: vec![Subject {
                name: SUBJECT_NAME.to_owned(),
                digest: SubjectDigest {
                    sha256: spec_sha256.to_owned(),
                },
            }],
            predicate_type: PREDICATE_TYPE.to_owned(),
            predicate: AdmissionPredicate {
                decision_id: facts.decision_id.clone(),
                environment: facts.environment.clone(),
                action: facts.action.clone(),
                approval_ids: facts.approval_ids.clone(),
                time_verified: decided_at.clone(),
                decided_at,
                log_index,
                entry_hash: format!("{ENTRY_HASH_PREFIX}{}", facts.entry_hash),
                break_glass: facts.break_glass,
                verifier: ReceiptVerifier {
                    id: origin.to_owned(),
                },
                verification_result: RESULT_PASSED.to_owned(),
            },
        })
    }

    /// The spec's SHA-256 (hex) this statement is about.
    pub fn spec_sha256(&self) -> &str {
        // `check` guarantees exactly one subject on every verified statement.
        self.subject
            .first()
            .map_or("", |s| s.digest.sha256.as_str())
    }

    fn check(&self) -> Result<(), LogError> {
        const WHAT: &str = "receipt statement";
        if self.statement_type != STATEMENT_TYPE {
            return Err(LogError::malformed(
                WHAT,
                format!("_type is {:?}", self.statement_type),
            ));
        }
        if self.predicate_type != PREDICATE_TYPE {
            return Err(LogError::malformed(
                WHAT,
                format!("predicateType is {:?}", self.predicate_type),
            ));
        }
        let [subject] = self.subject.as_slice() else {
            return Err(LogError::malformed(WHAT, "expected exactly one subject"));
        };
        if subject.name != SUBJECT_NAME || !is_sha256_hex(&subject.digest.sha256) {
            return Err(LogError::malformed(
                WHAT,
                "the subject is not spec.kv with a sha256 digest",
            ));
        }
        humantime::parse_rfc3339(&self.predicate.decided_at)
            .map_err(|e| LogError::malformed(WHAT, format!("decided_at: {e}")))?;
        check_entry_hash(&self.predicate.entry_hash)
    }
}

/// The receipt of `statement`: its DSSE envelope (JSON) signed with `key`.
pub fn sign_receipt(statement: &Statement, key: &LogKey) -> Result<Vec<u8>, LogError> {
    let payload = serde_json::to_vec(statement)
        .map_err(|e| LogError::malformed("receipt statement", e.to_string()))?;
    sign_envelope(PAYLOAD_TYPE, &payload, key)
}

/// Verifies a receipt with the log's public key and returns its statement; with `spec_kv`,
/// also checks that the receipt is about exactly those bytes.
pub fn verify_receipt(
    receipt: &[u8],
    key: &VerifierKey,
    spec_kv: Option<&[u8]>,
) -> Result<Statement, LogError> {
    let payload = verify_envelope(receipt, PAYLOAD_TYPE, key)?;
    let statement: Statement = serde_json::from_slice(&payload)
        .map_err(|e| LogError::malformed("receipt statement", e.to_string()))?;
    statement.check()?;
    if let Some(spec_kv) = spec_kv {
        let actual = hex::encode(Sha256::digest(spec_kv));
        if actual != statement.spec_sha256() {
            return Err(LogError::SpecMismatch {
                receipt: statement.spec_sha256().to_owned(),
                actual,
            });
        }
    }
    Ok(statement)
}

/// A predicate's `entry_hash` must be `sha256:` + 64 lowercase hex.
fn check_entry_hash(entry_hash: &str) -> Result<(), LogError> {
    match entry_hash.strip_prefix(ENTRY_HASH_PREFIX) {
        Some(hex) if is_sha256_hex(hex) => Ok(()),
        _ => Err(LogError::malformed(
            "receipt",
            "entry_hash is not sha256: and 64 lowercase hex digits",
        )),
    }
}

fn is_sha256_hex(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}
