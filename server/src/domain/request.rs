//! Rows 1–2: a validated [`AdmissionRequest`] and the field checks that build one (the gRPC
//! adapter runs them on the wire request).
//!
//! Validation happens once, at the edge; the engine only sees well-formed requests. Every string field
//! has a bounded length, so nothing a caller sends can grow a response or an audit row without
//! bound. When validation fails, [`Invalid`] still carries what could be read, truncated, so the
//! rejection is audited with it.

use admission_contract::{Reason, SpecHash, echo, echo::truncated, spec::is_sha256_digest};

use crate::{
    domain::policy::{ActionKind, EnvironmentPolicy, Policies},
    domain::rejection::Rejection,
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

/// The spec hash of `spec_kv`, or SPEC_MALFORMED (row 2).
pub fn spec_hash(spec_kv: &[u8]) -> Result<SpecHash, Rejection> {
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

    /// A request id: 1 to `id_max_bytes` characters of the request-id alphabet.
    pub fn request_id(&mut self, request_id: &str) {
        let max = self.limits.id_max_bytes;
        if !is_request_id_within(request_id, max) {
            self.violation(
                "request_id",
                &format!("must be 1-{max} characters of A-Z a-z 0-9 . _ : -"),
            );
        }
    }

    /// The three parts of a required environment.
    pub fn environment(&mut self, environment: &EnvironmentKey) {
        self.environment_part("environment.org_id", &environment.org_id);
        self.environment_part("environment.project_id", &environment.project_id);
        self.environment_part("environment.environment_id", &environment.environment_id);
    }

    /// An environment filter: parts may be empty, none may be too long.
    pub fn optional_environment(&mut self, environment: &EnvironmentKey) {
        let max = self.limits.environment_part_max_bytes;
        self.at_most("environment.org_id", &environment.org_id, max);
        self.at_most("environment.project_id", &environment.project_id, max);
        self.at_most(
            "environment.environment_id",
            &environment.environment_id,
            max,
        );
    }

    /// The fields deploy and replay requests share: spec, capabilities, credentials and
    /// `initiated_by`.
    pub fn common(
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
