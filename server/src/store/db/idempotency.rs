//! The `idempotency` table: which admission answered a request id. The writer's batched
//! reads and writes of it are in `batch`.

use super::*;

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
}
