//! SPEC §7 end to end: every row of the decision table, precedence, key rotation, quorum,
//! shadow mode, break-glass, idempotent retries, the audit entry of every decision and Preview,
//! over real mTLS with the real client crate and credentials signed at test time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use admission_client::{AdmissionClient, AdmitError, Rejection, pb};
use admission_contract::{
    Reason, SpecHash,
    credential::{Claims, KeyStatus, SigningKey, format_time},
};
use admission_server::audit::{AuditEntry, ListFilter};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use common::{AUDITOR, ConfigOptions, NOBODY, ORCHESTRATOR, REVIEWER, SERVICE_KID, TestServer};
use ring::signature::Ed25519KeyPair;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tonic::Code;

/// An orchestrator that may also use break-glass.
const ONCALL: &str = "spiffe://test.local/orchestrator/oncall";
/// An orchestrator bound to the dev environment only.
const LIMITED: &str = "spiffe://test.local/orchestrator/limited";
/// Who the orchestrator acts for.
const INITIATOR: &str = "dana@acme.example";
/// Offline approvers.
const BOB: &str = "bob@acme.example";
const CAROL: &str = "carol@acme.example";

const SPEC_KV: &[u8] = b"service=payments\nversion=42\n";
const OTHER_SPEC_KV: &[u8] = b"service=payments\nversion=43\n";

/// Roles and one environment per policy shape under test.
const CONFIG: &str = r#"
[[roles]]
identity = "spiffe://test.local/orchestrator/ci"
roles = ["orchestrator"]

[[roles]]
identity = "spiffe://test.local/orchestrator/oncall"
roles = ["orchestrator", "break_glass"]

[[roles]]
identity = "spiffe://test.local/orchestrator/limited"
roles = ["orchestrator"]
environments = ["acme/payments/dev"]

[[roles]]
identity = "spiffe://test.local/reviewer/*"
roles = ["reviewer"]

[[roles]]
identity = "spiffe://test.local/auditor/audit"
roles = ["auditor"]

[[environments]]
org_id = "acme"
project_id = "payments"
environment_id = "prod"
posture = "prod"
gated_capabilities = ["db.migrate"]

[[environments]]
org_id = "acme"
project_id = "payments"
environment_id = "staging"
posture = "staging"
replay = "dry_run_only"

[[environments]]
org_id = "acme"
project_id = "payments"
environment_id = "dev"
posture = "dev"
gated_capabilities = ["db.migrate"]

[[environments]]
org_id = "acme"
project_id = "payments"
environment_id = "frozen"
posture = "prod"
side_effects = "deny_all"
replay = "disabled"

[[environments]]
org_id = "acme"
project_id = "payments"
environment_id = "quorum"
posture = "prod"
required_approvals = 2

[[environments]]
org_id = "acme"
project_id = "payments"
environment_id = "shadow"
posture = "prod"
enforcement = "audit_only"

[[environments]]
org_id = "acme"
project_id = "payments"
environment_id = "emergency"
posture = "prod"
break_glass = true
"#;

// === keys ===

/// A signing key whose raw pair can also sign arbitrary payloads (broken credentials).
struct TestKey {
    key: SigningKey,
    pair: Ed25519KeyPair,
}

impl TestKey {
    fn generate(kid: &str) -> Self {
        let (key, pem) = SigningKey::generate(kid).unwrap();
        Self::from_pem(key, &pem)
    }

    fn from_pem(key: SigningKey, pem: &str) -> Self {
        let PrivateKeyDer::Pkcs8(der) = PrivateKeyDer::from_pem_slice(pem.as_bytes()).unwrap()
        else {
            panic!("signing key is not PKCS#8");
        };
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der.secret_pkcs8_der()).unwrap();
        Self { key, pair }
    }

    fn kid(&self) -> &str {
        self.key.kid()
    }

    fn sign(&self, claims: &Claims) -> String {
        self.key.sign(claims).unwrap()
    }

    /// Signs `payload` bytes as they are, without looking at them.
    fn sign_payload(&self, payload: &[u8]) -> String {
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(payload),
            URL_SAFE_NO_PAD.encode(self.pair.sign(payload).as_ref())
        )
    }
}

