//! The Connect protocol's unary form on the gRPC port: HTTP/2 requests over real mTLS with
//! certificates from the test CA, JSON (and protobuf) bodies, Connect error JSON with the same
//! ErrorInfo as gRPC, and the same audit trail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../tests/common/mod.rs"]
mod common;

use std::net::SocketAddr;

use admission_client::pb;
use base64::{Engine as _, engine::general_purpose::STANDARD};
use bytes::Bytes;
use common::{
    AUDITOR, DEFAULT_ROLES, DEV_ENVIRONMENT, Issued, NOBODY, ORCHESTRATOR, TestServer,
    raw_h2::tls_connect, requests::SPEC_KV, store::TestDb,
};
use http::StatusCode;
use prost::Message as _;
use rustls_pki_types::pem::PemObject as _;
use serde_json::{Value, json};

const ADMIT: &str = "/byteor.admission.v1.DeployAdmission/Admit";
const AUDIT_LIST: &str = "/byteor.admission.v1.Audit/List";

/// One HTTP answer: status, headers, body.
struct Reply {
    status: StatusCode,
    headers: http::HeaderMap,
    body: Bytes,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|error| panic!("body is not json ({error}): {:?}", self.body))
    }

    /// The ErrorInfo detail of a Connect error, decoded from its base64 `value`.
    fn error_info(&self) -> tonic_types::pb::ErrorInfo {
        let body = self.json();
        let detail = body["details"]
            .as_array()
            .expect("details")
            .iter()
            .find(|detail| detail["type"] == "google.rpc.ErrorInfo")
            .expect("an ErrorInfo detail");
        let value = detail["value"].as_str().expect("value");
        let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(value)
            .expect("unpadded standard base64");
        tonic_types::pb::ErrorInfo::decode(bytes.as_slice()).unwrap()
    }
}

/// Sends one request over a fresh mTLS HTTP/2 connection presenting `cert`.
async fn send(
    addr: SocketAddr,
    ca: &str,
    cert: &Issued,
    request: http::Request<()>,
    body: Bytes,
) -> Reply {
    let tls = tls_connect(addr, ca, &cert.cert_pem, &cert.key_pem).await;
    let (send, connection) = h2::client::handshake(tls).await.unwrap();
    tokio::spawn(connection);
    let mut send = send.ready().await.unwrap();
    let (response, mut stream) = send.send_request(request, false).unwrap();
    stream.send_data(body, true).unwrap();
    let response = response.await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let mut body = response.into_body();
    let mut bytes = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
        bytes.extend_from_slice(&chunk);
    }
    Reply {
        status,
        headers,
        body: Bytes::from(bytes),
    }
}

/// POSTs `body` to `path` as `content_type`, presenting `cert`.
async fn post_as(
    server: &TestServer,
    cert: &Issued,
    path: &str,
    content_type: &str,
    body: impl Into<Bytes>,
) -> Reply {
    let request = http::Request::post(format!("https://localhost{path}"))
        .header("content-type", content_type)
        .header("connect-protocol-version", "1")
        .body(())
        .unwrap();
    send(
        server.addr,
        &server.pki.ca_pem(),
        cert,
        request,
        body.into(),
    )
    .await
}

/// POSTs the JSON `body` to `path` as `identity`.
async fn post_json(server: &TestServer, identity: &str, path: &str, body: &Value) -> Reply {
    let cert = server.pki.client(identity);
    post_as(server, &cert, path, "application/json", body.to_string()).await
}

/// A deploy of the standard spec to `acme/payments/<env>`, written as a curl user would.
fn deploy_json(env: &str, request_id: &str) -> Value {
    json!({
        "requestId": request_id,
        "environment": {"orgId": "acme", "projectId": "payments", "environmentId": env},
        "pipelineVersion": "pipeline-2026.11.1",
        "specKv": STANDARD.encode(SPEC_KV),
        "configBundle": {
            "bundleId": "bundle-1",
            "digest": format!("sha256:{}", "ab".repeat(32)),
            "environmentId": env,
        },
        "initiatedBy": "alice@acme.example",
    })
}

async fn start(db: &TestDb) -> TestServer {
    TestServer::start_on(db, &format!("{DEFAULT_ROLES}{DEV_ENVIRONMENT}")).await
}

on_both_backends!(admit_then_reject_match_the_audit_trail);

