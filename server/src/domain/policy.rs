//! Environment policy (SPEC §6): configuration and the pure decision functions.
//!
//! No transport here: given a request, an environment policy and a clock, which decision?

use std::{
    collections::{BTreeSet, HashMap},
    fmt,
    time::Duration,
};

use serde::Deserialize;

pub use super::action::ActionKind;

/// Environment posture.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Posture {
    /// Development.
    Dev,
    /// Staging.
    Staging,
    /// Production.
    Prod,
}

/// What side effects the environment permits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SideEffects {
    /// Admit without approval (unless a gated capability is requested).
    AllowAll,
    /// Admit only with approval.
    RequireApproval,
    /// Never admit.
    DenyAll,
}

/// Whether replay is permitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplayPolicy {
    /// No replay at all.
    Disabled,
    /// Dry-run replay only.
    DryRunOnly,
    /// Dry-run and execute replay.
    Allowed,
}

/// Enforce, or shadow mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Enforcement {
    /// Reject what fails.
    #[default]
    Enforce,
    /// Admit everything, reporting and auditing the would-be rejection (`shadow_reason`).
    AuditOnly,
}

/// Required capabilities per action.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequiredCapabilities {
    /// Capabilities every deployment needs.
    #[serde(default = "default_deploy_capabilities")]
    pub deploy: Vec<String>,
    /// Capabilities every execute-mode replay needs.
    #[serde(default = "default_replay_capabilities")]
    pub replay_execute: Vec<String>,
}

/// One `[[environments]]` table of the config file, exactly as written (SPEC §8).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentConfig {
    /// Organization id.
    pub org_id: String,
    /// Project id.
    pub project_id: String,
    /// Environment id.
    pub environment_id: String,
    /// Posture.
    pub posture: Posture,
    /// Side-effect policy; defaults by posture.
    pub side_effects: Option<SideEffects>,
    /// Replay policy; default `allowed`.
    pub replay: Option<ReplayPolicy>,
    /// Required capabilities per action.
    pub required_capabilities: Option<RequiredCapabilities>,
    /// Capabilities that require approval whenever requested.
    #[serde(default)]
    pub gated_capabilities: Vec<String>,
    /// Distinct issuers needed; default 1.
    pub required_approvals: Option<u32>,
    /// Longest credential lifetime accepted; default 1h.
    #[serde(default, with = "opt_duration")]
    pub max_credential_ttl: Option<Duration>,
    /// Admissions one approval may be used for; default 1.
    pub max_uses: Option<u32>,
    /// Enforce or shadow mode.
    #[serde(default)]
    pub enforcement: Enforcement,
    /// Whether break-glass is permitted.
    #[serde(default)]
    pub break_glass: bool,
    /// Clock skew tolerated on credential times; default 30s.
    #[serde(default, with = "opt_duration")]
    pub clock_skew: Option<Duration>,
}

/// An environment's policy with the SPEC §6 defaults applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvironmentPolicy {
    /// Organization id.
    pub org_id: String,
    /// Project id.
    pub project_id: String,
    /// Environment id.
    pub environment_id: String,
    /// Posture.
    pub posture: Posture,
    /// Side-effect policy (default `allow_all` for dev, else `require_approval`).
    pub side_effects: SideEffects,
    /// Replay policy (default `allowed`).
    pub replay: ReplayPolicy,
    /// Required capabilities per action (defaults `["deploy"]` and `["replay.execute"]`).
    pub required_capabilities: RequiredCapabilities,
    /// Capabilities that require approval whenever requested.
    pub gated_capabilities: BTreeSet<String>,
    /// Distinct issuers needed (default 1).
    pub required_approvals: u32,
    /// Longest credential lifetime accepted (default 1h).
    pub max_credential_ttl: Duration,
    /// Admissions one approval may be used for (default 1).
    pub max_uses: u32,
    /// Enforce or shadow mode.
    pub enforcement: Enforcement,
    /// Whether break-glass is permitted.
    pub break_glass: bool,
    /// Clock skew tolerated on credential times (default 30s).
    pub clock_skew: Duration,
}

