//! The wire types the use cases still build and read: conversions between `pb` and the domain.

use std::time::SystemTime;

use admission_contract::hash::{bare_hash, wire_hash};
use admission_contract::pb;
use prost::Message;

use crate::{
    domain::{
        decision::Admission,
        policy::{ActionKind, PolicyDecision, Posture},
        request::EnvironmentKey,
    },
    store::AuditEntry,
};

/// The environment a request names; a missing one is the empty key (rejected by validation).
pub(crate) fn environment_key(environment: Option<&pb::EnvironmentRef>) -> EnvironmentKey {
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
pub(crate) fn pb_action(action: ActionKind) -> pb::Action {
    match action {
        ActionKind::Deploy => pb::Action::Deploy,
        ActionKind::ReplayDryRun => pb::Action::ReplayDryRun,
        ActionKind::ReplayExecute => pb::Action::ReplayExecute,
    }
}

/// The wire policy decision.
pub(crate) fn pb_decision(decision: PolicyDecision) -> pb::PolicyDecision {
    match decision {
        PolicyDecision::Allow => pb::PolicyDecision::Allow,
        PolicyDecision::DryRunOnly => pb::PolicyDecision::DryRunOnly,
        PolicyDecision::RequireApproval => pb::PolicyDecision::RequireApproval,
        PolicyDecision::Deny => pb::PolicyDecision::Deny,
    }
}

/// The wire posture.
pub(crate) fn pb_posture(posture: Posture) -> pb::Posture {
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
            prev_hash: wire_hash(&recorded.prev_hash),
            entry_hash: wire_hash(&recorded.entry_hash),
            detail: entry.detail,
        }
    }
}

// === impl Admission ===

impl From<Admission> for pb::Admission {
    fn from(admission: Admission) -> Self {
        pb::Admission {
            decision_id: admission.decision_id,
            action: pb_action(admission.action) as i32,
            spec_hash: admission.spec_hash,
            approval_ids: admission.approval_ids,
            decided_at: Some(admission.decided_at.into()),
            audit_entry_hash: wire_hash(&admission.audit_entry_hash),
            shadow_reason: admission.shadow_reason,
            break_glass: admission.break_glass,
            receipt: admission.receipt,
        }
    }
}

/// A stored admission that is not one this service writes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum StoredAdmissionError {
    /// Not a protobuf `Admission`.
    #[error("stored admission does not decode: {0}")]
    Decode(#[from] prost::DecodeError),
    /// An action other than the three governed ones.
    #[error("stored admission names no known action")]
    Action,
    /// No or an out-of-range decision time.
    #[error("stored admission has no valid decided_at")]
    DecidedAt,
}

/// The stored form of an admission (with the idempotency key): its protobuf encoding, which is
/// what a retry is answered with; its hash is bare hex, as the trail stores it.
pub(crate) fn encode_admission(admission: &Admission) -> Vec<u8> {
    let mut stored = pb::Admission::from(admission.clone());
    // Stored as the trail stores hashes: bare hex.
    stored.audit_entry_hash = bare_hash(&stored.audit_entry_hash).to_owned();
    stored.encode_to_vec()
}

/// An admission read back from its stored form.
pub(crate) fn decode_admission(bytes: &[u8]) -> Result<Admission, StoredAdmissionError> {
    let stored = pb::Admission::decode(bytes)?;
    let action = match pb::Action::try_from(stored.action) {
        Ok(pb::Action::Deploy) => ActionKind::Deploy,
        Ok(pb::Action::ReplayDryRun) => ActionKind::ReplayDryRun,
        Ok(pb::Action::ReplayExecute) => ActionKind::ReplayExecute,
        Ok(pb::Action::Unspecified) | Err(_) => return Err(StoredAdmissionError::Action),
    };
    let decided_at = stored
        .decided_at
        .and_then(|at| SystemTime::try_from(at).ok())
        .ok_or(StoredAdmissionError::DecidedAt)?;
    Ok(Admission {
        decision_id: stored.decision_id,
        action,
        spec_hash: stored.spec_hash,
        approval_ids: stored.approval_ids,
        decided_at,
        audit_entry_hash: bare_hash(&stored.audit_entry_hash).to_owned(),
        shadow_reason: stored.shadow_reason,
        break_glass: stored.break_glass,
        receipt: stored.receipt,
    })
}
