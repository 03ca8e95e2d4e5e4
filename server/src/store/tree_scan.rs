//! TEMPORARY: the Merkle tree of the trail computed by scanning `audit_entries` (O(n) per
//! call) and checkpoints kept in `audit_checkpoints`, with the API the stored tree provides.
//! The stored tree (hashes written with each batch, the table made by a migration) replaces
//! this file whole.

use std::time::SystemTime;

use admission_log::{Hash, MemoryHashes, tree};
use sqlx::Row;

use super::db::Db;
use super::{AuditStore, StoreError, from_micros, to_micros};

/// The table the real migration creates, made here on first use.
const CREATE_CHECKPOINTS: &str = "CREATE TABLE IF NOT EXISTS audit_checkpoints (\
     tree_size BIGINT PRIMARY KEY, note TEXT NOT NULL, created_at BIGINT NOT NULL)";

/// Runs `$body` with `$pool` bound to the backend's pool.
macro_rules! on_pool {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            Db::Sqlite($pool) => $body,
            Db::Postgres($pool) => $body,
        }
    };
}

// === impl AuditStore ===

impl AuditStore {
    /// The tree of the whole trail: (size = head seq, root).
    pub async fn tree_head(&self) -> Result<(u64, [u8; 32]), StoreError> {
        let tree = self.scanned_tree(None).await?;
        Ok((tree.size(), tree.root().map_err(corrupt)?))
    }

    /// The root of the tree of the first `size` entries.
    pub async fn tree_root(&self, size: u64) -> Result<[u8; 32], StoreError> {
        let tree = self.scanned_tree(Some(size)).await?;
        tree.root().map_err(corrupt)
    }

    /// The inclusion proof of leaf `index` in the tree of `size` entries.
    pub async fn inclusion_proof(
        &self,
        index: u64,
        size: u64,
    ) -> Result<Vec<[u8; 32]>, StoreError> {
        let tree = self.scanned_tree(Some(size)).await?;
        tree::prove_inclusion(index, size, &tree).map_err(corrupt)
    }

    /// The consistency proof from the tree of `old` entries to that of `new`.
    pub async fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<[u8; 32]>, StoreError> {
        let tree = self.scanned_tree(Some(new)).await?;
        tree::prove_consistency(old, new, &tree).map_err(corrupt)
    }

    /// Stores the signed checkpoint note of `tree_size` (a second one of that size is ignored).
    pub async fn save_checkpoint(&self, tree_size: u64, note: &str) -> Result<(), StoreError> {
        let size = i64::try_from(tree_size).map_err(|_| StoreError::Corrupt)?;
        let now = to_micros(SystemTime::now());
        on_pool!(&self.inner.db, pool => {
            sqlx::query(CREATE_CHECKPOINTS).execute(pool).await.map_err(unavailable)?;
            sqlx::query(
                "INSERT INTO audit_checkpoints (tree_size, note, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (tree_size) DO NOTHING",
            )
            .bind(size)
            .bind(note)
            .bind(now)
            .execute(pool)
            .await
            .map_err(unavailable)?;
        });
        Ok(())
    }

    /// The checkpoint of the largest tree stored: (tree_size, note, when stored).
    pub async fn latest_checkpoint(&self) -> Result<Option<(u64, String, SystemTime)>, StoreError> {
        let row = on_pool!(&self.inner.db, pool => {
            sqlx::query(CREATE_CHECKPOINTS).execute(pool).await.map_err(unavailable)?;
            sqlx::query(
                "SELECT tree_size, note, created_at FROM audit_checkpoints \
                 ORDER BY tree_size DESC LIMIT 1",
            )
            .fetch_optional(pool)
            .await
            .map_err(unavailable)?
            .map(|row| -> Result<(i64, String, i64), sqlx::Error> {
                Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?))
            })
        });
        let Some(row) = row else {
            return Ok(None);
        };
        let (size, note, created_at) = row.map_err(unavailable)?;
        let size = u64::try_from(size).map_err(|_| StoreError::Corrupt)?;
        Ok(Some((size, note, from_micros(created_at))))
    }

    /// The leaf of the entry `decision_id`: (seq − 1, entry_hash hex).
    pub async fn leaf_of(&self, decision_id: &str) -> Result<Option<(u64, String)>, StoreError> {
        let row = on_pool!(&self.inner.db, pool => {
            sqlx::query("SELECT seq, entry_hash FROM audit_entries WHERE entry_id = $1")
                .bind(decision_id)
                .fetch_optional(pool)
                .await
                .map_err(unavailable)?
                .map(|row| -> Result<(i64, String), sqlx::Error> {
                    Ok((row.try_get(0)?, row.try_get(1)?))
                })
        });
        let Some(row) = row else {
            return Ok(None);
        };
        let (seq, entry_hash) = row.map_err(unavailable)?;
        let index = u64::try_from(seq - 1).map_err(|_| StoreError::Corrupt)?;
        Ok(Some((index, entry_hash)))
    }

    /// The tree of the first `size` entries (all of them for `None`).
    async fn scanned_tree(&self, size: Option<u64>) -> Result<MemoryHashes, StoreError> {
        let limit = size
            .map_or(Ok(i64::MAX), i64::try_from)
            .map_err(|_| StoreError::Corrupt)?;
        let hexes: Vec<String> = on_pool!(&self.inner.db, pool => {
            sqlx::query_scalar("SELECT entry_hash FROM audit_entries WHERE seq <= $1 ORDER BY seq")
                .bind(limit)
                .fetch_all(pool)
                .await
                .map_err(unavailable)?
        });
        let leaves = hexes
            .iter()
            .map(|hex| parse_hash(hex))
            .collect::<Result<Vec<Hash>, StoreError>>()?;
        let mut tree = MemoryHashes::new();
        tree.append(&leaves).map_err(corrupt)?;
        Ok(tree)
    }
}

fn parse_hash(text: &str) -> Result<Hash, StoreError> {
    hex::decode(text)
        .ok()
        .and_then(|bytes| Hash::try_from(bytes).ok())
        .ok_or_else(|| {
            tracing::error!(entry_hash = %text, "stored entry_hash is not 64 hex digits");
            StoreError::Corrupt
        })
}

fn corrupt(error: admission_log::LogError) -> StoreError {
    tracing::error!(%error, "the audit tree could not be computed");
    StoreError::Corrupt
}

fn unavailable(error: sqlx::Error) -> StoreError {
    tracing::warn!(error = %error, "audit tree query failed");
    StoreError::Unavailable
}