/// The policies of every configured environment, keyed by (org, project, environment).
#[derive(Clone, Debug, Default)]
pub struct Policies {
    by_environment: HashMap<(String, String, String), EnvironmentPolicy>,
}

/// The policy decision of SPEC §6, before any credential is looked at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PolicyDecision {
    /// Admit without approval.
    Allow,
    /// Only a dry-run replay may be admitted.
    DryRunOnly,
    /// Admit only with valid approval credentials.
    RequireApproval,
    /// Never admit.
    Deny,
}

/// SPEC §6 default for `max_credential_ttl`.
pub const DEFAULT_MAX_CREDENTIAL_TTL: Duration = Duration::from_secs(3600);

/// SPEC §6 default for `clock_skew`.
pub const DEFAULT_CLOCK_SKEW: Duration = Duration::from_secs(30);

fn default_deploy_capabilities() -> Vec<String> {
    vec!["deploy".to_owned()]
}

fn default_replay_capabilities() -> Vec<String> {
    vec!["replay.execute".to_owned()]
}

/// Durations written as `"90s"`, `"15m"`, `"1h"`, `"2h30m"`.
pub mod opt_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    /// Deserializes an optional humantime duration string.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let Some(text) = Option::<String>::deserialize(d)? else {
            return Ok(None);
        };
        humantime::parse_duration(&text)
            .map(Some)
            .map_err(|e| serde::de::Error::custom(format!("invalid duration {text:?}: {e}")))
    }
}

// === impl Posture ===

impl Posture {
    /// The config and credential text: `dev`, `staging` or `prod`.
    pub fn as_str(self) -> &'static str {
        match self {
            Posture::Dev => "dev",
            Posture::Staging => "staging",
            Posture::Prod => "prod",
        }
    }
}

impl fmt::Display for Posture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// === impl EnvironmentPolicy ===

impl EnvironmentPolicy {
    /// Applies the SPEC §6 defaults to one `[[environments]]` table and checks its values.
    pub fn from_config(config: EnvironmentConfig) -> Result<EnvironmentPolicy, String> {
        let path = format!(
            "{}/{}/{}",
            config.org_id, config.project_id, config.environment_id
        );
        for (field, value) in [
            ("org_id", &config.org_id),
            ("project_id", &config.project_id),
            ("environment_id", &config.environment_id),
        ] {
            if value.is_empty() || value.contains('/') {
                return Err(format!(
                    "environment {path} has {field} {value:?}; ids must be non-empty and \
                     contain no '/'"
                ));
            }
        }
        let positive = |field: &str, value: Option<u32>| match value {
            Some(0) => Err(format!(
                "environment {path} sets {field} = 0; it must be at least 1"
            )),
            other => Ok(other.unwrap_or(1)),
        };
        let required_approvals = positive("required_approvals", config.required_approvals)?;
        let max_uses = positive("max_uses", config.max_uses)?;
        let max_credential_ttl = config
            .max_credential_ttl
            .unwrap_or(DEFAULT_MAX_CREDENTIAL_TTL);
        if max_credential_ttl.is_zero() {
            return Err(format!(
                "environment {path} sets max_credential_ttl to zero; no credential could be valid"
            ));
        }
        let side_effects = config.side_effects.unwrap_or(match config.posture {
            Posture::Dev => SideEffects::AllowAll,
            Posture::Staging | Posture::Prod => SideEffects::RequireApproval,
        });
        Ok(EnvironmentPolicy {
            org_id: config.org_id,
            project_id: config.project_id,
            environment_id: config.environment_id,
            posture: config.posture,
            side_effects,
            replay: config.replay.unwrap_or(ReplayPolicy::Allowed),
            required_capabilities: config.required_capabilities.unwrap_or_else(|| {
                RequiredCapabilities {
                    deploy: default_deploy_capabilities(),
                    replay_execute: default_replay_capabilities(),
                }
            }),
            gated_capabilities: config.gated_capabilities.into_iter().collect(),
            required_approvals,
            max_credential_ttl,
            max_uses,
            enforcement: config.enforcement,
            break_glass: config.break_glass,
            clock_skew: config.clock_skew.unwrap_or(DEFAULT_CLOCK_SKEW),
        })
    }

