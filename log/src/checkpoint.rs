//! C2SP tlog-checkpoint: `<origin>\n<decimal tree size>\n<base64 root hash>\n`, optionally
//! followed by extension lines, signed as a signed note by the log key.

use base64::{Engine, engine::general_purpose::STANDARD};

use crate::{
    LogError,
    hash::Hash,
    key::{LogKey, VerifierKey},
    note::{open_note, sign_note},
    verify::verify_consistency,
};

/// A checkpoint body: which log, how many leaves, and the tree head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's origin line (the log key's name).
    pub origin: String,
    /// The number of leaves.
    pub tree_size: u64,
    /// The RFC 6962 tree head.
    pub root_hash: Hash,
    /// Extension lines after the root hash, without their newlines (none are written).
    pub extensions: Vec<String>,
}

// === impl Checkpoint ===

impl Checkpoint {
    /// The checkpoint of `origin` at `tree_size` leaves with head `root_hash`.
    pub fn new(origin: &str, tree_size: u64, root_hash: Hash) -> Result<Checkpoint, LogError> {
        if origin.is_empty() || origin.contains('\n') {
            return Err(LogError::malformed(
                "checkpoint",
                "the origin is empty or holds a newline",
            ));
        }
        Ok(Checkpoint {
            origin: origin.to_owned(),
            tree_size,
            root_hash,
            extensions: Vec::new(),
        })
    }

    /// The body text.
    pub fn body(&self) -> String {
        let mut body = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.tree_size,
            STANDARD.encode(self.root_hash)
        );
        for line in &self.extensions {
            body.push_str(line);
            body.push('\n');
        }
        body
    }

    /// Parses a body (the text of a checkpoint note).
    pub fn parse_body(text: &str) -> Result<Checkpoint, LogError> {
        const WHAT: &str = "checkpoint";
        let lines = text
            .strip_suffix('\n')
            .ok_or_else(|| LogError::malformed(WHAT, "it does not end in a newline"))?;
        let mut lines = lines.split('\n');
        let (Some(origin), Some(size), Some(root)) = (lines.next(), lines.next(), lines.next())
        else {
            return Err(LogError::malformed(
                WHAT,
                "expected origin, tree size and root hash lines",
            ));
        };
        let canonical = size == "0" || !size.starts_with('0');
        if size.is_empty() || !canonical || !size.bytes().all(|b| b.is_ascii_digit()) {
            return Err(LogError::malformed(
                WHAT,
                format!("tree size {size:?} is not a decimal"),
            ));
        }
        let tree_size = size
            .parse()
            .map_err(|e| LogError::malformed(WHAT, format!("tree size {size:?}: {e}")))?;
        let root_hash = STANDARD
            .decode(root)
            .ok()
            .and_then(|bytes| Hash::try_from(bytes).ok())
            .ok_or_else(|| LogError::malformed(WHAT, "the root hash is not 32 bytes of base64"))?;
        let mut checkpoint = Checkpoint::new(origin, tree_size, root_hash)?;
        checkpoint.extensions = lines.map(str::to_owned).collect();
        if checkpoint.extensions.iter().any(String::is_empty) {
            return Err(LogError::malformed(WHAT, "an extension line is empty"));
        }
        Ok(checkpoint)
    }

    /// The signed note of this checkpoint by `key`; the origin must be the key's name.
    pub fn sign(&self, key: &LogKey) -> Result<String, LogError> {
        if self.origin != key.name() {
            return Err(LogError::malformed(
                "checkpoint",
                format!(
                    "origin {:?} is not the log key's name {:?}",
                    self.origin,
                    key.name()
                ),
            ));
        }
        sign_note(&self.body(), key)
    }

    /// Verifies a checkpoint note with `key` and parses it; its origin must be the key's name.
    pub fn open(note: &str, key: &VerifierKey) -> Result<Checkpoint, LogError> {
        let checkpoint = Checkpoint::parse_body(&open_note(note, key)?)?;
        if checkpoint.origin != key.name() {
            return Err(LogError::malformed(
                "checkpoint",
                format!(
                    "origin {:?} is not the log key's name {:?}",
                    checkpoint.origin,
                    key.name()
                ),
            ));
        }
        Ok(checkpoint)
    }
}

/// Verifies that the log grew from the `saved` checkpoint note to the `latest` one without
/// rewriting anything: both signed by `key`, same origin, no shrinking, and `proof` joins them.
/// Returns both checkpoints.
pub fn verify_checkpoint_consistency(
    saved: &str,
    latest: &str,
    key: &VerifierKey,
    proof: &[Hash],
) -> Result<(Checkpoint, Checkpoint), LogError> {
    let old = Checkpoint::open(saved, key)?;
    let new = Checkpoint::open(latest, key)?;
    if old.tree_size == 0 {
        // Every tree extends the empty one; there is nothing to prove.
        if !proof.is_empty() {
            return Err(LogError::ConsistencyMismatch);
        }
        return Ok((old, new));
    }
    verify_consistency(
        old.tree_size,
        new.tree_size,
        &old.root_hash,
        &new.root_hash,
        proof,
    )?;
    Ok((old, new))
}
