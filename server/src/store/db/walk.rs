//! The chain walk of Verify: position, link and hash of every stored row, in seq order, with
//! what the rows record about approvals. On SQLite the rows are read by one of the store's own
//! read-only connections on a blocking thread and hashed from borrowed columns; sqlx would copy
//! every column of every row into owned values and send it across threads first, which bounded
//! the walk.

use std::borrow::Cow;

use rusqlite::params;
use sqlx::postgres::PgPool;

use super::derived::{DerivedState, Found};
use super::rows::ENTRY_COLUMNS;
use super::*;

/// Entries read per query: bounds memory (and, on SQLite, how long one read holds back
/// checkpoints of the write-ahead log) whatever the chain length.
pub(super) const VERIFY_CHUNK: i64 = 10_000;

/// The state of a verification walk.
#[derive(Debug)]
pub(super) struct ChainWalk {
    pub last_seq: i64,
    prev_hash: String,
    pub checked: u64,
    pub first_bad_seq: u64,
    pub derived: DerivedState,
}

// === impl ChainWalk ===

impl Default for ChainWalk {
    fn default() -> Self {
        Self {
            last_seq: 0,
            prev_hash: GENESIS_HASH.to_owned(),
            checked: 0,
            first_bad_seq: 0,
            derived: DerivedState::default(),
        }
    }
}

impl ChainWalk {
    /// Checks position, link and hash of the next stored row, straight from its columns
    /// (`values` in `ENTRY_COLUMNS` order up to prev_hash, the hash's field order; seq and
    /// recorded_at given as numbers, their places in `values` unused). A row after a gap is
    /// the bad one (its predecessor is missing); an edited or moved row fails its own hash.
    fn check_values(&mut self, seq: i64, recorded_at: i64, values: [&str; 20], entry_hash: &str) {
        let (seq_text, recorded_text) = (seq.to_string(), recorded_at.to_string());
        let mut values: [&str; 20] = values;
        values[0] = &seq_text;
        values[2] = &recorded_text;
        self.checked += 1;
        let in_place = seq == self.last_seq + 1;
        let linked = values[19] == self.prev_hash;
        let intact = || {
            values[11..14]
                .iter()
                .all(|list| chain::is_canonical_list(list))
                && chain::hash_of_values(&values) == entry_hash
        };
        if self.first_bad_seq == 0 && !(in_place && linked && intact()) {
            self.first_bad_seq = u64::try_from(seq).unwrap_or(0);
        }
        self.derived.record(values[14], values[12]);
        self.last_seq = seq;
        self.prev_hash.clear();
        self.prev_hash.push_str(entry_hash);
    }

    /// The report, comparing the last row with the recorded head (which catches a deleted
    /// newest entry: the head's seq is then reported).
    pub(super) fn finish(
        mut self,
        head_seq: i64,
        head_hash: &str,
        found: Vec<Found>,
    ) -> VerifyReport {
        if self.first_bad_seq == 0 && (self.last_seq != head_seq || self.prev_hash != head_hash) {
            let missing = if self.last_seq < head_seq {
                self.last_seq + 1
            } else {
                head_seq
            };
            self.first_bad_seq = u64::try_from(missing.max(1)).unwrap_or(1);
        }
        let mismatches: Vec<_> = if self.first_bad_seq == 0 {
            found.into_iter().map(|found| found.mismatch).collect()
        } else {
            Vec::new()
        };
        VerifyReport {
            ok: self.first_bad_seq == 0 && mismatches.is_empty(),
            entries_checked: self.checked,
            first_bad_seq: self.first_bad_seq,
            head_hash: self.prev_hash,
            mismatches,
        }
    }
}

/// Extends `walk` through the entries up to `head_seq`, read on this (blocking) thread by
/// `connection`, one of the store's own read-only ones, `VERIFY_CHUNK` rows per query.
pub(super) fn on_connection(
    connection: &rusqlite::Connection,
    walk: &mut ChainWalk,
    head_seq: i64,
) -> rusqlite::Result<()> {
    let sql = format!(
        "SELECT {ENTRY_COLUMNS} FROM audit_entries WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?"
    );
    let mut statement = connection.prepare_cached(&sql)?;
    loop {
        let before = walk.checked;
        let mut rows = statement.query(params![walk.last_seq, head_seq, VERIFY_CHUNK])?;
        while let Some(row) = rows.next()? {
            let mut values: [&str; 20] = [""; 20];
            for (index, value) in values.iter_mut().enumerate() {
                if index != 0 && index != 2 {
                    *value = row.get_ref(index)?.as_str()?;
                }
            }
            let entry_hash = row.get_ref(20)?.as_str()?;
            walk.check_values(row.get(0)?, row.get(2)?, values, entry_hash);
        }
        if walk.checked - before < VERIFY_CHUNK as u64 {
            return Ok(());
        }
    }
}

