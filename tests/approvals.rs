//! Approvals end to end over real mTLS (SPEC §3 Approvals, §5, §7 rows 22–25): the lifecycle
//! from request to consumed credential, quorum, self-approval, deny, revoke, single use (also
//! under a race), expiry, a service without a signing key, preview, and the audit trail of every
//! step. Every test runs on SQLite, and on PostgreSQL when `ADMISSION_TEST_DATABASE_URL` is set
//! (its own fresh database per test; the race then goes through two server instances sharing
//! it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    fmt::Debug,
    path::Path,
    time::{Duration, SystemTime},
};

use admission_client::{AdmissionClient, AdmitError, Reason, Rejection, SpecHash, pb};
use admission_contract::credential::{self, Claims};
use admission_server::runtime::config::Config;
use common::{
    AUDITOR, ConfigOptions, ORCHESTRATOR, Pki, REVIEWER, SERVICE_KID, TestServer,
    requests::{self, bundle},
    store::{Backend, TestDb, execute_sql},
};
use tonic::Code;

/// A second reviewer.
const BOB: &str = "spiffe://test.local/reviewer/bob";
/// A reviewer who may also request approvals (reviewer and orchestrator roles).
const CAROL: &str = "spiffe://test.local/reviewer/carol";
/// The person the orchestrator acts for.
const INITIATOR: &str = "user:dana@acme.example";

/// The canonical spec every test deploys.
const SPEC: &[u8] = b"pipeline=payments-api\nversion=2026.11.3\nreplicas=3\n";
/// The deploy's config bundle digest.
const BUNDLE_DIGEST: &str =
    "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

/// Roles and environments: `prod` (defaults: one approval, one use, 1h), `quorum` (two
/// distinct reviewers) and `brief` (1 s of clock skew, for expiry). The generous durable timeout keeps the two loaded test cores from
/// turning a slow fsync into AUDIT_UNAVAILABLE; no test measures time.
const CONFIG: &str = r#"
[audit]
durable_timeout = "30s"

[[roles]]
identity = "spiffe://test.local/orchestrator/ci"
roles = ["orchestrator"]

[[roles]]
identity = "spiffe://test.local/reviewer/*"
roles = ["reviewer"]

[[roles]]
identity = "spiffe://test.local/reviewer/carol"
roles = ["orchestrator"]

[[roles]]
identity = "spiffe://test.local/auditor/audit"
roles = ["auditor"]

[[environments]]
org_id = "acme"
project_id = "payments"
environment_id = "prod"
posture = "prod"

[[environments]]
org_id = "acme"
project_id = "payments"
environment_id = "quorum"
posture = "prod"
required_approvals = 2

[[environments]]
org_id = "acme"
project_id = "payments"
environment_id = "brief"
posture = "prod"
clock_skew = "1s"
"#;

per_backend!(
    lifecycle_from_request_to_consumed_credential,
    quorum_needs_two_distinct_reviewers,
    unapproved_quorum_releases_no_credentials,
    requester_and_initiator_cannot_approve,
    denied_approval_cannot_be_decided_again,
    revoked_approval_is_refused,
    single_use_approval_is_consumed_once,
    verify_reports_uses_reset_behind_the_chain,
    concurrent_admits_consume_a_single_use_approval_once,
    concurrent_retries_of_one_admit_all_get_the_admission,
    concurrent_retries_of_a_rejected_admit_are_each_rejected,
    concurrent_reviews_are_each_counted_once,
    expired_approval_leaves_the_eligible_list,
    decide_without_signing_key_is_refused,
    every_lifecycle_event_is_audited,
    callers_need_the_role_for_each_rpc,
    unknown_stored_state_is_internal_not_pending,
);

/// Running servers over one audit store; the database outlives the servers.
struct Fixture {
    servers: Vec<TestServer>,
    _database: TestDb,
}

// === impl Fixture ===

impl Fixture {
    /// `instances` servers configured with `extra` sharing one store on `backend`; `None` when
    /// the PostgreSQL run is skipped. Every instance trusts and signs with the first one's key.
    async fn start(
        backend: Backend,
        test: &str,
        instances: usize,
        extra: &str,
        options: &ConfigOptions,
    ) -> Option<Self> {
        let database = backend.database(test).await?;
        let mut servers: Vec<TestServer> = Vec::with_capacity(instances);
        for _ in 0..instances {
            let pki = Pki::new("test clients CA");
            let dir = tempfile::tempdir().unwrap();
            let path = common::write_config_with(dir.path(), &pki, &[], extra, options);
            if let Some(first) = servers.first() {
                share_keys(first.dir.path(), dir.path());
            }
            let mut config = Config::load(&path).unwrap();
            config.database_url = database.url.clone();
            servers.push(TestServer::serve(config, pki, dir).await);
        }
        Some(Self {
            servers,
            _database: database,
        })
    }

    /// One server on `backend` with [`CONFIG`].
    async fn single(backend: Backend, test: &str) -> Option<Self> {
        Self::start(backend, test, 1, CONFIG, &ConfigOptions::default()).await
    }

    fn server(&self) -> &TestServer {
        &self.servers[0]
    }

    async fn client(&self, identity: &str) -> AdmissionClient {
        self.server().client(identity).await
    }
}

fn share_keys(from: &Path, to: &Path) {
    for file in ["signing.key", "signing_keys.json"] {
        std::fs::copy(from.join(file), to.join(file)).unwrap();
    }
}

// --- requests ---

fn env(environment_id: &str) -> pb::EnvironmentRef {
    requests::environment("acme", "payments", environment_id)
}

fn spec_hash() -> String {
    SpecHash::of_spec(SPEC).unwrap().to_string()
}

/// A request for approval of deploying [`SPEC`] to `environment_id`.
fn create_request(environment_id: &str) -> pb::CreateApprovalRequest {
    pb::CreateApprovalRequest {
        environment: Some(env(environment_id)),
        action: pb::Action::Deploy as i32,
        spec: Some(pb::create_approval_request::Spec::SpecKv(SPEC.to_vec())),
        capabilities: Vec::new(),
        ttl: None,
        justification: "release 2026.11.3 of payments-api".to_owned(),
        initiated_by: INITIATOR.to_owned(),
    }
}