    /// `org/project/environment`, as operators write it.
    pub fn path(&self) -> String {
        format!(
            "{}/{}/{}",
            self.org_id, self.project_id, self.environment_id
        )
    }

    /// The SPEC §6 policy decision for `action` with these requested capabilities.
    pub fn decide(&self, action: ActionKind, requested: &[String]) -> PolicyDecision {
        match action {
            ActionKind::Deploy => self.raise_for_gated(self.by_side_effects(), requested),
            // Dry-run replay has no side effects, so it needs no privileges.
            ActionKind::ReplayDryRun => match self.replay {
                ReplayPolicy::Disabled => PolicyDecision::Deny,
                ReplayPolicy::DryRunOnly | ReplayPolicy::Allowed => PolicyDecision::Allow,
            },
            ActionKind::ReplayExecute => match self.replay {
                ReplayPolicy::Disabled => PolicyDecision::Deny,
                ReplayPolicy::DryRunOnly => PolicyDecision::DryRunOnly,
                ReplayPolicy::Allowed => self.raise_for_gated(self.by_side_effects(), requested),
            },
        }
    }

    /// The capabilities a credential must grant: the policy's set for `action` plus the
    /// requested ones, sorted and deduplicated. Dry-run replay needs only the requested ones.
    pub fn required_capabilities(&self, action: ActionKind, requested: &[String]) -> Vec<String> {
        let policy_set: &[String] = match action {
            ActionKind::Deploy => &self.required_capabilities.deploy,
            ActionKind::ReplayExecute => &self.required_capabilities.replay_execute,
            ActionKind::ReplayDryRun => &[],
        };
        let all: BTreeSet<&String> = policy_set.iter().chain(requested).collect();
        all.into_iter().cloned().collect()
    }

    fn by_side_effects(&self) -> PolicyDecision {
        match self.side_effects {
            SideEffects::AllowAll => PolicyDecision::Allow,
            SideEffects::RequireApproval => PolicyDecision::RequireApproval,
            SideEffects::DenyAll => PolicyDecision::Deny,
        }
    }

    fn raise_for_gated(&self, decision: PolicyDecision, requested: &[String]) -> PolicyDecision {
        let gated = requested
            .iter()
            .any(|capability| self.gated_capabilities.contains(capability));
        match decision {
            PolicyDecision::Allow if gated => PolicyDecision::RequireApproval,
            other => other,
        }
    }
}

// === impl Policies ===

impl Policies {
    /// Builds the policies of every `[[environments]]` table; an environment twice is an error.
    pub fn from_configs(configs: Vec<EnvironmentConfig>) -> Result<Policies, String> {
        let mut by_environment = HashMap::with_capacity(configs.len());
        for config in configs {
            let policy = EnvironmentPolicy::from_config(config)?;
            let key = (
                policy.org_id.clone(),
                policy.project_id.clone(),
                policy.environment_id.clone(),
            );
            if by_environment.contains_key(&key) {
                return Err(format!(
                    "environment {} is configured twice; keep one [[environments]] table for it",
                    policy.path()
                ));
            }
            by_environment.insert(key, policy);
        }
        Ok(Policies { by_environment })
    }

    /// The policy of one environment, if configured.
    pub fn get(&self, org: &str, project: &str, env: &str) -> Option<&EnvironmentPolicy> {
        self.by_environment
            .get(&(org.to_owned(), project.to_owned(), env.to_owned()))
    }

    /// Every configured environment's policy, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &EnvironmentPolicy> {
        self.by_environment.values()
    }

    /// Number of configured environments.
    pub fn len(&self) -> usize {
        self.by_environment.len()
    }

    /// True when no environment is configured.
    pub fn is_empty(&self) -> bool {
        self.by_environment.is_empty()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
