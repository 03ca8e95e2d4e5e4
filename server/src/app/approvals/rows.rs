//! Approval rows: which are eligible, how they read on the wire, what a request may ask.

use super::*;
use crate::store::StoreError;

/// Approvals that would admit `action` on `spec_hash` in `env` now, newest first: approved,
/// unexpired, unrevoked, with uses left and capabilities covering `required`.
pub async fn eligible(
    store: &AuditStore,
    policy: &EnvironmentPolicy,
    action: ActionKind,
    spec_hash: &str,
    required: &[String],
    now: SystemTime,
) -> Result<Vec<pb::Approval>, Rejection> {
    let scope = Scope {
        org_id: policy.org_id.clone(),
        project_id: policy.project_id.clone(),
        environment_id: policy.environment_id.clone(),
    };
    let rows = store
        .approvals_for(&scope, action.key(), spec_hash)
        .await
        .map_err(|_| unavailable())?;
    Ok(rows
        .iter()
        .filter(|row| is_eligible(row, required, now))
        .map(|row| to_pb(row, now, Some(policy.posture)))
        .collect())
}

pub(super) fn is_eligible(row: &ApprovalRow, required: &[String], now: SystemTime) -> bool {
    row.state == "approved"
        && row.expires_at > now
        && row.uses < row.max_uses
        && !row.credentials.is_empty()
        && required.iter().all(|c| row.capabilities.contains(c))
}

pub(super) fn check_pending(row: &ApprovalRow, now: SystemTime) -> Result<(), Rejection> {
    let state = derived_state(row, now);
    if state == pb::ApprovalState::Pending {
        return Ok(());
    }
    let name = state
        .as_str_name()
        .trim_start_matches("APPROVAL_STATE_")
        .to_lowercase();
    Err(Rejection::new(
        Reason::ApprovalNotPending,
        format!(
            "approval {} is {name}, only pending approvals can be decided",
            row.approval_id
        ),
    )
    .with("approval_id", row.approval_id.clone()))
}

pub(super) fn check_not_self(caller: &Caller, row: &ApprovalRow) -> Result<(), Rejection> {
    let reviewer = caller.identity.as_str();
    if reviewer != row.requested_by && reviewer != row.initiated_by {
        return Ok(());
    }
    Err(Rejection::new(
        Reason::SelfApproval,
        format!(
            "{reviewer} requested approval {} and cannot review it; ask another reviewer",
            row.approval_id
        ),
    )
    .with("approval_id", row.approval_id.clone()))
}

pub(super) fn validate_create(
    request: pb::CreateApprovalRequest,
    limits: &RequestLimits,
) -> Result<NewApproval, Rejection> {
    let environment = request
        .environment
        .as_ref()
        .map(EnvironmentKey::from)
        .unwrap_or_default();
    let mut fields = FieldCheck::new(limits);
    fields.environment(&environment_key(request.environment.as_ref()));
    fields.text("initiated_by", &request.initiated_by);
    fields.text("justification", &request.justification);
    fields.capabilities("capabilities", &request.capabilities);
    match &request.spec {
        Some(pb::create_approval_request::Spec::SpecHash(hash)) => {
            fields.digest("spec_hash", hash);
        }
        Some(pb::create_approval_request::Spec::SpecKv(spec_kv))
            if spec_kv.len() > limits.spec_kv_max_bytes =>
        {
            fields.violation(
                "spec_kv",
                &format!("must be at most {} bytes", limits.spec_kv_max_bytes),
            );
        }
        Some(pb::create_approval_request::Spec::SpecKv(_)) | None => {}
    }
    fields.finish()?;
    let action = action_from_pb(request.action)?;
    let spec_hash = match request.spec {
        Some(pb::create_approval_request::Spec::SpecKv(bytes)) => SpecHash::of_spec(&bytes)
            .map_err(|e| Rejection::new(Reason::SpecMalformed, e.to_string()))?,
        Some(pb::create_approval_request::Spec::SpecHash(hash)) => {
            hash.parse().map_err(|e: admission_contract::SpecError| {
                Rejection::invalid_field("spec_hash", e.to_string())
            })?
        }
        None => {
            return Err(Rejection::invalid_field(
                "spec",
                "spec_kv or spec_hash is required",
            ));
        }
    };
    let ttl = match request.ttl {
        None => None,
        Some(ttl) => Some(
            Duration::try_from(ttl)
                .ok()
                .filter(|d| d.as_secs() > 0)
                .ok_or_else(|| Rejection::invalid_field("ttl", "must be a positive duration"))?,
        ),
    };
    Ok(NewApproval {
        environment,
        action,
        spec_hash: spec_hash.to_string(),
        capabilities: request.capabilities,
        ttl,
        justification: request.justification,
        initiated_by: request.initiated_by,
    })
}

