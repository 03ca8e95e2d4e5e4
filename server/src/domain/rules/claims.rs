//! Rows 16–22 for one verified credential, in that order; the first failure wins. Each row
//! group is one function below, and every rejection carries `approval_id` and `kid` metadata
//! (the caller adds `decision_id`).

use std::time::{Duration, SystemTime};

use admission_contract::{
    Reason,
    credential::{Claims, format_time},
    echo,
    echo::{Echo, truncated},
};

use crate::domain::{policy::EnvironmentPolicy, rejection::Rejection};

/// What one credential's claims are checked against (SPEC §7 rows 16–22).
#[derive(Clone, Copy, Debug)]
pub struct CredentialCheck<'a> {
    /// The target environment's policy.
    pub policy: &'a EnvironmentPolicy,
    /// The request's spec hash.
    pub spec_hash: &'a str,
    /// The request's config bundle digest, if it carries a config bundle.
    pub config_bundle_digest: Option<&'a str>,
    /// Capabilities the request needs, from [`EnvironmentPolicy::required_capabilities`].
    pub required_capabilities: &'a [String],
    /// The request's `initiated_by`.
    pub initiated_by: &'a str,
    /// The caller's identity (certificate SAN or CN).
    pub caller: &'a str,
    /// The server clock.
    pub now: SystemTime,
}

/// Rows 16–22 for one verified credential, in that order; the first failure wins.
///
/// Every rejection carries `approval_id` and `kid` metadata; the caller adds `decision_id`.
pub fn check_claims(claims: &Claims, ctx: &CredentialCheck<'_>) -> Result<(), Rejection> {
    check_spec_hash(claims, ctx)?;
    check_environment(claims, ctx.policy)?;
    check_validity_window(claims, ctx)?;
    check_capabilities(claims, ctx)?;
    check_config_bundle(claims, ctx)?;
    check_lifetime(claims, ctx.policy)?;
    check_self_approval(claims, ctx)
}

/// A rejection of this credential, naming it in metadata.
fn reject(claims: &Claims, reason: Reason, message: String) -> Rejection {
    Rejection::new(reason, message)
        .with("approval_id", truncated(&claims.approval_id))
        .with("kid", truncated(&claims.kid))
}

/// The approval id for a message: claims are signed but still input, so every echo of them
/// is bounded.
fn approval_id(claims: &Claims) -> Echo<'_> {
    echo(&claims.approval_id)
}

/// Row 16: the credential is bound to this request's spec.
fn check_spec_hash(claims: &Claims, ctx: &CredentialCheck<'_>) -> Result<(), Rejection> {
    if claims.spec_hash == ctx.spec_hash {
        return Ok(());
    }
    let id = approval_id(claims);
    Err(reject(
        claims,
        Reason::SpecHashMismatch,
        format!(
            "approval {id} is bound to spec {} but this request has {}; request an approval \
             for this spec",
            echo(&claims.spec_hash),
            ctx.spec_hash
        ),
    )
    .expected_actual(ctx.spec_hash, truncated(&claims.spec_hash)))
}

/// Row 17: the credential names this environment and its posture.
fn check_environment(claims: &Claims, policy: &EnvironmentPolicy) -> Result<(), Rejection> {
    let id = approval_id(claims);
    let path = policy.path();
    let same_environment = claims.org_id == policy.org_id
        && claims.project_id == policy.project_id
        && claims.environment_id == policy.environment_id;
    if !same_environment {
        let claimed_path = format!(
            "{}/{}/{}",
            echo(&claims.org_id),
            echo(&claims.project_id),
            echo(&claims.environment_id)
        );
        return Err(reject(
            claims,
            Reason::EnvironmentMismatch,
            format!(
                "approval {id} is for environment {claimed_path} but this request targets \
                 {path}; request an approval for {path}"
            ),
        )
        .expected_actual(path, claimed_path));
    }
    if claims.environment_posture == policy.posture.as_str() {
        return Ok(());
    }
    Err(reject(
        claims,
        Reason::EnvironmentMismatch,
        format!(
            "approval {id} was issued for posture {} but environment {path} has posture {}; \
             request a new approval",
            echo(&claims.environment_posture),
            policy.posture
        ),
    )
    .expected_actual(
        policy.posture.as_str(),
        truncated(&claims.environment_posture),
    ))
}

