//! Audit service logic (List, Verify) on wire types, without transport: the gRPC adapter checks
//! the caller's role and calls these.

use std::time::SystemTime;

use admission_contract::hash::wire_hash;
use admission_contract::{Reason, pb};

use crate::app::failure::Failure;
use crate::domain::rejection::Rejection;
use crate::store::{AuditStore, ListFilter, Scope, StoreError};

/// `Audit.List`: one page of entries matching the request's filters, in seq order.
pub async fn list(
    store: &AuditStore,
    request: pb::ListAuditRequest,
) -> Result<pb::ListAuditResponse, Failure> {
    let since = match request.since {
        None => None,
        Some(since) => Some(
            SystemTime::try_from(since)
                .map_err(|_| Rejection::invalid_field("since", "is not a valid timestamp"))?,
        ),
    };
    let filter = ListFilter {
        scope: request.environment.map(|environment| Scope {
            org_id: environment.org_id,
            project_id: environment.project_id,
            environment_id: environment.environment_id,
        }),
        outcome: Some(request.outcome).filter(|outcome| !outcome.is_empty()),
        since,
    };
    let (entries, next_page_token) = store
        .list(&filter, request.page_size, &request.page_token)
        .await
        .map_err(store_failure)?;
    Ok(pb::ListAuditResponse {
        entries: entries.into_iter().map(pb::AuditEntry::from).collect(),
        next_page_token,
    })
}

/// `Audit.Verify`: walks the whole chain, re-computes every hash, and compares the approval
/// and idempotency rows with what the chain records.
pub async fn verify(
    store: &AuditStore,
    _request: pb::VerifyAuditRequest,
) -> Result<pb::VerifyAuditResponse, Failure> {
    let report = store.verify().await.map_err(store_failure)?;
    let tree = store.verify_tree().await.map_err(store_failure)?;
    Ok(pb::VerifyAuditResponse {
        ok: report.ok && tree.ok,
        tree: Some(pb::TreeCheck {
            ok: tree.ok,
            tree_size: tree.tree_size,
            first_bad_seq: tree.first_bad_leaf.map_or(0, |leaf| leaf + 1),
            problem: tree.problem,
        }),
        entries_checked: report.entries_checked,
        first_bad_seq: report.first_bad_seq,
        head_hash: wire_hash(&report.head_hash),
        mismatches: report
            .mismatches
            .into_iter()
            .map(|mismatch| {
                let (caller, request_id) = mismatch.idempotency_key.unwrap_or_default();
                pb::DerivedStateMismatch {
                    approval_id: mismatch.approval_id,
                    field: mismatch.field.to_owned(),
                    stored: mismatch.stored,
                    derived: mismatch.derived,
                    caller,
                    request_id,
                }
            })
            .collect(),
    })
}

/// The answer to a store error; storage details stay in the server log.
fn store_failure(error: StoreError) -> Failure {
    match error {
        StoreError::InvalidPageToken => Rejection::invalid_field(
            "page_token",
            "is not a token returned by a previous audit list",
        )
        .into(),
        error => Failure::from_store(error, trail_unavailable),
    }
}

fn trail_unavailable() -> Rejection {
    Rejection::new(
        Reason::AuditUnavailable,
        "the audit trail is unavailable; retry later",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_token_is_request_invalid_on_page_token() {
        let Failure::Rejected(rejection) = store_failure(StoreError::InvalidPageToken) else {
            panic!("a bad page token is a rejection");
        };
        assert_eq!(rejection.reason, Reason::RequestInvalid);
        assert_eq!(rejection.field_violations[0].0, "page_token");
    }

    #[test]
    fn storage_failure_is_audit_unavailable_without_storage_text() {
        let Failure::Rejected(rejection) =
            store_failure(StoreError::Open("secret path".to_owned()))
        else {
            panic!("a storage failure is a rejection");
        };
        assert_eq!(rejection.reason, Reason::AuditUnavailable);
        assert_eq!(
            rejection.message,
            "the audit trail is unavailable; retry later"
        );
    }
}
