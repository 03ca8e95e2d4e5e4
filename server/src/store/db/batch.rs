//! Set-based statements for one writer batch: one lookup per table for every key in the
//! batch, and one multi-row statement per table for everything the batch writes.

use std::collections::{HashMap, HashSet};

use super::approvals::{APPROVAL_COLUMNS, approval_args};
use super::args::{Arg, statement_chunks, values};
use super::arrays::{self, BatchRead, BatchRows};
use super::rows::{ENTRY_COLUMNS, KEY_COLUMNS, KEY_UPSERT, entry_args, key_args, stored_approval};
use super::tree::tree_reads;
use super::*;
use crate::store::batch::{Fetched, Wanted};

/// Most bind values in one statement (SQLite allows 32766, PostgreSQL 65535).
const MAX_BINDS: usize = 30_000;

// === impl WriteTx ===

impl WriteTx {
    /// The head and what the store holds for a batch, under the chain lock. `likely_head` is
    /// the head this writer last committed: on PostgreSQL, where every statement is a round
    /// trip, the tree hashes an append there needs are read in the same statement as the rest
    /// (any others, when another instance moved the head, are read later); SQLite reads them
    /// when needed.
    pub(in crate::store) async fn read_batch(
        &mut self,
        wanted: &Wanted,
        likely_head: Option<u64>,
    ) -> Result<BatchRead, sqlx::Error> {
        if let WriteTx::Postgres(tx) = self {
            let (keys, entry_ids, approval_ids) =
                (wanted.keys(), wanted.entry_ids(), wanted.approval_ids());
            let count = entry_ids.len() as u64;
            let tree = likely_head.map_or_else(Vec::new, |seq| tree_reads(seq, count));
            return arrays::read(tx, &keys, &entry_ids, &approval_ids, &tree).await;
        }
        let head = self.head().await?;
        let fetched = self.fetch(wanted).await?;
        let tree = HashMap::new();
        Ok(BatchRead {
            head,
            fetched,
            tree,
        })
    }

    /// Writes `rows` and moves the head to `head`: one statement on PostgreSQL, one per
    /// table that changes on SQLite.
    pub(in crate::store) async fn write_rows(
        &mut self,
        rows: &BatchRows<'_>,
        head: (u64, &str),
    ) -> Result<(), sqlx::Error> {
        if let WriteTx::Postgres(tx) = self {
            return arrays::write(tx, rows, head).await;
        }
        if !rows.created.is_empty() {
            self.insert_used_approvals(rows.created).await?;
        }
        if !rows.bumps.is_empty() {
            self.bump_uses(rows.bumps, rows.now).await?;
        }
        if !rows.entries.is_empty() {
            self.insert_entries(rows.entries).await?;
            self.set_head(head.0, head.1).await?;
        }
        if !rows.tree.is_empty() {
            self.insert_hashes(rows.tree).await?;
        }
        if !rows.keys.is_empty() {
            self.put_keys(rows.keys, rows.now).await?;
        }
        Ok(())
    }

    /// What the store holds for a batch: one lookup per table.
    async fn fetch(&mut self, wanted: &Wanted) -> Result<Fetched, sqlx::Error> {
        let (keys, entry_ids, approval_ids) =
            (wanted.keys(), wanted.entry_ids(), wanted.approval_ids());
        let mut fetched = Fetched::default();
        if !keys.is_empty() {
            fetched.keys = self.lookup_keys(&keys).await?;
        }
        if !entry_ids.is_empty() {
            fetched.entries = self.existing_entries(&entry_ids).await?;
        }
        if !approval_ids.is_empty() {
            fetched.approvals = self.lookup_approvals(&approval_ids).await?;
        }
        Ok(fetched)
    }

    /// The stored idempotency rows of `keys` (caller, request_id), with their entry's hash.
    async fn lookup_keys(
        &mut self,
        keys: &[(&str, &str)],
    ) -> Result<HashMap<(String, String), StoredKey>, sqlx::Error> {
        let mut found = HashMap::new();
        for chunk in statement_chunks(keys, MAX_BINDS / 2) {
            let sql = format!(
                "SELECT i.caller, i.request_id, i.fingerprint, i.admission, i.decision_id, \
                 e.entry_hash FROM idempotency i LEFT JOIN audit_entries e \
                 ON e.entry_id = i.decision_id WHERE (i.caller, i.request_id) IN (VALUES {})",
                values(chunk.len(), 2, 1)
            );
            type Row = (
                String,
                String,
                String,
                Option<Vec<u8>>,
                String,
                Option<String>,
            );
            let args: Vec<Arg> = chunk
                .iter()
                .flat_map(|(caller, request_id)| [Arg::from(*caller), Arg::from(*request_id)])
                .collect();
            let rows: Vec<Row> = self.fetch_all(&sql, &args).await?;
            for (caller, request_id, fingerprint, admission, decision_id, entry_hash) in rows {
                let stored = StoredKey {
                    fingerprint,
                    admission,
                    decision_id,
                    entry_hash,
                };
                found.insert((caller, request_id), stored);
            }
        }
        Ok(found)
    }

