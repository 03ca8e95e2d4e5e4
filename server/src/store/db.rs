//! SQL for both backends. The statements are shared: SQLite accepts PostgreSQL's `$N`
//! placeholders, `ON CONFLICT … DO UPDATE/NOTHING` and `excluded.`; only the chain lock differs
//! (`BEGIN IMMEDIATE` on SQLite, `SELECT … FOR UPDATE` on PostgreSQL).

use std::str::FromStr;
use std::time::SystemTime;

use sqlx::migrate::Migrator;
use sqlx::pool::PoolOptions;
use sqlx::postgres::{PgConnectOptions, PgPool};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqliteSynchronous};
use sqlx::{ColumnIndex, Decode, Postgres, Row, Sqlite, Transaction, Type};

use super::chain::{self, GENESIS_HASH, canonical_list};
use super::{
    ApprovalRow, ApprovalUse, AuditEntry, ListFilter, NewEntry, Receipt, Scope, StoreError,
    StoreOptions, VerifyReport, from_micros, to_micros,
};

static SQLITE_MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

/// Entries read per query while verifying: bounds memory whatever the chain length.
const VERIFY_CHUNK: i64 = 1000;

const ENTRY_COLUMNS: &str = "seq, entry_id, recorded_at, actor, actor_cert_sha256, \
    initiated_by, action, org_id, project_id, environment_id, spec_hash, capabilities, \
    approval_ids, approvers, outcome, reason, grpc_code, request_id, detail, prev_hash, entry_hash";

const APPROVAL_COLUMNS: &str = "approval_id, state, org_id, project_id, environment_id, action, \
    spec_hash, capabilities, requested_by, initiated_by, justification, created_at, expires_at, \
    approvals_required, approvers, credentials, uses, max_uses, decision_reason, version, updated_at";

const INSERT_APPROVAL: &str = "INSERT INTO approvals (approval_id, state, org_id, project_id, \
    environment_id, action, spec_hash, capabilities, requested_by, initiated_by, justification, \
    created_at, expires_at, approvals_required, approvers, credentials, uses, max_uses, \
    decision_reason, version, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, \
    $12, $13, $14, $15, $16, $17, $18, $19, $20, $21) ON CONFLICT (approval_id) DO NOTHING";

const UPDATE_APPROVAL: &str = "UPDATE approvals SET state = $2, org_id = $3, project_id = $4, \
    environment_id = $5, action = $6, spec_hash = $7, capabilities = $8, requested_by = $9, \
    initiated_by = $10, justification = $11, created_at = $12, expires_at = $13, \
    approvals_required = $14, approvers = $15, credentials = $16, uses = $17, max_uses = $18, \
    decision_reason = $19, version = version + 1, updated_at = $21 \
    WHERE approval_id = $1 AND version = $20";

/// A connection pool on one of the two backends.
#[derive(Clone, Debug)]
pub(super) enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// A writing transaction holding the chain lock.
pub(super) enum WriteTx {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
}

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

/// Runs `$body` with `$c` bound to the backend-specific pool (or transaction) of `$value`.
macro_rules! on_backend {
    ($enum:ident, $value:expr, $c:ident => $body:expr) => {
        match $value {
            $enum::Sqlite($c) => $body,
            $enum::Postgres($c) => $body,
        }
    };
}

/// Binds the 21 approval columns in `APPROVAL_COLUMNS` order, with `$version` as column 20.
macro_rules! bind_approval {
    ($query:expr, $row:expr, $version:expr) => {
        $query
            .bind($row.approval_id.as_str())
            .bind($row.state.as_str())
            .bind($row.scope.org_id.as_str())
            .bind($row.scope.project_id.as_str())
            .bind($row.scope.environment_id.as_str())
            .bind($row.action.as_str())
            .bind($row.spec_hash.as_str())
            .bind(canonical_list(&$row.capabilities))
            .bind($row.requested_by.as_str())
            .bind($row.initiated_by.as_str())
            .bind($row.justification.as_str())
            .bind(to_micros($row.created_at))
            .bind(to_micros($row.expires_at))
            .bind(i64::from($row.approvals_required))
            .bind(canonical_list(&$row.approvers))
            .bind(canonical_list(&$row.credentials))
            .bind(i64::from($row.uses))
            .bind(i64::from($row.max_uses))
            .bind($row.decision_reason.as_str())
            .bind($version)
            .bind(to_micros($row.updated_at))
    };
}

