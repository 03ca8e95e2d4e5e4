//! The admission trail as a transparency log, with no I/O of its own.
//!
//! - [`hash`]: RFC 6962 leaf and node hashing; leaf `i` is the raw `entry_hash` of `seq = i + 1`.
//! - [`tree`]: the tree as append-only "stored hashes" (Go `sumdb/tlog` layout), what to store
//!   per append, and tree heads, inclusion and consistency proofs in O(log n) reads.
//! - [`verify`]: RFC 9162 §2.1.3–2.1.4 proof verification.
//! - [`key`], [`note`], [`checkpoint`]: the Ed25519 log key, C2SP signed-note and
//!   tlog-checkpoint.
//! - [`dsse`], [`receipt`]: DSSE envelopes and the in-toto admission receipt.
#![forbid(unsafe_code)]

pub mod checkpoint;
pub mod dsse;
mod error;
pub mod hash;
pub mod key;
pub mod note;
pub mod receipt;
pub mod tree;
pub mod verify;

pub use checkpoint::{Checkpoint, verify_checkpoint_consistency};
pub use error::LogError;
pub use hash::{Hash, empty_root, leaf_hash, node_hash, tree_head_of};
pub use key::{LogKey, VerifierKey};
pub use receipt::{ReceiptFacts, Statement, sign_receipt, verify_receipt};
pub use tree::{HashReader, MemoryHashes};
pub use verify::{verify_consistency, verify_inclusion};

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
