//! Recording decisions: the audit entry of every admission, rejection and unreadable request,
//! and the answer once it is durable.

use super::*;

/// How an admitted decision is recorded.
pub(super) enum Admitted {
    Normal,
    BreakGlass(String),
    Shadow(Rejection),
}

/// What an admitted decision writes in its audit entry and its answer.
pub(super) struct AdmittedRecord {
    outcome: &'static str,
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
    ) -> Result<pb::Admission, Outcome> {
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
        entry.outcome = outcome.to_owned();
        entry.reason = reason;
        entry.grpc_code = GRPC_OK.to_owned();
        entry.detail = detail;
        let admission = pb::Admission {
            decision_id: decision_id.to_owned(),
            action: pb_action(request.action) as i32,
            spec_hash: request.spec_hash.to_string(),
            approval_ids: entry.approval_ids.clone(),
            decided_at: Some(decided_at.into()),
            audit_entry_hash: String::new(),
            shadow_reason,
            break_glass,
            // Receipts are signed once the log key and the Merkle tree are in the store.
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
            idempotency: Some(IdempotencyKey {
                caller: caller.identity.as_str().to_owned(),
                request_id: request.request_id.clone(),
                fingerprint: request.fingerprint.clone(),
            }),
            admission: Some(admission.encode_to_vec()),
            approval_write: None,
        };
        let appended = self.inner.store.append(append).await?;
        admitted_answer(appended, admission, shadow, &request.request_id)
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
    ) -> Result<pb::Admission, Rejection> {
        if rejection.metadata.contains_key("decision_id") {
            // Already recorded by the store (a use refused inside the append transaction).
            return Err(rejection);
        }
        let entry = rejection_entry(caller, decision_id, request, &rejection);
        if !passed_row_five(rejection.reason) {
            return Err(self.append_unkeyed(entry, rejection).await);
        }
        let key = IdempotencyKey {
            caller: caller.identity.as_str().to_owned(),
            request_id: request.request_id.clone(),
            fingerprint: request.fingerprint.clone(),
        };
        self.append_keyed(entry, key, rejection).await
    }

    /// Records a request to `action` that failed rows 1–2.
    pub(super) async fn record_invalid(
        &self,
        caller: &Caller,
        decision_id: &str,
        action: &str,
        invalid: Box<Invalid>,
    ) -> Rejection {
        let mut entry = NewEntry {
            entry_id: decision_id.to_owned(),
            actor: caller.identity.as_str().to_owned(),
            actor_cert_sha256: caller.cert_sha256.clone(),
            initiated_by: invalid.initiated_by.clone(),
            action: action.to_owned(),
            scope: invalid.environment.clone(),
            request_id: invalid.request_id.clone(),
            ..NewEntry::default()
        };
        set_rejection(&mut entry, &invalid.rejection);
        self.append_unkeyed(entry, invalid.rejection).await
    }

    /// Records a request whose body could not be read as its message (row 1) and returns the
    /// rejection with its `decision_id`; `action` names the RPC in the audit entry.
    pub async fn record_unreadable(
        &self,
        caller: &Caller,
        action: &str,
        rejection: Rejection,
    ) -> Rejection {
        // Row 27, as for every other decision.
        let Ok(_permit) = self.inner.in_flight.try_acquire() else {
            return overloaded();
        };
        let mut entry = NewEntry {
            entry_id: new_decision_id(),
            actor: caller.identity.as_str().to_owned(),
            actor_cert_sha256: caller.cert_sha256.clone(),
            action: action.to_owned(),
            ..NewEntry::default()
        };
        set_rejection(&mut entry, &rejection);
        self.append_unkeyed(entry, rejection).await
    }

    /// Records a rejection that claims no request_id.
    pub(super) async fn append_unkeyed(&self, entry: NewEntry, rejection: Rejection) -> Rejection {
        let decision_id = entry.entry_id.clone();
        match self.inner.store.append(rejection_append(entry, None)).await {
            Ok(Appended::Committed(_)) => rejection.with("decision_id", decision_id),
            // Nothing else records this entry; answer only what is durable.
            Ok(_) | Err(_) => audit_unavailable(),
        }
    }

    /// Records a rejection under the request's idempotency key, unless the store already
    /// holds this request: admitted (answer that admission) or taken by other content (answer
    /// and record REQUEST_ID_CONFLICT).
    pub(super) async fn append_keyed(
        &self,
        entry: NewEntry,
        key: IdempotencyKey,
        rejection: Rejection,
    ) -> Result<pb::Admission, Rejection> {
        let decision_id = entry.entry_id.clone();
        let conflict_entry = entry.clone();
        match self
            .inner
            .store
            .append(rejection_append(entry, Some(key)))
            .await
        {
            Ok(Appended::Committed(_)) => Err(rejection.with("decision_id", decision_id)),
            Ok(Appended::Duplicate { admission }) => {
                tracing::debug!(
                    reason = rejection.reason.as_str(),
                    "request was admitted meanwhile; answering the original admission"
                );
                decode_admission(&admission).map_err(|_| audit_unavailable())
            }
            Ok(Appended::RequestIdConflict { .. }) => {
                // Another request took the request_id after row 5 was checked, so row 5 is the
                // answer now; nothing was written, so record that answer instead.
                let mut entry = conflict_entry;
                let conflict = request_id_conflict(&entry.request_id);
                set_rejection(&mut entry, &conflict);
                Err(self.append_unkeyed(entry, conflict).await)
            }
            // A rejection consumes nothing and writes no approval, so neither can happen;
            // nothing was recorded either way.
            Ok(Appended::Refused { .. } | Appended::ApprovalVersionConflict) | Err(_) => {
                Err(audit_unavailable())
            }
        }
    }
}

