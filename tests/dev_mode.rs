//! Dev mode files (SPEC §8) serve real mTLS: every generated identity reaches its role.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::dev::dev_client;

use admission_client::{AdmissionClient, pb};
use admission_server::{
    runtime::config::Config, runtime::dev, runtime::serve, runtime::state::AppState,
};
use tokio::net::TcpListener;
use tonic::Code;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};

async fn client_as(env: &dev::DevEnvironment, port: u16, stem: &str) -> AdmissionClient {
    dev_client(&env.dir, port, stem).await
}

#[tokio::test]
async fn dev_files_serve_every_identity_with_its_role() {
    let tmp = tempfile::tempdir().unwrap();
    let env = dev::prepare(&tmp.path().join("dev")).unwrap();
    let config = Config::load(&env.config).unwrap();
    assert!(config.signing.is_some());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let state = AppState::new(config).await.expect("state");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve::serve_with_listener(listener, state, async move {
        let _ = stopped.await;
    }));

    let orchestrator = client_as(&env, port, "orchestrator").await;
    let status = orchestrator
        .health()
        .check(HealthCheckRequest::default())
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(status, ServingStatus::Serving as i32);

    let auditor = client_as(&env, port, "auditor").await;
    let verified = auditor
        .audit()
        .verify(pb::VerifyAuditRequest {})
        .await
        .expect("auditor may verify the trail")
        .into_inner();
    assert!(verified.ok, "{verified:?}");

    // Both reviewers match the `spiffe://dev.local/reviewer/*` binding.
    for stem in ["reviewer", "reviewer2"] {
        let reviewer = client_as(&env, port, stem).await;
        let status = reviewer
            .approvals()
            .decide(pb::DecideApprovalRequest::default())
            .await
            .unwrap_err();
        // Past the role gate: the empty request is refused for its missing verdict.
        assert_eq!(status.code(), Code::InvalidArgument, "{stem}: {status:?}");
    }

    let status = orchestrator
        .audit()
        .list(pb::ListAuditRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