// === impl Db ===

impl Db {
    /// Connects, configures durability and runs the embedded migrations.
    pub(super) async fn connect(url: &str, options: &StoreOptions) -> Result<Self, StoreError> {
        let open = |e: &dyn std::fmt::Display| StoreError::Open(e.to_string());
        if url.starts_with("sqlite:") {
            let connect = SqliteConnectOptions::from_str(url)
                .map_err(|e| open(&e))?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(options.durable_timeout);
            let pool = PoolOptions::<Sqlite>::new()
                .max_connections(options.max_connections.max(2))
                .acquire_timeout(options.durable_timeout)
                .connect_with(connect)
                .await
                .map_err(|e| open(&e))?;
            SQLITE_MIGRATOR.run(&pool).await.map_err(|e| open(&e))?;
            Ok(Db::Sqlite(pool))
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let lock_timeout = format!("{}ms", options.durable_timeout.as_millis().max(1));
            let connect = PgConnectOptions::from_str(url)
                .map_err(|e| open(&e))?
                .options([("lock_timeout", lock_timeout)]);
            let pool = PoolOptions::<Postgres>::new()
                .max_connections(options.max_connections.max(2))
                .acquire_timeout(options.durable_timeout)
                .connect_with(connect)
                .await
                .map_err(|e| open(&e))?;
            POSTGRES_MIGRATOR.run(&pool).await.map_err(|e| open(&e))?;
            Ok(Db::Postgres(pool))
        } else {
            Err(StoreError::Open(
                "database_url must start with sqlite: or postgres:".to_owned(),
            ))
        }
    }

