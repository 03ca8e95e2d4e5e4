//! The audit trail as an RFC 6962 Merkle tree (SPEC §9): leaf `i` is the raw `entry_hash` of
//! the entry with `seq = i + 1`. The writer stores each batch's hashes with its entries (one
//! transaction), so the tree's size is always the chain head's seq; an older trail's tree is
//! built at open. Hashes are append-only, so every read below is consistent by construction:
//! it reads the head once, then only hashes that head already covers.

use std::time::{Duration, SystemTime};

use admission_log::Hash;
use admission_log::hash::leaf_hash;
use admission_log::tree::{
    consistency_from, consistency_indexes, inclusion_from, inclusion_indexes, stored_hash_count,
    stored_hash_index, tree_hash_from, tree_hash_indexes,
};

use super::db::{Db, decode_entry_hash};
use super::{AuditStore, StoreError, StoreOptions};

/// Entries hashed per transaction when building the tree of an existing trail, and per read
/// when verifying it.
const CHUNK: u64 = 10_000;

/// The smallest statement bound a building transaction gets.
const BUILD_TIMEOUT: Duration = Duration::from_secs(30);

/// What [`AuditStore::verify_tree`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TreeReport {
    /// True when every leaf and the root match the entries.
    pub ok: bool,
    /// The tree size checked: the chain head's seq when the check began.
    pub tree_size: u64,
    /// Leaves compared with their entries.
    pub leaves_checked: u64,
    /// The first leaf index (seq − 1) whose stored hash is missing or disagrees.
    pub first_bad_leaf: Option<u64>,
    /// What disagrees, one sentence; empty when ok.
    pub problem: String,
}

// === impl AuditStore ===

impl AuditStore {
    /// The tree as the trail stands: (tree size = head seq, root hash).
    pub async fn tree_head(&self) -> Result<(u64, [u8; 32]), StoreError> {
        let size = self.inner.db.tree_size().await?;
        Ok((size, self.root_of(size).await?))
    }

    /// The root of the tree of the first `size` leaves; `size` ≤ tree size.
    pub async fn tree_root(&self, size: u64) -> Result<[u8; 32], StoreError> {
        self.within_tree("tree_size", size).await?;
        self.root_of(size).await
    }

    /// RFC 6962 inclusion proof of leaf `index` (= seq − 1) in the tree of `size`.
    pub async fn inclusion_proof(
        &self,
        index: u64,
        size: u64,
    ) -> Result<Vec<[u8; 32]>, StoreError> {
        self.within_tree("tree_size", size).await?;
        if index >= size {
            let description = format!("is {index}, not below the tree size {size}");
            return Err(invalid("leaf_index", description));
        }
        let indexes = inclusion_indexes(index, size).map_err(corrupt)?;
        let hashes = self.inner.db.read_hashes(&indexes).await?;
        inclusion_from(index, size, &hashes).map_err(corrupt)
    }

    /// RFC 6962 consistency proof from `old` to `new`.
    pub async fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<[u8; 32]>, StoreError> {
        self.within_tree("new_size", new).await?;
        if old == 0 {
            return Err(invalid("old_size", "must be at least 1".to_owned()));
        }
        if old > new {
            return Err(invalid(
                "old_size",
                format!("is {old}, above new_size {new}"),
            ));
        }
        let indexes = consistency_indexes(old, new).map_err(corrupt)?;
        let hashes = self.inner.db.read_hashes(&indexes).await?;
        consistency_from(old, new, &hashes).map_err(corrupt)
    }

    /// Stores a signed checkpoint note of `tree_size` (idempotent for the same size).
    pub async fn save_checkpoint(&self, tree_size: u64, note: &str) -> Result<(), StoreError> {
        self.within_tree("tree_size", tree_size).await?;
        let now = SystemTime::now();
        self.inner.db.save_checkpoint(tree_size, note, now).await
    }

    /// The newest stored checkpoint: (tree_size, note, created_at).
    pub async fn latest_checkpoint(&self) -> Result<Option<(u64, String, SystemTime)>, StoreError> {
        self.inner.db.latest_checkpoint().await
    }

    /// The leaf index (seq − 1) and entry_hash of the entry whose entry_id is `decision_id`.
    pub async fn leaf_of(&self, decision_id: &str) -> Result<Option<(u64, String)>, StoreError> {
        let position = self.inner.db.entry_position(decision_id).await?;
        Ok(position.map(|(seq, entry_hash)| (seq.saturating_sub(1), entry_hash)))
    }

    /// Recomputes every leaf hash from the entries, in chunks, and compares them with the
    /// stored level-0 hashes, then the root they make with the stored root.
    pub async fn verify_tree(&self) -> Result<TreeReport, StoreError> {
        let db = &self.inner.db;
        let size = db.tree_size().await?;
        let mut walk = LeafWalk::new(size);
        let mut lo = 0;
        while lo < size && walk.report.ok {
            let hi = size.min(lo + CHUNK);
            walk.check(db, lo, hi).await?;
            lo = hi;
        }
        if walk.report.ok {
            let indexes = tree_hash_indexes(size);
            let found = db.find_hashes(&indexes).await?;
            let stored: Option<Vec<Hash>> = indexes.iter().map(|i| found.get(i).copied()).collect();
            let stored_root = stored.and_then(|hashes| tree_hash_from(size, &hashes).ok());
            if stored_root != Some(walk.root()) {
                walk.fail(
                    size.saturating_sub(1),
                    "the stored root differs from the entries' root",
                );
            }
        }
        Ok(walk.report)
    }

