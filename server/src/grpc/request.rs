//! Rows 1–2 at the edge: a `DeployRequest` or `ReplayRequest` becomes a validated
//! [`AdmissionRequest`], or an [`Invalid`] that still carries what could be read.

use admission_contract::pb;
use prost::Message;
use sha2::{Digest, Sha256};

use crate::{
    app::wire::environment_key,
    domain::{
        policy::ActionKind,
        request::{AdmissionRequest, FieldCheck, Invalid, RequestLimits, spec_hash},
    },
};

// === impl AdmissionRequest ===

impl AdmissionRequest {
    /// Validates a `DeployRequest` (rows 1–2).
    pub fn from_deploy(
        request: &pb::DeployRequest,
        limits: &RequestLimits,
    ) -> Result<Self, Box<Invalid>> {
        let environment = environment_key(request.environment.as_ref());
        let invalid = |rejection| {
            Box::new(Invalid::new(
                rejection,
                ActionKind::Deploy,
                &request.request_id,
                &environment,
                &request.initiated_by,
            ))
        };
        let bundle = request.config_bundle.clone().unwrap_or_default();
        let mut fields = FieldCheck::new(limits);
        fields.request_id(&request.request_id);
        fields.environment(&environment);
        fields.id("pipeline_version", &request.pipeline_version);
        fields.id("config_bundle.bundle_id", &bundle.bundle_id);
        fields.digest("config_bundle.digest", &bundle.digest);
        fields.environment_part("config_bundle.environment_id", &bundle.environment_id);
        fields.common(
            &request.spec_kv,
            &request.required_capabilities,
            &request.credentials,
            &request.initiated_by,
        );
        if let Some(break_glass) = &request.break_glass {
            fields.text("break_glass.justification", &break_glass.justification);
        }
        fields.finish().map_err(invalid)?;
        let spec_hash = spec_hash(&request.spec_kv).map_err(invalid)?;
        Ok(Self {
            request_id: request.request_id.clone(),
            environment,
            action: ActionKind::Deploy,
            spec_hash,
            artifact_digest: bundle.digest,
            artifact_environment_id: bundle.environment_id,
            requested_capabilities: request.required_capabilities.clone(),
            credentials: request.credentials.clone(),
            initiated_by: request.initiated_by.clone(),
            break_glass: request
                .break_glass
                .as_ref()
                .map(|b| b.justification.clone()),
            fingerprint: fingerprint(request),
        })
    }

    /// Validates a `ReplayRequest` (rows 1–2).
    pub fn from_replay(
        request: &pb::ReplayRequest,
        limits: &RequestLimits,
    ) -> Result<Self, Box<Invalid>> {
        let environment = environment_key(request.environment.as_ref());
        let action = match pb::ReplayMode::try_from(request.mode) {
            Ok(pb::ReplayMode::Execute) => Some(ActionKind::ReplayExecute),
            Ok(pb::ReplayMode::DryRun) => Some(ActionKind::ReplayDryRun),
            Ok(pb::ReplayMode::Unspecified) | Err(_) => None,
        };
        let invalid = |rejection| {
            Box::new(Invalid::new(
                rejection,
                action.unwrap_or(ActionKind::ReplayExecute),
                &request.request_id,
                &environment,
                &request.initiated_by,
            ))
        };
        let artifact = request.source_artifact.clone().unwrap_or_default();
        let mut fields = FieldCheck::new(limits);
        fields.request_id(&request.request_id);
        fields.environment(&environment);
        if action.is_none() {
            fields.violation("mode", "must be REPLAY_MODE_DRY_RUN or REPLAY_MODE_EXECUTE");
        }
        fields.id("incident_id", &request.incident_id);
        fields.id("source_artifact.artifact_id", &artifact.artifact_id);
        fields.digest("source_artifact.digest", &artifact.digest);
        fields.environment_part("source_artifact.environment_id", &artifact.environment_id);
        fields.common(
            &request.spec_kv,
            &request.required_capabilities,
            &request.credentials,
            &request.initiated_by,
        );
        fields.finish().map_err(invalid)?;
        let spec_hash = spec_hash(&request.spec_kv).map_err(invalid)?;
        Ok(Self {
            request_id: request.request_id.clone(),
            environment,
            action: action.unwrap_or(ActionKind::ReplayDryRun),
            spec_hash,
            artifact_digest: artifact.digest,
            artifact_environment_id: artifact.environment_id,
            requested_capabilities: request.required_capabilities.clone(),
            credentials: request.credentials.clone(),
            initiated_by: request.initiated_by.clone(),
            break_glass: None,
            fingerprint: fingerprint(request),
        })
    }
}

/// The request's content fingerprint: a retry with another content is a conflict (row 5).
fn fingerprint(request: &impl Message) -> String {
    hex::encode(Sha256::digest(request.encode_to_vec()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
