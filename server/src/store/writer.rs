//! The single writer task: group commit of queued appends, and health with recovery probes.

use std::collections::HashMap;
use std::time::SystemTime;

use admission_log::Hash;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use super::batch::{BatchState, BatchWrites, Reply, Wanted};
use super::db::{BatchRows, Db, WriteTx};
use super::{Append, ApprovalWrite, StoreError, StoreOptions, to_micros};

/// One queued append and the caller waiting for it.
pub(super) struct Job {
    pub(super) append: Append,
    /// When the caller stops waiting.
    pub(super) deadline: Instant,
    /// Until when the append may wait in the queue; after that it is refused unwritten.
    pub(super) queued_until: Instant,
    pub(super) reply: oneshot::Sender<Reply>,
}

/// Why a batch did not commit.
enum BatchError {
    /// The database failed: the store is unhealthy.
    Storage(sqlx::Error),
    /// A caller's deadline passed before commit; rolled back so that nothing is recorded for
    /// a decision its caller was told failed.
    Expired,
}

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

/// Starts the writer. On SQLite it owns a thread (and a single-threaded runtime for its
/// timers): its statements run on the write connection there and block only it, so a batch
/// costs one hand-off to the writer and one back per caller, not one per statement. On
/// PostgreSQL it is a task on the server's runtime. Runs until every `AuditStore` clone is
/// dropped.
pub(super) fn start(
    db: Db,
    jobs: mpsc::Receiver<Job>,
    health: watch::Sender<bool>,
    options: StoreOptions,
) -> Result<(), StoreError> {
    if !db.writes_blocking() {
        tokio::spawn(run(db, jobs, health, options));
        return Ok(());
    }
    let failed =
        |error: std::io::Error| StoreError::Open(format!("starting the audit writer: {error}"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(failed)?;
    std::thread::Builder::new()
        .name("audit-writer".to_owned())
        .spawn(move || runtime.block_on(run(db, jobs, health, options)))
        .map_err(failed)?;
    Ok(())
}

async fn run(
    db: Db,
    mut jobs: mpsc::Receiver<Job>,
    health: watch::Sender<bool>,
    options: StoreOptions,
) {
    let guard = UnhealthyOnExit(health);
    let health = &guard.0;
    let max_batch = options.max_batch.max(1);
    let mut last_head = None;
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
        let mut batch = refuse_stale(drain(first, &mut jobs, max_batch), *health.borrow());
        if batch.is_empty() {
            continue;
        }
        let started = Instant::now();
        match write_batch(&db, &mut batch, &options, &mut last_head).await {
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

/// One transaction for the whole batch: lock the head, read what the batch needs once,
/// decide each append in order, write with one statement per table, commit once. `last_head`
/// is the head this writer last committed: the batch reads the tree hashes an append there
/// needs along with the rest (another instance may have moved it; then they are read later).
async fn write_batch(
    db: &Db,
    batch: &mut [Job],
    options: &StoreOptions,
    last_head: &mut Option<u64>,
) -> Result<Vec<Reply>, BatchError> {
    let mut tx = db
        .begin_write(options.durable_timeout)
        .await
        .map_err(BatchError::Storage)?;
    let wanted = Wanted::of(batch.iter().map(|job| &job.append));
    let read = tx
        .read_batch(&wanted, *last_head)
        .await
        .map_err(BatchError::Storage)?;
    let mut state = BatchState::new(read.fetched, read.head);
    let results: Vec<Reply> = batch
        .iter_mut()
        .map(|job| state.apply(&mut job.append))
        .collect();
    let (seq, hash) = state.head();
    let head = (seq, hash.to_owned());
    let now = state.now();
    let writes = state.finish();
    write(&mut tx, &writes, &read.tree, (head.0, &head.1), now)
        .await
        .map_err(BatchError::Storage)?;
    let now = Instant::now();
    if batch.iter().any(|job| job.deadline <= now) {
        // Dropping would roll back too; an explicit rollback returns the connection clean.
        let _ = tx.rollback().await;
        return Err(BatchError::Expired);
    }
    tx.commit().await.map_err(BatchError::Storage)?;
    *last_head = Some(head.0);
    Ok(results)
}

/// Applies what the batch decided. `writes.entries` holds every entry this batch appends, with
/// its final seq and entry_hash, inside the transaction: whatever must change with the chain
/// in the same commit goes here.
async fn write(
    tx: &mut WriteTx,
    writes: &BatchWrites,
    tree: &HashMap<u64, Hash>,
    head: (u64, &str),
    now: SystemTime,
) -> Result<(), sqlx::Error> {
    for write in &writes.approval_writes {
        let written = match write {
            ApprovalWrite::Insert(row) => tx.insert_approval(row).await?,
            ApprovalWrite::Update {
                row,
                expected_version,
            } => tx.update_approval(row, *expected_version).await?,
        };
        if !written {
            // The batch read this version under the write lock: the database disagrees.
            return Err(sqlx::Error::Protocol(
                "approval row changed under the write lock".to_owned(),
            ));
        }
    }
    let bumps: Vec<(&str, u32)> = writes
        .bumps
        .iter()
        .map(|(id, count)| (id.as_str(), *count))
        .collect();
    let rows = BatchRows {
        entries: &writes.entries,
        tree: &tx.tree_writes(&writes.entries, tree).await?,
        keys: &writes.keys,
        bumps: &bumps,
        created: &writes.created,
        now: to_micros(now),
    };
    if rows.is_empty() {
        return Ok(());
    }
    tx.write_rows(&rows, head).await
}

/// `first` and whatever else is queued, up to `max_batch` appends.
fn drain(first: Job, jobs: &mut mpsc::Receiver<Job>, max_batch: usize) -> Vec<Job> {
    let mut batch = vec![first];
    while batch.len() < max_batch {
        match jobs.try_recv() {
            Ok(job) => batch.push(job),
            Err(_) => break,
        }
    }
    batch
}

/// Drops appends whose caller stopped waiting, and refuses, unwritten and at once, those that
/// waited in the queue past their bound: `Overloaded` while the store is healthy (it is busy,
/// not failing, so health stays), `Unavailable` while it is not (they waited behind failing
/// writes).
fn refuse_stale(batch: Vec<Job>, healthy: bool) -> Vec<Job> {
    let now = Instant::now();
    let mut fresh = Vec::with_capacity(batch.len());
    for job in batch {
        if job.reply.is_closed() || job.deadline <= now {
            continue;
        }
        if job.queued_until <= now {
            let _ = job.reply.send(Err(StoreError::no_room(healthy)));
            continue;
        }
        fresh.push(job);
    }
    fresh
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