    /// `InvalidInput` naming `field` when `size` is beyond the tree as it stands.
    async fn within_tree(&self, field: &'static str, size: u64) -> Result<(), StoreError> {
        let tree_size = self.inner.db.tree_size().await?;
        if size > tree_size {
            let description = format!("is {size}, beyond the tree size {tree_size}");
            return Err(invalid(field, description));
        }
        Ok(())
    }

    async fn root_of(&self, size: u64) -> Result<Hash, StoreError> {
        let hashes = self.inner.db.read_hashes(&tree_hash_indexes(size)).await?;
        tree_hash_from(size, &hashes).map_err(corrupt)
    }
}

/// Builds whatever part of the tree an existing trail lacks (a trail written before the tree,
/// or one whose newest hashes were lost), `CHUNK` entries per transaction, each under the chain
/// lock the writer takes, so instances starting together share the work instead of repeating
/// it. Costs one statement when the tree is complete.
pub(super) async fn complete(db: &Db, options: &StoreOptions) -> Result<(), sqlx::Error> {
    let (head, stored) = db.tree_state().await?;
    if stored >= stored_hash_count(head) {
        return Ok(());
    }
    tracing::info!(
        head,
        stored,
        "building the audit tree of the existing trail"
    );
    loop {
        let mut tx = db
            .begin_write(options.durable_timeout.max(BUILD_TIMEOUT))
            .await?;
        let (head, stored) = tx.tree_progress().await?;
        let leaves = complete_leaves(stored, head);
        if leaves == head && stored == stored_hash_count(head) {
            tx.rollback().await?;
            tracing::info!(head, "audit tree is complete");
            return Ok(());
        }
        tx.extend_tree(leaves, head.min(leaves + CHUNK)).await?;
        tx.commit().await?;
    }
}

/// The most leaves, at most `head`, whose stored hashes all fit in the first `stored`.
fn complete_leaves(stored: u64, head: u64) -> u64 {
    let (mut lo, mut hi) = (0, head);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if stored_hash_count(mid) <= stored {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    lo
}

/// The leaves recomputed so far, as the roots of their complete subtrees (largest first).
struct LeafWalk {
    frontier: Vec<(u64, Hash)>,
    report: TreeReport,
}

impl LeafWalk {
    fn new(tree_size: u64) -> Self {
        let report = TreeReport {
            ok: true,
            tree_size,
            leaves_checked: 0,
            first_bad_leaf: None,
            problem: String::new(),
        };
        Self {
            frontier: Vec::new(),
            report,
        }
    }

    /// Compares leaves `lo..hi` with the entries of seq `lo + 1 ..= hi`.
    async fn check(&mut self, db: &Db, lo: u64, hi: u64) -> Result<(), StoreError> {
        let entries = db.entry_hashes(lo, hi).await?;
        let first = stored_hash_index(0, lo);
        let stored: std::collections::HashMap<u64, Hash> = db
            .hashes_between(first, stored_hash_index(0, hi - 1) + 1)
            .await?
            .into_iter()
            .collect();
        for index in lo..hi {
            let entry = entries.get((index - lo) as usize);
            let Some((seq, entry_hash)) = entry.filter(|(seq, _)| *seq == index + 1) else {
                self.fail(index, "the entry of this leaf is missing");
                return Ok(());
            };
            let Ok(entry_hash) = decode_entry_hash(entry_hash) else {
                self.fail(index, "the entry's entry_hash is not 64 hex digits");
                return Ok(());
            };
            let leaf = leaf_hash(&entry_hash);
            match stored.get(&stored_hash_index(0, index)) {
                Some(hash) if *hash == leaf => self.push(leaf),
                Some(_) => {
                    let problem = format!("the stored leaf hash differs from entry seq {seq}");
                    self.fail(index, &problem);
                    return Ok(());
                }
                None => {
                    self.fail(index, "the stored leaf hash is missing");
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    fn push(&mut self, leaf: Hash) {
        let mut node = (1, leaf);
        while let Some(&(size, left)) = self.frontier.last() {
            if size != node.0 {
                break;
            }
            self.frontier.pop();
            node = (2 * size, admission_log::node_hash(&left, &node.1));
        }
        self.frontier.push(node);
        self.report.leaves_checked += 1;
    }

    fn root(&self) -> Hash {
        let mut parts = self.frontier.iter().rev().map(|(_, hash)| *hash);
        let Some(last) = parts.next() else {
            return admission_log::empty_root();
        };
        parts.fold(last, |right, left| admission_log::node_hash(&left, &right))
    }

    fn fail(&mut self, leaf: u64, problem: &str) {
        self.report.ok = false;
        self.report.first_bad_leaf = Some(leaf);
        self.report.problem = problem.to_owned();
    }
}

fn invalid(field: &'static str, description: String) -> StoreError {
    StoreError::InvalidInput { field, description }
}

/// Stored hashes the tree's own arithmetic cannot use: logged, and INTERNAL to the caller.
fn corrupt(error: admission_log::LogError) -> StoreError {
    tracing::error!(%error, "audit tree hashes are inconsistent");
    StoreError::Corrupt
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn complete_leaves_is_the_largest_tree_the_stored_hashes_hold() {
        for head in 0..40u64 {
            for stored in 0..=stored_hash_count(head) {
                let leaves = complete_leaves(stored, head);
                assert!(stored_hash_count(leaves) <= stored);
                assert!(leaves == head || stored_hash_count(leaves + 1) > stored);
            }
        }
    }
}
