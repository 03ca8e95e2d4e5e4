//! SPEC §7 rows 6–25 as one pure function: request, environment policy, key set, the stored
//! state of the approvals involved, and the clock in; a verdict or the first failing check out.

pub mod claims;

use std::{
    collections::{BTreeSet, HashMap},
    time::SystemTime,
};

use admission_contract::{
    Reason,
    credential::{self, Claims, Decoded, KeySet, VerifyError},
};

use self::claims::{CredentialCheck, check_claims};
use super::request::{AdmissionRequest, RequestLimits};
use crate::{
    domain::credential::verify_rejection,
    domain::policy::{ActionKind, EnvironmentPolicy, PolicyDecision},
    domain::rejection::Rejection,
};

/// Stored use state of one approval (rows 23–24).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApprovalUseState {
    /// Revoked by a reviewer.
    pub revoked: bool,
    /// Admissions that consumed it so far.
    pub uses: u32,
    /// Admissions it may be used for.
    pub max_uses: u32,
    /// Reviewers completed it. Credentials of a pending or denied approval never count toward
    /// the quorum, even if they escaped before the review ended.
    pub approved: bool,
}

/// Everything the rules look at.
pub struct RuleInput<'a> {
    /// The validated request.
    pub request: &'a AdmissionRequest,
    /// The target environment's policy.
    pub policy: &'a EnvironmentPolicy,
    /// Trusted signing keys.
    pub keys: &'a KeySet,
    /// The calling identity.
    pub caller: &'a str,
    /// The request's credentials decoded (row 11), in the order given; see
    /// [`decode_credentials`].
    pub credentials: &'a [Result<Decoded, VerifyError>],
    /// Stored state of approvals named by the credentials (absent = never used).
    pub approvals: &'a HashMap<String, ApprovalUseState>,
    /// The clock.
    pub now: SystemTime,
}

/// What the rules decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Policy allows it without approval.
    Allowed,
    /// Break-glass: rows 10–25 skipped.
    BreakGlass,
    /// Approved by these credentials.
    Approved(Vec<UsedApproval>),
}

/// One approval whose credentials admitted the request; one use of it is consumed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsedApproval {
    /// The approval id shared by its credentials.
    pub approval_id: String,
    /// Distinct `issued_by` of its valid credentials.
    pub issuers: Vec<String>,
    /// Capabilities granted (union over its credentials).
    pub capabilities: Vec<String>,
    /// Latest expiry among its credentials.
    pub expires_at: SystemTime,
}

/// The policy decision for a request (SPEC §6), used by Admit and Preview alike.
pub fn policy_decision(request: &AdmissionRequest, policy: &EnvironmentPolicy) -> PolicyDecision {
    policy.decide(request.action, &request.requested_capabilities)
}

/// Whether the rules will look at the request's credentials: approval is required and
/// break-glass was not asked for. Otherwise nothing about them needs decoding or reading.
pub fn needs_credentials(request: &AdmissionRequest, policy: &EnvironmentPolicy) -> bool {
    request.break_glass.is_none()
        && policy_decision(request, policy) == PolicyDecision::RequireApproval
}

/// Row 11 for every credential, once: the engine reads the approvals they name from the
/// store, then the rules check them in order. A claim longer than the same field of a request
/// may be is "too long", like the token itself.
pub fn decode_credentials(
    request: &AdmissionRequest,
    limits: &RequestLimits,
) -> Vec<Result<Decoded, VerifyError>> {
    request
        .credentials
        .iter()
        .map(|token| {
            let decoded = credential::decode(token, limits.credential_max_bytes)?;
            check_claim_lengths(&decoded.claims, limits)?;
            Ok(decoded)
        })
        .collect()
}

