//! SQL for both backends. The statements are shared: SQLite accepts PostgreSQL's `$N`
//! placeholders, `ON CONFLICT … DO UPDATE/NOTHING` and `excluded.`; only the chain lock differs
//! (`BEGIN IMMEDIATE` on SQLite, `SELECT … FOR UPDATE` on PostgreSQL). Reads go through sqlx's
//! pools; on SQLite the writer's statements run on a connection of its own ([`args`]), and
//! Verify reads through another ([`walk`]), so neither pays sqlx's per-statement hand-off to
//! its worker thread.

use std::str::FromStr;
use std::sync::Arc;
use std::time::SystemTime;

use args::{PgTx, SqliteTx};
use local::LocalSqlite;

pub(super) use arrays::BatchRows;
pub(super) use rows::{ChainedEntry, Head, KeyWrite, StoredApproval, StoredKey};
use sqlx::migrate::Migrator;
use sqlx::pool::PoolOptions;
use sqlx::postgres::{PgConnectOptions, PgPool};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqliteSynchronous};
use sqlx::{ColumnIndex, Decode, Postgres, Row, Sqlite, Type};
pub(super) use tree::decode_entry_hash;

use super::chain::{self, GENESIS_HASH, canonical_list};
use super::{
    ApprovalRow, AuditEntry, ListFilter, NewEntry, Scope, StoreError, StoreOptions, VerifyReport,
    from_micros, to_micros,
};

static SQLITE_MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

/// A connection pool on one of the two backends; on SQLite also the store's own connections
/// ([`LocalSqlite`]): the one the writer writes on, and those of the point reads.
#[derive(Clone, Debug)]
pub(super) enum Db {
    Sqlite(SqlitePool, Arc<LocalSqlite>),
    Postgres(PgPool),
}

/// A writing transaction holding the chain lock.
pub(super) enum WriteTx {
    Sqlite(SqliteTx),
    Postgres(PgTx),
}

/// Runs `$body` with `$c` bound to the backend-specific pool of `$value`.
macro_rules! on_backend {
    ($enum:ident, $value:expr, $c:ident => $body:expr) => {
        match $value {
            $enum::Sqlite($c, ..) => $body,
            $enum::Postgres($c) => $body,
        }
    };
}

// === impl Db ===

impl Db {
    /// Connects, configures durability and runs the embedded migrations.
    pub(super) async fn connect(url: &str, options: &StoreOptions) -> Result<Self, StoreError> {
        let open = |e: &dyn std::fmt::Display| StoreError::Open(e.to_string());
        if url.starts_with("sqlite:") {
            // Verify and point reads open connections of the store's own to the file
            // (`LocalSqlite`), and a trail that vanishes with the process is not an audit trail.
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
            let file = pool.connect_options().get_filename().to_owned();
            let local = LocalSqlite::open(&file, options).map_err(|e| open(&e))?;
            Ok(Db::Sqlite(pool, Arc::new(local)))
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
    /// by `timeout` (on SQLite by the write connection's busy timeout, the same bound).
    pub(super) async fn begin_write(
        &self,
        timeout: std::time::Duration,
    ) -> Result<WriteTx, sqlx::Error> {
        match self {
            Db::Sqlite(_, local) => Ok(WriteTx::Sqlite(SqliteTx::begin(
                local.writer.clone().lock_owned().await,
            )?)),
            Db::Postgres(pool) => {
                // One round trip: the bound, then the chain lock, so that the batch's reads
                // (statements after it) see everything committed before the lock was granted.
                let millis = timeout.as_millis().max(1);
                let begin = format!(
                    "BEGIN; SET LOCAL statement_timeout = {millis}; \
                     SELECT 1 FROM audit_head WHERE id = 1 FOR UPDATE"
                );
                let tx = PgTx::begin(pool, &begin).await?;
                Ok(WriteTx::Postgres(tx))
            }
        }
    }

    /// Checks the store is writable: takes the chain lock, touches the head, rolls back.
    pub(super) async fn probe(&self, timeout: std::time::Duration) -> Result<(), sqlx::Error> {
        let mut tx = self.begin_write(timeout).await?;
        tx.head().await?;
        tx.execute("UPDATE audit_head SET seq = seq WHERE id = 1", &[])
            .await?;
        tx.rollback().await
    }

    /// Whether this store writes on a connection of its own (SQLite), which blocks the thread
    /// that uses it.
    pub(super) fn writes_blocking(&self) -> bool {
        matches!(self, Db::Sqlite(..))
    }
}

// === impl WriteTx ===

impl WriteTx {
    pub(super) async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            WriteTx::Sqlite(tx) => tx.commit(),
            WriteTx::Postgres(tx) => tx.commit().await,
        }
    }

    pub(super) async fn rollback(self) -> Result<(), sqlx::Error> {
        match self {
            WriteTx::Sqlite(tx) => tx.rollback(),
            WriteTx::Postgres(tx) => tx.rollback().await,
        }
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
mod args;
mod arrays;
mod batch;
mod derived;
mod entries;
mod idempotency;
mod local;
pub(super) mod reach;
mod rows;
mod tree;
mod walk;