/// A deploy of [`SPEC`] to `environment_id` carrying `credentials`.
fn deploy(environment_id: &str, request_id: &str, credentials: &[String]) -> pb::DeployRequest {
    pb::DeployRequest {
        pipeline_version: "2026.11.3".to_owned(),
        spec_kv: SPEC.to_vec(),
        config_bundle: Some(bundle(
            &format!("payments-{environment_id}-42"),
            BUNDLE_DIGEST,
            environment_id,
        )),
        credentials: credentials.to_vec(),
        initiated_by: INITIATOR.to_owned(),
        ..requests::deploy(environment_id, request_id)
    }
}

fn list_request(environment_id: &str) -> pb::ListEligibleRequest {
    pb::ListEligibleRequest {
        environment: Some(env(environment_id)),
        action: pb::Action::Deploy as i32,
        spec_hash: spec_hash(),
    }
}

fn decide_request(
    approval_id: &str,
    verdict: pb::Verdict,
    reason: &str,
) -> pb::DecideApprovalRequest {
    pb::DecideApprovalRequest {
        approval_id: approval_id.to_owned(),
        verdict: verdict as i32,
        reason: reason.to_owned(),
    }
}

async fn approve(client: &AdmissionClient, approval_id: &str) -> Result<pb::Approval, AdmitError> {
    client
        .decide_approval(decide_request(approval_id, pb::Verdict::Approve, "checked"))
        .await
}

/// Ids of the approvals ListEligible returns for deploying [`SPEC`] to `environment_id`.
async fn eligible_ids(client: &AdmissionClient, environment_id: &str) -> Vec<String> {
    client
        .list_eligible(list_request(environment_id))
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.approval_id)
        .collect()
}

/// Creates an approval in `prod` as the orchestrator and has alice approve it.
/// A state this version never writes, found in the approvals table, is corrupt data: every
/// read of that approval answers INTERNAL (no ErrorInfo, nothing changed), never "pending",
/// and an admission naming it admits nothing.
async fn unknown_stored_state_is_internal_not_pending(backend: Backend) {
    let Some(fixture) = Fixture::single(backend, "corrupt_state").await else {
        return;
    };
    let orchestrator = fixture.client(ORCHESTRATOR).await;
    let bob = fixture.client(BOB).await;
    let approval = approved(&fixture).await;
    let id = approval.approval_id.clone();
    let sql = format!("UPDATE approvals SET state = 'on_hold' WHERE approval_id = '{id}'");
    execute_sql(backend, &fixture.server().state.config().database_url, &sql).await;

    let internal = |result: Result<pb::Approval, AdmitError>| match result {
        Err(AdmitError::Call(status)) => {
            assert_eq!(status.code(), Code::Internal, "{status:?}");
            assert!(status.details().is_empty(), "{status:?}");
        }
        other => panic!("expected INTERNAL, got {other:?}"),
    };
    internal(orchestrator.get_approval(&id).await);
    internal(
        bob.decide_approval(decide_request(&id, pb::Verdict::Approve, "again"))
            .await,
    );
    internal(bob.revoke_approval(&id, "corrupt").await);
    match orchestrator
        .admit_deploy(deploy("prod", "corrupt-1", &approval.credentials))
        .await
    {
        Err(AdmitError::Call(status)) => assert_eq!(status.code(), Code::Internal),
        other => panic!("expected INTERNAL, got {other:?}"),
    }
}

async fn approved(fixture: &Fixture) -> pb::Approval {
    let orchestrator = fixture.client(ORCHESTRATOR).await;
    let reviewer = fixture.client(REVIEWER).await;
    let created = orchestrator
        .create_approval(create_request("prod"))
        .await
        .unwrap();
    approve(&reviewer, &created.approval_id).await.unwrap()
}

/// The typed rejection of `result`, which must carry exactly `code` and `reason`.
#[track_caller]
fn rejected<T: Debug>(result: Result<T, AdmitError>, code: Code, reason: Reason) -> Rejection {
    match result {
        Err(AdmitError::Rejected(rejection)) => {
            assert_eq!(
                (rejection.code, rejection.reason.as_str()),
                (code, reason.as_str()),
                "{rejection}"
            );
            rejection
        }
        other => panic!("expected {code:?} {}, got {other:?}", reason.as_str()),
    }
}

fn state(approval: &pb::Approval) -> pb::ApprovalState {
    pb::ApprovalState::try_from(approval.state).unwrap()
}

fn claims(token: &str) -> Claims {
    credential::decode(token, 16 * 1024).unwrap().claims
}