    /// Begins a writing transaction and takes the chain lock; statements in it are bounded
    /// by `timeout`.
    pub(super) async fn begin_write(
        &self,
        timeout: std::time::Duration,
    ) -> Result<WriteTx, sqlx::Error> {
        match self {
            // IMMEDIATE takes the database write lock now (waiting up to busy_timeout), so no
            // other store on the same file can interleave between reading and moving the head.
            Db::Sqlite(pool) => Ok(WriteTx::Sqlite(pool.begin_with("BEGIN IMMEDIATE").await?)),
            Db::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                let millis = timeout.as_millis().max(1);
                sqlx::query(&format!("SET LOCAL statement_timeout = {millis}"))
                    .execute(&mut *tx)
                    .await?;
                Ok(WriteTx::Postgres(tx))
            }
        }
    }

    /// Checks the store is writable: takes the chain lock, touches the head, rolls back.
    pub(super) async fn probe(&self, timeout: std::time::Duration) -> Result<(), sqlx::Error> {
        let mut tx = self.begin_write(timeout).await?;
        tx.head().await?;
        on_backend!(WriteTx, &mut tx, c => {
            sqlx::query("UPDATE audit_head SET seq = seq WHERE id = 1")
                .execute(&mut **c)
                .await?;
        });
        tx.rollback().await
    }

    pub(super) async fn idempotency(
        &self,
        caller: &str,
        request_id: &str,
    ) -> Result<Option<(String, Option<Vec<u8>>)>, StoreError> {
        const SQL: &str =
            "SELECT fingerprint, admission FROM idempotency WHERE caller = $1 AND request_id = $2";
        let row: Option<(String, Option<Vec<u8>>)> = on_backend!(Db, self, pool => {
            sqlx::query_as(SQL).bind(caller).bind(request_id).fetch_optional(pool).await
        })
        .map_err(unavailable)?;
        Ok(row)
    }

    pub(super) async fn approval(
        &self,
        approval_id: &str,
    ) -> Result<Option<ApprovalRow>, StoreError> {
        let sql = format!("SELECT {APPROVAL_COLUMNS} FROM approvals WHERE approval_id = $1");
        on_backend!(Db, self, pool => {
            let row = sqlx::query(&sql)
                .bind(approval_id)
                .fetch_optional(pool)
                .await
                .map_err(unavailable)?;
            row.map(|row| approval_row(&row)).transpose()
        })
    }

    pub(super) async fn approvals_for(
        &self,
        scope: &Scope,
        action: &str,
        spec_hash: &str,
    ) -> Result<Vec<ApprovalRow>, StoreError> {
        let sql = format!(
            "SELECT {APPROVAL_COLUMNS} FROM approvals WHERE org_id = $1 AND project_id = $2 \
             AND environment_id = $3 AND action = $4 AND spec_hash = $5 \
             ORDER BY created_at DESC, approval_id DESC"
        );
        on_backend!(Db, self, pool => {
            let rows = sqlx::query(&sql)
                .bind(scope.org_id.as_str())
                .bind(scope.project_id.as_str())
                .bind(scope.environment_id.as_str())
                .bind(action)
                .bind(spec_hash)
                .fetch_all(pool)
                .await
                .map_err(unavailable)?;
            rows.iter().map(approval_row).collect()
        })
    }

    /// Entries after `after_seq` matching `filter`, in seq order, at most `limit`.
    pub(super) async fn list(
        &self,
        filter: &ListFilter,
        after_seq: u64,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let after = i64::try_from(after_seq).map_err(|_| StoreError::InvalidPageToken)?;
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

    /// Walks the chain up to the recorded head, `VERIFY_CHUNK` entries at a time.
    pub(super) async fn verify(&self) -> Result<VerifyReport, StoreError> {
        const HEAD: &str = "SELECT seq, entry_hash FROM audit_head WHERE id = 1";
        let sql = format!(
            "SELECT {ENTRY_COLUMNS} FROM audit_entries WHERE seq > $1 AND seq <= $2 \
             ORDER BY seq LIMIT $3"
        );
        let (head_seq, head_hash): (i64, String) = on_backend!(Db, self, pool => {
            sqlx::query_as(HEAD).fetch_one(pool).await
        })
        .map_err(unavailable)?;

        let mut walk = ChainWalk::new();
        loop {
            let chunk: Vec<RawEntry> = on_backend!(Db, self, pool => {
                let rows = sqlx::query(&sql)
                    .bind(walk.last_seq)
                    .bind(head_seq)
                    .bind(VERIFY_CHUNK)
                    .fetch_all(pool)
                    .await
                    .map_err(unavailable)?;
                rows.iter().map(raw_entry).collect::<Result<_, _>>().map_err(unavailable)?
            });
            let done = (chunk.len() as i64) < VERIFY_CHUNK;
            for raw in &chunk {
                walk.check(raw);
            }
            if done {
                break;
            }
        }
        let mut report = walk.finish(head_seq, &head_hash);
        // Rows past the head were never acknowledged by this store: someone inserted them.
        const PAST_HEAD: &str = "SELECT MIN(seq) FROM audit_entries WHERE seq > $1";
        let (past_head,): (Option<i64>,) = on_backend!(Db, self, pool => {
            sqlx::query_as(PAST_HEAD).bind(head_seq).fetch_one(pool).await
        })
        .map_err(unavailable)?;
        if let (true, Some(seq)) = (report.ok, past_head) {
            report.ok = false;
            report.first_bad_seq = u64::try_from(seq).unwrap_or_default();
        }
        Ok(report)
    }
}

// === impl WriteTx ===

impl WriteTx {
    /// The chain head (seq 0 and 64 zeros when empty); on PostgreSQL this locks it.
    pub(super) async fn head(&mut self) -> Result<(u64, String), sqlx::Error> {
        let (seq, hash): (i64, String) = match self {
            WriteTx::Sqlite(c) => {
                sqlx::query_as("SELECT seq, entry_hash FROM audit_head WHERE id = 1")
                    .fetch_one(&mut **c)
                    .await?
            }
            WriteTx::Postgres(c) => {
                sqlx::query_as("SELECT seq, entry_hash FROM audit_head WHERE id = 1 FOR UPDATE")
                    .fetch_one(&mut **c)
                    .await?
            }
        };
        let seq = u64::try_from(seq).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
        Ok((seq, hash))
    }

