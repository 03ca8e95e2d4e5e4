//! The `entries` table and its chain head: appending, listing and verifying.

use super::args::Arg;
use super::derived::Found;
use super::rows::ENTRY_COLUMNS;
use super::walk::{self, ChainWalk};
use super::*;

/// Walks (extending the previous one) before the approvals are compared with a head that still
/// moves; after the last, only disagreements no later write explains are reported.
const DERIVED_ATTEMPTS: u32 = 3;
/// An audit row as stored: lists still as their canonical JSON text.
struct RawEntry {
    seq: i64,
    entry_id: String,
    recorded_at: i64,
    actor: String,
    actor_cert_sha256: String,
    initiated_by: String,
    action: String,
    org_id: String,
    project_id: String,
    environment_id: String,
    spec_hash: String,
    capabilities: String,
    approval_ids: String,
    approvers: String,
    outcome: String,
    reason: String,
    grpc_code: String,
    request_id: String,
    detail: String,
    prev_hash: String,
    entry_hash: String,
}
/// A `list` bind value.
enum Param {
    Text(String),
    Int(i64),
}
// === impl RawEntry ===

impl RawEntry {
    /// Parses the list columns; a row whose lists are not valid JSON cannot be listed.
    fn into_entry(self) -> Result<AuditEntry, StoreError> {
        let lists = self.parse_lists().ok_or_else(|| {
            tracing::warn!(seq = self.seq, "audit entry has malformed list columns");
            StoreError::Unavailable
        })?;
        let entry = self.new_entry(lists);
        Ok(AuditEntry {
            seq: u64::try_from(self.seq).unwrap_or(0),
            recorded_at: from_micros(self.recorded_at),
            entry,
            prev_hash: self.prev_hash,
            entry_hash: self.entry_hash,
        })
    }

    fn parse_lists(&self) -> Option<[Vec<String>; 3]> {
        let parse = |text: &str| serde_json::from_str::<Vec<String>>(text).ok();
        Some([
            parse(&self.capabilities)?,
            parse(&self.approval_ids)?,
            parse(&self.approvers)?,
        ])
    }

    fn new_entry(&self, [capabilities, approval_ids, approvers]: [Vec<String>; 3]) -> NewEntry {
        NewEntry {
            entry_id: self.entry_id.clone(),
            actor: self.actor.clone(),
            actor_cert_sha256: self.actor_cert_sha256.clone(),
            initiated_by: self.initiated_by.clone(),
            action: self.action.clone(),
            scope: Scope {
                org_id: self.org_id.clone(),
                project_id: self.project_id.clone(),
                environment_id: self.environment_id.clone(),
            },
            spec_hash: self.spec_hash.clone(),
            capabilities,
            approval_ids,
            approvers,
            outcome: self.outcome.clone(),
            reason: self.reason.clone(),
            grpc_code: self.grpc_code.clone(),
            request_id: self.request_id.clone(),
            detail: self.detail.clone(),
        }
    }
}
/// Reads an audit row on either backend.
fn raw_entry<R: Row>(row: &R) -> Result<RawEntry, sqlx::Error>
where
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'a> &'a str: ColumnIndex<R>,
{
    Ok(RawEntry {
        seq: row.try_get("seq")?,
        entry_id: row.try_get("entry_id")?,
        recorded_at: row.try_get("recorded_at")?,
        actor: row.try_get("actor")?,
        actor_cert_sha256: row.try_get("actor_cert_sha256")?,
        initiated_by: row.try_get("initiated_by")?,
        action: row.try_get("action")?,
        org_id: row.try_get("org_id")?,
        project_id: row.try_get("project_id")?,
        environment_id: row.try_get("environment_id")?,
        spec_hash: row.try_get("spec_hash")?,
        capabilities: row.try_get("capabilities")?,
        approval_ids: row.try_get("approval_ids")?,
        approvers: row.try_get("approvers")?,
        outcome: row.try_get("outcome")?,
        reason: row.try_get("reason")?,
        grpc_code: row.try_get("grpc_code")?,
        request_id: row.try_get("request_id")?,
        detail: row.try_get("detail")?,
        prev_hash: row.try_get("prev_hash")?,
        entry_hash: row.try_get("entry_hash")?,
    })
}

