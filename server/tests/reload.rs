//! Reloading the whole config through the real binary and SIGHUP: policies, roles, the server
//! certificate, CRLs, a broken file, and the audit entries every reload leaves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../tests/common/mod.rs"]
mod common;

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use admission_client::{AdmissionClient, AdmissionClientBuilder, Reason, pb};
use common::{
    AUDITOR, DEFAULT_ROLES, DEV_ENVIRONMENT, Issued, ORCHESTRATOR, Pki, dev::free_port,
    requests::deploy, store::TestDb, write_config,
};
use sha2::{Digest, Sha256};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
    sync::mpsc,
};
use tonic::Code;

const BIN: &str = env!("CARGO_BIN_EXE_admission-server");

/// The orchestrator's binding in [`common::ROLES`], as [`write_config`] writes it.
const ORCHESTRATOR_BINDING: &str =
    "[[roles]]\nidentity = \"spiffe://test.local/orchestrator/ci\"\nroles = [\"orchestrator\"]\n";

/// `admission-server --config` as a child process, with its log lines.
struct Served {
    child: Child,
    log: mpsc::UnboundedReceiver<String>,
    pki: Pki,
    config: PathBuf,
    port: u16,
    _dir: tempfile::TempDir,
}

// === impl Served ===

impl Served {
    /// Writes a config with `extra` (its store at `db`, else SQLite beside it) and serves it on
    /// a free loopback port.
    async fn start(extra: &str, db: Option<&TestDb>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new("reload clients CA");
        let config = write_config(dir.path(), &pki, &[], extra);
        let port = free_port();
        let mut listen = format!("listen = \"127.0.0.1:{port}\"");
        if let Some(db) = db {
            listen.push_str(&format!("\ndatabase_url = {:?}", db.url));
        }
        edit(&config, "listen = \"127.0.0.1:0\"", &listen);
        let mut child = Command::new(BIN)
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let (tx, log) = mpsc::unbounded_channel();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let _ = tx.send(line);
            }
        });
        let mut served = Self {
            child,
            log,
            pki,
            config,
            port,
            _dir: dir,
        };
        served.wait_for_log(" serving").await;
        served
    }

    /// Reads log lines until one contains `text`; that line (bounded, so a missing line fails).
    async fn wait_for_log(&mut self, text: &str) -> String {
        let found = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = self.log.recv().await {
                if line.contains(text) {
                    return Some(line);
                }
            }
            None
        })
        .await;
        match found {
            Ok(Some(line)) => line,
            _ => panic!("no log line containing {text:?}"),
        }
    }

    /// Sends SIGHUP and returns the log line of the reload's outcome.
    async fn reload(&mut self) -> String {
        let pid = self.child.id().unwrap().to_string();
        let status = std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap();
        assert!(status.success());
        self.wait_for_log("SIGHUP received, reloading the config")
            .await;
        self.wait_for_log(" reload").await
    }

    fn dir(&self) -> &Path {
        self.config.parent().unwrap()
    }

    /// A builder for `https://localhost:<port>` trusting `server_ca`, presenting `cert`.
    fn builder(&self, server_ca: &Pki, cert: &Issued) -> AdmissionClientBuilder {
        AdmissionClient::builder()
            .endpoint(format!("https://localhost:{}", self.port))
            .ca_pem(server_ca.ca_pem())
            .identity_pem(cert.cert_pem.clone(), cert.key_pem.clone())
    }

    async fn client(&self, identity: &str) -> AdmissionClient {
        self.builder(&self.pki, &self.pki.client(identity))
            .connect()
            .await
            .unwrap()
    }
}

/// Replaces the one occurrence of `from` in the file at `path`.
fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert_eq!(text.matches(from).count(), 1, "{from:?} in {text}");
    std::fs::write(path, text.replacen(from, to, 1)).unwrap();
}

fn sha256_of(path: &Path) -> String {
    format!(
        "sha256:{}",
        hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
    )
}

