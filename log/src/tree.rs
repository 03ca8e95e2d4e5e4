//! The Merkle tree kept as "stored hashes", the layout of Go's `golang.org/x/mod/sumdb/tlog`:
//! every complete subtree's hash gets one dense index, written once, when its last leaf is
//! appended. A store needs only appends (leaf n adds `1 + trailing_ones(n)` hashes), and any
//! tree head or proof of a tree of size t reads O(log t) of them.
//!
//! Each computation comes in two halves so an async store can do the reading itself: `*_indexes`
//! names the stored hashes it needs, `*_from` assembles the answer from them (in that order).
//! The [`HashReader`] wrappers chain the two for a synchronous source.

use std::collections::BTreeMap;

use walk::{
    Cursor, leaf_proof, leaf_proof_indexes, sub_tree_hash, sub_tree_indexes, tree_proof,
    tree_proof_indexes,
};

use crate::{
    LogError,
    hash::{Hash, empty_root, leaf_hash, node_hash},
};

/// A source of stored hashes by index, e.g. a table `(idx, hash)` or [`MemoryHashes`].
pub trait HashReader {
    /// The source's own failure; a malformed answer becomes a [`LogError`].
    type Error: From<LogError>;

    /// The hashes at `indexes`, in the same order.
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, Self::Error>;
}

/// Stored hashes held in memory, dense from index 0: what a store keeps, for tests and tools.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryHashes {
    hashes: Vec<Hash>,
    leaves: u64,
}

// === stored-hash addressing ===

/// The stored index of the hash of the subtree at `level` (2^level leaves) numbered `n`
/// from the left (Go's `StoredHashIndex`).
pub fn stored_hash_index(level: u32, n: u64) -> u64 {
    // Level L's n'th hash is written right after level L+1's (2n+1)'th leaf descendant.
    let mut n = n;
    for _ in 0..level {
        n = 2 * n + 1;
    }
    // Leaf n's hash sits at n + n/2 + n/4 + ... .
    let mut index = 0;
    let mut rest = n;
    while rest > 0 {
        index += rest;
        rest >>= 1;
    }
    index + u64::from(level)
}

/// The `(level, n)` a stored index names: the inverse of [`stored_hash_index`].
pub fn split_stored_hash_index(index: u64) -> (u32, u64) {
    // stored_hash_index(0, n) ≤ 2n, so the leaf committing `index` is at least index / 2.
    let mut n = index / 2;
    let mut index_n = stored_hash_index(0, n);
    loop {
        // Leaf n + 1 starts after leaf n's 1 + trailing_ones(n) hashes.
        let next = index_n + 1 + u64::from(n.trailing_ones());
        if next > index {
            break;
        }
        n += 1;
        index_n = next;
    }
    let level = (index - index_n) as u32;
    (level, n >> level)
}

/// How many stored hashes a tree of `n` leaves has (Go's `StoredHashCount`).
pub fn stored_hash_count(n: u64) -> u64 {
    if n == 0 {
        return 0;
    }
    stored_hash_index(0, n - 1) + 1 + u64::from((n - 1).trailing_ones())
}

// === appending ===

/// The already-stored hashes needed to append `count` leaves to a tree of `start` leaves.
pub fn append_indexes(start: u64, count: u64) -> Vec<u64> {
    let stored = stored_hash_count(start);
    let mut needed = Vec::new();
    for n in start..start.saturating_add(count) {
        for level in 0..n.trailing_ones() {
            let index = stored_hash_index(level, (n >> level) - 1);
            if index < stored {
                needed.push(index);
            }
        }
    }
    needed.sort_unstable();
    needed.dedup();
    needed
}

/// The new stored hashes, `(index, hash)` in index order, when the leaves `entry_hashes` are
/// appended to a tree of `start` leaves; `old` holds the hashes at [`append_indexes`].
pub fn append_from(
    start: u64,
    entry_hashes: &[Hash],
    old: &[Hash],
) -> Result<Vec<(u64, Hash)>, LogError> {
    let count = entry_hashes.len() as u64;
    let wanted = append_indexes(start, count);
    check_count(wanted.len(), old.len())?;
    let mut known: BTreeMap<u64, Hash> = wanted.into_iter().zip(old.iter().copied()).collect();
    let mut written = Vec::new();
    for (n, entry_hash) in (start..).zip(entry_hashes) {
        let mut hash = leaf_hash(entry_hash);
        let mut index = stored_hash_index(0, n);
        written.push((index, hash));
        for level in 0..n.trailing_ones() {
            let left_index = stored_hash_index(level, (n >> level) - 1);
            let left = known
                .get(&left_index)
                .ok_or(LogError::MissingHash { index: left_index })?;
            hash = node_hash(left, &hash);
            index += 1;
            written.push((index, hash));
        }
        known.extend(
            written
                .iter()
                .rev()
                .take(1 + n.trailing_ones() as usize)
                .copied(),
        );
    }
    Ok(written)
}

// === tree heads ===

/// The stored hashes the tree head of `n` leaves is made of.
pub fn tree_hash_indexes(n: u64) -> Vec<u64> {
    let mut needed = Vec::new();
    sub_tree_indexes(0, n, &mut needed);
    needed
}

/// The RFC 6962 tree head of `n` leaves from the hashes at [`tree_hash_indexes`].
pub fn tree_hash_from(n: u64, hashes: &[Hash]) -> Result<Hash, LogError> {
    if n == 0 {
        check_count(0, hashes.len())?;
        return Ok(empty_root());
    }
    let mut cursor = Cursor::new(hashes);
    let head = sub_tree_hash(0, n, &mut cursor)?;
    cursor.finish()?;
    Ok(head)
}

