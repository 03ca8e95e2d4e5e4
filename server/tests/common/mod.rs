//! Test databases for the audit store: a SQLite file in a temporary directory always, and a
//! fresh PostgreSQL database per test when `ADMISSION_TEST_DATABASE_URL` names a server.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use admission_server::store::{Append, AuditStore, IdempotencyKey, NewEntry, Scope, StoreOptions};
use sqlx::Connection;

/// The environment variable naming an administrative PostgreSQL URL.
pub const PG_ENV: &str = "ADMISSION_TEST_DATABASE_URL";

/// One test's own database.
pub struct TestDb {
    /// What `AuditStore::open` gets.
    pub url: String,
    kind: Kind,
}

enum Kind {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres { admin_url: String, name: String },
}

impl TestDb {
    /// A fresh SQLite file.
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let url = format!("sqlite://{}", dir.path().join("audit.db").display());
        Self {
            url,
            kind: Kind::Sqlite(dir),
        }
    }

    /// A fresh PostgreSQL database, or `None` (with a notice) when the variable is unset.
    /// A set but unreachable server fails the test.
    pub async fn postgres(test: &str) -> Option<Self> {
        let Ok(admin_url) = std::env::var(PG_ENV) else {
            println!("skipping PostgreSQL run of {test}: {PG_ENV} is not set");
            return None;
        };
        let name = format!("admission_test_{}", uuid::Uuid::now_v7().simple());
        let mut admin = sqlx::PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("{PG_ENV} is set but PostgreSQL is unreachable: {e}"));
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .expect("create test database");
        admin.close().await.expect("close admin connection");
        Some(Self {
            url: with_database(&admin_url, &name),
            kind: Kind::Postgres { admin_url, name },
        })
    }

    /// Whether this is the PostgreSQL backend.
    pub fn is_postgres(&self) -> bool {
        matches!(self.kind, Kind::Postgres { .. })
    }

    /// Runs raw SQL on a separate connection (to tamper with rows, as an attacker would).
    pub async fn execute(&self, sql: &str) {
        match self.kind {
            Kind::Sqlite(_) => {
                let mut conn = sqlx::SqliteConnection::connect(&self.url).await.unwrap();
                sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
                conn.close().await.unwrap();
            }
            Kind::Postgres { .. } => {
                let mut conn = sqlx::PgConnection::connect(&self.url).await.unwrap();
                sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
                conn.close().await.unwrap();
            }
        }
    }

    /// Drops the PostgreSQL database (the SQLite directory goes with `self`).
    pub async fn cleanup(self) {
        if let Kind::Postgres { admin_url, name } = &self.kind {
            let mut admin = sqlx::PgConnection::connect(admin_url).await.unwrap();
            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut admin)
                .await
                .unwrap();
            admin.close().await.unwrap();
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

/// The environment most tests use.
pub fn prod() -> Scope {
    scope("acme", "payments", "prod")
}

/// A scope.
pub fn scope(org: &str, project: &str, env: &str) -> Scope {
    Scope {
        org_id: org.to_owned(),
        project_id: project.to_owned(),
        environment_id: env.to_owned(),
    }
}

/// A deploy decision entry.
pub fn entry(entry_id: &str, scope: &Scope, outcome: &str) -> NewEntry {
    NewEntry {
        entry_id: entry_id.to_owned(),
        actor: "spiffe://acme.example/orchestrator/ci".to_owned(),
        actor_cert_sha256: "ab".repeat(32),
        initiated_by: "alice@acme.example".to_owned(),
        action: "deploy.admit".to_owned(),
        scope: scope.clone(),
        spec_hash: format!("sha256:{}", "cd".repeat(32)),
        capabilities: vec!["deploy".to_owned(), "db.migrate".to_owned()],
        approval_ids: vec![],
        approvers: vec![],
        outcome: outcome.to_owned(),
        reason: if outcome == "rejected" {
            "POLICY_DENIED".to_owned()
        } else {
            String::new()
        },
        grpc_code: if outcome == "rejected" {
            "PERMISSION_DENIED".to_owned()
        } else {
            "OK".to_owned()
        },
        request_id: format!("req-{entry_id}"),
        detail: "detail with = and : and\na newline".to_owned(),
    }
}

/// An append of just an entry.
pub fn plain(entry: NewEntry) -> Append {
    Append {
        entry,
        consume: vec![],
        on_refused: None,
        idempotency: None,
        admission: None,
        approval_write: None,
    }
}

/// An idempotency key.
pub fn key(caller: &str, request_id: &str, fingerprint: &str) -> IdempotencyKey {
    IdempotencyKey {
        caller: caller.to_owned(),
        request_id: request_id.to_owned(),
        fingerprint: fingerprint.to_owned(),
    }
}

/// Generates `sqlite` and `postgres` tests running `$scenario(&TestDb)`.
#[macro_export]
macro_rules! on_both_backends {
    ($($scenario:ident),* $(,)?) => {
        $(
            mod $scenario {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    let db = $crate::common::TestDb::sqlite();
                    super::$scenario(&db).await;
                    db.cleanup().await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    let Some(db) = $crate::common::TestDb::postgres(stringify!($scenario)).await
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
