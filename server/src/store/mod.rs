//! The durable, tamper-evident audit trail, and the approval and idempotency state that must
//! change atomically with it (SPEC §7: consuming approval uses and appending the audit entry
//! are one step, across replicas too).
//!
//! One [`AuditStore`] per process owns a single writer task. Appends are queued to it, drained
//! in groups and written in ONE transaction per group (group commit: one fsync for many
//! decisions); each caller is answered only after that transaction committed. The chain head
//! lives in the `audit_head` row, locked first by every writing transaction, so several server
//! instances sharing one PostgreSQL database extend a single chain. `chain` documents the hash.
//!
//! Storage errors are logged here and surface only as [`StoreError::Unavailable`]; their text
//! never reaches a caller.

pub mod chain;
mod db;
mod writer;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use admission_contract::pb;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tokio::sync::{mpsc, oneshot, watch};

use db::Db;

/// Entries per `list` page when the caller asks for 0.
pub const DEFAULT_PAGE_SIZE: u32 = 100;
/// Largest `list` page.
pub const MAX_PAGE_SIZE: u32 = 1000;

/// The environment an entry or approval concerns: the domain's environment key.
pub use crate::domain::request::EnvironmentKey as Scope;

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
    /// `pending`, `approved`, `denied` or `revoked`.
    pub state: String,
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
    /// The entry recorded instead of the append's own.
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
    /// Encoded `pb::Admission` when this decision admits; stored with the idempotency key,
    /// with `audit_entry_hash` set to the recorded entry's hash.
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
    /// The same caller, request_id and fingerprint were already admitted: nothing written.
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
    /// An entry_id that is already recorded.
    #[error("audit entry id is already recorded")]
    DuplicateEntryId,
}

/// Tuning of an [`AuditStore`].
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// How long an append may wait to become durable before it fails `Unavailable`.
    pub durable_timeout: Duration,
    /// Most appends written in one transaction.
    pub max_batch: usize,
    /// Appends that may wait for the writer.
    pub queue_capacity: usize,
    /// Interval of the recovery probe while unhealthy.
    pub probe_interval: Duration,
    /// Time without appends after which the writer probes anyway, so a store that fails while
    /// idle is reported before the next decision finds out.
    pub idle_probe_interval: Duration,
    /// Connections in the pool.
    pub max_connections: u32,
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
}

/// The audit store: cheap to clone.
#[derive(Clone)]
pub struct AuditStore {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    queue: mpsc::Sender<writer::Job>,
    health: watch::Receiver<bool>,
    options: StoreOptions,
}

// === impl StoreOptions ===

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            durable_timeout: Duration::from_secs(2),
            max_batch: 128,
            queue_capacity: 4096,
            probe_interval: Duration::from_millis(250),
            idle_probe_interval: Duration::from_secs(5),
            max_connections: 8,
        }
    }
}

// === impl AuditStore ===

