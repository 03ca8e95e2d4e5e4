//! The `idempotency` table: which admission answered a request id.

use super::*;

// === impl Db ===

impl Db {
    pub(in crate::store) async fn idempotency(
        &self,
        caller: &str,
        request_id: &str,
    ) -> Result<Option<(String, Option<Vec<u8>>)>, StoreError> {
        const SQL: &str =
            "SELECT fingerprint, admission FROM idempotency WHERE caller = $1 AND request_id = $2";
        let row: Option<(String, Option<Vec<u8>>)> = on_backend!(Db, self, pool => {
            sqlx::query_as(SQL).bind(caller).bind(request_id).fetch_optional(pool).await
        })
        .map_err(unavailable)?;
        Ok(row)
    }
}

// === impl WriteTx ===

impl WriteTx {
    /// Fingerprint, admission and decision id stored for a caller's request_id.
    pub(in crate::store) async fn idempotency(
        &mut self,
        caller: &str,
        request_id: &str,
    ) -> Result<Option<(String, Option<Vec<u8>>, String)>, sqlx::Error> {
        const SQL: &str = "SELECT fingerprint, admission, decision_id FROM idempotency \
                           WHERE caller = $1 AND request_id = $2";
        on_backend!(WriteTx, self, c => {
            sqlx::query_as(SQL).bind(caller).bind(request_id).fetch_optional(&mut **c).await
        })
    }

    pub(in crate::store) async fn put_idempotency(
        &mut self,
        key: &crate::store::IdempotencyKey,
        admission: Option<&[u8]>,
        decision_id: &str,
        now: SystemTime,
    ) -> Result<(), sqlx::Error> {
        const SQL: &str = "INSERT INTO idempotency \
            (caller, request_id, fingerprint, admission, decision_id, created_at) \
            VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (caller, request_id) DO UPDATE SET \
            fingerprint = excluded.fingerprint, admission = excluded.admission, \
            decision_id = excluded.decision_id";
        on_backend!(WriteTx, self, c => {
            sqlx::query(SQL)
                .bind(key.caller.as_str())
                .bind(key.request_id.as_str())
                .bind(key.fingerprint.as_str())
                .bind(admission)
                .bind(decision_id)
                .bind(to_micros(now))
                .execute(&mut **c)
                .await?;
        });
        Ok(())
    }
}
