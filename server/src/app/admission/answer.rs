//! The answers of decisions: admissions once durable, the rejections the engine makes, and the
//! entries they are recorded in.

use super::*;

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

/// The idempotency key of `request` by `caller`, stored with its entry.
pub(super) fn idempotency_key(caller: &Caller, request: &AdmissionRequest) -> IdempotencyKey {
    IdempotencyKey {
        caller: caller.identity.as_str().to_owned(),
        request_id: request.request_id.clone(),
        fingerprint: request.fingerprint.clone(),
    }
}

/// The answer to an admission once the store has taken (or refused) it; one just recorded is
/// given its receipt signed by `log`.
pub(super) fn admitted_answer(
    appended: Appended,
    admission: Admission,
    shadow: bool,
    request: &AdmissionRequest,
    log: &TransparencyLog,
) -> Result<Admission, Stop> {
    let request_id = &request.request_id;
    let signed = |admission: Admission, receipt: &Receipt| {
        let mut admission = with_receipt(admission, receipt);
        admission.receipt = log.receipt(
            &admission,
            &request.environment,
            receipt.seq,
            &receipt.entry_hash,
        );
        admission
    };
    match appended {
        Appended::Committed(receipt) => Ok(signed(admission, &receipt)),
        Appended::Refused { refusal, receipt } if shadow => {
            Ok(signed(shadow_refused(admission, &refusal), &receipt))
        }
        Appended::Refused { refusal, receipt } => Err(Stop::Reject(
            refusal_rejection(&refusal).with("decision_id", receipt.entry_id),
        )),
        Appended::Duplicate { admission } => Ok(decode_admission(&admission)?),
        Appended::RequestIdConflict { .. } => Err(Stop::Reject(request_id_conflict(request_id))),
        Appended::ApprovalVersionConflict => Err(Stop::Fail(Failure::impossible(
            "an admission writing no approval conflicted",
        ))),
    }
}

/// A stored admission; one this service would not have written is corrupt data.
pub(super) fn decode_admission(bytes: &[u8]) -> Result<Admission, Failure> {
    wire::decode_admission(bytes).map_err(|error| {
        tracing::error!(%error, "stored admission could not be read");
        Failure::Internal
    })
}

pub(super) fn with_receipt(mut admission: Admission, receipt: &Receipt) -> Admission {
    admission.audit_entry_hash = receipt.entry_hash.clone();
    admission
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
    shadow_admission: Option<Admission>,
) -> RefusalRecord {
    let rejection = refusal_rejection(refusal);
    set_rejection(&mut entry, &rejection);
    let Some(admission) = shadow_admission else {
        return RefusalRecord {
            entry,
            admission: None,
        };
    };
    entry.outcome = Outcome::AdmittedShadow.as_str().to_owned();
    entry.grpc_code = GRPC_OK.to_owned();
    entry.approval_ids.clear();
    RefusalRecord {
        entry,
        admission: Some(wire::encode_admission(&shadow_refused(admission, refusal))),
    }
}

/// The shadow-mode admission when a use was refused: nothing consumed, the reason reported.
pub(super) fn shadow_refused(mut admission: Admission, refusal: &UseRefusal) -> Admission {
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
