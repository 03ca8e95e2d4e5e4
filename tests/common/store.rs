//! Audit store backends for end-to-end tests: a fresh PostgreSQL database per test (when
//! `ADMISSION_TEST_DATABASE_URL` is set) and a lock, held from another connection, that every
//! audit write waits on.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{SystemTime, UNIX_EPOCH},
};

use sqlx::Connection;

/// The environment variable naming an administrative PostgreSQL URL.
pub const PG_ENV: &str = "ADMISSION_TEST_DATABASE_URL";

/// Where a test's store lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// The SQLite file of the test server's directory.
    Sqlite,
    /// A database of its own on the PostgreSQL server of [`PG_ENV`].
    Postgres,
}

/// A fresh PostgreSQL database for one test, dropped by [`PgDatabase::drop_database`].
pub struct PgDatabase {
    admin_url: String,
    name: String,
    /// URL of the new database.
    pub url: String,
}

/// Another connection holding the lock every audit write needs.
pub enum StoreLock {
    /// `BEGIN EXCLUSIVE` on the same SQLite file.
    Sqlite(sqlx::SqliteConnection),
    /// `LOCK TABLE audit_head IN ACCESS EXCLUSIVE MODE` in an open transaction.
    Postgres(sqlx::PgConnection),
}

static NEXT_DATABASE: AtomicU64 = AtomicU64::new(0);

// === impl StoreLock ===

impl StoreLock {
    /// Takes the write lock of the store at `url`.
    pub async fn acquire(backend: Backend, url: &str) -> Self {
        match backend {
            Backend::Sqlite => {
                let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
                sqlx::raw_sql("BEGIN EXCLUSIVE")
                    .execute(&mut conn)
                    .await
                    .unwrap();
                StoreLock::Sqlite(conn)
            }
            Backend::Postgres => {
                let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
                sqlx::raw_sql("BEGIN; LOCK TABLE audit_head IN ACCESS EXCLUSIVE MODE")
                    .execute(&mut conn)
                    .await
                    .unwrap();
                StoreLock::Postgres(conn)
            }
        }
    }

    /// Rolls back and closes the locking connection.
    pub async fn release(self) {
        match self {
            StoreLock::Sqlite(mut conn) => {
                sqlx::raw_sql("ROLLBACK").execute(&mut conn).await.unwrap();
                conn.close().await.unwrap();
            }
            StoreLock::Postgres(mut conn) => {
                sqlx::raw_sql("ROLLBACK").execute(&mut conn).await.unwrap();
                conn.close().await.unwrap();
            }
        }
    }
}

// === impl PgDatabase ===

impl PgDatabase {
    /// A fresh database, or `None` (with a notice) when [`PG_ENV`] is unset. A set but
    /// unreachable server fails the test.
    pub async fn create(test: &str) -> Option<Self> {
        let Ok(admin_url) = std::env::var(PG_ENV) else {
            println!("skipping PostgreSQL run of {test}: {PG_ENV} is not set");
            return None;
        };
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let name = format!(
            "admission_e2e_{}_{nanos:x}_{}",
            std::process::id(),
            NEXT_DATABASE.fetch_add(1, Ordering::Relaxed)
        );
        let mut admin = sqlx::PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("{PG_ENV} is set but PostgreSQL is unreachable: {e}"));
        sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .unwrap();
        admin.close().await.unwrap();
        let url = with_database(&admin_url, &name);
        Some(Self {
            admin_url,
            name,
            url,
        })
    }

    /// Drops the database, closing whatever still uses it.
    pub async fn drop_database(self) {
        let mut admin = sqlx::PgConnection::connect(&self.admin_url).await.unwrap();
        sqlx::raw_sql(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&mut admin)
        .await
        .unwrap();
        admin.close().await.unwrap();
    }
}

/// `url` with its database path replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(i) => &base[..authority_start + i],
        None => base,
    };
    format!("{base}/{name}{query}")
}
