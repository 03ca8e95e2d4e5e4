//! What the store reads and writes: entries, approval rows, appends and their outcomes.

use super::*;
use crate::domain::approval::ApprovalState;

/// The content of an audit entry before the chain positions it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NewEntry {
    /// Unique id; equals the decision_id the caller saw.
    pub entry_id: String,
    /// Identity of the calling client certificate.
    pub actor: String,
    /// SHA-256 (64 lowercase hex) of the calling client certificate.
    pub actor_cert_sha256: String,
    /// The person or system the caller acted for.
    pub initiated_by: String,
    /// What happened, e.g. `deploy.admit`.
    pub action: String,
    /// The environment concerned.
    pub scope: Scope,
    /// The spec hash concerned, if any.
    pub spec_hash: String,
    /// The capabilities concerned.
    pub capabilities: Vec<String>,
    /// The approvals concerned.
    pub approval_ids: Vec<String>,
    /// The reviewers involved.
    pub approvers: Vec<String>,
    /// `admitted`, `rejected`, `previewed`, `approval_created`, …
    pub outcome: String,
    /// ErrorInfo reason of a rejection; empty otherwise.
    pub reason: String,
    /// Canonical gRPC code name answered.
    pub grpc_code: String,
    /// The caller's request_id, if any.
    pub request_id: String,
    /// Free-form detail.
    pub detail: String,
}

/// An entry as recorded in the chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    /// Position in the chain, from 1.
    pub seq: u64,
    /// When it was recorded (microsecond precision).
    pub recorded_at: SystemTime,
    /// The recorded content.
    pub entry: NewEntry,
    /// `entry_hash` of the previous entry.
    pub prev_hash: String,
    /// SHA-256 over the canonical encoding (see [`chain`]).
    pub entry_hash: String,
}

/// Proof that an entry is durable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// Position in the chain.
    pub seq: u64,
    /// The entry's id.
    pub entry_id: String,
    /// The entry's hash.
    pub entry_hash: String,
    /// When it was recorded (microsecond precision).
    pub recorded_at: SystemTime,
}

/// One use of an approval consumed by an admission. If no row exists for `approval_id` (a
/// credential signed offline), a row is created (state approved, uses = 1) from these fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApprovalUse {
    /// The approval consumed.
    pub approval_id: String,
    /// Uses allowed; only used when the row is created here.
    pub max_uses: u32,
    /// The approval's environment.
    pub scope: Scope,
    /// The approval's spec hash.
    pub spec_hash: String,
    /// The approval's capabilities.
    pub capabilities: Vec<String>,
    /// When the approval expires.
    pub expires_at: SystemTime,
    /// Who approved.
    pub approvers: Vec<String>,
}

/// Why a use could not be consumed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UseRefusal {
    /// The approval was revoked.
    Revoked {
        /// The approval.
        approval_id: String,
    },
    /// The approval has no uses left.
    Exhausted {
        /// The approval.
        approval_id: String,
        /// Uses consumed so far.
        uses: u32,
        /// Uses allowed.
        max_uses: u32,
    },
}

/// The idempotency key of an admission request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotencyKey {
    /// The caller identity.
    pub caller: String,
    /// The caller's request_id.
    pub request_id: String,
    /// A digest of the request content.
    pub fingerprint: String,
}

/// One row of the `approvals` table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApprovalRow {
    /// Primary key.
    pub approval_id: String,
    /// Its stored state.
    pub state: ApprovalState,
    /// The environment.
    pub scope: Scope,
    /// The action approved (empty for rows made from offline credentials).
    pub action: String,
    /// The spec hash approved.
    pub spec_hash: String,
    /// Capabilities granted.
    pub capabilities: Vec<String>,
    /// Who asked for the approval.
    pub requested_by: String,
    /// On whose behalf.
    pub initiated_by: String,
    /// Why it is needed.
    pub justification: String,
    /// When it was created.
    pub created_at: SystemTime,
    /// When it expires.
    pub expires_at: SystemTime,
    /// Distinct approvers needed.
    pub approvals_required: u32,
    /// Reviewers who approved.
    pub approvers: Vec<String>,
    /// Credentials issued for it.
    pub credentials: Vec<String>,
    /// Uses consumed.
    pub uses: u32,
    /// Uses allowed.
    pub max_uses: u32,
    /// The reviewer's or revoker's reason.
    pub decision_reason: String,
    /// Compare-and-set version; 1 after insert, +1 on every write.
    pub version: i64,
    /// Last write.
    pub updated_at: SystemTime,
}

