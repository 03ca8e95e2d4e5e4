//! The crate's one error type.

/// Why a log computation, a parse or a verification failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    /// A proof was asked for a leaf the tree does not have.
    #[error("leaf index {index} is not in a tree of size {size}")]
    LeafOutOfRange {
        /// The leaf index asked for.
        index: u64,
        /// The tree size.
        size: u64,
    },
    /// A consistency proof needs 1 ≤ old ≤ new.
    #[error(
        "no consistency proof from tree size {old} to {new}: sizes must satisfy 1 <= old <= new"
    )]
    BadSizes {
        /// The older size.
        old: u64,
        /// The newer size.
        new: u64,
    },
    /// A hash source answered with the wrong number of hashes.
    #[error("expected {wanted} stored hashes, got {got}")]
    HashCount {
        /// How many were needed.
        wanted: usize,
        /// How many came.
        got: usize,
    },
    /// A stored hash the tree needs is absent.
    #[error("stored hash {index} is missing")]
    MissingHash {
        /// Its stored index.
        index: u64,
    },
    /// An inclusion proof does not lead to the tree head.
    #[error("inclusion proof does not match the tree head")]
    InclusionMismatch,
    /// A consistency proof does not join the two tree heads.
    #[error("consistency proof does not match the two tree heads")]
    ConsistencyMismatch,
    /// Text that should be a signed note, checkpoint, key, envelope or statement is not one.
    #[error("malformed {what}: {detail}")]
    Malformed {
        /// What was being parsed, e.g. "checkpoint", "verifier key".
        what: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// No signature by the expected key is present.
    #[error("no signature by key {key_name} ({key_id:08x})")]
    NotSignedByKey {
        /// The key's name.
        key_name: String,
        /// Its key ID.
        key_id: u32,
    },
    /// A signature by the expected key is present but does not verify.
    #[error("signature by key {key_name} does not verify")]
    BadSignature {
        /// The key's name.
        key_name: String,
    },
    /// The receipt's subject is not the given spec.
    #[error("spec digest mismatch: receipt names sha256 {receipt}, the spec hashes to {actual}")]
    SpecMismatch {
        /// The digest in the receipt.
        receipt: String,
        /// The digest of the spec given.
        actual: String,
    },
    /// The log key could not be loaded or made.
    #[error("log key: {detail}")]
    Key {
        /// What went wrong.
        detail: String,
    },
}

impl LogError {
    pub(crate) fn malformed(what: &'static str, detail: impl Into<String>) -> Self {
        LogError::Malformed {
            what,
            detail: detail.into(),
        }
    }
}
