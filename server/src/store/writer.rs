//! The single writer task: group commit of queued appends, and health with recovery probes.

use std::collections::HashMap;
use std::time::SystemTime;

use admission_contract::pb;
use prost::Message;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use super::db::{Db, WriteTx};
use super::{Append, Appended, ApprovalUse, RefusalRecord, StoreError, StoreOptions, UseRefusal};
use crate::domain::approval::ApprovalState;

/// Savepoint around one append whose approval write must be undone when a use is refused.
const SAVEPOINT: &str = "SAVEPOINT audit_item";
const ROLLBACK_TO_SAVEPOINT: &str = "ROLLBACK TO SAVEPOINT audit_item";
const RELEASE_SAVEPOINT: &str = "RELEASE SAVEPOINT audit_item";

/// One queued append and the caller waiting for it.
pub(super) struct Job {
    pub(super) append: Append,
    /// When the caller stops waiting.
    pub(super) deadline: Instant,
    pub(super) reply: oneshot::Sender<Result<Appended, StoreError>>,
}

/// Why a batch did not commit.
enum BatchError {
    /// The database failed: the store is unhealthy.
    Storage(sqlx::Error),
    /// A caller's deadline passed before commit; rolled back so that nothing is recorded for
    /// a decision its caller was told failed.
    Expired,
}

type ItemResult = Result<Appended, StoreError>;

/// Reports unhealthy if the writer dies (a panic), so nobody waits on a store that can no
/// longer write. A writer that returns because every `AuditStore` is gone (shutdown) leaves
/// health as it was: nobody can append any more, and a shutdown is not a failure.
struct UnhealthyOnExit(watch::Sender<bool>);

impl Drop for UnhealthyOnExit {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.send_replace(false);
        }
    }
}

/// Runs until every `AuditStore` clone is dropped.
pub(super) async fn run(
    db: Db,
    mut jobs: mpsc::Receiver<Job>,
    health: watch::Sender<bool>,
    options: StoreOptions,
) {
    let guard = UnhealthyOnExit(health);
    let health = &guard.0;
    let max_batch = options.max_batch.max(1);
    loop {
        let probe_after = if *health.borrow() {
            options.idle_probe_interval
        } else {
            options.probe_interval
        };
        let first = tokio::select! {
            job = jobs.recv() => job,
            () = tokio::time::sleep(probe_after) => {
                probe(&db, health, &options).await;
                continue;
            }
        };
        let Some(first) = first else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let now = Instant::now();
        batch.retain(|job| job.deadline > now && !job.reply.is_closed());
        if batch.is_empty() {
            continue;
        }
        let started = Instant::now();
        match write_batch(&db, &mut batch, &options).await {
            Ok(results) => {
                set_health(health, true);
                if let Some(observer) = &options.commit_observer {
                    observer.committed(batch.len(), started.elapsed());
                }
                for (job, result) in batch.into_iter().zip(results) {
                    // A caller that stopped waiting no longer needs the answer.
                    let _ = job.reply.send(result);
                }
            }
            Err(error) => {
                // Either way the store could not make entries durable within the bound, so it
                // reports unhealthy until a probe succeeds.
                if let BatchError::Storage(error) = error {
                    tracing::warn!(error = %error, appends = batch.len(), "audit append failed");
                } else {
                    tracing::warn!(appends = batch.len(), "audit appends expired before commit");
                }
                set_health(health, false);
                for job in batch {
                    let _ = job.reply.send(Err(StoreError::Unavailable));
                }
            }
        }
    }
}

/// One transaction for the whole batch: lock the head, apply each append in order, commit once.
async fn write_batch(
    db: &Db,
    batch: &mut [Job],
    options: &StoreOptions,
) -> Result<Vec<ItemResult>, BatchError> {
    let mut tx = db
        .begin_write(options.durable_timeout)
        .await
        .map_err(BatchError::Storage)?;
    let (head_seq, head_hash) = tx.head().await.map_err(BatchError::Storage)?;
    let mut head = Head {
        seq: head_seq,
        hash: head_hash,
    };
    let mut results = Vec::with_capacity(batch.len());
    for job in batch.iter_mut() {
        let result = apply(&mut tx, &mut job.append, &mut head)
            .await
            .map_err(BatchError::Storage)?;
        results.push(result);
    }
    if head.seq != head_seq {
        tx.set_head(head.seq, &head.hash)
            .await
            .map_err(BatchError::Storage)?;
    }
    let now = Instant::now();
    if batch.iter().any(|job| job.deadline <= now) {
        // Dropping would roll back too; an explicit rollback returns the connection clean.
        let _ = tx.rollback().await;
        return Err(BatchError::Expired);
    }
    tx.commit().await.map_err(BatchError::Storage)?;
    Ok(results)
}

/// The chain head as moved by the batch so far.
struct Head {
    seq: u64,
    hash: String,
}