// === impl Admitted ===

impl Admitted {
    /// The outcome, reason and detail of the entry, and the flags of the answer.
    fn record(&self) -> AdmittedRecord {
        match self {
            Admitted::Normal => AdmittedRecord {
                outcome: "admitted",
                reason: String::new(),
                detail: String::new(),
                shadow_reason: String::new(),
                break_glass: false,
            },
            Admitted::BreakGlass(justification) => AdmittedRecord {
                outcome: "admitted_break_glass",
                reason: String::new(),
                detail: format!("break-glass: {justification}"),
                shadow_reason: String::new(),
                break_glass: true,
            },
            Admitted::Shadow(would_be) => AdmittedRecord {
                outcome: "admitted_shadow",
                reason: would_be.reason.as_str().to_owned(),
                detail: would_be.message.clone(),
                shadow_reason: would_be.reason.as_str().to_owned(),
                break_glass: false,
            },
        }
    }
}

/// One use of each approval the admission relied on (rows 23–24, checked again by the store).
pub(super) fn approval_uses(
    used: &[UsedApproval],
    policy: &EnvironmentPolicy,
    request: &AdmissionRequest,
) -> Vec<ApprovalUse> {
    used.iter()
        .map(|u| ApprovalUse {
            approval_id: u.approval_id.clone(),
            max_uses: policy.max_uses,
            scope: request.environment.clone(),
            spec_hash: request.spec_hash.to_string(),
            capabilities: u.capabilities.clone(),
            expires_at: u.expires_at,
            approvers: u.issuers.clone(),
        })
        .collect()
}

/// The answer to an admission once the store has taken (or refused) it.
pub(super) fn admitted_answer(
    appended: Appended,
    admission: pb::Admission,
    shadow: bool,
    request_id: &str,
) -> Result<pb::Admission, Outcome> {
    match appended {
        Appended::Committed(receipt) => Ok(with_receipt(admission, &receipt)),
        Appended::Refused { refusal, receipt } if shadow => {
            Ok(with_receipt(shadow_refused(admission, &refusal), &receipt))
        }
        Appended::Refused { refusal, receipt } => Err(Outcome::Reject(
            refusal_rejection(&refusal).with("decision_id", receipt.entry_id),
        )),
        Appended::Duplicate { admission } => Ok(decode_admission(&admission)?),
        Appended::RequestIdConflict { .. } => Err(Outcome::Reject(request_id_conflict(request_id))),
        Appended::ApprovalVersionConflict => Err(Outcome::Unavailable),
    }
}

pub(super) fn decode_admission(bytes: &[u8]) -> Result<pb::Admission, StoreError> {
    pb::Admission::decode(bytes).map_err(|error| {
        tracing::error!(%error, "stored admission could not be decoded");
        StoreError::Unavailable
    })
}

pub(super) fn with_receipt(mut admission: pb::Admission, receipt: &Receipt) -> pb::Admission {
    admission.audit_entry_hash = receipt.entry_hash.clone();
    admission
}

/// The append of a rejection: no uses consumed, nothing admitted.
pub(super) fn rejection_append(entry: NewEntry, idempotency: Option<IdempotencyKey>) -> Append {
    Append {
        entry,
        consume: Vec::new(),
        on_refused: None,
        idempotency,
        admission: None,
        approval_write: None,
    }
}

