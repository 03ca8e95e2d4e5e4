//! Bounded input end to end, over real mTLS: over-long fields get their typed rejection with a
//! bounded message and a small audit row, and request bodies that are not the RPC's message
//! (not protobuf, invalid UTF-8, oversized, compressed) are answered REQUEST_INVALID with a
//! decision_id and audited; gzip-compressed requests are decided like any other.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write as _;

use admission_client::{AdmissionClient, AdmitError, Rejection, pb};
use admission_contract::{Reason, echo::ECHO_MAX_BYTES};
use admission_server::store::{AuditEntry, ListFilter};
use bytes::Bytes;
use common::{
    AUDITOR, DEFAULT_ROLES, DEV_ENVIRONMENT, NOBODY, ORCHESTRATOR, Pki, REVIEWER, TestServer,
    requests,
};
use http_body_util::{BodyExt as _, Full};
use prost::Message as _;
use rustls_pki_types::{CertificateDer, pem::PemObject};
use tonic::Code;
use tower::ServiceExt as _;

/// The largest request message these servers accept: with the default limits, spec_kv plus
/// eight credentials plus 64 KiB.
const MAX_MESSAGE_BYTES: usize = 1_048_576 + 8 * 16_384 + 65_536;

/// Over-long values: 8 KB, 100 KB and 1 MB.
const SIZES: [usize; 3] = [8_000, 100_000, 1_000_000];

/// A stored entry is small whatever the request carried.
const ROW_BOUND: usize = 4 * 1024;

/// A rejection message is one bounded sentence.
const MESSAGE_BOUND: usize = 1024;

fn config() -> String {
    format!("{DEFAULT_ROLES}{DEV_ENVIRONMENT}")
}

async fn server() -> TestServer {
    TestServer::start_with(Pki::new("test clients CA"), &[], &config()).await
}

/// A connected client and the certificate fingerprint its entries must record.
struct Caller {
    identity: &'static str,
    cert_sha256: String,
    client: AdmissionClient,
}

async fn caller(server: &TestServer, identity: &'static str) -> Caller {
    let cert = server.pki.client(identity);
    let der = CertificateDer::from_pem_slice(cert.cert_pem.as_bytes()).unwrap();
    let digest = ring::digest::digest(&ring::digest::SHA256, der.as_ref());
    Caller {
        identity,
        cert_sha256: digest.as_ref().iter().map(|b| format!("{b:02x}")).collect(),
        client: server.builder_as(&cert).connect().await.unwrap(),
    }
}

fn deploy(env: &str) -> pb::DeployRequest {
    pb::DeployRequest {
        pipeline_version: "v1".into(),
        spec_kv: b"service=payments\n".to_vec(),
        initiated_by: "dana@acme.example".into(),
        ..requests::deploy(env, &format!("req-{}", uuid_like()))
    }
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed).to_string()
}

/// The typed rejection of `result`: exact code and reason, a decision_id, a bounded message.
fn rejected<T: std::fmt::Debug>(
    result: Result<T, AdmitError>,
    code: Code,
    reason: Reason,
) -> Rejection {
    let rejection = match result {
        Err(AdmitError::Rejected(rejection)) => rejection,
        other => panic!("expected {reason} ({code:?}), got {other:?}"),
    };
    assert_eq!(
        (rejection.code, rejection.reason.as_str()),
        (code, reason.as_str()),
        "{rejection:?}"
    );
    let decision_id = rejection.decision_id.clone().expect("decision_id metadata");
    assert!(decision_id.starts_with("dec_"), "{decision_id}");
    assert!(
        rejection.message.len() < MESSAGE_BOUND,
        "message of {} bytes",
        rejection.message.len()
    );
    rejection
}

fn violated(rejection: &Rejection) -> Vec<&str> {
    rejection
        .field_violations
        .iter()
        .map(|v| v.field.as_str())
        .collect()
}

async fn all_entries(server: &TestServer) -> Vec<AuditEntry> {
    let (entries, next) = server
        .state
        .store()
        .list(&ListFilter::default(), 1000, "")
        .await
        .unwrap();
    assert!(next.is_empty());
    entries
}

