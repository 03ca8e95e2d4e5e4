//! The wire types the use cases still build and read: conversions between `pb` and the domain.

use admission_contract::pb;

use crate::domain::{
    policy::{ActionKind, Posture},
    request::EnvironmentKey,
};

/// The environment a request names; a missing one is the empty key (rejected by validation).
pub fn environment_key(environment: Option<&pb::EnvironmentRef>) -> EnvironmentKey {
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

/// The wire action.
pub fn pb_action(action: ActionKind) -> pb::Action {
    match action {
        ActionKind::Deploy => pb::Action::Deploy,
        ActionKind::ReplayDryRun => pb::Action::ReplayDryRun,
        ActionKind::ReplayExecute => pb::Action::ReplayExecute,
    }
}

/// The wire posture.
pub fn pb_posture(posture: Posture) -> pb::Posture {
    match posture {
        Posture::Dev => pb::Posture::Dev,
        Posture::Staging => pb::Posture::Staging,
        Posture::Prod => pb::Posture::Prod,
    }
}
