//! SQL of the Merkle tree: the stored hashes (`audit_tree`, append-only and dense from index 0)
//! and the signed checkpoints (`audit_checkpoints`). A batch's hashes are written by
//! [`WriteTx::append_tree`] in the batch's own transaction, right after its entries.

use std::collections::HashMap;

use admission_log::Hash;
use admission_log::tree::{append_from, append_indexes, stored_hash_count};

use super::args::{Arg, statement_chunks, values};
use super::*;

/// Most bind values in one statement, as for the batch's other tables.
const MAX_BINDS: usize = 30_000;

/// A stored hash row as read.
type HashRow = (i64, Vec<u8>);

/// `SELECT idx, hash FROM audit_tree WHERE idx IN (…)` for `$indexes` on connection `$c`.
macro_rules! select_hashes {
    ($c:expr, $indexes:expr) => {{
        let sql = format!(
            "SELECT idx, hash FROM audit_tree WHERE idx IN {}",
            values(1, $indexes.len(), 1)
        );
        let mut query = sqlx::query_as::<_, HashRow>(&sql);
        for index in $indexes {
            query = query.bind(seq_i64(*index)?);
        }
        query.fetch_all($c).await?
    }};
}

// === impl WriteTx ===

impl WriteTx {
    /// The stored hashes that `entries` (this batch's, chained, in seq order) add to the tree,
    /// from the hashes the append needs: those in `known_hashes` (read with the batch), the rest read
    /// now. None are added to a tree that does not yet cover the entries before the batch
    /// (another instance is still building it from an older trail): that build completes it,
    /// running until it reaches the head.
    pub(in crate::store) async fn tree_writes(
        &mut self,
        entries: &[ChainedEntry],
        known_hashes: &HashMap<u64, Hash>,
    ) -> Result<Vec<(u64, Hash)>, sqlx::Error> {
        let Some(first) = entries.first() else {
            return Ok(Vec::new());
        };
        let start = first.seq - 1;
        let leaves = entries
            .iter()
            .map(|entry| decode_entry_hash(&entry.entry_hash))
            .collect::<Result<Vec<_>, _>>()?;
        let read = tree_reads(start, leaves.len() as u64);
        let (known, missing): (Vec<u64>, Vec<u64>) = read
            .into_iter()
            .partition(|index| known_hashes.contains_key(index));
        let mut found = self.hashes_at(&missing).await?;
        found.extend(known.iter().map(|index| (*index, known_hashes[index])));
        // The tree is dense, so its prefix is complete exactly when its last hash is there.
        let last_before = stored_hash_count(start).checked_sub(1);
        if last_before.is_some_and(|last| !found.contains_key(&last)) {
            tracing::warn!(
                start,
                "audit tree is behind the chain; its build completes it"
            );
            return Ok(Vec::new());
        }
        let needed = append_indexes(start, leaves.len() as u64);
        let old = in_order(&needed, &found)?;
        append_from(start, &leaves, &old).map_err(log_error)
    }

    /// The chain head and how many stored hashes the tree has.
    pub(in crate::store) async fn tree_progress(&mut self) -> Result<(u64, u64), sqlx::Error> {
        let head_seq = self.head().await?.seq;
        let (max,): (Option<i64>,) = self
            .fetch_one("SELECT MAX(idx) FROM audit_tree", &[])
            .await?;
        Ok((head_seq, stored_count(max)))
    }

    /// Extends a tree of `leaves` complete leaves with the entries of seq `leaves + 1 ..= to`,
    /// first dropping any hashes stored beyond those leaves (a partly stored last leaf).
    pub(in crate::store) async fn extend_tree(
        &mut self,
        leaves: u64,
        to: u64,
    ) -> Result<(), sqlx::Error> {
        const ENTRY_HASHES: &str = "SELECT seq, entry_hash FROM audit_entries \
             WHERE seq > $1 AND seq <= $2 ORDER BY seq";
        let range = [Arg::Int(seq_i64(leaves)?), Arg::Int(seq_i64(to)?)];
        let rows: Vec<(i64, String)> = self.fetch_all(ENTRY_HASHES, &range).await?;
        let mut entry_hashes = Vec::with_capacity(rows.len());
        for (expected, (seq, entry_hash)) in (leaves + 1..).zip(&rows) {
            if u64::try_from(*seq).ok() != Some(expected) {
                return Err(sqlx::Error::Protocol(format!(
                    "audit entry seq {expected} is missing; the tree cannot be built past it"
                )));
            }
            entry_hashes.push(decode_entry_hash(entry_hash)?);
        }
        let needed = append_indexes(leaves, entry_hashes.len() as u64);
        let old = in_order(&needed, &self.hashes_at(&needed).await?)?;
        let written = append_from(leaves, &entry_hashes, &old).map_err(log_error)?;
        let beyond = [Arg::Int(seq_i64(stored_hash_count(leaves))?)];
        self.execute("DELETE FROM audit_tree WHERE idx >= $1", &beyond)
            .await?;
        self.insert_hashes(&written).await
    }