/// A write to the `approvals` table made atomically with an audit entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApprovalWrite {
    /// Insert a new row (stored with version 1); an existing id is a version conflict.
    Insert(ApprovalRow),
    /// Replace the row if the stored version equals `expected_version`; bumps the version.
    Update {
        /// The new content (its `version` is ignored).
        row: ApprovalRow,
        /// The version read before.
        expected_version: i64,
    },
}

/// Builds what is recorded instead when an approval use is refused.
pub type OnRefused = Box<dyn FnOnce(&UseRefusal) -> RefusalRecord + Send>;

/// What an append records when one of its approval uses is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefusalRecord {
    /// The entry recorded instead of the append's own, under the append's `entry_id` (whatever
    /// this one names): a decision is one entry.
    pub entry: NewEntry,
    /// Encoded `pb::Admission` when the decision still admits (shadow mode); stored with the
    /// idempotency key like [`Append::admission`], so a retry gets the same answer.
    pub admission: Option<Vec<u8>>,
}

/// One decision to record, with the state changes that must commit with it.
pub struct Append {
    /// The entry to record.
    pub entry: NewEntry,
    /// Approval uses to consume, all or nothing.
    pub consume: Vec<ApprovalUse>,
    /// What is recorded instead when a use is refused (required when `consume` is non-empty).
    pub on_refused: Option<OnRefused>,
    /// The request's idempotency key, stored with the entry.
    pub idempotency: Option<IdempotencyKey>,
    /// Encoded `pb::Admission` when this decision admits; stored with the idempotency key as
    /// given. Whoever reads it back gets it with `audit_entry_hash` set to the hash of the entry
    /// that recorded it.
    pub admission: Option<Vec<u8>>,
    /// A write to the approvals table.
    pub approval_write: Option<ApprovalWrite>,
}

/// What an append did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Appended {
    /// The entry and every state change committed.
    Committed(Receipt),
    /// A use was refused: `on_refused`'s entry was recorded instead; nothing consumed and no
    /// approval write applied.
    Refused {
        /// Why.
        refusal: UseRefusal,
        /// The receipt of the entry recorded instead.
        receipt: Receipt,
    },
    /// The same caller, request_id and fingerprint were already admitted: nothing written,
    /// whether this append admits or rejects.
    Duplicate {
        /// The original encoded admission.
        admission: Vec<u8>,
    },
    /// The same caller and request_id with another fingerprint: nothing written.
    RequestIdConflict {
        /// The decision that holds the request_id.
        decision_id: String,
    },
    /// The approval write's expected version did not match (or the inserted id exists):
    /// nothing written.
    ApprovalVersionConflict,
}

/// Audit store failures. Only `Open` carries storage text, for the operator at startup.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The entry could not be made durable in time, or the database could not be read.
    #[error("audit store unavailable")]
    Unavailable,
    /// The store could not be opened (bad URL, unreachable, migration failed).
    #[error("audit store could not be opened: {0}")]
    Open(String),
    /// A `list` page token that this store did not issue.
    #[error("page token is not valid")]
    InvalidPageToken,
    /// An append that consumes approval uses without an `on_refused` entry.
    #[error("an append consuming approval uses needs an entry to record on refusal")]
    MissingRefusalEntry,
    /// Too many appends are waiting for the writer: refused before anything was recorded.
    #[error("audit store is at capacity")]
    Overloaded,
    /// An entry_id that is already recorded.
    #[error("audit entry id is already recorded")]
    DuplicateEntryId,
    /// Stored data this version cannot read as written (e.g. an unknown approval state);
    /// logged where found.
    #[error("stored data is corrupt")]
    Corrupt,
    /// An argument outside the tree as it stands (a leaf index at or beyond the tree size, a
    /// size beyond the trail, an old size above the new one): the caller's mistake.
    #[error("{field} {description}")]
    InvalidInput {
        /// The argument, named as on the wire (`tree_size`, `leaf_index`, `old_size`, …).
        field: &'static str,
        /// What is wrong with it, e.g. "is 12, beyond the tree size 10".
        description: String,
    },
}

