//! SPEC §7 rows 1–2: turning a wire request into a validated [`AdmissionRequest`].
//!
//! Validation happens here, once; the engine only sees well-formed requests. Every string field
//! has a bounded length, so nothing a caller sends can grow a response or an audit row without
//! bound. When validation fails, [`Invalid`] still carries what could be read, truncated, so the
//! rejection is audited with it.

use admission_contract::{Reason, SpecHash, echo, echo::truncated, pb, spec::is_sha256_digest};
use prost::Message;
use sha2::{Digest, Sha256};

use crate::{
    domain::policy::{ActionKind, EnvironmentPolicy, Policies},
    domain::rejection::Rejection,
    store::Scope,
};

/// Size and length limits on requests (configurable in `[limits]`). Lengths are in bytes of
/// UTF-8.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestLimits {
    /// Largest accepted `spec_kv`, in bytes.
    pub spec_kv_max_bytes: usize,
    /// Most credentials on one request.
    pub max_credentials: usize,
    /// Longest accepted credential, in bytes.
    pub credential_max_bytes: usize,
    /// Longest id: request_id, bundle_id, artifact_id, incident_id, approval_id,
    /// pipeline_version, page tokens and filters.
    pub id_max_bytes: usize,
    /// Longest org_id, project_id or environment_id.
    pub environment_part_max_bytes: usize,
    /// Longest free text: initiated_by, justification, reason.
    pub text_max_bytes: usize,
    /// Longest capability name.
    pub capability_max_bytes: usize,
    /// Most capabilities named on one request.
    pub max_capabilities: usize,
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
        fields.environment(request.environment.as_ref());
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
        fields.environment(request.environment.as_ref());
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

/// An id usable as one segment of `org/project/env`.
pub fn is_environment_segment(value: &str) -> bool {
    !value.is_empty()
        && !value
            .chars()
            .any(|c| c == '/' || c == '*' || c.is_whitespace())
}

// === impl Invalid ===

impl Invalid {
    /// An invalid request; what it echoes of the input is truncated for the audit entry.
    pub fn new(
        rejection: Rejection,
        action: ActionKind,
        request_id: &str,
        environment: &EnvironmentKey,
        initiated_by: &str,
    ) -> Self {
        Self {
            rejection,
            action,
            request_id: truncated(request_id),
            environment: environment.truncated(),
            initiated_by: truncated(initiated_by),
        }
    }
}

// === impl EnvironmentKey ===

impl EnvironmentKey {
    /// The same environment with every part cut to a bounded echo.
    pub fn truncated(&self) -> Self {
        Self {
            org_id: truncated(&self.org_id),
            project_id: truncated(&self.project_id),
            environment_id: truncated(&self.environment_id),
        }
    }

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
            echo(&self.org_id),
            echo(&self.project_id),
            echo(&self.environment_id)
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
    is_request_id_within(id, 128)
}

/// True when `id` is 1 to `max_bytes` chars of `[A-Za-z0-9._:-]`.
fn is_request_id_within(id: &str, max_bytes: usize) -> bool {
    (1..=max_bytes).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// Collects every field violation of a request against the limits, so one answer names them
/// all.
pub struct FieldCheck<'a> {
    limits: &'a RequestLimits,
    violations: Vec<(String, String)>,
}

// === impl FieldCheck ===

impl<'a> FieldCheck<'a> {
    /// No violations yet.
    pub fn new(limits: &'a RequestLimits) -> Self {
        Self {
            limits,
            violations: Vec::new(),
        }
    }

    /// Records that `field` `description` ("is required", "must be …").
    pub fn violation(&mut self, field: &str, description: &str) {
        self.violations
            .push((field.to_owned(), description.to_owned()));
    }

    fn non_empty(&mut self, field: &str, value: &str) -> bool {
        if value.trim().is_empty() {
            self.violation(field, "is required");
            return false;
        }
        true
    }