impl AuditStore {
    /// Opens (creating if needed) the store at `database_url` (`sqlite://…` or
    /// `postgres://…`), runs migrations and starts the writer task.
    pub async fn open(database_url: &str, options: StoreOptions) -> Result<Self, StoreError> {
        let db = Db::connect(database_url, &options).await?;
        let (health_tx, health) = watch::channel(true);
        let (queue, jobs) = mpsc::channel(options.queue_capacity.max(1));
        tokio::spawn(writer::run(db.clone(), jobs, health_tx, options.clone()));
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                queue,
                health,
                options,
            }),
        })
    }

    /// Records `append` and answers only once it is durable; `Unavailable` if that does not
    /// happen within `durable_timeout`. An append whose deadline has passed is skipped, and a
    /// group is rolled back if any member's deadline passes before COMMIT is sent, so a decision
    /// answered `Unavailable` is normally not recorded; only a deadline expiring during the
    /// COMMIT itself can leave a recorded entry whose caller was told `Unavailable`.
    pub async fn append(&self, append: Append) -> Result<Appended, StoreError> {
        if !append.consume.is_empty() && append.on_refused.is_none() {
            return Err(StoreError::MissingRefusalEntry);
        }
        let timeout = self.inner.options.durable_timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        let (reply, answer) = oneshot::channel();
        let job = writer::Job {
            append,
            deadline,
            reply,
        };
        let wait = async {
            self.inner
                .queue
                .send(job)
                .await
                .map_err(|_| StoreError::Unavailable)?;
            answer.await.map_err(|_| StoreError::Unavailable)?
        };
        match tokio::time::timeout_at(deadline, wait).await {
            Ok(result) => result,
            Err(_) => {
                tracing::warn!(
                    timeout_ms = timeout.as_millis() as u64,
                    "audit entry was not durable in time"
                );
                Err(StoreError::Unavailable)
            }
        }
    }

    /// The stored fingerprint and admission (if it admitted) for a caller's request_id.
    pub async fn idempotency(
        &self,
        caller: &str,
        request_id: &str,
    ) -> Result<Option<(String, Option<Vec<u8>>)>, StoreError> {
        self.inner.db.idempotency(caller, request_id).await
    }

    /// One approval row.
    pub async fn approval(&self, approval_id: &str) -> Result<Option<ApprovalRow>, StoreError> {
        self.inner.db.approval(approval_id).await
    }

    /// Approvals for this scope, action and spec hash, newest first.
    pub async fn approvals_for(
        &self,
        scope: &Scope,
        action: &str,
        spec_hash: &str,
    ) -> Result<Vec<ApprovalRow>, StoreError> {
        self.inner.db.approvals_for(scope, action, spec_hash).await
    }

    /// One page of entries in seq order, and the token of the next page (empty on the last).
    pub async fn list(
        &self,
        filter: &ListFilter,
        page_size: u32,
        page_token: &str,
    ) -> Result<(Vec<AuditEntry>, String), StoreError> {
        let after = decode_page_token(page_token)?;
        let limit = match page_size {
            0 => DEFAULT_PAGE_SIZE,
            n => n.min(MAX_PAGE_SIZE),
        };
        let mut entries = self.inner.db.list(filter, after, limit + 1).await?;
        let next = if entries.len() > limit as usize {
            entries.truncate(limit as usize);
            entries
                .last()
                .map(|last| encode_page_token(last.seq))
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok((entries, next))
    }

    /// Walks the whole chain in bounded memory and re-computes every hash.
    pub async fn verify(&self) -> Result<VerifyReport, StoreError> {
        self.inner.db.verify().await
    }

    /// `true` while appends succeed; `false` after a failed write until a write or the
    /// periodic probe succeeds again.
    pub fn health(&self) -> watch::Receiver<bool> {
        self.inner.health.clone()
    }
}

// === impl AuditEntry ===

impl From<AuditEntry> for pb::AuditEntry {
    fn from(recorded: AuditEntry) -> Self {
        let entry = recorded.entry;
        pb::AuditEntry {
            seq: recorded.seq,
            entry_id: entry.entry_id,
            recorded_at: Some(prost_types::Timestamp::from(recorded.recorded_at)),
            actor: entry.actor,
            actor_cert_sha256: entry.actor_cert_sha256,
            initiated_by: entry.initiated_by,
            action: entry.action,
            resource_scope: Some(pb::EnvironmentRef {
                org_id: entry.scope.org_id,
                project_id: entry.scope.project_id,
                environment_id: entry.scope.environment_id,
            }),
            spec_hash: entry.spec_hash,
            capabilities: entry.capabilities,
            approval_ids: entry.approval_ids,
            approvers: entry.approvers,
            outcome: entry.outcome,
            reason: entry.reason,
            grpc_code: entry.grpc_code,
            request_id: entry.request_id,
            prev_hash: recorded.prev_hash,
            entry_hash: recorded.entry_hash,
            detail: entry.detail,
        }
    }
}

/// Microseconds since the Unix epoch; times before it count negative.
pub(crate) fn to_micros(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_micros()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_micros()).map_or(i64::MIN, |m| -m),
    }
}

/// The time `micros` microseconds after the Unix epoch.
pub(crate) fn from_micros(micros: i64) -> SystemTime {
    let magnitude = Duration::from_micros(micros.unsigned_abs());
    if micros >= 0 {
        UNIX_EPOCH + magnitude
    } else {
        UNIX_EPOCH - magnitude
    }
}

/// The opaque `list` token for "entries after `seq`".
fn encode_page_token(seq: u64) -> String {
    URL_SAFE_NO_PAD.encode(format!("audit-after:{seq}"))
}

/// The seq a page token continues after (0 for the empty token).
fn decode_page_token(token: &str) -> Result<u64, StoreError> {
    if token.is_empty() {
        return Ok(0);
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| StoreError::InvalidPageToken)?;
    let text = String::from_utf8(bytes).map_err(|_| StoreError::InvalidPageToken)?;
    let seq = text
        .strip_prefix("audit-after:")
        .ok_or(StoreError::InvalidPageToken)?;
    match seq.parse::<u64>() {
        // Only the exact text this store writes: no sign, no leading zeros, never 0.
        Ok(after) if after > 0 && after.to_string() == seq => Ok(after),
        _ => Err(StoreError::InvalidPageToken),
    }
}

#[cfg(test)]
mod tests;
