use sha2::{Digest, Sha256};

use super::*;
use crate::{
    hash::tree_head_of,
    verify::{verify_consistency, verify_inclusion},
};

/// Leaf payloads standing in for entry hashes: SHA-256 of the seq.
fn entries(n: u64) -> Vec<Hash> {
    (1..=n)
        .map(|seq| Sha256::digest(seq.to_be_bytes()).into())
        .collect()
}

fn tree_of(n: u64) -> MemoryHashes {
    let mut tree = MemoryHashes::new();
    tree.append(&entries(n)).unwrap();
    tree
}

// --- an independent, naive RFC 6962 §2.1 implementation over all leaves in memory ---

fn sha(parts: &[&[u8]]) -> Hash {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize().into()
}

fn naive_k(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

fn naive_mth(d: &[Hash]) -> Hash {
    match d.len() {
        0 => sha(&[]),
        1 => sha(&[&[0], &d[0]]),
        n => {
            let k = naive_k(n);
            sha(&[&[1], &naive_mth(&d[..k]), &naive_mth(&d[k..])])
        }
    }
}

fn naive_path(m: usize, d: &[Hash]) -> Vec<Hash> {
    if d.len() == 1 {
        return Vec::new();
    }
    let k = naive_k(d.len());
    if m < k {
        let mut p = naive_path(m, &d[..k]);
        p.push(naive_mth(&d[k..]));
        p
    } else {
        let mut p = naive_path(m - k, &d[k..]);
        p.push(naive_mth(&d[..k]));
        p
    }
}

fn naive_subproof(m: usize, d: &[Hash], b: bool) -> Vec<Hash> {
    let n = d.len();
    if m == n {
        return if b { Vec::new() } else { vec![naive_mth(d)] };
    }
    let k = naive_k(n);
    if m <= k {
        let mut p = naive_subproof(m, &d[..k], b);
        p.push(naive_mth(&d[k..]));
        p
    } else {
        let mut p = naive_subproof(m - k, &d[k..], false);
        p.push(naive_mth(&d[..k]));
        p
    }
}

// --- tests ---

#[test]
fn stored_hash_indexes_round_trip_and_are_dense() {
    let mut expected = 0;
    for n in 0..200u64 {
        assert_eq!(stored_hash_index(0, n), expected, "leaf {n}");
        for level in 0..=n.trailing_ones() {
            let index = stored_hash_index(level, n >> level);
            assert_eq!(split_stored_hash_index(index), (level, n >> level));
        }
        expected += 1 + u64::from(n.trailing_ones());
        assert_eq!(stored_hash_count(n + 1), expected);
    }
}

#[test]
fn roots_match_the_rfc_definition_up_to_17_leaves() {
    assert_eq!(tree_of(0).root().unwrap(), sha(&[]));
    for n in 0..=17 {
        let leaves = entries(n);
        let tree = tree_of(n);
        assert_eq!(tree.root().unwrap(), naive_mth(&leaves), "size {n}");
        assert_eq!(tree_head_of(&leaves), naive_mth(&leaves), "size {n}");
        assert_eq!(tree.stored().len() as u64, stored_hash_count(n));
    }
    // Every smaller tree's head is still readable from the larger tree's stored hashes.
    let big = tree_of(40);
    for n in 0..=40 {
        assert_eq!(
            tree_hash(n, &big).unwrap(),
            naive_mth(&entries(n)),
            "size {n}"
        );
    }
}

#[test]
fn batched_appends_store_the_same_hashes_as_single_ones() {
    let leaves = entries(70);
    let one_by_one = {
        let mut tree = MemoryHashes::new();
        for leaf in &leaves {
            tree.append(std::slice::from_ref(leaf)).unwrap();
        }
        tree
    };
    for batch in [2usize, 3, 7, 16, 33, 70] {
        let mut tree = MemoryHashes::new();
        for chunk in leaves.chunks(batch) {
            tree.append(chunk).unwrap();
        }
        assert_eq!(tree, one_by_one, "batches of {batch}");
    }
}

#[test]
fn append_reads_only_hashes_already_stored() {
    for start in 0..40 {
        for count in 0..12 {
            for index in append_indexes(start, count) {
                assert!(
                    index < stored_hash_count(start),
                    "start {start} count {count}"
                );
            }
        }
    }
    assert!(matches!(
        append_from(3, &entries(1), &[]),
        Err(LogError::HashCount { wanted: 2, got: 0 })
    ));
}

#[test]
fn inclusion_proofs_up_to_33_match_the_rfc_and_verify() {
    let big = tree_of(33);
    for size in 1..=33u64 {
        let leaves = entries(size);
        let root = naive_mth(&leaves);
        for index in 0..size {
            let proof = prove_inclusion(index, size, &big).unwrap();
            assert_eq!(
                proof,
                naive_path(index as usize, &leaves),
                "({index}, {size})"
            );
            let leaf = &leaves[index as usize];
            verify_inclusion(index, size, leaf, &proof, &root).unwrap();
            assert_inclusion_tampering_rejected(index, size, leaf, &proof, &root);
        }
        assert_eq!(
            prove_inclusion(size, size, &big),
            Err(LogError::LeafOutOfRange { index: size, size })
        );
    }
}

fn assert_inclusion_tampering_rejected(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
    root: &Hash,
) {
    let rejected = |index, size, leaf: &Hash, proof: &[Hash], root: &Hash| {
        verify_inclusion(index, size, leaf, proof, root).is_err()
    };
    for i in 0..proof.len() {
        let mut bad = proof.to_vec();
        bad[i][i % 32] ^= 1;
        assert!(rejected(index, size, leaf, &bad, root));
        assert!(rejected(index, size, leaf, &proof[..i], root));
    }
    let mut longer = proof.to_vec();
    longer.push(*root);
    assert!(rejected(index, size, leaf, &longer, root));
    let mut other_leaf = *leaf;
    other_leaf[0] ^= 0x80;
    assert!(rejected(index, size, &other_leaf, proof, root));
    let mut other_root = *root;
    other_root[31] ^= 1;
    assert!(rejected(index, size, leaf, proof, &other_root));
    if size > 1 {
        assert!(rejected((index + 1) % size, size, leaf, proof, root));
    }
}

#[test]
fn consistency_proofs_up_to_33_match_the_rfc_and_verify() {
    let big = tree_of(33);
    let leaves = entries(33);
    for new in 1..=33u64 {
        let new_root = naive_mth(&leaves[..new as usize]);
        for old in 1..=new {
            let old_root = naive_mth(&leaves[..old as usize]);
            let proof = prove_consistency(old, new, &big).unwrap();
            let expected = if old == new {
                Vec::new()
            } else {
                naive_subproof(old as usize, &leaves[..new as usize], true)
            };
            assert_eq!(proof, expected, "({old}, {new})");
            verify_consistency(old, new, &old_root, &new_root, &proof).unwrap();
            assert_consistency_tampering_rejected(old, new, &old_root, &new_root, &proof);
        }
    }
    assert_eq!(
        prove_consistency(0, 3, &big),
        Err(LogError::BadSizes { old: 0, new: 3 })
    );
    assert_eq!(
        prove_consistency(4, 3, &big),
        Err(LogError::BadSizes { old: 4, new: 3 })
    );
}

fn assert_consistency_tampering_rejected(
    old: u64,
    new: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) {
    let rejected = |old_root: &Hash, new_root: &Hash, proof: &[Hash]| {
        verify_consistency(old, new, old_root, new_root, proof).is_err()
    };
    for i in 0..proof.len() {
        let mut bad = proof.to_vec();
        bad[i][(i * 7) % 32] ^= 4;
        assert!(
            rejected(old_root, new_root, &bad),
            "({old}, {new}) element {i}"
        );
        assert!(
            rejected(old_root, new_root, &proof[..i]),
            "({old}, {new}) cut at {i}"
        );
    }
    let mut longer = proof.to_vec();
    longer.push(*new_root);
    assert!(rejected(old_root, new_root, &longer));
    let mut bad_old = *old_root;
    bad_old[0] ^= 1;
    assert!(rejected(&bad_old, new_root, proof));
    let mut bad_new = *new_root;
    bad_new[0] ^= 1;
    assert!(rejected(old_root, &bad_new, proof));
}

#[test]
fn proofs_read_logarithmically_many_hashes() {
    let size = 1_000_003u64;
    for index in [0, 1, 4242, size / 2, size - 1] {
        assert!(inclusion_indexes(index, size).unwrap().len() <= 2 * 20);
    }
    for old in [1, 7, 4096, 999_999] {
        assert!(consistency_indexes(old, size).unwrap().len() <= 3 * 20);
    }
    assert!(tree_hash_indexes(size).len() <= 20);
    assert!(append_indexes(size, 1000).len() <= 20 + 20);
}

#[test]
fn a_short_answer_from_the_reader_is_an_error() {
    let tree = tree_of(9);
    let wanted = inclusion_indexes(2, 9).unwrap();
    let hashes = tree.read_hashes(&wanted).unwrap();
    assert!(matches!(
        inclusion_from(2, 9, &hashes[1..]),
        Err(LogError::HashCount { .. })
    ));
    assert_eq!(
        tree.read_hashes(&[stored_hash_count(9)]),
        Err(LogError::MissingHash {
            index: stored_hash_count(9)
        })
    );
    assert_eq!(
        tree_hash(10, &tree),
        Err(LogError::MissingHash {
            index: stored_hash_index(1, 4)
        })
    );
}
