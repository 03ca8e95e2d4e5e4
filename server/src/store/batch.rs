//! Deciding one writer batch in memory. The state every append of the batch needs is read
//! once, with one query per table; each append is then checked, in queue order, against that
//! state as the appends before it left it, and what it writes is collected so that the batch
//! ends with one multi-row statement per table.

use crate::domain::approval::ApprovalState;
use std::collections::{HashMap, HashSet};
use std::time::SystemTime;

use super::chain;
use super::db::{ChainedEntry, Head, KeyWrite, StoredApproval, StoredKey};
use super::{
    Append, Appended, ApprovalRow, ApprovalUse, ApprovalWrite, IdempotencyKey, Receipt,
    RefusalRecord, StoreError, UseRefusal, from_micros, to_micros, used_approval_row,
};

/// What one append did, and for a duplicate the hash of the entry that recorded the stored
/// admission (placed into it by the caller's task, not by the writer).
pub(super) type Reply = Result<(Appended, Option<String>), StoreError>;

/// Where an approval the batch touches stands.
#[derive(Clone, Debug)]
struct Approval {
    stored: StoredApproval,
    /// Index in `BatchWrites::created` when this batch creates the row for a credential
    /// signed offline; `None` when the row exists (before the batch or by an approval write).
    created: Option<usize>,
}

/// Everything a batch writes, in the order it is written.
#[derive(Default)]
pub(super) struct BatchWrites {
    /// Review and revocation writes, in queue order.
    pub approval_writes: Vec<ApprovalWrite>,
    /// Uses consumed from existing rows, per approval.
    pub bumps: Vec<(String, u32)>,
    /// Rows created for credentials signed offline, their uses already counted.
    pub created: Vec<ApprovalRow>,
    /// The entries appended by this batch, chained: seq and entry_hash of each are final.
    pub entries: Vec<ChainedEntry>,
    /// Idempotency rows, one per (caller, request_id).
    pub keys: Vec<KeyWrite>,
}

/// The keys a batch reads: owned, so the read does not borrow the queued appends.
pub(super) struct Wanted {
    keys: Vec<(String, String)>,
    entry_ids: Vec<String>,
    approval_ids: Vec<String>,
}

impl Wanted {
    pub(super) fn of<'a>(appends: impl Iterator<Item = &'a Append> + Clone) -> Self {
        let keys = appends
            .clone()
            .filter_map(|a| a.idempotency.as_ref().map(key_of))
            .collect();
        let entry_ids = appends.clone().map(|a| a.entry.entry_id.clone()).collect();
        let mut approval_ids: Vec<String> = appends
            .clone()
            .flat_map(|a| a.consume.iter().map(|u| u.approval_id.clone()))
            .chain(appends.filter_map(|a| a.approval_write.as_ref().map(written_id)))
            .collect();
        approval_ids.sort_unstable();
        approval_ids.dedup();
        Self {
            keys,
            entry_ids,
            approval_ids,
        }
    }
}

impl Wanted {
    /// (caller, request_id) of every idempotency key.
    pub(super) fn keys(&self) -> Vec<(&str, &str)> {
        let pairs = self.keys.iter();
        pairs.map(|(c, r)| (c.as_str(), r.as_str())).collect()
    }

    /// Every entry id the batch appends.
    pub(super) fn entry_ids(&self) -> Vec<&str> {
        self.entry_ids.iter().map(String::as_str).collect()
    }

    /// Every approval the batch consumes or writes, each once.
    pub(super) fn approval_ids(&self) -> Vec<&str> {
        self.approval_ids.iter().map(String::as_str).collect()
    }
}

/// What the store holds for a batch's [`Wanted`] keys, read inside its transaction.
#[derive(Default)]
pub(super) struct Fetched {
    pub keys: HashMap<(String, String), StoredKey>,
    pub entries: HashSet<String>,
    pub approvals: HashMap<String, StoredApproval>,
}

/// The batch's view of the store while its appends are decided.
pub(super) struct BatchState {
    keys: HashMap<(String, String), StoredKey>,
    entries: HashSet<String>,
    approvals: HashMap<String, Approval>,
    head_seq: u64,
    head_hash: String,
    now: SystemTime,
    bumps: HashMap<String, u32>,
    key_index: HashMap<(String, String), usize>,
    writes: BatchWrites,
}

