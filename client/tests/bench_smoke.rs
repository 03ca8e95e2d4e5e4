//! `admission-bench` against `admission-server dev`, both as real processes, briefly: it must
//! report sane non-zero figures (every call answered and admitted, server CPU per call, fsync
//! latency). Speed is never asserted.
//!
//! As in `admissionctl_dev.rs`, `admission-server` is found next to the bench in the same
//! target directory; a `cargo test --workspace` builds it before any test runs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    path::{Path, PathBuf},
    process::{Output, Stdio},
};

use tokio::io::{AsyncBufReadExt, BufReader};

const BENCH: &str = env!("CARGO_BIN_EXE_admission-bench");

#[tokio::test]
async fn bench_reports_sane_figures_against_the_dev_server() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("dev");
    let (mut server, port) = start_dev(&dir).await;
    let pid = server.id().unwrap().to_string();
    let endpoint = format!("https://localhost:{port}");
    let dir_arg = dir.to_str().unwrap();
    let common = [
        "--dev-dir",
        dir_arg,
        "--endpoint",
        &endpoint,
        "--server-pid",
        &pid,
        "--connections",
        "2",
        "--warmup",
        "5",
        "--json",
    ];

    let closed = [
        "--duration",
        "60s",
        "--concurrency",
        "4",
        "--max-calls",
        "100",
        "--fsync-samples",
        "50",
    ];
    let report = bench(&[&common[..], &closed[..]].concat()).await;
    let fsync = &report["fsync"];
    assert_eq!(fsync["samples"], 50, "{report:#}");
    assert!(
        fsync["latency_us"]["p50"].as_f64().unwrap() > 0.0,
        "{report:#}"
    );
    assert!(
        fsync["latency_us"]["p99"].as_f64().unwrap() > 0.0,
        "{report:#}"
    );
    let phases = report["phases"].as_array().unwrap();
    let names: Vec<&str> = phases
        .iter()
        .map(|phase| phase["workload"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["health", "admit-dev", "admit-prod", "preview"]);
    for phase in phases {
        assert_eq!(phase["calls"], 100, "{phase:#}");
        assert_eq!(phase["ok"], 100, "every call answered OK: {phase:#}");
        assert_eq!(phase["stopped_by"], "max_calls", "{phase:#}");
        assert!(phase["send_lag_us"].is_null(), "closed loop: {phase:#}");
        assert!(phase["calls_per_s"].as_f64().unwrap() > 0.0, "{phase:#}");
        assert!(
            phase["latency_us"]["p50"].as_f64().unwrap() > 0.0,
            "{phase:#}"
        );
        assert!(phase["vs_health"]["calls_per_s"].as_f64().unwrap() > 0.0);
    }
    for admit in &phases[1..3] {
        let cpu = admit["server_cpu"]["us_per_call"].as_f64().unwrap();
        assert!(cpu > 0.0, "server CPU per admission: {admit:#}");
    }

    // An open loop at a low rate sends on schedule until its duration is up.
    let open = [
        "--rate",
        "40",
        "--duration",
        "2s",
        "--workloads",
        "health,admit-dev",
        "--fsync-samples",
        "0",
    ];
    let report = bench(&[&common[..], &open[..]].concat()).await;
    assert_eq!(report["load"]["shape"], "open");
    assert!(report["fsync"].is_null());
    for phase in report["phases"].as_array().unwrap() {
        let calls = phase["calls"].as_u64().unwrap();
        assert!((60..=80).contains(&calls), "{phase:#}");
        assert_eq!(phase["ok"], calls, "{phase:#}");
        assert_eq!(phase["stopped_by"], "duration", "{phase:#}");
        assert!(phase["send_lag_us"]["p50"].is_f64(), "{phase:#}");
    }
    server.kill().await.unwrap();
}

#[tokio::test]
async fn bench_refuses_an_endpoint_off_loopback() {
    let output = command()
        .args([
            "--endpoint",
            "https://admission.example.com:50051",
            "--dev-dir",
            "/nonexistent",
        ])
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("not on loopback"),
        "{}",
        text(&output)
    );
}

/// Runs the bench with `args` (which include `--json`) and returns its report.
async fn bench(args: &[&str]) -> serde_json::Value {
    let output = command().args(args).output().await.unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&output)))
}

/// The bench, without any `ADMISSION_*` variable of the test environment.
fn command() -> tokio::process::Command {
    let mut command = tokio::process::Command::new(BENCH);
    for (name, _) in std::env::vars() {
        if name.starts_with("ADMISSION_") {
            command.env_remove(name);
        }
    }
    command
}

/// `admission-server`, next to the bench in the same target directory.
fn server_binary() -> PathBuf {
    let name = format!("admission-server{}", std::env::consts::EXE_SUFFIX);
    let path = Path::new(BENCH).with_file_name(name);
    assert!(
        path.exists(),
        "{} is not built: run `cargo build -p admission-server` (a `cargo test --workspace` \
         builds it)",
        path.display()
    );
    path
}

/// Starts `admission-server dev` on a free loopback port; returns it once it is listening.
async fn start_dev(dir: &Path) -> (tokio::process::Child, u16) {
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
        // The last instruction line is printed once the listener is bound.
        if line.contains("--endpoint") {
            return (child, port);
        }
    }
    panic!("admission-server dev exited before printing its instructions: {printed}");
}

fn text(output: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
