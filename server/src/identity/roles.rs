//! Roles (SPEC §2): which caller identities may call which RPCs, optionally per environment.
//!
//! Matching rules, for identities and environments alike:
//! - a pattern without `*` matches exactly;
//! - a pattern ending in `*` matches by prefix: everything before the `*` must begin the
//!   identity, or the joined `org/project/env` string (`acme/payments/*`, `acme/*`, `*`);
//! - an environment pattern may also use `*` as a whole middle segment (`acme/*/prod`), which
//!   matches any single segment.
//!
//! No other use of `*` is accepted, so a typo cannot widen a binding silently.

use std::fmt;

use admission_contract::Reason;
use serde::Deserialize;

use crate::{
    domain::rejection::Rejection, domain::request::is_environment_segment, identity::tls::Identity,
};

/// A role a binding grants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// DeployAdmission.*, ReplayAdmission.*, Approvals.Create/Get/ListEligible.
    Orchestrator,
    /// Approvals.Decide/Revoke/Get/ListEligible.
    Reviewer,
    /// Audit.*.
    Auditor,
    /// May set `break_glass` on a DeployRequest.
    BreakGlass,
}

/// An identity pattern: exact, or a prefix ending in `*`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdentityPattern {
    /// Matches this identity only.
    Exact(String),
    /// Matches identities starting with this prefix.
    Prefix(String),
}

/// An environment pattern over `org/project/env`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnvironmentPattern {
    /// Three segments, each literal or `None` for a `*` segment.
    Segments([Option<String>; 3]),
    /// Matches joined `org/project/env` strings starting with this prefix.
    Prefix(String),
}

/// The `[[roles]]` bindings, in file order.
#[derive(Clone, Debug, Default)]
pub struct RoleBindings {
    bindings: Vec<RoleBinding>,
}

/// One `[[roles]]` table.
#[derive(Clone, Debug)]
pub struct RoleBinding {
    /// Whom it applies to.
    pub identity: IdentityPattern,
    /// What it grants.
    pub roles: Vec<Role>,
    /// Where it applies; empty means every environment.
    pub environments: Vec<EnvironmentPattern>,
}

// === impl Role ===

impl Role {
    /// The config name, e.g. `"break_glass"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Orchestrator => "orchestrator",
            Role::Reviewer => "reviewer",
            Role::Auditor => "auditor",
            Role::BreakGlass => "break_glass",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// === impl IdentityPattern ===

impl IdentityPattern {
    /// Parses `identity` from the config; `*` is allowed only at the end.
    pub fn parse(pattern: &str) -> Result<Self, String> {
        if pattern.is_empty() {
            return Err("must not be empty".to_owned());
        }
        match pattern.strip_suffix('*') {
            Some(prefix) if !prefix.contains('*') => Ok(Self::Prefix(prefix.to_owned())),
            None if !pattern.contains('*') => Ok(Self::Exact(pattern.to_owned())),
            _ => Err(format!("{pattern:?} may use '*' only at the end")),
        }
    }

    /// Whether `identity` matches.
    pub fn matches(&self, identity: &str) -> bool {
        match self {
            Self::Exact(exact) => exact == identity,
            Self::Prefix(prefix) => identity.starts_with(prefix.as_str()),
        }
    }
}

// === impl EnvironmentPattern ===

impl EnvironmentPattern {
    /// Parses an `environments` entry: `org/project/env`, `*` segments, or a trailing `*`.
    pub fn parse(pattern: &str) -> Result<Self, String> {
        if let Some(prefix) = pattern.strip_suffix('*') {
            if prefix.contains('*') {
                return Err(format!(
                    "{pattern:?} may use '*' only at the end or as a whole segment"
                ));
            }
            if prefix.split('/').count() > 3 {
                return Err(format!(
                    "{pattern:?} has more than org/project/env segments"
                ));
            }
            return Ok(Self::Prefix(prefix.to_owned()));
        }
        let segments: Vec<&str> = pattern.split('/').collect();
        let [org, project, env] = segments.as_slice() else {
            return Err(format!("{pattern:?} is not org/project/env"));
        };
        let segment = |s: &str| -> Result<Option<String>, String> {
            match s {
                "*" => Ok(None),
                s if is_environment_segment(s) => Ok(Some(s.to_owned())),
                _ => Err(format!(
                    "{pattern:?} is not org/project/env (segments are non-empty, '*' stands alone)"
                )),
            }
        };
        Ok(Self::Segments([
            segment(org)?,
            segment(project)?,
            segment(env)?,
        ]))
    }

