//! A database administrator rewrites or cuts the audit trail and recomputes every chain hash,
//! moves `audit_head` and has the server rebuild its Merkle tree: `Audit.Verify` says ok
//! again, but `admissionctl audit verify --since-checkpoint` with a checkpoint saved before
//! exits 1 and says the log was rewritten or truncated. Without an attack it exits 0.
//!
//! On SQLite and PostgreSQL; the real `admissionctl` binary checks an in-process server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../tests/common/mod.rs"]
mod common;

use std::path::PathBuf;

use admission_client::AdmissionClient;
use admission_contract::pb;
use admission_log::LogKey;
use admission_server::store::chain::{GENESIS_HASH, canonical_list, hash_of_values};
use common::{
    AUDITOR, DEFAULT_ROLES, DEV_ENVIRONMENT, ORCHESTRATOR, TestServer,
    dev::{output_text, tool_command},
    requests::deploy,
    server::audit_entries,
    store::TestDb,
};
use serde_json::Value;

const ADMISSIONCTL: &str = env!("CARGO_BIN_EXE_admissionctl");
const ORIGIN: &str = "admission.test/audit-rewrite";

/// The log key kept across restarts, and the files the CLI reads.
struct Auditor {
    dir: tempfile::TempDir,
}

// === impl Auditor ===

impl Auditor {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (key, pem) = LogKey::generate(ORIGIN).unwrap();
        std::fs::write(dir.path().join("log.key"), pem).unwrap();
        std::fs::write(dir.path().join("log.pub"), key.verifier().to_pub_file()).unwrap();
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn log_pub(&self) -> String {
        self.path("log.pub").display().to_string()
    }

    fn saved(&self) -> String {
        self.path("saved.checkpoint").display().to_string()
    }

    /// The server config's tail: roles, the dev environment and the log key.
    fn extra(&self) -> String {
        format!(
            "{DEFAULT_ROLES}{DEV_ENVIRONMENT}\n[audit]\nlog_key = {:?}\nlog_origin = {ORIGIN:?}\n",
            self.path("log.key").display().to_string()
        )
    }

    async fn start(&self, db: &TestDb) -> TestServer {
        TestServer::start_on(db, &self.extra()).await
    }

    /// Runs `admissionctl --json ARGS` as the auditor of `server`: the exit status and the
    /// one JSON object it printed.
    async fn ctl(&self, server: &TestServer, args: &[&str]) -> (i32, Value) {
        let auditor = server.pki.client(AUDITOR);
        let (ca, cert, key) = (
            self.path("ca.pem"),
            self.path("auditor.pem"),
            self.path("auditor.key"),
        );
        std::fs::write(&ca, server.pki.ca_pem()).unwrap();
        std::fs::write(&cert, &auditor.cert_pem).unwrap();
        std::fs::write(&key, &auditor.key_pem).unwrap();
        let output = tool_command(ADMISSIONCTL)
            .arg("--json")
            .arg("--endpoint")
            .arg(server.endpoint())
            .args(
                [&ca, &cert, &key]
                    .iter()
                    .zip(["--ca", "--cert", "--key"])
                    .flat_map(|(path, flag)| [flag.to_owned(), path.display().to_string()]),
            )
            .arg("--max-attempts=1")
            .args(args)
            .output()
            .await
            .unwrap();
        let stdout = String::from_utf8(output.stdout.clone()).unwrap();
        assert_eq!(stdout.lines().count(), 1, "{}", output_text(&output));
        let value = serde_json::from_str(&stdout).unwrap();
        (output.status.code().unwrap(), value)
    }

    /// `audit verify --since-checkpoint` with the saved checkpoint.
    async fn verify_since(&self, server: &TestServer) -> (i32, Value) {
        let (saved, log_pub) = (self.saved(), self.log_pub());
        let args = ["audit", "verify", "--since-checkpoint", &saved];
        self.ctl(server, &[&args[..], &["--log-key", &log_pub]].concat())
            .await
    }

