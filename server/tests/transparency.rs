//! The trail as a transparency log over real mTLS, on SQLite and on PostgreSQL when
//! `ADMISSION_TEST_DATABASE_URL` is set: admission receipts, signed checkpoints (stored and
//! written to the checkpoint directory), inclusion and consistency proofs checked with the
//! log crate's verifier, who may ask for which, and a service without a log key.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../tests/common/mod.rs"]
mod common;

use admission_client::{AdmissionClient, Rejection, pb};
use admission_log::{
    Checkpoint, Hash, LogKey, verify_consistency, verify_inclusion, verify_receipt,
};
use admission_server::runtime::config::Config;
use common::requests::{SPEC_KV, deploy};
use common::store::TestDb;
use common::{
    AUDITOR, ConfigOptions, DEV_ENVIRONMENT, ORCHESTRATOR, PROD_ENVIRONMENT, Pki, REVIEWER, ROLES,
    TestServer, write_config_with,
};
use tonic::Code;

const ORIGIN: &str = "test.local/admission/log";
/// `acme/payments/shadow`: prod rules in shadow mode, so a deploy without credentials is
/// admitted reporting APPROVAL_REQUIRED.
const SHADOW_ENVIRONMENT: &str = r#"
[[environments]]
org_id = "acme"
project_id = "payments"
environment_id = "shadow"
posture = "prod"
enforcement = "audit_only"
"#;
/// A second orchestrator, to prove someone else's decision.
const OTHER_ORCHESTRATOR: &str = "spiffe://test.local/orchestrator/other";

on_both_backends!(
    receipts_verify_and_retries_repeat_them,
    checkpoints_and_proofs_verify,
    proof_arguments_and_callers_are_checked,
    without_a_log_key_nothing_is_signed_but_proofs_work,
);

/// A server with a fresh log key (`log.key`) and `checkpoints/` as checkpoint directory when
/// `with_log_key`; returns it with the key.
async fn start(db: &TestDb, with_log_key: bool) -> (TestServer, LogKey) {
    let pki = Pki::new("test clients CA");
    let dir = tempfile::tempdir().unwrap();
    let (key, pem) = LogKey::generate(ORIGIN).unwrap();
    std::fs::write(dir.path().join("log.key"), pem).unwrap();
    let audit = if with_log_key {
        format!(
            "[audit]\nlog_key = \"log.key\"\nlog_origin = {ORIGIN:?}\ncheckpoint_dir = \"checkpoints\"\n"
        )
    } else {
        String::new()
    };
    let extra = format!(
        "{ROLES}{DEV_ENVIRONMENT}{PROD_ENVIRONMENT}{SHADOW_ENVIRONMENT}\n[[roles]]\nidentity = {OTHER_ORCHESTRATOR:?}\nroles = [\"orchestrator\"]\n\n{audit}"
    );
    let path = write_config_with(dir.path(), &pki, &[], &extra, &ConfigOptions::default());
    let mut config = Config::load(&path).unwrap();
    config.database_url = db.url.clone();
    (TestServer::serve(config, pki, dir).await, key)
}

fn rejection(status: &tonic::Status) -> Rejection {
    Rejection::from_status(status).unwrap_or_else(|| panic!("untyped status {status:?}"))
}

fn assert_rejected(status: &tonic::Status, code: Code, reason: &str) -> Rejection {
    let rejection = rejection(status);
    assert_eq!(
        (rejection.code, rejection.reason.as_str()),
        (code, reason),
        "{status:?}"
    );
    rejection
}

fn assert_invalid_field(status: &tonic::Status, field: &str) {
    let rejection = assert_rejected(status, Code::InvalidArgument, "REQUEST_INVALID");
    let fields: Vec<_> = rejection
        .field_violations
        .iter()
        .map(|v| v.field.as_str())
        .collect();
    assert_eq!(fields, [field], "{status:?}");
}

async fn admit(client: &AdmissionClient, request_id: &str) -> pb::Admission {
    client
        .deploy()
        .admit(deploy("dev", request_id))
        .await
        .unwrap()
        .into_inner()
}

async fn entries(auditor: &AdmissionClient) -> Vec<pb::AuditEntry> {
    common::server::audit_entries(auditor, 1000).await
}