    /// Whether the environment `org/project/env` matches.
    pub fn matches(&self, (org, project, env): (&str, &str, &str)) -> bool {
        match self {
            Self::Segments(segments) => segments
                .iter()
                .zip([org, project, env])
                .all(|(pattern, actual)| pattern.as_deref().is_none_or(|p| p == actual)),
            Self::Prefix(prefix) => format!("{org}/{project}/{env}").starts_with(prefix.as_str()),
        }
    }
}

// === impl RoleBindings ===

impl RoleBindings {
    /// Adds a binding.
    pub fn push(
        &mut self,
        identity: IdentityPattern,
        roles: Vec<Role>,
        environments: Vec<EnvironmentPattern>,
    ) {
        self.bindings.push(RoleBinding {
            identity,
            roles,
            environments,
        });
    }

    /// Number of bindings.
    pub fn len(&self) -> usize {
        self.bindings.len()
    }

    /// Whether there are no bindings at all.
    pub fn is_empty(&self) -> bool {
        self.bindings.is_empty()
    }

    /// Whether `caller` holds `role`, for `environment` when given.
    ///
    /// Without an environment, a binding limited to some environments still counts: the RPC
    /// is allowed and the environment check happens once the request names one.
    pub fn has_role(
        &self,
        caller: &Identity,
        role: Role,
        environment: Option<(&str, &str, &str)>,
    ) -> bool {
        self.bindings.iter().any(|binding| {
            binding.identity.matches(caller.as_str())
                && binding.roles.contains(&role)
                && match environment {
                    None => true,
                    Some(env) => {
                        binding.environments.is_empty()
                            || binding.environments.iter().any(|p| p.matches(env))
                    }
                }
        })
    }

    /// `CALLER_NOT_AUTHORIZED` unless `caller` holds `role` (for `environment` when given).
    pub fn authorize(
        &self,
        caller: &Identity,
        role: Role,
        environment: Option<(&str, &str, &str)>,
    ) -> Result<(), Rejection> {
        if self.has_role(caller, role, environment) {
            return Ok(());
        }
        let message = match environment {
            Some((org, project, env)) => {
                format!("caller {caller} does not have the {role} role for {org}/{project}/{env}")
            }
            None => format!("caller {caller} does not have the {role} role"),
        };
        tracing::info!(caller = %caller, role = %role, "caller is not authorized");
        Err(Rejection::new(Reason::CallerNotAuthorized, message))
    }