    pub(super) async fn set_head(&mut self, seq: u64, hash: &str) -> Result<(), sqlx::Error> {
        let seq = seq_i64(seq)?;
        on_backend!(WriteTx, self, c => {
            sqlx::query("UPDATE audit_head SET seq = $1, entry_hash = $2 WHERE id = 1")
                .bind(seq)
                .bind(hash)
                .execute(&mut **c)
                .await?;
        });
        Ok(())
    }

    /// Fingerprint, admission and decision id stored for a caller's request_id.
    pub(super) async fn idempotency(
        &mut self,
        caller: &str,
        request_id: &str,
    ) -> Result<Option<(String, Option<Vec<u8>>, String)>, sqlx::Error> {
        const SQL: &str = "SELECT fingerprint, admission, decision_id FROM idempotency \
                           WHERE caller = $1 AND request_id = $2";
        on_backend!(WriteTx, self, c => {
            sqlx::query_as(SQL).bind(caller).bind(request_id).fetch_optional(&mut **c).await
        })
    }

    pub(super) async fn put_idempotency(
        &mut self,
        key: &super::IdempotencyKey,
        admission: Option<&[u8]>,
        decision_id: &str,
        now: SystemTime,
    ) -> Result<(), sqlx::Error> {
        const SQL: &str = "INSERT INTO idempotency \
            (caller, request_id, fingerprint, admission, decision_id, created_at) \
            VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (caller, request_id) DO UPDATE SET \
            fingerprint = excluded.fingerprint, admission = excluded.admission, \
            decision_id = excluded.decision_id";
        on_backend!(WriteTx, self, c => {
            sqlx::query(SQL)
                .bind(key.caller.as_str())
                .bind(key.request_id.as_str())
                .bind(key.fingerprint.as_str())
                .bind(admission)
                .bind(decision_id)
                .bind(to_micros(now))
                .execute(&mut **c)
                .await?;
        });
        Ok(())
    }

    pub(super) async fn entry_exists(&mut self, entry_id: &str) -> Result<bool, sqlx::Error> {
        const SQL: &str = "SELECT seq FROM audit_entries WHERE entry_id = $1";
        let found: Option<(i64,)> = on_backend!(WriteTx, self, c => {
            sqlx::query_as(SQL).bind(entry_id).fetch_optional(&mut **c).await?
        });
        Ok(found.is_some())
    }

    /// State, uses and max_uses of an approval.
    pub(super) async fn approval_uses(
        &mut self,
        approval_id: &str,
    ) -> Result<Option<(String, u32, u32)>, sqlx::Error> {
        const SQL: &str = "SELECT state, uses, max_uses FROM approvals WHERE approval_id = $1";
        let row: Option<(String, i64, i64)> = on_backend!(WriteTx, self, c => {
            sqlx::query_as(SQL).bind(approval_id).fetch_optional(&mut **c).await?
        });
        Ok(row.map(|(state, uses, max_uses)| (state, clamp_u32(uses), clamp_u32(max_uses))))
    }

    /// Inserts a row with version 1; false when the id exists.
    pub(super) async fn insert_approval(&mut self, row: &ApprovalRow) -> Result<bool, sqlx::Error> {
        let done = on_backend!(WriteTx, self, c => {
            bind_approval!(sqlx::query(INSERT_APPROVAL), row, 1_i64).execute(&mut **c).await?
                .rows_affected()
        });
        Ok(done == 1)
    }

    /// Replaces a row if its version is `expected_version`; false otherwise.
    pub(super) async fn update_approval(
        &mut self,
        row: &ApprovalRow,
        expected_version: i64,
    ) -> Result<bool, sqlx::Error> {
        let done = on_backend!(WriteTx, self, c => {
            bind_approval!(sqlx::query(UPDATE_APPROVAL), row, expected_version)
                .execute(&mut **c).await?.rows_affected()
        });
        Ok(done == 1)
    }

