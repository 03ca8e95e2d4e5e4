//! The trail as a transparency log (SPEC §9 "Verifiable audit"): signed checkpoints, the
//! admission receipts the decision engine attaches, and (in [`proofs`]) inclusion and
//! consistency proofs. Checkpoints are signed by whoever first asks for one of a tree size
//! (an auditor's GetCheckpoint or the periodic task), stored, and written to the checkpoint
//! directory by [`files`].

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use admission_contract::{Reason, pb};
use admission_log::{Checkpoint, LogKey, ReceiptFacts, Statement, sign_receipt};

use crate::app::failure::Failure;
use crate::domain::decision::Admission;
use crate::domain::rejection::Rejection;
use crate::domain::request::EnvironmentKey;
use crate::store::{AuditStore, StoreError};

mod files;
pub mod proofs;

/// The log's signing side, shared by the engine, the Audit service and the checkpoint task.
pub type SharedLog = Arc<TransparencyLog>;

/// The log key (if configured) and where signed checkpoints are published.
#[derive(Debug, Default)]
pub struct TransparencyLog {
    key: Option<Arc<LogKey>>,
    checkpoint_dir: Option<PathBuf>,
    write_failures: AtomicU64,
}

/// A checkpoint as served: the signed note and what it says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedCheckpoint {
    /// The C2SP signed note.
    pub note: String,
    /// The number of entries it covers.
    pub tree_size: u64,
    /// Its RFC 6962 root.
    pub root_hash: [u8; 32],
}

// === impl TransparencyLog ===

impl TransparencyLog {
    /// A log signing with `key` (whose name is the origin), publishing checkpoints to
    /// `checkpoint_dir` when given.
    pub fn new(key: Option<Arc<LogKey>>, checkpoint_dir: Option<PathBuf>) -> Self {
        Self {
            key,
            checkpoint_dir,
            write_failures: AtomicU64::new(0),
        }
    }

    /// Whether a log key is configured (receipts and checkpoints are signed).
    pub fn signs(&self) -> bool {
        self.key.is_some()
    }

    /// How many checkpoint files could not be written.
    pub fn checkpoint_write_failures(&self) -> u64 {
        self.write_failures.load(Ordering::Relaxed)
    }

    /// The receipt of `admission` in `environment`, recorded at `seq` with `entry_hash` (64
    /// hex); empty without a log key. Deterministic: the same admission and entry give the
    /// same bytes, so a retry answered from the stored admission gets the original receipt.
    pub fn receipt(
        &self,
        admission: &Admission,
        environment: &EnvironmentKey,
        seq: u64,
        entry_hash: &str,
    ) -> Vec<u8> {
        let Some(key) = &self.key else {
            return Vec::new();
        };
        let (org, project, env) = environment.parts();
        let facts = ReceiptFacts {
            decision_id: admission.decision_id.clone(),
            environment: format!("{org}/{project}/{env}"),
            action: admission.action.key().to_owned(),
            approval_ids: admission.approval_ids.clone(),
            decided_at: admission.decided_at,
            seq,
            entry_hash: entry_hash.to_owned(),
            break_glass: admission.break_glass,
        };
        let spec_sha256 = admission_contract::hash::bare_hash(&admission.spec_hash);
        let signed = Statement::of_spec_sha256(spec_sha256, &facts, key.name())
            .and_then(|statement| sign_receipt(&statement, key));
        match signed {
            Ok(receipt) => receipt,
            Err(error) => {
                // The admission stands (it is durable); only its receipt is missing.
                tracing::error!(%error, decision_id = %admission.decision_id, "receipt could not be signed");
                Vec::new()
            }
        }
    }

    /// A checkpoint of the whole trail: the stored one if it covers every entry, else a new
    /// one signed now, stored and published. SIGNING_NOT_CONFIGURED without a log key.
    pub async fn checkpoint(&self, store: &AuditStore) -> Result<SignedCheckpoint, Failure> {
        let Some(key) = &self.key else {
            return Err(Rejection::new(
                Reason::SigningNotConfigured,
                "this service has no [audit] log_key, so it cannot sign checkpoints",
            )
            .into());
        };
        self.checkpoint_with(key, store)
            .await
            .map_err(proofs::store_failure)
    }

    /// The periodic task's step: signs, stores and publishes a checkpoint when the trail grew
    /// since the latest one; returns its size, or `None` when there was nothing new to sign
    /// (or no log key).
    pub async fn refresh(&self, store: &AuditStore) -> Result<Option<u64>, StoreError> {
        let Some(key) = &self.key else {
            return Ok(None);
        };
        let (size, _) = store.tree_head().await?;
        let latest = store.latest_checkpoint().await?;
        if latest.is_some_and(|(stored, _, _)| stored >= size) {
            return Ok(None);
        }
        self.checkpoint_with(key, store)
            .await
            .map(|c| Some(c.tree_size))
    }

    async fn checkpoint_with(
        &self,
        key: &LogKey,
        store: &AuditStore,
    ) -> Result<SignedCheckpoint, StoreError> {
        let (tree_size, root_hash) = store.tree_head().await?;
        if let Some((stored, note, _)) = store.latest_checkpoint().await?
            && stored == tree_size
        {
            return Ok(SignedCheckpoint {
                note,
                tree_size,
                root_hash,
            });
        }
        let note = Checkpoint::new(key.name(), tree_size, root_hash)
            .and_then(|checkpoint| checkpoint.sign(key))
            .map_err(|error| {
                tracing::error!(%error, "checkpoint could not be signed");
                StoreError::Corrupt
            })?;
        store.save_checkpoint(tree_size, &note).await?;
        self.publish(tree_size, &note);
        Ok(SignedCheckpoint {
            note,
            tree_size,
            root_hash,
        })
    }

    /// Writes the checkpoint files; a failure is logged and counted, never fatal.
    fn publish(&self, tree_size: u64, note: &str) {
        let Some(dir) = &self.checkpoint_dir else {
            return;
        };
        if let Err(error) = files::write_checkpoint(dir, tree_size, note) {
            self.write_failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%error, dir = %dir.display(), tree_size, "checkpoint file could not be written");
        }
    }
}

// === impl SignedCheckpoint ===

impl From<SignedCheckpoint> for pb::Checkpoint {
    fn from(checkpoint: SignedCheckpoint) -> Self {
        pb::Checkpoint {
            note: checkpoint.note,
            tree_size: checkpoint.tree_size,
            root_hash: checkpoint.root_hash.to_vec(),
        }
    }
}
