//! The wire types the use cases still build and read: conversions between `pb` and the domain.

use admission_contract::pb;

use crate::{
    domain::{
        policy::{ActionKind, Posture},
        request::EnvironmentKey,
    },
    store::AuditEntry,
};

/// The environment a request names; a missing one is the empty key (rejected by validation).
pub fn environment_key(environment: Option<&pb::EnvironmentRef>) -> EnvironmentKey {
    environment.map(EnvironmentKey::from).unwrap_or_default()
}

impl From<&pb::EnvironmentRef> for EnvironmentKey {
    fn from(env: &pb::EnvironmentRef) -> Self {
        Self {
            org_id: env.org_id.clone(),
            project_id: env.project_id.clone(),
            environment_id: env.environment_id.clone(),
        }
    }
}

/// The wire action.
pub fn pb_action(action: ActionKind) -> pb::Action {
    match action {
        ActionKind::Deploy => pb::Action::Deploy,
        ActionKind::ReplayDryRun => pb::Action::ReplayDryRun,
        ActionKind::ReplayExecute => pb::Action::ReplayExecute,
    }
}

/// The wire posture.
pub fn pb_posture(posture: Posture) -> pb::Posture {
    match posture {
        Posture::Dev => pb::Posture::Dev,
        Posture::Staging => pb::Posture::Staging,
        Posture::Prod => pb::Posture::Prod,
    }
}

// === impl AuditEntry ===

impl From<AuditEntry> for pb::AuditEntry {
    fn from(recorded: AuditEntry) -> Self {
        let entry = recorded.entry;
        pb::AuditEntry {
            seq: recorded.seq,
            entry_id: entry.entry_id,
            recorded_at: Some(prost_types::Timestamp::from(recorded.recorded_at)),
            actor: entry.actor,
            actor_cert_sha256: entry.actor_cert_sha256,
            initiated_by: entry.initiated_by,
            action: entry.action,
            resource_scope: Some(pb::EnvironmentRef {
                org_id: entry.scope.org_id,
                project_id: entry.scope.project_id,
                environment_id: entry.scope.environment_id,
            }),
            spec_hash: entry.spec_hash,
            capabilities: entry.capabilities,
            approval_ids: entry.approval_ids,
            approvers: entry.approvers,
            outcome: entry.outcome,
            reason: entry.reason,
            grpc_code: entry.grpc_code,
            request_id: entry.request_id,
            prev_hash: recorded.prev_hash,
            entry_hash: recorded.entry_hash,
            detail: entry.detail,
        }
    }
}