/// Whether a rejection was decided after row 5 checked the request_id. Only those claim the
/// request_id: a rejection at rows 3–4 must not, or storing it would turn that answer into
/// REQUEST_ID_CONFLICT (and leave it unrecorded) when the caller had used the request_id before.
pub(super) fn passed_row_five(reason: Reason) -> bool {
    !matches!(
        reason,
        Reason::CallerNotAuthorized | Reason::EnvironmentUnknown | Reason::RequestIdConflict
    )
}

/// The entry recording `rejection` of `request`.
pub(super) fn rejection_entry(
    caller: &Caller,
    decision_id: &str,
    request: &AdmissionRequest,
    rejection: &Rejection,
) -> NewEntry {
    let capabilities = request.requested_capabilities.clone();
    let mut entry = request_entry(caller, decision_id, request, capabilities);
    set_rejection(&mut entry, rejection);
    entry
}

pub(super) fn set_rejection(entry: &mut NewEntry, rejection: &Rejection) {
    entry.outcome = "rejected".to_owned();
    entry.reason = rejection.reason.as_str().to_owned();
    entry.grpc_code = rejection.reason.code_name().to_owned();
    entry.detail = rejection.message.clone();
}

/// The audit entry common to every decision on this request.
pub(super) fn request_entry(
    caller: &Caller,
    decision_id: &str,
    request: &AdmissionRequest,
    capabilities: Vec<String>,
) -> NewEntry {
    NewEntry {
        entry_id: decision_id.to_owned(),
        actor: caller.identity.as_str().to_owned(),
        actor_cert_sha256: caller.cert_sha256.clone(),
        initiated_by: request.initiated_by.clone(),
        action: request.action.admit_audit_action().to_owned(),
        scope: request.environment.clone(),
        spec_hash: request.spec_hash.to_string(),
        capabilities,
        request_id: request.request_id.clone(),
        ..NewEntry::default()
    }
}

/// What is recorded when the store refuses a use inside the append transaction: a rejection,
/// or in shadow mode an admission reporting the would-be rejection (stored for retries).
pub(super) fn refused(
    mut entry: NewEntry,
    refusal: &UseRefusal,
    shadow_admission: Option<pb::Admission>,
) -> RefusalRecord {
    let rejection = refusal_rejection(refusal);
    set_rejection(&mut entry, &rejection);
    let Some(admission) = shadow_admission else {
        return RefusalRecord {
            entry,
            admission: None,
        };
    };
    entry.outcome = "admitted_shadow".to_owned();
    entry.grpc_code = GRPC_OK.to_owned();
    entry.approval_ids.clear();
    RefusalRecord {
        entry,
        admission: Some(shadow_refused(admission, refusal).encode_to_vec()),
    }
}

/// The shadow-mode admission when a use was refused: nothing consumed, the reason reported.
pub(super) fn shadow_refused(mut admission: pb::Admission, refusal: &UseRefusal) -> pb::Admission {
    admission.approval_ids.clear();
    admission.shadow_reason = refusal_rejection(refusal).reason.as_str().to_owned();
    admission
}

pub(super) fn refusal_rejection(refusal: &UseRefusal) -> Rejection {
    match refusal {
        UseRefusal::Revoked { approval_id } => Rejection::new(
            Reason::ApprovalRevoked,
            format!(
                "approval {} was revoked; request a new approval",
                echo(approval_id)
            ),
        )
        .with("approval_id", truncated(approval_id)),
        UseRefusal::Exhausted {
            approval_id,
            uses,
            max_uses,
        } => Rejection::new(
            Reason::ApprovalConsumed,
            format!(
                "approval {} has been used {uses} of {max_uses} times; request a new approval",
                echo(approval_id)
            ),
        )
        .with("approval_id", truncated(approval_id)),
    }
}

pub(super) fn request_id_conflict(request_id: &str) -> Rejection {
    Rejection::new(
        Reason::RequestIdConflict,
        format!(
            "request_id {} was already used by this caller for a different request; use a new request_id",
            echo(request_id)
        ),
    )
}

pub(super) fn overloaded() -> Rejection {
    Rejection::new(
        Reason::Overloaded,
        "the admission service is at its in-flight limit; retry with backoff",
    )
}

pub(super) fn audit_unavailable() -> Rejection {
    Rejection::new(
        Reason::AuditUnavailable,
        "the decision could not be recorded in the audit trail in time; nothing was admitted, retry later",
    )
}
