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

mod answer;
mod batch;
pub mod chain;
mod db;
mod tree;
mod writer;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tokio::sync::{mpsc, oneshot, watch};

use db::Db;

mod model;

pub use self::model::*;
pub use self::tree::TreeReport;

/// Entries per `list` page when the caller asks for 0.
pub const DEFAULT_PAGE_SIZE: u32 = 100;
/// Largest `list` page.
pub const MAX_PAGE_SIZE: u32 = 1000;

/// Appends that may wait for the writer by default: about a quarter of a second of what one
/// writer commits on a quiet 2-core machine (about 4,000 admissions/s there).
pub const DEFAULT_QUEUE_CAPACITY: usize = 1024;
/// How long an append may wait in the queue by default before it is refused OVERLOADED.
pub const DEFAULT_MAX_QUEUE_WAIT: Duration = Duration::from_millis(500);

/// The environment an entry or approval concerns: the domain's environment key.
pub use crate::domain::request::EnvironmentKey as Scope;

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
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            max_queue_wait: DEFAULT_MAX_QUEUE_WAIT,
            probe_interval: Duration::from_millis(250),
            idle_probe_interval: Duration::from_secs(5),
            max_connections: 8,
            commit_observer: None,
        }
    }
}

// === impl AuditStore ===

impl AuditStore {
    /// Opens (creating if needed) the store at `database_url` (`sqlite://…` or
    /// `postgres://…`), runs migrations and starts the writer task.
    pub async fn open(database_url: &str, options: StoreOptions) -> Result<Self, StoreError> {
        let db = Db::connect(database_url, &options).await?;
        match tree::complete(&db, &options).await {
            Ok(()) => {}
            // Entries the tree cannot be built from are Verify's to report, not a reason not
            // to start: the tree stays short and its reads answer Unavailable.
            Err(error @ (sqlx::Error::Decode(_) | sqlx::Error::Protocol(_))) => {
                tracing::error!(%error, "audit tree could not be built from the entries");
            }
            Err(error) => {
                return Err(StoreError::Open(format!(
                    "building the audit tree: {error}"
                )));
            }
        }
        let (health_tx, health) = watch::channel(true);
        let (queue, jobs) = mpsc::channel(options.queue_capacity.max(1));
        writer::start(db.clone(), jobs, health_tx, options.clone())?;
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                queue,
                health,
                options,
            }),
        })
    }

    /// Connects once to `database_url` and disconnects: no pool, no migration, nothing
    /// written. The error names the host and port (or file) and the cause, never a password.
    pub async fn check_connection(database_url: &str, timeout: Duration) -> Result<(), String> {
        db::reach::check_connection(database_url, timeout).await
    }

    /// Records `append` and answers only once it is durable; `Unavailable` if that does not
    /// happen within `durable_timeout`. An append whose deadline has passed is skipped, and a
    /// group is rolled back if any member's deadline passes before COMMIT is sent, so a decision
    /// answered `Unavailable` is normally not recorded; only a deadline expiring during the
    /// COMMIT itself can leave a recorded entry whose caller was told `Unavailable`.
    ///
    /// Admission control comes first: when `queue_capacity` appends already wait, or this one
    /// waits in the queue longer than `max_queue_wait`, it is refused `Overloaded` and nothing
    /// is recorded; `Unavailable` instead while the store reports unhealthy, since then the
    /// queue is full because writes fail, not because of load.
    pub async fn append(&self, append: Append) -> Result<Appended, StoreError> {
        if !append.consume.is_empty() && append.on_refused.is_none() {
            return Err(StoreError::MissingRefusalEntry);
        }
        let options = &self.inner.options;
        let now = tokio::time::Instant::now();
        let deadline = now + options.durable_timeout;
        let (reply, answer) = oneshot::channel();
        let job = writer::Job {
            append,
            deadline,
            queued_until: now + options.max_queue_wait.min(options.durable_timeout),
            reply,
        };
        match self.inner.queue.try_send(job) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => return Err(self.refusal()),
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(StoreError::Unavailable),
        }
        match tokio::time::timeout_at(deadline, answer).await {
            Ok(Ok(reply)) => reply.map(answer::placed),
            Ok(Err(_)) => Err(StoreError::Unavailable),
            Err(_) => {
                tracing::warn!(
                    timeout_ms = options.durable_timeout.as_millis() as u64,
                    "audit entry was not durable in time"
                );
                Err(StoreError::Unavailable)
            }
        }
    }

    /// Why an append that found no room is refused: the store is busy, or it is failing.
    fn refusal(&self) -> StoreError {
        StoreError::no_room(*self.inner.health.borrow())
    }

    /// The stored fingerprint and admission (if it admitted) for a caller's request_id.
    pub async fn idempotency(
        &self,
        caller: &str,
        request_id: &str,
    ) -> Result<Option<(String, Option<Vec<u8>>)>, StoreError> {
        let stored = self.inner.db.idempotency(caller, request_id).await?;
        Ok(stored.map(|(fingerprint, admission, entry_hash)| {
            let admission = admission.map(|a| answer::with_entry_hash(a, entry_hash.as_deref()));
            (fingerprint, admission)
        }))
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

    /// The entry at `seq`, if recorded.
    pub async fn entry(&self, seq: u64) -> Result<Option<AuditEntry>, StoreError> {
        let Some(after) = seq.checked_sub(1) else {
            return Ok(None);
        };
        let mut entries = self.inner.db.list(&ListFilter::default(), after, 1).await?;
        Ok(entries.pop().filter(|entry| entry.seq == seq))
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