impl BatchState {
    /// The batch's starting point: what the store holds for `wanted`, and the head. Its
    /// entries are recorded now, or at the head entry's time if the clock reads earlier (it
    /// was stepped back): recorded_at never decreases along the chain, so `since` is a seek.
    pub(super) fn new(fetched: Fetched, head: Head) -> Self {
        let approvals = fetched
            .approvals
            .into_iter()
            .map(|(id, stored)| {
                let created = None;
                (id, Approval { stored, created })
            })
            .collect();
        Self {
            keys: fetched.keys,
            entries: fetched.entries,
            approvals,
            head_seq: head.seq,
            head_hash: head.hash,
            now: SystemTime::now().max(from_micros(head.recorded_at)),
            bumps: HashMap::new(),
            key_index: HashMap::new(),
            writes: BatchWrites::default(),
        }
    }

    /// The head after every append decided so far.
    pub(super) fn head(&self) -> (u64, &str) {
        (self.head_seq, &self.head_hash)
    }

    /// When the batch's entries are recorded.
    pub(super) fn now(&self) -> SystemTime {
        self.now
    }

    /// What the batch writes.
    pub(super) fn finish(mut self) -> BatchWrites {
        let mut bumps: Vec<_> = self.bumps.drain().collect();
        bumps.sort_unstable();
        self.writes.bumps = bumps;
        self.writes
    }

    /// Decides one append. The idempotency key comes first, so whatever this append records
    /// (an admission, a refused use, or a rejection decided before it was queued) is never
    /// recorded for a request that is already admitted: that admission is the answer.
    pub(super) fn apply(&mut self, append: &mut Append) -> Reply {
        if let Some(key) = &append.idempotency {
            if let Some(stored) = self.keys.get(&key_of(key)) {
                if stored.fingerprint != key.fingerprint {
                    let decision_id = stored.decision_id.clone();
                    return Ok((Appended::RequestIdConflict { decision_id }, None));
                }
                if let Some(admission) = &stored.admission {
                    let admission = admission.clone();
                    let entry_hash = stored.entry_hash.clone();
                    return Ok((Appended::Duplicate { admission }, entry_hash));
                }
            }
        }
        if self.entries.contains(&append.entry.entry_id) {
            return Err(StoreError::DuplicateEntryId);
        }
        // The approval write takes effect only if every use is then granted.
        let tentative = match &append.approval_write {
            None => None,
            Some(write) => match self.approval_write(write) {
                Some(approval) => Some((written_id(write), approval)),
                None => return Ok((Appended::ApprovalVersionConflict, None)),
            },
        };
        if let Err(refusal) = self.check_uses(&append.consume, tentative.as_ref()) {
            return self.record_refusal(append, refusal);
        }
        if let (Some((id, approval)), Some(write)) = (tentative, append.approval_write.take()) {
            self.approvals.insert(id, approval);
            self.writes.approval_writes.push(write);
        }
        for approval in &append.consume {
            self.consume(approval);
        }
        let receipt = self.chain(std::mem::take(&mut append.entry));
        if let Some(key) = append.idempotency.take() {
            self.put_key(key, append.admission.take(), &receipt);
        }
        Ok((Appended::Committed(receipt), None))
    }

    /// The approval as `write` leaves it, or `None` for a version conflict.
    fn approval_write(&self, write: &ApprovalWrite) -> Option<Approval> {
        let (row, version) = match write {
            ApprovalWrite::Insert(row) => match self.approvals.contains_key(&row.approval_id) {
                true => return None,
                false => (row, 1),
            },
            ApprovalWrite::Update {
                row,
                expected_version,
            } => match self.approvals.get(&row.approval_id) {
                Some(a) if a.created.is_none() && a.stored.version == *expected_version => {
                    (row, expected_version + 1)
                }
                _ => return None,
            },
        };
        let stored = StoredApproval {
            state: row.state,
            uses: row.uses,
            max_uses: row.max_uses,
            version,
        };
        Some(Approval {
            stored,
            created: None,
        })
    }