/// Applies one append inside the batch transaction. The idempotency key is looked up first,
/// under the chain lock, so whatever this append records (an admission, a refused use, or a
/// rejection decided before it was queued) is never recorded for a request that is already
/// admitted: that request's stored admission is the answer, and nothing is written.
async fn apply(
    tx: &mut WriteTx,
    append: &mut Append,
    head: &mut Head,
) -> Result<ItemResult, sqlx::Error> {
    if let Some(key) = &append.idempotency {
        if let Some((fingerprint, admission, decision_id)) =
            tx.idempotency(&key.caller, &key.request_id).await?
        {
            if fingerprint != key.fingerprint {
                return Ok(Ok(Appended::RequestIdConflict { decision_id }));
            }
            if let Some(admission) = admission {
                return Ok(Ok(Appended::Duplicate { admission }));
            }
        }
    }
    if tx.entry_exists(&append.entry.entry_id).await? {
        return Ok(Err(StoreError::DuplicateEntryId));
    }
    let guarded = append.approval_write.is_some() && !append.consume.is_empty();
    if guarded {
        tx.execute(SAVEPOINT).await?;
    }
    if let Some(write) = &append.approval_write {
        let written = match write {
            super::ApprovalWrite::Insert(row) => tx.insert_approval(row).await?,
            super::ApprovalWrite::Update {
                row,
                expected_version,
            } => tx.update_approval(row, *expected_version).await?,
        };
        if !written {
            if guarded {
                tx.execute(ROLLBACK_TO_SAVEPOINT).await?;
                tx.execute(RELEASE_SAVEPOINT).await?;
            }
            return Ok(Ok(Appended::ApprovalVersionConflict));
        }
    }
    let now = SystemTime::now();
    let existing = match check_uses(tx, &append.consume).await? {
        Ok(existing) => existing,
        Err(refusal) => {
            if guarded {
                tx.execute(ROLLBACK_TO_SAVEPOINT).await?;
                tx.execute(RELEASE_SAVEPOINT).await?;
            }
            return record_refusal(tx, append, refusal, head, now).await;
        }
    };
    for (approval, exists) in append.consume.iter().zip(existing) {
        tx.consume_use(approval, exists, now).await?;
    }
    if guarded {
        tx.execute(RELEASE_SAVEPOINT).await?;
    }
    let receipt = tx
        .insert_entry(head.seq + 1, &append.entry, &head.hash, now)
        .await?;
    head.seq = receipt.seq;
    head.hash.clone_from(&receipt.entry_hash);
    if let Some(key) = &append.idempotency {
        let admission = append
            .admission
            .as_deref()
            .map(|encoded| as_answered(encoded, &receipt.entry_hash));
        tx.put_idempotency(key, admission.as_deref(), &receipt.entry_id, now)
            .await?;
    }
    Ok(Ok(Appended::Committed(receipt)))
}

/// The admission as its caller is answered: with the hash of the entry that recorded it, so a
/// retry returns exactly the original answer (SPEC §7).
fn as_answered(encoded: &[u8], entry_hash: &str) -> Vec<u8> {
    match pb::Admission::decode(encoded) {
        Ok(mut admission) => {
            admission.audit_entry_hash = entry_hash.to_owned();
            admission.encode_to_vec()
        }
        // Kept as given: whoever reads it back reports the decode failure.
        Err(_) => encoded.to_vec(),
    }
}

/// Checks every use (all or nothing, counting repeats of one approval within the append).
/// On success, whether each approval already has a row.
async fn check_uses(
    tx: &mut WriteTx,
    consume: &[ApprovalUse],
) -> Result<Result<Vec<bool>, UseRefusal>, sqlx::Error> {
    let mut taken: HashMap<&str, u32> = HashMap::new();
    let mut existing = Vec::with_capacity(consume.len());
    for approval in consume {
        let id = approval.approval_id.as_str();
        let stored = tx.approval_uses(id).await?;
        let (uses, max_uses) = match &stored {
            Some((ApprovalState::Revoked, _, _)) => {
                return Ok(Err(UseRefusal::Revoked {
                    approval_id: id.to_owned(),
                }));
            }
            Some((_, uses, max_uses)) => (*uses, *max_uses),
            None => (0, approval.max_uses),
        };
        let already = taken.entry(id).or_insert(0);
        let uses = uses.saturating_add(*already);
        if uses >= max_uses {
            return Ok(Err(UseRefusal::Exhausted {
                approval_id: id.to_owned(),
                uses,
                max_uses,
            }));
        }
        *already += 1;
        // A repeated approval created by this append exists once its first use is recorded.
        existing.push(stored.is_some() || *already > 1);
    }
    Ok(Ok(existing))
}

/// Records `on_refused`'s entry instead of the append's; nothing is consumed.
async fn record_refusal(
    tx: &mut WriteTx,
    append: &mut Append,
    refusal: UseRefusal,
    head: &mut Head,
    now: SystemTime,
) -> Result<ItemResult, sqlx::Error> {
    let Some(on_refused) = append.on_refused.take() else {
        return Ok(Err(StoreError::MissingRefusalEntry));
    };
    let RefusalRecord { entry, admission } = on_refused(&refusal);
    if entry.entry_id != append.entry.entry_id && tx.entry_exists(&entry.entry_id).await? {
        return Ok(Err(StoreError::DuplicateEntryId));
    }
    let receipt = tx
        .insert_entry(head.seq + 1, &entry, &head.hash, now)
        .await?;
    head.seq = receipt.seq;
    head.hash.clone_from(&receipt.entry_hash);
    if let Some(key) = &append.idempotency {
        let admission = admission
            .as_deref()
            .map(|encoded| as_answered(encoded, &receipt.entry_hash));
        tx.put_idempotency(key, admission.as_deref(), &receipt.entry_id, now)
            .await?;
    }
    Ok(Ok(Appended::Refused { refusal, receipt }))
}

/// One write probe while idle or unhealthy: health follows whether it can take the write lock
/// and write within the bound.
async fn probe(db: &Db, health: &watch::Sender<bool>, options: &StoreOptions) {
    match db.probe(options.durable_timeout).await {
        Ok(()) => set_health(health, true),
        Err(error) => {
            tracing::debug!(error = %error, "audit store is not writable");
            set_health(health, false);
        }
    }
}

fn set_health(health: &watch::Sender<bool>, healthy: bool) {
    let changed = health.send_if_modified(|current| {
        let changed = *current != healthy;
        *current = healthy;
        changed
    });
    if changed && healthy {
        tracing::info!("audit store is writable again");
    } else if changed {
        tracing::error!("audit store is not writable; admissions fail closed");
    }
}
