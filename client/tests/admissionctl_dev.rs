//! `admissionctl` against `admission-server dev`, both as real processes, configured only by
//! the variables the dev server prints.
//!
//! The test lives in the client package so that `CARGO_BIN_EXE_admissionctl` names a freshly
//! built CLI. `admission-server` is found next to it in the same target directory: a
//! `cargo test --workspace` builds it before any test runs (the server package's own tests use
//! it). When only this package is tested and that binary is missing, the test fails and says to
//! run `cargo build -p admission-server` first.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../tests/common/mod.rs"]
mod common;

use std::{collections::HashMap, path::Path, process::Output};

use common::dev::{
    dev_command, free_port, output_text, server_binary_beside, spawn_until_served, tool_command,
};

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
    auditor.extend(identity_line(&printed, "as the auditor"));

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
        format!("ok: 1 entries checked, head {head}\n")
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

/// The operator flow through the CLI alone: a prod deploy is refused, an approval is requested,
/// approved by a reviewer, selected and attached with `--approval`; an offline credential from
/// `admissionctl sign` admits too; a dry-run replay needs none; a revoked approval is refused.
#[tokio::test]
async fn admissionctl_runs_the_approval_flow_against_the_dev_server() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("dev");
    let (mut server, printed) = start_dev(&dir).await;
    let orchestrator = exports(&printed);
    let mut reviewer = orchestrator.clone();
    reviewer.extend(identity_line(&printed, "as a reviewer"));
    let spec_path = tmp.path().join("spec.kv");
    std::fs::write(&spec_path, "pipeline=payments-api\nversion=2026.11.24\n").unwrap();
    let spec = spec_path.to_str().unwrap();
    let deploy = |request_id: &'static str| {
        vec![
            "--json",
            "deploy",
            "admit",
            "--env",
            "dev/app/prod",
            "--spec",
            spec,
            "--pipeline-version",
            "2026.11.24",
            "--bundle-id",
            "bundle-1",
            "--bundle-digest",
            "sha256:0000000000000000000000000000000000000000000000000000000000000000",
            "--initiated-by",
            "alice@dev.local",
            "--request-id",
            request_id,
        ]
    };

    // Step 2: without approval, a typed rejection with its decision id.
    let refused = json(admissionctl(&orchestrator, &deploy("cli-prod-1")).await, 1);
    assert_eq!(refused["admitted"], false);
    assert_eq!(refused["reason"], "APPROVAL_REQUIRED");
    assert_eq!(refused["code"], "PERMISSION_DENIED");
    assert!(refused["decision_id"].as_str().unwrap().starts_with("dec_"));

    // Steps 3–4: request, review, select.
    let created = json(
        admissionctl(
            &orchestrator,
            &[
                "--json",
                "approvals",
                "create",
                "--env",
                "dev/app/prod",
                "--spec",
                spec,
                "--justification",
                "release 2026.11.24",
                "--initiated-by",
                "alice@dev.local",
            ],
        )
        .await,
        0,
    );
    let approval = &created;
    assert_eq!(approval["state"], "pending");
    assert_eq!(approval["posture"], "prod");
    let approval_id = approval["approval_id"].as_str().unwrap().to_owned();
    let decided = json(
        admissionctl(
            &reviewer,
            &["--json", "approvals", "decide", &approval_id, "--approve"],
        )
        .await,
        0,
    );
    assert_eq!(decided["state"], "approved");
    assert_eq!(decided["approvers"][0], "spiffe://dev.local/reviewer/alice");
    let eligible = json(
        admissionctl(
            &orchestrator,
            &[
                "--json",
                "approvals",
                "list",
                "--env",
                "dev/app/prod",
                "--spec",
                spec,
            ],
        )
        .await,
        0,
    );
    assert_eq!(
        eligible["approvals"][0]["approval_id"],
        approval_id.as_str()
    );

    // Step 5: submit with the approval attached.
    let mut with_approval = deploy("cli-prod-2");
    with_approval.extend(["--approval", approval_id.as_str()]);
    let admitted = json(admissionctl(&orchestrator, &with_approval).await, 0);
    assert_eq!(admitted["admitted"], true);
    assert_eq!(admitted["approval_ids"][0], approval_id.as_str());

    // A credential signed offline with the dev key admits too.
    let config = std::fs::read_to_string(dir.join("admission.toml")).unwrap();
    let kid = config
        .lines()
        .find_map(|line| line.strip_prefix("kid = "))
        .unwrap()
        .trim_matches('"')
        .to_owned();
    let signing_key = dir.join("signing.key");
    let signed = admissionctl(
        &orchestrator,
        &[
            "sign",
            "--signing-key",
            signing_key.to_str().unwrap(),
            "--kid",
            &kid,
            "--org",
            "dev",
            "--project",
            "app",
            "--env",
            "prod",
            "--posture",
            "prod",
            "--spec",
            spec,
            "--capability",
            "deploy",
            "--ttl",
            "10m",
            "--issued-by",
            "spiffe://dev.local/reviewer/bob",
            "--approval-id",
            "apr_cli_offline",
        ],
    )
    .await;
    assert_eq!(signed.status.code(), Some(0), "{}", text(&signed));
    let credential = String::from_utf8(signed.stdout).unwrap().trim().to_owned();
    let mut offline = deploy("cli-prod-3");
    offline.extend(["--credential", credential.as_str()]);
    let admitted = json(admissionctl(&orchestrator, &offline).await, 0);
    assert_eq!(admitted["approval_ids"][0], "apr_cli_offline");

    // Dry-run replay needs no credential, even in prod.
    let replay = json(
        admissionctl(
            &orchestrator,
            &[
                "--json",
                "replay",
                "admit",
                "--env",
                "dev/app/prod",
                "--mode",
                "dry-run",
                "--incident",
                "INC-7",
                "--spec",
                spec,
                "--artifact-id",
                "capture-1",
                "--artifact-digest",
                "sha256:1111111111111111111111111111111111111111111111111111111111111111",
                "--initiated-by",
                "alice@dev.local",
            ],
        )
        .await,
        0,
    );
    assert_eq!(replay["action"], "replay_dry_run");

    // Revoked: its credentials no longer admit.
    let revoked = json(
        admissionctl(
            &reviewer,
            &[
                "--json",
                "approvals",
                "revoke",
                &approval_id,
                "--reason",
                "rollback",
            ],
        )
        .await,
        0,
    );
    assert_eq!(revoked["state"], "revoked");
    let mut after_revoke = deploy("cli-prod-4");
    after_revoke.extend(["--approval", approval_id.as_str()]);
    let refused = json(admissionctl(&orchestrator, &after_revoke).await, 1);
    assert_eq!(refused["reason"], "APPROVAL_REVOKED");
    assert_eq!(refused["metadata"]["approval_id"], approval_id.as_str());
    server.kill().await.unwrap();
}

