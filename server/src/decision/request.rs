//! SPEC §7 rows 1–2: turning a wire request into a validated [`AdmissionRequest`].
//!
//! Validation happens here, once; the engine only sees well-formed requests. When validation
//! fails, [`Invalid`] still carries what could be read so the rejection is audited with it.

use admission_contract::{Reason, SpecHash, pb, spec::is_sha256_digest};
use prost::Message;
use sha2::{Digest, Sha256};

use crate::{
    audit::Scope,
    policy::{ActionKind, EnvironmentPolicy, Policies},
    rejection::Rejection,
};

/// Size limits on requests (SPEC §3, configurable).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestLimits {
    /// Largest accepted `spec_kv`, in bytes.
    pub spec_kv_max_bytes: usize,
    /// Most credentials on one request.
    pub max_credentials: usize,
    /// Longest accepted credential, in bytes.
    pub credential_max_bytes: usize,
}

/// An environment named by a request: `org/project/env`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct EnvironmentKey {
    /// Organization id.
    pub org_id: String,
    /// Project id.
    pub project_id: String,
    /// Environment id.
    pub environment_id: String,
}

/// A validated deploy or replay request.
#[derive(Clone, Debug)]
pub struct AdmissionRequest {
    /// Caller-chosen idempotency key.
    pub request_id: String,
    /// Target environment.
    pub environment: EnvironmentKey,
    /// Deploy, dry-run replay or execute replay.
    pub action: ActionKind,
    /// Hash of the validated spec.
    pub spec_hash: SpecHash,
    /// Digest of the config bundle (deploy) or source artifact (replay).
    pub artifact_digest: String,
    /// Environment id the config bundle or source artifact belongs to.
    pub artifact_environment_id: String,
    /// Capabilities requested beyond the policy's required set.
    pub requested_capabilities: Vec<String>,
    /// Credentials in the order given.
    pub credentials: Vec<String>,
    /// On whose behalf the caller acts.
    pub initiated_by: String,
    /// Break-glass justification, when break-glass was requested.
    pub break_glass: Option<String>,
    /// SHA-256 of the request's protobuf encoding: retries with the same content match it.
    pub fingerprint: String,
}

/// A request that failed rows 1–2, with what could be read of it for the audit entry.
#[derive(Clone, Debug)]
pub struct Invalid {
    /// The rejection to answer.
    pub rejection: Rejection,
    /// The action the request was for.
    pub action: ActionKind,
    /// request_id as sent.
    pub request_id: String,
    /// Environment as sent (fields may be empty).
    pub environment: EnvironmentKey,
    /// initiated_by as sent.
    pub initiated_by: String,
}

// === impl AdmissionRequest ===

