//! What the tree costs per admission, without a database: appends leaves in group-commit-sized
//! batches (computing every stored hash to write) and then proves inclusion and consistency,
//! printing the time per leaf and per proof and the stored hashes per leaf.
//!
//! Usage: `cargo run --release -p admission-log --example append_cost -- [LEAVES] [BATCH]`

use std::time::Instant;

use admission_log::{
    Hash, LogError, MemoryHashes,
    tree::{consistency_indexes, inclusion_indexes, prove_consistency, prove_inclusion},
};

fn main() -> Result<(), LogError> {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<u64>());
    let leaves = args.next().and_then(Result::ok).unwrap_or(1_000_000);
    let batch = args.next().and_then(Result::ok).unwrap_or(64).max(1);
    let entries: Vec<Hash> = (0..leaves)
        .map(|i| {
            let mut hash = [0u8; 32];
            hash[..8].copy_from_slice(&i.to_be_bytes());
            hash
        })
        .collect();

    let mut tree = MemoryHashes::new();
    let started = Instant::now();
    // usize holds the batch size: it came from the command line as a count of leaves.
    for chunk in entries.chunks(usize::try_from(batch).unwrap_or(64)) {
        tree.append(chunk)?;
    }
    let append = started.elapsed();
    let root = tree.root()?;

    let samples = 10_000u64;
    let started = Instant::now();
    let mut path_len = 0;
    for i in 0..samples {
        path_len += prove_inclusion((i * 7919) % leaves, leaves, &tree)?.len();
    }
    let inclusion = started.elapsed();
    let started = Instant::now();
    for i in 1..=samples {
        prove_consistency((i * 104_729) % leaves + 1, leaves, &tree)?;
    }
    let consistency = started.elapsed();

    println!(
        "leaves: {leaves}, batch: {batch}, root: {}",
        hex::encode(root)
    );
    println!(
        "append: {:.0} ns per leaf, {:.2} stored hashes per leaf",
        append.as_nanos() as f64 / leaves as f64,
        tree.stored().len() as f64 / leaves as f64
    );
    println!(
        "inclusion proof: {:.1} us, {:.1} hashes, {} reads at most",
        inclusion.as_nanos() as f64 / samples as f64 / 1000.0,
        path_len as f64 / samples as f64,
        inclusion_indexes(leaves / 2, leaves)?.len()
    );
    println!(
        "consistency proof: {:.1} us, {} reads for ({}, {leaves})",
        consistency.as_nanos() as f64 / samples as f64 / 1000.0,
        consistency_indexes(leaves / 3, leaves)?.len(),
        leaves / 3
    );
    Ok(())
}
