//! A writer batch on PostgreSQL in two statements whatever its size: one reads everything the
//! batch needs (the head, its idempotency rows, entry ids, approvals and tree hashes), one
//! writes everything it decided (entries, tree hashes, idempotency rows, consumed uses, rows of
//! offline credentials, the head) as data-modifying CTEs over `UNNEST` of one array per
//! column. Their text does not depend on the batch, so each is prepared once per connection.
//! Review writes, which need a version check each, stay statements of their own.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use admission_log::Hash;
use sqlx::postgres::PgArguments;
use sqlx::postgres::PgRow;
use sqlx::query::Query;

use super::approvals::{APPROVAL_COLUMNS, approval_args};
use super::args::{Arg, PgTx};
use super::rows::{ENTRY_COLUMNS, KEY_COLUMNS, KEY_UPSERT, entry_args, key_args, stored_approval};
use super::tree::{collect_hashes, hash_args};
use super::*;
use crate::store::batch::Fetched;

/// The SQL type of a column, as the array it is bound in.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Int,
    Text,
    Blob,
}

use Kind::{Blob, Int, Text};

const ENTRY_KINDS: [Kind; 21] = [
    Int, Text, Int, Text, Text, Text, Text, Text, Text, Text, Text, Text, Text, Text, Text, Text,
    Text, Text, Text, Text, Text,
];
const TREE_KINDS: [Kind; 2] = [Int, Blob];
const KEY_KINDS: [Kind; 6] = [Text, Text, Text, Blob, Text, Int];
const BUMP_KINDS: [Kind; 3] = [Text, Int, Int];
const APPROVAL_KINDS: [Kind; 21] = [
    Text, Text, Text, Text, Text, Text, Text, Text, Text, Text, Text, Int, Int, Int, Text, Text,
    Int, Int, Text, Int, Int,
];

/// Everything a batch reads, after the chain lock: one row of the head and, per table, one
/// array per column (`array_agg`s of one aggregate see their rows in the same order).
const READ: &str = "SELECT h.seq, h.entry_hash, \
    COALESCE((SELECT e.recorded_at FROM audit_entries e WHERE e.seq = h.seq), 0), \
    k.callers, k.request_ids, k.fingerprints, k.admissions, k.decision_ids, k.entry_hashes, \
    x.entry_ids, a.approval_ids, a.states, a.uses, a.max_uses, a.versions, t.idxs, t.hashes \
    FROM audit_head h, \
    LATERAL (SELECT array_agg(i.caller) AS callers, array_agg(i.request_id) AS request_ids, \
        array_agg(i.fingerprint) AS fingerprints, array_agg(i.admission) AS admissions, \
        array_agg(i.decision_id) AS decision_ids, array_agg(d.entry_hash) AS entry_hashes \
        FROM idempotency i LEFT JOIN audit_entries d ON d.entry_id = i.decision_id \
        WHERE (i.caller, i.request_id) IN (SELECT * FROM UNNEST($1::text[], $2::text[]))) k, \
    LATERAL (SELECT array_agg(entry_id) AS entry_ids FROM audit_entries \
        WHERE entry_id = ANY($3::text[])) x, \
    LATERAL (SELECT array_agg(approval_id) AS approval_ids, array_agg(state) AS states, \
        array_agg(uses) AS uses, array_agg(max_uses) AS max_uses, array_agg(version) AS versions \
        FROM approvals WHERE approval_id = ANY($4::text[])) a, \
    LATERAL (SELECT array_agg(idx) AS idxs, array_agg(hash) AS hashes FROM audit_tree \
        WHERE idx = ANY($5::bigint[])) t \
    WHERE h.id = 1";