/// The claims' strings within the request field limits (row 11).
fn check_claim_lengths(claims: &Claims, limits: &RequestLimits) -> Result<(), VerifyError> {
    let fields = [
        ("kid", &claims.kid, limits.id_max_bytes),
        ("approval_id", &claims.approval_id, limits.id_max_bytes),
        ("spec_hash", &claims.spec_hash, limits.id_max_bytes),
        ("org_id", &claims.org_id, limits.environment_part_max_bytes),
        (
            "project_id",
            &claims.project_id,
            limits.environment_part_max_bytes,
        ),
        (
            "environment_id",
            &claims.environment_id,
            limits.environment_part_max_bytes,
        ),
        (
            "environment_posture",
            &claims.environment_posture,
            limits.environment_part_max_bytes,
        ),
        ("issued_by", &claims.issued_by, limits.text_max_bytes),
    ];
    let too_long = |field: &str, max: usize| VerifyError::Malformed {
        detail: format!("its `{field}` field is longer than {max} bytes"),
    };
    if let Some((field, _, max)) = fields.iter().find(|(_, value, max)| value.len() > *max) {
        return Err(too_long(field, *max));
    }
    if let Some(digest) = &claims.config_bundle_digest {
        if digest.len() > limits.id_max_bytes {
            return Err(too_long("config_bundle_digest", limits.id_max_bytes));
        }
    }
    if claims.capabilities.len() > limits.max_capabilities {
        return Err(VerifyError::Malformed {
            detail: format!(
                "its `capabilities` field names more than {} capabilities",
                limits.max_capabilities
            ),
        });
    }
    if claims
        .capabilities
        .iter()
        .any(|c| c.len() > limits.capability_max_bytes)
    {
        return Err(too_long("capabilities", limits.capability_max_bytes));
    }
    Ok(())
}

/// Runs rows 6–25 in order; the first failing check wins.
pub fn evaluate(input: &RuleInput<'_>) -> Result<Verdict, Rejection> {
    let RuleInput {
        request, policy, ..
    } = input;
    let environment = &request.environment;
    let decision = policy_decision(request, policy);

    // Row 6.
    if decision == PolicyDecision::Deny {
        return Err(Rejection::new(
            Reason::PolicyDenied,
            format!(
                "the policy of {environment} denies {}",
                request.action.phrase()
            ),
        ));
    }
    // Row 7.
    if decision == PolicyDecision::DryRunOnly && request.action == ActionKind::ReplayExecute {
        return Err(Rejection::new(
            Reason::ReplayExecuteNotPermitted,
            format!(
                "{environment} permits only dry-run replay; run it with mode REPLAY_MODE_DRY_RUN"
            ),
        ));
    }
    // Rows 8 and 9.
    check_artifact_environment(request)?;

    if let Some(justification) = &request.break_glass {
        return break_glass(request, policy, justification);
    }
    if decision == PolicyDecision::Allow {
        return Ok(Verdict::Allowed);
    }
    // Row 10.
    if request.credentials.is_empty() {
        return Err(Rejection::new(
            Reason::ApprovalRequired,
            format!(
                "{} in {environment} requires approval; attach a credential covering {}",
                request.action.phrase(),
                policy
                    .required_capabilities(request.action, &request.requested_capabilities)
                    .join(", ")
            ),
        ));
    }
    check_credentials(input)
}

fn check_artifact_environment(request: &AdmissionRequest) -> Result<(), Rejection> {
    let expected = &request.environment.environment_id;
    let actual = &request.artifact_environment_id;
    if expected == actual {
        return Ok(());
    }
    let rejection = if request.action == ActionKind::Deploy {
        Rejection::new(
            Reason::ConfigBundleEnvironmentMismatch,
            format!(
                "config bundle was made for environment {actual} but this deploy targets {expected}"
            ),
        )
    } else {
        Rejection::new(
            Reason::SourceEnvironmentMismatch,
            format!(
                "source artifact comes from environment {actual} but this replay targets {expected}"
            ),
        )
    };
    Err(rejection.expected_actual(expected.clone(), actual.clone()))
}

fn break_glass(
    request: &AdmissionRequest,
    policy: &EnvironmentPolicy,
    justification: &str,
) -> Result<Verdict, Rejection> {
    if !policy.break_glass {
        return Err(Rejection::new(
            Reason::PolicyDenied,
            format!(
                "break-glass is not enabled for {}; attach approval credentials instead",
                request.environment
            ),
        ));
    }
    if justification.trim().is_empty() {
        return Err(Rejection::invalid_field(
            "break_glass.justification",
            "is required for break-glass",
        ));
    }
    Ok(Verdict::BreakGlass)
}

