//! The operator flow for a governed deploy, step by step through the client crate, against the
//! files `admission-server dev` writes (environments `dev/app/dev` and `dev/app/prod`; the
//! orchestrator, reviewer and auditor identities of `spiffe://dev.local`):
//!
//! 1. prepare the spec and the config bundle;
//! 2. start: preview the deploy to `dev/app/prod` (approval required), and see an admit without
//!    credentials refused;
//! 3. review the environment, spec hash and required capabilities from the preview;
//! 4. request an approval, have a reviewer approve it, find it eligible;
//! 5. deploy with the approval's credentials attached;
//! 6. confirm the audit trail records actor, scope and decision of every step, and verifies.
//!
//! The constants are the ones the README's command-line version of this flow uses.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use admission_client::{AdmissionClient, AdmitError, Reason, SpecHash, pb};
use admission_server::{
    runtime::config::Config, runtime::dev, runtime::serve, runtime::state::AppState,
};
use common::dev::dev_client;
use tokio::net::TcpListener;
use tonic::Code;

/// The pipeline's canonical spec, saved as `spec.kv`.
const SPEC_KV: &str = "pipeline=payments-api\nversion=2026.11.24\nreplicas=3\n";
/// `sha256sum spec.kv`, as the service reports it.
const SPEC_HASH: &str = "sha256:9855b3ae9b513eba5ba4ac792cfccb479a49d82a0c3531822baba0720c2d6779";
/// The config bundle for production, saved as `bundle.cfg`.
const BUNDLE: &str = "db_pool=20\n";
/// `sha256sum bundle.cfg`.
const BUNDLE_DIGEST: &str =
    "sha256:e38dbe43eb0702d1ce3ff3cdcde6c35440c8b7ad9ee028cfd9f8204df04eb0e4";
/// The bundle's id.
const BUNDLE_ID: &str = "payments-config-42";
/// The pipeline version deployed.
const PIPELINE_VERSION: &str = "2026.11.24";
/// The deploy target, as `--env` takes it.
const ENVIRONMENT: (&str, &str, &str) = ("dev", "app", "prod");
/// The person the orchestrator deploys for.
const INITIATED_BY: &str = "alice@example.com";
/// Why the deploy needs approval.
const JUSTIFICATION: &str = "release 2026.11.24 of payments-api";
/// The reviewer's reason.
const APPROVE_REASON: &str = "spec and bundle checked";
/// The request id of the refused first attempt.
const FIRST_REQUEST_ID: &str = "deploy-001";
/// The request id of the approved deploy.
const REQUEST_ID: &str = "deploy-004";

/// Identities `admission-server dev` issues certificates for.
const ORCHESTRATOR: &str = "spiffe://dev.local/orchestrator/ci";
const REVIEWER: &str = "spiffe://dev.local/reviewer/alice";

fn environment() -> pb::EnvironmentRef {
    common::requests::environment(ENVIRONMENT.0, ENVIRONMENT.1, ENVIRONMENT.2)
}

/// The deploy request as `admissionctl deploy preview|admit` builds it from the files.
fn deploy_request(dir: &Path, request_id: &str, credentials: Vec<String>) -> pb::DeployRequest {
    let spec_kv = std::fs::read(dir.join("spec.kv")).unwrap();
    let bundle = std::fs::read(dir.join("bundle.cfg")).unwrap();
    pb::DeployRequest {
        request_id: request_id.to_owned(),
        environment: Some(environment()),
        pipeline_version: PIPELINE_VERSION.to_owned(),
        spec_kv,
        config_bundle: Some(pb::ConfigBundle {
            bundle_id: BUNDLE_ID.to_owned(),
            digest: sha256(&bundle),
            environment_id: ENVIRONMENT.2.to_owned(),
        }),
        required_capabilities: Vec::new(),
        credentials,
        initiated_by: INITIATED_BY.to_owned(),
        break_glass: None,
    }
}

