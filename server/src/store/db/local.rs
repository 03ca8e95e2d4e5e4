//! The SQLite connections the store holds itself, next to sqlx's pool: the one the writer
//! writes on, and a few read-only ones for the point reads of the decision path. Through sqlx
//! each statement is handed to a worker thread and its rows handed back; a point read by
//! primary key on a connection of our own runs in microseconds on the calling thread, which
//! is cheaper than the two thread wake-ups it replaces. A read never waits for the writer
//! (write-ahead log), so it blocks its thread only for the read itself.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex as SyncMutex, PoisonError};

use rusqlite::{Connection, OpenFlags};
use tokio::sync::Mutex;

use super::StoreOptions;

/// Idle read connections kept for reuse; more are opened while more reads run at once.
const IDLE_READERS: usize = 4;

/// The store's own connections to one SQLite file.
#[derive(Debug)]
pub(in crate::store) struct LocalSqlite {
    pub writer: Arc<Mutex<Connection>>,
    file: PathBuf,
    busy_timeout: std::time::Duration,
    idle: SyncMutex<Vec<Connection>>,
}

impl LocalSqlite {
    /// Opens the write connection, configured as sqlx configures the pool's: write-ahead log,
    /// `synchronous = FULL`, foreign keys on, waiting for the write lock up to
    /// `durable_timeout`.
    pub(super) fn open(file: &Path, options: &StoreOptions) -> rusqlite::Result<Self> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let writer = Connection::open_with_flags(file, flags)?;
        writer.busy_timeout(options.durable_timeout)?;
        let _mode: String =
            writer.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
        writer.pragma_update(None, "synchronous", "FULL")?;
        writer.pragma_update(None, "foreign_keys", "ON")?;
        // A batch's statements differ by their row count; keep the common sizes prepared.
        writer.set_prepared_statement_cache_capacity(128);
        Ok(Self {
            writer: Arc::new(Mutex::new(writer)),
            file: file.to_owned(),
            busy_timeout: options.durable_timeout,
            idle: SyncMutex::new(Vec::new()),
        })
    }

    /// Runs `read` on an idle read-only connection (opening one if none is idle), on this
    /// thread.
    pub(super) fn read<T>(
        &self,
        read: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        let idle = self.take_idle();
        let connection = match idle {
            Some(connection) => connection,
            None => {
                let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
                let connection = Connection::open_with_flags(&self.file, flags)?;
                connection.busy_timeout(self.busy_timeout)?;
                connection
            }
        };
        let result = read(&connection);
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < IDLE_READERS {
            idle.push(connection);
        }
        result
    }

    fn take_idle(&self) -> Option<Connection> {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
    }
}