    /// Admits `count` deploys, saves the signed checkpoint once it covers every entry, and
    /// returns the entries.
    async fn trail_with_checkpoint(
        &self,
        server: &TestServer,
        count: usize,
    ) -> Vec<pb::AuditEntry> {
        admit(server, "before", count).await;
        let auditor = server.client(AUDITOR).await;
        // As stored: the wire writes each hash `sha256:` + hex, the database the bare hex.
        let entries: Vec<pb::AuditEntry> = audit_entries(&auditor, 1000)
            .await
            .into_iter()
            .map(|mut entry| {
                entry.prev_hash = bare(&entry.prev_hash);
                entry.entry_hash = bare(&entry.entry_hash);
                entry
            })
            .collect();
        wait_for_checkpoint(&auditor, entries.len() as u64).await;
        let (saved, log_pub) = (self.saved(), self.log_pub());
        let args = [
            "audit",
            "checkpoint",
            "--out",
            &saved,
            "--log-key",
            &log_pub,
        ];
        let (code, json) = self.ctl(server, &args).await;
        assert_eq!((code, &json["verified"]), (0, &Value::Bool(true)), "{json}");
        assert_eq!(json["tree_size"], entries.len() as u64, "{json}");
        entries
    }
}

/// Admits `count` deploys to `acme/payments/dev`.
async fn admit(server: &TestServer, tag: &str, count: usize) {
    let orchestrator = server.client(ORCHESTRATOR).await;
    for i in 0..count {
        orchestrator
            .admit_deploy(deploy("dev", &format!("{tag}-{i}")))
            .await
            .unwrap();
    }
}