/// Bytes of every stored column of an entry.
fn row_bytes(entry: &AuditEntry) -> usize {
    let e = &entry.entry;
    let texts = [
        &e.entry_id,
        &e.actor,
        &e.actor_cert_sha256,
        &e.initiated_by,
        &e.action,
        &e.scope.org_id,
        &e.scope.project_id,
        &e.scope.environment_id,
        &e.spec_hash,
        &e.outcome,
        &e.reason,
        &e.grpc_code,
        &e.request_id,
        &e.detail,
        &entry.prev_hash,
        &entry.entry_hash,
    ];
    let lists = [&e.capabilities, &e.approval_ids, &e.approvers];
    texts.iter().map(|t| t.len()).sum::<usize>()
        + lists
            .iter()
            .flat_map(|l| l.iter())
            .map(String::len)
            .sum::<usize>()
}

/// The one entry of `decision_id`, recorded for `caller` on `action` with `reason`, and small.
async fn assert_recorded(
    server: &TestServer,
    caller: &Caller,
    decision_id: &str,
    action: &str,
    reason: Reason,
) -> AuditEntry {
    let entries = all_entries(server).await;
    let matching: Vec<_> = entries
        .iter()
        .filter(|e| e.entry.entry_id == decision_id)
        .collect();
    assert_eq!(matching.len(), 1, "one entry for {decision_id}");
    let entry = matching[0].clone();
    assert_eq!(entry.entry.actor, caller.identity);
    assert_eq!(entry.entry.actor_cert_sha256, caller.cert_sha256);
    assert_eq!(entry.entry.action, action);
    assert_eq!(entry.entry.outcome, "rejected");
    assert_eq!(entry.entry.reason, reason.as_str());
    assert_eq!(entry.entry.grpc_code, reason.code_name());
    assert!(
        row_bytes(&entry) < ROW_BOUND,
        "entry of {} bytes: {:?}",
        row_bytes(&entry),
        entry.entry.detail
    );
    entry
}

/// Over-long values in an environment id, a spec_kv key and a capability: from a caller with no
/// role at all (rows 1–2 come before the role check), each is its typed rejection, and what the
/// answer and the audit row repeat of it is truncated.
#[tokio::test]
async fn over_long_fields_are_typed_rejections_with_small_audit_rows() {
    let server = server().await;
    let nobody = caller(&server, NOBODY).await;
    let echo_bound = ECHO_MAX_BYTES + '…'.len_utf8();
    for size in SIZES {
        // An environment id.
        let mut request = deploy("prod");
        request.environment.as_mut().unwrap().environment_id = "e".repeat(size);
        let rejection = rejected(
            nobody.client.admit_deploy(request).await,
            Code::InvalidArgument,
            Reason::RequestInvalid,
        );
        assert_eq!(violated(&rejection), ["environment.environment_id"]);
        let description = &rejection.field_violations[0].description;
        assert_eq!(
            description,
            &format!("must be at most 63 bytes (it is {size})")
        );
        let decision_id = rejection.decision_id.unwrap();
        let entry = assert_recorded(
            &server,
            &nobody,
            &decision_id,
            "deploy.admit",
            Reason::RequestInvalid,
        )
        .await;
        assert_eq!(entry.entry.scope.environment_id.len(), echo_bound);
        assert!(entry.entry.scope.environment_id.ends_with('…'));

        // A spec_kv key: the message names it, truncated.
        let mut request = deploy("prod");
        request.spec_kv = format!("{} x=1\n", "k".repeat(size)).into_bytes();
        let rejection = rejected(
            nobody.client.admit_deploy(request).await,
            Code::InvalidArgument,
            Reason::SpecMalformed,
        );
        assert!(
            rejection.message.starts_with(&format!(
                "spec_kv line 1 has an invalid key \"{}",
                "k".repeat(64)
            )),
            "{}",
            rejection.message
        );
        assert!(rejection.message.contains('…'), "{}", rejection.message);
        let decision_id = rejection.decision_id.unwrap();
        assert_recorded(
            &server,
            &nobody,
            &decision_id,
            "deploy.admit",
            Reason::SpecMalformed,
        )
        .await;

        // A capability name, on a replay preview.
        let request = pb::ReplayRequest {
            request_id: format!("req-{}", uuid_like()),
            environment: deploy("prod").environment,
            mode: pb::ReplayMode::DryRun as i32,
            incident_id: "inc-1".into(),
            spec_kv: b"service=payments\n".to_vec(),
            source_artifact: Some(pb::SourceArtifact {
                artifact_id: "art-1".into(),
                digest: format!("sha256:{}", "cd".repeat(32)),
                environment_id: "prod".into(),
            }),
            required_capabilities: vec!["deploy".into(), "c".repeat(size)],
            initiated_by: "dana@acme.example".into(),
            ..Default::default()
        };
        let rejection = rejected(
            nobody.client.preview_replay(request).await,
            Code::InvalidArgument,
            Reason::RequestInvalid,
        );
        assert_eq!(violated(&rejection), ["required_capabilities"]);
        let decision_id = rejection.decision_id.unwrap();
        assert_recorded(
            &server,
            &nobody,
            &decision_id,
            "replay.preview",
            Reason::RequestInvalid,
        )
        .await;
    }
    // Every decision left its entry and the chain is intact.
    assert_eq!(all_entries(&server).await.len(), 3 * SIZES.len());
    assert!(server.state.store().verify().await.unwrap().ok);
}