/// Everything a batch writes but its review writes, in one statement; the head last.
static WRITE: LazyLock<String> = LazyLock::new(|| {
    let mut next = 1;
    let mut unnest = |kinds: &[Kind]| {
        let arrays: Vec<String> = kinds
            .iter()
            .map(|kind| {
                let cast = match kind {
                    Int => "bigint",
                    Text => "text",
                    Blob => "bytea",
                };
                next += 1;
                format!("${}::{cast}[]", next - 1)
            })
            .collect();
        format!("UNNEST({})", arrays.join(", "))
    };
    let (entries, tree, keys) = (
        unnest(&ENTRY_KINDS),
        unnest(&TREE_KINDS),
        unnest(&KEY_KINDS),
    );
    let (bumps, created) = (unnest(&BUMP_KINDS), unnest(&APPROVAL_KINDS));
    format!(
        "WITH e AS (INSERT INTO audit_entries ({ENTRY_COLUMNS}) SELECT * FROM {entries}), \
         t AS (INSERT INTO audit_tree (idx, hash) SELECT * FROM {tree}), \
         k AS (INSERT INTO idempotency ({KEY_COLUMNS}) SELECT * FROM {keys} {KEY_UPSERT}), \
         u AS (UPDATE approvals SET uses = uses + v.n, version = version + v.n, \
             updated_at = v.at FROM {bumps} AS v(id, n, at) WHERE approval_id = v.id), \
         c AS (INSERT INTO approvals ({APPROVAL_COLUMNS}) SELECT * FROM {created} \
             ON CONFLICT (approval_id) DO NOTHING), \
         h AS (UPDATE audit_head SET seq = ${next}, entry_hash = ${} WHERE id = 1) \
         SELECT 1",
        next + 1
    )
});

/// The values of one column of every row, bound as one array.
enum Column<'a> {
    Int(Vec<i64>),
    Text(Vec<&'a str>),
    Blob(Vec<Option<&'a [u8]>>),
}

/// The columns of `rows`, each of the kind `kinds` gives it (also when there are no rows).
fn columns<'a, const N: usize>(
    kinds: &[Kind; N],
    rows: &'a [[Arg<'a>; N]],
) -> Result<Vec<Column<'a>>, sqlx::Error> {
    let mut columns: Vec<Column<'a>> = kinds
        .iter()
        .map(|kind| match kind {
            Int => Column::Int(Vec::with_capacity(rows.len())),
            Text => Column::Text(Vec::with_capacity(rows.len())),
            Blob => Column::Blob(Vec::with_capacity(rows.len())),
        })
        .collect();
    for row in rows {
        for (column, arg) in columns.iter_mut().zip(row) {
            match (column, arg) {
                (Column::Int(values), Arg::Int(value)) => values.push(*value),
                (Column::Text(values), Arg::Text(text)) => values.push(text.as_ref()),
                (Column::Blob(values), Arg::Blob(blob)) => values.push(*blob),
                (_, arg) => {
                    return Err(sqlx::Error::Protocol(format!(
                        "batch value {arg:?} does not match its column's type"
                    )));
                }
            }
        }
    }
    Ok(columns)
}

fn bind_columns<'q>(
    mut query: Query<'q, Postgres, PgArguments>,
    columns: Vec<Column<'q>>,
) -> Query<'q, Postgres, PgArguments> {
    for column in columns {
        query = match column {
            Column::Int(values) => query.bind(values),
            Column::Text(values) => query.bind(values),
            Column::Blob(values) => query.bind(values),
        };
    }
    query
}

/// What a batch read: the head, the rows of its keys, and the tree hashes asked for.
pub(in crate::store) struct BatchRead {
    pub head: Head,
    pub fetched: Fetched,
    pub tree: HashMap<u64, Hash>,
}

/// Reads the batch's rows on PostgreSQL in one statement (the chain lock is already held).
pub(super) async fn read(
    tx: &mut PgTx,
    keys: &[(&str, &str)],
    entry_ids: &[&str],
    approval_ids: &[&str],
    tree: &[u64],
) -> Result<BatchRead, sqlx::Error> {
    let (callers, request_ids): (Vec<&str>, Vec<&str>) = keys.iter().copied().unzip();
    let tree = tree
        .iter()
        .map(|index| seq_i64(*index))
        .collect::<Result<Vec<_>, _>>()?;
    let row: PgRow = sqlx::query(READ)
        .bind(callers)
        .bind(request_ids)
        .bind(entry_ids)
        .bind(approval_ids)
        .bind(tree)
        .fetch_one(&mut **tx)
        .await?;
    let seq: i64 = row.try_get(0)?;
    let head = Head {
        seq: u64::try_from(seq).map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
        hash: row.try_get(1)?,
        recorded_at: row.try_get(2)?,
    };
    let fetched = Fetched {
        keys: stored_keys(&row)?,
        entries: array::<String>(&row, 9)?
            .into_iter()
            .collect::<HashSet<_>>(),
        approvals: stored_approvals(&row)?,
    };
    let mut found = HashMap::new();
    let hashes = array::<i64>(&row, 15)?
        .into_iter()
        .zip(array::<Vec<u8>>(&row, 16)?);
    collect_hashes(hashes.collect(), &mut found)?;
    Ok(BatchRead {
        head,
        fetched,
        tree: found,
    })
}

