//! The one way a rejection is recorded: appended as its decision's audit entry and answered
//! with its `decision_id`, or answered AUDIT_UNAVAILABLE when the entry did not become durable.

use crate::{
    app::failure::Failure,
    domain::{outcome::Outcome, rejection::Rejection},
    store::{Append, Appended, AuditStore, IdempotencyKey, NewEntry},
};

/// Records `rejection` in `entry` (which it completes with outcome, reason, code and detail)
/// and answers it with the entry's id as `decision_id`. Rejections claim no request_id here;
/// `unavailable` is the use case's AUDIT_UNAVAILABLE rejection.
pub(crate) async fn record_rejection(
    store: &AuditStore,
    mut entry: NewEntry,
    rejection: Rejection,
    unavailable: fn() -> Rejection,
) -> Failure {
    set_rejection(&mut entry, &rejection);
    let decision_id = entry.entry_id.clone();
    match store.append(rejection_append(entry, None)).await {
        Ok(Appended::Committed(_)) => Failure::Rejected(rejection.with("decision_id", decision_id)),
        // Without an idempotency key, consumed uses or an approval write, none of these can
        // happen; nothing was recorded.
        Ok(Appended::Duplicate { .. } | Appended::RequestIdConflict { .. }) => {
            Failure::impossible("an append without a request_id matched a request")
        }
        Ok(Appended::Refused { .. }) => {
            Failure::impossible("an append consuming nothing refused a use")
        }
        Ok(Appended::ApprovalVersionConflict) => {
            Failure::impossible("an append writing no approval conflicted")
        }
        Err(error) => Failure::from_store(error, unavailable),
    }
}

/// Marks `entry` as recording `rejection`.
pub(crate) fn set_rejection(entry: &mut NewEntry, rejection: &Rejection) {
    entry.outcome = Outcome::Rejected.as_str().to_owned();
    entry.reason = rejection.reason.as_str().to_owned();
    entry.grpc_code = rejection.reason.code_name().to_owned();
    entry.detail = rejection.message.clone();
}

/// The append of a rejection: no uses consumed, nothing admitted, no approval written.
pub(crate) fn rejection_append(entry: NewEntry, idempotency: Option<IdempotencyKey>) -> Append {
    Append {
        entry,
        consume: Vec::new(),
        on_refused: None,
        idempotency,
        admission: None,
        approval_write: None,
    }
}