/// The JSON stdout of a run that exited with `status`.
fn json(output: Output, status: i32) -> serde_json::Value {
    assert_eq!(output.status.code(), Some(status), "{}", text(&output));
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&output)))
}

/// `ADMISSION_CERT` and `ADMISSION_KEY` from the printed line containing `marker`.
fn identity_line(printed: &str, marker: &str) -> HashMap<String, String> {
    let line = printed
        .lines()
        .find(|line| line.contains(marker))
        .unwrap_or_else(|| panic!("no {marker:?} line in {printed}"));
    let found = assignments(line);
    assert!(found.contains_key("ADMISSION_CERT"), "{line}");
    assert!(found.contains_key("ADMISSION_KEY"), "{line}");
    found
}

/// Starts `admission-server dev` on a free loopback port and returns it with everything it
/// printed up to its last instruction line (printed once the listener is bound).
async fn start_dev(dir: &Path) -> (tokio::process::Child, String) {
    let server = server_binary_beside(Path::new(ADMISSIONCTL));
    spawn_until_served(&mut dev_command(&server, dir, free_port())).await
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

fn assignments(line: &str) -> HashMap<String, String> {
    line.split_whitespace()
        .filter_map(|word| word.split_once('='))
        .filter(|(name, _)| name.starts_with("ADMISSION_"))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect()
}

/// Runs `admissionctl` with exactly `env` as its `ADMISSION_*` environment.
async fn admissionctl(env: &HashMap<String, String>, args: &[&str]) -> Output {
    let mut command = tool_command(ADMISSIONCTL);
    command.envs(env).args(args).output().await.unwrap()
}

fn text(output: &Output) -> String {
    output_text(output)
}