    /// Consumes one use: bumps an existing row, or records an offline credential's approval.
    pub(super) async fn consume_use(
        &mut self,
        approval: &ApprovalUse,
        exists: bool,
        now: SystemTime,
    ) -> Result<(), sqlx::Error> {
        if exists {
            const SQL: &str = "UPDATE approvals SET uses = uses + 1, version = version + 1, \
                               updated_at = $2 WHERE approval_id = $1";
            on_backend!(WriteTx, self, c => {
                sqlx::query(SQL)
                    .bind(approval.approval_id.as_str())
                    .bind(to_micros(now))
                    .execute(&mut **c)
                    .await?;
            });
            return Ok(());
        }
        let row = ApprovalRow {
            approval_id: approval.approval_id.clone(),
            state: "approved".to_owned(),
            scope: approval.scope.clone(),
            action: String::new(),
            spec_hash: approval.spec_hash.clone(),
            capabilities: approval.capabilities.clone(),
            requested_by: String::new(),
            initiated_by: String::new(),
            justification: String::new(),
            created_at: now,
            expires_at: approval.expires_at,
            approvals_required: 1,
            approvers: approval.approvers.clone(),
            credentials: Vec::new(),
            uses: 1,
            max_uses: approval.max_uses,
            decision_reason: String::new(),
            version: 1,
            updated_at: now,
        };
        self.insert_approval(&row).await.map(|_| ())
    }

    /// Inserts the entry at `seq` after `prev_hash`.
    pub(super) async fn insert_entry(
        &mut self,
        seq: u64,
        entry: &NewEntry,
        prev_hash: &str,
        now: SystemTime,
    ) -> Result<Receipt, sqlx::Error> {
        let micros = to_micros(now);
        let entry_hash = chain::entry_hash(seq, micros, entry, prev_hash);
        let sql = format!(
            "INSERT INTO audit_entries ({ENTRY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, \
             $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)"
        );
        let seq_value = seq_i64(seq)?;
        on_backend!(WriteTx, self, c => {
            sqlx::query(&sql)
                .bind(seq_value)
                .bind(entry.entry_id.as_str())
                .bind(micros)
                .bind(entry.actor.as_str())
                .bind(entry.actor_cert_sha256.as_str())
                .bind(entry.initiated_by.as_str())
                .bind(entry.action.as_str())
                .bind(entry.scope.org_id.as_str())
                .bind(entry.scope.project_id.as_str())
                .bind(entry.scope.environment_id.as_str())
                .bind(entry.spec_hash.as_str())
                .bind(canonical_list(&entry.capabilities))
                .bind(canonical_list(&entry.approval_ids))
                .bind(canonical_list(&entry.approvers))
                .bind(entry.outcome.as_str())
                .bind(entry.reason.as_str())
                .bind(entry.grpc_code.as_str())
                .bind(entry.request_id.as_str())
                .bind(entry.detail.as_str())
                .bind(prev_hash)
                .bind(entry_hash.as_str())
                .execute(&mut **c)
                .await?;
        });
        Ok(Receipt {
            seq,
            entry_id: entry.entry_id.clone(),
            entry_hash,
            recorded_at: from_micros(micros),
        })
    }

    /// Runs a statement that takes no binds (savepoints).
    pub(super) async fn execute(&mut self, sql: &'static str) -> Result<(), sqlx::Error> {
        on_backend!(WriteTx, self, c => {
            sqlx::query(sql).execute(&mut **c).await?;
        });
        Ok(())
    }

    pub(super) async fn commit(self) -> Result<(), sqlx::Error> {
        on_backend!(WriteTx, self, c => c.commit().await)
    }

    pub(super) async fn rollback(self) -> Result<(), sqlx::Error> {
        on_backend!(WriteTx, self, c => c.rollback().await)
    }
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

    /// True when the stored hash is the hash of the stored content. Lists must be stored in
    /// their canonical text, so the hash covers exactly the bytes in the database.
    fn hash_matches(&self) -> bool {
        let Some(lists) = self.parse_lists() else {
            return false;
        };
        let stored = [&self.capabilities, &self.approval_ids, &self.approvers];
        if lists
            .iter()
            .zip(stored)
            .any(|(list, text)| canonical_list(list) != *text)
        {
            return false;
        }
        let Ok(seq) = u64::try_from(self.seq) else {
            return false;
        };
        let entry = self.new_entry(lists);
        chain::entry_hash(seq, self.recorded_at, &entry, &self.prev_hash) == self.entry_hash
    }
}

