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
    credential::{Claims, KeyStatus, SigningKey},
    hash::wire_hash,
};
use admission_server::store::{AuditEntry, ListFilter};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use common::{
    AUDITOR, ConfigOptions, NOBODY, ORCHESTRATOR, REVIEWER, SERVICE_KID, TestServer,
    requests::{self, bundle},
};
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
    Some(requests::environment("acme", "payments", env))
}

fn spec_hash() -> SpecHash {
    SpecHash::of_bytes(SPEC_KV)
}

fn bundle_digest() -> String {
    SpecHash::of_bytes(b"config bundle 42").to_string()
}

fn deploy(env: &str) -> pb::DeployRequest {
    pb::DeployRequest {
        pipeline_version: "pipeline-7".into(),
        spec_kv: SPEC_KV.to_vec(),
        config_bundle: Some(bundle("bundle-42", &bundle_digest(), env)),
        initiated_by: INITIATOR.into(),
        ..requests::deploy(env, &unique("deploy"))
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
        spec_kv: SPEC_KV.to_vec(),
        source_artifact: Some(pb::SourceArtifact {
            artifact_id: "capture-9".into(),
            digest: SpecHash::of_bytes(b"capture 9").to_string(),
            environment_id: env.into(),
        }),
        initiated_by: INITIATOR.into(),
        ..requests::replay(env, &unique("replay"), mode)
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

/// Makes an approval for a deploy of [`SPEC_KV`] through the Approvals service and has the
/// reviewer approve it; returns the approval with the credential the service signed.
async fn approved_approval(h: &Harness) -> pb::Approval {
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
    assert_eq!(approved.credentials.len(), 1);
    approved
}

/// An approved approval, then revoked by the reviewer; returns its credential and id.
async fn revoked_approval(h: &Harness) -> (String, String) {
    let approved = approved_approval(h).await;
    let revoked = h
        .reviewer
        .client
        .revoke_approval(&approved.approval_id, "release pulled")
        .await
        .unwrap();
    assert_eq!(revoked.state, pb::ApprovalState::Revoked as i32);
    (approved.credentials[0].clone(), approved.approval_id)
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
            // Well inside the clock skew, but a validity window that ends where it starts is
            // never valid, so the credential is malformed rather than expired.
            let (token, _) = credential(&keys.service, "prod", |c| {
                c.issued_at = now_whole_seconds();
                c.expires_at = c.issued_at;
            });
            deploy_case(
                "11 (expires_at not after issued_at)",
                deploy_with("prod", vec![token]),
                Code::Unauthenticated,
                Reason::CredentialMalformed,
                vec![],
            )
        },
        {
            // Signed by a trusted key, but a claim longer than any request field may be.
            let (token, _) = credential(&keys.service, "prod", |c| {
                c.approval_id = "a".repeat(129);
            });
            deploy_case(
                "11 (claim too long)",
                deploy_with("prod", vec![token]),
                Code::Unauthenticated,
                Reason::CredentialMalformed,
                vec![],
            )
        },
        {
            let (token, _) = credential(&keys.service, "prod", |c| {
                c.expires_at = c.issued_at - Duration::from_secs(1);
            });
            deploy_case(
                "11 (expires_at before issued_at)",
                deploy_with("prod", vec![token]),
                Code::Unauthenticated,
                Reason::CredentialMalformed,
                vec![],
            )
        },
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

// === precedence ===

#[tokio::test]
async fn the_first_failing_check_wins() {
    let h = harness().await;
    let keys = &h.keys;
    let client = &h.orchestrator.client;

    // Row 17 comes before row 18.
    let (expired_elsewhere, _) = credential(&keys.service, "prod", |c| {
        c.environment_id = "staging".into();
        c.issued_at -= Duration::from_secs(2 * 3600);
        c.expires_at = c.issued_at + Duration::from_secs(3600);
    });
    rejected(
        client
            .admit_deploy(deploy_with("prod", vec![expired_elsewhere]))
            .await,
        Code::FailedPrecondition,
        Reason::EnvironmentMismatch,
    );

    // Row 12 comes before row 14.
    let (unknown, _) = credential(&keys.stranger, "prod", |_| {});
    let rejection = rejected(
        client
            .admit_deploy(deploy_with("prod", vec![break_signature(&unknown)]))
            .await,
        Code::Unauthenticated,
        Reason::SigningKeyUnknown,
    );
    assert_eq!(rejection.metadata["kid"], "stranger");

    // Credentials are checked in the order given: a valid first one does not excuse the second.
    let (fine, fine_id) = credential(&keys.service, "prod", |_| {});
    rejected(
        client
            .admit_deploy(deploy_with("prod", vec![fine.clone(), "x.y".into()]))
            .await,
        Code::Unauthenticated,
        Reason::CredentialMalformed,
    );
    let (expired, _) = credential(&keys.service, "prod", |c| {
        c.issued_at -= Duration::from_secs(2 * 3600);
        c.expires_at = c.issued_at + Duration::from_secs(3600);
    });
    rejected(
        client
            .admit_deploy(deploy_with("prod", vec![fine.clone(), expired.clone()]))
            .await,
        Code::Unauthenticated,
        Reason::CredentialExpired,
    );
    // The first credential's failing row wins over a lower row of the second.
    let (wrong_spec, _) = credential(&keys.service, "prod", |c| {
        c.spec_hash = SpecHash::of_bytes(OTHER_SPEC_KV).to_string();
    });
    rejected(
        client
            .admit_deploy(deploy_with("prod", vec![wrong_spec, "x.y".into()]))
            .await,
        Code::FailedPrecondition,
        Reason::SpecHashMismatch,
    );
    // None of this consumed the valid credential.
    assert_eq!(uses(&h.server, &fine_id).await, 0);

    // Rows 1 and 2 come before row 3, row 3 before row 4.
    rejected(
        h.nobody
            .client
            .admit_deploy(pb::DeployRequest {
                request_id: "has spaces".into(),
                ..deploy("qa")
            })
            .await,
        Code::InvalidArgument,
        Reason::RequestInvalid,
    );
    rejected(
        h.nobody
            .client
            .admit_deploy(pb::DeployRequest {
                spec_kv: b"no-newline=1".to_vec(),
                ..deploy("qa")
            })
            .await,
        Code::InvalidArgument,
        Reason::SpecMalformed,
    );
    rejected(
        h.nobody.client.admit_deploy(deploy("qa")).await,
        Code::PermissionDenied,
        Reason::CallerNotAuthorized,
    );

    // Row 6 comes before rows 8–25.
    rejected(
        client
            .admit_deploy(pb::DeployRequest {
                config_bundle: Some(pb::ConfigBundle {
                    bundle_id: "b".into(),
                    digest: bundle_digest(),
                    environment_id: "prod".into(),
                }),
                ..deploy_with("frozen", vec!["x.y".into()])
            })
            .await,
        Code::PermissionDenied,
        Reason::PolicyDenied,
    );
    // Row 7 comes before row 9.
    rejected(
        client
            .admit_replay(pb::ReplayRequest {
                source_artifact: Some(pb::SourceArtifact {
                    artifact_id: "capture-9".into(),
                    digest: bundle_digest(),
                    environment_id: "prod".into(),
                }),
                ..replay("staging", pb::ReplayMode::Execute)
            })
            .await,
        Code::PermissionDenied,
        Reason::ReplayExecuteNotPermitted,
    );
    // Row 8 comes before row 10 and the credential rows.
    rejected(
        client
            .admit_deploy(pb::DeployRequest {
                config_bundle: Some(pb::ConfigBundle {
                    bundle_id: "b".into(),
                    digest: bundle_digest(),
                    environment_id: "staging".into(),
                }),
                ..deploy_with("prod", vec!["x.y".into()])
            })
            .await,
        Code::FailedPrecondition,
        Reason::ConfigBundleEnvironmentMismatch,
    );
    assert_chain_ok(&h).await;
}

#[tokio::test]
async fn request_id_reuse_is_row_five_after_rows_three_and_four() {
    let h = harness().await;
    let first = deploy("dev");
    let admission = h.limited.client.admit_deploy(first.clone()).await.unwrap();

    // Row 5 comes before rows 6–25: the new content would be denied, expired, ….
    let (expired, _) = credential(&h.keys.service, "prod", |c| {
        c.issued_at -= Duration::from_secs(2 * 3600);
        c.expires_at = c.issued_at + Duration::from_secs(3600);
    });
    for request in [
        pb::DeployRequest {
            required_capabilities: vec!["db.migrate".into()],
            ..first.clone()
        },
        pb::DeployRequest {
            credentials: vec![expired],
            ..first.clone()
        },
    ] {
        let before = entry_count(&h.server).await;
        let rejection = rejected(
            h.limited.client.admit_deploy(request).await,
            Code::AlreadyExists,
            Reason::RequestIdConflict,
        );
        assert_ne!(
            rejection.decision_id.as_deref(),
            Some(&*admission.decision_id)
        );
        assert_audited(
            &h.server,
            before,
            rejection.decision_id.as_deref().unwrap(),
            &Audited {
                caller: &h.limited,
                env: "dev",
                action: "deploy.admit",
                outcome: "rejected",
                reason: "REQUEST_ID_CONFLICT",
                grpc_code: "ALREADY_EXISTS",
            },
        )
        .await;
    }

    // Rows 3 and 4 come before row 5, and are audited as what they are.
    let used_by_orchestrator = deploy("dev");
    h.orchestrator
        .client
        .admit_deploy(used_by_orchestrator.clone())
        .await
        .unwrap();
    let rows_three_and_four = [
        (
            &h.limited,
            &first,
            "prod",
            Code::PermissionDenied,
            Reason::CallerNotAuthorized,
        ),
        (
            &h.orchestrator,
            &used_by_orchestrator,
            "qa",
            Code::NotFound,
            Reason::EnvironmentUnknown,
        ),
    ];
    for (who, used, env, code, reason) in rows_three_and_four {
        let mut request = deploy(env);
        request.request_id.clone_from(&used.request_id);
        let before = entry_count(&h.server).await;
        let rejection = rejected(who.client.admit_deploy(request).await, code, reason);
        assert_audited(
            &h.server,
            before,
            rejection.decision_id.as_deref().unwrap(),
            &Audited {
                caller: who,
                env,
                action: "deploy.admit",
                outcome: "rejected",
                reason: reason.as_str(),
                grpc_code: reason.code_name(),
            },
        )
        .await;
    }

    // The original admission still answers its retry.
    let retried = h.limited.client.admit_deploy(first).await.unwrap();
    assert_eq!(retried.decision_id, admission.decision_id);
    assert_chain_ok(&h).await;
}

// === key rotation ===

#[tokio::test]
async fn retired_keys_verify_revoked_keys_do_not_and_active_keys_coexist() {
    let h = harness().await;
    let keys = &h.keys;
    let client = &h.orchestrator.client;

    for key in [&keys.retired, &keys.service, &keys.second] {
        let (token, id) = credential(key, "prod", |_| {});
        let before = entry_count(&h.server).await;
        let admission = client
            .admit_deploy(deploy_with("prod", vec![token]))
            .await
            .unwrap_or_else(|e| panic!("key {} must verify: {e}", key.kid()));
        assert_eq!(admission.approval_ids, std::slice::from_ref(&id));
        assert_eq!(admission.action, pb::Action::Deploy as i32);
        assert_eq!(admission.spec_hash, spec_hash().to_string());
        assert!(admission.shadow_reason.is_empty());
        let entry = assert_audited(
            &h.server,
            before,
            &admission.decision_id,
            &Audited {
                caller: &h.orchestrator,
                env: "prod",
                action: "deploy.admit",
                outcome: "admitted",
                reason: "",
                grpc_code: "OK",
            },
        )
        .await;
        assert_eq!(wire_hash(&entry.entry_hash), admission.audit_entry_hash);
        assert_eq!(entry.entry.approval_ids, std::slice::from_ref(&id));
        assert_eq!(entry.entry.approvers, [BOB]);
        assert_eq!(uses(&h.server, &id).await, 1);
    }

    // Both active keys at once, in one quorum.
    let (by_service, _) = credential(&keys.service, "quorum", |_| {});
    let (by_second, _) = credential(&keys.second, "quorum", |c| c.issued_by = CAROL.into());
    client
        .admit_deploy(deploy_with("quorum", vec![by_service, by_second]))
        .await
        .unwrap();

    let (token, id) = credential(&keys.revoked, "prod", |_| {});
    let rejection = rejected(
        client.admit_deploy(deploy_with("prod", vec![token])).await,
        Code::Unauthenticated,
        Reason::SigningKeyRevoked,
    );
    assert_eq!(rejection.metadata["kid"], "revoked-2024");
    assert_eq!(rejection.metadata["approval_id"], id);
    assert_chain_ok(&h).await;
}

// === replay ===

#[tokio::test]
async fn dry_run_replay_needs_no_credentials_execute_replay_does() {
    let h = harness().await;
    let client = &h.orchestrator.client;

    let before = entry_count(&h.server).await;
    let admission = client
        .admit_replay(replay("prod", pb::ReplayMode::DryRun))
        .await
        .unwrap();
    assert_eq!(admission.action, pb::Action::ReplayDryRun as i32);
    assert!(admission.approval_ids.is_empty());
    assert_audited(
        &h.server,
        before,
        &admission.decision_id,
        &Audited {
            caller: &h.orchestrator,
            env: "prod",
            action: "replay.admit",
            outcome: "admitted",
            reason: "",
            grpc_code: "OK",
        },
    )
    .await;
    // Dry-run is allowed where only dry-run is.
    client
        .admit_replay(replay("staging", pb::ReplayMode::DryRun))
        .await
        .unwrap();

    let rejection = rejected(
        client
            .admit_replay(replay("prod", pb::ReplayMode::Execute))
            .await,
        Code::PermissionDenied,
        Reason::ApprovalRequired,
    );
    assert!(rejection.message.contains("replay.execute"), "{rejection}");

    // A credential for deploy does not cover execute replay.
    let (deploy_only, _) = credential(&h.keys.service, "prod", |_| {});
    let rejection = rejected(
        client
            .admit_replay(pb::ReplayRequest {
                credentials: vec![deploy_only],
                ..replay("prod", pb::ReplayMode::Execute)
            })
            .await,
        Code::PermissionDenied,
        Reason::CapabilitiesInsufficient,
    );
    assert_eq!(rejection.metadata["missing"], "replay.execute");

    let (token, id) = credential(&h.keys.service, "prod", |c| {
        c.capabilities = vec!["replay.execute".into()];
    });
    let admission = client
        .admit_replay(pb::ReplayRequest {
            credentials: vec![token],
            ..replay("prod", pb::ReplayMode::Execute)
        })
        .await
        .unwrap();
    assert_eq!(admission.action, pb::Action::ReplayExecute as i32);
    assert_eq!(admission.approval_ids, [id]);
    assert_chain_ok(&h).await;
}

// === quorum ===

#[tokio::test]
async fn quorum_counts_distinct_issuers() {
    let h = harness().await;
    let keys = &h.keys;
    let client = &h.orchestrator.client;

    // Two reviewers sign the same approval.
    let (by_bob, id) = credential(&keys.service, "quorum", |_| {});
    let mut carol_claims = claims(&keys.service, "quorum");
    carol_claims.issued_by = CAROL.into();
    carol_claims.approval_id.clone_from(&id);
    let by_carol = keys.service.sign(&carol_claims);
    let before = entry_count(&h.server).await;
    let admission = client
        .admit_deploy(deploy_with("quorum", vec![by_bob, by_carol]))
        .await
        .unwrap();
    assert_eq!(admission.approval_ids, std::slice::from_ref(&id));
    let entry = assert_audited(
        &h.server,
        before,
        &admission.decision_id,
        &Audited {
            caller: &h.orchestrator,
            env: "quorum",
            action: "deploy.admit",
            outcome: "admitted",
            reason: "",
            grpc_code: "OK",
        },
    )
    .await;
    assert_eq!(entry.entry.approvers, [BOB, CAROL]);
    assert_eq!(uses(&h.server, &id).await, 1);

    // Two separate approvals from two reviewers.
    let (first, first_id) = credential(&keys.service, "quorum", |_| {});
    let (second, second_id) = credential(&keys.second, "quorum", |c| c.issued_by = CAROL.into());
    let admission = client
        .admit_deploy(deploy_with("quorum", vec![first, second]))
        .await
        .unwrap();
    assert_eq!(
        admission.approval_ids,
        [first_id.clone(), second_id.clone()]
    );
    assert_eq!(uses(&h.server, &first_id).await, 1);
    assert_eq!(uses(&h.server, &second_id).await, 1);

    // Two credentials, one issuer.
    let (one, one_id) = credential(&keys.service, "quorum", |_| {});
    let (again, again_id) = credential(&keys.second, "quorum", |_| {});
    let rejection = rejected(
        client
            .admit_deploy(deploy_with("quorum", vec![one, again]))
            .await,
        Code::PermissionDenied,
        Reason::QuorumNotMet,
    );
    assert_eq!(rejection.metadata["expected"], "2");
    assert_eq!(rejection.metadata["actual"], "1");
    assert_eq!(uses(&h.server, &one_id).await, 0);
    assert_eq!(uses(&h.server, &again_id).await, 0);
    assert_chain_ok(&h).await;
}

// === shadow mode ===

#[tokio::test]
async fn shadow_mode_admits_reports_and_consumes_nothing() {
    let h = harness().await;
    let client = &h.orchestrator.client;

    let before = entry_count(&h.server).await;
    let admission = client.admit_deploy(deploy("shadow")).await.unwrap();
    assert_eq!(admission.shadow_reason, "APPROVAL_REQUIRED");
    assert!(admission.approval_ids.is_empty());
    assert!(!admission.break_glass);
    let entry = assert_audited(
        &h.server,
        before,
        &admission.decision_id,
        &Audited {
            caller: &h.orchestrator,
            env: "shadow",
            action: "deploy.admit",
            outcome: "admitted_shadow",
            reason: "APPROVAL_REQUIRED",
            grpc_code: "OK",
        },
    )
    .await;
    assert_eq!(wire_hash(&entry.entry_hash), admission.audit_entry_hash);

    // A valid credential next to an expired one: the would-be rejection is reported and the
    // valid one is not consumed.
    let (valid, valid_id) = credential(&h.keys.service, "shadow", |_| {});
    let (expired, _) = credential(&h.keys.service, "shadow", |c| {
        c.issued_at -= Duration::from_secs(2 * 3600);
        c.expires_at = c.issued_at + Duration::from_secs(3600);
    });
    let before = entry_count(&h.server).await;
    let admission = client
        .admit_deploy(deploy_with("shadow", vec![valid.clone(), expired]))
        .await
        .unwrap();
    assert_eq!(admission.shadow_reason, "CREDENTIAL_EXPIRED");
    assert!(admission.approval_ids.is_empty());
    let entry = assert_audited(
        &h.server,
        before,
        &admission.decision_id,
        &Audited {
            caller: &h.orchestrator,
            env: "shadow",
            action: "deploy.admit",
            outcome: "admitted_shadow",
            reason: "CREDENTIAL_EXPIRED",
            grpc_code: "OK",
        },
    )
    .await;
    assert!(entry.entry.approval_ids.is_empty());
    assert_eq!(uses(&h.server, &valid_id).await, 0);

    // A request that passes is admitted normally in shadow mode, and consumes its use.
    let admission = client
        .admit_deploy(deploy_with("shadow", vec![valid.clone()]))
        .await
        .unwrap();
    assert!(admission.shadow_reason.is_empty());
    assert_eq!(admission.approval_ids, std::slice::from_ref(&valid_id));
    assert_eq!(uses(&h.server, &valid_id).await, 1);

    // Using it again would be APPROVAL_CONSUMED: reported, not consumed again.
    let admission = client
        .admit_deploy(deploy_with("shadow", vec![valid]))
        .await
        .unwrap();
    assert_eq!(admission.shadow_reason, "APPROVAL_CONSUMED");
    assert_eq!(uses(&h.server, &valid_id).await, 1);
    assert_chain_ok(&h).await;
}

// === break-glass ===

fn break_glass(env: &str, justification: &str) -> pb::DeployRequest {
    pb::DeployRequest {
        break_glass: Some(pb::BreakGlass {
            justification: justification.into(),
        }),
        ..deploy(env)
    }
}

#[tokio::test]
async fn break_glass_needs_role_environment_and_justification() {
    let h = harness().await;

    let before = entry_count(&h.server).await;
    let admission = h
        .oncall
        .client
        .admit_deploy(break_glass("emergency", "payments are down, INC-1001"))
        .await
        .unwrap();
    assert!(admission.break_glass);
    assert!(admission.approval_ids.is_empty());
    assert!(admission.shadow_reason.is_empty());
    let entry = assert_audited(
        &h.server,
        before,
        &admission.decision_id,
        &Audited {
            caller: &h.oncall,
            env: "emergency",
            action: "deploy.admit",
            outcome: "admitted_break_glass",
            reason: "",
            grpc_code: "OK",
        },
    )
    .await;
    assert!(
        entry.entry.detail.contains("payments are down, INC-1001"),
        "{}",
        entry.entry.detail
    );

    // Break-glass skips the credential rows: a broken credential does not matter.
    h.oncall
        .client
        .admit_deploy(pb::DeployRequest {
            credentials: vec!["x.y".into()],
            ..break_glass("emergency", "still down")
        })
        .await
        .unwrap();

    // Without break_glass the environment requires approval as usual.
    rejected(
        h.oncall.client.admit_deploy(deploy("emergency")).await,
        Code::PermissionDenied,
        Reason::ApprovalRequired,
    );

    let cases = [
        (
            &h.orchestrator,
            break_glass("emergency", "on call"),
            Code::PermissionDenied,
            Reason::CallerNotAuthorized,
        ),
        (
            &h.oncall,
            break_glass("prod", "on call"),
            Code::PermissionDenied,
            Reason::PolicyDenied,
        ),
        (
            &h.oncall,
            break_glass("emergency", "  "),
            Code::InvalidArgument,
            Reason::RequestInvalid,
        ),
    ];
    for (who, request, code, reason) in cases {
        let env = request.environment.clone().unwrap().environment_id;
        let before = entry_count(&h.server).await;
        let rejection = rejected(who.client.admit_deploy(request).await, code, reason);
        if reason == Reason::RequestInvalid {
            assert_eq!(
                rejection.field_violations[0].field,
                "break_glass.justification"
            );
        }
        assert_audited(
            &h.server,
            before,
            rejection.decision_id.as_deref().unwrap(),
            &Audited {
                caller: who,
                env: &env,
                action: "deploy.admit",
                outcome: "rejected",
                reason: reason.as_str(),
                grpc_code: reason.code_name(),
            },
        )
        .await;
    }
    assert_chain_ok(&h).await;
}

// === idempotency ===

/// The fields of the original admission a retry answers again.
/// A retry answers exactly the original admission, audit entry hash included (SPEC §7).
fn assert_same_admission(retried: &pb::Admission, first: &pb::Admission) {
    assert_eq!(retried, first);
}

#[tokio::test]
async fn retry_returns_the_original_admission_and_consumes_nothing() {
    let h = harness().await;
    let client = &h.orchestrator.client;
    let (token, id) = credential(&h.keys.service, "prod", |_| {});
    let request = deploy_with("prod", vec![token.clone()]);

    let before = entry_count(&h.server).await;
    let first = client.admit_deploy(request.clone()).await.unwrap();
    assert_audited(
        &h.server,
        before,
        &first.decision_id,
        &Audited {
            caller: &h.orchestrator,
            env: "prod",
            action: "deploy.admit",
            outcome: "admitted",
            reason: "",
            grpc_code: "OK",
        },
    )
    .await;
    let recorded = entry_count(&h.server).await;

    // The single-use credential is admitted again, through the retry only.
    for _ in 0..2 {
        let retried = client.admit_deploy(request.clone()).await.unwrap();
        assert_same_admission(&retried, &first);
    }
    assert_eq!(
        entry_count(&h.server).await,
        recorded,
        "a retry is not a decision"
    );
    assert_eq!(uses(&h.server, &id).await, 1);

    // Same request_id, different content.
    let before = entry_count(&h.server).await;
    let rejection = rejected(
        client
            .admit_deploy(pb::DeployRequest {
                pipeline_version: "pipeline-8".into(),
                ..request.clone()
            })
            .await,
        Code::AlreadyExists,
        Reason::RequestIdConflict,
    );
    assert_audited(
        &h.server,
        before,
        rejection.decision_id.as_deref().unwrap(),
        &Audited {
            caller: &h.orchestrator,
            env: "prod",
            action: "deploy.admit",
            outcome: "rejected",
            reason: "REQUEST_ID_CONFLICT",
            grpc_code: "ALREADY_EXISTS",
        },
    )
    .await;

    // A new request_id, or the same one from another caller, is a new decision: used up.
    for (who, request_id) in [
        (&h.orchestrator, unique("deploy")),
        (&h.oncall, request.request_id.clone()),
    ] {
        let rejection = rejected(
            who.client
                .admit_deploy(pb::DeployRequest {
                    request_id,
                    ..request.clone()
                })
                .await,
            Code::FailedPrecondition,
            Reason::ApprovalConsumed,
        );
        assert_eq!(rejection.metadata["approval_id"], id);
    }
    assert_eq!(uses(&h.server, &id).await, 1);
    // The original still answers its retry.
    assert_same_admission(&client.admit_deploy(request).await.unwrap(), &first);
    assert_chain_ok(&h).await;
}

// === audit over gRPC ===

#[tokio::test]
async fn audit_list_shows_each_decision_to_the_auditor() {
    let h = harness().await;
    let admitted = h
        .orchestrator
        .client
        .admit_deploy(deploy("dev"))
        .await
        .unwrap();
    let rejection = rejected(
        h.orchestrator.client.admit_deploy(deploy("frozen")).await,
        Code::PermissionDenied,
        Reason::PolicyDenied,
    );

    let list = |env: &str, outcome: &str| {
        let request = pb::ListAuditRequest {
            environment: env_ref(env),
            outcome: outcome.into(),
            since: None,
            page_size: 0,
            page_token: String::new(),
        };
        let client = h.auditor.client.clone();
        async move { client.audit().list(request).await.unwrap().into_inner() }
    };
    let dev = list("dev", "").await;
    assert_eq!(dev.entries.len(), 1);
    assert!(dev.next_page_token.is_empty());
    let entry = &dev.entries[0];
    assert_eq!(entry.entry_id, admitted.decision_id);
    assert_eq!(entry.entry_hash, admitted.audit_entry_hash);
    assert_eq!(entry.actor, ORCHESTRATOR);
    assert_eq!(entry.actor_cert_sha256, h.orchestrator.cert_sha256);
    assert_eq!(entry.initiated_by, INITIATOR);
    assert_eq!(entry.outcome, "admitted");
    assert_eq!(entry.grpc_code, "OK");
    assert_eq!(entry.spec_hash, spec_hash().to_string());
    assert_eq!(entry.resource_scope, env_ref("dev"));

    let frozen = list("frozen", "rejected").await;
    assert_eq!(frozen.entries.len(), 1);
    let entry = &frozen.entries[0];
    assert_eq!(Some(&entry.entry_id), rejection.decision_id.as_ref());
    assert_eq!(entry.reason, "POLICY_DENIED");
    assert_eq!(entry.grpc_code, "PERMISSION_DENIED");
    assert!(list("dev", "rejected").await.entries.is_empty());

    // Only the auditor reads the trail.
    let status = h
        .orchestrator
        .client
        .audit()
        .verify(pb::VerifyAuditRequest {})
        .await
        .unwrap_err();
    let denied = Rejection::from_status(&status).unwrap();
    assert_eq!(
        (denied.code, denied.reason.as_str()),
        (Code::PermissionDenied, "CALLER_NOT_AUTHORIZED")
    );
    assert_chain_ok(&h).await;
}

// === preview ===

/// Calls Preview for a deploy and checks its one audit entry.
async fn preview_deploy(h: &Harness, request: pb::DeployRequest) -> pb::Preview {
    let env = request.environment.clone().unwrap().environment_id;
    let before = entry_count(&h.server).await;
    let preview = h.orchestrator.client.preview_deploy(request).await.unwrap();
    assert_eq!(preview.spec_hash, spec_hash().to_string());
    assert_eq!(preview.action, pb::Action::Deploy as i32);
    assert_audited(
        &h.server,
        before,
        &preview.decision_id,
        &Audited {
            caller: &h.orchestrator,
            env: &env,
            action: "deploy.preview",
            outcome: "previewed",
            reason: "",
            grpc_code: "OK",
        },
    )
    .await;
    preview
}

#[tokio::test]
async fn preview_reports_the_policy_and_consumes_nothing() {
    let h = harness().await;
    let (token, id) = credential(&h.keys.service, "prod", |c| {
        c.capabilities = vec!["db.migrate".into(), "deploy".into()];
    });
    let migrate = pb::DeployRequest {
        required_capabilities: vec!["db.migrate".into()],
        credentials: vec![token],
        ..deploy("prod")
    };

    let preview = preview_deploy(&h, migrate.clone()).await;
    assert_eq!(
        preview.policy_decision,
        pb::PolicyDecision::RequireApproval as i32
    );
    assert_eq!(preview.posture, pb::Posture::Prod as i32);
    assert_eq!(preview.required_capabilities, ["db.migrate", "deploy"]);
    assert_eq!(preview.required_approvals, 1);
    assert!(preview.eligible_approvals.is_empty());
    assert_eq!(uses(&h.server, &id).await, 0);
    // The credential previewed with is still good for one admission.
    let admission = h.orchestrator.client.admit_deploy(migrate).await.unwrap();
    assert_eq!(admission.approval_ids, std::slice::from_ref(&id));
    assert_eq!(uses(&h.server, &id).await, 1);

    // Approvals made through the service show up as eligible.
    let approval = approved_approval(&h).await;
    let preview = preview_deploy(&h, deploy("prod")).await;
    let eligible: Vec<_> = preview
        .eligible_approvals
        .iter()
        .map(|a| a.approval_id.as_str())
        .collect();
    assert_eq!(eligible, [approval.approval_id.as_str()]);
    assert_eq!(uses(&h.server, &approval.approval_id).await, 0);

    let dev = preview_deploy(&h, deploy("dev")).await;
    assert_eq!(dev.policy_decision, pb::PolicyDecision::Allow as i32);
    assert_eq!(dev.posture, pb::Posture::Dev as i32);
    assert_eq!(dev.required_capabilities, ["deploy"]);
    assert_eq!(dev.required_approvals, 0);

    let gated_dev = preview_deploy(
        &h,
        pb::DeployRequest {
            required_capabilities: vec!["db.migrate".into()],
            ..deploy("dev")
        },
    )
    .await;
    assert_eq!(
        gated_dev.policy_decision,
        pb::PolicyDecision::RequireApproval as i32
    );
    assert_eq!(gated_dev.required_approvals, 1);

    let quorum = preview_deploy(&h, deploy("quorum")).await;
    assert_eq!(quorum.required_approvals, 2);

    let frozen = preview_deploy(&h, deploy("frozen")).await;
    assert_eq!(frozen.policy_decision, pb::PolicyDecision::Deny as i32);
    assert_eq!(frozen.required_approvals, 0);

    let before = entry_count(&h.server).await;
    let staging = h
        .orchestrator
        .client
        .preview_replay(replay("staging", pb::ReplayMode::Execute))
        .await
        .unwrap();
    assert_eq!(staging.action, pb::Action::ReplayExecute as i32);
    assert_eq!(
        staging.policy_decision,
        pb::PolicyDecision::DryRunOnly as i32
    );
    assert_eq!(staging.posture, pb::Posture::Staging as i32);
    assert_eq!(staging.required_capabilities, ["replay.execute"]);
    assert_audited(
        &h.server,
        before,
        &staging.decision_id,
        &Audited {
            caller: &h.orchestrator,
            env: "staging",
            action: "replay.preview",
            outcome: "previewed",
            reason: "",
            grpc_code: "OK",
        },
    )
    .await;

    let dry_run = h
        .orchestrator
        .client
        .preview_replay(replay("prod", pb::ReplayMode::DryRun))
        .await
        .unwrap();
    assert_eq!(dry_run.policy_decision, pb::PolicyDecision::Allow as i32);
    assert!(dry_run.required_capabilities.is_empty());
    assert_eq!(dry_run.required_approvals, 0);

    // Preview checks the caller's role, and that rejection is audited too.
    let before = entry_count(&h.server).await;
    let rejection = rejected(
        h.nobody.client.preview_deploy(deploy("prod")).await,
        Code::PermissionDenied,
        Reason::CallerNotAuthorized,
    );
    assert_audited(
        &h.server,
        before,
        rejection.decision_id.as_deref().unwrap(),
        &Audited {
            caller: &h.nobody,
            env: "prod",
            action: "deploy.admit",
            outcome: "rejected",
            reason: "CALLER_NOT_AUTHORIZED",
            grpc_code: "PERMISSION_DENIED",
        },
    )
    .await;
    assert_chain_ok(&h).await;
}