fn whole_seconds(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn time(timestamp: Option<&prost_types::Timestamp>) -> SystemTime {
    SystemTime::try_from(timestamp.cloned().unwrap()).unwrap()
}

async fn audit_entries(auditor: &AdmissionClient) -> Vec<pb::AuditEntry> {
    common::server::audit_entries(auditor, 50).await
}

async fn verify(auditor: &AdmissionClient) -> pb::VerifyAuditResponse {
    auditor
        .audit()
        .verify(pb::VerifyAuditRequest {})
        .await
        .unwrap()
        .into_inner()
}

// --- tests ---

async fn lifecycle_from_request_to_consumed_credential(backend: Backend) {
    let Some(fixture) = Fixture::single(backend, "lifecycle").await else {
        return;
    };
    let orchestrator = fixture.client(ORCHESTRATOR).await;
    let reviewer = fixture.client(REVIEWER).await;

    let created = orchestrator
        .create_approval(create_request("prod"))
        .await
        .unwrap();
    let id = created.approval_id.clone();
    assert!(id.starts_with("apr_"), "{id}");
    assert_eq!(state(&created), pb::ApprovalState::Pending);
    assert_eq!(created.environment, Some(env("prod")));
    assert_eq!(created.action, pb::Action::Deploy as i32);
    assert_eq!(created.spec_hash, spec_hash());
    assert_eq!(created.capabilities, ["deploy"]);
    assert_eq!(created.requested_by, ORCHESTRATOR);
    assert_eq!(created.initiated_by, INITIATOR);
    assert_eq!(created.approvals_required, 1);
    assert_eq!(
        created.posture,
        pb::Posture::Prod as i32,
        "reviewers see the posture"
    );
    assert_eq!((created.uses, created.max_uses), (0, 1));
    assert!(created.approvers.is_empty() && created.credentials.is_empty());
    // No ttl asked: the environment's max_credential_ttl (1h).
    let lifetime = time(created.expires_at.as_ref())
        .duration_since(time(created.created_at.as_ref()))
        .unwrap();
    assert_eq!(lifetime, Duration::from_secs(3600));

    // Both the orchestrator and a reviewer see it as created; nothing is eligible yet.
    assert_eq!(orchestrator.get_approval(&id).await.unwrap(), created);
    assert_eq!(reviewer.get_approval(&id).await.unwrap(), created);
    assert!(eligible_ids(&orchestrator, "prod").await.is_empty());

    let decided = reviewer
        .decide_approval(decide_request(&id, pb::Verdict::Approve, "bundle checked"))
        .await
        .unwrap();
    assert_eq!(state(&decided), pb::ApprovalState::Approved);
    assert_eq!(decided.approvers, [REVIEWER]);
    assert_eq!(decided.credentials.len(), 1);
    let claims = claims(&decided.credentials[0]);
    assert_eq!(claims.approval_id, id);
    assert_eq!(claims.issued_by, REVIEWER);
    assert_eq!(claims.kid, SERVICE_KID);
    assert_eq!(claims.spec_hash, spec_hash());
    assert_eq!(
        (
            claims.org_id.as_str(),
            claims.project_id.as_str(),
            claims.environment_id.as_str(),
            claims.environment_posture.as_str()
        ),
        ("acme", "payments", "prod", "prod")
    );
    assert_eq!(claims.capabilities, ["deploy"]);
    assert_eq!(orchestrator.get_approval(&id).await.unwrap(), decided);

    // ListEligible and Preview offer it.
    assert_eq!(eligible_ids(&orchestrator, "prod").await, [id.as_str()]);
    let preview = orchestrator
        .preview_deploy(deploy("prod", "lifecycle-preview", &[]))
        .await
        .unwrap();
    assert_eq!(
        preview.policy_decision,
        pb::PolicyDecision::RequireApproval as i32
    );
    assert_eq!(preview.posture, pb::Posture::Prod as i32);
    assert_eq!(preview.spec_hash, spec_hash());
    assert_eq!(preview.required_capabilities, ["deploy"]);
    assert_eq!(preview.required_approvals, 1);
    let offered: Vec<&str> = preview
        .eligible_approvals
        .iter()
        .map(|a| a.approval_id.as_str())
        .collect();
    assert_eq!(offered, [id.as_str()]);

    let admission = orchestrator
        .admit_deploy(deploy("prod", "lifecycle-1", &decided.credentials))
        .await
        .unwrap();
    assert_eq!(admission.approval_ids, [id.as_str()]);
    assert_eq!(admission.spec_hash, spec_hash());
    assert_eq!(admission.action, pb::Action::Deploy as i32);
    assert!(admission.shadow_reason.is_empty());
    assert!(!admission.audit_entry_hash.is_empty());

    let used = orchestrator.get_approval(&id).await.unwrap();
    assert_eq!((used.uses, used.max_uses), (1, 1));
    assert!(eligible_ids(&orchestrator, "prod").await.is_empty());
    let preview = orchestrator
        .preview_deploy(deploy("prod", "lifecycle-preview-2", &[]))
        .await
        .unwrap();
    assert!(preview.eligible_approvals.is_empty(), "{preview:?}");

    // A retry of the admitted request answers the same admission and consumes nothing.
    let retried = orchestrator
        .admit_deploy(deploy("prod", "lifecycle-1", &decided.credentials))
        .await
        .unwrap();
    assert_eq!(retried.decision_id, admission.decision_id);
    assert_eq!(orchestrator.get_approval(&id).await.unwrap().uses, 1);
}

async fn quorum_needs_two_distinct_reviewers(backend: Backend) {
    let Some(fixture) = Fixture::single(backend, "quorum").await else {
        return;
    };
    let orchestrator = fixture.client(ORCHESTRATOR).await;
    let alice = fixture.client(REVIEWER).await;
    let bob = fixture.client(BOB).await;
    let carol = fixture.client(CAROL).await;

    let created = orchestrator
        .create_approval(create_request("quorum"))
        .await
        .unwrap();
    let id = created.approval_id.clone();
    assert_eq!(created.approvals_required, 2);

    let first = approve(&alice, &id).await.unwrap();
    assert_eq!(state(&first), pb::ApprovalState::Pending);
    assert_eq!(first.approvers, [REVIEWER]);
    // Alice's credential stays inside the service until the quorum is reached.
    assert!(first.credentials.is_empty(), "{first:?}");
    assert!(eligible_ids(&orchestrator, "quorum").await.is_empty());

    let again = rejected(
        approve(&alice, &id).await,
        Code::FailedPrecondition,
        Reason::AlreadyApproved,
    );
    assert_eq!(again.metadata["approval_id"], id);
    assert_eq!(orchestrator.get_approval(&id).await.unwrap(), first);

    // Bob signs in a later second than alice, so their credentials' issue times differ.
    let alice_signed = SystemTime::now();
    while whole_seconds(SystemTime::now()) <= whole_seconds(alice_signed) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let second = approve(&bob, &id).await.unwrap();
    assert_eq!(state(&second), pb::ApprovalState::Approved);
    assert_eq!(second.approvers, [REVIEWER, BOB]);
    assert_eq!(second.credentials.len(), 2);
    let signed: Vec<Claims> = second.credentials.iter().map(|c| claims(c)).collect();
    let issuers: Vec<&str> = signed.iter().map(|c| c.issued_by.as_str()).collect();
    assert_eq!(issuers, [REVIEWER, BOB]);
    // The approval is offered exactly as long as every one of its credentials is valid.
    for claims in &signed {
        assert_eq!(
            claims.expires_at,
            time(second.expires_at.as_ref()),
            "{claims:?}"
        );
    }
    assert_eq!(eligible_ids(&orchestrator, "quorum").await, [id.as_str()]);

    // One reviewer's credential alone does not meet the quorum.
    rejected(
        orchestrator
            .admit_deploy(deploy(
                "quorum",
                "quorum-alice-only",
                &second.credentials[..1],
            ))
            .await,
        Code::PermissionDenied,
        Reason::QuorumNotMet,
    );

    // A third reviewer finds nothing left to decide.
    rejected(
        approve(&carol, &id).await,
        Code::FailedPrecondition,
        Reason::ApprovalNotPending,
    );

    let admission = orchestrator
        .admit_deploy(deploy("quorum", "quorum-both", &second.credentials))
        .await
        .unwrap();
    assert_eq!(admission.approval_ids, [id.as_str()]);
    assert_eq!(orchestrator.get_approval(&id).await.unwrap().uses, 1);
}

async fn unapproved_quorum_releases_no_credentials(backend: Backend) {
    let Some(fixture) = Fixture::single(backend, "partial_quorum").await else {
        return;
    };
    let orchestrator = fixture.client(ORCHESTRATOR).await;
    let alice = fixture.client(REVIEWER).await;
    let bob = fixture.client(BOB).await;

    // Alice approves A, bob denies it; bob approves B, which nobody else approves. Were the
    // signed credentials handed out, alice's from A and bob's from B would make a quorum of
    // two for a deploy that no approval passed.
    let a = orchestrator
        .create_approval(create_request("quorum"))
        .await
        .unwrap();
    let partial = approve(&alice, &a.approval_id).await.unwrap();
    assert!(partial.credentials.is_empty(), "{partial:?}");
    let denied = bob
        .decide_approval(decide_request(
            &a.approval_id,
            pb::Verdict::Deny,
            "not this one",
        ))
        .await
        .unwrap();
    assert_eq!(state(&denied), pb::ApprovalState::Denied);
    assert_eq!(denied.approvers, [REVIEWER]);
    let b = orchestrator
        .create_approval(create_request("quorum"))
        .await
        .unwrap();
    approve(&bob, &b.approval_id).await.unwrap();

    for id in [&a.approval_id, &b.approval_id] {
        for client in [&orchestrator, &alice, &bob] {
            let approval = client.get_approval(id).await.unwrap();
            assert!(approval.credentials.is_empty(), "{approval:?}");
        }
    }
    assert!(eligible_ids(&orchestrator, "quorum").await.is_empty());
    let preview = orchestrator
        .preview_deploy(deploy("quorum", "partial-preview", &[]))
        .await
        .unwrap();
    assert!(preview.eligible_approvals.is_empty(), "{preview:?}");
}

async fn requester_and_initiator_cannot_approve(backend: Backend) {
    let Some(fixture) = Fixture::single(backend, "self_approval").await else {
        return;
    };
    let orchestrator = fixture.client(ORCHESTRATOR).await;
    let alice = fixture.client(REVIEWER).await;
    let bob = fixture.client(BOB).await;
    let carol = fixture.client(CAROL).await;

    // Carol holds both roles: she may request, but not approve her own request.
    let mine = carol.create_approval(create_request("prod")).await.unwrap();
    assert_eq!(mine.requested_by, CAROL);
    let refusal = rejected(
        approve(&carol, &mine.approval_id).await,
        Code::PermissionDenied,
        Reason::SelfApproval,
    );
    assert_eq!(refusal.metadata["approval_id"], mine.approval_id);
    // The refused attempt is itself audited, under the decision_id it answered with.
    let decision_id = refusal
        .decision_id
        .clone()
        .expect("refusals carry a decision_id");
    let auditor = fixture.client(AUDITOR).await;
    let recorded = audit_entries(&auditor)
        .await
        .into_iter()
        .find(|entry| entry.entry_id == decision_id)
        .expect("the refused self-approval is audited");
    assert_eq!(recorded.actor, CAROL);
    assert_eq!(recorded.action, "approval.decide");
    assert_eq!(recorded.outcome, "rejected");
    assert_eq!(recorded.reason, "SELF_APPROVAL");
    assert_eq!(recorded.grpc_code, "PERMISSION_DENIED");
    assert_eq!(
        recorded.approval_ids,
        std::slice::from_ref(&mine.approval_id)
    );
    assert_eq!(recorded.spec_hash, mine.spec_hash);
    rejected(
        carol
            .decide_approval(decide_request(&mine.approval_id, pb::Verdict::Deny, "no"))
            .await,
        Code::PermissionDenied,
        Reason::SelfApproval,
    );
    assert_eq!(carol.get_approval(&mine.approval_id).await.unwrap(), mine);

    // The orchestrator acting for alice: alice may not approve it, bob may.
    let request = pb::CreateApprovalRequest {
        initiated_by: REVIEWER.to_owned(),
        ..create_request("prod")
    };
    let for_alice = orchestrator.create_approval(request).await.unwrap();
    rejected(
        approve(&alice, &for_alice.approval_id).await,
        Code::PermissionDenied,
        Reason::SelfApproval,
    );
    let pending = orchestrator
        .get_approval(&for_alice.approval_id)
        .await
        .unwrap();
    assert_eq!(state(&pending), pb::ApprovalState::Pending);
    assert!(pending.approvers.is_empty());
    let approved = approve(&bob, &for_alice.approval_id).await.unwrap();
    assert_eq!(state(&approved), pb::ApprovalState::Approved);
    assert_eq!(approved.approvers, [BOB]);
}

async fn denied_approval_cannot_be_decided_again(backend: Backend) {
    let Some(fixture) = Fixture::single(backend, "deny").await else {
        return;
    };
    let orchestrator = fixture.client(ORCHESTRATOR).await;
    let alice = fixture.client(REVIEWER).await;
    let bob = fixture.client(BOB).await;

    let created = orchestrator
        .create_approval(create_request("prod"))
        .await
        .unwrap();
    let id = created.approval_id.clone();
    let denied = alice
        .decide_approval(decide_request(
            &id,
            pb::Verdict::Deny,
            "wrong config bundle",
        ))
        .await
        .unwrap();
    assert_eq!(state(&denied), pb::ApprovalState::Denied);
    assert_eq!(denied.decision_reason, "wrong config bundle");
    assert!(denied.credentials.is_empty());
    assert_eq!(orchestrator.get_approval(&id).await.unwrap(), denied);
    assert!(eligible_ids(&orchestrator, "prod").await.is_empty());

    for (client, verdict) in [(&bob, pb::Verdict::Approve), (&alice, pb::Verdict::Deny)] {
        let refusal = rejected(
            client
                .decide_approval(decide_request(&id, verdict, "second look"))
                .await,
            Code::FailedPrecondition,
            Reason::ApprovalNotPending,
        );
        assert_eq!(refusal.metadata["approval_id"], id);
    }
    rejected(
        bob.revoke_approval(&id, "already denied").await,
        Code::FailedPrecondition,
        Reason::ApprovalNotRevocable,
    );
    assert_eq!(orchestrator.get_approval(&id).await.unwrap(), denied);
}

async fn revoked_approval_is_refused(backend: Backend) {
    let Some(fixture) = Fixture::single(backend, "revoke").await else {
        return;
    };
    let orchestrator = fixture.client(ORCHESTRATOR).await;
    let bob = fixture.client(BOB).await;
    let approval = approved(&fixture).await;
    let id = approval.approval_id.clone();

    let revoked = bob
        .revoke_approval(&id, "incident INC-7 freezes payments")
        .await
        .unwrap();
    assert_eq!(state(&revoked), pb::ApprovalState::Revoked);
    assert_eq!(revoked.decision_reason, "incident INC-7 freezes payments");
    assert!(eligible_ids(&orchestrator, "prod").await.is_empty());

    let refusal = rejected(
        orchestrator
            .admit_deploy(deploy("prod", "revoked-1", &approval.credentials))
            .await,
        Code::PermissionDenied,
        Reason::ApprovalRevoked,
    );
    assert_eq!(refusal.metadata["approval_id"], id);
    assert!(refusal.decision_id.is_some());
    assert_eq!(orchestrator.get_approval(&id).await.unwrap().uses, 0);
    rejected(
        bob.revoke_approval(&id, "twice").await,
        Code::FailedPrecondition,
        Reason::ApprovalNotRevocable,
    );
}

async fn single_use_approval_is_consumed_once(backend: Backend) {
    let Some(fixture) = Fixture::single(backend, "single_use").await else {
        return;
    };
    let orchestrator = fixture.client(ORCHESTRATOR).await;
    let approval = approved(&fixture).await;
    let id = approval.approval_id.clone();

    orchestrator
        .admit_deploy(deploy("prod", "single-use-1", &approval.credentials))
        .await
        .unwrap();
    let refusal = rejected(
        orchestrator
            .admit_deploy(deploy("prod", "single-use-2", &approval.credentials))
            .await,
        Code::FailedPrecondition,
        Reason::ApprovalConsumed,
    );
    assert_eq!(refusal.metadata["approval_id"], id);
    assert!(refusal.decision_id.is_some());
    let used = orchestrator.get_approval(&id).await.unwrap();
    assert_eq!((used.uses, used.max_uses), (1, 1));
}

/// Resetting a consumed single-use approval's `uses` in the database would let it admit
/// again; Verify recomputes the uses from the chain and names the approval whose row
/// disagrees, while the trail before the edit verifies clean.
async fn verify_reports_uses_reset_behind_the_chain(backend: Backend) {
    let Some(fixture) = Fixture::single(backend, "uses_reset").await else {
        return;
    };
    let orchestrator = fixture.client(ORCHESTRATOR).await;
    let auditor = fixture.client(AUDITOR).await;
    let approval = approved(&fixture).await;
    let id = approval.approval_id.clone();
    orchestrator
        .admit_deploy(deploy("prod", "uses-reset-1", &approval.credentials))
        .await
        .unwrap();
    let clean = verify(&auditor).await;
    assert!(clean.ok, "{clean:?}");
    assert!(clean.mismatches.is_empty(), "{clean:?}");

    let sql = format!("UPDATE approvals SET uses = 0 WHERE approval_id = '{id}'");
    execute_sql(backend, &fixture.server().state.config().database_url, &sql).await;
    let report = verify(&auditor).await;
    assert!(!report.ok, "{report:?}");
    assert_eq!(report.first_bad_seq, 0, "the chain itself is intact");
    assert_eq!(report.entries_checked, clean.entries_checked);
    assert_eq!(
        report.mismatches,
        [pb::DerivedStateMismatch {
            approval_id: id.clone(),
            field: "uses".to_owned(),
            stored: "0".to_owned(),
            derived: "1".to_owned(),
            ..pb::DerivedStateMismatch::default()
        }]
    );

    // Putting the row back as the chain records it verifies clean again.
    let sql = format!("UPDATE approvals SET uses = 1 WHERE approval_id = '{id}'");
    execute_sql(backend, &fixture.server().state.config().database_url, &sql).await;
    let report = verify(&auditor).await;
    assert!(report.ok, "{report:?}");

    // A revocation is in the chain too: a row put back to approved behind it disagrees.
    let reviewer = fixture.client(REVIEWER).await;
    reviewer.revoke_approval(&id, "rotated").await.unwrap();
    assert!(verify(&auditor).await.ok);
    let sql = format!("UPDATE approvals SET state = 'approved' WHERE approval_id = '{id}'");
    execute_sql(backend, &fixture.server().state.config().database_url, &sql).await;
    let report = verify(&auditor).await;
    assert!(!report.ok, "{report:?}");
    assert_eq!(
        report.mismatches,
        [pb::DerivedStateMismatch {
            approval_id: id,
            field: "state".to_owned(),
            stored: "approved".to_owned(),
            derived: "revoked".to_owned(),
            ..pb::DerivedStateMismatch::default()
        }]
    );
}

async fn concurrent_admits_consume_a_single_use_approval_once(backend: Backend) {
    // SQLite: one server. PostgreSQL: two servers sharing the database, 25 admits each.
    let instances = match backend {
        Backend::Sqlite => 1,
        Backend::Postgres => 2,
    };
    let options = ConfigOptions::default();
    let Some(fixture) = Fixture::start(backend, "race", instances, CONFIG, &options).await else {
        return;
    };
    let approval = approved(&fixture).await;
    let id = approval.approval_id.clone();
    let mut clients = Vec::new();
    for server in &fixture.servers {
        clients.push(server.client(ORCHESTRATOR).await);
    }

    let mut tasks = Vec::new();
    for n in 0..50 {
        let client = clients[n % clients.len()].clone();
        let request = deploy("prod", &format!("race-{n}"), &approval.credentials);
        tasks.push(tokio::spawn(
            async move { client.admit_deploy(request).await },
        ));
    }
    let mut admitted = Vec::new();
    let mut consumed = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(admission) => admitted.push(admission),
            result => {
                let refusal = rejected(result, Code::FailedPrecondition, Reason::ApprovalConsumed);
                assert_eq!(refusal.metadata["approval_id"], id);
                consumed += 1;
            }
        }
    }
    assert_eq!((admitted.len(), consumed), (1, 49));
    assert_eq!(admitted[0].approval_ids, [id.as_str()]);
    for client in &clients {
        assert_eq!(client.get_approval(&id).await.unwrap().uses, 1);
    }

    // One chain records all 50 decisions, whichever instance made them.
    let auditor = fixture.client(AUDITOR).await;
    let entries = audit_entries(&auditor).await;
    let races: Vec<&pb::AuditEntry> = entries
        .iter()
        .filter(|e| e.request_id.starts_with("race-"))
        .collect();
    assert_eq!(races.len(), 50);
    let outcomes = |outcome: &str, reason: &str| {
        races
            .iter()
            .filter(|e| e.outcome == outcome && e.reason == reason)
            .count()
    };
    assert_eq!(outcomes("admitted", ""), 1);
    assert_eq!(outcomes("rejected", "APPROVAL_CONSUMED"), 49);
    let report = verify(&auditor).await;
    assert!(report.ok, "{report:?}");
    assert_eq!(report.entries_checked, entries.len() as u64);
}

