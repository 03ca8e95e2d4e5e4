//! Recording decisions: the audit entry of every admission, rejection and unreadable request.

use super::*;

/// How an admitted decision is recorded.
pub(super) enum Admitted {
    Normal,
    BreakGlass(String),
    Shadow(Rejection),
}

/// What an admitted decision writes in its audit entry and its answer.
pub(super) struct AdmittedRecord {
    outcome: Outcome,
    reason: String,
    detail: String,
    shadow_reason: String,
    break_glass: bool,
}

// === impl Engine ===

impl Engine {
    /// Appends the admit entry, consuming one use of each approval, and answers.
    pub(super) async fn record_admission(
        &self,
        caller: &Caller,
        decision_id: &str,
        request: &AdmissionRequest,
        policy: &EnvironmentPolicy,
        used: Vec<UsedApproval>,
        admitted: Admitted,
    ) -> Result<Admission, Stop> {
        let decided_at = SystemTime::now();
        let AdmittedRecord {
            outcome,
            reason,
            detail,
            shadow_reason,
            break_glass,
        } = admitted.record();
        let mut entry = request_entry(
            caller,
            decision_id,
            request,
            policy.required_capabilities(request.action, &request.requested_capabilities),
        );
        entry.approval_ids = used.iter().map(|u| u.approval_id.clone()).collect();
        entry.approvers = used.iter().flat_map(|u| u.issuers.clone()).collect();
        entry.outcome = outcome.as_str().to_owned();
        entry.reason = reason;
        entry.grpc_code = GRPC_OK.to_owned();
        entry.detail = detail;
        let admission = Admission {
            decision_id: decision_id.to_owned(),
            action: request.action,
            spec_hash: request.spec_hash.to_string(),
            approval_ids: entry.approval_ids.clone(),
            decided_at,
            audit_entry_hash: String::new(),
            shadow_reason,
            break_glass,
            receipt: Vec::new(),
        };
        let consume = approval_uses(&used, policy, request);
        let refused_entry = entry.clone();
        let shadow = policy.enforcement == Enforcement::AuditOnly;
        let shadow_admission = shadow.then(|| admission.clone());
        let append = Append {
            entry,
            consume,
            on_refused: Some(Box::new(move |refusal: &UseRefusal| {
                refused(refused_entry, refusal, shadow_admission)
            })),
            idempotency: Some(idempotency_key(caller, request)),
            admission: Some(wire::encode_admission(&admission)),
            approval_write: None,
        };
        let appended = self.inner.store.append(append).await?;
        admitted_answer(appended, admission, shadow, request, &self.inner.log)
    }

    /// Records a rejection and returns it with its `decision_id`; AUDIT_UNAVAILABLE if the
    /// entry could not be made durable. A rejection decided after row 5 is recorded only if the
    /// store, inside its write transaction, holds no admission of this very request: if it
    /// does (an identical retry raced the original and read the state the original left), the
    /// answer is that original admission and nothing is recorded.
    pub(super) async fn record_rejection(
        &self,
        caller: &Caller,
        decision_id: &str,
        request: &AdmissionRequest,
        rejection: Rejection,
    ) -> Result<Admission, Failure> {
        if rejection.metadata.contains_key("decision_id") {
            // Already recorded by the store (a use refused inside the append transaction).
            return Err(rejection.into());
        }
        let entry = rejection_entry(caller, decision_id, request, &rejection);
        if !passed_row_five(rejection.reason) {
            return Err(self.append_unkeyed(entry, rejection).await);
        }
        let key = idempotency_key(caller, request);
        self.append_keyed(entry, key, rejection).await
    }