/// Bytes the SQLite audit database occupies on disk, with its write-ahead log.
fn database_bytes(server: &TestServer) -> u64 {
    ["admission.db", "admission.db-wal"]
        .iter()
        .map(|name| std::fs::metadata(server.dir.path().join(name)).map_or(0, |m| m.len()))
        .sum()
}

/// Twenty 1 MB requests from a caller without a role leave a few kilobytes each in the audit
/// database, not their megabyte.
#[tokio::test]
async fn twenty_over_long_calls_store_little() {
    let server = server().await;
    let nobody = caller(&server, NOBODY).await;
    let before = database_bytes(&server);
    for call in 0..20 {
        let mut request = deploy("prod");
        if call % 2 == 0 {
            request.environment.as_mut().unwrap().environment_id = "e".repeat(1_000_000);
        } else {
            request.spec_kv = format!("{}!=1\n", "k".repeat(1_000_000)).into_bytes();
        }
        let error = nobody.client.admit_deploy(request).await.unwrap_err();
        assert!(error.rejection().is_some(), "{error:?}");
    }
    assert_eq!(all_entries(&server).await.len(), 20);
    let grown = database_bytes(&server).saturating_sub(before);
    println!("20 calls of 1 MB each grew the audit database by {grown} bytes");
    // 20 MB sent; at most 64 KiB per call may stay, pages and log frames included.
    assert!(grown < 20 * 64 * 1024, "grew by {grown} bytes");
}