/// Clients for `identity` on every server of the fixture.
async fn clients_on_every_server(fixture: &Fixture, identity: &str) -> Vec<AdmissionClient> {
    let mut clients = Vec::new();
    for server in &fixture.servers {
        clients.push(server.client(identity).await);
    }
    clients
}

/// Sends `request` `times` times at once, spread over `clients`, and collects the answers.
async fn admit_concurrently(
    clients: &[AdmissionClient],
    request: &pb::DeployRequest,
    times: usize,
) -> Vec<Result<pb::Admission, AdmitError>> {
    let tasks: Vec<_> = (0..times)
        .map(|n| {
            let client = clients[n % clients.len()].clone();
            let request = request.clone();
            tokio::spawn(async move { client.admit_deploy(request).await })
        })
        .collect();
    let mut answers = Vec::with_capacity(times);
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    answers
}

/// The entries recorded for `request_id`.
fn entries_for<'a>(entries: &'a [pb::AuditEntry], request_id: &str) -> Vec<&'a pb::AuditEntry> {
    entries
        .iter()
        .filter(|e| e.request_id == request_id)
        .collect()
}

async fn concurrent_retries_of_one_admit_all_get_the_admission(backend: Backend) {
    // One request sent 100 times at once (a client retrying eagerly): SQLite through one
    // server, PostgreSQL through two servers sharing the database, 50 each.
    let instances = match backend {
        Backend::Sqlite => 1,
        Backend::Postgres => 2,
    };
    let options = ConfigOptions::default();
    let Some(fixture) = Fixture::start(backend, "retry", instances, CONFIG, &options).await else {
        return;
    };
    let approval = approved(&fixture).await;
    let id = approval.approval_id.clone();
    let clients = clients_on_every_server(&fixture, ORCHESTRATOR).await;
    let request = deploy("prod", "retry-1", &approval.credentials);

    let answers = admit_concurrently(&clients, &request, 100).await;
    let admissions: Vec<pb::Admission> = answers
        .into_iter()
        .map(|answer| answer.unwrap_or_else(|e| panic!("a retry was not admitted: {e:?}")))
        .collect();
    let original = &admissions[0];
    assert!(original.decision_id.starts_with("dec_"), "{original:?}");
    assert_eq!(original.approval_ids, [id.as_str()]);
    for admission in &admissions {
        assert_eq!(admission, original);
    }
    for client in &clients {
        let stored = client.get_approval(&id).await.unwrap();
        assert_eq!((stored.uses, stored.max_uses), (1, 1));
    }

    // The trail holds the one admission, and nothing for any of the retries.
    let auditor = fixture.client(AUDITOR).await;
    let entries = audit_entries(&auditor).await;
    let recorded = entries_for(&entries, "retry-1");
    assert_eq!(recorded.len(), 1, "{recorded:#?}");
    assert_eq!(recorded[0].outcome, "admitted");
    assert_eq!(recorded[0].entry_id, original.decision_id);
    assert_eq!(recorded[0].entry_hash, original.audit_entry_hash);
    let report = verify(&auditor).await;
    assert!(report.ok, "{report:?}");
    assert_eq!(report.entries_checked, entries.len() as u64);
}

