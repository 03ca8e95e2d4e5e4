//! The `approvals` table: reviews, revocations and the uses admissions consume.

use super::args::{self, Arg};
use super::*;
use crate::domain::approval::UnknownApprovalState;

pub(super) const APPROVAL_COLUMNS: &str = "approval_id, state, org_id, project_id, environment_id, action, \
    spec_hash, capabilities, requested_by, initiated_by, justification, created_at, expires_at, \
    approvals_required, approvers, credentials, uses, max_uses, decision_reason, version, updated_at";
const INSERT_APPROVAL: &str = "INSERT INTO approvals (approval_id, state, org_id, project_id, \
    environment_id, action, spec_hash, capabilities, requested_by, initiated_by, justification, \
    created_at, expires_at, approvals_required, approvers, credentials, uses, max_uses, \
    decision_reason, version, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, \
    $12, $13, $14, $15, $16, $17, $18, $19, $20, $21) ON CONFLICT (approval_id) DO NOTHING";
const UPDATE_APPROVAL: &str = "UPDATE approvals SET state = $2, org_id = $3, project_id = $4, \
    environment_id = $5, action = $6, spec_hash = $7, capabilities = $8, requested_by = $9, \
    initiated_by = $10, justification = $11, created_at = $12, expires_at = $13, \
    approvals_required = $14, approvers = $15, credentials = $16, uses = $17, max_uses = $18, \
    decision_reason = $19, version = version + 1, updated_at = $21 \
    WHERE approval_id = $1 AND version = $20";
/// Reads an approval row on either backend.
fn approval_row<R: Row>(row: &R) -> Result<ApprovalRow, StoreError>
where
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'a> &'a str: ColumnIndex<R>,
{
    approval_from(
        |column| row.try_get::<String, _>(column).map_err(unavailable),
        |column| row.try_get::<i64, _>(column).map_err(unavailable),
    )
}

/// Reads an approval row from one of the store's own SQLite connections.
fn approval_row_local(row: &rusqlite::Row<'_>) -> Result<ApprovalRow, StoreError> {
    let failed = |error: rusqlite::Error| unavailable(args::from_rusqlite(error));
    approval_from(
        |column| row.get::<_, String>(column).map_err(failed),
        |column| row.get::<_, i64>(column).map_err(failed),
    )
}

/// An approval row from its columns, read by name.
fn approval_from(
    text: impl Fn(&str) -> Result<String, StoreError>,
    int: impl Fn(&str) -> Result<i64, StoreError>,
) -> Result<ApprovalRow, StoreError> {
    let list = |column: &str| {
        serde_json::from_str::<Vec<String>>(&text(column)?).map_err(|_| {
            tracing::warn!(column, "approval row has a malformed list column");
            StoreError::Unavailable
        })
    };
    let approval_id = text("approval_id")?;
    let state = text("state")?.parse().map_err(|error: UnknownApprovalState| {
        tracing::error!(%error, approval_id = %approval_id, "approval row has an unknown state");
        StoreError::Corrupt
    })?;
    Ok(ApprovalRow {
        approval_id,
        state,
        scope: Scope {
            org_id: text("org_id")?,
            project_id: text("project_id")?,
            environment_id: text("environment_id")?,
        },
        action: text("action")?,
        spec_hash: text("spec_hash")?,
        capabilities: list("capabilities")?,
        requested_by: text("requested_by")?,
        initiated_by: text("initiated_by")?,
        justification: text("justification")?,
        created_at: from_micros(int("created_at")?),
        expires_at: from_micros(int("expires_at")?),
        approvals_required: clamp_u32(int("approvals_required")?),
        approvers: list("approvers")?,
        credentials: list("credentials")?,
        uses: clamp_u32(int("uses")?),
        max_uses: clamp_u32(int("max_uses")?),
        decision_reason: text("decision_reason")?,
        version: int("version")?,
        updated_at: from_micros(int("updated_at")?),
    })
}

// === impl Db ===

impl Db {
    pub(in crate::store) async fn approval(
        &self,
        approval_id: &str,
    ) -> Result<Option<ApprovalRow>, StoreError> {
        let sql = format!("SELECT {APPROVAL_COLUMNS} FROM approvals WHERE approval_id = $1");
        if let Db::Sqlite(_, local) = self {
            let found = local
                .read(|connection| {
                    let mut statement = connection.prepare_cached(&args::numbered_params(&sql))?;
                    let mut rows = statement.query([approval_id])?;
                    Ok(rows.next()?.map(approval_row_local))
                })
                .map_err(|error| unavailable(args::from_rusqlite(error)))?;
            return found.transpose();
        }
        on_backend!(Db, self, pool => {
            let row = sqlx::query(&sql)
                .bind(approval_id)
                .fetch_optional(pool)
                .await
                .map_err(unavailable)?;
            row.map(|row| approval_row(&row)).transpose()
        })
    }

    pub(in crate::store) async fn approvals_for(
        &self,
        scope: &Scope,
        action: &str,
        spec_hash: &str,
    ) -> Result<Vec<ApprovalRow>, StoreError> {
        let sql = format!(
            "SELECT {APPROVAL_COLUMNS} FROM approvals WHERE org_id = $1 AND project_id = $2 \
             AND environment_id = $3 AND action = $4 AND spec_hash = $5 \
             ORDER BY created_at DESC, approval_id DESC"
        );
        on_backend!(Db, self, pool => {
            let rows = sqlx::query(&sql)
                .bind(scope.org_id.as_str())
                .bind(scope.project_id.as_str())
                .bind(scope.environment_id.as_str())
                .bind(action)
                .bind(spec_hash)
                .fetch_all(pool)
                .await
                .map_err(unavailable)?;
            rows.iter().map(approval_row).collect()
        })
    }
}

// === impl WriteTx ===

impl WriteTx {
    /// Inserts a row with version 1; false when the id exists.
    pub(in crate::store) async fn insert_approval(
        &mut self,
        row: &ApprovalRow,
    ) -> Result<bool, sqlx::Error> {
        Ok(self
            .execute(INSERT_APPROVAL, &approval_args(row, 1))
            .await?
            == 1)
    }

    /// Replaces a row if its version is `expected_version`; false otherwise.
    pub(in crate::store) async fn update_approval(
        &mut self,
        row: &ApprovalRow,
        expected_version: i64,
    ) -> Result<bool, sqlx::Error> {
        let args = approval_args(row, expected_version);
        Ok(self.execute(UPDATE_APPROVAL, &args).await? == 1)
    }
}

/// The 21 approval columns in `APPROVAL_COLUMNS` order, with `version` as column 20.
pub(super) fn approval_args(row: &ApprovalRow, version: i64) -> [Arg<'_>; 21] {
    [
        row.approval_id.as_str().into(),
        row.state.as_str().into(),
        row.scope.org_id.as_str().into(),
        row.scope.project_id.as_str().into(),
        row.scope.environment_id.as_str().into(),
        row.action.as_str().into(),
        row.spec_hash.as_str().into(),
        canonical_list(&row.capabilities).into(),
        row.requested_by.as_str().into(),
        row.initiated_by.as_str().into(),
        row.justification.as_str().into(),
        Arg::Int(to_micros(row.created_at)),
        Arg::Int(to_micros(row.expires_at)),
        Arg::Int(i64::from(row.approvals_required)),
        canonical_list(&row.approvers).into(),
        canonical_list(&row.credentials).into(),
        Arg::Int(i64::from(row.uses)),
        Arg::Int(i64::from(row.max_uses)),
        row.decision_reason.as_str().into(),
        Arg::Int(version),
        Arg::Int(to_micros(row.updated_at)),
    ]
}