    async fn hashes_at(&mut self, indexes: &[u64]) -> Result<HashMap<u64, Hash>, sqlx::Error> {
        let mut found = HashMap::with_capacity(indexes.len());
        for chunk in statement_chunks(indexes, MAX_BINDS) {
            if chunk.is_empty() {
                continue;
            }
            let sql = format!(
                "SELECT idx, hash FROM audit_tree WHERE idx IN {}",
                values(1, chunk.len(), 1)
            );
            let args = chunk
                .iter()
                .map(|index| seq_i64(*index).map(Arg::Int))
                .collect::<Result<Vec<_>, _>>()?;
            let rows: Vec<HashRow> = self.fetch_all(&sql, &args).await?;
            collect_hashes(rows, &mut found)?;
        }
        Ok(found)
    }

    pub(in crate::store) async fn insert_hashes(
        &mut self,
        hashes: &[(u64, Hash)],
    ) -> Result<(), sqlx::Error> {
        for chunk in statement_chunks(hashes, MAX_BINDS / 2) {
            let sql = format!(
                "INSERT INTO audit_tree (idx, hash) VALUES {}",
                values(chunk.len(), 2, 1)
            );
            let mut args = Vec::with_capacity(chunk.len() * 2);
            for (index, hash) in chunk {
                args.extend(hash_args(*index, hash)?);
            }
            self.execute(&sql, &args).await?;
        }
        Ok(())
    }
}

/// The 2 columns of a stored hash row (`idx, hash`).
pub(super) fn hash_args(index: u64, hash: &Hash) -> Result<[Arg<'_>; 2], sqlx::Error> {
    Ok([Arg::Int(seq_i64(index)?), Arg::Blob(Some(hash.as_slice()))])
}

/// The stored hashes an append of `count` leaves to a tree of `start` leaves reads: those it
/// combines with, and the last one before it (which shows the tree covers `start`).
pub(super) fn tree_reads(start: u64, count: u64) -> Vec<u64> {
    let mut read = append_indexes(start, count);
    read.extend(stored_hash_count(start).checked_sub(1));
    read.sort_unstable();
    read.dedup();
    read
}

// === impl Db ===

impl Db {
    /// The chain head's seq and how many stored hashes the tree has, in one statement.
    pub(in crate::store) async fn tree_state(&self) -> Result<(u64, u64), sqlx::Error> {
        const STATE: &str = "SELECT (SELECT seq FROM audit_head WHERE id = 1), \
                             (SELECT MAX(idx) FROM audit_tree)";
        let (seq, max): (i64, Option<i64>) =
            on_backend!(Db, self, pool => sqlx::query_as(STATE).fetch_one(pool).await?);
        let seq = u64::try_from(seq).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
        Ok((seq, stored_count(max)))
    }

    /// The tree size: the chain head's seq.
    pub(in crate::store) async fn tree_size(&self) -> Result<u64, StoreError> {
        let seq: i64 = on_backend!(Db, self, pool => {
            sqlx::query_scalar("SELECT seq FROM audit_head WHERE id = 1")
                .fetch_one(pool)
                .await
        })
        .map_err(unavailable)?;
        u64::try_from(seq).map_err(|_| StoreError::Corrupt)
    }

    /// The stored hashes at `indexes` (at most a few dozen: one statement), in that order.
    /// Hashes are append-only, so any that a committed head covers are there to read.
    pub(in crate::store) async fn read_hashes(
        &self,
        indexes: &[u64],
    ) -> Result<Vec<Hash>, StoreError> {
        let found = self.find_hashes(indexes).await?;
        in_order(indexes, &found).map_err(|error| {
            // Not yet built (an older trail another instance is completing), or rows deleted.
            tracing::warn!(%error, "audit tree is incomplete");
            StoreError::Unavailable
        })
    }

    /// Those of the stored hashes at `indexes` that exist, in one statement.
    pub(in crate::store) async fn find_hashes(
        &self,
        indexes: &[u64],
    ) -> Result<HashMap<u64, Hash>, StoreError> {
        let mut found = HashMap::with_capacity(indexes.len());
        if indexes.is_empty() {
            return Ok(found);
        }
        let read = async {
            let rows = on_backend!(Db, self, pool => select_hashes!(pool, indexes));
            collect_hashes(rows, &mut found)
        };
        read.await.map_err(unavailable)?;
        Ok(found)
    }

    /// Stored hashes with `lo <= idx < hi`, in index order.
    pub(in crate::store) async fn hashes_between(
        &self,
        lo: u64,
        hi: u64,
    ) -> Result<Vec<(u64, Hash)>, StoreError> {
        let read = async {
            let rows: Vec<HashRow> = on_backend!(Db, self, pool => {
                sqlx::query_as("SELECT idx, hash FROM audit_tree WHERE idx >= $1 AND idx < $2 ORDER BY idx")
                    .bind(seq_i64(lo)?)
                    .bind(seq_i64(hi)?)
                    .fetch_all(pool)
                    .await?
            });
            rows.into_iter()
                .map(hash_row)
                .collect::<Result<Vec<_>, _>>()
        };
        read.await.map_err(unavailable)
    }