async fn concurrent_retries_of_a_rejected_admit_are_each_rejected(backend: Backend) {
    // A rejection is not an answer the store replays: each retry is decided, recorded and
    // answered on its own, so every one of them gets the rejection under its own decision_id.
    let instances = match backend {
        Backend::Sqlite => 1,
        Backend::Postgres => 2,
    };
    let options = ConfigOptions::default();
    let Some(fixture) =
        Fixture::start(backend, "retry_rejected", instances, CONFIG, &options).await
    else {
        return;
    };
    let approval = approved(&fixture).await;
    let clients = clients_on_every_server(&fixture, ORCHESTRATOR).await;
    clients[0]
        .admit_deploy(deploy("prod", "retry-first", &approval.credentials))
        .await
        .unwrap();
    let request = deploy("prod", "retry-late", &approval.credentials);

    let answers = admit_concurrently(&clients, &request, 20).await;
    let mut decision_ids = std::collections::BTreeSet::new();
    for answer in answers {
        let refusal = rejected(answer, Code::FailedPrecondition, Reason::ApprovalConsumed);
        decision_ids.insert(refusal.decision_id.unwrap());
    }
    assert_eq!(decision_ids.len(), 20);

    let auditor = fixture.client(AUDITOR).await;
    let entries = audit_entries(&auditor).await;
    let recorded = entries_for(&entries, "retry-late");
    let recorded_ids: std::collections::BTreeSet<String> = recorded
        .iter()
        .map(|e| {
            assert_eq!(
                (e.outcome.as_str(), e.reason.as_str()),
                ("rejected", "APPROVAL_CONSUMED")
            );
            e.entry_id.clone()
        })
        .collect();
    assert_eq!(recorded_ids, decision_ids);
    let used = clients[0]
        .get_approval(&approval.approval_id)
        .await
        .unwrap();
    assert_eq!(used.uses, 1);
    assert!(verify(&auditor).await.ok);
}