/// Every key the tests sign with, and its place in the server's key set.
struct Keys {
    /// The service key (active).
    service: TestKey,
    /// A second active key.
    second: TestKey,
    /// Retired: verifies during the rotation overlap.
    retired: TestKey,
    /// Revoked.
    revoked: TestKey,
    /// Not in the key set at all.
    stranger: TestKey,
}

// === callers ===

/// A connected client and the identity and certificate fingerprint the audit must record.
struct Caller {
    identity: &'static str,
    cert_sha256: String,
    client: AdmissionClient,
}

struct Harness {
    server: TestServer,
    keys: Keys,
    orchestrator: Caller,
    oncall: Caller,
    limited: Caller,
    nobody: Caller,
    reviewer: Caller,
    auditor: Caller,
}

async fn harness() -> Harness {
    let second = TestKey::generate("second-active");
    let retired = TestKey::generate("retired-2025");
    let revoked = TestKey::generate("revoked-2024");
    let options = ConfigOptions {
        without_signing: false,
        extra_keys: vec![
            second.key.public_jwk(KeyStatus::Active),
            retired.key.public_jwk(KeyStatus::Retired),
            revoked.key.public_jwk(KeyStatus::Revoked),
        ],
    };
    let server = TestServer::start_opts(CONFIG, &options).await;
    let pem = std::fs::read_to_string(server.dir.path().join("signing.key")).unwrap();
    let service = TestKey::from_pem(server.service_key(), &pem);
    assert_eq!(service.kid(), SERVICE_KID);
    let keys = Keys {
        service,
        second,
        retired,
        revoked,
        stranger: TestKey::generate("stranger"),
    };
    Harness {
        orchestrator: caller(&server, ORCHESTRATOR).await,
        oncall: caller(&server, ONCALL).await,
        limited: caller(&server, LIMITED).await,
        nobody: caller(&server, NOBODY).await,
        reviewer: caller(&server, REVIEWER).await,
        auditor: caller(&server, AUDITOR).await,
        server,
        keys,
    }
}