/// Approvals and Audit bound their fields too: an over-long approval id, reason,
/// justification or environment filter is REQUEST_INVALID naming the field.
#[tokio::test]
async fn approvals_and_audit_bound_their_fields() {
    let server = server().await;
    let orchestrator = caller(&server, ORCHESTRATOR).await;
    let reviewer = caller(&server, REVIEWER).await;
    let auditor = caller(&server, AUDITOR).await;
    let long = "x".repeat(100_000);

    let rejection = rejected(
        orchestrator
            .client
            .create_approval(pb::CreateApprovalRequest {
                environment: deploy("prod").environment,
                action: pb::Action::Deploy as i32,
                spec: Some(pb::create_approval_request::Spec::SpecKv(
                    b"service=payments\n".to_vec(),
                )),
                justification: long.clone(),
                initiated_by: "dana@acme.example".into(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        Reason::RequestInvalid,
    );
    assert_eq!(violated(&rejection), ["justification"]);
    assert_recorded(
        &server,
        &orchestrator,
        rejection.decision_id.as_deref().unwrap(),
        "approval.create",
        Reason::RequestInvalid,
    )
    .await;

    let rejection = rejected(
        reviewer
            .client
            .decide_approval(pb::DecideApprovalRequest {
                approval_id: long.clone(),
                verdict: pb::Verdict::Deny as i32,
                reason: long.clone(),
            })
            .await,
        Code::InvalidArgument,
        Reason::RequestInvalid,
    );
    assert_eq!(violated(&rejection), ["approval_id", "reason"]);
    let entry = assert_recorded(
        &server,
        &reviewer,
        rejection.decision_id.as_deref().unwrap(),
        "approval.decide",
        Reason::RequestInvalid,
    )
    .await;
    assert!(entry.entry.approval_ids[0].ends_with('…'));

    let error = orchestrator.client.get_approval(&long).await.unwrap_err();
    let rejection = error.rejection().expect("typed rejection");
    assert_eq!(
        (rejection.code, rejection.reason.as_str()),
        (Code::InvalidArgument, "REQUEST_INVALID")
    );
    assert_eq!(violated(rejection), ["approval_id"]);

    let status = auditor
        .client
        .audit()
        .list(pb::ListAuditRequest {
            environment: Some(pb::EnvironmentRef {
                org_id: long.clone(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    let rejection = Rejection::from_status(&status).expect("typed rejection");
    assert_eq!(
        (rejection.code, rejection.reason.as_str()),
        (Code::InvalidArgument, "REQUEST_INVALID")
    );
    assert_eq!(violated(&rejection), ["environment.org_id"]);
}

// === raw bodies ===

/// One unary call with `body` exactly as given (gRPC framing included) and `encoding` as
/// `grpc-encoding`; the status from the headers or trailers.
async fn raw_call(
    client: &AdmissionClient,
    path: &str,
    body: Vec<u8>,
    encoding: Option<&str>,
) -> tonic::Status {
    let mut request = http::Request::builder()
        .method("POST")
        .uri(path)
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    if let Some(encoding) = encoding {
        request = request.header("grpc-encoding", encoding);
    }
    let request = request
        .body(tonic::body::Body::new(Full::new(Bytes::from(body))))
        .unwrap();
    let response = client.channel().oneshot(request).await.unwrap();
    assert_eq!(response.status(), http::StatusCode::OK);
    let (parts, body) = response.into_parts();
    if let Some(status) = tonic::Status::from_header_map(&parts.headers) {
        return status;
    }
    let collected = body.collect().await.unwrap();
    let trailers = collected.trailers().cloned().unwrap_or_default();
    tonic::Status::from_header_map(&trailers).expect("grpc-status in the trailers")
}

fn framed(compressed: bool, message: &[u8]) -> Vec<u8> {
    let mut body = vec![u8::from(compressed)];
    body.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
    body.extend_from_slice(message);
    body
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// A DeployRequest whose request_id (field 1) is the bytes `0xff 0xfe`: valid protobuf
/// framing, but not UTF-8 in a string field.
fn non_utf8_deploy() -> Vec<u8> {
    let mut message = deploy("prod");
    message.request_id.clear();
    let mut bytes = vec![0x0a, 0x02, 0xff, 0xfe];
    bytes.extend(message.encode_to_vec());
    bytes
}

const DEPLOY_ADMIT: &str = "/byteor.admission.v1.DeployAdmission/Admit";

/// One raw body and what its rejection must say.
struct BodyCase<'a> {
    name: &'static str,
    caller: &'a Caller,
    path: &'static str,
    body: Vec<u8>,
    encoding: Option<&'static str>,
    /// How the BadRequest description of `body` starts.
    description: &'static str,
    /// The action its audit entry records.
    action: &'static str,
}

/// Bodies that are not the RPC's message are REQUEST_INVALID with ErrorInfo, a BadRequest on
/// `body`, a decision_id, and one audit entry naming the caller, its certificate and the RPC —
/// even from a caller with no role, before any role check.
#[tokio::test]
async fn unreadable_bodies_are_request_invalid_and_audited() {
    let server = server().await;
    let nobody = caller(&server, NOBODY).await;
    let orchestrator = caller(&server, ORCHESTRATOR).await;
    let oversized = pb::DeployRequest {
        spec_kv: vec![b'a'; MAX_MESSAGE_BYTES + 1],
        ..deploy("prod")
    }
    .encode_to_vec();
    let case = |name, caller, path, body, encoding, description, action| BodyCase {
        name,
        caller,
        path,
        body,
        encoding,
        description,
        action,
    };
    let cases = [
        case(
            "0xff",
            &nobody,
            DEPLOY_ADMIT,
            framed(false, b"\xff"),
            None,
            "is not a valid DeployRequest protobuf message",
            "deploy.admit",
        ),
        case(
            "non-utf-8 string",
            &orchestrator,
            DEPLOY_ADMIT,
            framed(false, &non_utf8_deploy()),
            None,
            "is not a valid DeployRequest protobuf message",
            "deploy.admit",
        ),
        case(
            "oversized",
            &orchestrator,
            DEPLOY_ADMIT,
            framed(false, &oversized),
            None,
            "must be at most 1245184 bytes",
            "deploy.admit",
        ),
        case(
            "oversized once decompressed",
            &orchestrator,
            DEPLOY_ADMIT,
            framed(true, &gzip(&oversized)),
            Some("gzip"),
            "must be at most 1245184 bytes",
            "deploy.admit",
        ),
        case(
            "corrupt gzip",
            &orchestrator,
            DEPLOY_ADMIT,
            framed(true, b"not gzip at all"),
            Some("gzip"),
            "is not valid gzip data",
            "deploy.admit",
        ),
        case(
            "unsupported encoding",
            &orchestrator,
            DEPLOY_ADMIT,
            framed(true, b"whatever"),
            Some("zstd"),
            "is compressed as \"zstd\"",
            "deploy.admit",
        ),
        case(
            "empty body",
            &orchestrator,
            "/byteor.admission.v1.ReplayAdmission/Preview",
            Vec::new(),
            None,
            "holds no complete grpc message",
            "replay.preview",
        ),
        case(
            "two messages",
            &orchestrator,
            "/byteor.admission.v1.Approvals/Create",
            [framed(false, b""), framed(false, b"")].concat(),
            None,
            "holds more than the one message",
            "approval.create",
        ),
        case(
            "0xff to the auditor's service",
            &nobody,
            "/byteor.admission.v1.Audit/Verify",
            framed(false, b"\xff"),
            None,
            "is not a valid VerifyAuditRequest protobuf message",
            "audit.verify",
        ),
    ];
    let mut expected_entries = 0;
    for case in cases {
        let name = case.name;
        let status = raw_call(&case.caller.client, case.path, case.body, case.encoding).await;
        let rejection = Rejection::from_status(&status)
            .unwrap_or_else(|| panic!("{name}: untyped status {status:?}"));
        assert_eq!(
            (rejection.code, rejection.reason.as_str()),
            (Code::InvalidArgument, "REQUEST_INVALID"),
            "{name}: {rejection:?}"
        );
        assert_eq!(violated(&rejection), ["body"], "{name}");
        let description = &rejection.field_violations[0].description;
        assert!(
            description.starts_with(case.description),
            "{name}: {description}"
        );
        assert!(rejection.message.starts_with("the request body "), "{name}");
        let decision_id = rejection.decision_id.expect("decision_id");
        assert_recorded(
            &server,
            case.caller,
            &decision_id,
            case.action,
            Reason::RequestInvalid,
        )
        .await;
        expected_entries += 1;
        assert_eq!(all_entries(&server).await.len(), expected_entries, "{name}");
    }
}

/// A gzip-compressed request is decompressed and decided like an uncompressed one.
#[tokio::test]
async fn gzip_requests_are_decided() {
    let server = server().await;
    let orchestrator = caller(&server, ORCHESTRATOR).await;

    // Admitted in dev, where side effects are allowed.
    let body = framed(true, &gzip(&deploy("dev").encode_to_vec()));
    let status = raw_call(&orchestrator.client, DEPLOY_ADMIT, body, Some("gzip")).await;
    assert_eq!(status.code(), Code::Ok, "{status:?}");

    // Rejected in prod, with its own typed reason (the body was read).
    let body = framed(true, &gzip(&deploy("prod").encode_to_vec()));
    let status = raw_call(&orchestrator.client, DEPLOY_ADMIT, body, Some("gzip")).await;
    let rejection = Rejection::from_status(&status).expect("typed rejection");
    assert_eq!(
        (rejection.code, rejection.reason.as_str()),
        (Code::PermissionDenied, "APPROVAL_REQUIRED")
    );

    let entries = all_entries(&server).await;
    let outcomes: Vec<_> = entries
        .iter()
        .map(|e| (e.entry.outcome.as_str(), e.entry.reason.as_str()))
        .collect();
    assert_eq!(
        outcomes,
        [("admitted", ""), ("rejected", "APPROVAL_REQUIRED")]
    );
}