async fn concurrent_reviews_are_each_counted_once(backend: Backend) {
    // Alice and bob decide at the same moment, on two instances when on PostgreSQL.
    let instances = match backend {
        Backend::Sqlite => 1,
        Backend::Postgres => 2,
    };
    let options = ConfigOptions::default();
    let Some(fixture) = Fixture::start(backend, "review_race", instances, CONFIG, &options).await
    else {
        return;
    };
    let last = fixture.servers.len() - 1;
    let orchestrator = fixture.client(ORCHESTRATOR).await;
    let alice = fixture.servers[0].client(REVIEWER).await;
    let bob = fixture.servers[last].client(BOB).await;
    let race = |id: String| {
        let (alice, bob) = (alice.clone(), bob.clone());
        async move {
            let (a, b) = tokio::join!(
                tokio::spawn({
                    let id = id.clone();
                    async move { approve(&alice, &id).await }
                }),
                tokio::spawn(async move { approve(&bob, &id).await }),
            );
            [a.unwrap(), b.unwrap()]
        }
    };

    // One approval needed: one reviewer signs, the other finds it decided.
    let single = orchestrator
        .create_approval(create_request("prod"))
        .await
        .unwrap();
    let [a, b] = race(single.approval_id.clone()).await;
    let (won, lost) = match (a, b) {
        (Ok(won), lost) | (lost, Ok(won)) => (won, lost),
        other => panic!("expected one approval to succeed, got {other:?}"),
    };
    rejected(lost, Code::FailedPrecondition, Reason::ApprovalNotPending);
    assert_eq!(state(&won), pb::ApprovalState::Approved);
    assert_eq!(won.credentials.len(), 1);
    let stored = orchestrator
        .get_approval(&single.approval_id)
        .await
        .unwrap();
    assert_eq!(stored, won);

    // Two needed: both sign, neither overwrites the other.
    let quorum = orchestrator
        .create_approval(create_request("quorum"))
        .await
        .unwrap();
    for result in race(quorum.approval_id.clone()).await {
        result.unwrap();
    }
    let stored = orchestrator
        .get_approval(&quorum.approval_id)
        .await
        .unwrap();
    assert_eq!(state(&stored), pb::ApprovalState::Approved);
    let mut approvers = stored.approvers.clone();
    approvers.sort();
    assert_eq!(approvers, [REVIEWER, BOB]);
    assert_eq!(stored.credentials.len(), 2);
    orchestrator
        .admit_deploy(deploy("quorum", "review-race-1", &stored.credentials))
        .await
        .unwrap();

    let auditor = fixture.client(AUDITOR).await;
    let approvals = audit_entries(&auditor)
        .await
        .into_iter()
        .filter(|e| e.outcome == "approval_approved")
        .count();
    assert_eq!(approvals, 3);
    assert!(verify(&auditor).await.ok);
}