async fn caller(server: &TestServer, identity: &'static str) -> Caller {
    let cert = server.pki.client(identity);
    let der = CertificateDer::from_pem_slice(cert.cert_pem.as_bytes()).unwrap();
    let digest = ring::digest::digest(&ring::digest::SHA256, der.as_ref());
    let client = server.builder_as(&cert).connect().await.unwrap();
    Caller {
        identity,
        cert_sha256: hex(digest.as_ref()),
        client,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// === requests and credentials ===

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A request_id or approval_id no other call of this test binary uses.
fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", NEXT_ID.fetch_add(1, Ordering::Relaxed))
}

fn env_ref(env: &str) -> Option<pb::EnvironmentRef> {
    Some(pb::EnvironmentRef {
        org_id: "acme".into(),
        project_id: "payments".into(),
        environment_id: env.into(),
    })
}

fn spec_hash() -> SpecHash {
    SpecHash::of_bytes(SPEC_KV)
}

fn bundle_digest() -> String {
    SpecHash::of_bytes(b"config bundle 42").to_string()
}

fn deploy(env: &str) -> pb::DeployRequest {
    pb::DeployRequest {
        request_id: unique("deploy"),
        environment: env_ref(env),
        pipeline_version: "pipeline-7".into(),
        spec_kv: SPEC_KV.to_vec(),
        config_bundle: Some(pb::ConfigBundle {
            bundle_id: "bundle-42".into(),
            digest: bundle_digest(),
            environment_id: env.into(),
        }),
        required_capabilities: Vec::new(),
        credentials: Vec::new(),
        initiated_by: INITIATOR.into(),
        break_glass: None,
    }
}

fn deploy_with(env: &str, credentials: Vec<String>) -> pb::DeployRequest {
    pb::DeployRequest {
        credentials,
        ..deploy(env)
    }
}

fn replay(env: &str, mode: pb::ReplayMode) -> pb::ReplayRequest {
    pb::ReplayRequest {
        request_id: unique("replay"),
        environment: env_ref(env),
        mode: mode as i32,
        incident_id: "inc-1001".into(),
        spec_kv: SPEC_KV.to_vec(),
        source_artifact: Some(pb::SourceArtifact {
            artifact_id: "capture-9".into(),
            digest: SpecHash::of_bytes(b"capture 9").to_string(),
            environment_id: env.into(),
        }),
        required_capabilities: Vec::new(),
        credentials: Vec::new(),
        initiated_by: INITIATOR.into(),
    }
}

fn now_whole_seconds() -> SystemTime {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn posture_of(env: &str) -> &'static str {
    match env {
        "staging" => "staging",
        "dev" => "dev",
        _ => "prod",
    }
}

/// Valid claims for a deploy of [`SPEC_KV`] to `env`: issued a minute ago, 15 minutes left.
fn claims(key: &TestKey, env: &str) -> Claims {
    let now = now_whole_seconds();
    Claims {
        v: 1,
        kid: key.kid().to_owned(),
        org_id: "acme".into(),
        project_id: "payments".into(),
        environment_id: env.into(),
        environment_posture: posture_of(env).into(),
        spec_hash: spec_hash().to_string(),
        capabilities: vec!["deploy".into()],
        issued_at: now - Duration::from_secs(60),
        expires_at: now + Duration::from_secs(15 * 60),
        issued_by: BOB.into(),
        approval_id: unique("apr"),
        config_bundle_digest: None,
    }
}

/// `claims` changed by `edit`, signed by `key`; returns the token and its approval_id.
fn credential(key: &TestKey, env: &str, edit: impl FnOnce(&mut Claims)) -> (String, String) {
    let mut claims = claims(key, env);
    edit(&mut claims);
    (key.sign(&claims), claims.approval_id)
}

/// The payload JSON of a token.
fn payload_of(token: &str) -> serde_json::Value {
    let payload = URL_SAFE_NO_PAD
        .decode(token.split('.').next().unwrap())
        .unwrap();
    serde_json::from_slice(&payload).unwrap()
}

/// `token` with one bit of its signature flipped.
fn break_signature(token: &str) -> String {
    let (payload, signature) = token.split_once('.').unwrap();
    let mut signature = URL_SAFE_NO_PAD.decode(signature).unwrap();
    signature[10] ^= 0x01;
    format!("{payload}.{}", URL_SAFE_NO_PAD.encode(signature))
}

// === answers and audit ===

/// The typed rejection of `result`, with its code, reason, domain and decision id checked.
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
    assert!(rejection.is(reason));
    let decision_id = rejection.decision_id.clone().expect("decision_id metadata");
    assert!(decision_id.starts_with("dec_"), "{decision_id}");
    assert_eq!(rejection.metadata["decision_id"], decision_id);
    assert!(!rejection.message.is_empty());
    rejection
}

/// Every audit entry, in seq order, through every page.
async fn all_entries(server: &TestServer) -> Vec<AuditEntry> {
    let mut entries = Vec::new();
    let mut token = String::new();
    loop {
        let (page, next) = server
            .state
            .store()
            .list(&ListFilter::default(), 50, &token)
            .await
            .unwrap();
        entries.extend(page);
        if next.is_empty() {
            return entries;
        }
        token = next;
    }
}

async fn entry_count(server: &TestServer) -> usize {
    all_entries(server).await.len()
}

/// What the one entry of a decision must say.
struct Audited<'a> {
    caller: &'a Caller,
    env: &'a str,
    action: &'a str,
    outcome: &'a str,
    reason: &'a str,
    grpc_code: &'a str,
}

/// Asserts that exactly one entry was appended since `before` entries, that it is the entry of
/// `decision_id`, and that it records what `expected` says; returns it.
async fn assert_audited(
    server: &TestServer,
    before: usize,
    decision_id: &str,
    expected: &Audited<'_>,
) -> AuditEntry {
    let entries = all_entries(server).await;
    assert_eq!(
        entries.len(),
        before + 1,
        "decision {decision_id} must leave exactly one audit entry"
    );
    let recorded = entries.last().unwrap().clone();
    let entry = &recorded.entry;
    assert_eq!(entry.entry_id, decision_id);
    assert_eq!(entry.actor, expected.caller.identity);
    assert_eq!(entry.actor_cert_sha256, expected.caller.cert_sha256);
    assert_eq!(entry.actor_cert_sha256.len(), 64);
    assert!(
        entry
            .actor_cert_sha256
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    );
    assert_eq!(
        (
            entry.scope.org_id.as_str(),
            entry.scope.project_id.as_str(),
            entry.scope.environment_id.as_str()
        ),
        ("acme", "payments", expected.env)
    );
    assert_eq!(entry.action, expected.action);
    assert_eq!(entry.outcome, expected.outcome);
    assert_eq!(entry.reason, expected.reason);
    assert_eq!(entry.grpc_code, expected.grpc_code);
    recorded
}