async fn checkpoint(auditor: &AdmissionClient) -> pb::Checkpoint {
    let request = pb::GetCheckpointRequest {};
    auditor
        .audit()
        .get_checkpoint(request)
        .await
        .unwrap()
        .into_inner()
}

fn raw(hashes: &[Vec<u8>]) -> Vec<Hash> {
    hashes
        .iter()
        .map(|h| Hash::try_from(h.as_slice()).unwrap())
        .collect()
}

async fn receipts_verify_and_retries_repeat_them(db: &TestDb) {
    let (server, key) = start(db, true).await;
    let orchestrator = server.client(ORCHESTRATOR).await;
    let auditor = server.client(AUDITOR).await;
    admit(&orchestrator, "req-0").await;
    let admission = admit(&orchestrator, "req-1").await;
    let statement = verify_receipt(&admission.receipt, &key.verifier(), Some(SPEC_KV)).unwrap();
    let predicate = &statement.predicate;
    let entry = entries(&auditor)
        .await
        .into_iter()
        .find(|e| e.entry_id == admission.decision_id)
        .unwrap();
    assert_eq!(predicate.decision_id, admission.decision_id);
    assert_eq!(predicate.log_index, entry.seq - 1);
    assert_eq!(predicate.entry_hash, entry.entry_hash);
    assert_eq!(entry.entry_hash, admission.audit_entry_hash);
    assert_eq!(predicate.environment, "acme/payments/dev");
    assert_eq!(predicate.action, "deploy");
    assert_eq!(predicate.verifier.id, ORIGIN);

    let retried = admit(&orchestrator, "req-1").await;
    assert_eq!(retried.decision_id, admission.decision_id);
    assert_eq!(
        retried.receipt, admission.receipt,
        "a retry gets the same receipt bytes"
    );

    let shadow = orchestrator
        .deploy()
        .admit(deploy("shadow", "req-shadow"))
        .await;
    let shadow = shadow.unwrap().into_inner();
    assert_eq!(shadow.shadow_reason, "APPROVAL_REQUIRED");
    let statement = verify_receipt(&shadow.receipt, &key.verifier(), Some(SPEC_KV)).unwrap();
    assert_eq!(statement.predicate.decision_id, shadow.decision_id);
    assert_eq!(statement.predicate.environment, "acme/payments/shadow");

    let refused = orchestrator
        .deploy()
        .admit(deploy("prod", "req-prod"))
        .await
        .unwrap_err();
    assert_rejected(&refused, Code::PermissionDenied, "APPROVAL_REQUIRED");
    server.stop().await;
}

