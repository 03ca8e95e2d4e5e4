//! mTLS transport, caller identity and role checks, end to end over real sockets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use admission_client::{AdmissionClientBuilder, Rejection, pb};
use admission_contract::{ERROR_DOMAIN, Reason};
use common::{
    AUDITOR, DEFAULT_ROLES, NOBODY, ORCHESTRATOR, Pki, REVIEWER, TestServer,
    requests::{bundle, deploy},
};
use tokio::io::AsyncReadExt;
use tonic::Code;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
use tonic_reflection::pb::v1::{
    ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
    server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
};
use tonic_types::StatusExt;

async fn health(
    client: &admission_client::AdmissionClient,
) -> Result<ServingStatus, tonic::Status> {
    let response = client
        .health()
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await?;
    Ok(ServingStatus::try_from(response.into_inner().status).unwrap())
}

/// The client cannot complete a call because the server sent the TLS `alert`, and no
/// connection ever reached a handler.
async fn assert_refused_at_handshake(
    server: &TestServer,
    builder: AdmissionClientBuilder,
    alert: &str,
) {
    // With TLS 1.3 the client may finish its side before the server checks the certificate,
    // so the refusal surfaces either on connect or on the first call.
    let error = match builder.connect().await {
        Err(error) => format!("{error:?}"),
        Ok(client) => format!("{:?}", health(&client).await.expect_err("call must fail")),
    };
    assert!(
        error.contains(&format!("received fatal alert: {alert}")),
        "{error}"
    );
    let mut counts = server.state.transport().subscribe();
    counts.wait_for(|c| c.failed >= 1).await.unwrap();
    assert_eq!(server.state.transport().handshakes().established, 0);
}

fn assert_caller_not_authorized(status: &tonic::Status) {
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let info = status.get_details_error_info().expect("error info");
    assert_eq!(info.reason, "CALLER_NOT_AUTHORIZED");
    assert_eq!(info.domain, ERROR_DOMAIN);
    let rejection = Rejection::from_status(status).expect("typed rejection");
    assert!(rejection.is(Reason::CallerNotAuthorized));
}

#[tokio::test]
async fn health_over_mtls_is_serving() {
    let server = TestServer::start().await;
    let client = server.client(ORCHESTRATOR).await;
    assert_eq!(health(&client).await.unwrap(), ServingStatus::Serving);
    assert_eq!(server.state.transport().handshakes().established, 1);

    server.state.health().set_serving(false).await;
    assert_eq!(health(&client).await.unwrap(), ServingStatus::NotServing);
    server.stop().await;
}

#[tokio::test]
async fn client_without_certificate_is_refused() {
    let server = TestServer::start().await;
    assert_refused_at_handshake(&server, server.builder(), "CertificateRequired").await;
}

#[tokio::test]
async fn certificate_from_an_untrusted_ca_is_refused() {
    let server = TestServer::start().await;
    let stranger = Pki::new("untrusted CA").client(ORCHESTRATOR);
    assert_refused_at_handshake(&server, server.builder_as(&stranger), "UnknownCA").await;
}

#[tokio::test]
async fn expired_client_certificate_is_refused() {
    let server = TestServer::start().await;
    let expired = server.pki.expired_client(ORCHESTRATOR);
    assert_refused_at_handshake(&server, server.builder_as(&expired), "CertificateExpired").await;
}

#[tokio::test]
async fn revoked_client_certificate_is_refused() {
    let pki = Pki::new("test clients CA");
    let revoked = pki.client(ORCHESTRATOR);
    let crl = pki.crl(&[&revoked]);
    let server = TestServer::start_with(pki, &[crl], DEFAULT_ROLES).await;
    assert_refused_at_handshake(&server, server.builder_as(&revoked), "CertificateRevoked").await;

    // A certificate the CRL does not list still gets through.
    let client = server.client(ORCHESTRATOR).await;
    assert_eq!(health(&client).await.unwrap(), ServingStatus::Serving);
}

