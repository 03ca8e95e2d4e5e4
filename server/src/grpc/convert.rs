//! Domain answers as wire messages: approvals and previews (admissions convert in
//! `app::wire`, which also stores their encoding).

use admission_contract::pb;

use crate::{
    app::wire::{pb_action, pb_decision, pb_posture},
    domain::{
        approval::{ApprovalView, ShownState},
        decision::Preview,
    },
};

/// The wire state.
fn pb_state(state: ShownState) -> pb::ApprovalState {
    match state {
        ShownState::Pending => pb::ApprovalState::Pending,
        ShownState::Approved => pb::ApprovalState::Approved,
        ShownState::Denied => pb::ApprovalState::Denied,
        ShownState::Revoked => pb::ApprovalState::Revoked,
        ShownState::Expired => pb::ApprovalState::Expired,
    }
}

// === impl ApprovalView ===

impl From<ApprovalView> for pb::Approval {
    fn from(view: ApprovalView) -> Self {
        pb::Approval {
            approval_id: view.approval_id,
            state: pb_state(view.state) as i32,
            environment: Some(pb::EnvironmentRef {
                org_id: view.environment.org_id,
                project_id: view.environment.project_id,
                environment_id: view.environment.environment_id,
            }),
            action: view.action.map_or(pb::Action::Unspecified, pb_action) as i32,
            spec_hash: view.spec_hash,
            capabilities: view.capabilities,
            requested_by: view.requested_by,
            initiated_by: view.initiated_by,
            justification: view.justification,
            created_at: Some(view.created_at.into()),
            expires_at: Some(view.expires_at.into()),
            approvals_required: view.approvals_required,
            approvers: view.approvers,
            credentials: view.credentials,
            uses: view.uses,
            max_uses: view.max_uses,
            decision_reason: view.decision_reason,
            posture: view.posture.map_or(pb::Posture::Unspecified, pb_posture) as i32,
        }
    }
}

// === impl Preview ===

impl From<Preview> for pb::Preview {
    fn from(preview: Preview) -> Self {
        pb::Preview {
            action: pb_action(preview.action) as i32,
            spec_hash: preview.spec_hash,
            policy_decision: pb_decision(preview.policy_decision) as i32,
            posture: pb_posture(preview.posture) as i32,
            required_capabilities: preview.required_capabilities,
            required_approvals: preview.required_approvals,
            eligible_approvals: preview
                .eligible_approvals
                .into_iter()
                .map(pb::Approval::from)
                .collect(),
            decision_id: preview.decision_id,
        }
    }
}
