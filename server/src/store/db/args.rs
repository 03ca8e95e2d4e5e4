//! Statements of the writing transaction, written once for both backends: the SQL and its
//! values ([`Arg`]) are built by the caller, and [`WriteTx`] runs them on PostgreSQL through
//! sqlx, or on SQLite through the writer's own connection ([`SqliteTx`]), on the writer's own
//! thread, without a hand-off to another thread per statement.

use std::borrow::Cow;
use std::fmt::Write as _;

use rusqlite::ToSql;
use rusqlite::types::{FromSql, ToSqlOutput, ValueRef};
use sqlx::FromRow;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnection, PgPool, PgRow, Postgres};
use tokio::sync::OwnedMutexGuard;

use super::WriteTx;

/// One bound value.
#[derive(Clone, Debug)]
pub(super) enum Arg<'a> {
    Int(i64),
    Text(Cow<'a, str>),
    Blob(Option<&'a [u8]>),
}

/// A transaction on the SQLite write connection; rolled back when dropped uncommitted.
pub(in crate::store) struct SqliteTx {
    conn: OwnedMutexGuard<rusqlite::Connection>,
    open: bool,
}

/// A transaction on a pooled PostgreSQL connection, begun by one simple query that may also
/// take the chain lock. One dropped open (a failed statement, a cancelled batch) closes its
/// connection, so PostgreSQL rolls it back, rather than return it to the pool mid-transaction;
/// sqlx's own transaction cannot be begun that way and stay safe when its begin fails.
pub(in crate::store) struct PgTx {
    conn: PoolConnection<Postgres>,
    open: bool,
}

/// A row read from the SQLite write connection, as a tuple of its columns in order.
pub(super) trait FromSqlite: Sized {
    fn from_sqlite(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self>;
}

macro_rules! tuple_from_sqlite {
    ($($t:ident $i:tt),+) => {
        impl<$($t: FromSql),+> FromSqlite for ($($t,)+) {
            fn from_sqlite(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
                Ok(($(row.get($i)?,)+))
            }
        }
    };
}

tuple_from_sqlite!(A 0);
tuple_from_sqlite!(A 0, B 1);
tuple_from_sqlite!(A 0, B 1, C 2);
tuple_from_sqlite!(A 0, B 1, C 2, D 3, E 4);
tuple_from_sqlite!(A 0, B 1, C 2, D 3, E 4, F 5);

impl<'a> From<&'a str> for Arg<'a> {
    fn from(text: &'a str) -> Self {
        Arg::Text(Cow::Borrowed(text))
    }
}

impl From<String> for Arg<'_> {
    fn from(text: String) -> Self {
        Arg::Text(Cow::Owned(text))
    }
}

impl From<i64> for Arg<'_> {
    fn from(value: i64) -> Self {
        Arg::Int(value)
    }
}

impl<'a> From<Option<&'a [u8]>> for Arg<'a> {
    fn from(blob: Option<&'a [u8]>) -> Self {
        Arg::Blob(blob)
    }
}

impl ToSql for Arg<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            Arg::Int(value) => ValueRef::Integer(*value),
            Arg::Text(text) => ValueRef::Text(text.as_bytes()),
            Arg::Blob(Some(blob)) => ValueRef::Blob(blob),
            Arg::Blob(None) => ValueRef::Null,
        }))
    }
}

/// `$query` (sqlx, PostgreSQL) with every one of `$args` bound in order.
macro_rules! bind_args {
    ($query:expr, $args:expr) => {{
        let mut query = $query;
        for arg in $args {
            query = match arg {
                Arg::Int(value) => query.bind(*value),
                Arg::Text(text) => query.bind(text.as_ref()),
                Arg::Blob(blob) => query.bind(*blob),
            };
        }
        query
    }};
}

// === impl SqliteTx ===

impl SqliteTx {
    /// Takes the write lock of the database file now (`BEGIN IMMEDIATE`, waiting up to the
    /// connection's busy timeout), so no other store on the same file can interleave between
    /// reading and moving the head.
    pub(super) fn begin(conn: OwnedMutexGuard<rusqlite::Connection>) -> Result<Self, sqlx::Error> {
        conn.execute_batch("BEGIN IMMEDIATE")
            .map_err(from_rusqlite)?;
        Ok(Self { conn, open: true })
    }