    /// Records a request to `action` that failed rows 1–2.
    pub(super) async fn record_invalid(
        &self,
        caller: &Caller,
        decision_id: &str,
        action: &str,
        invalid: Box<Invalid>,
    ) -> Failure {
        let entry = NewEntry {
            entry_id: decision_id.to_owned(),
            actor: caller.identity.as_str().to_owned(),
            actor_cert_sha256: caller.cert_sha256.clone(),
            initiated_by: invalid.initiated_by.clone(),
            action: action.to_owned(),
            scope: invalid.environment.clone(),
            request_id: invalid.request_id.clone(),
            ..NewEntry::default()
        };
        self.append_unkeyed(entry, invalid.rejection).await
    }

    /// Records a request whose body could not be read as its message (row 1) and returns the
    /// rejection with its `decision_id`; `action` names the RPC in the audit entry.
    pub async fn record_unreadable(
        &self,
        caller: &Caller,
        action: &str,
        rejection: Rejection,
    ) -> Failure {
        // Row 27, as for every other decision.
        let Ok(_permit) = self.inner.in_flight.try_acquire() else {
            return overloaded().into();
        };
        let entry = NewEntry {
            entry_id: new_decision_id(),
            actor: caller.identity.as_str().to_owned(),
            actor_cert_sha256: caller.cert_sha256.clone(),
            action: action.to_owned(),
            ..NewEntry::default()
        };
        self.append_unkeyed(entry, rejection).await
    }

    /// Records a rejection that claims no request_id.
    pub(super) async fn append_unkeyed(&self, entry: NewEntry, rejection: Rejection) -> Failure {
        record_rejection(&self.inner.store, entry, rejection, audit_unavailable).await
    }

    /// Records a rejection under the request's idempotency key, unless the store already
    /// holds this request: admitted (answer that admission) or taken by other content (answer
    /// and record REQUEST_ID_CONFLICT).
    pub(super) async fn append_keyed(
        &self,
        entry: NewEntry,
        key: IdempotencyKey,
        rejection: Rejection,
    ) -> Result<Admission, Failure> {
        let decision_id = entry.entry_id.clone();
        let conflict_entry = entry.clone();
        let append = rejection_append(entry, Some(key));
        match self.inner.store.append(append).await {
            Ok(Appended::Committed(_)) => Err(rejection.with("decision_id", decision_id).into()),
            Ok(Appended::Duplicate { admission }) => {
                tracing::debug!(
                    reason = rejection.reason.as_str(),
                    "request was admitted meanwhile; answering the original admission"
                );
                decode_admission(&admission)
            }
            Ok(Appended::RequestIdConflict { .. }) => {
                // Another request took the request_id after row 5 was checked, so row 5 is the
                // answer now; nothing was written, so record that answer instead.
                let conflict = request_id_conflict(&conflict_entry.request_id);
                Err(self.append_unkeyed(conflict_entry, conflict).await)
            }
            // A rejection consumes nothing and writes no approval; nothing was recorded.
            Ok(Appended::Refused { .. }) => Err(Failure::impossible("a rejection refused a use")),
            Ok(Appended::ApprovalVersionConflict) => Err(Failure::impossible(
                "a rejection writing no approval conflicted",
            )),
            Err(error) => Err(Failure::from_store(error, audit_unavailable)),
        }
    }
}

// === impl Admitted ===

impl Admitted {
    /// The outcome, reason and detail of the entry, and the flags of the answer.
    fn record(&self) -> AdmittedRecord {
        match self {
            Admitted::Normal => AdmittedRecord {
                outcome: Outcome::Admitted,
                reason: String::new(),
                detail: String::new(),
                shadow_reason: String::new(),
                break_glass: false,
            },
            Admitted::BreakGlass(justification) => AdmittedRecord {
                outcome: Outcome::AdmittedBreakGlass,
                reason: String::new(),
                detail: format!("break-glass: {justification}"),
                shadow_reason: String::new(),
                break_glass: true,
            },
            Admitted::Shadow(would_be) => AdmittedRecord {
                outcome: Outcome::AdmittedShadow,
                reason: would_be.reason.as_str().to_owned(),
                detail: would_be.message.clone(),
                shadow_reason: would_be.reason.as_str().to_owned(),
                break_glass: false,
            },
        }
    }
}