    /// Which of `entry_ids` are already recorded.
    async fn existing_entries(
        &mut self,
        entry_ids: &[&str],
    ) -> Result<HashSet<String>, sqlx::Error> {
        let mut found = HashSet::new();
        for chunk in statement_chunks(entry_ids, MAX_BINDS) {
            let sql = format!(
                "SELECT entry_id FROM audit_entries WHERE entry_id IN {}",
                values(1, chunk.len(), 1)
            );
            let args: Vec<Arg> = chunk.iter().map(|id| Arg::from(*id)).collect();
            let rows: Vec<(String,)> = self.fetch_all(&sql, &args).await?;
            found.extend(rows.into_iter().map(|(id,)| id));
        }
        Ok(found)
    }

    /// State, uses, max_uses and version of each of `approval_ids` that has a row.
    async fn lookup_approvals(
        &mut self,
        approval_ids: &[&str],
    ) -> Result<HashMap<String, StoredApproval>, sqlx::Error> {
        let mut found = HashMap::new();
        for chunk in statement_chunks(approval_ids, MAX_BINDS) {
            let sql = format!(
                "SELECT approval_id, state, uses, max_uses, version FROM approvals \
                 WHERE approval_id IN {}",
                values(1, chunk.len(), 1)
            );
            let args: Vec<Arg> = chunk.iter().map(|id| Arg::from(*id)).collect();
            let rows: Vec<(String, String, i64, i64, i64)> = self.fetch_all(&sql, &args).await?;
            for (id, state, uses, max_uses, version) in rows {
                let stored = stored_approval(&id, &state, uses, max_uses, version)?;
                found.insert(id, stored);
            }
        }
        Ok(found)
    }

    /// Inserts `entries` (already chained) with multi-row INSERTs.
    pub(in crate::store) async fn insert_entries(
        &mut self,
        entries: &[ChainedEntry],
    ) -> Result<(), sqlx::Error> {
        const COLS: usize = 21;
        for chunk in statement_chunks(entries, MAX_BINDS / COLS) {
            let sql = format!(
                "INSERT INTO audit_entries ({ENTRY_COLUMNS}) VALUES {}",
                values(chunk.len(), COLS, 1)
            );
            let mut args = Vec::with_capacity(chunk.len() * COLS);
            for row in chunk {
                args.extend(entry_args(row)?);
            }
            self.execute(&sql, &args).await?;
        }
        Ok(())
    }

    /// Stores `keys` (distinct), replacing rows of the same caller and request_id.
    pub(in crate::store) async fn put_keys(
        &mut self,
        keys: &[KeyWrite],
        micros: i64,
    ) -> Result<(), sqlx::Error> {
        const COLS: usize = 6;
        for chunk in statement_chunks(keys, MAX_BINDS / COLS) {
            let sql = format!(
                "INSERT INTO idempotency ({KEY_COLUMNS}) VALUES {} {KEY_UPSERT}",
                values(chunk.len(), COLS, 1)
            );
            let mut args = Vec::with_capacity(chunk.len() * COLS);
            for write in chunk {
                args.extend(key_args(write, micros));
            }
            self.execute(&sql, &args).await?;
        }
        Ok(())
    }

    /// Adds `count` uses (and as many versions) to each existing approval row.
    pub(in crate::store) async fn bump_uses(
        &mut self,
        bumps: &[(&str, u32)],
        micros: i64,
    ) -> Result<(), sqlx::Error> {
        for chunk in statement_chunks(bumps, MAX_BINDS / 2) {
            let sql = format!(
                "UPDATE approvals SET uses = uses + v.column2, version = version + v.column2, \
                 updated_at = $1 FROM (VALUES {}) AS v WHERE approval_id = v.column1",
                values(chunk.len(), 2, 2)
            );
            let mut args = vec![Arg::Int(micros)];
            for (id, count) in chunk {
                args.extend([Arg::from(*id), Arg::Int(i64::from(*count))]);
            }
            self.execute(&sql, &args).await?;
        }
        Ok(())
    }

    /// Inserts approval rows for credentials signed offline, each with its uses consumed.
    pub(in crate::store) async fn insert_used_approvals(
        &mut self,
        rows: &[ApprovalRow],
    ) -> Result<(), sqlx::Error> {
        const COLS: usize = 21;
        for chunk in statement_chunks(rows, MAX_BINDS / COLS) {
            let sql = format!(
                "INSERT INTO approvals ({APPROVAL_COLUMNS}) VALUES {} \
                 ON CONFLICT (approval_id) DO NOTHING",
                values(chunk.len(), COLS, 1)
            );
            let mut args = Vec::with_capacity(chunk.len() * COLS);
            for row in chunk {
                args.extend(approval_args(row, row.version));
            }
            self.execute(&sql, &args).await?;
        }
        Ok(())
    }
}