    /// `(seq, entry_hash)` of the entries with `lo < seq <= hi`, in seq order.
    pub(in crate::store) async fn entry_hashes(
        &self,
        lo: u64,
        hi: u64,
    ) -> Result<Vec<(u64, String)>, StoreError> {
        let read = async {
            let rows: Vec<(i64, String)> = on_backend!(Db, self, pool => {
                sqlx::query_as(
                    "SELECT seq, entry_hash FROM audit_entries \
                     WHERE seq > $1 AND seq <= $2 ORDER BY seq",
                )
                .bind(seq_i64(lo)?)
                .bind(seq_i64(hi)?)
                .fetch_all(pool)
                .await?
            });
            Ok::<_, sqlx::Error>(rows)
        };
        let rows = read.await.map_err(unavailable)?;
        rows.into_iter()
            .map(|(seq, hash)| Ok((u64::try_from(seq).map_err(|_| StoreError::Corrupt)?, hash)))
            .collect()
    }

    /// `(seq, entry_hash)` of the entry `entry_id`.
    pub(in crate::store) async fn entry_position(
        &self,
        entry_id: &str,
    ) -> Result<Option<(u64, String)>, StoreError> {
        const FIND: &str = "SELECT seq, entry_hash FROM audit_entries WHERE entry_id = $1";
        let row: Option<(i64, String)> = on_backend!(Db, self, pool => {
            sqlx::query_as(FIND).bind(entry_id).fetch_optional(pool).await
        })
        .map_err(unavailable)?;
        row.map(|(seq, hash)| Ok((u64::try_from(seq).map_err(|_| StoreError::Corrupt)?, hash)))
            .transpose()
    }

    /// Stores a checkpoint note; a second one of the same size keeps the first.
    pub(in crate::store) async fn save_checkpoint(
        &self,
        tree_size: u64,
        note: &str,
        now: SystemTime,
    ) -> Result<(), StoreError> {
        const SAVE: &str = "INSERT INTO audit_checkpoints (tree_size, note, created_at) \
                            VALUES ($1, $2, $3) ON CONFLICT (tree_size) DO NOTHING";
        let size = i64::try_from(tree_size).map_err(|_| StoreError::Corrupt)?;
        on_backend!(Db, self, pool => {
            sqlx::query(SAVE)
                .bind(size)
                .bind(note)
                .bind(to_micros(now))
                .execute(pool)
                .await
                .map(|_| ())
        })
        .map_err(unavailable)
    }

    /// The checkpoint of the largest tree size stored.
    pub(in crate::store) async fn latest_checkpoint(
        &self,
    ) -> Result<Option<(u64, String, SystemTime)>, StoreError> {
        const LATEST: &str = "SELECT tree_size, note, created_at FROM audit_checkpoints \
                              ORDER BY tree_size DESC LIMIT 1";
        let row: Option<(i64, String, i64)> = on_backend!(Db, self, pool => {
            sqlx::query_as(LATEST).fetch_optional(pool).await
        })
        .map_err(unavailable)?;
        row.map(|(size, note, created_at)| {
            let size = u64::try_from(size).map_err(|_| StoreError::Corrupt)?;
            Ok((size, note, from_micros(created_at)))
        })
        .transpose()
    }
}

/// The 32 bytes of a stored entry_hash (64 hex digits).
pub(in crate::store) fn decode_entry_hash(entry_hash: &str) -> Result<Hash, sqlx::Error> {
    let mut hash = [0; 32];
    hex::decode_to_slice(entry_hash, &mut hash).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    Ok(hash)
}

/// Stored hashes of a dense tree whose largest index is `max`.
fn stored_count(max: Option<i64>) -> u64 {
    max.and_then(|max| u64::try_from(max).ok())
        .map_or(0, |max| max + 1)
}

fn hash_row((index, hash): HashRow) -> Result<(u64, Hash), sqlx::Error> {
    let index = u64::try_from(index).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    let hash = Hash::try_from(hash.as_slice()).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    Ok((index, hash))
}

pub(super) fn collect_hashes(
    rows: Vec<HashRow>,
    found: &mut HashMap<u64, Hash>,
) -> Result<(), sqlx::Error> {
    for row in rows {
        let (index, hash) = hash_row(row)?;
        found.insert(index, hash);
    }
    Ok(())
}

/// The hashes at `indexes`, in that order; a missing one is an error naming it.
fn in_order(indexes: &[u64], found: &HashMap<u64, Hash>) -> Result<Vec<Hash>, sqlx::Error> {
    indexes
        .iter()
        .map(|index| {
            found
                .get(index)
                .copied()
                .ok_or_else(|| sqlx::Error::Protocol(format!("audit tree hash {index} is missing")))
        })
        .collect()
}

fn log_error(error: admission_log::LogError) -> sqlx::Error {
    sqlx::Error::Protocol(format!("audit tree: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_count_is_one_past_the_largest_index() {
        assert_eq!(stored_count(None), 0);
        assert_eq!(stored_count(Some(4)), 5);
    }
}
