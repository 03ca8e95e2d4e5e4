//! Proof verification, the algorithms of RFC 9162 §2.1.3.2 and §2.1.4.2 (they accept exactly
//! RFC 6962's proofs), written apart from the generation in [`crate::tree`].

use crate::{
    LogError,
    hash::{Hash, leaf_hash, node_hash},
};

/// Checks that `entry_hash` is leaf `index` of the tree of `size` whose head is `root`.
pub fn verify_inclusion(
    index: u64,
    size: u64,
    entry_hash: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), LogError> {
    if index >= size {
        return Err(LogError::LeafOutOfRange { index, size });
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut hash = leaf_hash(entry_hash);
    for sibling in proof {
        if snode == 0 {
            return Err(LogError::InclusionMismatch);
        }
        if fnode & 1 == 1 || fnode == snode {
            hash = node_hash(sibling, &hash);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            hash = node_hash(&hash, sibling);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 || hash != *root {
        return Err(LogError::InclusionMismatch);
    }
    Ok(())
}

/// Checks that the tree of `old_size` with head `old_root` is a prefix of the tree of
/// `new_size` with head `new_root`.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), LogError> {
    if old_size == 0 || old_size > new_size {
        return Err(LogError::BadSizes {
            old: old_size,
            new: new_size,
        });
    }
    if old_size == new_size {
        if !proof.is_empty() || old_root != new_root {
            return Err(LogError::ConsistencyMismatch);
        }
        return Ok(());
    }
    let mut path = proof.iter();
    // When the old tree is a complete subtree its head is the proof's implicit first element.
    let first = if old_size.is_power_of_two() {
        *old_root
    } else {
        *path.next().ok_or(LogError::ConsistencyMismatch)?
    };
    let (mut fnode, mut snode) = (old_size - 1, new_size - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut old_hash, mut new_hash) = (first, first);
    for node in path {
        if snode == 0 {
            return Err(LogError::ConsistencyMismatch);
        }
        if fnode & 1 == 1 || fnode == snode {
            old_hash = node_hash(node, &old_hash);
            new_hash = node_hash(node, &new_hash);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            new_hash = node_hash(&new_hash, node);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 || old_hash != *old_root || new_hash != *new_root {
        return Err(LogError::ConsistencyMismatch);
    }
    Ok(())
}
