//! Shared printing for admissionctl: human-readable by default, `--json` for scripts.

use serde_json::{Value, json};

use crate::pb;

/// Prints a JSON value on one line.
pub fn print_json(value: &Value) {
    println!("{value}");
}

/// `ACTION_DEPLOY` → `deploy`.
pub fn action(action: i32) -> String {
    enum_name(
        pb::Action::try_from(action).map(|a| a.as_str_name()),
        "ACTION_",
    )
}

/// `POLICY_DECISION_ALLOW` → `ALLOW`.
pub fn policy_decision(decision: i32) -> String {
    enum_name(
        pb::PolicyDecision::try_from(decision).map(|d| d.as_str_name()),
        "POLICY_DECISION_",
    )
    .to_uppercase()
}

/// `POSTURE_PROD` → `prod`.
pub fn posture(posture: i32) -> String {
    enum_name(
        pb::Posture::try_from(posture).map(|p| p.as_str_name()),
        "POSTURE_",
    )
}

/// `APPROVAL_STATE_PENDING` → `pending`.
pub fn approval_state(state: i32) -> String {
    enum_name(
        pb::ApprovalState::try_from(state).map(|s| s.as_str_name()),
        "APPROVAL_STATE_",
    )
}

fn enum_name<E>(name: Result<&'static str, E>, prefix: &str) -> String {
    name.map_or_else(
        |_| "unknown".to_owned(),
        |n| n.trim_start_matches(prefix).to_lowercase(),
    )
}

/// RFC 3339 UTC with whole seconds, or `-`.
pub fn time(timestamp: Option<&prost_types::Timestamp>) -> String {
    timestamp
        .and_then(|t| std::time::SystemTime::try_from(*t).ok())
        .map_or_else(
            || "-".to_owned(),
            |t| humantime::format_rfc3339_seconds(t).to_string(),
        )
}

/// An approval as JSON.
pub fn approval_json(approval: &pb::Approval) -> Value {
    let env = approval.environment.clone().unwrap_or_default();
    json!({
        "approval_id": approval.approval_id,
        "state": approval_state(approval.state),
        "environment": format!("{}/{}/{}", env.org_id, env.project_id, env.environment_id),
        "posture": posture(approval.posture),
        "action": action(approval.action),
        "spec_hash": approval.spec_hash,
        "capabilities": approval.capabilities,
        "requested_by": approval.requested_by,
        "initiated_by": approval.initiated_by,
        "justification": approval.justification,
        "created_at": time(approval.created_at.as_ref()),
        "expires_at": time(approval.expires_at.as_ref()),
        "approvals_required": approval.approvals_required,
        "approvers": approval.approvers,
        "credentials": approval.credentials,
        "uses": approval.uses,
        "max_uses": approval.max_uses,
        "decision_reason": approval.decision_reason,
    })
}

/// An approval for a person reviewing it.
pub fn print_approval(approval: &pb::Approval) {
    let env = approval.environment.clone().unwrap_or_default();
    println!(
        "approval {}  [{}]",
        approval.approval_id,
        approval_state(approval.state)
    );
    println!(
        "  environment:   {}/{}/{}",
        env.org_id, env.project_id, env.environment_id
    );
    println!("  posture:       {}", posture(approval.posture));
    println!("  action:        {}", action(approval.action));
    println!("  spec_hash:     {}", approval.spec_hash);
    println!("  capabilities:  {}", approval.capabilities.join(", "));
    println!(
        "  requested by:  {} (for {})",
        approval.requested_by, approval.initiated_by
    );
    println!("  justification: {}", approval.justification);
    println!("  created:       {}", time(approval.created_at.as_ref()));
    println!("  expires:       {}", time(approval.expires_at.as_ref()));
    println!(
        "  approved by:   {} ({} of {} required)",
        if approval.approvers.is_empty() {
            "nobody yet".to_owned()
        } else {
            approval.approvers.join(", ")
        },
        approval.approvers.len(),
        approval.approvals_required
    );
    println!(
        "  uses:          {} of {}",
        approval.uses, approval.max_uses
    );
    if !approval.decision_reason.is_empty() {
        println!("  reason:        {}", approval.decision_reason);
    }
}