/// Admitted in dev, rejected APPROVAL_REQUIRED in prod, both in the audit trail with the
/// decision ids the JSON answers carry, as gRPC and Connect's Audit.List both show.
async fn admit_then_reject_match_the_audit_trail(db: &TestDb) {
    let server = start(db).await;
    let admitted = post_json(&server, ORCHESTRATOR, ADMIT, &deploy_json("dev", "json-1")).await;
    assert_eq!(admitted.status, StatusCode::OK, "{:?}", admitted.body);
    assert_eq!(admitted.headers["content-type"], "application/json");
    let admission = admitted.json();
    assert_eq!(admission["action"], "ACTION_DEPLOY");
    let sha = admission_contract::SpecHash::of_bytes(SPEC_KV);
    assert_eq!(admission["specHash"], sha.as_str());
    let admitted_id = admission["decisionId"].as_str().unwrap().to_owned();

    let rejected = post_json(&server, ORCHESTRATOR, ADMIT, &deploy_json("prod", "json-2")).await;
    assert_eq!(rejected.status, StatusCode::FORBIDDEN);
    let error = rejected.json();
    assert_eq!(error["code"], "permission_denied");
    assert!(
        error["message"].as_str().unwrap().contains("approval"),
        "{error}"
    );
    let info = rejected.error_info();
    assert_eq!(info.reason, "APPROVAL_REQUIRED");
    assert_eq!(info.domain, "byteor.admission.v1");
    let rejected_id = info.metadata["decision_id"].clone();
    let debug = &error["details"][0]["debug"];
    assert_eq!(debug["reason"], "APPROVAL_REQUIRED");
    assert_eq!(debug["metadata"]["decision_id"], rejected_id.as_str());

    let grpc = server.client(AUDITOR).await;
    let trail = grpc
        .audit()
        .list(pb::ListAuditRequest::default())
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<&str> = trail.entries.iter().map(|e| e.entry_id.as_str()).collect();
    assert_eq!(ids, [admitted_id.as_str(), rejected_id.as_str()]);
    assert_eq!(trail.entries[0].outcome, "admitted");
    assert_eq!(trail.entries[1].reason, "APPROVAL_REQUIRED");
    assert_eq!(trail.entries[0].actor, ORCHESTRATOR);

    let listed = post_json(&server, AUDITOR, AUDIT_LIST, &json!({})).await;
    assert_eq!(listed.status, StatusCode::OK);
    let entries = listed.json()["entries"].as_array().unwrap().clone();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["entryId"], admitted_id.as_str());
    assert_eq!(entries[1]["entryId"], rejected_id.as_str());
    // int64 as a string, per the proto3 JSON mapping.
    assert_eq!(entries[0]["seq"], "1");
    server.stop().await;
}

#[tokio::test]
async fn a_caller_without_the_role_is_permission_denied() {
    let server = TestServer::start().await;
    let reply = post_json(&server, NOBODY, ADMIT, &deploy_json("prod", "json-3")).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(reply.json()["code"], "permission_denied");
    assert_eq!(reply.error_info().reason, "CALLER_NOT_AUTHORIZED");

    let reply = post_json(&server, ORCHESTRATOR, AUDIT_LIST, &json!({})).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(reply.error_info().reason, "CALLER_NOT_AUTHORIZED");
    server.stop().await;
}