/// The client failed to call because the handshake was refused: on connect or the first call.
async fn assert_handshake_fails(builder: AdmissionClientBuilder, expected: &str) {
    let error = match builder.connect().await {
        Err(error) => format!("{error:?}"),
        Ok(client) => format!(
            "{:?}",
            client
                .admit_deploy(deploy("dev", "never"))
                .await
                .expect_err("call must fail")
        ),
    };
    assert!(error.contains(expected), "{error}");
}

async fn audit_entries(auditor: &AdmissionClient, outcome: &str) -> Vec<pb::AuditEntry> {
    auditor
        .audit()
        .list(pb::ListAuditRequest {
            outcome: outcome.to_owned(),
            ..pb::ListAuditRequest::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries
}

#[tokio::test]
async fn a_policy_flip_is_seen_by_the_next_admit() {
    let mut server = Served::start(DEFAULT_ROLES, None).await;
    let client = server.client(ORCHESTRATOR).await;
    let error = client
        .admit_deploy(deploy("prod", "flip-1"))
        .await
        .unwrap_err();
    let rejection = error.rejection().expect("typed rejection");
    assert_eq!(rejection.code, Code::PermissionDenied);
    assert!(rejection.is(Reason::ApprovalRequired), "{rejection:?}");

    edit(
        &server.config,
        "posture = \"prod\"\n",
        "posture = \"prod\"\nside_effects = \"allow_all\"\n",
    );
    let line = server.reload().await;
    assert!(line.contains("config and key set reloaded"), "{line}");
    client.admit_deploy(deploy("prod", "flip-2")).await.unwrap();

    // And back: approvals are required again.
    edit(&server.config, "side_effects = \"allow_all\"\n", "");
    server.reload().await;
    let error = client
        .admit_deploy(deploy("prod", "flip-3"))
        .await
        .unwrap_err();
    assert!(
        error.rejection().unwrap().is(Reason::ApprovalRequired),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_removed_role_is_refused_on_the_same_connection() {
    let extra = format!("{DEFAULT_ROLES}{DEV_ENVIRONMENT}");
    let mut server = Served::start(&extra, None).await;
    let client = server.client(ORCHESTRATOR).await;
    client.admit_deploy(deploy("dev", "role-1")).await.unwrap();

    edit(&server.config, ORCHESTRATOR_BINDING, "");
    server.reload().await;
    let error = client
        .admit_deploy(deploy("dev", "role-2"))
        .await
        .unwrap_err();
    let rejection = error.rejection().expect("typed rejection");
    assert_eq!(rejection.code, Code::PermissionDenied);
    assert!(rejection.is(Reason::CallerNotAuthorized), "{rejection:?}");
    assert_eq!(
        rejection.message,
        format!("caller {ORCHESTRATOR} does not have the orchestrator role for acme/payments/dev")
    );
}

#[tokio::test]
async fn a_rotated_server_certificate_is_used_by_new_connections_only() {
    let extra = format!("{DEFAULT_ROLES}{DEV_ENVIRONMENT}");
    let mut server = Served::start(&extra, None).await;
    let cert = server.pki.client(ORCHESTRATOR);
    let before = server.builder(&server.pki, &cert).connect().await.unwrap();
    before.admit_deploy(deploy("dev", "cert-1")).await.unwrap();

    // The new certificate comes from another CA, so a client can tell which one it was shown.
    let rotated_ca = Pki::new("rotated server CA");
    let rotated = rotated_ca.server();
    std::fs::write(server.dir().join("server.pem"), &rotated.cert_pem).unwrap();
    std::fs::write(server.dir().join("server.key"), &rotated.key_pem).unwrap();
    let line = server.reload().await;
    assert!(line.contains("config and key set reloaded"), "{line}");

    // The established connection keeps the session it negotiated.
    before.admit_deploy(deploy("dev", "cert-2")).await.unwrap();
    // A new connection is shown the rotated certificate: only its CA verifies it.
    assert_handshake_fails(server.builder(&server.pki, &cert), "UnknownIssuer").await;
    let after = server.builder(&rotated_ca, &cert).connect().await.unwrap();
    after.admit_deploy(deploy("dev", "cert-3")).await.unwrap();
}

#[tokio::test]
async fn a_client_certificate_revoked_by_a_reloaded_crl_is_refused() {
    let extra = format!("{DEFAULT_ROLES}{DEV_ENVIRONMENT}");
    let mut server = Served::start(&extra, None).await;
    let revoked = server.pki.client(ORCHESTRATOR);
    let kept = server.pki.client(ORCHESTRATOR);
    let client = server
        .builder(&server.pki, &revoked)
        .connect()
        .await
        .unwrap();
    client.admit_deploy(deploy("dev", "crl-1")).await.unwrap();

    std::fs::write(
        server.dir().join("revoked.pem"),
        server.pki.crl(&[&revoked]),
    )
    .unwrap();
    edit(&server.config, "crls = []", "crls = [\"revoked.pem\"]");
    let line = server.reload().await;
    assert!(line.contains("config and key set reloaded"), "{line}");

    // The server refuses the handshake; with TLS 1.3 the client may see that as its alert or
    // as the connection closing under its first call, so the server's log says which it was.
    let error = match server.builder(&server.pki, &revoked).connect().await {
        Err(error) => format!("{error:?}"),
        Ok(client) => {
            let error = client
                .admit_deploy(deploy("dev", "crl-x"))
                .await
                .unwrap_err();
            assert!(error.rejection().is_none(), "{error:?}");
            format!("{error:?}")
        }
    };
    let line = server.wait_for_log("tls handshake refused").await;
    assert!(
        line.contains("invalid peer certificate: Revoked"),
        "{line}; client: {error}"
    );
    let other = server.builder(&server.pki, &kept).connect().await.unwrap();
    other.admit_deploy(deploy("dev", "crl-2")).await.unwrap();
}

#[tokio::test]
async fn a_broken_file_is_refused_and_the_old_config_keeps_serving() {
    let extra = format!("{DEFAULT_ROLES}{DEV_ENVIRONMENT}");
    let mut server = Served::start(&extra, None).await;
    let client = server.client(ORCHESTRATOR).await;

    // The orchestrator binding loses its role and gains a typo: nothing of it may apply.
    edit(
        &server.config,
        "roles = [\"orchestrator\"]",
        "roles = [\"orchestrator_\"]",
    );
    edit(&server.config, "crls = []", "crls = [\"missing.pem\"]");
    let digest = sha256_of(&server.config);
    let line = server.reload().await;
    assert!(
        line.contains("config reload failed, keeping the previous config"),
        "{line}"
    );
    assert!(
        line.contains(&server.config.display().to_string()),
        "{line}"
    );
    assert!(
        line.contains("[[roles]] roles: unknown variant `orchestrator_`"),
        "{line}"
    );
    assert!(line.contains(&digest), "{line}");
    client
        .admit_deploy(deploy("dev", "broken-1"))
        .await
        .unwrap();

    // A missing TLS file is named by its field, and refused the same way.
    edit(
        &server.config,
        "roles = [\"orchestrator_\"]",
        "roles = [\"orchestrator\"]",
    );
    let line = server.reload().await;
    assert!(line.contains("config reload failed"), "{line}");
    assert!(line.contains("[tls] crls: "), "{line}");
    assert!(line.contains("missing.pem"), "{line}");
    client
        .admit_deploy(deploy("dev", "broken-2"))
        .await
        .unwrap();

    let auditor = server.client(AUDITOR).await;
    let refused = audit_entries(&auditor, "config_reload_refused").await;
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert!(refused[0].detail.contains(&digest), "{:?}", refused[0]);
    assert!(
        refused[0]
            .detail
            .contains("unknown variant `orchestrator_`"),
        "{:?}",
        refused[0]
    );
    assert!(
        refused[1].detail.contains("[tls] crls: "),
        "{:?}",
        refused[1]
    );
    assert!(audit_entries(&auditor, "config_reloaded").await.is_empty());
}

/// Every reload is an audit entry with the file's digest; Audit.Verify still passes over them,
/// and a restart-only field is reported, not applied.
async fn reloads_are_audited_with_the_file_digest(db: &TestDb) {
    let extra = format!("{DEFAULT_ROLES}{DEV_ENVIRONMENT}");
    let mut server = Served::start(&extra, Some(db)).await;
    let client = server.client(ORCHESTRATOR).await;
    client.admit_deploy(deploy("dev", "audit-1")).await.unwrap();

    let first = sha256_of(&server.config);
    server.reload().await;
    let moved = format!("listen = \"127.0.0.1:{}\"", free_port());
    edit(
        &server.config,
        &format!("listen = \"127.0.0.1:{}\"", server.port),
        &moved,
    );
    let second = sha256_of(&server.config);
    let line = server.reload().await;
    assert!(line.contains("requires_restart=listen"), "{line}");
    // Still serving where it started.
    client.admit_deploy(deploy("dev", "audit-2")).await.unwrap();
    std::fs::write(&server.config, "listen = [").unwrap();
    let broken = sha256_of(&server.config);
    server.reload().await;

    let auditor = server.client(AUDITOR).await;
    let reloaded = audit_entries(&auditor, "config_reloaded").await;
    assert_eq!(reloaded.len(), 2, "{reloaded:?}");
    let config = server.config.display().to_string();
    assert_eq!(reloaded[0].detail, format!("config {first} ({config})"));
    assert_eq!(
        reloaded[1].detail,
        format!("config {second} ({config}); requires restart: listen")
    );
    let refused = audit_entries(&auditor, "config_reload_refused").await;
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(
        refused[0]
            .detail
            .starts_with(&format!("config {broken} ({config}) refused: {config}: ")),
        "{:?}",
        refused[0]
    );
    for entry in reloaded.iter().chain(&refused) {
        assert_eq!(entry.action, "config.reload");
        assert_eq!(entry.actor, "admission-server");
        assert_eq!(entry.initiated_by, "SIGHUP");
        assert_eq!(entry.reason, "");
    }
    let verified = auditor
        .audit()
        .verify(pb::VerifyAuditRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(verified.ok, "{verified:?}");
    assert_eq!(verified.entries_checked, 5);
}

on_both_backends!(reloads_are_audited_with_the_file_digest);

/// With `[reload] watch = true` an edit is applied without a signal, once per burst.
#[tokio::test]
async fn a_watched_config_reloads_when_its_file_changes() {
    let extra = format!("[reload]\nwatch = true\n{DEFAULT_ROLES}");
    let mut server = Served::start(&extra, None).await;
    let client = server.client(ORCHESTRATOR).await;
    let error = client
        .admit_deploy(deploy("prod", "watch-0"))
        .await
        .unwrap_err();
    assert!(
        error.rejection().unwrap().is(Reason::ApprovalRequired),
        "{error:?}"
    );

    edit(
        &server.config,
        "posture = \"prod\"\n",
        "posture = \"prod\"\nside_effects = \"allow_all\"\n",
    );
    let digest = sha256_of(&server.config);
    let line = server.wait_for_log("config and key set reloaded").await;
    assert!(line.contains(&digest), "{line}");
    // The reload is in force once logged; poll briefly in case the log raced the call.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut attempt = 1;
    loop {
        let request_id = format!("watch-{attempt}");
        match client.admit_deploy(deploy("prod", &request_id)).await {
            Ok(_) => break,
            Err(error) if tokio::time::Instant::now() < deadline => {
                assert!(
                    error.rejection().unwrap().is(Reason::ApprovalRequired),
                    "{error:?}"
                );
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => panic!("the edit was not applied: {error:?}"),
        }
    }

    let auditor = server.client(AUDITOR).await;
    let reloaded = audit_entries(&auditor, "config_reloaded").await;
    assert_eq!(reloaded.len(), 1, "{reloaded:?}");
    assert_eq!(reloaded[0].initiated_by, "file watch");
    assert!(reloaded[0].detail.contains(&digest), "{:?}", reloaded[0]);
}
