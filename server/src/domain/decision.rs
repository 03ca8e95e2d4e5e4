//! Decisions: their identities in the audit trail, and the admission a caller is answered.

use std::time::SystemTime;

use super::{
    action::ActionKind,
    approval::ApprovalView,
    policy::{PolicyDecision, Posture},
};

/// A fresh decision id: time-ordered and unique across replicas.
pub fn new_decision_id() -> String {
    format!("dec_{}", uuid::Uuid::now_v7().simple())
}

/// An admitted decision, as its caller is answered (and answered again on a retry).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Admission {
    /// The decision's id, which is also its audit entry's id.
    pub decision_id: String,
    /// The action admitted.
    pub action: ActionKind,
    /// The spec hash admitted.
    pub spec_hash: String,
    /// The approvals whose uses it consumed.
    pub approval_ids: Vec<String>,
    /// When it was decided.
    pub decided_at: SystemTime,
    /// The hash of the audit entry that recorded it (empty until recorded).
    pub audit_entry_hash: String,
    /// In shadow mode, the reason enforcement would have rejected it; empty otherwise.
    pub shadow_reason: String,
    /// Whether it was a break-glass admission.
    pub break_glass: bool,
    /// The signed admission receipt (DSSE envelope JSON); empty until signed, and without a
    /// log key.
    pub receipt: Vec<u8>,
}

/// A previewed decision: what the policy says and which approvals would admit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Preview {
    /// The action previewed.
    pub action: ActionKind,
    /// The spec hash previewed.
    pub spec_hash: String,
    /// The policy decision (SPEC §6).
    pub policy_decision: PolicyDecision,
    /// The environment's posture.
    pub posture: Posture,
    /// The capabilities an approval must grant.
    pub required_capabilities: Vec<String>,
    /// Distinct approvers needed (0 unless approval is required).
    pub required_approvals: u32,
    /// Approvals that would admit it now, newest first.
    pub eligible_approvals: Vec<ApprovalView>,
    /// The preview's id, which is also its audit entry's id.
    pub decision_id: String,
}
