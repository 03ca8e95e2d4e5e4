//! The real `admission-server` binary: every admission acknowledged before a SIGKILL is in the
//! audit trail after a restart on the same SQLite file, and the chain still verifies.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../tests/common/mod.rs"]
mod common;

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use admission_client::{AdmissionClient, pb};
use common::{
    dev::free_port,
    requests::{bundle, dev_deploy},
};
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};

const BIN: &str = env!("CARGO_BIN_EXE_admission-server");

/// Bound on polling loops; each iteration sleeps [`POLL_INTERVAL`].
const POLL_ATTEMPTS: u32 = 1200;
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Acknowledged admissions to collect before the kill.
const ACKNOWLEDGED_BEFORE_KILL: usize = 60;
/// Clients admitting at once, so the kill lands while group commits are in flight.
const CONCURRENT_CLIENTS: usize = 4;

#[tokio::test]
async fn acknowledged_admissions_survive_sigkill_of_the_server() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let config = admission_server::runtime::dev::prepare(dir).unwrap().config;

    let port = free_port();
    set_listen(&config, port);
    let mut server = spawn_server(&config);
    let orchestrator = connect(dir, "orchestrator", port).await;

    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let workers: Vec<_> = (0..CONCURRENT_CLIENTS)
        .map(|worker| {
            let client = orchestrator.clone();
            let acknowledged = acknowledged.clone();
            tokio::spawn(async move {
                for i in 0.. {
                    let request = deploy(&format!("kill-{worker}-{i}"));
                    // The first failure is the kill (or a call cut by it): stop there.
                    let Ok(admission) = client.admit_deploy(request).await else {
                        return;
                    };
                    acknowledged.lock().unwrap().push(admission.decision_id);
                }
            })
        })
        .collect();
    wait_until("admissions to be acknowledged", || {
        acknowledged.lock().unwrap().len() >= ACKNOWLEDGED_BEFORE_KILL
    })
    .await;
    // SIGKILL on Unix: no shutdown path runs.
    server.kill().await.unwrap();
    for worker in workers {
        worker.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(acknowledged.len() >= ACKNOWLEDGED_BEFORE_KILL);

    let port = free_port();
    set_listen(&config, port);
    let mut restarted = spawn_server(&config);
    let auditor = connect(dir, "auditor", port).await;
    let entries = list_all(&auditor).await;
    let recorded: std::collections::HashSet<&str> =
        entries.iter().map(|e| e.entry_id.as_str()).collect();
    let missing: Vec<&String> = acknowledged
        .iter()
        .filter(|id| !recorded.contains(id.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged decisions are not in the trail: {missing:?}",
        missing.len(),
        acknowledged.len()
    );
    let seqs: Vec<u64> = entries.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=entries.len() as u64).collect::<Vec<_>>());
    let report = auditor
        .audit()
        .verify(pb::VerifyAuditRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(report.ok, "{report:?}");
    assert_eq!(report.entries_checked, entries.len() as u64);
    restarted.kill().await.unwrap();
}

/// Starts `admission-server --config <config>`.
fn spawn_server(config: &Path) -> tokio::process::Child {
    tokio::process::Command::new(BIN)
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// Connects as one of the dev identities once the server answers health with SERVING.
async fn connect(dir: &Path, stem: &str, port: u16) -> AdmissionClient {
    for _ in 0..POLL_ATTEMPTS {
        let connected = AdmissionClient::builder()
            .endpoint(format!("https://localhost:{port}"))
            .ca_file(dir.join("ca.pem"))
            .identity_files(
                dir.join(format!("{stem}.pem")),
                dir.join(format!("{stem}.key")),
            )
            .connect()
            .await;
        if let Ok(client) = connected {
            let health = client.health().check(HealthCheckRequest::default()).await;
            if health.is_ok_and(|h| h.into_inner().status == ServingStatus::Serving as i32) {
                return client;
            }
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    panic!("admission-server on port {port} never served");
}

/// Polls `done` (bounded by [`POLL_ATTEMPTS`]).
async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..POLL_ATTEMPTS {
        if done() {
            return;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    panic!("gave up waiting for {what}");
}

/// Every entry, following `next_page_token`.
async fn list_all(auditor: &AdmissionClient) -> Vec<pb::AuditEntry> {
    let mut request = pb::ListAuditRequest {
        page_size: 1000,
        ..pb::ListAuditRequest::default()
    };
    let mut entries = Vec::new();
    loop {
        let page = auditor
            .audit()
            .list(request.clone())
            .await
            .unwrap()
            .into_inner();
        entries.extend(page.entries);
        if page.next_page_token.is_empty() {
            return entries;
        }
        request.page_token = page.next_page_token;
    }
}

/// A deploy to the dev environment of `admission-server dev`, admitted without credentials.
fn deploy(request_id: &str) -> pb::DeployRequest {
    pb::DeployRequest {
        pipeline_version: "pipeline-1".to_owned(),
        spec_kv: b"image=app:1\n".to_vec(),
        config_bundle: Some(bundle(
            "bundle-1",
            &format!("sha256:{}", "ab".repeat(32)),
            "dev",
        )),
        initiated_by: "alice@dev.local".to_owned(),
        ..dev_deploy("dev", request_id)
    }
}

/// Points the config's `listen` at `127.0.0.1:<port>`.
fn set_listen(config: &PathBuf, port: u16) {
    let text = std::fs::read_to_string(config).unwrap();
    let text: String = text
        .lines()
        .map(|line| {
            if line.starts_with("listen = ") {
                format!("listen = \"127.0.0.1:{port}\"\n")
            } else {
                format!("{line}\n")
            }
        })
        .collect();
    std::fs::write(config, text).unwrap();
}
