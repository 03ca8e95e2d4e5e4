//! Environment policy (SPEC §6): configuration and the pure decision functions.
//!
//! No tonic here: given a request, an environment policy and a clock, which decision?

use std::time::Duration;

use serde::Deserialize;

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