    /// Checks every use (all or nothing, counting repeats of one approval within the append).
    fn check_uses(
        &self,
        consume: &[ApprovalUse],
        tentative: Option<&(String, Approval)>,
    ) -> Result<(), UseRefusal> {
        let mut taken: HashMap<&str, u32> = HashMap::new();
        for approval in consume {
            let id = approval.approval_id.as_str();
            let stored = match tentative {
                Some((written, a)) if written == id => Some(&a.stored),
                _ => self.approvals.get(id).map(|a| &a.stored),
            };
            let (uses, max_uses) = match stored {
                Some(s) if s.state == ApprovalState::Revoked => {
                    let approval_id = id.to_owned();
                    return Err(UseRefusal::Revoked { approval_id });
                }
                Some(s) => (s.uses, s.max_uses),
                None => (0, approval.max_uses),
            };
            let already = taken.entry(id).or_insert(0);
            let uses = uses.saturating_add(*already);
            if uses >= max_uses {
                let approval_id = id.to_owned();
                return Err(UseRefusal::Exhausted {
                    approval_id,
                    uses,
                    max_uses,
                });
            }
            *already += 1;
        }
        Ok(())
    }

    /// Consumes one use: counts it against an existing row, or creates the row of an offline
    /// credential's approval.
    fn consume(&mut self, approval: &ApprovalUse) {
        let id = &approval.approval_id;
        if let Some(known) = self.approvals.get_mut(id) {
            known.stored.uses += 1;
            known.stored.version += 1;
            match known.created {
                Some(index) => {
                    let row = &mut self.writes.created[index];
                    row.uses += 1;
                    row.version += 1;
                }
                None => *self.bumps.entry(id.clone()).or_insert(0) += 1,
            }
            return;
        }
        let row = used_approval_row(approval, self.now);
        let stored = StoredApproval {
            state: row.state,
            uses: 1,
            max_uses: row.max_uses,
            version: 1,
        };
        let created = Some(self.writes.created.len());
        self.writes.created.push(row);
        self.approvals
            .insert(id.clone(), Approval { stored, created });
    }

    /// Records `on_refused`'s entry instead of the append's, under its entry_id; nothing is
    /// consumed.
    fn record_refusal(&mut self, append: &mut Append, refusal: UseRefusal) -> Reply {
        let Some(on_refused) = append.on_refused.take() else {
            return Err(StoreError::MissingRefusalEntry);
        };
        let RefusalRecord {
            mut entry,
            admission,
        } = on_refused(&refusal);
        entry.entry_id = std::mem::take(&mut append.entry.entry_id);
        let receipt = self.chain(entry);
        if let Some(key) = append.idempotency.take() {
            self.put_key(key, admission, &receipt);
        }
        Ok((Appended::Refused { refusal, receipt }, None))
    }

    /// Places `entry` after the head.
    fn chain(&mut self, entry: super::NewEntry) -> Receipt {
        let seq = self.head_seq + 1;
        let recorded_at = to_micros(self.now);
        let entry_hash = chain::entry_hash(seq, recorded_at, &entry, &self.head_hash);
        self.entries.insert(entry.entry_id.clone());
        let receipt = Receipt {
            seq,
            entry_id: entry.entry_id.clone(),
            entry_hash: entry_hash.clone(),
            recorded_at: from_micros(recorded_at),
        };
        let prev_hash = std::mem::replace(&mut self.head_hash, entry_hash.clone());
        self.head_seq = seq;
        self.writes.entries.push(ChainedEntry {
            seq,
            recorded_at,
            entry,
            prev_hash,
            entry_hash,
        });
        receipt
    }

    /// Stores `admission` (as given) under `key`, replacing an earlier write of the same key.
    fn put_key(&mut self, key: IdempotencyKey, admission: Option<Vec<u8>>, receipt: &Receipt) {
        let id = key_of(&key);
        let stored = StoredKey {
            fingerprint: key.fingerprint.clone(),
            admission: admission.clone(),
            decision_id: receipt.entry_id.clone(),
            entry_hash: Some(receipt.entry_hash.clone()),
        };
        self.keys.insert(id.clone(), stored);
        let write = KeyWrite {
            key,
            admission,
            decision_id: receipt.entry_id.clone(),
        };
        match self.key_index.get(&id) {
            Some(&index) => self.writes.keys[index] = write,
            None => {
                self.key_index.insert(id, self.writes.keys.len());
                self.writes.keys.push(write);
            }
        }
    }
}

fn key_of(key: &IdempotencyKey) -> (String, String) {
    (key.caller.clone(), key.request_id.clone())
}

fn written_id(write: &ApprovalWrite) -> String {
    match write {
        ApprovalWrite::Insert(row) | ApprovalWrite::Update { row, .. } => row.approval_id.clone(),
    }
}
