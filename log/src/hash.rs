//! RFC 6962 §2.1 hashing: leaves and interior nodes are domain-separated SHA-256.

use sha2::{Digest, Sha256};

/// A SHA-256 value: a leaf's payload, a leaf hash, a node hash or a tree head.
pub type Hash = [u8; 32];

/// The tree head of the empty tree: SHA-256 of the empty string (RFC 6962 §2.1).
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The leaf hash of one entry: SHA-256(0x00 || entry_hash).
pub fn leaf_hash(entry_hash: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x00]);
    hasher.update(entry_hash);
    hasher.finalize().into()
}

/// The hash of an interior node: SHA-256(0x01 || left || right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x01]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// The largest power of two strictly smaller than `n` (n ≥ 2): RFC 6962's split point `k`.
pub(crate) fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// The tree head of `leaves` computed directly from RFC 6962 §2.1's MTH definition, holding
/// every leaf in memory: for small trees and for checking the stored-hash path.
pub fn tree_head_of(entry_hashes: &[Hash]) -> Hash {
    match entry_hashes.len() {
        0 => empty_root(),
        1 => leaf_hash(&entry_hashes[0]),
        n => {
            // n fits in u64 on every supported target; the split is < n, so it fits in usize.
            let k = split_point(n as u64) as usize;
            node_hash(
                &tree_head_of(&entry_hashes[..k]),
                &tree_head_of(&entry_hashes[k..]),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_point_is_the_largest_power_of_two_below() {
        let cases = [
            (2, 1),
            (3, 2),
            (4, 2),
            (5, 4),
            (8, 4),
            (9, 8),
            (17, 16),
            (1 << 40, 1 << 39),
        ];
        for (n, k) in cases {
            assert_eq!(split_point(n), k, "n = {n}");
        }
    }

    #[test]
    fn empty_root_is_sha256_of_nothing() {
        assert_eq!(
            hex::encode(empty_root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