    /// `value` is at most `max` bytes; false (and a violation) otherwise.
    fn at_most(&mut self, field: &str, value: &str, max: usize) -> bool {
        if value.len() > max {
            self.violation(
                field,
                &format!("must be at most {max} bytes (it is {})", value.len()),
            );
            return false;
        }
        true
    }

    /// A required id.
    pub fn id(&mut self, field: &str, value: &str) {
        if self.at_most(field, value, self.limits.id_max_bytes) {
            self.non_empty(field, value);
        }
    }

    /// An optional id or token: empty is fine, too long is not.
    pub fn optional_id(&mut self, field: &str, value: &str) {
        self.at_most(field, value, self.limits.id_max_bytes);
    }

    /// A required org, project or environment id.
    pub fn environment_part(&mut self, field: &str, value: &str) {
        if self.at_most(field, value, self.limits.environment_part_max_bytes) {
            self.non_empty(field, value);
        }
    }

    /// Required free text.
    pub fn text(&mut self, field: &str, value: &str) {
        if self.at_most(field, value, self.limits.text_max_bytes) {
            self.non_empty(field, value);
        }
    }

    /// Optional free text.
    pub fn optional_text(&mut self, field: &str, value: &str) {
        self.at_most(field, value, self.limits.text_max_bytes);
    }

    /// A `sha256:` + 64 lowercase hex digest.
    pub fn digest(&mut self, field: &str, value: &str) {
        if !is_sha256_digest(value) {
            self.violation(field, "must be sha256: followed by 64 lowercase hex digits");
        }
    }

    /// A list of capability names: bounded in count, each non-empty and bounded in length.
    pub fn capabilities(&mut self, field: &str, capabilities: &[String]) {
        let max = self.limits.max_capabilities;
        if capabilities.len() > max {
            self.violation(
                field,
                &format!(
                    "must name at most {max} capabilities (it names {})",
                    capabilities.len()
                ),
            );
            return;
        }
        let longest = self.limits.capability_max_bytes;
        if capabilities.iter().any(|c| c.len() > longest) {
            self.violation(
                field,
                &format!("must not contain names longer than {longest} bytes"),
            );
        } else if capabilities.iter().any(|c| c.trim().is_empty()) {
            self.violation(field, "must not contain empty names");
        }
    }

    fn request_id(&mut self, request_id: &str) {
        let max = self.limits.id_max_bytes;
        if !is_request_id_within(request_id, max) {
            self.violation(
                "request_id",
                &format!("must be 1-{max} characters of A-Z a-z 0-9 . _ : -"),
            );
        }
    }

    /// The three parts of a required environment.
    pub fn environment(&mut self, environment: Option<&pb::EnvironmentRef>) {
        let environment = environment.cloned().unwrap_or_default();
        self.environment_part("environment.org_id", &environment.org_id);
        self.environment_part("environment.project_id", &environment.project_id);
        self.environment_part("environment.environment_id", &environment.environment_id);
    }

    /// An environment filter: parts may be empty, none may be too long.
    pub fn optional_environment(&mut self, environment: &pb::EnvironmentRef) {
        let max = self.limits.environment_part_max_bytes;
        self.at_most("environment.org_id", &environment.org_id, max);
        self.at_most("environment.project_id", &environment.project_id, max);
        self.at_most(
            "environment.environment_id",
            &environment.environment_id,
            max,
        );
    }

    fn common(
        &mut self,
        spec_kv: &[u8],
        capabilities: &[String],
        credentials: &[String],
        initiated_by: &str,
    ) {
        let limits = self.limits;
        if spec_kv.len() > limits.spec_kv_max_bytes {
            self.violation(
                "spec_kv",
                &format!("must be at most {} bytes", limits.spec_kv_max_bytes),
            );
        }
        self.capabilities("required_capabilities", capabilities);
        if credentials.len() > limits.max_credentials {
            self.violation(
                "credentials",
                &format!("must hold at most {} credentials", limits.max_credentials),
            );
        }
        self.text("initiated_by", initiated_by);
    }