/// Audit.Verify as the auditor: the whole chain checks out.
async fn assert_chain_ok(h: &Harness) {
    let count = entry_count(&h.server).await;
    let report = h
        .auditor
        .client
        .audit()
        .verify(pb::VerifyAuditRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(report.ok, "{report:?}");
    assert_eq!(report.entries_checked, count as u64);
    assert_eq!(report.first_bad_seq, 0);
}

/// The stored uses of an approval; 0 when no row exists (an offline credential never used).
async fn uses(server: &TestServer, approval_id: &str) -> u32 {
    server
        .state
        .store()
        .approval(approval_id)
        .await
        .unwrap()
        .map_or(0, |row| row.uses)
}

// === the decision table ===

enum Call {
    Deploy(pb::DeployRequest),
    Replay(pb::ReplayRequest),
}

/// One row of SPEC §7.
struct Case {
    row: &'static str,
    caller: fn(&Harness) -> &Caller,
    call: Call,
    code: Code,
    reason: Reason,
    /// Metadata beyond `decision_id` that the row names.
    metadata: Vec<(&'static str, String)>,
    /// The field a BadRequest violation must name (row 1).
    field: Option<&'static str>,
}

fn orchestrator(h: &Harness) -> &Caller {
    &h.orchestrator
}

fn deploy_case(
    row: &'static str,
    request: pb::DeployRequest,
    code: Code,
    reason: Reason,
    metadata: Vec<(&'static str, String)>,
) -> Case {
    Case {
        row,
        caller: orchestrator,
        call: Call::Deploy(request),
        code,
        reason,
        metadata,
        field: None,
    }
}

/// A credential check row: `edit` breaks one claim of an otherwise valid prod credential.
fn claim_case(
    h: &Harness,
    row: &'static str,
    code: Code,
    reason: Reason,
    edit: impl FnOnce(&mut Claims),
    metadata: impl FnOnce(&Claims) -> Vec<(&'static str, String)>,
) -> Case {
    claim_case_for(h, row, deploy("prod"), code, reason, edit, metadata)
}

/// [`claim_case`] for a given prod deploy request.
fn claim_case_for(
    h: &Harness,
    row: &'static str,
    request: pb::DeployRequest,
    code: Code,
    reason: Reason,
    edit: impl FnOnce(&mut Claims),
    metadata: impl FnOnce(&Claims) -> Vec<(&'static str, String)>,
) -> Case {
    let mut claims = claims(&h.keys.service, "prod");
    edit(&mut claims);
    let mut expected = metadata(&claims);
    expected.push(("kid", claims.kid.clone()));
    expected.push(("approval_id", claims.approval_id.clone()));
    let request = pb::DeployRequest {
        credentials: vec![h.keys.service.sign(&claims)],
        ..request
    };
    deploy_case(row, request, code, reason, expected)
}

/// Makes an approval through the Approvals service, approves it and revokes it; returns the
/// credential the service signed and the approval id.
async fn revoked_approval(h: &Harness) -> (String, String) {
    let created = h
        .orchestrator
        .client
        .create_approval(pb::CreateApprovalRequest {
            environment: env_ref("prod"),
            action: pb::Action::Deploy as i32,
            spec: Some(pb::create_approval_request::Spec::SpecKv(SPEC_KV.to_vec())),
            capabilities: Vec::new(),
            ttl: Some(prost_types::Duration {
                seconds: 600,
                nanos: 0,
            }),
            justification: "release 42".into(),
            initiated_by: INITIATOR.into(),
        })
        .await
        .unwrap();
    let approved = h
        .reviewer
        .client
        .decide_approval(pb::DecideApprovalRequest {
            approval_id: created.approval_id.clone(),
            verdict: pb::Verdict::Approve as i32,
            reason: "looks good".into(),
        })
        .await
        .unwrap();
    assert_eq!(approved.state, pb::ApprovalState::Approved as i32);
    let token = approved.credentials[0].clone();
    let revoked = h
        .reviewer
        .client
        .revoke_approval(&created.approval_id, "release pulled")
        .await
        .unwrap();
    assert_eq!(revoked.state, pb::ApprovalState::Revoked as i32);
    (token, created.approval_id)
}

/// Calls Admit; returns the answer, the audit action and the target environment id.
async fn admit(
    call: Call,
    who: &Caller,
) -> (Result<pb::Admission, AdmitError>, &'static str, String) {
    match call {
        Call::Deploy(request) => {
            let env = request
                .environment
                .clone()
                .unwrap_or_default()
                .environment_id;
            (who.client.admit_deploy(request).await, "deploy.admit", env)
        }
        Call::Replay(request) => {
            let env = request
                .environment
                .clone()
                .unwrap_or_default()
                .environment_id;
            (who.client.admit_replay(request).await, "replay.admit", env)
        }
    }
}

#[tokio::test]
async fn every_row_of_the_decision_table() {
    let h = harness().await;
    let keys = &h.keys;
    let spec = spec_hash().to_string();
    let other_spec = SpecHash::of_bytes(OTHER_SPEC_KV).to_string();

    // Row 5 needs a request_id already admitted; row 24 an approval already used up; row 23 a
    // revoked approval.
    let admitted_once = deploy("dev");
    h.orchestrator
        .client
        .admit_deploy(admitted_once.clone())
        .await
        .unwrap();
    let (single_use, single_use_id) = credential(&keys.service, "prod", |_| {});
    h.orchestrator
        .client
        .admit_deploy(deploy_with("prod", vec![single_use.clone()]))
        .await
        .unwrap();
    let (revoked_token, revoked_id) = revoked_approval(&h).await;

    let cases = vec![
        Case {
            field: Some("request_id"),
            ..deploy_case(
                "1",
                pb::DeployRequest {
                    request_id: String::new(),
                    ..deploy("prod")
                },
                Code::InvalidArgument,
                Reason::RequestInvalid,
                vec![],
            )
        },
        Case {
            field: Some("mode"),
            call: Call::Replay(replay("prod", pb::ReplayMode::Unspecified)),
            ..deploy_case(
                "1 (replay)",
                deploy("prod"),
                Code::InvalidArgument,
                Reason::RequestInvalid,
                vec![],
            )
        },
        deploy_case(
            "2",
            pb::DeployRequest {
                spec_kv: b"service=payments\nservice=billing\n".to_vec(),
                ..deploy("prod")
            },
            Code::InvalidArgument,
            Reason::SpecMalformed,
            vec![],
        ),
        Case {
            caller: |h| &h.nobody,
            ..deploy_case(
                "3 (no role)",
                deploy("prod"),
                Code::PermissionDenied,
                Reason::CallerNotAuthorized,
                vec![],
            )
        },
        Case {
            caller: |h| &h.limited,
            ..deploy_case(
                "3 (role limited to another environment)",
                deploy("prod"),
                Code::PermissionDenied,
                Reason::CallerNotAuthorized,
                vec![],
            )
        },
        deploy_case(
            "4",
            deploy("qa"),
            Code::NotFound,
            Reason::EnvironmentUnknown,
            vec![],
        ),
        deploy_case(
            "5",
            pb::DeployRequest {
                pipeline_version: "pipeline-8".into(),
                ..admitted_once.clone()
            },
            Code::AlreadyExists,
            Reason::RequestIdConflict,
            vec![],
        ),
        deploy_case(
            "6",
            deploy("frozen"),
            Code::PermissionDenied,
            Reason::PolicyDenied,
            vec![],
        ),
        Case {
            call: Call::Replay(replay("frozen", pb::ReplayMode::DryRun)),
            ..deploy_case(
                "6 (replay disabled)",
                deploy("prod"),
                Code::PermissionDenied,
                Reason::PolicyDenied,
                vec![],
            )
        },
        Case {
            call: Call::Replay(replay("staging", pb::ReplayMode::Execute)),
            ..deploy_case(
                "7",
                deploy("prod"),
                Code::PermissionDenied,
                Reason::ReplayExecuteNotPermitted,
                vec![],
            )
        },
        deploy_case(
            "8",
            pb::DeployRequest {
                config_bundle: Some(pb::ConfigBundle {
                    bundle_id: "bundle-42".into(),
                    digest: bundle_digest(),
                    environment_id: "staging".into(),
                }),
                ..deploy("prod")
            },
            Code::FailedPrecondition,
            Reason::ConfigBundleEnvironmentMismatch,
            vec![("expected", "prod".into()), ("actual", "staging".into())],
        ),
        Case {
            call: Call::Replay(pb::ReplayRequest {
                source_artifact: Some(pb::SourceArtifact {
                    artifact_id: "capture-9".into(),
                    digest: SpecHash::of_bytes(b"capture 9").to_string(),
                    environment_id: "staging".into(),
                }),
                ..replay("prod", pb::ReplayMode::Execute)
            }),
            ..deploy_case(
                "9",
                deploy("prod"),
                Code::FailedPrecondition,
                Reason::SourceEnvironmentMismatch,
                vec![("expected", "prod".into()), ("actual", "staging".into())],
            )
        },
        deploy_case(
            "10",
            deploy("prod"),
            Code::PermissionDenied,
            Reason::ApprovalRequired,
            vec![],
        ),
        deploy_case(
            "10 (gated capability in dev)",
            pb::DeployRequest {
                required_capabilities: vec!["db.migrate".into()],
                ..deploy("dev")
            },
            Code::PermissionDenied,
            Reason::ApprovalRequired,
            vec![],
        ),
        Case {
            call: Call::Replay(replay("prod", pb::ReplayMode::Execute)),
            ..deploy_case(
                "10 (execute replay)",
                deploy("prod"),
                Code::PermissionDenied,
                Reason::ApprovalRequired,
                vec![],
            )
        },
        deploy_case(
            "11",
            deploy_with("prod", vec!["not-a-credential".into()]),
            Code::Unauthenticated,
            Reason::CredentialMalformed,
            vec![],
        ),
        deploy_case(
            "11 (too long)",
            deploy_with(
                "prod",
                vec![format!("{}.{}", "A".repeat(17 * 1024), "B".repeat(86))],
            ),
            Code::Unauthenticated,
            Reason::CredentialMalformed,
            vec![],
        ),
        {
            let (token, id) = credential(&keys.stranger, "prod", |_| {});
            deploy_case(
                "12",
                deploy_with("prod", vec![token]),
                Code::Unauthenticated,
                Reason::SigningKeyUnknown,
                vec![("kid", "stranger".into()), ("approval_id", id)],
            )
        },
        {
            let (token, id) = credential(&keys.revoked, "prod", |_| {});
            deploy_case(
                "13",
                deploy_with("prod", vec![token]),
                Code::Unauthenticated,
                Reason::SigningKeyRevoked,
                vec![("kid", "revoked-2024".into()), ("approval_id", id)],
            )
        },
        {
            let (token, id) = credential(&keys.service, "prod", |_| {});
            deploy_case(
                "14",
                deploy_with("prod", vec![break_signature(&token)]),
                Code::Unauthenticated,
                Reason::SignatureInvalid,
                vec![("kid", SERVICE_KID.into()), ("approval_id", id)],
            )
        },
        {
            let (token, id) = credential(&keys.service, "prod", |_| {});
            let mut payload = payload_of(&token);
            payload["v"] = serde_json::json!(2);
            let v2 = keys
                .service
                .sign_payload(&serde_json::to_vec(&payload).unwrap());
            deploy_case(
                "15",
                deploy_with("prod", vec![v2]),
                Code::Unauthenticated,
                Reason::CredentialVersionUnsupported,
                vec![("kid", SERVICE_KID.into()), ("approval_id", id)],
            )
        },
        claim_case(
            &h,
            "16",
            Code::FailedPrecondition,
            Reason::SpecHashMismatch,
            |c| c.spec_hash = other_spec.clone(),
            |c| vec![("expected", spec.clone()), ("actual", c.spec_hash.clone())],
        ),
        claim_case(
            &h,
            "17",
            Code::FailedPrecondition,
            Reason::EnvironmentMismatch,
            |c| c.environment_id = "staging".into(),
            |_| {
                vec![
                    ("expected", "acme/payments/prod".into()),
                    ("actual", "acme/payments/staging".into()),
                ]
            },
        ),
        claim_case(
            &h,
            "17 (posture)",
            Code::FailedPrecondition,
            Reason::EnvironmentMismatch,
            |c| c.environment_posture = "staging".into(),
            |_| vec![("expected", "prod".into()), ("actual", "staging".into())],
        ),
        claim_case(
            &h,
            "18 (expired)",
            Code::Unauthenticated,
            Reason::CredentialExpired,
            |c| {
                c.issued_at -= Duration::from_secs(2 * 3600);
                c.expires_at = c.issued_at + Duration::from_secs(3600);
            },
            |_| vec![],
        ),
        claim_case(
            &h,
            "18 (not yet valid)",
            Code::Unauthenticated,
            Reason::CredentialNotYetValid,
            |c| {
                c.issued_at += Duration::from_secs(3600);
                c.expires_at = c.issued_at + Duration::from_secs(600);
            },
            |_| vec![],
        ),
        claim_case_for(
            &h,
            "19",
            pb::DeployRequest {
                required_capabilities: vec!["db.migrate".into()],
                ..deploy("prod")
            },
            Code::PermissionDenied,
            Reason::CapabilitiesInsufficient,
            |_| {},
            |_| vec![("missing", "db.migrate".into())],
        ),
        claim_case(
            &h,
            "20",
            Code::FailedPrecondition,
            Reason::ConfigBundleMismatch,
            |c| c.config_bundle_digest = Some(other_spec.clone()),
            |_| {
                vec![
                    ("expected", bundle_digest()),
                    ("actual", other_spec.clone()),
                ]
            },
        ),
        claim_case(
            &h,
            "21",
            Code::PermissionDenied,
            Reason::CredentialLifetimeExceedsPolicy,
            |c| c.expires_at = c.issued_at + Duration::from_secs(2 * 3600),
            |_| vec![("expected", "1h".into()), ("actual", "2h".into())],
        ),
        claim_case(
            &h,
            "22 (initiator)",
            Code::PermissionDenied,
            Reason::SelfApproval,
            |c| c.issued_by = INITIATOR.into(),
            |_| vec![],
        ),
        claim_case(
            &h,
            "22 (caller)",
            Code::PermissionDenied,
            Reason::SelfApproval,
            |c| c.issued_by = ORCHESTRATOR.into(),
            |_| vec![],
        ),
        deploy_case(
            "23",
            deploy_with("prod", vec![revoked_token]),
            Code::PermissionDenied,
            Reason::ApprovalRevoked,
            vec![("approval_id", revoked_id)],
        ),
        deploy_case(
            "24",
            deploy_with("prod", vec![single_use]),
            Code::FailedPrecondition,
            Reason::ApprovalConsumed,
            vec![("approval_id", single_use_id.clone())],
        ),
        {
            let (token, _) = credential(&keys.service, "quorum", |_| {});
            deploy_case(
                "25",
                deploy_with("quorum", vec![token]),
                Code::PermissionDenied,
                Reason::QuorumNotMet,
                vec![("expected", "2".into()), ("actual", "1".into())],
            )
        },
    ];
    for case in cases {
        let who = (case.caller)(&h);
        let before = entry_count(&h.server).await;
        let (result, action, env) = admit(case.call, who).await;
        let row = case.row;
        let rejection = rejected(result, case.code, case.reason);
        for (key, value) in &case.metadata {
            assert_eq!(
                rejection.metadata.get(*key),
                Some(value),
                "row {row}: metadata {key} in {:?}",
                rejection.metadata
            );
        }
        if let Some(field) = case.field {
            assert!(
                rejection.field_violations.iter().any(|v| v.field == field),
                "row {row}: {:?}",
                rejection.field_violations
            );
        } else {
            assert!(rejection.field_violations.is_empty(), "row {row}");
        }
        let env = if env.is_empty() {
            "prod".to_owned()
        } else {
            env
        };
        assert_audited(
            &h.server,
            before,
            rejection.decision_id.as_deref().unwrap(),
            &Audited {
                caller: who,
                env: &env,
                action,
                outcome: "rejected",
                reason: case.reason.as_str(),
                grpc_code: case.reason.code_name(),
            },
        )
        .await;
    }
    // Nothing above consumed the single-use approval a second time.
    assert_eq!(uses(&h.server, &single_use_id).await, 1);
    assert_chain_ok(&h).await;
}
