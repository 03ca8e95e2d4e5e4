//! Audit service logic (List, Verify) on wire types, without transport: the gRPC adapter checks
//! the caller's role and calls these.

use std::time::SystemTime;

use admission_contract::{Reason, pb};

use crate::domain::rejection::Rejection;
use crate::store::{AuditStore, ListFilter, Scope, StoreError};

/// `Audit.List`: one page of entries matching the request's filters, in seq order.
pub async fn list(
    store: &AuditStore,
    request: pb::ListAuditRequest,
) -> Result<pb::ListAuditResponse, Rejection> {
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
        .map_err(store_rejection)?;
    Ok(pb::ListAuditResponse {
        entries: entries.into_iter().map(pb::AuditEntry::from).collect(),
        next_page_token,
    })
}

/// `Audit.Verify`: walks the whole chain and re-computes every hash.
pub async fn verify(
    store: &AuditStore,
    _request: pb::VerifyAuditRequest,
) -> Result<pb::VerifyAuditResponse, Rejection> {
    let report = store.verify().await.map_err(store_rejection)?;
    Ok(pb::VerifyAuditResponse {
        ok: report.ok,
        entries_checked: report.entries_checked,
        first_bad_seq: report.first_bad_seq,
        head_hash: report.head_hash,
    })
}

/// The rejection for a store error; storage details stay in the server log.
fn store_rejection(error: StoreError) -> Rejection {
    match error {
        StoreError::InvalidPageToken => Rejection::invalid_field(
            "page_token",
            "is not a token returned by a previous audit list",
        ),
        StoreError::Unavailable
        | StoreError::Open(_)
        | StoreError::MissingRefusalEntry
        | StoreError::Overloaded
        | StoreError::DuplicateEntryId => Rejection::new(
            Reason::AuditUnavailable,
            "the audit trail is unavailable; retry later",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_token_is_request_invalid_on_page_token() {
        let rejection = store_rejection(StoreError::InvalidPageToken);
        assert_eq!(rejection.reason, Reason::RequestInvalid);
        assert_eq!(rejection.field_violations[0].0, "page_token");
    }

    #[test]
    fn storage_failure_is_audit_unavailable_without_storage_text() {
        let rejection = store_rejection(StoreError::Open("secret path".to_owned()));
        assert_eq!(rejection.reason, Reason::AuditUnavailable);
        assert_eq!(
            rejection.message,
            "the audit trail is unavailable; retry later"
        );
    }
}
