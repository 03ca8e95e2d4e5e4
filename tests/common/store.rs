//! Audit store backends for tests: a SQLite file in a temporary directory always, and a fresh
//! PostgreSQL database per test when `ADMISSION_TEST_DATABASE_URL` names a server; raw SQL on a
//! connection of its own; and a lock, held from another connection, that every audit write
//! waits on.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use admission_server::store::{AuditStore, StoreOptions};
use sqlx::Connection;
use tempfile::TempDir;

/// The environment variable naming an administrative PostgreSQL URL.
pub const PG_ENV: &str = "ADMISSION_TEST_DATABASE_URL";

/// Where a test's store lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file in a temporary directory of its own.
    Sqlite,
    /// A database of its own on the PostgreSQL server of [`PG_ENV`].
    Postgres,
}

/// One test's own, empty database. A PostgreSQL database is dropped by [`TestDb::cleanup`],
/// or when the value is dropped (a panicking test); a SQLite directory goes with the value.
pub struct TestDb {
    /// The store URL, for `AuditStore::open` or a server's `database_url`.
    pub url: String,
    place: Place,
}

/// Another connection holding the lock every audit write needs.
pub enum StoreLock {
    /// `BEGIN EXCLUSIVE` on the same SQLite file.
    Sqlite(sqlx::SqliteConnection),
    /// `LOCK TABLE audit_head IN ACCESS EXCLUSIVE MODE` in an open transaction.
    Postgres(sqlx::PgConnection),
}

/// Where a [`TestDb`] lives, and what dropping it must clean up.
enum Place {
    Sqlite(TempDir),
    Postgres {
        admin_url: String,
        name: String,
        dropped: bool,
    },
}

static NEXT_DATABASE: AtomicU64 = AtomicU64::new(0);

// === impl Backend ===

impl Backend {
    /// A fresh database on this backend for `test`, or `None` (with a notice) for PostgreSQL
    /// when [`PG_ENV`] is unset. A set but unreachable server fails the test.
    pub async fn database(self, test: &str) -> Option<TestDb> {
        match self {
            Backend::Sqlite => Some(TestDb::sqlite()),
            Backend::Postgres => TestDb::postgres(test).await,
        }
    }
}

// === impl TestDb ===

impl TestDb {
    /// A fresh SQLite file.
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let url = format!("sqlite://{}", dir.path().join("admission.db").display());
        Self {
            url,
            place: Place::Sqlite(dir),
        }
    }

    /// A fresh PostgreSQL database, or `None` (with a notice) when [`PG_ENV`] is unset. A set
    /// but unreachable server fails the test.
    pub async fn postgres(test: &str) -> Option<Self> {
        let Ok(admin_url) = std::env::var(PG_ENV) else {
            println!("skipping PostgreSQL run of {test}: {PG_ENV} is not set");
            return None;
        };
        let name = unique_name();
        let mut admin = sqlx::PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("{PG_ENV} is set but PostgreSQL is unreachable: {e}"));
        sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .expect("create test database");
        admin.close().await.expect("close admin connection");
        Some(Self {
            url: with_database(&admin_url, &name),
            place: Place::Postgres {
                admin_url,
                name,
                dropped: false,
            },
        })
    }

    /// The backend this database is on.
    pub fn backend(&self) -> Backend {
        match self.place {
            Place::Sqlite(_) => Backend::Sqlite,
            Place::Postgres { .. } => Backend::Postgres,
        }
    }

    /// Whether this is the PostgreSQL backend.
    pub fn is_postgres(&self) -> bool {
        self.backend() == Backend::Postgres
    }

    /// Runs raw SQL on a separate connection (to tamper with rows, as an attacker would).
    pub async fn execute(&self, sql: &str) {
        execute_sql(self.backend(), &self.url, sql).await;
    }

    /// Takes the write lock of this store from another connection.
    pub async fn lock(&self) -> StoreLock {
        StoreLock::acquire(self.backend(), &self.url).await
    }

    /// Drops the PostgreSQL database, closing whatever still uses it (the SQLite directory
    /// goes with `self`).
    pub async fn cleanup(mut self) {
        if let Place::Postgres {
            admin_url,
            name,
            dropped,
        } = &mut self.place
        {
            drop_database(admin_url, name)
                .await
                .unwrap_or_else(|e| panic!("drop test database {name}: {e}"));
            *dropped = true;
        }
    }

    /// Opens a store with a bound generous enough for a loaded test machine.
    pub async fn open(&self) -> AuditStore {
        self.open_with(Duration::from_secs(30)).await
    }

    /// Opens a store with this durable timeout.
    pub async fn open_with(&self, durable_timeout: Duration) -> AuditStore {
        let options = StoreOptions {
            durable_timeout,
            ..StoreOptions::default()
        };
        AuditStore::open(&self.url, options)
            .await
            .expect("open store")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Place::Postgres {
            admin_url,
            name,
            dropped: false,
        } = &self.place
        else {
            return;
        };
        let (admin_url, name) = (admin_url.clone(), name.clone());
        // Drop runs inside the test's runtime, which cannot be blocked on: use a thread.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime
                .block_on(drop_database(&admin_url, &name))
                .map_err(std::io::Error::other)
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop a test database of {PG_ENV}");
        }
    }
}

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

/// Runs `sql` on a connection of its own to the store at `url`, as someone editing the
/// database by hand would.
pub async fn execute_sql(backend: Backend, url: &str, sql: &str) {
    match backend {
        Backend::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
            sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
            conn.close().await.unwrap();
        }
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
            sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
            conn.close().await.unwrap();
        }
    }
}

/// A database name no other test of any running binary uses.
fn unique_name() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!(
        "admission_test_{}_{nanos:x}_{}",
        std::process::id(),
        NEXT_DATABASE.fetch_add(1, Ordering::Relaxed)
    )
}

/// `DROP DATABASE … WITH (FORCE)` through the administrative URL.
async fn drop_database(admin_url: &str, name: &str) -> Result<(), sqlx::Error> {
    let mut admin = sqlx::PgConnection::connect(admin_url).await?;
    sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut admin)
        .await?;
    admin.close().await
}

/// `url` with its database path replaced by `name`.
pub fn with_database(url: &str, name: &str) -> String {
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

/// Generates `<scenario>::sqlite` and `<scenario>::postgres` tests, each running
/// `scenario(&TestDb)` on a fresh database of its backend.
#[macro_export]
macro_rules! on_both_backends {
    ($($scenario:ident),* $(,)?) => {
        $(
            mod $scenario {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    let db = $crate::common::store::TestDb::sqlite();
                    super::$scenario(&db).await;
                    db.cleanup().await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    let Some(db) =
                        $crate::common::store::TestDb::postgres(stringify!($scenario)).await
                    else {
                        return;
                    };
                    super::$scenario(&db).await;
                    db.cleanup().await;
                }
            }
        )*
    };
}

/// Generates `sqlite::<scenario>` and `postgres::<scenario>` tests, each running
/// `scenario(Backend)`.
#[macro_export]
macro_rules! per_backend {
    ($($scenario:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario($crate::common::store::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario($crate::common::store::Backend::Postgres).await;
                }
            )*
        }
    };
}
