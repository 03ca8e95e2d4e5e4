//! The `admission-server` binary: exit statuses, one-line config errors, dev mode, and key-set
//! reload on SIGHUP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../tests/common/mod.rs"]
mod common;

use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, SystemTime},
};

use admission_client::{Reason, pb};
use admission_contract::{
    SpecHash,
    credential::{Claims, KeyStatus, SigningKey},
};
use common::{
    dev::{dev_client, dev_command, free_port, spawn_until_served},
    requests::dev_deploy,
};
use tokio::io::{AsyncBufReadExt, BufReader};
use tonic::Code;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};

const BIN: &str = env!("CARGO_BIN_EXE_admission-server");

fn write_dev_files(dir: &Path) -> std::path::PathBuf {
    admission_server::runtime::dev::prepare(dir).unwrap().config
}

#[test]
fn check_config_reports_counts() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_dev_files(dir.path());
    let output = Command::new(BIN)
        .args(["check-config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        "config ok: 2 environments, 3 role bindings\n"
    );
}

#[test]
fn bad_config_exits_2_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_dev_files(dir.path());
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replacen("cert = \"server.pem\"", "cert = \"ca.key\"", 1),
    )
    .unwrap();
    for args in [vec!["check-config"], vec!["--config"]] {
        let output = Command::new(BIN)
            .args(&args)
            .arg(&config)
            .env("RUST_LOG", "off")
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(
            stderr,
            format!(
                "{}: [tls] cert: {}: no certificate found\n",
                config.display(),
                dir.path().join("ca.key").display()
            ),
            "{args:?}"
        );
    }
}

#[test]
fn unknown_field_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("admission.toml");
    std::fs::write(&config, "lisen = \"127.0.0.1:1\"\n").unwrap();
    let output = Command::new(BIN)
        .arg("check-config")
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!("{}: unknown field `lisen`", config.display())),
        "{stderr}"
    );
    assert!(stderr.ends_with(" at line 1\n"), "{stderr}");
}

/// Starts `admission-server dev` and waits until it has printed its instructions, which it
/// does once the listener is bound.
async fn start_dev(dir: &Path, port: u16) -> tokio::process::Child {
    start_dev_logging(dir, port, "warn", Stdio::inherit()).await
}

/// [`start_dev`] with a `RUST_LOG` level and where its log lines (stderr) go.
async fn start_dev_logging(
    dir: &Path,
    port: u16,
    log: &str,
    stderr: Stdio,
) -> tokio::process::Child {
    let mut command = dev_command(Path::new(BIN), dir, port);
    command
        .env("RUST_LOG", log)
        .env("NO_COLOR", "1")
        .stderr(stderr);
    let (child, text) = spawn_until_served(&mut command).await;
    let first = text.lines().next().expect("dev prints its directory");
    assert!(
        first.starts_with("admission dev environment in "),
        "{first}"
    );
    assert!(
        text.contains(&format!(
            "export ADMISSION_ENDPOINT=https://localhost:{port}"
        )),
        "{text}"
    );
    child
}

async fn health_as_orchestrator(dir: &Path, port: u16) -> i32 {
    let client = dev_client(dir, port, "orchestrator").await;
    client
        .health()
        .check(HealthCheckRequest::default())
        .await
        .unwrap()
        .into_inner()
        .status
}

#[tokio::test]
async fn dev_serves_and_a_second_run_reuses_the_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("dev");

    let port = free_port();
    let mut first = start_dev(&dir, port).await;
    assert_eq!(
        health_as_orchestrator(&dir, port).await,
        ServingStatus::Serving as i32
    );
    first.kill().await.unwrap();
    let ca = std::fs::read(dir.join("ca.pem")).unwrap();
    let orchestrator = std::fs::read(dir.join("orchestrator.pem")).unwrap();

    let port = free_port();
    let mut second = start_dev(&dir, port).await;
    assert_eq!(
        health_as_orchestrator(&dir, port).await,
        ServingStatus::Serving as i32
    );
    assert_eq!(std::fs::read(dir.join("ca.pem")).unwrap(), ca);
    assert_eq!(
        std::fs::read(dir.join("orchestrator.pem")).unwrap(),
        orchestrator
    );
    second.kill().await.unwrap();
}