    /// `CALLER_NOT_AUTHORIZED` unless `caller` holds at least one of `roles`.
    pub fn authorize_any(
        &self,
        caller: &Identity,
        roles: &[Role],
        environment: Option<(&str, &str, &str)>,
    ) -> Result<(), Rejection> {
        if roles
            .iter()
            .any(|role| self.has_role(caller, *role, environment))
        {
            return Ok(());
        }
        let wanted = roles
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>()
            .join(" or ");
        let message = match environment {
            Some((org, project, env)) => {
                format!("caller {caller} does not have the {wanted} role for {org}/{project}/{env}")
            }
            None => format!("caller {caller} does not have the {wanted} role"),
        };
        tracing::info!(caller = %caller, roles = %wanted, "caller is not authorized");
        Err(Rejection::new(Reason::CallerNotAuthorized, message))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::grpc::status::ToStatus;

    fn bindings(entries: &[(&str, &[Role], &[&str])]) -> RoleBindings {
        let mut bindings = RoleBindings::default();
        for (identity, roles, envs) in entries {
            bindings.push(
                IdentityPattern::parse(identity).unwrap(),
                roles.to_vec(),
                envs.iter()
                    .map(|e| EnvironmentPattern::parse(e).unwrap())
                    .collect(),
            );
        }
        bindings
    }

    fn id(s: &str) -> Identity {
        Identity::new(s)
    }

    const PROD: (&str, &str, &str) = ("acme", "payments", "prod");

    #[test]
    fn exact_identity_matches_only_itself() {
        let b = bindings(&[("spiffe://acme/ci", &[Role::Orchestrator], &[])]);
        assert!(b.has_role(&id("spiffe://acme/ci"), Role::Orchestrator, Some(PROD)));
        assert!(!b.has_role(&id("spiffe://acme/ci2"), Role::Orchestrator, Some(PROD)));
        assert!(!b.has_role(&id("spiffe://acme/ci"), Role::Reviewer, None));
    }

    #[test]
    fn identity_prefix_pattern_matches_by_prefix() {
        let b = bindings(&[("spiffe://acme/reviewer/*", &[Role::Reviewer], &[])]);
        assert!(b.has_role(&id("spiffe://acme/reviewer/alice"), Role::Reviewer, None));
        assert!(!b.has_role(&id("spiffe://acme/orchestrator/ci"), Role::Reviewer, None));
    }

    #[test]
    fn environment_patterns() {
        let cases: &[(&str, (&str, &str, &str), bool)] = &[
            ("acme/payments/prod", PROD, true),
            ("acme/payments/dev", PROD, false),
            ("acme/payments/*", PROD, true),
            ("acme/*", PROD, true),
            ("acme/pay*", PROD, true),
            ("other/*", PROD, false),
            ("*", PROD, true),
            ("acme/*/prod", PROD, true),
            ("acme/*/dev", PROD, false),
            ("*/*/prod", PROD, true),
        ];
        for (pattern, env, expected) in cases {
            let parsed = EnvironmentPattern::parse(pattern).unwrap();
            assert_eq!(parsed.matches(*env), *expected, "{pattern}");
        }
    }

    #[test]
    fn malformed_patterns_are_refused() {
        for pattern in [
            "acme/payments",
            "acme/payments/prod/x",
            "a*c/p/e",
            "acme//prod",
            "a/*b/c",
        ] {
            assert!(EnvironmentPattern::parse(pattern).is_err(), "{pattern}");
        }
        assert!(IdentityPattern::parse("spiffe://*/ci").is_err());
        assert!(IdentityPattern::parse("").is_err());
    }

    #[test]
    fn environment_limits_apply_only_when_an_environment_is_named() {
        let b = bindings(&[(
            "spiffe://acme/ci",
            &[Role::Orchestrator],
            &["acme/staging/*"],
        )]);
        let caller = id("spiffe://acme/ci");
        assert!(b.has_role(&caller, Role::Orchestrator, None));
        assert!(b.has_role(&caller, Role::Orchestrator, Some(("acme", "staging", "eu"))));
        assert!(!b.has_role(&caller, Role::Orchestrator, Some(PROD)));
    }

    #[test]
    fn authorize_rejects_with_caller_not_authorized() {
        let b = bindings(&[(
            "spiffe://acme/reviewer/*",
            &[Role::Reviewer],
            &["acme/web/*"],
        )]);
        let rejection = b
            .authorize(
                &id("spiffe://acme/reviewer/alice"),
                Role::Reviewer,
                Some(PROD),
            )
            .unwrap_err();
        assert_eq!(rejection.reason, Reason::CallerNotAuthorized);
        assert_eq!(
            rejection.message,
            "caller spiffe://acme/reviewer/alice does not have the reviewer role for acme/payments/prod"
        );
        assert_eq!(rejection.to_status().code(), tonic::Code::PermissionDenied);
    }

    #[test]
    fn authorize_any_accepts_either_role() {
        let b = bindings(&[("spiffe://acme/reviewer/alice", &[Role::Reviewer], &[])]);
        let alice = id("spiffe://acme/reviewer/alice");
        assert!(
            b.authorize_any(&alice, &[Role::Orchestrator, Role::Reviewer], None)
                .is_ok()
        );
        let rejection = b
            .authorize_any(&alice, &[Role::Orchestrator, Role::Auditor], None)
            .unwrap_err();
        assert_eq!(
            rejection.message,
            "caller spiffe://acme/reviewer/alice does not have the orchestrator or auditor role"
        );
    }
}