    pub(super) fn commit(mut self) -> Result<(), sqlx::Error> {
        // A failed COMMIT leaves `open` set, so dropping rolls back whatever is left of it.
        self.conn.execute_batch("COMMIT").map_err(from_rusqlite)?;
        self.open = false;
        Ok(())
    }

    pub(super) fn rollback(mut self) -> Result<(), sqlx::Error> {
        self.open = false;
        self.conn.execute_batch("ROLLBACK").map_err(from_rusqlite)
    }

    fn execute(&self, sql: &str, args: &[Arg<'_>]) -> rusqlite::Result<u64> {
        let mut statement = self.conn.prepare_cached(&numbered_params(sql))?;
        let changed = statement.execute(rusqlite::params_from_iter(args))?;
        Ok(changed as u64)
    }

    fn fetch_all<T: FromSqlite>(&self, sql: &str, args: &[Arg<'_>]) -> rusqlite::Result<Vec<T>> {
        let mut statement = self.conn.prepare_cached(&numbered_params(sql))?;
        let rows = statement.query_map(rusqlite::params_from_iter(args), T::from_sqlite)?;
        rows.collect()
    }
}

impl Drop for SqliteTx {
    fn drop(&mut self) {
        if self.open {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }
}

// === impl PgTx ===

impl PgTx {
    /// Runs `begin` (which starts with `BEGIN`) on a connection from `pool`.
    pub(super) async fn begin(pool: &PgPool, begin: &str) -> Result<Self, sqlx::Error> {
        let conn = pool.acquire().await?;
        let mut tx = Self { conn, open: true };
        simple(&mut tx.conn, begin).await?;
        Ok(tx)
    }

    pub(super) async fn commit(mut self) -> Result<(), sqlx::Error> {
        simple(&mut self.conn, "COMMIT").await?;
        self.open = false;
        Ok(())
    }

    pub(super) async fn rollback(mut self) -> Result<(), sqlx::Error> {
        simple(&mut self.conn, "ROLLBACK").await?;
        self.open = false;
        Ok(())
    }
}

/// Runs `sql` (one or more statements, no parameters) as one simple query.
async fn simple(conn: &mut PgConnection, sql: &str) -> Result<(), sqlx::Error> {
    sqlx::Executor::execute(conn, sql).await?;
    Ok(())
}

impl std::ops::Deref for PgTx {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        &self.conn
    }
}

impl std::ops::DerefMut for PgTx {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.conn
    }
}

impl Drop for PgTx {
    fn drop(&mut self) {
        if self.open {
            self.conn.close_on_drop();
        }
    }
}

// === impl WriteTx ===

impl WriteTx {
    /// Runs one statement; the number of rows it changed.
    pub(super) async fn execute(
        &mut self,
        sql: &str,
        args: &[Arg<'_>],
    ) -> Result<u64, sqlx::Error> {
        match self {
            WriteTx::Sqlite(tx) => tx.execute(sql, args).map_err(from_rusqlite),
            WriteTx::Postgres(tx) => {
                let query = bind_args!(sqlx::query(sql), args);
                Ok(query.execute(&mut **tx).await?.rows_affected())
            }
        }
    }

    /// Runs one query; its rows.
    pub(super) async fn fetch_all<T>(
        &mut self,
        sql: &str,
        args: &[Arg<'_>],
    ) -> Result<Vec<T>, sqlx::Error>
    where
        T: FromSqlite + for<'r> FromRow<'r, PgRow> + Send + Unpin,
    {
        match self {
            WriteTx::Sqlite(tx) => tx.fetch_all(sql, args).map_err(from_rusqlite),
            WriteTx::Postgres(tx) => {
                let query = bind_args!(sqlx::query_as::<_, T>(sql), args);
                query.fetch_all(&mut **tx).await
            }
        }
    }

    /// Runs one query that returns exactly one row.
    pub(super) async fn fetch_one<T>(
        &mut self,
        sql: &str,
        args: &[Arg<'_>],
    ) -> Result<T, sqlx::Error>
    where
        T: FromSqlite + for<'r> FromRow<'r, PgRow> + Send + Unpin,
    {
        self.fetch_all(sql, args)
            .await?
            .into_iter()
            .next()
            .ok_or(sqlx::Error::RowNotFound)
    }
}

/// `sql` with PostgreSQL's `$N` placeholders written as SQLite's `?N`: bound by index, so
/// SQLite never looks a parameter up by its name.
pub(super) fn numbered_params(sql: &str) -> Cow<'_, str> {
    if !sql.contains('$') {
        return Cow::Borrowed(sql);
    }
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('?');
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// `($s, $s+1, …), (…)` for `rows` rows of `cols` values, numbered from `start`.
pub(super) fn values(rows: usize, cols: usize, start: usize) -> String {
    let mut sql = String::with_capacity(rows * cols * 7);
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ", (" });
        for col in 0..cols {
            if col > 0 {
                sql.push_str(", ");
            }
            // Writing to a String cannot fail.
            let _ = write!(sql, "${}", start + row * cols + col);
        }
        sql.push(')');
    }
    sql
}

/// `items` in chunks of at most `max` whose lengths are powers of two, largest first: a
/// multi-row statement's text depends on its row count, so a table's statements come in a few
/// texts (eight up to 128 rows), which the connection keeps prepared, instead of one per batch
/// size, each parsed again when the statement cache has dropped it.
pub(super) fn statement_chunks<T>(items: &[T], max: usize) -> impl Iterator<Item = &[T]> {
    let mut rest = items;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        // The largest power of two not over the rows left or `max` (and at least 1).
        let len = 1 << rest.len().min(max).max(1).ilog2();
        let (chunk, tail) = rest.split_at(len);
        rest = tail;
        Some(chunk)
    })
}