/// Row 18: the server clock is within the credential's validity, give or take the skew.
fn check_validity_window(claims: &Claims, ctx: &CredentialCheck<'_>) -> Result<(), Rejection> {
    let id = approval_id(claims);
    let skew = ctx.policy.clock_skew;
    let expired = claims
        .expires_at
        .checked_add(skew)
        .is_some_and(|limit| limit <= ctx.now);
    if expired {
        return Err(reject(
            claims,
            Reason::CredentialExpired,
            format!(
                "approval {id} expired at {} (server time {}, clock skew {}); request a new \
                 approval",
                show_time(claims.expires_at),
                show_time(ctx.now),
                humantime::format_duration(skew)
            ),
        )
        .with("expires_at", show_time(claims.expires_at)));
    }
    let not_yet_valid = claims
        .issued_at
        .checked_sub(skew)
        .is_some_and(|start| start > ctx.now);
    if !not_yet_valid {
        return Ok(());
    }
    Err(reject(
        claims,
        Reason::CredentialNotYetValid,
        format!(
            "approval {id} is issued at {}, later than server time {} plus clock skew {}; \
             check the issuer's clock",
            show_time(claims.issued_at),
            show_time(ctx.now),
            humantime::format_duration(skew)
        ),
    )
    .with("issued_at", show_time(claims.issued_at)))
}

/// Row 19: the credential grants every capability the request needs.
fn check_capabilities(claims: &Claims, ctx: &CredentialCheck<'_>) -> Result<(), Rejection> {
    let missing: Vec<&str> = ctx
        .required_capabilities
        .iter()
        .filter(|required| !claims.capabilities.contains(required))
        .map(String::as_str)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let id = approval_id(claims);
    let missing = missing.join(",");
    Err(reject(
        claims,
        Reason::CapabilitiesInsufficient,
        format!(
            "approval {id} does not grant capabilities {missing} that this request needs; \
             request an approval that includes them"
        ),
    )
    .with("missing", missing))
}

/// Row 20: a credential bound to a config bundle admits only that bundle.
fn check_config_bundle(claims: &Claims, ctx: &CredentialCheck<'_>) -> Result<(), Rejection> {
    let Some(bound) = &claims.config_bundle_digest else {
        return Ok(());
    };
    if ctx.config_bundle_digest == Some(bound.as_str()) {
        return Ok(());
    }
    let id = approval_id(claims);
    let carried = ctx.config_bundle_digest.unwrap_or("");
    let described = ctx.config_bundle_digest.unwrap_or("no config bundle");
    Err(reject(
        claims,
        Reason::ConfigBundleMismatch,
        format!(
            "approval {id} is bound to config bundle {} but this request carries \
             {described}; deploy the approved bundle or request a new approval",
            echo(bound)
        ),
    )
    .expected_actual(carried, truncated(bound)))
}

/// Row 21: the credential lives no longer than the environment accepts.
fn check_lifetime(claims: &Claims, policy: &EnvironmentPolicy) -> Result<(), Rejection> {
    let lifetime = claims
        .expires_at
        .duration_since(claims.issued_at)
        .unwrap_or(Duration::ZERO);
    if lifetime <= policy.max_credential_ttl {
        return Ok(());
    }
    let id = approval_id(claims);
    let path = policy.path();
    let (max, actual) = (
        humantime::format_duration(policy.max_credential_ttl).to_string(),
        humantime::format_duration(lifetime).to_string(),
    );
    Err(reject(
        claims,
        Reason::CredentialLifetimeExceedsPolicy,
        format!(
            "approval {id} is valid for {actual} but environment {path} accepts at most \
             {max}; re-issue it with a shorter lifetime"
        ),
    )
    .expected_actual(max, actual))
}

/// Row 22: nobody approves their own request.
fn check_self_approval(claims: &Claims, ctx: &CredentialCheck<'_>) -> Result<(), Rejection> {
    let role = if claims.issued_by == ctx.initiated_by {
        "initiated this request"
    } else if claims.issued_by == ctx.caller {
        "is the caller of this request"
    } else {
        return Ok(());
    };
    let id = approval_id(claims);
    Err(reject(
        claims,
        Reason::SelfApproval,
        format!(
            "approval {id} was issued by {}, who {role}; another reviewer must approve it",
            echo(&claims.issued_by)
        ),
    )
    .with("issued_by", truncated(&claims.issued_by)))
}

/// A credential time for a message; times RFC 3339 cannot write are shown raw.
fn show_time(time: SystemTime) -> String {
    format_time(time).unwrap_or_else(|_| format!("{time:?}"))
}