/// Writes what a batch decided on PostgreSQL in one statement, moving the head to `head`.
pub(super) async fn write(
    tx: &mut PgTx,
    writes: &BatchRows<'_>,
    head: (u64, &str),
) -> Result<(), sqlx::Error> {
    let entries = writes
        .entries
        .iter()
        .map(entry_args)
        .collect::<Result<Vec<_>, _>>()?;
    let tree = writes
        .tree
        .iter()
        .map(|(index, hash)| hash_args(*index, hash))
        .collect::<Result<Vec<_>, _>>()?;
    let keys: Vec<_> = writes
        .keys
        .iter()
        .map(|k| key_args(k, writes.now))
        .collect();
    let bumps: Vec<_> = writes
        .bumps
        .iter()
        .map(|(id, n)| {
            [
                Arg::from(*id),
                Arg::Int(i64::from(*n)),
                Arg::Int(writes.now),
            ]
        })
        .collect();
    let created: Vec<_> = writes
        .created
        .iter()
        .map(|row| approval_args(row, row.version))
        .collect();
    let mut query = sqlx::query(WRITE.as_str());
    query = bind_columns(query, columns(&ENTRY_KINDS, &entries)?);
    query = bind_columns(query, columns(&TREE_KINDS, &tree)?);
    query = bind_columns(query, columns(&KEY_KINDS, &keys)?);
    query = bind_columns(query, columns(&BUMP_KINDS, &bumps)?);
    query = bind_columns(query, columns(&APPROVAL_KINDS, &created)?);
    query
        .bind(seq_i64(head.0)?)
        .bind(head.1)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The rows a batch writes after its review writes, as [`write`] and the SQLite statements
/// take them.
pub(in crate::store) struct BatchRows<'a> {
    pub entries: &'a [ChainedEntry],
    pub tree: &'a [(u64, Hash)],
    pub keys: &'a [KeyWrite],
    pub bumps: &'a [(&'a str, u32)],
    pub created: &'a [ApprovalRow],
    /// When the batch writes, in microseconds since the epoch.
    pub now: i64,
}

impl BatchRows<'_> {
    /// Whether the batch writes nothing here (every append was answered from stored state).
    pub(in crate::store) fn is_empty(&self) -> bool {
        self.entries.is_empty()
            && self.keys.is_empty()
            && self.bumps.is_empty()
            && self.created.is_empty()
    }
}

/// Column `index` of `row`, an array that is NULL when no row matched.
fn array<T>(row: &PgRow, index: usize) -> Result<Vec<T>, sqlx::Error>
where
    T: for<'r> Decode<'r, Postgres> + Type<Postgres> + sqlx::postgres::PgHasArrayType,
{
    Ok(row.try_get::<Option<Vec<T>>, _>(index)?.unwrap_or_default())
}

fn stored_keys(row: &PgRow) -> Result<HashMap<(String, String), StoredKey>, sqlx::Error> {
    let callers = array::<String>(row, 3)?;
    let request_ids = array::<String>(row, 4)?;
    let fingerprints = array::<String>(row, 5)?;
    let admissions = array::<Option<Vec<u8>>>(row, 6)?;
    let decision_ids = array::<String>(row, 7)?;
    let entry_hashes = array::<Option<String>>(row, 8)?;
    let rows = callers.into_iter().zip(request_ids).zip(fingerprints);
    let rest = admissions.into_iter().zip(decision_ids).zip(entry_hashes);
    Ok(rows
        .zip(rest)
        .map(
            |(((caller, request_id), fingerprint), ((admission, decision_id), entry_hash))| {
                let stored = StoredKey {
                    fingerprint,
                    admission,
                    decision_id,
                    entry_hash,
                };
                ((caller, request_id), stored)
            },
        )
        .collect())
}

fn stored_approvals(row: &PgRow) -> Result<HashMap<String, StoredApproval>, sqlx::Error> {
    let ids = array::<String>(row, 10)?;
    let states = array::<String>(row, 11)?;
    let uses = array::<i64>(row, 12)?;
    let max_uses = array::<i64>(row, 13)?;
    let versions = array::<i64>(row, 14)?;
    let rows = ids
        .into_iter()
        .zip(states)
        .zip(uses.into_iter().zip(max_uses))
        .zip(versions);
    rows.map(|(((id, state), (uses, max_uses)), version)| {
        let stored = stored_approval(&id, &state, uses, max_uses, version)?;
        Ok((id, stored))
    })
    .collect()
}
