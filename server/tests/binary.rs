//! The `admission-server` binary: exit statuses, one-line config errors, and dev mode.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    path::Path,
    process::{Command, Stdio},
};

use admission_client::AdmissionClient;
use tokio::io::{AsyncBufReadExt, BufReader};
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};

const BIN: &str = env!("CARGO_BIN_EXE_admission-server");

fn write_dev_files(dir: &Path) -> std::path::PathBuf {
    admission_server::dev::prepare(dir).unwrap().config
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
    let mut child = tokio::process::Command::new(BIN)
        .arg("dev")
        .arg("--dir")
        .arg(dir)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let first = lines
        .next_line()
        .await
        .unwrap()
        .expect("dev prints its directory");
    assert!(
        first.starts_with("admission dev environment in "),
        "{first}"
    );
    let mut text = String::new();
    while let Some(line) = lines.next_line().await.unwrap() {
        text.push_str(&line);
        text.push('\n');
        if line.contains("--endpoint") {
            break;
        }
    }
    assert!(
        text.contains(&format!(
            "export ADMISSION_ENDPOINT=https://localhost:{port}"
        )),
        "{text}"
    );
    child
}

async fn health_as_orchestrator(dir: &Path, port: u16) -> i32 {
    let client = AdmissionClient::builder()
        .endpoint(format!("https://localhost:{port}"))
        .ca_file(dir.join("ca.pem"))
        .identity_files(dir.join("orchestrator.pem"), dir.join("orchestrator.key"))
        .connect()
        .await
        .unwrap();
    client
        .health()
        .check(HealthCheckRequest::default())
        .await
        .unwrap()
        .into_inner()
        .status
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
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