impl AdmissionRequest {
    /// Validates a `DeployRequest` (rows 1–2).
    pub fn from_deploy(
        request: &pb::DeployRequest,
        limits: &RequestLimits,
    ) -> Result<Self, Box<Invalid>> {
        let environment = environment_key(request.environment.as_ref());
        let invalid = |rejection| {
            Box::new(Invalid {
                rejection,
                action: ActionKind::Deploy,
                request_id: request.request_id.clone(),
                environment: environment.clone(),
                initiated_by: request.initiated_by.clone(),
            })
        };
        let bundle = request.config_bundle.clone().unwrap_or_default();
        let mut fields = FieldCheck::default();
        fields.request_id(&request.request_id);
        fields.environment(request.environment.as_ref());
        fields.non_empty("pipeline_version", &request.pipeline_version);
        fields.non_empty("config_bundle.bundle_id", &bundle.bundle_id);
        fields.digest("config_bundle.digest", &bundle.digest);
        fields.non_empty("config_bundle.environment_id", &bundle.environment_id);
        fields.common(
            &request.spec_kv,
            &request.required_capabilities,
            &request.credentials,
            &request.initiated_by,
            limits,
        );
        if let Some(break_glass) = &request.break_glass {
            fields.non_empty("break_glass.justification", &break_glass.justification);
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
            Box::new(Invalid {
                rejection,
                action: action.unwrap_or(ActionKind::ReplayExecute),
                request_id: request.request_id.clone(),
                environment: environment.clone(),
                initiated_by: request.initiated_by.clone(),
            })
        };
        let artifact = request.source_artifact.clone().unwrap_or_default();
        let mut fields = FieldCheck::default();
        fields.request_id(&request.request_id);
        fields.environment(request.environment.as_ref());
        if action.is_none() {
            fields.violation("mode", "must be REPLAY_MODE_DRY_RUN or REPLAY_MODE_EXECUTE");
        }
        fields.non_empty("incident_id", &request.incident_id);
        fields.non_empty("source_artifact.artifact_id", &artifact.artifact_id);
        fields.digest("source_artifact.digest", &artifact.digest);
        fields.non_empty("source_artifact.environment_id", &artifact.environment_id);
        fields.common(
            &request.spec_kv,
            &request.required_capabilities,
            &request.credentials,
            &request.initiated_by,
            limits,
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

// === impl EnvironmentKey ===

impl EnvironmentKey {
    /// `(org, project, env)`, as role bindings match it.
    pub fn parts(&self) -> (&str, &str, &str) {
        (&self.org_id, &self.project_id, &self.environment_id)
    }

    /// Row 4: this environment's policy, or ENVIRONMENT_UNKNOWN.
    pub fn policy<'p>(&self, policies: &'p Policies) -> Result<&'p EnvironmentPolicy, Rejection> {
        policies
            .get(&self.org_id, &self.project_id, &self.environment_id)
            .ok_or_else(|| {
                Rejection::new(
                    Reason::EnvironmentUnknown,
                    format!("environment {self} is not configured on this service"),
                )
            })
    }
}

impl std::fmt::Display for EnvironmentKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}/{}",
            self.org_id, self.project_id, self.environment_id
        )
    }
}

