//! Approval rows: which are eligible, how they are shown, what a request may ask.

use super::*;

/// Approvals that would admit `action` on `spec_hash` in `env` now, newest first: approved,
/// unexpired, unrevoked, with uses left and capabilities covering `required`.
pub async fn eligible(
    store: &AuditStore,
    policy: &EnvironmentPolicy,
    action: ActionKind,
    spec_hash: &str,
    required: &[String],
    now: SystemTime,
    unavailable: fn() -> Rejection,
) -> Result<Vec<ApprovalView>, Failure> {
    let scope = Scope {
        org_id: policy.org_id.clone(),
        project_id: policy.project_id.clone(),
        environment_id: policy.environment_id.clone(),
    };
    let rows = store
        .approvals_for(&scope, action.key(), spec_hash)
        .await
        .map_err(|error| Failure::from_store(error, unavailable))?;
    Ok(rows
        .iter()
        .filter(|row| is_eligible(row, required, now))
        .map(|row| view_of(row, now, Some(policy.posture)))
        .collect())
}

pub(super) fn is_eligible(row: &ApprovalRow, required: &[String], now: SystemTime) -> bool {
    row.state.admits()
        && row.expires_at > now
        && row.uses < row.max_uses
        && !row.credentials.is_empty()
        && required.iter().all(|c| row.capabilities.contains(c))
}

pub(super) fn check_pending(row: &ApprovalRow, now: SystemTime) -> Result<(), Rejection> {
    let Err(shown) = row.state.check_decidable(row.expires_at <= now) else {
        return Ok(());
    };
    let name = shown.as_str();
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
    let spec_hash = spec_hash_of(request.spec)?;
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

/// The spec hash a create request names: given, or of the spec it carries (bounds checked).
fn spec_hash_of(spec: Option<pb::create_approval_request::Spec>) -> Result<SpecHash, Rejection> {
    match spec {
        Some(pb::create_approval_request::Spec::SpecKv(bytes)) => SpecHash::of_spec(&bytes)
            .map_err(|e| Rejection::new(Reason::SpecMalformed, e.to_string())),
        Some(pb::create_approval_request::Spec::SpecHash(hash)) => {
            hash.parse().map_err(|e: admission_contract::SpecError| {
                Rejection::invalid_field("spec_hash", e.to_string())
            })
        }
        None => Err(Rejection::invalid_field(
            "spec",
            "spec_kv or spec_hash is required",
        )),
    }
}

/// The approval as it is shown, with `expired` derived from the clock.
pub fn view_of(row: &ApprovalRow, now: SystemTime, posture: Option<Posture>) -> ApprovalView {
    ApprovalView {
        approval_id: row.approval_id.clone(),
        state: row.state.shown(row.expires_at <= now),
        environment: row.scope.clone(),
        action: ActionKind::from_key(&row.action),
        spec_hash: row.spec_hash.clone(),
        capabilities: row.capabilities.clone(),
        requested_by: row.requested_by.clone(),
        initiated_by: row.initiated_by.clone(),
        justification: row.justification.clone(),
        created_at: row.created_at,
        expires_at: row.expires_at,
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
        posture,
    }
}

/// Whether enough distinct reviewers approved. Until then the credentials already signed stay
/// inside the service: handed out one by one, credentials of different pending or denied
/// approvals could be combined into a quorum that no single approval reached (SPEC §7 row 25).
pub(super) fn quorum_reached(row: &ApprovalRow) -> bool {
    row.approvers.len() >= row.approvals_required as usize
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

pub(super) fn busy() -> Rejection {
    Rejection::new(
        Reason::AuditUnavailable,
        "the approval kept changing under concurrent reviews; retry",
    )
}