async fn expired_approval_leaves_the_eligible_list(backend: Backend) {
    let Some(fixture) = Fixture::single(backend, "expiry").await else {
        return;
    };
    let orchestrator = fixture.client(ORCHESTRATOR).await;
    let reviewer = fixture.client(REVIEWER).await;
    let request = pb::CreateApprovalRequest {
        ttl: Some(prost_types::Duration {
            seconds: 2,
            nanos: 0,
        }),
        ..create_request("brief")
    };

    // A loaded machine may let a 2 s request expire before the reviewer gets to it; ask again.
    let mut approved = None;
    for _ in 0..10 {
        let created = orchestrator.create_approval(request.clone()).await.unwrap();
        let lifetime = time(created.expires_at.as_ref())
            .duration_since(time(created.created_at.as_ref()))
            .unwrap();
        assert_eq!(lifetime, Duration::from_secs(2));
        match approve(&reviewer, &created.approval_id).await {
            Ok(approval) => {
                approved = Some(approval);
                break;
            }
            result => {
                rejected(result, Code::FailedPrecondition, Reason::ApprovalNotPending);
            }
        }
    }
    let approval = approved.expect("one short-lived approval approved before it expired");
    let id = approval.approval_id.clone();
    let claims = claims(&approval.credentials[0]);
    assert_eq!(
        claims.expires_at.duration_since(claims.issued_at).unwrap(),
        Duration::from_secs(2)
    );

    // Eventually (well within 30 s) it is no longer offered.
    let mut gone = false;
    for _ in 0..300 {
        if !eligible_ids(&orchestrator, "brief").await.contains(&id) {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "approval {id} still eligible after 30 s");
    let expired = orchestrator.get_approval(&id).await.unwrap();
    assert_eq!(state(&expired), pb::ApprovalState::Expired);
    assert_eq!(expired.uses, 0);
    rejected(
        approve(&fixture.client(BOB).await, &id).await,
        Code::FailedPrecondition,
        Reason::ApprovalNotPending,
    );

    // Once past its expiry and the environment's clock skew, the credential is refused.
    let skew = Duration::from_secs(1);
    while SystemTime::now() <= claims.expires_at + skew {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    rejected(
        orchestrator
            .admit_deploy(deploy("brief", "expired-1", &approval.credentials))
            .await,
        Code::Unauthenticated,
        Reason::CredentialExpired,
    );
    assert_eq!(orchestrator.get_approval(&id).await.unwrap().uses, 0);
}

async fn decide_without_signing_key_is_refused(backend: Backend) {
    let options = ConfigOptions {
        without_signing: true,
        ..ConfigOptions::default()
    };
    let Some(fixture) = Fixture::start(backend, "unsigned", 1, CONFIG, &options).await else {
        return;
    };
    let orchestrator = fixture.client(ORCHESTRATOR).await;
    let reviewer = fixture.client(REVIEWER).await;
    let created = orchestrator
        .create_approval(create_request("prod"))
        .await
        .unwrap();
    let refusal = rejected(
        approve(&reviewer, &created.approval_id).await,
        Code::FailedPrecondition,
        Reason::SigningNotConfigured,
    );
    assert_eq!(refusal.metadata["approval_id"], created.approval_id);
    assert_eq!(
        orchestrator
            .get_approval(&created.approval_id)
            .await
            .unwrap(),
        created
    );
    // Denying needs no key.
    let denied = reviewer
        .decide_approval(decide_request(
            &created.approval_id,
            pb::Verdict::Deny,
            "sign offline instead",
        ))
        .await
        .unwrap();
    assert_eq!(state(&denied), pb::ApprovalState::Denied);
}

async fn every_lifecycle_event_is_audited(backend: Backend) {
    let Some(fixture) = Fixture::single(backend, "audit").await else {
        return;
    };
    let orchestrator = fixture.client(ORCHESTRATOR).await;
    let alice = fixture.client(REVIEWER).await;
    let bob = fixture.client(BOB).await;
    let auditor = fixture.client(AUDITOR).await;

    let kept = orchestrator
        .create_approval(create_request("prod"))
        .await
        .unwrap();
    let kept_id = kept.approval_id.clone();
    let kept = approve(&alice, &kept_id).await.unwrap();
    orchestrator
        .admit_deploy(deploy("prod", "audit-1", &kept.credentials))
        .await
        .unwrap();
    bob.revoke_approval(&kept_id, "superseded by 2026.11.4")
        .await
        .unwrap();
    rejected(
        orchestrator
            .admit_deploy(deploy("prod", "audit-2", &kept.credentials))
            .await,
        Code::PermissionDenied,
        Reason::ApprovalRevoked,
    );
    let refused = orchestrator
        .create_approval(create_request("prod"))
        .await
        .unwrap();
    let refused_id = refused.approval_id.clone();
    alice
        .decide_approval(decide_request(&refused_id, pb::Verdict::Deny, "not today"))
        .await
        .unwrap();

    let entries = audit_entries(&auditor).await;
    let about = |id: &str| -> Vec<(String, String, String)> {
        entries
            .iter()
            .filter(|e| e.approval_ids.iter().any(|a| a == id))
            .map(|e| (e.actor.clone(), e.action.clone(), e.outcome.clone()))
            .collect()
    };
    let row = |actor: &str, action: &str, outcome: &str| {
        (actor.to_owned(), action.to_owned(), outcome.to_owned())
    };
    assert_eq!(
        about(&kept_id),
        [
            row(ORCHESTRATOR, "approval.create", "approval_created"),
            row(REVIEWER, "approval.decide", "approval_approved"),
            row(ORCHESTRATOR, "deploy.admit", "admitted"),
            row(BOB, "approval.revoke", "approval_revoked"),
        ]
    );
    assert_eq!(
        about(&refused_id),
        [
            row(ORCHESTRATOR, "approval.create", "approval_created"),
            row(REVIEWER, "approval.decide", "approval_denied"),
        ]
    );
    for entry in entries.iter().filter(|e| e.action.starts_with("approval.")) {
        assert_eq!(entry.resource_scope, Some(env("prod")), "{entry:?}");
        assert_eq!(entry.spec_hash, spec_hash(), "{entry:?}");
        assert_eq!(entry.initiated_by, INITIATOR, "{entry:?}");
        assert_eq!(entry.grpc_code, "OK", "{entry:?}");
        assert_eq!(entry.actor_cert_sha256.len(), 64, "{entry:?}");
    }
    let approved_entry = entries
        .iter()
        .find(|e| e.outcome == "approval_approved")
        .unwrap();
    assert_eq!(approved_entry.approvers, [REVIEWER]);
    let denied_entry = entries
        .iter()
        .find(|e| e.outcome == "approval_denied")
        .unwrap();
    assert!(
        denied_entry.detail.contains("not today"),
        "{denied_entry:?}"
    );
    let revoked_entry = entries
        .iter()
        .find(|e| e.outcome == "approval_revoked")
        .unwrap();
    assert!(
        revoked_entry.detail.contains("superseded by 2026.11.4"),
        "{revoked_entry:?}"
    );
    // The refused admission is recorded too, with its reason and code.
    let refusal = entries.iter().find(|e| e.request_id == "audit-2").unwrap();
    assert_eq!(
        (
            refusal.outcome.as_str(),
            refusal.reason.as_str(),
            refusal.grpc_code.as_str()
        ),
        ("rejected", "APPROVAL_REVOKED", "PERMISSION_DENIED")
    );

    let report = verify(&auditor).await;
    assert!(report.ok, "{report:?}");
    assert_eq!(report.entries_checked, entries.len() as u64);
    assert_eq!(report.head_hash, entries.last().unwrap().entry_hash);
}

async fn callers_need_the_role_for_each_rpc(backend: Backend) {
    let Some(fixture) = Fixture::single(backend, "roles").await else {
        return;
    };
    let orchestrator = fixture.client(ORCHESTRATOR).await;
    let reviewer = fixture.client(REVIEWER).await;
    let auditor = fixture.client(AUDITOR).await;
    let created = orchestrator
        .create_approval(create_request("prod"))
        .await
        .unwrap();
    let id = created.approval_id.as_str();

    let denied = |result: Result<pb::Approval, AdmitError>| {
        rejected(result, Code::PermissionDenied, Reason::CallerNotAuthorized);
    };
    denied(reviewer.create_approval(create_request("prod")).await);
    denied(auditor.create_approval(create_request("prod")).await);
    denied(approve(&orchestrator, id).await);
    denied(orchestrator.revoke_approval(id, "not mine to revoke").await);
    denied(auditor.get_approval(id).await);
    rejected(
        auditor.list_eligible(list_request("prod")).await,
        Code::PermissionDenied,
        Reason::CallerNotAuthorized,
    );
    rejected(
        orchestrator.get_approval("apr_does_not_exist").await,
        Code::NotFound,
        Reason::ApprovalNotFound,
    );
    rejected(
        orchestrator
            .create_approval(create_request("nowhere"))
            .await,
        Code::NotFound,
        Reason::EnvironmentUnknown,
    );
    assert_eq!(orchestrator.get_approval(id).await.unwrap(), created);
}