fn environment_key(environment: Option<&pb::EnvironmentRef>) -> EnvironmentKey {
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

impl From<&Scope> for EnvironmentKey {
    fn from(scope: &Scope) -> Self {
        Self {
            org_id: scope.org_id.clone(),
            project_id: scope.project_id.clone(),
            environment_id: scope.environment_id.clone(),
        }
    }
}

impl From<&EnvironmentKey> for Scope {
    fn from(env: &EnvironmentKey) -> Self {
        Self {
            org_id: env.org_id.clone(),
            project_id: env.project_id.clone(),
            environment_id: env.environment_id.clone(),
        }
    }
}

fn fingerprint(request: &impl Message) -> String {
    hex::encode(Sha256::digest(request.encode_to_vec()))
}

fn spec_hash(spec_kv: &[u8]) -> Result<SpecHash, Rejection> {
    SpecHash::of_spec(spec_kv).map_err(|e| Rejection::new(Reason::SpecMalformed, e.to_string()))
}

/// True when `id` is 1–128 chars of `[A-Za-z0-9._:-]` (SPEC §3).
pub fn is_valid_request_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// Collects every field violation of a request, so one answer names them all.
#[derive(Default)]
struct FieldCheck {
    violations: Vec<(String, String)>,
}

impl FieldCheck {
    fn violation(&mut self, field: &str, description: &str) {
        self.violations
            .push((field.to_owned(), description.to_owned()));
    }

    fn non_empty(&mut self, field: &str, value: &str) {
        if value.trim().is_empty() {
            self.violation(field, "is required");
        }
    }

    fn digest(&mut self, field: &str, value: &str) {
        if !is_sha256_digest(value) {
            self.violation(field, "must be sha256: followed by 64 lowercase hex digits");
        }
    }

    fn request_id(&mut self, request_id: &str) {
        if !is_valid_request_id(request_id) {
            self.violation(
                "request_id",
                "must be 1-128 characters of A-Z a-z 0-9 . _ : -",
            );
        }
    }

    fn environment(&mut self, environment: Option<&pb::EnvironmentRef>) {
        let environment = environment.cloned().unwrap_or_default();
        self.non_empty("environment.org_id", &environment.org_id);
        self.non_empty("environment.project_id", &environment.project_id);
        self.non_empty("environment.environment_id", &environment.environment_id);
    }

    fn common(
        &mut self,
        spec_kv: &[u8],
        capabilities: &[String],
        credentials: &[String],
        initiated_by: &str,
        limits: &RequestLimits,
    ) {
        if spec_kv.len() > limits.spec_kv_max_bytes {
            self.violation(
                "spec_kv",
                &format!("must be at most {} bytes", limits.spec_kv_max_bytes),
            );
        }
        if capabilities.iter().any(|c| c.trim().is_empty()) {
            self.violation("required_capabilities", "must not contain empty names");
        }
        if credentials.len() > limits.max_credentials {
            self.violation(
                "credentials",
                &format!("must hold at most {} credentials", limits.max_credentials),
            );
        }
        self.non_empty("initiated_by", initiated_by);
    }

    fn finish(self) -> Result<(), Rejection> {
        let Some((first_field, first_description)) = self.violations.first().cloned() else {
            return Ok(());
        };
        let mut rejection = Rejection::new(
            Reason::RequestInvalid,
            format!("request field {first_field} {first_description}"),
        );
        rejection.field_violations = self.violations;
        Err(rejection)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: RequestLimits = RequestLimits {
        spec_kv_max_bytes: 1024,
        max_credentials: 2,
        credential_max_bytes: 64,
    };

    fn deploy() -> pb::DeployRequest {
        pb::DeployRequest {
            request_id: "req-1".into(),
            environment: Some(pb::EnvironmentRef {
                org_id: "acme".into(),
                project_id: "payments".into(),
                environment_id: "prod".into(),
            }),
            pipeline_version: "v1".into(),
            spec_kv: b"a=1\n".to_vec(),
            config_bundle: Some(pb::ConfigBundle {
                bundle_id: "b1".into(),
                digest: format!("sha256:{}", "0".repeat(64)),
                environment_id: "prod".into(),
            }),
            initiated_by: "alice@acme".into(),
            ..Default::default()
        }
    }

    #[test]
    fn accepts_a_complete_deploy() {
        let request = AdmissionRequest::from_deploy(&deploy(), &LIMITS).unwrap();
        assert_eq!(request.environment.to_string(), "acme/payments/prod");
        assert_eq!(request.spec_hash, SpecHash::of_bytes(b"a=1\n"));
    }

    #[test]
    fn names_every_bad_field() {
        let mut request = deploy();
        request.request_id = "bad id".into();
        request.pipeline_version.clear();
        request.credentials = vec!["a".into(), "b".into(), "c".into()];
        let invalid = AdmissionRequest::from_deploy(&request, &LIMITS).unwrap_err();
        assert_eq!(invalid.rejection.reason, Reason::RequestInvalid);
        let fields: Vec<_> = invalid
            .rejection
            .field_violations
            .iter()
            .map(|(f, _)| f.as_str())
            .collect();
        assert_eq!(fields, ["request_id", "pipeline_version", "credentials"]);
    }

    #[test]
    fn malformed_spec_is_row_two() {
        let mut request = deploy();
        request.spec_kv = b"a=1\na=2\n".to_vec();
        let invalid = AdmissionRequest::from_deploy(&request, &LIMITS).unwrap_err();
        assert_eq!(invalid.rejection.reason, Reason::SpecMalformed);
    }

    #[test]
    fn request_id_alphabet() {
        assert!(is_valid_request_id("a.b_c:d-1"));
        assert!(!is_valid_request_id(""));
        assert!(!is_valid_request_id(&"a".repeat(129)));
        assert!(!is_valid_request_id("a/b"));
    }
}
