//! The `idempotency` table: which admission answered a request id, and its comparison with the
//! chain (the entry a key names is the record; the key and its stored admission a cache of it).
//! The writer's batched reads and writes of it are in `batch`.

use futures::TryStreamExt;

use super::*;
use crate::domain::outcome::Outcome;
use crate::store::DerivedMismatch;

/// Idempotency rows read per query while comparing: bounds the rows held at once.
const ROW_CHUNK: i64 = 10_000;

/// One idempotency row beside the entry its decision_id names, if any.
#[derive(sqlx::FromRow)]
struct KeyedEntry {
    caller: String,
    request_id: String,
    decision_id: String,
    has_admission: i64,
    entry_request_id: Option<String>,
    entry_actor: Option<String>,
    entry_outcome: Option<String>,
}

// === impl KeyedEntry ===

impl KeyedEntry {
    /// What disagrees with the chain: the key must name an entry of the same request and
    /// caller, and hold an admission exactly when that entry admitted.
    fn mismatch(&self) -> Option<DerivedMismatch> {
        let found = |field, stored: String, derived: String| {
            Some(DerivedMismatch {
                approval_id: String::new(),
                idempotency_key: Some((self.caller.clone(), self.request_id.clone())),
                field,
                stored,
                derived,
            })
        };
        let (Some(request_id), Some(actor), Some(outcome)) = (
            &self.entry_request_id,
            &self.entry_actor,
            &self.entry_outcome,
        ) else {
            return found("decision", self.decision_id.clone(), "no entry".to_owned());
        };
        if *request_id != self.request_id || *actor != self.caller {
            let derived = format!("entry records request {request_id} by {actor}");
            return found("decision", self.decision_id.clone(), derived);
        }
        let admitted = matches!(
            outcome.parse::<Outcome>(),
            Ok(Outcome::Admitted | Outcome::AdmittedBreakGlass | Outcome::AdmittedShadow)
        );
        let stored = self.has_admission != 0;
        if stored != admitted {
            let stored = if stored { "admission" } else { "no admission" };
            return found("admission", stored.to_owned(), format!("outcome {outcome}"));
        }
        None
    }
}

// === impl Db ===

impl Db {
    /// Fingerprint, admission as stored, and the hash of the entry that recorded it.
    pub(in crate::store) async fn idempotency(
        &self,
        caller: &str,
        request_id: &str,
    ) -> Result<Option<(String, Option<Vec<u8>>, Option<String>)>, StoreError> {
        const SQL: &str = "SELECT i.fingerprint, i.admission, e.entry_hash FROM idempotency i \
            LEFT JOIN audit_entries e ON e.entry_id = i.decision_id \
            WHERE i.caller = $1 AND i.request_id = $2";
        let row: Option<(String, Option<Vec<u8>>, Option<String>)> =
            on_backend!(Db, self, pool => {
                sqlx::query_as(SQL).bind(caller).bind(request_id).fetch_optional(pool).await
            })
            .map_err(unavailable)?;
        Ok(row)
    }

    /// Every idempotency row compared with the entry it names, in key order, `ROW_CHUNK` rows
    /// at a time. A key and its entry are written in one transaction and read here in one
    /// statement, so appends made meanwhile explain no disagreement.
    pub(super) async fn idempotency_mismatches(&self) -> Result<Vec<DerivedMismatch>, StoreError> {
        const ROWS: &str = "SELECT i.caller, i.request_id, i.decision_id, \
             CAST(CASE WHEN i.admission IS NULL THEN 0 ELSE 1 END AS BIGINT) AS has_admission, \
             e.request_id AS entry_request_id, e.actor AS entry_actor, \
             e.outcome AS entry_outcome \
             FROM idempotency i LEFT JOIN audit_entries e ON e.entry_id = i.decision_id \
             WHERE (i.caller, i.request_id) > ($1, $2) \
             ORDER BY i.caller, i.request_id LIMIT $3";
        let mut found = Vec::new();
        let mut after = (String::new(), String::new());
        loop {
            let mut read = 0;
            let (caller, request_id) = std::mem::take(&mut after);
            on_backend!(Db, self, pool => {
                let mut rows = sqlx::query_as::<_, KeyedEntry>(ROWS)
                    .bind(caller.as_str())
                    .bind(request_id.as_str())
                    .bind(ROW_CHUNK)
                    .fetch(pool);
                while let Some(row) = rows.try_next().await.map_err(unavailable)? {
                    found.extend(row.mismatch());
                    read += 1;
                    after = (row.caller, row.request_id);
                }
            });
            if read < ROW_CHUNK {
                return Ok(found);
            }
        }
    }
}