fn sha256(bytes: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

async fn client_as(env: &dev::DevEnvironment, port: u16, stem: &str) -> AdmissionClient {
    dev_client(&env.dir, port, stem).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_flow_for_a_governed_deploy() {
    let tmp = tempfile::tempdir().unwrap();
    let env = dev::prepare(&tmp.path().join("dev")).unwrap();
    let config = Config::load(&env.config).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let state = AppState::new(config).await.expect("state");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve::serve_with_listener(listener, state, async move {
        let _ = stopped.await;
    }));
    let orchestrator = client_as(&env, port, "orchestrator").await;
    let reviewer = client_as(&env, port, "reviewer").await;
    let auditor = client_as(&env, port, "auditor").await;

    // 1. Prepare the pipeline version and config bundle.
    let work = tmp.path().join("release");
    std::fs::create_dir(&work).unwrap();
    std::fs::write(work.join("spec.kv"), SPEC_KV).unwrap();
    std::fs::write(work.join("bundle.cfg"), BUNDLE).unwrap();
    assert_eq!(
        SpecHash::of_spec(SPEC_KV.as_bytes()).unwrap().to_string(),
        SPEC_HASH
    );
    assert_eq!(sha256(BUNDLE.as_bytes()), BUNDLE_DIGEST);

    // 2. Start the deployment: production needs an approval, and nothing is attached yet.
    let preview = orchestrator
        .preview_deploy(deploy_request(&work, FIRST_REQUEST_ID, Vec::new()))
        .await
        .unwrap();
    assert_eq!(
        preview.policy_decision,
        pb::PolicyDecision::RequireApproval as i32
    );
    assert!(preview.eligible_approvals.is_empty(), "{preview:?}");
    let refused = orchestrator
        .admit_deploy(deploy_request(&work, FIRST_REQUEST_ID, Vec::new()))
        .await;
    let Err(AdmitError::Rejected(refusal)) = refused else {
        panic!("expected APPROVAL_REQUIRED, got {refused:?}");
    };
    assert_eq!(
        (refusal.code, refusal.reason.as_str()),
        (Code::PermissionDenied, Reason::ApprovalRequired.as_str()),
        "{refusal}"
    );
    let refused_decision = refusal.decision_id.clone().expect("recorded decision");

    // 3. Review the environment, spec hash and required capabilities.
    assert_eq!(preview.action, pb::Action::Deploy as i32);
    assert_eq!(preview.posture, pb::Posture::Prod as i32);
    assert_eq!(preview.spec_hash, SPEC_HASH);
    assert_eq!(preview.required_capabilities, ["deploy"]);
    assert_eq!(preview.required_approvals, 1);

    // 4. Obtain an approval from an authorized reviewer.
    let requested = orchestrator
        .create_approval(pb::CreateApprovalRequest {
            environment: Some(environment()),
            action: pb::Action::Deploy as i32,
            spec: Some(pb::create_approval_request::Spec::SpecHash(
                preview.spec_hash.clone(),
            )),
            capabilities: preview.required_capabilities.clone(),
            ttl: None,
            justification: JUSTIFICATION.to_owned(),
            initiated_by: INITIATED_BY.to_owned(),
        })
        .await
        .unwrap();
    let approval_id = requested.approval_id.clone();
    let seen = reviewer.get_approval(&approval_id).await.unwrap();
    assert_eq!(seen.state, pb::ApprovalState::Pending as i32);
    assert_eq!(seen.environment, Some(environment()));
    assert_eq!(seen.spec_hash, SPEC_HASH);
    assert_eq!(seen.capabilities, ["deploy"]);
    assert_eq!(seen.requested_by, ORCHESTRATOR);
    assert_eq!(seen.initiated_by, INITIATED_BY);
    let approved = reviewer
        .decide_approval(pb::DecideApprovalRequest {
            approval_id: approval_id.clone(),
            verdict: pb::Verdict::Approve as i32,
            reason: APPROVE_REASON.to_owned(),
        })
        .await
        .unwrap();
    assert_eq!(approved.state, pb::ApprovalState::Approved as i32);
    assert_eq!(approved.approvers, [REVIEWER]);
    let eligible = orchestrator
        .list_eligible(pb::ListEligibleRequest {
            environment: Some(environment()),
            action: pb::Action::Deploy as i32,
            spec_hash: SPEC_HASH.to_owned(),
        })
        .await
        .unwrap();
    let eligible: Vec<&str> = eligible.iter().map(|a| a.approval_id.as_str()).collect();
    assert_eq!(eligible, [approval_id.as_str()]);

    // 5. Submit the deployment with the approval attached (as `--approval <id>` does).
    let credentials = orchestrator
        .get_approval(&approval_id)
        .await
        .unwrap()
        .credentials;
    assert_eq!(credentials.len(), 1);
    let admission = orchestrator
        .admit_deploy(deploy_request(&work, REQUEST_ID, credentials))
        .await
        .unwrap();
    assert_eq!(admission.approval_ids, [approval_id.as_str()]);
    assert_eq!(admission.spec_hash, SPEC_HASH);

    // 6. The audit trail records actor, scope and decision of every step.
    let entries = auditor
        .audit()
        .list(pb::ListAuditRequest {
            environment: Some(environment()),
            ..pb::ListAuditRequest::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries;
    let steps: Vec<(&str, &str, &str, &str)> = entries
        .iter()
        .map(|e| {
            (
                e.actor.as_str(),
                e.action.as_str(),
                e.outcome.as_str(),
                e.reason.as_str(),
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            (ORCHESTRATOR, "deploy.preview", "previewed", ""),
            (
                ORCHESTRATOR,
                "deploy.admit",
                "rejected",
                "APPROVAL_REQUIRED"
            ),
            (ORCHESTRATOR, "approval.create", "approval_created", ""),
            (REVIEWER, "approval.decide", "approval_approved", ""),
            (ORCHESTRATOR, "deploy.admit", "admitted", ""),
        ]
    );
    for entry in &entries {
        assert_eq!(entry.resource_scope, Some(environment()), "{entry:?}");
        assert_eq!(entry.spec_hash, SPEC_HASH, "{entry:?}");
        assert_eq!(entry.initiated_by, INITIATED_BY, "{entry:?}");
    }
    assert_eq!(entries[1].entry_id, refused_decision);
    assert_eq!(entries[1].request_id, FIRST_REQUEST_ID);
    assert_eq!(entries[1].grpc_code, "PERMISSION_DENIED");
    let admitted = &entries[4];
    assert_eq!(admitted.entry_id, admission.decision_id);
    assert_eq!(admitted.entry_hash, admission.audit_entry_hash);
    assert_eq!(admitted.request_id, REQUEST_ID);
    assert_eq!(admitted.approval_ids, [approval_id.as_str()]);
    assert_eq!(admitted.approvers, [REVIEWER]);
    let verified = auditor
        .audit()
        .verify(pb::VerifyAuditRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(verified.ok, "{verified:?}");
    assert_eq!(verified.entries_checked, entries.len() as u64);

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