async fn checkpoints_and_proofs_verify(db: &TestDb) {
    let (server, key) = start(db, true).await;
    let orchestrator = server.client(ORCHESTRATOR).await;
    let auditor = server.client(AUDITOR).await;
    let mut decisions = Vec::new();
    for i in 0..5 {
        decisions.push(admit(&orchestrator, &format!("req-{i}")).await.decision_id);
    }
    let first = checkpoint(&auditor).await;
    let opened = Checkpoint::open(&first.note, &key.verifier()).unwrap();
    let trail = entries(&auditor).await;
    assert_eq!(first.tree_size, trail.len() as u64);
    assert_eq!(opened.tree_size, first.tree_size);
    assert_eq!(opened.root_hash.to_vec(), first.root_hash);
    assert_eq!(
        checkpoint(&auditor).await,
        first,
        "no new entries: the same checkpoint"
    );
    let dir = server.dir.path().join("checkpoints");
    let numbered = std::fs::read_to_string(dir.join(format!("checkpoint-{}", first.tree_size)));
    assert_eq!(numbered.unwrap(), first.note);
    assert_eq!(
        std::fs::read_to_string(dir.join("latest")).unwrap(),
        first.note
    );

    // By seq, in the checkpoint's tree.
    let entry = &trail[2];
    let request = pb::ProveInclusionRequest {
        seq: entry.seq,
        tree_size: first.tree_size,
        ..Default::default()
    };
    let proof = auditor
        .audit()
        .prove_inclusion(request)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (proof.leaf_index, proof.tree_size),
        (entry.seq - 1, first.tree_size)
    );
    assert_eq!(
        format!("sha256:{}", hex::encode(&proof.entry_hash)),
        entry.entry_hash
    );
    let leaf = Hash::try_from(proof.entry_hash.as_slice()).unwrap();
    verify_inclusion(
        proof.leaf_index,
        proof.tree_size,
        &leaf,
        &raw(&proof.hashes),
        &opened.root_hash,
    )
    .unwrap();

    for i in 5..8 {
        admit(&orchestrator, &format!("req-{i}")).await;
    }
    let second = checkpoint(&auditor).await;
    let newer = Checkpoint::open(&second.note, &key.verifier()).unwrap();
    assert_eq!(second.tree_size, entries(&auditor).await.len() as u64);
    assert!(
        dir.join(format!("checkpoint-{}", second.tree_size))
            .exists()
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("latest")).unwrap(),
        second.note
    );

    // By decision id (and its own seq), in the current tree (tree_size 0).
    let own = orchestrator
        .audit()
        .prove_inclusion(pb::ProveInclusionRequest {
            decision_id: decisions[4].clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(own.tree_size, second.tree_size);
    let leaf = Hash::try_from(own.entry_hash.as_slice()).unwrap();
    verify_inclusion(
        own.leaf_index,
        own.tree_size,
        &leaf,
        &raw(&own.hashes),
        &newer.root_hash,
    )
    .unwrap();

    let request = pb::ProveConsistencyRequest {
        old_size: first.tree_size,
        new_size: 0,
    };
    let consistency = auditor
        .audit()
        .prove_consistency(request)
        .await
        .unwrap()
        .into_inner();
    verify_consistency(
        first.tree_size,
        second.tree_size,
        &opened.root_hash,
        &newer.root_hash,
        &raw(&consistency.hashes),
    )
    .unwrap();
    server.stop().await;
}

async fn proof_arguments_and_callers_are_checked(db: &TestDb) {
    let (server, _) = start(db, true).await;
    let orchestrator = server.client(ORCHESTRATOR).await;
    let other = server.client(OTHER_ORCHESTRATOR).await;
    let auditor = server.client(AUDITOR).await;
    let reviewer = server.client(REVIEWER).await;
    let mine = admit(&orchestrator, "req-1").await;
    admit(&orchestrator, "req-2").await;
    let size = entries(&auditor).await.len() as u64;

    let inclusion = |seq, tree_size, decision_id: &str| pb::ProveInclusionRequest {
        seq,
        tree_size,
        decision_id: decision_id.to_owned(),
    };
    for (request, field) in [
        (inclusion(0, 0, ""), "seq"),
        (inclusion(size + 1, 0, ""), "seq"),
        (inclusion(2, 1, ""), "tree_size"),
        (inclusion(1, size + 1, ""), "tree_size"),
        (inclusion(size, 0, &mine.decision_id), "seq"),
    ] {
        let status = auditor.audit().prove_inclusion(request).await.unwrap_err();
        assert_invalid_field(&status, field);
    }
    let consistency = |old_size, new_size| pb::ProveConsistencyRequest { old_size, new_size };
    for (request, field) in [
        (consistency(0, 0), "old_size"),
        (consistency(2, 1), "old_size"),
        (consistency(1, size + 1), "new_size"),
    ] {
        let status = auditor
            .audit()
            .prove_consistency(request)
            .await
            .unwrap_err();
        assert_invalid_field(&status, field);
    }
    let unknown = auditor
        .audit()
        .prove_inclusion(inclusion(0, 0, "dec_unknown"))
        .await
        .unwrap_err();
    assert_rejected(&unknown, Code::NotFound, "DECISION_NOT_FOUND");

    // An orchestrator proves its own decisions only; a reviewer nothing.
    let status = other
        .audit()
        .prove_inclusion(inclusion(0, 0, &mine.decision_id))
        .await
        .unwrap_err();
    assert_rejected(&status, Code::PermissionDenied, "CALLER_NOT_AUTHORIZED");
    orchestrator
        .audit()
        .prove_inclusion(inclusion(0, 0, &mine.decision_id))
        .await
        .unwrap();
    let status = orchestrator
        .audit()
        .get_checkpoint(pb::GetCheckpointRequest {})
        .await
        .unwrap_err();
    assert_rejected(&status, Code::PermissionDenied, "CALLER_NOT_AUTHORIZED");
    let status = orchestrator
        .audit()
        .prove_consistency(consistency(1, 0))
        .await
        .unwrap_err();
    assert_rejected(&status, Code::PermissionDenied, "CALLER_NOT_AUTHORIZED");
    let status = reviewer
        .audit()
        .prove_inclusion(inclusion(0, 0, &mine.decision_id))
        .await
        .unwrap_err();
    assert_rejected(&status, Code::PermissionDenied, "CALLER_NOT_AUTHORIZED");
    let status = reviewer
        .audit()
        .get_checkpoint(pb::GetCheckpointRequest {})
        .await
        .unwrap_err();
    assert_rejected(&status, Code::PermissionDenied, "CALLER_NOT_AUTHORIZED");
    let status = reviewer
        .audit()
        .prove_consistency(consistency(1, 0))
        .await
        .unwrap_err();
    assert_rejected(&status, Code::PermissionDenied, "CALLER_NOT_AUTHORIZED");
    server.stop().await;
}

async fn without_a_log_key_nothing_is_signed_but_proofs_work(db: &TestDb) {
    let (server, _) = start(db, false).await;
    let orchestrator = server.client(ORCHESTRATOR).await;
    let auditor = server.client(AUDITOR).await;
    let admission = admit(&orchestrator, "req-1").await;
    assert!(admission.receipt.is_empty());
    assert!(admit(&orchestrator, "req-1").await.receipt.is_empty());
    let status = auditor
        .audit()
        .get_checkpoint(pb::GetCheckpointRequest {})
        .await
        .unwrap_err();
    assert_rejected(&status, Code::FailedPrecondition, "SIGNING_NOT_CONFIGURED");
    let request = pb::ProveInclusionRequest {
        decision_id: admission.decision_id.clone(),
        ..Default::default()
    };
    let proof = auditor
        .audit()
        .prove_inclusion(request)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        format!("sha256:{}", hex::encode(&proof.entry_hash)),
        admission.audit_entry_hash
    );
    let request = pb::ProveConsistencyRequest {
        old_size: 1,
        new_size: 0,
    };
    auditor.audit().prove_consistency(request).await.unwrap();
    server.stop().await;
}