/// Rows 11–25: each credential in order through rows 11–24, then the quorum.
fn check_credentials(input: &RuleInput<'_>) -> Result<Verdict, Rejection> {
    let request = input.request;
    let required = input
        .policy
        .required_capabilities(request.action, &request.requested_capabilities);
    let check = CredentialCheck {
        policy: input.policy,
        spec_hash: request.spec_hash.as_str(),
        config_bundle_digest: (request.action == ActionKind::Deploy)
            .then_some(request.artifact_digest.as_str()),
        required_capabilities: &required,
        initiated_by: &request.initiated_by,
        caller: input.caller,
        now: input.now,
    };
    let mut used: Vec<UsedApproval> = Vec::new();
    for decoded in input.credentials {
        // Rows 11–15.
        let decoded = decoded.as_ref().map_err(|e| verify_rejection(e, None))?;
        credential::verify_decoded(decoded, input.keys)
            .map_err(|e| verify_rejection(&e, Some(&decoded.claims.approval_id)))?;
        let claims = decoded.claims.clone();
        // Rows 16–22.
        check_claims(&claims, &check)?;
        // Rows 23–24.
        check_use_state(&claims, input.approvals)?;
        if input
            .approvals
            .get(&claims.approval_id)
            .is_some_and(|state| !state.approved)
        {
            continue;
        }
        record_use(&mut used, claims);
    }
    // Row 25.
    quorum(
        used.iter()
            .flat_map(|u| u.issuers.iter().map(String::as_str)),
        input.policy.required_approvals,
    )?;
    Ok(Verdict::Approved(used))
}

fn check_use_state(
    claims: &Claims,
    approvals: &HashMap<String, ApprovalUseState>,
) -> Result<(), Rejection> {
    let Some(state) = approvals.get(&claims.approval_id) else {
        return Ok(());
    };
    let id = &claims.approval_id;
    if state.revoked {
        return Err(Rejection::new(
            Reason::ApprovalRevoked,
            format!("approval {id} was revoked; request a new approval"),
        )
        .with("approval_id", id.clone()));
    }
    if state.uses >= state.max_uses {
        return Err(Rejection::new(
            Reason::ApprovalConsumed,
            format!(
                "approval {id} has been used {} of {} times; request a new approval",
                state.uses, state.max_uses
            ),
        )
        .with("approval_id", id.clone()));
    }
    Ok(())
}

fn record_use(used: &mut Vec<UsedApproval>, claims: Claims) {
    match used
        .iter_mut()
        .find(|u| u.approval_id == claims.approval_id)
    {
        Some(approval) => {
            if !approval.issuers.contains(&claims.issued_by) {
                approval.issuers.push(claims.issued_by);
            }
            let capabilities: BTreeSet<String> = approval
                .capabilities
                .drain(..)
                .chain(claims.capabilities)
                .collect();
            approval.capabilities = capabilities.into_iter().collect();
            approval.expires_at = approval.expires_at.max(claims.expires_at);
        }
        None => used.push(UsedApproval {
            approval_id: claims.approval_id,
            issuers: vec![claims.issued_by],
            capabilities: claims.capabilities,
            expires_at: claims.expires_at,
        }),
    }
}

/// SPEC §7 row 25: at least `required` distinct issuers among the valid credentials.
pub fn quorum<'a>(
    valid_issuers: impl Iterator<Item = &'a str>,
    required: u32,
) -> Result<(), Rejection> {
    let distinct: BTreeSet<&str> = valid_issuers.collect();
    let have = u32::try_from(distinct.len()).unwrap_or(u32::MAX);
    if have >= required {
        return Ok(());
    }
    let named = if distinct.is_empty() {
        "none".to_owned()
    } else {
        distinct.into_iter().collect::<Vec<_>>().join(", ")
    };
    Err(Rejection::new(
        Reason::QuorumNotMet,
        format!(
            "this request needs approvals from {required} distinct issuers but has {have} \
             ({named}); attach credentials from more reviewers"
        ),
    )
    .expected_actual(required.to_string(), have.to_string()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
