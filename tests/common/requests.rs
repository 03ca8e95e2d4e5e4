//! Valid requests with the usual values; a test overrides the fields it is about with struct
//! update syntax (`pb::DeployRequest { spec_kv, ..deploy("prod", "req-1") }`).

use admission_contract::pb;

/// The spec the standard requests deploy.
pub const SPEC_KV: &[u8] = b"image=registry.example/payments:1.4.2\nreplicas=3\n";

/// The pipeline version the standard requests name.
pub const PIPELINE_VERSION: &str = "pipeline-2026.11.1";

/// The person the standard requests are initiated by.
pub const INITIATED_BY: &str = "alice@acme.example";

/// `org/project/env`.
pub fn environment(org: &str, project: &str, env: &str) -> pb::EnvironmentRef {
    pb::EnvironmentRef {
        org_id: org.to_owned(),
        project_id: project.to_owned(),
        environment_id: env.to_owned(),
    }
}

/// A valid deploy of [`SPEC_KV`] to `acme/payments/<env>`, without credentials.
pub fn deploy(env: &str, request_id: &str) -> pb::DeployRequest {
    deploy_to(environment("acme", "payments", env), request_id)
}

/// A valid deploy of [`SPEC_KV`] to `environment`, without credentials.
pub fn deploy_to(environment: pb::EnvironmentRef, request_id: &str) -> pb::DeployRequest {
    let environment_id = environment.environment_id.clone();
    pb::DeployRequest {
        request_id: request_id.to_owned(),
        environment: Some(environment),
        pipeline_version: PIPELINE_VERSION.to_owned(),
        spec_kv: SPEC_KV.to_vec(),
        config_bundle: Some(bundle(
            "bundle-1",
            &format!("sha256:{}", "ab".repeat(32)),
            &environment_id,
        )),
        initiated_by: INITIATED_BY.to_owned(),
        ..pb::DeployRequest::default()
    }
}

/// A config bundle for `environment_id`.
pub fn bundle(bundle_id: &str, digest: &str, environment_id: &str) -> pb::ConfigBundle {
    pb::ConfigBundle {
        bundle_id: bundle_id.to_owned(),
        digest: digest.to_owned(),
        environment_id: environment_id.to_owned(),
    }
}

/// A valid `mode` replay of [`SPEC_KV`] in `acme/payments/<env>`, without credentials.
pub fn replay(env: &str, request_id: &str, mode: pb::ReplayMode) -> pb::ReplayRequest {
    pb::ReplayRequest {
        request_id: request_id.to_owned(),
        environment: Some(environment("acme", "payments", env)),
        mode: mode as i32,
        incident_id: "inc-1001".to_owned(),
        spec_kv: SPEC_KV.to_vec(),
        source_artifact: Some(pb::SourceArtifact {
            artifact_id: "capture-9".to_owned(),
            digest: format!("sha256:{}", "cd".repeat(32)),
            environment_id: env.to_owned(),
        }),
        initiated_by: INITIATED_BY.to_owned(),
        ..pb::ReplayRequest::default()
    }
}

/// A request for approval of deploying [`SPEC_KV`] to `acme/payments/<env>`.
pub fn create_approval(env: &str, justification: &str) -> pb::CreateApprovalRequest {
    pb::CreateApprovalRequest {
        environment: Some(environment("acme", "payments", env)),
        action: pb::Action::Deploy as i32,
        spec: Some(pb::create_approval_request::Spec::SpecKv(SPEC_KV.to_vec())),
        justification: justification.to_owned(),
        initiated_by: INITIATED_BY.to_owned(),
        ..pb::CreateApprovalRequest::default()
    }
}

/// The spec [`dev_deploy`] deploys.
pub const DEV_SPEC_KV: &[u8] = b"a=1\n";

/// A valid deploy of [`DEV_SPEC_KV`] to `dev/app/<env>`, an environment of
/// `admission-server dev`, without credentials.
pub fn dev_deploy(env: &str, request_id: &str) -> pb::DeployRequest {
    pb::DeployRequest {
        pipeline_version: "v1".to_owned(),
        spec_kv: DEV_SPEC_KV.to_vec(),
        config_bundle: Some(bundle(
            "bundle-1",
            &format!("sha256:{}", "0".repeat(64)),
            env,
        )),
        initiated_by: "alice@example.com".to_owned(),
        ..deploy_to(environment("dev", "app", env), request_id)
    }
}