#[tokio::test]
async fn caller_without_a_role_is_not_authorized() {
    let server = TestServer::start().await;
    let client = server.client(NOBODY).await;
    let status = client
        .audit()
        .verify(pb::VerifyAuditRequest {})
        .await
        .unwrap_err();
    assert_caller_not_authorized(&status);
    assert_eq!(
        status.message(),
        "caller spiffe://test.local/nobody does not have the auditor role"
    );
}

#[tokio::test]
async fn orchestrator_may_not_list_the_audit_trail() {
    let server = TestServer::start().await;
    let client = server.client(ORCHESTRATOR).await;
    let status = client
        .audit()
        .list(pb::ListAuditRequest::default())
        .await
        .unwrap_err();
    assert_caller_not_authorized(&status);
}

#[tokio::test]
async fn roles_gate_each_service_before_it_answers() {
    let server = TestServer::start().await;
    let auditor = server.client(AUDITOR).await;
    let reviewer = server.client(REVIEWER).await;
    let orchestrator = server.client(ORCHESTRATOR).await;

    auditor
        .audit()
        .list(pb::ListAuditRequest::default())
        .await
        .expect("auditor may list the trail");

    // Past the role gate, an empty approval id is the request's fault.
    for client in [&reviewer, &orchestrator] {
        let status = client
            .approvals()
            .get(pb::GetApprovalRequest::default())
            .await
            .unwrap_err();
        assert_reason(&status, Code::InvalidArgument, "REQUEST_INVALID");
    }

    let status = reviewer
        .approvals()
        .create(pb::CreateApprovalRequest::default())
        .await
        .unwrap_err();
    assert_caller_not_authorized(&status);
    let status = orchestrator
        .approvals()
        .decide(pb::DecideApprovalRequest::default())
        .await
        .unwrap_err();
    assert_caller_not_authorized(&status);
    // Admissions validate the request first (SPEC §7 row 1), then the caller (row 3).
    let status = reviewer.deploy().preview(valid_deploy()).await.unwrap_err();
    assert_caller_not_authorized(&status);
    let status = orchestrator
        .replay()
        .admit(pb::ReplayRequest::default())
        .await
        .unwrap_err();
    assert_reason(&status, Code::InvalidArgument, "REQUEST_INVALID");
}

fn valid_deploy() -> pb::DeployRequest {
    pb::DeployRequest {
        pipeline_version: "v1".into(),
        spec_kv: b"a=1\n".to_vec(),
        config_bundle: Some(bundle("b1", &format!("sha256:{}", "0".repeat(64)), "prod")),
        ..deploy("prod", "transport-1")
    }
}

fn assert_reason(status: &tonic::Status, code: Code, reason: &str) {
    assert_eq!(status.code(), code, "{status:?}");
    let info = status.get_details_error_info().expect("error info");
    assert_eq!(info.reason, reason, "{status:?}");
    assert_eq!(info.domain, "byteor.admission.v1");
}

#[tokio::test]
async fn reflection_lists_the_services() {
    let server = TestServer::start().await;
    let client = server.client(NOBODY).await;
    let mut reflection = ServerReflectionClient::new(client.channel());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection response {response:?}");
    };
    let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "byteor.admission.v1.Approvals",
            "byteor.admission.v1.Audit",
            "byteor.admission.v1.DeployAdmission",
            "byteor.admission.v1.ReplayAdmission",
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        ]
    );
}

#[tokio::test]
async fn a_silent_client_does_not_block_others() {
    let server = TestServer::start().await;
    // Connects but never starts the TLS handshake.
    let silent = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let client = server.client(ORCHESTRATOR).await;
    assert_eq!(health(&client).await.unwrap(), ServingStatus::Serving);
    drop(silent);
}

#[tokio::test]
async fn a_stalled_handshake_is_dropped_at_the_deadline() {
    let extra = format!("{DEFAULT_ROLES}\n[limits]\nhandshake_timeout = \"100ms\"\n");
    let server = TestServer::start_with(Pki::new("test clients CA"), &[], &extra).await;
    let mut silent = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let mut counts = server.state.transport().subscribe();
    counts.wait_for(|c| c.failed == 1).await.unwrap();
    // The server closed the connection: the read sees end of stream.
    let mut buf = [0u8; 1];
    assert_eq!(silent.read(&mut buf).await.unwrap(), 0);
}