/// The approval as the wire shows it, with `expired` derived from the clock.
pub fn to_pb(row: &ApprovalRow, now: SystemTime, posture: Option<Posture>) -> pb::Approval {
    pb::Approval {
        approval_id: row.approval_id.clone(),
        state: derived_state(row, now) as i32,
        environment: Some(pb::EnvironmentRef {
            org_id: row.scope.org_id.clone(),
            project_id: row.scope.project_id.clone(),
            environment_id: row.scope.environment_id.clone(),
        }),
        action: ActionKind::from_key(&row.action).map_or(pb::Action::Unspecified, pb_action) as i32,
        spec_hash: row.spec_hash.clone(),
        capabilities: row.capabilities.clone(),
        requested_by: row.requested_by.clone(),
        initiated_by: row.initiated_by.clone(),
        justification: row.justification.clone(),
        created_at: Some(row.created_at.into()),
        expires_at: Some(row.expires_at.into()),
        approvals_required: row.approvals_required,
        approvers: row.approvers.clone(),
        credentials: if quorum_reached(row) {
            row.credentials.clone()
        } else {
            Vec::new()
        },
        uses: row.uses,
        max_uses: row.max_uses,
        decision_reason: row.decision_reason.clone(),
        posture: posture.map_or(pb::Posture::Unspecified, pb_posture) as i32,
    }
}

/// Whether enough distinct reviewers approved. Until then the credentials already signed stay
/// inside the service: handed out one by one, credentials of different pending or denied
/// approvals could be combined into a quorum that no single approval reached (SPEC §7 row 25).
pub(super) fn quorum_reached(row: &ApprovalRow) -> bool {
    row.approvers.len() >= row.approvals_required as usize
}

pub(super) fn derived_state(row: &ApprovalRow, now: SystemTime) -> pb::ApprovalState {
    match row.state.as_str() {
        "denied" => pb::ApprovalState::Denied,
        "revoked" => pb::ApprovalState::Revoked,
        _ if row.expires_at <= now => pb::ApprovalState::Expired,
        "approved" => pb::ApprovalState::Approved,
        _ => pb::ApprovalState::Pending,
    }
}

pub(super) fn action_from_pb(action: i32) -> Result<ActionKind, Rejection> {
    match pb::Action::try_from(action) {
        Ok(pb::Action::Deploy) => Ok(ActionKind::Deploy),
        Ok(pb::Action::ReplayDryRun) => Ok(ActionKind::ReplayDryRun),
        Ok(pb::Action::ReplayExecute) => Ok(ActionKind::ReplayExecute),
        Ok(pb::Action::Unspecified) | Err(_) => Err(Rejection::invalid_field(
            "action",
            "must be ACTION_DEPLOY, ACTION_REPLAY_DRY_RUN or ACTION_REPLAY_EXECUTE",
        )),
    }
}

/// Credentials carry whole seconds (SPEC §3), so times that end up in them are truncated.
pub(super) fn whole_seconds(time: SystemTime) -> SystemTime {
    let since_epoch = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    SystemTime::UNIX_EPOCH + Duration::from_secs(since_epoch.as_secs())
}

pub(super) fn unavailable() -> Rejection {
    Rejection::new(
        Reason::AuditUnavailable,
        "the change could not be recorded in the audit trail in time; nothing was changed, retry later",
    )
}

/// The answer when the store did not take an append: OVERLOADED at capacity, else unavailable.
pub(super) fn append_refused(error: &StoreError) -> Rejection {
    match error {
        StoreError::Overloaded => Rejection::new(
            Reason::Overloaded,
            "the audit trail is at capacity; nothing was changed, retry with backoff",
        ),
        _ => unavailable(),
    }
}

pub(super) fn busy() -> Rejection {
    Rejection::new(
        Reason::AuditUnavailable,
        "the approval kept changing under concurrent reviews; retry",
    )
}