/// Waits until the service's signed checkpoint covers `size` entries (it signs on its own
/// schedule; nothing here depends on how long that takes).
async fn wait_for_checkpoint(auditor: &AdmissionClient, size: u64) {
    loop {
        let checkpoint = auditor
            .audit()
            .get_checkpoint(pb::GetCheckpointRequest {})
            .await
            .unwrap()
            .into_inner();
        if checkpoint.tree_size >= size {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// `Audit.Verify` through the CLI says the chain is intact.
async fn assert_chain_verifies(auditor: &Auditor, server: &TestServer) {
    let (code, json) = auditor.ctl(server, &["audit", "verify"]).await;
    assert_eq!((code, &json["ok"]), (0, &Value::Bool(true)), "{json}");
}

/// `verify --since-checkpoint` exits 1 and says why.
async fn assert_rewrite_detected(auditor: &Auditor, server: &TestServer) {
    let (code, json) = auditor.verify_since(server).await;
    assert_eq!(code, 1, "{json}");
    assert_eq!(json["error"], "rejected", "{json}");
    let message = json["message"].as_str().unwrap();
    assert!(
        message.contains("the log was rewritten or truncated since checkpoint"),
        "{message}"
    );
}

/// The stored text of the 20 hashed fields of `entry`, with `prev_hash` replaced.
fn hashed_values(entry: &pb::AuditEntry, prev_hash: &str) -> String {
    let recorded_at = entry.recorded_at.unwrap();
    let micros = recorded_at.seconds * 1_000_000 + i64::from(recorded_at.nanos / 1000);
    let scope = entry.resource_scope.clone().unwrap();
    let (seq, micros) = (entry.seq.to_string(), micros.to_string());
    let lists = [
        canonical_list(&entry.capabilities),
        canonical_list(&entry.approval_ids),
        canonical_list(&entry.approvers),
    ];
    hash_of_values(&[
        &seq,
        &entry.entry_id,
        &micros,
        &entry.actor,
        &entry.actor_cert_sha256,
        &entry.initiated_by,
        &entry.action,
        &scope.org_id,
        &scope.project_id,
        &scope.environment_id,
        &entry.spec_hash,
        &lists[0],
        &lists[1],
        &lists[2],
        &entry.outcome,
        &entry.reason,
        &entry.grpc_code,
        &entry.request_id,
        &entry.detail,
        prev_hash,
    ])
}

fn bare(hash: &str) -> String {
    hash.strip_prefix("sha256:").unwrap_or(hash).to_owned()
}

/// What an administrator runs after editing rows: drop the tree (rebuilt from the entries at
/// start-up) and the signed checkpoints, and point the head at the last entry.
fn forget_tree_sql(head_seq: u64, head_hash: &str) -> String {
    format!(
        "DELETE FROM audit_tree; DELETE FROM audit_checkpoints; \
         UPDATE audit_head SET seq = {head_seq}, entry_hash = '{head_hash}' WHERE id = 1;"
    )
}

/// Changes the detail of entry `from` and recomputes every hash from there on: valid chain.
fn rewrite_sql(entries: &[pb::AuditEntry], from: usize) -> String {
    let mut sql = String::new();
    let mut prev = match from {
        1 => GENESIS_HASH.to_owned(),
        k => entries[k - 2].entry_hash.clone(),
    };
    for entry in &entries[from - 1..] {
        let mut entry = entry.clone();
        // The recomputation is the server's own: unchanged, it yields the stored hash.
        assert_eq!(hashed_values(&entry, &entry.prev_hash), entry.entry_hash);
        if entry.seq == from as u64 {
            entry.detail = "rewritten by the database administrator".to_owned();
        }
        let hash = hashed_values(&entry, &prev);
        sql.push_str(&format!(
            "UPDATE audit_entries SET detail = '{}', prev_hash = '{prev}', entry_hash = '{hash}' \
             WHERE seq = {};\n",
            entry.detail.replace('\'', "''"),
            entry.seq
        ));
        prev = hash;
    }
    sql + &forget_tree_sql(entries.len() as u64, &prev)
}

async fn untouched(db: &TestDb) {
    let auditor = Auditor::new();
    let server = auditor.start(db).await;
    auditor.trail_with_checkpoint(&server, 4).await;
    admit(&server, "after", 3).await;
    server.stop().await;
    let server = auditor.start(db).await;
    let (code, json) = auditor.verify_since(&server).await;
    assert_eq!(code, 0, "{json}");
    assert_eq!(json["ok"], true, "{json}");
    assert_eq!(json["saved_tree_size"], 4, "{json}");
    assert_eq!(json["chain"]["ok"], true, "{json}");
    server.stop().await;
}

async fn rewritten_from_entry_k(db: &TestDb) {
    let auditor = Auditor::new();
    let server = auditor.start(db).await;
    let entries = auditor.trail_with_checkpoint(&server, 6).await;
    server.stop().await;
    db.execute(&rewrite_sql(&entries, 3)).await;
    let server = auditor.start(db).await;
    assert_chain_verifies(&auditor, &server).await;
    assert_rewrite_detected(&auditor, &server).await;
    // Growing the rewritten log past the saved size does not hide it.
    admit(&server, "after", 3).await;
    assert_rewrite_detected(&auditor, &server).await;
    server.stop().await;
}

async fn truncated_then_grown(db: &TestDb) {
    let auditor = Auditor::new();
    let server = auditor.start(db).await;
    let entries = auditor.trail_with_checkpoint(&server, 6).await;
    server.stop().await;
    let kept = entries.len() - 2;
    let sql = format!(
        // The idempotency rows of the deleted decisions go too, or Verify would report them.
        "DELETE FROM idempotency WHERE decision_id IN \
         (SELECT entry_id FROM audit_entries WHERE seq > {kept}); \
         DELETE FROM audit_entries WHERE seq > {kept}; {}",
        forget_tree_sql(kept as u64, &entries[kept - 1].entry_hash)
    );
    db.execute(&sql).await;
    let server = auditor.start(db).await;
    assert_chain_verifies(&auditor, &server).await;
    assert_rewrite_detected(&auditor, &server).await;
    // New entries after the cut make the log longer than the saved one again.
    admit(&server, "after", 4).await;
    assert_chain_verifies(&auditor, &server).await;
    assert_rewrite_detected(&auditor, &server).await;
    server.stop().await;
}

on_both_backends!(untouched, rewritten_from_entry_k, truncated_then_grown);