impl StoreError {
    /// Why an append that found no room (a full queue, or a wait in it past its bound) is
    /// refused: the store is busy, or, when it is failing, it is not writing at all.
    pub(super) fn no_room(healthy: bool) -> Self {
        if healthy {
            StoreError::Overloaded
        } else {
            StoreError::Unavailable
        }
    }
}

/// Tuning of an [`AuditStore`].
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// How long an append may wait to become durable before it fails `Unavailable`.
    pub durable_timeout: Duration,
    /// Most appends written in one transaction.
    pub max_batch: usize,
    /// Appends that may wait for the writer; one more is refused `Overloaded` at once.
    pub queue_capacity: usize,
    /// How long an append may wait for the writer to start on it before it is refused
    /// `Overloaded`, unrecorded (capped at `durable_timeout`).
    pub max_queue_wait: Duration,
    /// Interval of the recovery probe while unhealthy.
    pub probe_interval: Duration,
    /// Time without appends after which the writer probes anyway, so a store that fails while
    /// idle is reported before the next decision finds out.
    pub idle_probe_interval: Duration,
    /// Connections in the pool.
    pub max_connections: u32,
    /// Told of every group commit (metrics); none by default.
    pub commit_observer: Option<Arc<dyn CommitObserver>>,
}

/// Observes the writer's group commits.
pub trait CommitObserver: Send + Sync + std::fmt::Debug {
    /// A transaction of `appends` entries committed `took` after it began.
    fn committed(&self, appends: usize, took: Duration);
}

/// `list` filters; empty strings in `scope` match everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListFilter {
    /// Only this environment (empty fields match any).
    pub scope: Option<Scope>,
    /// Only this outcome.
    pub outcome: Option<String>,
    /// Only entries recorded at or after this time.
    pub since: Option<SystemTime>,
}

/// The result of walking the chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    /// True when every hash, link and position checked out.
    pub ok: bool,
    /// Entries examined.
    pub entries_checked: u64,
    /// The first seq whose hash, link or position is wrong; 0 when ok.
    pub first_bad_seq: u64,
    /// entry_hash of the last entry (64 zeros for an empty trail).
    pub head_hash: String,
    /// Approval rows that disagree with the chain; empty when the chain itself is broken.
    pub mismatches: Vec<DerivedMismatch>,
}

/// An approval or idempotency row whose stored state disagrees with what the chain records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DerivedMismatch {
    /// The approval concerned (empty for an idempotency row).
    pub approval_id: String,
    /// The idempotency row concerned: its caller and request_id (empty for an approval).
    pub idempotency_key: Option<(String, String)>,
    /// What disagrees: for an approval `uses`, `state`, or `row` (consumed in the chain, but no
    /// row); for an idempotency row `decision` or `admission`.
    pub field: &'static str,
    /// The stored value (empty when the row is missing).
    pub stored: String,
    /// The value derived from the chain.
    pub derived: String,
}

/// The row recorded for an offline credential's approval at its first use.
pub(super) fn used_approval_row(approval: &ApprovalUse, now: SystemTime) -> ApprovalRow {
    ApprovalRow {
        approval_id: approval.approval_id.clone(),
        state: ApprovalState::Approved,
        scope: approval.scope.clone(),
        action: String::new(),
        spec_hash: approval.spec_hash.clone(),
        capabilities: approval.capabilities.clone(),
        requested_by: String::new(),
        initiated_by: String::new(),
        justification: String::new(),
        created_at: now,
        expires_at: approval.expires_at,
        approvals_required: 1,
        approvers: approval.approvers.clone(),
        credentials: Vec::new(),
        uses: 1,
        max_uses: approval.max_uses,
        decision_reason: String::new(),
        version: 1,
        updated_at: now,
    }
}
