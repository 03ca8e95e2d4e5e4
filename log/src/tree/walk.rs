//! The recursions of RFC 6962 §2.1.1–2.1.2 over stored subtrees (Go `sumdb/tlog`'s
//! `subTreeIndex`, `leafProof`, `treeProof`): each walk exists twice, once naming the stored
//! hashes it needs and once consuming them in the same order.

use super::{check_count, stored_hash_index};
use crate::{
    LogError,
    hash::{Hash, node_hash, split_point},
};

/// Hashes handed out in the order the `*_indexes` walk asked for them.
pub(super) struct Cursor<'a> {
    hashes: &'a [Hash],
    taken: usize,
}

impl<'a> Cursor<'a> {
    pub(super) fn new(hashes: &'a [Hash]) -> Self {
        Self { hashes, taken: 0 }
    }

    pub(super) fn next(&mut self) -> Result<Hash, LogError> {
        let hash = self
            .hashes
            .get(self.taken)
            .copied()
            .ok_or(LogError::HashCount {
                wanted: self.taken + 1,
                got: self.hashes.len(),
            })?;
        self.taken += 1;
        Ok(hash)
    }

    pub(super) fn finish(self) -> Result<(), LogError> {
        check_count(self.taken, self.hashes.len())
    }
}

/// Largest power of two ≤ `n` (n ≥ 1) and its exponent.
fn complete_subtree(n: u64) -> (u64, u32) {
    let level = 63 - n.leading_zeros();
    (1 << level, level)
}

/// The stored hashes covering leaves `[lo, hi)`: complete subtrees, largest first.
pub(super) fn sub_tree_indexes(mut lo: u64, hi: u64, needed: &mut Vec<u64>) {
    while lo < hi {
        let (k, level) = complete_subtree(hi - lo);
        needed.push(stored_hash_index(level, lo >> level));
        lo += k;
    }
}

pub(super) fn sub_tree_hash(
    mut lo: u64,
    hi: u64,
    cursor: &mut Cursor<'_>,
) -> Result<Hash, LogError> {
    let mut parts = Vec::new();
    while lo < hi {
        let (k, _) = complete_subtree(hi - lo);
        parts.push(cursor.next()?);
        lo += k;
    }
    let mut parts = parts.into_iter().rev();
    let last = parts
        .next()
        .ok_or(LogError::HashCount { wanted: 1, got: 0 })?;
    Ok(parts.fold(last, |right, left| node_hash(&left, &right)))
}

pub(super) fn leaf_proof_indexes(lo: u64, hi: u64, n: u64, needed: &mut Vec<u64>) {
    if lo + 1 == hi {
        return;
    }
    let k = split_point(hi - lo);
    if n < lo + k {
        leaf_proof_indexes(lo, lo + k, n, needed);
        sub_tree_indexes(lo + k, hi, needed);
    } else {
        sub_tree_indexes(lo, lo + k, needed);
        leaf_proof_indexes(lo + k, hi, n, needed);
    }
}

pub(super) fn leaf_proof(
    lo: u64,
    hi: u64,
    n: u64,
    cursor: &mut Cursor<'_>,
    proof: &mut Vec<Hash>,
) -> Result<(), LogError> {
    if lo + 1 == hi {
        return Ok(());
    }
    let k = split_point(hi - lo);
    let sibling = if n < lo + k {
        leaf_proof(lo, lo + k, n, cursor, proof)?;
        sub_tree_hash(lo + k, hi, cursor)?
    } else {
        let sibling = sub_tree_hash(lo, lo + k, cursor)?;
        leaf_proof(lo + k, hi, n, cursor, proof)?;
        sibling
    };
    proof.push(sibling);
    Ok(())
}

pub(super) fn tree_proof_indexes(lo: u64, hi: u64, n: u64, needed: &mut Vec<u64>) {
    if n == hi {
        if lo != 0 {
            sub_tree_indexes(lo, hi, needed);
        }
        return;
    }
    let k = split_point(hi - lo);
    if n <= lo + k {
        tree_proof_indexes(lo, lo + k, n, needed);
        sub_tree_indexes(lo + k, hi, needed);
    } else {
        sub_tree_indexes(lo, lo + k, needed);
        tree_proof_indexes(lo + k, hi, n, needed);
    }
}

pub(super) fn tree_proof(
    lo: u64,
    hi: u64,
    n: u64,
    cursor: &mut Cursor<'_>,
    proof: &mut Vec<Hash>,
) -> Result<(), LogError> {
    if n == hi {
        // The old tree is this whole subtree: the verifier knows its hash only at the top.
        if lo != 0 {
            proof.push(sub_tree_hash(lo, hi, cursor)?);
        }
        return Ok(());
    }
    let k = split_point(hi - lo);
    let sibling = if n <= lo + k {
        tree_proof(lo, lo + k, n, cursor, proof)?;
        sub_tree_hash(lo + k, hi, cursor)?
    } else {
        let sibling = sub_tree_hash(lo, lo + k, cursor)?;
        tree_proof(lo + k, hi, n, cursor, proof)?;
        sibling
    };
    proof.push(sibling);
    Ok(())
}
