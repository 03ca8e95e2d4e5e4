//! SPEC §7 rows 6–25 as one pure function: request, environment policy, key set, the stored
//! state of the approvals involved, and the clock in; a verdict or the first failing check out.

use std::{
    collections::{BTreeSet, HashMap},
    time::SystemTime,
};

use admission_contract::{
    Reason,
    credential::{self, Claims, KeySet},
};

use super::request::AdmissionRequest;
use crate::{
    credential::verify_rejection,
    policy::{
        ActionKind, CredentialCheck, EnvironmentPolicy, PolicyDecision, check_claims, quorum,
    },
    rejection::Rejection,
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
    /// Stored state of approvals named by the credentials (absent = never used).
    pub approvals: &'a HashMap<String, ApprovalUseState>,
    /// Longest credential accepted, in bytes.
    pub credential_max_bytes: usize,
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
                action_phrase(request.action)
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
                action_phrase(request.action),
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
    for token in &request.credentials {
        // Rows 11–15.
        let decoded = credential::decode(token, input.credential_max_bytes)
            .map_err(|e| verify_rejection(&e, None))?;
        credential::verify_decoded(&decoded, input.keys)
            .map_err(|e| verify_rejection(&e, Some(&decoded.claims.approval_id)))?;
        let claims = decoded.claims;
        // Rows 16–22.
        check_claims(&claims, &check)?;
        // Rows 23–24.
        check_use_state(&claims, input.approvals)?;
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

/// How messages name an action.
pub fn action_phrase(action: ActionKind) -> &'static str {
    match action {
        ActionKind::Deploy => "deploy",
        ActionKind::ReplayDryRun => "dry-run replay",
        ActionKind::ReplayExecute => "execute replay",
    }
}