/// A deploy to dev/app/prod (approval required) carrying `credential`.
fn prod_deploy(request_id: &str, credential: String) -> pb::DeployRequest {
    pb::DeployRequest {
        credentials: vec![credential],
        ..dev_deploy("prod", request_id)
    }
}

/// A credential for that deploy, signed by `key`.
fn prod_credential(key: &SigningKey, approval_id: &str) -> String {
    let now = SystemTime::UNIX_EPOCH
        + Duration::from_secs(
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_secs(),
        );
    key.sign(&Claims {
        v: 1,
        kid: key.kid().to_owned(),
        org_id: "dev".to_owned(),
        project_id: "app".to_owned(),
        environment_id: "prod".to_owned(),
        environment_posture: "prod".to_owned(),
        spec_hash: SpecHash::of_bytes(b"a=1\n").to_string(),
        capabilities: vec!["deploy".to_owned()],
        issued_at: now,
        expires_at: now + Duration::from_secs(600),
        issued_by: "spiffe://dev.local/reviewer/alice".to_owned(),
        approval_id: approval_id.to_owned(),
        config_bundle_digest: None,
    })
    .unwrap()
}

/// Reads log lines until one contains `text` (bounded, so a missing line fails the test).
async fn wait_for_log(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStderr>>,
    text: &str,
) {
    let found = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains(text) {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(found, Ok(true), "no log line containing {text:?}");
}

fn send_sighup(child: &tokio::process::Child) {
    let pid = child.id().unwrap().to_string();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn sighup_reloads_the_key_set_and_an_invalid_file_keeps_the_old_one() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("dev");
    let port = free_port();
    let mut server = start_dev_logging(&dir, port, "info", Stdio::piped()).await;
    let mut log = BufReader::new(server.stderr.take().unwrap()).lines();
    let client = dev_client(&dir, port, "orchestrator").await;
    let (rotated, _pem) = SigningKey::generate("rotated-2026-12").unwrap();

    // Not trusted yet.
    let error = client
        .admit_deploy(prod_deploy(
            "rotation-1",
            prod_credential(&rotated, "apr_rot_1"),
        ))
        .await
        .unwrap_err();
    let rejection = error.rejection().expect("typed rejection");
    assert_eq!(rejection.code, Code::Unauthenticated);
    assert!(rejection.is(Reason::SigningKeyUnknown), "{rejection:?}");

    // Publish the new key next to the dev key and reload without a restart.
    let key_set_path = dir.join("signing_keys.json");
    let mut key_set: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&key_set_path).unwrap()).unwrap();
    key_set["keys"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::to_value(rotated.public_jwk(KeyStatus::Active)).unwrap());
    std::fs::write(&key_set_path, key_set.to_string()).unwrap();
    send_sighup(&server);
    wait_for_log(&mut log, "key set reloaded").await;
    let admitted = client
        .admit_deploy(prod_deploy(
            "rotation-2",
            prod_credential(&rotated, "apr_rot_2"),
        ))
        .await
        .unwrap();
    assert_eq!(admitted.approval_ids, ["apr_rot_2"]);

    // A broken file is refused and the service keeps verifying with the set it has.
    std::fs::write(&key_set_path, "{\"keys\": [").unwrap();
    send_sighup(&server);
    wait_for_log(
        &mut log,
        "key set reload failed, keeping the previous key set",
    )
    .await;
    let admitted = client
        .admit_deploy(prod_deploy(
            "rotation-3",
            prod_credential(&rotated, "apr_rot_3"),
        ))
        .await
        .unwrap();
    assert_eq!(admitted.approval_ids, ["apr_rot_3"]);

    server.kill().await.unwrap();
}
