//! The rows a writer batch reads and writes, as both backends' statements take them: the
//! stored state an append is decided on, and the values of the rows it writes.

use crate::domain::approval::{ApprovalState, UnknownApprovalState};
use crate::store::IdempotencyKey;

use super::args::Arg;
use super::*;

/// The columns of an entry row, in the order the trail stores and hashes them.
pub(super) const ENTRY_COLUMNS: &str = "seq, entry_id, recorded_at, actor, actor_cert_sha256, \
    initiated_by, action, org_id, project_id, environment_id, spec_hash, capabilities, \
    approval_ids, approvers, outcome, reason, grpc_code, request_id, detail, prev_hash, entry_hash";
/// The columns of an idempotency row as the writer stores it.
pub(super) const KEY_COLUMNS: &str =
    "caller, request_id, fingerprint, admission, decision_id, created_at";
/// A stored key is replaced by the batch's write of the same (caller, request_id).
pub(super) const KEY_UPSERT: &str = "ON CONFLICT (caller, request_id) DO UPDATE SET \
    fingerprint = excluded.fingerprint, admission = excluded.admission, \
    decision_id = excluded.decision_id";

/// An idempotency row as the writer needs it, with the hash of the entry it points at.
#[derive(Clone, Debug)]
pub(in crate::store) struct StoredKey {
    pub fingerprint: String,
    pub admission: Option<Vec<u8>>,
    pub decision_id: String,
    /// `None` when the entry it names is not in the trail.
    pub entry_hash: Option<String>,
}

/// The use state of an approval row.
#[derive(Clone, Debug)]
pub(in crate::store) struct StoredApproval {
    pub state: ApprovalState,
    pub uses: u32,
    pub max_uses: u32,
    pub version: i64,
}

/// The chain head as a writing transaction reads it.
#[derive(Clone, Debug)]
pub(in crate::store) struct Head {
    pub seq: u64,
    /// Its entry hash (64 zeros before the first entry).
    pub hash: String,
    /// When its entry was recorded, in microseconds since the epoch (0 before the first).
    pub recorded_at: i64,
}

/// An entry positioned in the chain, ready to insert.
pub(in crate::store) struct ChainedEntry {
    pub seq: u64,
    pub recorded_at: i64,
    pub entry: NewEntry,
    pub prev_hash: String,
    pub entry_hash: String,
}

/// An idempotency row to store.
pub(in crate::store) struct KeyWrite {
    pub key: IdempotencyKey,
    pub admission: Option<Vec<u8>>,
    pub decision_id: String,
}

/// An approval's use state as read. An unknown state fails the batch: nothing is decided on a
/// row this version cannot read.
pub(super) fn stored_approval(
    id: &str,
    state: &str,
    uses: i64,
    max_uses: i64,
    version: i64,
) -> Result<StoredApproval, sqlx::Error> {
    let state = state.parse().map_err(|error: UnknownApprovalState| {
        tracing::error!(%error, approval_id = %id, "approval row has an unknown state");
        sqlx::Error::Decode(Box::new(error))
    })?;
    Ok(StoredApproval {
        state,
        uses: clamp_u32(uses),
        max_uses: clamp_u32(max_uses),
        version,
    })
}

/// The 21 columns of an entry row, in `ENTRY_COLUMNS` order.
pub(super) fn entry_args(row: &ChainedEntry) -> Result<[Arg<'_>; 21], sqlx::Error> {
    let e = &row.entry;
    Ok([
        Arg::Int(seq_i64(row.seq)?),
        e.entry_id.as_str().into(),
        Arg::Int(row.recorded_at),
        e.actor.as_str().into(),
        e.actor_cert_sha256.as_str().into(),
        e.initiated_by.as_str().into(),
        e.action.as_str().into(),
        e.scope.org_id.as_str().into(),
        e.scope.project_id.as_str().into(),
        e.scope.environment_id.as_str().into(),
        e.spec_hash.as_str().into(),
        canonical_list(&e.capabilities).into(),
        canonical_list(&e.approval_ids).into(),
        canonical_list(&e.approvers).into(),
        e.outcome.as_str().into(),
        e.reason.as_str().into(),
        e.grpc_code.as_str().into(),
        e.request_id.as_str().into(),
        e.detail.as_str().into(),
        row.prev_hash.as_str().into(),
        row.entry_hash.as_str().into(),
    ])
}

/// The 6 columns of an idempotency row, in `KEY_COLUMNS` order, created at `micros`.
pub(super) fn key_args(write: &KeyWrite, micros: i64) -> [Arg<'_>; 6] {
    [
        write.key.caller.as_str().into(),
        write.key.request_id.as_str().into(),
        write.key.fingerprint.as_str().into(),
        Arg::Blob(write.admission.as_deref()),
        write.decision_id.as_str().into(),
        Arg::Int(micros),
    ]
}