// === proofs ===

/// The stored hashes an inclusion proof of leaf `index` in a tree of `size` is made of.
pub fn inclusion_indexes(index: u64, size: u64) -> Result<Vec<u64>, LogError> {
    if index >= size {
        return Err(LogError::LeafOutOfRange { index, size });
    }
    let mut needed = Vec::new();
    leaf_proof_indexes(0, size, index, &mut needed);
    Ok(needed)
}

/// The RFC 6962 audit path of leaf `index` in a tree of `size` from the hashes at
/// [`inclusion_indexes`].
pub fn inclusion_from(index: u64, size: u64, hashes: &[Hash]) -> Result<Vec<Hash>, LogError> {
    if index >= size {
        return Err(LogError::LeafOutOfRange { index, size });
    }
    let mut cursor = Cursor::new(hashes);
    let mut proof = Vec::new();
    leaf_proof(0, size, index, &mut cursor, &mut proof)?;
    cursor.finish()?;
    Ok(proof)
}

/// The stored hashes a consistency proof from `old` to `new` leaves is made of.
pub fn consistency_indexes(old: u64, new: u64) -> Result<Vec<u64>, LogError> {
    check_sizes(old, new)?;
    let mut needed = Vec::new();
    tree_proof_indexes(0, new, old, &mut needed);
    Ok(needed)
}

/// The RFC 6962 consistency proof from `old` to `new` leaves from the hashes at
/// [`consistency_indexes`].
pub fn consistency_from(old: u64, new: u64, hashes: &[Hash]) -> Result<Vec<Hash>, LogError> {
    check_sizes(old, new)?;
    let mut cursor = Cursor::new(hashes);
    let mut proof = Vec::new();
    tree_proof(0, new, old, &mut cursor, &mut proof)?;
    cursor.finish()?;
    Ok(proof)
}

// === the HashReader wrappers ===

/// The tree head of `n` leaves read from `reader`.
pub fn tree_hash<R: HashReader + ?Sized>(n: u64, reader: &R) -> Result<Hash, R::Error> {
    let hashes = read(reader, &tree_hash_indexes(n))?;
    Ok(tree_hash_from(n, &hashes)?)
}

/// The inclusion proof of leaf `index` in a tree of `size` read from `reader`.
pub fn prove_inclusion<R: HashReader + ?Sized>(
    index: u64,
    size: u64,
    reader: &R,
) -> Result<Vec<Hash>, R::Error> {
    let hashes = read(reader, &inclusion_indexes(index, size)?)?;
    Ok(inclusion_from(index, size, &hashes)?)
}

/// The consistency proof from `old` to `new` leaves read from `reader`.
pub fn prove_consistency<R: HashReader + ?Sized>(
    old: u64,
    new: u64,
    reader: &R,
) -> Result<Vec<Hash>, R::Error> {
    let hashes = read(reader, &consistency_indexes(old, new)?)?;
    Ok(consistency_from(old, new, &hashes)?)
}

/// The stored hashes to write when `entry_hashes` are appended to a tree of `start` leaves.
pub fn stored_hashes_for<R: HashReader + ?Sized>(
    start: u64,
    entry_hashes: &[Hash],
    reader: &R,
) -> Result<Vec<(u64, Hash)>, R::Error> {
    let old = read(reader, &append_indexes(start, entry_hashes.len() as u64))?;
    Ok(append_from(start, entry_hashes, &old)?)
}

fn read<R: HashReader + ?Sized>(reader: &R, indexes: &[u64]) -> Result<Vec<Hash>, R::Error> {
    if indexes.is_empty() {
        return Ok(Vec::new());
    }
    let hashes = reader.read_hashes(indexes)?;
    check_count(indexes.len(), hashes.len())?;
    Ok(hashes)
}

// === impl MemoryHashes ===

impl MemoryHashes {
    /// The empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends leaves (entry hashes, in seq order) and returns the new tree size.
    pub fn append(&mut self, entry_hashes: &[Hash]) -> Result<u64, LogError> {
        let written = stored_hashes_for(self.leaves, entry_hashes, self)?;
        for (index, hash) in written {
            // The layout is dense and append-only: each new index is the next one.
            if index != self.hashes.len() as u64 {
                return Err(LogError::HashCount {
                    wanted: self.hashes.len(),
                    got: index as usize,
                });
            }
            self.hashes.push(hash);
        }
        self.leaves += entry_hashes.len() as u64;
        Ok(self.leaves)
    }

    /// The number of leaves.
    pub fn size(&self) -> u64 {
        self.leaves
    }

    /// The tree head of the whole tree.
    pub fn root(&self) -> Result<Hash, LogError> {
        tree_hash(self.leaves, self)
    }

    /// Every stored hash, index 0 first.
    pub fn stored(&self) -> &[Hash] {
        &self.hashes
    }
}

impl HashReader for MemoryHashes {
    type Error = LogError;

    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, LogError> {
        indexes
            .iter()
            .map(|&index| {
                usize::try_from(index)
                    .ok()
                    .and_then(|i| self.hashes.get(i))
                    .copied()
                    .ok_or(LogError::MissingHash { index })
            })
            .collect()
    }
}

fn check_sizes(old: u64, new: u64) -> Result<(), LogError> {
    if old == 0 || old > new {
        return Err(LogError::BadSizes { old, new });
    }
    Ok(())
}

fn check_count(wanted: usize, got: usize) -> Result<(), LogError> {
    if wanted != got {
        return Err(LogError::HashCount { wanted, got });
    }
    Ok(())
}

mod walk;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