#[tokio::test]
async fn a_client_without_a_certificate_never_gets_an_answer() {
    let server = TestServer::start().await;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for ca in rustls_pki_types::CertificateDer::pem_slice_iter(server.pki.ca_pem().as_bytes()) {
        roots.add(ca.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    // TLS 1.3 finishes the client's side before the server checks it; the refusal then
    // arrives as an alert on the first read, so no request is ever answered.
    let answered = async {
        let tls = connector.connect(name, tcp).await.ok()?;
        let (send, connection) = h2::client::handshake(tls).await.ok()?;
        tokio::spawn(connection);
        let request = http::Request::post(format!("https://localhost{ADMIT}"))
            .header("content-type", "application/json")
            .body(())
            .unwrap();
        let mut send = send.ready().await.ok()?;
        let (response, mut body) = send.send_request(request, false).ok()?;
        body.send_data(Bytes::from_static(b"{}"), true).ok()?;
        response.await.ok()
    }
    .await;
    assert!(answered.is_none(), "answered without a client certificate");
    let handshakes = server.state.transport().handshakes();
    assert_eq!((handshakes.established, handshakes.failed), (0, 1));
    server.stop().await;
}

#[tokio::test]
async fn bad_json_is_invalid_argument_naming_the_field() {
    let server = TestServer::start().await;
    let mut request = deploy_json("prod", "json-4");
    request["environment"]["orgId"] = json!(5);
    let reply = post_json(&server, ORCHESTRATOR, ADMIT, &request).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let error = reply.json();
    assert_eq!(error["code"], "invalid_argument");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("environment.orgId"), "{message}");
    let info = reply.error_info();
    assert_eq!(info.reason, "REQUEST_INVALID");
    assert!(info.metadata.contains_key("decision_id"));
    let bad_request = error["details"]
        .as_array()
        .unwrap()
        .iter()
        .find(|detail| detail["type"] == "google.rpc.BadRequest")
        .expect("a BadRequest detail");
    assert_eq!(
        bad_request["debug"]["fieldViolations"][0]["field"],
        "environment.orgId"
    );

    let mut request = deploy_json("prod", "json-5");
    request["colour"] = json!("blue");
    let reply = post_json(&server, ORCHESTRATOR, ADMIT, &request).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.json()["message"].as_str().unwrap().contains("colour"));

    let cert = server.pki.client(ORCHESTRATOR);
    let reply = post_as(
        &server,
        &cert,
        ADMIT,
        "application/json",
        "{\"requestId\": ",
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.error_info().reason, "REQUEST_INVALID");

    // Each rejection is audited like a gRPC body that is not the message.
    let trail = server
        .client(AUDITOR)
        .await
        .audit()
        .list(pb::ListAuditRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(trail.entries.len(), 3);
    assert!(trail.entries.iter().all(|e| e.reason == "REQUEST_INVALID"));
    server.stop().await;
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_as_on_grpc() {
    let limits =
        "[limits]\nspec_kv_max_bytes = 1024\nmax_credentials = 1\ncredential_max_bytes = 1024\n";
    let server = TestServer::start_with(
        common::Pki::new("test clients CA"),
        &[],
        &format!("{DEFAULT_ROLES}{limits}"),
    )
    .await;
    let mut request = deploy_json("prod", "json-6");
    request["specKv"] = json!(STANDARD.encode(vec![b'a'; 512 * 1024]));
    let reply = post_json(&server, ORCHESTRATOR, ADMIT, &request).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{:?}", reply.body);
    assert_eq!(reply.json()["code"], "invalid_argument");
    let info = reply.error_info();
    assert_eq!(info.reason, "REQUEST_INVALID");
    assert!(
        reply.json()["message"]
            .as_str()
            .unwrap()
            .contains("at most")
    );
    server.stop().await;
}

#[tokio::test]
async fn protocol_errors_get_connect_http_statuses() {
    let server = TestServer::start().await;
    let cert = server.pki.client(ORCHESTRATOR);
    let ca = server.pki.ca_pem();

    let get = http::Request::get(format!("https://localhost{ADMIT}"))
        .body(())
        .unwrap();
    let reply = send(server.addr, &ca, &cert, get, Bytes::new()).await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(reply.headers["allow"], "POST");

    let reply = post_as(&server, &cert, ADMIT, "text/plain", "{}").await;
    assert_eq!(reply.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(
        reply.headers["accept-post"],
        "application/json, application/proto"
    );

    let path = "/byteor.admission.v1.DeployAdmission/Launch";
    let reply = post_as(&server, &cert, path, "application/json", "{}").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.json()["code"], "unimplemented");

    let request = http::Request::post(format!("https://localhost{ADMIT}"))
        .header("content-type", "application/json")
        .header("connect-timeout-ms", "soon")
        .body(())
        .unwrap();
    let reply = send(server.addr, &ca, &cert, request, Bytes::from_static(b"{}")).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(
        reply.json()["message"]
            .as_str()
            .unwrap()
            .contains("connect-timeout-ms")
    );
    server.stop().await;
}

/// A refused request whose body is still on its way is answered once the body is in: the
/// stream is not reset under a client that is sending it (curl reports such a reset as a
/// stream error instead of the answer).
#[tokio::test]
async fn a_refusal_waits_for_the_body_on_its_way() {
    let server = TestServer::start().await;
    let cert = server.pki.client(ORCHESTRATOR);
    let ca = server.pki.ca_pem();
    let tls = tls_connect(server.addr, &ca, &cert.cert_pem, &cert.key_pem).await;
    let (send, connection) = h2::client::handshake(tls).await.unwrap();
    tokio::spawn(connection);
    let mut send = send.ready().await.unwrap();
    let request = http::Request::post(format!("https://localhost{ADMIT}"))
        .header("content-type", "text/plain")
        .body(())
        .unwrap();
    let (response, mut stream) = send.send_request(request, false).unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    stream
        .send_data(Bytes::from_static(b"{}"), true)
        .expect("the stream is still open for the body");
    let response = response.await.expect("an answer, not a reset");
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    server.stop().await;
}

#[tokio::test]
async fn protobuf_bodies_are_served_too() {
    let server = TestServer::start_with(
        common::Pki::new("test clients CA"),
        &[],
        &format!("{DEFAULT_ROLES}{DEV_ENVIRONMENT}"),
    )
    .await;
    let cert = server.pki.client(ORCHESTRATOR);
    let request = common::requests::deploy("dev", "proto-1").encode_to_vec();
    let reply = post_as(&server, &cert, ADMIT, "application/proto", request).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.headers["content-type"], "application/proto");
    let admission = pb::Admission::decode(reply.body.as_ref()).unwrap();
    assert!(!admission.decision_id.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn gzip_bodies_are_read_and_a_foreign_encoding_is_refused() {
    use std::io::Write as _;
    let server = TestServer::start_with(
        common::Pki::new("test clients CA"),
        &[],
        &format!("{DEFAULT_ROLES}{DEV_ENVIRONMENT}"),
    )
    .await;
    let cert = server.pki.client(ORCHESTRATOR);
    let ca = server.pki.ca_pem();
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gzip.write_all(deploy_json("dev", "gzip-1").to_string().as_bytes())
        .unwrap();
    let body = Bytes::from(gzip.finish().unwrap());
    let request = |encoding: &str| {
        http::Request::post(format!("https://localhost{ADMIT}"))
            .header("content-type", "application/json")
            .header("content-encoding", encoding)
            .body(())
            .unwrap()
    };
    let reply = send(server.addr, &ca, &cert, request("gzip"), body.clone()).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert!(
        reply.json()["decisionId"]
            .as_str()
            .unwrap()
            .starts_with("dec_")
    );

    let reply = send(server.addr, &ca, &cert, request("br"), body).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.error_info().reason, "REQUEST_INVALID");
    server.stop().await;
}

#[tokio::test]
async fn the_buffer_budget_meters_json_bytes_and_refuses_as_overloaded() {
    // The budget holds the largest protobuf request and no more: 2 KiB of fields plus the
    // 64 KiB allowance, and the 5-byte gRPC prefix.
    let limits = "[limits]\nspec_kv_max_bytes = 1024\nmax_credentials = 1\n\
                  credential_max_bytes = 1024\nmax_buffered_request_bytes = 67589\n";
    let server = TestServer::start_with(
        common::Pki::new("test clients CA"),
        &[],
        &format!("{DEFAULT_ROLES}{limits}"),
    )
    .await;
    // Within the JSON limit (twice the protobuf one) but more than the whole budget.
    let mut request = deploy_json("prod", "json-7");
    request["specKv"] = json!(STANDARD.encode(vec![b'a'; 75 * 1024]));
    let reply = post_json(&server, ORCHESTRATOR, ADMIT, &request).await;
    assert_eq!(
        reply.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{:?}",
        reply.body
    );
    assert_eq!(reply.json()["code"], "resource_exhausted");
    assert_eq!(reply.error_info().reason, "OVERLOADED");
    let retry = reply.json()["details"]
        .as_array()
        .unwrap()
        .iter()
        .any(|detail| detail["type"] == "google.rpc.RetryInfo");
    assert!(retry, "OVERLOADED carries RetryInfo");
    server.stop().await;
}

/// The transparency RPCs answer JSON like the others: proofs for the auditor, and without a
/// log key GetCheckpoint is failed_precondition / SIGNING_NOT_CONFIGURED.
#[tokio::test]
async fn the_transparency_rpcs_are_served_as_json() {
    let server = TestServer::start_with(
        common::Pki::new("test clients CA"),
        &[],
        &format!("{DEFAULT_ROLES}{DEV_ENVIRONMENT}"),
    )
    .await;
    let admitted = post_json(&server, ORCHESTRATOR, ADMIT, &deploy_json("dev", "json-t")).await;
    assert_eq!(admitted.status, StatusCode::OK);
    let decision_id = admitted.json()["decisionId"].as_str().unwrap().to_owned();
    let text = |value: &Value| value.to_string().trim_matches('"').to_owned();

    let path = "/byteor.admission.v1.Audit/ProveInclusion";
    let reply = post_json(
        &server,
        ORCHESTRATOR,
        path,
        &json!({"decisionId": decision_id}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let proof = reply.json();
    assert_eq!(text(&proof["treeSize"]), "1");
    assert_eq!(
        STANDARD.decode(text(&proof["entryHash"])).unwrap().len(),
        32
    );

    let path = "/byteor.admission.v1.Audit/ProveConsistency";
    let reply = post_json(&server, AUDITOR, path, &json!({"oldSize": "1"})).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let reply = post_json(&server, AUDITOR, path, &json!({"oldSize": "2"})).await;
    assert_eq!(reply.json()["code"], "invalid_argument");
    assert_eq!(reply.error_info().reason, "REQUEST_INVALID");

    let path = "/byteor.admission.v1.Audit/GetCheckpoint";
    let reply = post_json(&server, AUDITOR, path, &json!({})).await;
    assert_eq!(reply.json()["code"], "failed_precondition");
    assert_eq!(reply.error_info().reason, "SIGNING_NOT_CONFIGURED");
    let reply = post_json(&server, ORCHESTRATOR, path, &json!({})).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(reply.error_info().reason, "CALLER_NOT_AUTHORIZED");
    server.stop().await;
}
