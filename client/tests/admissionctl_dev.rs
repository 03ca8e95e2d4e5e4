//! `admissionctl` against `admission-server dev`, both as real processes, configured only by
//! the variables the dev server prints.
//!
//! The test lives in the client package so that `CARGO_BIN_EXE_admissionctl` names a freshly
//! built CLI. `admission-server` is found next to it in the same target directory: a
//! `cargo test --workspace` builds it before any test runs (the server package's own tests use
//! it). When only this package is tested and that binary is missing, the test fails and says to
//! run `cargo build -p admission-server` first.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::{Output, Stdio},
};

use tokio::io::{AsyncBufReadExt, BufReader};

const ADMISSIONCTL: &str = env!("CARGO_BIN_EXE_admissionctl");

#[tokio::test]
async fn admissionctl_admits_lists_and_verifies_against_the_dev_server() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("dev");
    let (mut server, printed) = start_dev(&dir).await;
    let orchestrator = exports(&printed);
    for name in [
        "ADMISSION_ENDPOINT",
        "ADMISSION_CA",
        "ADMISSION_CERT",
        "ADMISSION_KEY",
    ] {
        assert!(orchestrator.contains_key(name), "{name} in {printed}");
    }
    let mut auditor = orchestrator.clone();
    auditor.extend(auditor_identity(&printed));

    let spec = tmp.path().join("spec.kv");
    std::fs::write(&spec, "image=app:1\nreplicas=2\n").unwrap();
    let bundle = tmp.path().join("bundle.tar");
    std::fs::write(&bundle, "config bundle bytes").unwrap();
    let spec = spec.to_str().unwrap();
    let bundle = bundle.to_str().unwrap();
    let admit = admissionctl(
        &orchestrator,
        &[
            "--json",
            "deploy",
            "admit",
            "--env",
            "dev/app/dev",
            "--spec",
            spec,
            "--pipeline-version",
            "pipeline-1",
            "--bundle-id",
            "bundle-1",
            "--bundle-file",
            bundle,
            "--initiated-by",
            "alice@dev.local",
            "--request-id",
            "cli-deploy-1",
        ],
    )
    .await;
    assert_eq!(admit.status.code(), Some(0), "{}", text(&admit));
    let admission: serde_json::Value = serde_json::from_slice(&admit.stdout).unwrap();
    assert_eq!(admission["admitted"], true);
    let decision_id = admission["decision_id"].as_str().unwrap().to_owned();

    let list = admissionctl(&auditor, &["audit", "list", "--env", "dev/app/dev"]).await;
    assert_eq!(list.status.code(), Some(0), "{}", text(&list));
    let stdout = String::from_utf8(list.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    for field in [
        "admitted",
        "deploy",
        "dev/app/dev",
        "spiffe://dev.local/orchestrator/ci",
    ] {
        assert!(lines[0].contains(field), "{field} in {stdout}");
    }

    let list = admissionctl(&auditor, &["audit", "list", "--json"]).await;
    assert_eq!(list.status.code(), Some(0), "{}", text(&list));
    let listed: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let entries = listed["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{listed}");
    assert_eq!(entries[0]["entry_id"], decision_id.as_str());
    assert_eq!(entries[0]["outcome"], "admitted");
    assert_eq!(entries[0]["request_id"], "cli-deploy-1");
    assert_eq!(entries[0]["resource_scope"]["environment_id"], "dev");
    assert_eq!(entries[0]["seq"], 1);

    let verify = admissionctl(&auditor, &["audit", "verify"]).await;
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify));
    let head = entries[0]["entry_hash"].as_str().unwrap();
    assert_eq!(
        String::from_utf8(verify.stdout).unwrap(),
        format!("ok: 1 entries checked, head sha256 {head}\n")
    );
    let verify = admissionctl(&auditor, &["--json", "audit", "verify"]).await;
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify));
    let report: serde_json::Value = serde_json::from_slice(&verify.stdout).unwrap();
    assert_eq!(report["ok"], true);
    assert_eq!(report["entries_checked"], 1);

    // The orchestrator holds no auditor role.
    let denied = admissionctl(&orchestrator, &["audit", "verify"]).await;
    assert_eq!(denied.status.code(), Some(1), "{}", text(&denied));
    assert!(
        String::from_utf8(denied.stderr)
            .unwrap()
            .contains("CALLER_NOT_AUTHORIZED"),
    );
    server.kill().await.unwrap();
}

/// `admission-server`, next to `admissionctl` in the same target directory.
fn server_binary() -> PathBuf {
    let ctl = Path::new(ADMISSIONCTL);
    let name = format!("admission-server{}", std::env::consts::EXE_SUFFIX);
    let path = ctl.with_file_name(name);
    assert!(
        path.exists(),
        "{} is not built: run `cargo build -p admission-server` (a `cargo test --workspace` \
         builds it)",
        path.display()
    );
    path
}

/// Starts `admission-server dev` on a free loopback port and returns it with everything it
/// printed up to its last instruction line (printed once the listener is bound).
async fn start_dev(dir: &Path) -> (tokio::process::Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = tokio::process::Command::new(server_binary())
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
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = String::new();
    while let Some(line) = lines.next_line().await.unwrap() {
        printed.push_str(&line);
        printed.push('\n');
        if line.contains("--endpoint") {
            return (child, printed);
        }
    }
    panic!("admission-server dev exited before printing its instructions: {printed}");
}

/// The `NAME=value` pairs of the printed `export …` line.
fn exports(printed: &str) -> HashMap<String, String> {
    let line = printed
        .lines()
        .map(str::trim)
        .find_map(|line| line.strip_prefix("export "))
        .unwrap_or_else(|| panic!("no export line in {printed}"));
    assignments(line)
}

/// `ADMISSION_CERT` and `ADMISSION_KEY` from the printed auditor line.
fn auditor_identity(printed: &str) -> HashMap<String, String> {
    let line = printed
        .lines()
        .find(|line| line.contains("as the auditor"))
        .unwrap_or_else(|| panic!("no auditor line in {printed}"));
    let found = assignments(line);
    assert!(found.contains_key("ADMISSION_CERT"), "{line}");
    assert!(found.contains_key("ADMISSION_KEY"), "{line}");
    found
}

fn assignments(line: &str) -> HashMap<String, String> {
    line.split_whitespace()
        .filter_map(|word| word.split_once('='))
        .filter(|(name, _)| name.starts_with("ADMISSION_"))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect()
}

/// Runs `admissionctl` with exactly `env` as its `ADMISSION_*` environment.
async fn admissionctl(env: &HashMap<String, String>, args: &[&str]) -> Output {
    let mut command = tokio::process::Command::new(ADMISSIONCTL);
    for (name, _) in std::env::vars() {
        if name.starts_with("ADMISSION_") {
            command.env_remove(name);
        }
    }
    command.envs(env).args(args).output().await.unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