/// The periodic task signs a checkpoint of the grown trail and publishes it; polled for,
/// bounded, without a timing assertion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checkpoint_task_publishes_a_grown_trail() {
    let db = TestDb::sqlite();
    let (server, key) = start(&db, true).await;
    let orchestrator = server.client(ORCHESTRATOR).await;
    admit(&orchestrator, "req-1").await;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    admission_server::runtime::checkpoints::start(
        server.state.engine().log().clone(),
        server.state.store().clone(),
        std::time::Duration::from_millis(20),
        stopped,
    );
    let latest = server.dir.path().join("checkpoints").join("latest");
    let mut note = None;
    for _ in 0..500 {
        if let Ok(text) = std::fs::read_to_string(&latest) {
            note = Some(text);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let note = note.expect("the task wrote a checkpoint");
    let opened = Checkpoint::open(&note, &key.verifier()).unwrap();
    assert_eq!(opened.tree_size, 1);
    stop.send_replace(true);
    server.stop().await;
    db.cleanup().await;
}

/// A checkpoint directory that cannot be written is counted and logged; the call still answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_file_write_failure_is_counted_not_fatal() {
    let db = TestDb::sqlite();
    let (server, key) = start(&db, true).await;
    let blocked = server.dir.path().join("a-file");
    std::fs::write(&blocked, "not a directory").unwrap();
    let log = admission_server::app::transparency::TransparencyLog::new(
        Some(std::sync::Arc::new(key)),
        Some(blocked),
    );
    let checkpoint = log.checkpoint(server.state.store()).await.unwrap();
    assert_eq!(checkpoint.tree_size, 0);
    assert_eq!(log.checkpoint_write_failures(), 1);
    server.stop().await;
    db.cleanup().await;
}
