//! SQL for both backends. The statements are shared: SQLite accepts PostgreSQL's `$N`
//! placeholders, `ON CONFLICT … DO UPDATE/NOTHING` and `excluded.`; only the chain lock differs
//! (`BEGIN IMMEDIATE` on SQLite, `SELECT … FOR UPDATE` on PostgreSQL).

use std::str::FromStr;
use std::time::SystemTime;

pub(super) use batch::{ChainedEntry, Head, KeyWrite, StoredApproval, StoredKey};
use sqlx::migrate::Migrator;
use sqlx::pool::PoolOptions;
use sqlx::postgres::{PgConnectOptions, PgPool};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqliteSynchronous};
use sqlx::{ColumnIndex, Decode, Postgres, Row, Sqlite, Transaction, Type};
pub(super) use tree::decode_entry_hash;

use super::chain::{self, GENESIS_HASH, canonical_list};
use super::{
    ApprovalRow, AuditEntry, ListFilter, NewEntry, Scope, StoreError, StoreOptions, VerifyReport,
    from_micros, to_micros,
};

static SQLITE_MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

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

/// Runs `$body` with `$c` bound to the backend-specific pool (or transaction) of `$value`.
/// With `$sql` named, the SQLite arm sees it with its numbered parameters made anonymous
/// ([`anonymous_params`]).
macro_rules! on_backend {
    ($enum:ident, $value:expr, $c:ident => $body:expr) => {
        match $value {
            $enum::Sqlite($c) => $body,
            $enum::Postgres($c) => $body,
        }
    };
    ($enum:ident, $value:expr, $c:ident, $sql:ident => $body:expr) => {
        match $value {
            $enum::Sqlite($c) => {
                let $sql = $crate::store::db::anonymous_params(&$sql);
                $body
            }
            $enum::Postgres($c) => $body,
        }
    };
}

/// `sql` with its numbered parameters `$1, $2, …` written `?`, when each appears once and in
/// that order (else `sql` as it is). SQLite finds a numbered parameter's name by walking a
/// list, once for every parameter bound, so binding a multi-row statement of n numbered
/// parameters costs O(n²); anonymous ones are bound by position.
pub(in crate::store) fn anonymous_params(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut expected = 1usize;
    let mut rest = sql;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let digits = rest[at + 1..]
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len() - at - 1);
        match rest[at + 1..at + 1 + digits].parse::<usize>() {
            Ok(n) if n == expected => out.push('?'),
            _ => return sql.to_owned(),
        }
        expected += 1;
        rest = &rest[at + 1 + digits..];
    }
    out.push_str(rest);
    out
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
            // Verify reads the file through a connection of its own (`walk::on_file`), and a
            // trail that vanishes with the process is not an audit trail.
            if url.contains(":memory:") || url.contains("mode=memory") {
                return Err(StoreError::Open(
                    "an in-memory SQLite database cannot hold the audit trail; \
                     name a file (sqlite://PATH)"
                        .to_owned(),
                ));
            }
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
            let pool = match PoolOptions::<Postgres>::new()
                .max_connections(options.max_connections.max(2))
                .acquire_timeout(options.durable_timeout)
                .connect_with(connect)
                .await
            {
                Ok(pool) => pool,
                Err(error) => {
                    let timeout = options.durable_timeout.max(CONNECT_CHECK_TIMEOUT);
                    let described = reach::describe_open_failure(url, &error, timeout).await;
                    return Err(StoreError::Open(described));
                }
            };
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
}

// === impl WriteTx ===

impl WriteTx {
    pub(super) async fn commit(self) -> Result<(), sqlx::Error> {
        on_backend!(WriteTx, self, c => c.commit().await)
    }

    pub(super) async fn rollback(self) -> Result<(), sqlx::Error> {
        on_backend!(WriteTx, self, c => c.rollback().await)
    }
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

/// How long the check behind a failed pool may take to find the cause.
const CONNECT_CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

mod approvals;
mod batch;
mod derived;
mod entries;
mod idempotency;
pub(super) mod reach;
mod tree;
mod walk;