/// A SQLite error as the store's other storage errors: a value the row cannot be read as is
/// a decoding error (as sqlx reports it), anything else the driver's.
pub(super) fn from_rusqlite(error: rusqlite::Error) -> sqlx::Error {
    match error {
        rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::InvalidColumnType(..)
        | rusqlite::Error::IntegralValueOutOfRange(..) => sqlx::Error::Decode(Box::new(error)),
        error => sqlx::Error::AnyDriverError(Box::new(error)),
    }
}

#[cfg(test)]
mod tests {
    use super::{numbered_params, statement_chunks, values};

    fn lengths(items: usize, max: usize) -> Vec<usize> {
        let items: Vec<usize> = (0..items).collect();
        statement_chunks(&items, max).map(<[usize]>::len).collect()
    }

    #[test]
    fn statement_chunks_are_powers_of_two_covering_everything_in_order() {
        assert_eq!(lengths(0, 16), Vec::<usize>::new());
        assert_eq!(lengths(1, 16), [1]);
        assert_eq!(lengths(10, 16), [8, 2]);
        assert_eq!(lengths(46, 16), [16, 16, 8, 4, 2]);
        assert_eq!(lengths(7, 1000), [4, 2, 1]);
        assert_eq!(lengths(3, 1), [1, 1, 1]);
        assert_eq!(lengths(3, 0), [1, 1, 1]);
        let items: Vec<usize> = (0..1000).collect();
        let joined: Vec<usize> = statement_chunks(&items, 1428).flatten().copied().collect();
        assert_eq!(joined, items);
        let texts: std::collections::HashSet<usize> =
            (1..=128).flat_map(|n| lengths(n, 1428)).collect();
        assert_eq!(texts.len(), 8);
    }

    #[test]
    fn dollar_placeholders_become_numbered() {
        assert_eq!(
            numbered_params("UPDATE t SET a = $2 WHERE id = $1 AND b = $10"),
            "UPDATE t SET a = ?2 WHERE id = ?1 AND b = ?10"
        );
        assert_eq!(numbered_params("SELECT '$x', 1"), "SELECT '$x', 1");
    }

    #[test]
    fn values_numbers_every_placeholder_once() {
        assert_eq!(values(2, 2, 1), "($1, $2), ($3, $4)");
        assert_eq!(values(1, 3, 2), "($2, $3, $4)");
    }
}
