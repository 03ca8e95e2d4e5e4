//! `admission-bench` against `admission-server dev`, both as real processes, briefly: it must
//! report sane non-zero figures (every call answered and admitted, server CPU per call, fsync
//! latency). Speed is never asserted.
//!
//! As in `admissionctl_dev.rs`, `admission-server` is found next to the bench in the same
//! target directory; a `cargo test --workspace` builds it before any test runs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../tests/common/mod.rs"]
mod common;

use std::{path::Path, process::Output};

use common::dev::{
    dev_command, free_port, output_text, server_binary_beside, spawn_until_served, tool_command,
};

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
        // One answer, OK for all 100 calls, with its own latency.
        let answers = phase["outcomes"].as_array().unwrap();
        assert_eq!(answers.len(), 1, "{phase:#}");
        assert_eq!(answers[0]["code"], "OK", "{phase:#}");
        assert_eq!(answers[0]["count"], 100, "{phase:#}");
        assert_eq!(
            answers[0]["latency_us"]["max"], phase["latency_us"]["max"],
            "{phase:#}"
        );
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
    tool_command(BENCH)
}

/// Starts `admission-server dev` on a free loopback port; returns it once it is listening.
async fn start_dev(dir: &Path) -> (tokio::process::Child, u16) {
    let port = free_port();
    let server = server_binary_beside(Path::new(BENCH));
    let (child, _printed) = spawn_until_served(&mut dev_command(&server, dir, port)).await;
    (child, port)
}

fn text(output: &Output) -> String {
    output_text(output)
}
