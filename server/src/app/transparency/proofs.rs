//! `Audit.ProveInclusion` and `Audit.ProveConsistency` over the store's tree. Sizes and
//! indexes are checked here against the trail's size before the store is asked, so an
//! out-of-range argument is REQUEST_INVALID naming its field.

use admission_contract::{Reason, pb};

use crate::app::failure::Failure;
use crate::domain::rejection::Rejection;
use crate::store::{AuditStore, StoreError};

/// Whose entries a caller may prove.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provable<'a> {
    /// Any entry (an auditor).
    Any,
    /// Only entries this identity is the actor of (an orchestrator).
    OwnedBy(&'a str),
}

/// `Audit.ProveInclusion`: the audit path of one entry, named by seq or decision_id, in the
/// tree of `tree_size` entries (0: the whole trail).
pub async fn prove_inclusion(
    store: &AuditStore,
    request: &pb::ProveInclusionRequest,
    provable: Provable<'_>,
) -> Result<pb::InclusionProof, Failure> {
    let (head, _) = store.tree_head().await.map_err(store_failure)?;
    let seq = seq_to_prove(store, request).await?;
    if seq > head {
        return Err(invalid(
            "seq",
            format!("is beyond the trail's {head} entries"),
        ));
    }
    let tree_size = match request.tree_size {
        0 => head,
        size if size < seq => return Err(invalid("tree_size", "must be at least seq")),
        size if size > head => {
            return Err(invalid(
                "tree_size",
                format!("exceeds the trail's {head} entries"),
            ));
        }
        size => size,
    };
    let entry = store
        .entry(seq)
        .await
        .map_err(store_failure)?
        .ok_or_else(|| Failure::impossible("an entry below the tree head is missing"))?;
    if let Provable::OwnedBy(caller) = provable
        && entry.entry.actor != caller
    {
        return Err(Rejection::new(
            Reason::CallerNotAuthorized,
            format!("caller {caller} may prove only its own decisions without the auditor role"),
        )
        .into());
    }
    let entry_hash = hex::decode(&entry.entry_hash)
        .ok()
        .filter(|bytes| bytes.len() == 32)
        .ok_or_else(|| Failure::impossible("a stored entry_hash is not 32 bytes"))?;
    let hashes = store
        .inclusion_proof(seq - 1, tree_size)
        .await
        .map_err(store_failure)?;
    Ok(pb::InclusionProof {
        leaf_index: seq - 1,
        tree_size,
        hashes: hashes.iter().map(|hash| hash.to_vec()).collect(),
        entry_hash,
    })
}

/// `Audit.ProveConsistency`: the proof that the tree of `old_size` entries is a prefix of the
/// tree of `new_size` (0: the whole trail).
pub async fn prove_consistency(
    store: &AuditStore,
    request: &pb::ProveConsistencyRequest,
) -> Result<pb::ConsistencyProof, Failure> {
    let (head, _) = store.tree_head().await.map_err(store_failure)?;
    let new_size = match request.new_size {
        0 => head,
        size if size > head => {
            return Err(invalid(
                "new_size",
                format!("exceeds the trail's {head} entries"),
            ));
        }
        size => size,
    };
    if request.old_size == 0 {
        return Err(invalid("old_size", "must be at least 1"));
    }
    if request.old_size > new_size {
        return Err(invalid(
            "old_size",
            format!("must not exceed new_size ({new_size})"),
        ));
    }
    let hashes = store
        .consistency_proof(request.old_size, new_size)
        .await
        .map_err(store_failure)?;
    Ok(pb::ConsistencyProof {
        hashes: hashes.iter().map(|hash| hash.to_vec()).collect(),
    })
}

/// The seq the request names: `seq`, or the entry of `decision_id` (then `seq` is 0 or that).
async fn seq_to_prove(
    store: &AuditStore,
    request: &pb::ProveInclusionRequest,
) -> Result<u64, Failure> {
    if request.decision_id.is_empty() {
        if request.seq == 0 {
            return Err(invalid(
                "seq",
                "must be at least 1 when no decision_id is given",
            ));
        }
        return Ok(request.seq);
    }
    let Some((index, _)) = store
        .leaf_of(&request.decision_id)
        .await
        .map_err(store_failure)?
    else {
        return Err(Rejection::new(
            Reason::DecisionNotFound,
            format!(
                "no audit entry has decision_id {}",
                admission_contract::echo(&request.decision_id)
            ),
        )
        .with(
            "decision_id",
            admission_contract::echo::truncated(&request.decision_id),
        )
        .into());
    };
    let seq = index + 1;
    if request.seq != 0 && request.seq != seq {
        return Err(invalid(
            "seq",
            format!("is not the seq of decision_id ({seq}); send 0 or {seq}"),
        ));
    }
    Ok(seq)
}

fn invalid(field: &str, description: impl Into<String>) -> Failure {
    Rejection::invalid_field(field, description).into()
}

/// The answer to a store error of the log's reads; storage details stay in the server log.
pub(super) fn store_failure(error: StoreError) -> Failure {
    Failure::from_store(error, || {
        Rejection::new(
            Reason::AuditUnavailable,
            "the audit trail is unavailable; retry later",
        )
    })
}