/// Rows of seq per `COPY` on PostgreSQL: bounds how long one statement's snapshot is held.
const COPY_CHUNK: i64 = 100_000;

/// Extends `walk` through the entries up to `head_seq` on PostgreSQL. The rows arrive as
/// `COPY` text, a line each, and are checked from slices of it: sqlx's row decoding (a type
/// check and a length-prefixed value per column, a row object per row) bounded the walk.
pub(super) async fn on_postgres(
    pool: &PgPool,
    walk: &mut ChainWalk,
    head_seq: i64,
) -> Result<(), sqlx::Error> {
    use futures::TryStreamExt;
    use sqlx::postgres::PgPoolCopyExt;

    let mut from = walk.last_seq;
    let mut pending: Vec<u8> = Vec::new();
    while from < head_seq {
        let to = head_seq.min(from.saturating_add(COPY_CHUNK));
        let sql = format!(
            "COPY (SELECT {ENTRY_COLUMNS} FROM audit_entries WHERE seq > {from} AND seq <= {to} \
             ORDER BY seq) TO STDOUT"
        );
        let mut stream = pool.copy_out_raw(&sql).await?;
        while let Some(chunk) = stream.try_next().await? {
            pending.extend_from_slice(&chunk);
            let mut start = 0;
            while let Some(end) = pending[start..].iter().position(|b| *b == b'\n') {
                check_line(walk, &pending[start..start + end])?;
                start += end + 1;
            }
            pending.drain(..start);
        }
        if !pending.is_empty() {
            return Err(sqlx::Error::Protocol("COPY ended inside a row".to_owned()));
        }
        from = to;
    }
    Ok(())
}

/// Checks one row of `COPY` text output: 21 tab-separated columns in `ENTRY_COLUMNS` order.
fn check_line(walk: &mut ChainWalk, line: &[u8]) -> Result<(), sqlx::Error> {
    let malformed = |what: &str| sqlx::Error::Protocol(format!("COPY row {what}"));
    let line = std::str::from_utf8(line).map_err(|_| malformed("is not UTF-8"))?;
    let mut fields: [Cow<'_, str>; 21] = Default::default();
    let mut columns = line.split('\t');
    for slot in &mut fields {
        let field = columns
            .next()
            .ok_or_else(|| malformed("has too few columns"))?;
        *slot = copy_text(field).ok_or_else(|| malformed("has a NULL or bad escape"))?;
    }
    if columns.next().is_some() {
        return Err(malformed("has too many columns"));
    }
    let number = |text: &str| {
        text.parse::<i64>()
            .map_err(|_| malformed("has a bad number"))
    };
    let (seq, recorded_at) = (number(&fields[0])?, number(&fields[2])?);
    let mut values: [&str; 20] = [""; 20];
    for (value, field) in values.iter_mut().zip(&fields) {
        *value = field;
    }
    walk.check_values(seq, recorded_at, values, &fields[20]);
    Ok(())
}

/// A column of `COPY` text as stored: its escapes undone; `None` for NULL (no entry column is
/// nullable) or an escape `COPY TO` does not write.
fn copy_text(field: &str) -> Option<Cow<'_, str>> {
    if field == "\\N" {
        return None;
    }
    if !field.contains('\\') {
        return Some(Cow::Borrowed(field));
    }
    let mut out = String::with_capacity(field.len());
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        out.push(match chars.next()? {
            '\\' => '\\',
            'b' => '\u{8}',
            'f' => '\u{c}',
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            'v' => '\u{b}',
            _ => return None,
        });
    }
    Some(Cow::Owned(out))
}

#[cfg(test)]
mod tests {
    use super::copy_text;

    #[test]
    fn copy_text_undoes_the_escapes_copy_writes() {
        assert_eq!(copy_text("plain").as_deref(), Some("plain"));
        assert_eq!(
            copy_text("a\\tb\\nc\\\\d\\re").as_deref(),
            Some("a\tb\nc\\d\re")
        );
        assert_eq!(copy_text("\\N"), None);
        assert_eq!(copy_text("bad\\x"), None);
        assert_eq!(copy_text("cut\\"), None);
    }
}
