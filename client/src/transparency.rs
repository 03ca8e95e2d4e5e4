//! Offline checks of the audit log's transparency artefacts, from the log's public key alone:
//! admission receipts, and that a saved checkpoint is a prefix of a newer one (`audit verify
//! --since-checkpoint`) or contains a decision (`audit prove`).

use std::path::Path;

pub use admission_log::{
    Checkpoint, LogError, Statement, VerifierKey, receipt::AdmissionPredicate,
};
use admission_log::{
    Hash, LogKey, verify_checkpoint_consistency, verify_inclusion, verify_receipt,
};

use crate::pb;

/// Why an offline check failed: the input could not be used, or it does not verify.
#[derive(Debug, thiserror::Error)]
pub enum TransparencyError {
    /// A file could not be read, or is not what it should be (a key, a checkpoint).
    #[error("{0}")]
    Input(String),
    /// The artefact does not verify against the key or the other artefact.
    #[error("{0}")]
    Invalid(#[from] LogError),
}

/// Reads a `log.pub` file: one signed-note verifier key line.
pub fn read_verifier_key(path: &Path) -> Result<VerifierKey, TransparencyError> {
    let text = read_text(path)?;
    VerifierKey::parse(&text)
        .map_err(|e| TransparencyError::Input(format!("{}: {e}", path.display())))
}

/// Reads a saved checkpoint note and opens it with `key`. An unreadable or malformed file (or
/// one of another log) is [`TransparencyError::Input`]; a signature that fails is `Invalid`.
pub fn read_checkpoint(
    path: &Path,
    key: &VerifierKey,
) -> Result<(String, Checkpoint), TransparencyError> {
    let note = read_text(path)?;
    match Checkpoint::open(&note, key) {
        Ok(checkpoint) => Ok((note, checkpoint)),
        Err(error @ LogError::Malformed { .. }) => Err(TransparencyError::Input(format!(
            "{}: {error}",
            path.display()
        ))),
        Err(error) => Err(TransparencyError::Invalid(error)),
    }
}

/// Opens an `Audit.GetCheckpoint` answer with `key`: its note must verify, and its
/// `tree_size` and `root_hash` fields must say what the note says.
pub fn open_checkpoint(
    answer: &pb::Checkpoint,
    key: &VerifierKey,
) -> Result<Checkpoint, TransparencyError> {
    let checkpoint = Checkpoint::open(&answer.note, key)?;
    check_fields_match_note(answer, &checkpoint)?;
    Ok(checkpoint)
}

/// The `log.pub` line (with its newline) of the log key in `pem` (PKCS#8 Ed25519) named
/// `origin`: what auditors verify checkpoints and receipts with.
pub fn log_pub_line(pem: &str, origin: &str) -> Result<String, LogError> {
    Ok(LogKey::from_pkcs8_pem(origin, pem)?
        .verifier()
        .to_pub_file())
}

/// A receipt's `entry_hash` as 64 hex digits, with or without a `sha256:` prefix.
pub fn receipt_entry_hash(statement: &Statement) -> &str {
    admission_contract::hash::bare_hash(&statement.predicate.entry_hash)
}

/// Checks that a verified receipt is about the entry `proof` proves for `decision_id`: the
/// same decision, leaf index and entry hash. Returns the leaf (64 hex) to prove.
pub fn check_receipt_against_proof(
    statement: &Statement,
    decision_id: &str,
    proof: &pb::InclusionProof,
) -> Result<String, TransparencyError> {
    let predicate = &statement.predicate;
    let leaf = receipt_entry_hash(statement).to_owned();
    let proved = hex::encode(&proof.entry_hash);
    let problem = if predicate.decision_id != decision_id {
        format!("the receipt is for decision {}", predicate.decision_id)
    } else if predicate.log_index != proof.leaf_index {
        format!(
            "the receipt names log index {}, the service proves leaf {}",
            predicate.log_index, proof.leaf_index
        )
    } else if !proof.entry_hash.is_empty() && proved != leaf {
        format!("the receipt names entry_hash {leaf}, the service proves {proved}")
    } else {
        return Ok(leaf);
    };
    Err(TransparencyError::Input(problem))
}

/// Verifies a receipt (DSSE envelope JSON) with `key`; with `spec_kv`, also that it is about
/// those bytes. Returns its statement.
pub fn check_receipt(
    receipt: &[u8],
    key: &VerifierKey,
    spec_kv: Option<&[u8]>,
) -> Result<Statement, TransparencyError> {
    Ok(verify_receipt(receipt, key, spec_kv)?)
}

/// Verifies that the log grew from the `saved` checkpoint note to `latest` (as the service
/// answers `Audit.GetCheckpoint`) by `proof` (its `Audit.ProveConsistency` answer from the
/// saved size to the latest size). Returns both checkpoints, oldest first.
pub fn check_since_checkpoint(
    saved: &str,
    latest: &pb::Checkpoint,
    proof: &pb::ConsistencyProof,
    key: &VerifierKey,
) -> Result<(Checkpoint, Checkpoint), TransparencyError> {
    let hashes = raw_hashes(&proof.hashes, "ConsistencyProof.hashes")?;
    let (old, new) = verify_checkpoint_consistency(saved, &latest.note, key, &hashes)?;
    check_fields_match_note(latest, &new)?;
    Ok((old, new))
}

/// Verifies that the entry `seq` with `entry_hash` (64 hex, bare as `Audit.List` shows it or
/// `sha256:`-prefixed as a receipt's predicate writes it) is in the log of the signed
/// `checkpoint` note, by `proof` (the `Audit.ProveInclusion` answer for seq and the
/// checkpoint's size). Returns the checkpoint.
pub fn check_inclusion(
    seq: u64,
    entry_hash: &str,
    proof: &pb::InclusionProof,
    checkpoint: &str,
    key: &VerifierKey,
) -> Result<Checkpoint, TransparencyError> {
    let checkpoint = Checkpoint::open(checkpoint, key)?;
    let bare = entry_hash
        .strip_prefix(admission_log::receipt::ENTRY_HASH_PREFIX)
        .unwrap_or(entry_hash);
    let leaf: Hash = hex::decode(bare)
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(|| TransparencyError::Input("entry_hash is not 64 hex digits".to_owned()))?;
    let index = seq
        .checked_sub(1)
        .ok_or_else(|| TransparencyError::Input("seq starts at 1".to_owned()))?;
    if proof.leaf_index != index || proof.tree_size != checkpoint.tree_size {
        return Err(TransparencyError::Input(format!(
            "the proof is for leaf {} of {} entries, not leaf {index} of the checkpoint's {}",
            proof.leaf_index, proof.tree_size, checkpoint.tree_size
        )));
    }
    let hashes = raw_hashes(&proof.hashes, "InclusionProof.hashes")?;
    verify_inclusion(
        index,
        checkpoint.tree_size,
        &leaf,
        &hashes,
        &checkpoint.root_hash,
    )?;
    Ok(checkpoint)
}

/// The `tree_size` and `root_hash` fields of a checkpoint answer must say what its note says.
fn check_fields_match_note(
    answer: &pb::Checkpoint,
    note: &Checkpoint,
) -> Result<(), TransparencyError> {
    if answer.tree_size != note.tree_size || answer.root_hash != note.root_hash {
        return Err(TransparencyError::Input(
            "the checkpoint's tree_size or root_hash disagrees with its signed note".to_owned(),
        ));
    }
    Ok(())
}

/// Proof hashes off the wire: each exactly 32 bytes.
fn raw_hashes(hashes: &[Vec<u8>], field: &str) -> Result<Vec<Hash>, TransparencyError> {
    hashes
        .iter()
        .enumerate()
        .map(|(i, hash)| {
            Hash::try_from(hash.as_slice()).map_err(|_| {
                TransparencyError::Input(format!("{field}[{i}] is {} bytes, not 32", hash.len()))
            })
        })
        .collect()
}

fn read_text(path: &Path) -> Result<String, TransparencyError> {
    std::fs::read_to_string(path)
        .map_err(|e| TransparencyError::Input(format!("cannot read {}: {e}", path.display())))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