/// The state of a verification walk.
struct ChainWalk {
    last_seq: i64,
    prev_hash: String,
    checked: u64,
    first_bad_seq: u64,
}

// === impl ChainWalk ===

impl ChainWalk {
    fn new() -> Self {
        Self {
            last_seq: 0,
            prev_hash: GENESIS_HASH.to_owned(),
            checked: 0,
            first_bad_seq: 0,
        }
    }

    /// Checks position, link and hash of the next stored row. A row after a gap is the bad
    /// one (its predecessor is missing); an edited or moved row fails its own hash.
    fn check(&mut self, raw: &RawEntry) {
        self.checked += 1;
        let in_place = raw.seq == self.last_seq + 1;
        let linked = raw.prev_hash == self.prev_hash;
        if self.first_bad_seq == 0 && !(in_place && linked && raw.hash_matches()) {
            self.first_bad_seq = u64::try_from(raw.seq).unwrap_or(0);
        }
        self.last_seq = raw.seq;
        self.prev_hash.clone_from(&raw.entry_hash);
    }

    /// The report, comparing the last row with the recorded head (which catches a deleted
    /// newest entry: the head's seq is then reported).
    fn finish(mut self, head_seq: i64, head_hash: &str) -> VerifyReport {
        if self.first_bad_seq == 0 && (self.last_seq != head_seq || self.prev_hash != head_hash) {
            let missing = if self.last_seq < head_seq {
                self.last_seq + 1
            } else {
                head_seq
            };
            self.first_bad_seq = u64::try_from(missing.max(1)).unwrap_or(1);
        }
        VerifyReport {
            ok: self.first_bad_seq == 0,
            entries_checked: self.checked,
            first_bad_seq: self.first_bad_seq,
            head_hash: self.prev_hash,
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

/// Reads an approval row on either backend.
fn approval_row<R: Row>(row: &R) -> Result<ApprovalRow, StoreError>
where
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'a> &'a str: ColumnIndex<R>,
{
    let text = |column: &str| row.try_get::<String, _>(column).map_err(unavailable);
    let int = |column: &str| row.try_get::<i64, _>(column).map_err(unavailable);
    let list = |column: &str| {
        serde_json::from_str::<Vec<String>>(&text(column)?).map_err(|_| {
            tracing::warn!(column, "approval row has a malformed list column");
            StoreError::Unavailable
        })
    };
    Ok(ApprovalRow {
        approval_id: text("approval_id")?,
        state: text("state")?,
        scope: Scope {
            org_id: text("org_id")?,
            project_id: text("project_id")?,
            environment_id: text("environment_id")?,
        },
        action: text("action")?,
        spec_hash: text("spec_hash")?,
        capabilities: list("capabilities")?,
        requested_by: text("requested_by")?,
        initiated_by: text("initiated_by")?,
        justification: text("justification")?,
        created_at: from_micros(int("created_at")?),
        expires_at: from_micros(int("expires_at")?),
        approvals_required: clamp_u32(int("approvals_required")?),
        approvers: list("approvers")?,
        credentials: list("credentials")?,
        uses: clamp_u32(int("uses")?),
        max_uses: clamp_u32(int("max_uses")?),
        decision_reason: text("decision_reason")?,
        version: int("version")?,
        updated_at: from_micros(int("updated_at")?),
    })
}

/// Logs a storage error and hides its text from callers.
fn unavailable(error: sqlx::Error) -> StoreError {
    tracing::warn!(error = %error, "audit store query failed");
    StoreError::Unavailable
}

fn clamp_u32(value: i64) -> u32 {
    u32::try_from(value.max(0)).unwrap_or(u32::MAX)
}

fn seq_i64(seq: u64) -> Result<i64, sqlx::Error> {
    i64::try_from(seq).map_err(|e| sqlx::Error::Encode(Box::new(e)))
}