    /// `Ok` when no field was violated, else one REQUEST_INVALID naming every violation.
    pub fn finish(self) -> Result<(), Rejection> {
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

// === impl RequestLimits ===

impl Default for RequestLimits {
    fn default() -> Self {
        Self {
            spec_kv_max_bytes: 1024 * 1024,
            max_credentials: 8,
            credential_max_bytes: 16 * 1024,
            id_max_bytes: 128,
            environment_part_max_bytes: 63,
            text_max_bytes: 1024,
            capability_max_bytes: 128,
            max_capabilities: 32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: RequestLimits = RequestLimits {
        spec_kv_max_bytes: 1024,
        max_credentials: 2,
        credential_max_bytes: 64,
        id_max_bytes: 128,
        environment_part_max_bytes: 63,
        text_max_bytes: 1024,
        capability_max_bytes: 128,
        max_capabilities: 4,
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

    fn violated_fields(request: &pb::DeployRequest) -> Vec<String> {
        let invalid = AdmissionRequest::from_deploy(request, &LIMITS).unwrap_err();
        assert_eq!(invalid.rejection.reason, Reason::RequestInvalid);
        invalid
            .rejection
            .field_violations
            .iter()
            .map(|(f, _)| f.clone())
            .collect()
    }

    #[test]
    fn every_string_field_is_bounded() {
        let long_id = "i".repeat(129);
        let long_part = "p".repeat(64);
        let long_text = "t".repeat(1025);
        let mut request = deploy();
        request.request_id = long_id.clone();
        request.environment.as_mut().unwrap().environment_id = long_part.clone();
        request.pipeline_version = long_id.clone();
        let bundle = request.config_bundle.as_mut().unwrap();
        bundle.bundle_id = long_id.clone();
        bundle.environment_id = long_part.clone();
        request.initiated_by = long_text.clone();
        request.break_glass = Some(pb::BreakGlass {
            justification: long_text.clone(),
        });
        assert_eq!(
            violated_fields(&request),
            [
                "request_id",
                "environment.environment_id",
                "pipeline_version",
                "config_bundle.bundle_id",
                "config_bundle.environment_id",
                "initiated_by",
                "break_glass.justification",
            ]
        );

        // At the limit is fine.
        let mut request = deploy();
        request.request_id = "i".repeat(128);
        request.environment.as_mut().unwrap().org_id = "p".repeat(63);
        request.initiated_by = "t".repeat(1024);
        request.required_capabilities = vec!["c".repeat(128); 4];
        assert!(AdmissionRequest::from_deploy(&request, &LIMITS).is_ok());
    }

    #[test]
    fn capabilities_are_bounded_in_length_and_count() {
        let mut request = deploy();
        request.required_capabilities = vec!["c".repeat(129)];
        assert_eq!(violated_fields(&request), ["required_capabilities"]);
        request.required_capabilities = vec!["deploy".into(); 5];
        assert_eq!(violated_fields(&request), ["required_capabilities"]);
    }

    #[test]
    fn an_invalid_request_echoes_its_input_truncated() {
        let mut request = deploy();
        request.request_id = "r".repeat(100_000);
        request.environment.as_mut().unwrap().org_id = "o".repeat(100_000);
        request.initiated_by = "b".repeat(100_000);
        let invalid = AdmissionRequest::from_deploy(&request, &LIMITS).unwrap_err();
        let bound = admission_contract::echo::ECHO_MAX_BYTES + '…'.len_utf8();
        assert_eq!(invalid.request_id.len(), bound);
        assert_eq!(invalid.environment.org_id.len(), bound);
        assert_eq!(invalid.initiated_by.len(), bound);
        assert!(
            invalid.rejection.message.len() < 200,
            "{}",
            invalid.rejection.message
        );
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