// === impl Db ===

impl Db {
    /// Entries after `after_seq` matching `filter`, in seq order, at most `limit`.
    pub(in crate::store) async fn list(
        &self,
        filter: &ListFilter,
        after_seq: u64,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let mut after = i64::try_from(after_seq).map_err(|_| StoreError::InvalidPageToken)?;
        if let Some(since) = filter.since {
            match self.first_since(to_micros(since)).await? {
                Some(first) => after = after.max(first - 1),
                None => return Ok(Vec::new()),
            }
        }
        let mut params = vec![Param::Int(after)];
        let mut sql = format!("SELECT {ENTRY_COLUMNS} FROM audit_entries WHERE seq > $1");
        let mut text_filter = |column: &str, value: &str, params: &mut Vec<Param>| {
            if !value.is_empty() {
                params.push(Param::Text(value.to_owned()));
                sql.push_str(&format!(" AND {column} = ${}", params.len()));
            }
        };
        if let Some(scope) = &filter.scope {
            text_filter("org_id", &scope.org_id, &mut params);
            text_filter("project_id", &scope.project_id, &mut params);
            text_filter("environment_id", &scope.environment_id, &mut params);
        }
        if let Some(outcome) = &filter.outcome {
            text_filter("outcome", outcome, &mut params);
        }
        if let Some(since) = filter.since {
            params.push(Param::Int(to_micros(since)));
            sql.push_str(&format!(" AND recorded_at >= ${}", params.len()));
        }
        params.push(Param::Int(i64::from(limit)));
        sql.push_str(&format!(" ORDER BY seq LIMIT ${}", params.len()));

        on_backend!(Db, self, pool => {
            let mut query = sqlx::query(&sql);
            for param in &params {
                query = match param {
                    Param::Text(text) => query.bind(text.as_str()),
                    Param::Int(int) => query.bind(*int),
                };
            }
            let rows = query.fetch_all(pool).await.map_err(unavailable)?;
            rows.iter()
                .map(|row| raw_entry(row).map_err(unavailable)?.into_entry())
                .collect()
        })
    }

    /// The first seq that a `since` of `micros` can match, by one seek of the (recorded_at,
    /// seq) index when recorded_at is ordered along the whole chain (else 1); `None` when no
    /// entry is that recent.
    async fn first_since(&self, micros: i64) -> Result<Option<i64>, StoreError> {
        const FIRST: &str = "SELECT h.ordered_from, (SELECT e.seq FROM audit_entries e \
             WHERE e.recorded_at >= $1 ORDER BY e.recorded_at, e.seq LIMIT 1) \
             FROM audit_head h WHERE h.id = 1";
        let (ordered_from, first): (i64, Option<i64>) = on_backend!(Db, self, pool => {
            sqlx::query_as(FIRST).bind(micros).fetch_one(pool).await
        })
        .map_err(unavailable)?;
        Ok(match ordered_from <= 1 {
            true => first,
            // Older entries may be later than their successors: a walk in seq order decides.
            false => first.map(|_| 1),
        })
    }

    /// Walks the chain up to the recorded head, in chunks of entries, then
    /// compares the approval rows with what the walked entries record, and every idempotency
    /// row with the entry it names. While appends move the
    /// head meanwhile, the walk is extended to the new head and the rows compared again.
    pub(in crate::store) async fn verify(&self) -> Result<VerifyReport, StoreError> {
        let (mut head_seq, mut head_hash) = self.verify_head().await?;
        let mut walk = ChainWalk::default();
        let mut found = Vec::new();
        let mut newest_seq = head_seq;
        for attempt in 1..=DERIVED_ATTEMPTS {
            self.walk_to(&mut walk, head_seq).await?;
            if walk.first_bad_seq != 0 {
                break;
            }
            found = self.derived_mismatches(walk.derived.clone()).await?;
            let (seq, hash) = self.verify_head().await?;
            newest_seq = seq;
            if seq == head_seq {
                break;
            }
            if attempt == DERIVED_ATTEMPTS {
                found.retain(|found| !found.maybe_later_write);
                break;
            }
            (head_seq, head_hash) = (seq, hash);
        }
        if walk.first_bad_seq == 0 {
            let keys = self.idempotency_mismatches().await?;
            found.extend(keys.into_iter().map(|mismatch| Found {
                mismatch,
                maybe_later_write: false,
            }));
        }
        let mut report = walk.finish(head_seq, &head_hash, found);
        // Rows past the newest head were never acknowledged by this store: someone inserted
        // them.
        const PAST_HEAD: &str = "SELECT MIN(seq) FROM audit_entries WHERE seq > $1";
        let (past_head,): (Option<i64>,) = on_backend!(Db, self, pool => {
            sqlx::query_as(PAST_HEAD).bind(newest_seq).fetch_one(pool).await
        })
        .map_err(unavailable)?;
        if let (true, Some(seq)) = (report.first_bad_seq == 0, past_head) {
            report.ok = false;
            report.first_bad_seq = u64::try_from(seq).unwrap_or_default();
            report.mismatches.clear();
        }
        Ok(report)
    }

    /// The recorded chain head.
    async fn verify_head(&self) -> Result<(i64, String), StoreError> {
        const HEAD: &str = "SELECT seq, entry_hash FROM audit_head WHERE id = 1";
        on_backend!(Db, self, pool => {
            sqlx::query_as(HEAD).fetch_one(pool).await
        })
        .map_err(unavailable)
    }

    /// Extends `walk` through the entries up to `head_seq`: on SQLite by a reading
    /// connection of the store's own on a blocking thread ([`walk::on_connection`]), on PostgreSQL as `COPY` text
    /// ([`walk::on_postgres`]).
    async fn walk_to(&self, walk: &mut ChainWalk, head_seq: i64) -> Result<(), StoreError> {
        let pool = match self {
            Db::Sqlite(_, local) => {
                let local = local.clone();
                let mut taken = std::mem::take(walk);
                let joined = tokio::task::spawn_blocking(move || {
                    let walked = local
                        .read(|connection| walk::on_connection(connection, &mut taken, head_seq));
                    (taken, walked)
                })
                .await;
                let (taken, walked) = joined.map_err(|error| {
                    tracing::error!(%error, "the audit walk's thread failed");
                    StoreError::Unavailable
                })?;
                *walk = taken;
                return walked.map_err(|error| {
                    tracing::warn!(%error, "audit store query failed");
                    StoreError::Unavailable
                });
            }
            Db::Postgres(pool) => pool,
        };
        walk::on_postgres(pool, walk, head_seq)
            .await
            .map_err(unavailable)
    }
}

// === impl WriteTx ===

impl WriteTx {
    /// The chain head (seq 0 and 64 zeros when empty); the transaction holds the chain lock
    /// from its begin on, on both backends.
    pub(in crate::store) async fn head(&mut self) -> Result<Head, sqlx::Error> {
        // The head entry's time too: the batch records no earlier time (`BatchState::new`).
        const HEAD: &str = "SELECT seq, entry_hash, \
             COALESCE((SELECT e.recorded_at FROM audit_entries e WHERE e.seq = h.seq), 0) \
             FROM audit_head h WHERE id = 1";
        let (seq, hash, recorded_at): (i64, String, i64) = self.fetch_one(HEAD, &[]).await?;
        let seq = u64::try_from(seq).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
        Ok(Head {
            seq,
            hash,
            recorded_at,
        })
    }

    pub(in crate::store) async fn set_head(
        &mut self,
        seq: u64,
        hash: &str,
    ) -> Result<(), sqlx::Error> {
        let seq = seq_i64(seq)?;
        const SET_HEAD: &str = "UPDATE audit_head SET seq = $1, entry_hash = $2 WHERE id = 1";
        self.execute(SET_HEAD, &[Arg::Int(seq), hash.into()])
            .await?;
        Ok(())
    }
}
