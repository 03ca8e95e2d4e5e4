//! The contract scripts rely on, command by command: `admissionctl` against a real
//! `admission-server dev`, for success, a rejection, a usage error and an unreachable server,
//! checking the exit status (0 ok, 1 rejected, 2 usage, 3 unavailable) and that `--json`
//! prints exactly one JSON object on stdout.
//!
//! The GitHub Action's script, built on that contract, is run here too.
//!
//! Like `admissionctl_dev.rs`, it finds `admission-server` next to the `admissionctl` under
//! test (a `cargo test --workspace` builds both).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::HashMap,
    net::TcpListener,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use serde_json::Value;
use sqlx::Connection as _;

#[path = "../../tests/common/mod.rs"]
mod common;

use common::dev::{dev_command, free_port, server_binary_beside, spawn_until_served, tool_command};

const ADMISSIONCTL: &str = env!("CARGO_BIN_EXE_admissionctl");
const ACTION_SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../integrations/github-action/admit.sh"
);
const ZERO_DIGEST: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

/// Exit statuses of the CLI contract.
const OK: i32 = 0;
const REJECTED: i32 = 1;
const USAGE: i32 = 2;
const UNAVAILABLE: i32 = 3;

/// Offline commands work with no service at all, print one object with `--json`, and report
/// bad local input as a usage error (2) in the same shape.
#[tokio::test]
async fn offline_commands_need_no_service() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path();
    // Wherever the connection variables point, offline commands never use them.
    let env = HashMap::from([("ADMISSION_ENDPOINT".to_owned(), closed_endpoint())]);
    let spec = write(work, "spec.kv", "image=app:1\n");
    let bad_spec = write(work, "bad.kv", "image=app:1");

    let hash = ctl(&env, &["--json", "spec-hash", &spec]).await.json(OK);
    assert_eq!(hash["spec_hash"].as_str().unwrap().len(), 71, "{hash}");
    ctl(&env, &["--json", "spec-hash", &bad_spec])
        .await
        .failure(USAGE, "usage");
    let missing = work.join("missing.kv");
    ctl(&env, &["--json", "spec-hash", missing.to_str().unwrap()])
        .await
        .failure(USAGE, "usage");

    let key = work.join("signing.key");
    let jwks = work.join("keys.json");
    let (key, jwks) = (key.to_str().unwrap(), jwks.to_str().unwrap());
    let keygen = [
        "--json", "keygen", "--kid", "k1", "--out", key, "--jwks", jwks,
    ];
    let made = ctl(&env, &keygen).await.json(OK);
    assert_eq!(made["kid"], "k1");
    assert_eq!(made["key_file"], key);
    assert_eq!(made["jwks_file"], jwks);
    let again = ctl(&env, &keygen).await.failure(USAGE, "usage");
    assert!(
        again["message"]
            .as_str()
            .unwrap()
            .contains("already exists"),
        "{again}"
    );

    let sign = |extra: &'static [&'static str]| {
        let mut args = vec![
            "--json",
            "sign",
            "--signing-key",
            key,
            "--kid",
            "k1",
            "--org",
            "dev",
            "--project",
            "app",
            "--env",
            "prod",
            "--posture",
            "prod",
            "--capability",
            "deploy",
            "--issued-by",
            "bob",
            "--approval-id",
            "apr_1",
        ];
        args.extend_from_slice(extra);
        args
    };
    let mut good = sign(&[]);
    good.extend(["--spec", spec.as_str()]);
    let signed = ctl(&env, &good).await.json(OK);
    assert_eq!(signed["approval_id"], "apr_1");
    assert_eq!(signed["spec_hash"], hash["spec_hash"]);
    assert_eq!(signed["credential"].as_str().unwrap().split('.').count(), 2);
    ctl(&env, &sign(&["--spec-hash", "sha256:AB"]))
        .await
        .failure(USAGE, "usage");

    for shell in ["bash", "zsh", "fish"] {
        let script = ctl(&env, &["--json", "completion", shell]).await.json(OK);
        assert_eq!(script["shell"], shell);
        assert!(script["script"].as_str().unwrap().contains("admissionctl"));
        let text = ctl(&env, &["completion", shell]).await;
        assert_eq!(text.code, OK, "{text:?}");
        assert!(text.stdout.contains("spec-hash"), "{shell}");
    }
    ctl(&env, &["--json", "completion", "tcsh"])
        .await
        .failure(USAGE, "usage");
}

/// Parse errors are usage errors too, as one JSON object when `--json` is given; help lists
/// the connection options once at the top and not for offline commands.
#[tokio::test]
async fn usage_errors_and_help() {
    let env = HashMap::new();
    let unknown = ctl(&env, &["--json", "deploy", "admit", "--bogus"]).await;
    let error = unknown.failure(USAGE, "usage");
    assert!(
        error["message"].as_str().unwrap().contains("--bogus"),
        "{error}"
    );
    let text = ctl(&env, &["deploy", "admit", "--bogus"]).await;
    assert_eq!(text.code, USAGE, "{text:?}");
    assert!(text.stdout.is_empty(), "{text:?}");
    ctl(&env, &["--json"]).await.failure(USAGE, "usage");

    let top = ctl(&env, &["--help"]).await;
    assert_eq!(top.code, OK);
    assert_eq!(top.stdout.matches("--endpoint <ENDPOINT>").count(), 1);
    assert!(top.stdout.contains("docs/reference.md"), "{}", top.stdout);
    assert!(!top.stdout.contains("SPEC"), "{}", top.stdout);
    for offline in ["spec-hash", "keygen", "sign", "completion"] {
        let help = ctl(&env, &[offline, "--help"]).await;
        assert_eq!(help.code, OK, "{help:?}");
        for flag in [
            "--endpoint",
            "--ca ",
            "--cert",
            "--timeout",
            "--max-attempts",
        ] {
            assert!(!help.stdout.contains(flag), "{offline} lists {flag}");
        }
        assert!(help.stdout.contains("--json"), "{offline}");
    }
    let online = ctl(&env, &["deploy", "admit", "--help"]).await;
    for flag in [
        "--endpoint",
        "--timeout",
        "--max-attempts",
        "--retry-deadline",
    ] {
        assert!(online.stdout.contains(flag), "deploy admit lacks {flag}");
    }
}

/// `health`, and the connection failures every online command shares: a closed port and a
/// wrong CA are unavailable (3); `http://`, missing flags and a certificate with another
/// key are usage errors (2) that name the fix; `--timeout` bounds a server that never answers.
#[tokio::test]
async fn health_and_connection_failures() {
    let dev = Dev::start().await;
    let ok = dev
        .ctl("orchestrator", &["--json", "health"])
        .await
        .json(OK);
    assert_eq!(ok["status"], "SERVING");

    let closed = dev
        .ctl_with(
            "orchestrator",
            &[("ADMISSION_ENDPOINT", &closed_endpoint())],
            &["--json", "health"],
        )
        .await
        .failure(UNAVAILABLE, "unavailable");
    assert_eq!(closed["code"], "UNAVAILABLE");
    let text = dev
        .ctl_with(
            "orchestrator",
            &[("ADMISSION_ENDPOINT", &closed_endpoint())],
            &["health"],
        )
        .await;
    assert_eq!(text.code, UNAVAILABLE);
    assert!(text.stderr.contains("cannot connect to"), "{text:?}");

    let other_ca = write(dev.tmp.path(), "other-ca.pem", &other_ca_pem());
    let wrong_ca = dev
        .ctl_with(
            "orchestrator",
            &[("ADMISSION_CA", &other_ca)],
            &["--json", "health"],
        )
        .await
        .failure(UNAVAILABLE, "unavailable");
    let message = wrong_ca["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("does not chain to --ca {other_ca}")),
        "{message}"
    );

    let http = dev.endpoint.replace("https://", "http://");
    let plain = dev
        .ctl_with(
            "orchestrator",
            &[("ADMISSION_ENDPOINT", &http)],
            &["--json", "health"],
        )
        .await
        .failure(USAGE, "usage");
    assert!(
        plain["message"]
            .as_str()
            .unwrap()
            .contains(&format!("use {}", dev.endpoint)),
        "{plain}"
    );

    let cert = dev.file("orchestrator.pem");
    let other_key = dev.file("reviewer.key");
    let mismatch = dev
        .ctl_with(
            "orchestrator",
            &[("ADMISSION_KEY", &other_key)],
            &["--json", "health"],
        )
        .await
        .failure(USAGE, "usage");
    assert!(
        mismatch["message"].as_str().unwrap().starts_with(&format!(
            "certificate {cert} does not match key {other_key}"
        )),
        "{mismatch}"
    );
    let unset = dev
        .ctl_with(
            "orchestrator",
            &[("ADMISSION_ENDPOINT", "")],
            &["--json", "health"],
        )
        .await;
    let unset = unset.failure(USAGE, "usage");
    assert!(
        unset["message"].as_str().unwrap().contains("--endpoint"),
        "{unset}"
    );

    // Accepts connections and never answers the TLS handshake.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_endpoint = format!("https://localhost:{}", silent.local_addr().unwrap().port());
    let started = Instant::now();
    let hung = dev
        .ctl_with(
            "orchestrator",
            &[("ADMISSION_ENDPOINT", &silent_endpoint)],
            &["--json", "--timeout", "1s", "health"],
        )
        .await
        .failure(UNAVAILABLE, "unavailable");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    assert!(
        hung["message"].as_str().unwrap().contains("within 1s"),
        "{hung}"
    );
}

/// `deploy preview` and `deploy admit`.
#[tokio::test]
async fn deploy_commands() {
    let dev = Dev::start().await;
    let spec = write(
        dev.tmp.path(),
        "spec.kv",
        "pipeline=payments-api\nversion=1\n",
    );
    let deploy = |verb: &'static str, env: &'static str, request_id: &'static str| {
        let spec = spec.clone();
        move |extra: &[&str]| {
            let mut args: Vec<String> = [
                "--json",
                "deploy",
                verb,
                "--env",
                env,
                "--spec",
                &spec,
                "--pipeline-version",
                "1",
                "--bundle-id",
                "bundle-1",
                "--bundle-digest",
                ZERO_DIGEST,
                "--initiated-by",
                "alice@dev.local",
                "--request-id",
                request_id,
            ]
            .map(str::to_owned)
            .to_vec();
            args.extend(extra.iter().map(|a| (*a).to_owned()));
            args
        }
    };

    let preview = dev
        .run(
            "orchestrator",
            &deploy("preview", "dev/app/prod", "p-1")(&[]),
        )
        .await;
    let preview = preview.json(OK);
    assert_eq!(preview["policy_decision"], "REQUIRE_APPROVAL");
    assert!(preview["decision_id"].as_str().unwrap().starts_with("dec_"));
    let unknown = dev
        .run(
            "orchestrator",
            &deploy("preview", "dev/app/nope", "p-2")(&[]),
        )
        .await;
    let unknown = unknown.failure(REJECTED, "rejected");
    assert_eq!(unknown["reason"], "ENVIRONMENT_UNKNOWN");
    assert!(
        unknown.get("admitted").is_none(),
        "a preview admits nothing: {unknown}"
    );

    let admitted = dev
        .run("orchestrator", &deploy("admit", "dev/app/dev", "a-1")(&[]))
        .await;
    let admitted = admitted.json(OK);
    assert_eq!(admitted["admitted"], true);
    let refused = dev
        .run("orchestrator", &deploy("admit", "dev/app/prod", "a-2")(&[]))
        .await;
    let refused = refused.failure(REJECTED, "rejected");
    assert_eq!(refused["admitted"], false);
    assert_eq!(refused["reason"], "APPROVAL_REQUIRED");
    assert_eq!(refused["code"], "PERMISSION_DENIED");
    assert!(refused["decision_id"].as_str().unwrap().starts_with("dec_"));
    // A field the service refuses is a rejection it recorded, not a local usage error.
    let digest = replaced(
        deploy("admit", "dev/app/dev", "a-3")(&[]),
        "--bundle-digest",
        "sha256:00",
    );
    let invalid = dev.run("orchestrator", &digest).await;
    let invalid = invalid.failure(REJECTED, "rejected");
    assert_eq!(invalid["reason"], "REQUEST_INVALID");
    assert_eq!(
        invalid["field_violations"][0]["field"],
        "config_bundle.digest"
    );
    // The same refusal of an approval id, whether fetched for a deploy or asked for directly.
    let fetched = dev
        .run(
            "orchestrator",
            &deploy("admit", "dev/app/prod", "a-4")(&["--approval", "apr_nope"]),
        )
        .await;
    assert_eq!(
        fetched.failure(REJECTED, "rejected")["reason"],
        "APPROVAL_NOT_FOUND"
    );
    // A pending approval has no credentials to attach yet: the answer is still no.
    let created = dev
        .ctl(
            "orchestrator",
            &[
                "--json",
                "approvals",
                "create",
                "--env",
                "dev/app/prod",
                "--spec",
                &spec,
                "--justification",
                "release",
                "--initiated-by",
                "alice@dev.local",
            ],
        )
        .await
        .json(OK);
    let pending = created["approval_id"].as_str().unwrap();
    let early = dev
        .run(
            "orchestrator",
            &deploy("admit", "dev/app/prod", "a-6")(&["--approval", pending]),
        )
        .await;
    let early = early.failure(REJECTED, "rejected");
    assert_eq!(early["admitted"], false);
    assert!(
        early["message"].as_str().unwrap().contains("state pending"),
        "{early}"
    );
    let text = dev
        .run(
            "orchestrator",
            &deploy("admit", "dev/app/prod", "a-5")(&[])[1..],
        )
        .await;
    assert_eq!(text.code, REJECTED);
    assert!(text.stdout.is_empty(), "{text:?}");
    assert!(
        text.stderr
            .starts_with("REJECTED APPROVAL_REQUIRED (PERMISSION_DENIED)\n"),
        "{text:?}"
    );

    let missing = dev.tmp.path().join("missing.kv");
    for (verb, bad) in [
        ("preview", vec!["--env", "dev-app-prod"]),
        ("admit", vec!["--spec", missing.to_str().unwrap()]),
    ] {
        let args = replaced(deploy(verb, "dev/app/prod", "u-1")(&[]), bad[0], bad[1]);
        dev.run("orchestrator", &args).await.failure(USAGE, "usage");
        let closed = [("ADMISSION_ENDPOINT", closed_endpoint())];
        let good = deploy(verb, "dev/app/dev", "c-1")(&[]);
        let unreachable = dev.run_with("orchestrator", &closed, &good).await;
        assert_eq!(
            unreachable.failure(UNAVAILABLE, "unavailable")["code"],
            "UNAVAILABLE"
        );
    }
}

/// `replay preview` and `replay admit`.
#[tokio::test]
async fn replay_commands() {
    let dev = Dev::start().await;
    let spec = write(dev.tmp.path(), "spec.kv", "pipeline=payments-api\n");
    let replay = |verb: &str, env: &str, mode: &str| -> Vec<String> {
        [
            "--json",
            "replay",
            verb,
            "--env",
            env,
            "--mode",
            mode,
            "--incident",
            "INC-1",
            "--spec",
            &spec,
            "--artifact-id",
            "capture-1",
            "--artifact-digest",
            ZERO_DIGEST,
            "--initiated-by",
            "alice@dev.local",
        ]
        .map(str::to_owned)
        .to_vec()
    };
    for verb in ["preview", "admit"] {
        let answer = dev
            .run("orchestrator", &replay(verb, "dev/app/prod", "dry-run"))
            .await;
        let answer = answer.json(OK);
        assert_eq!(answer["action"], "replay_dry_run", "{answer}");
        let refused = dev
            .run("reviewer", &replay(verb, "dev/app/prod", "dry-run"))
            .await;
        assert_eq!(
            refused.failure(REJECTED, "rejected")["reason"],
            "CALLER_NOT_AUTHORIZED"
        );
        dev.run("orchestrator", &replay(verb, "dev/app/prod", "sideways"))
            .await
            .failure(USAGE, "usage");
        let closed = [("ADMISSION_ENDPOINT", closed_endpoint())];
        let unreachable = dev
            .run_with(
                "orchestrator",
                &closed,
                &replay(verb, "dev/app/prod", "dry-run"),
            )
            .await;
        unreachable.failure(UNAVAILABLE, "unavailable");
    }
    let execute = dev
        .run("orchestrator", &replay("admit", "dev/app/prod", "execute"))
        .await;
    let execute = execute.failure(REJECTED, "rejected");
    assert_eq!(execute["reason"], "APPROVAL_REQUIRED");
    assert_eq!(execute["admitted"], false);
}

/// `approvals create|get|list|decide|revoke`: one approval is one object, a list is
/// `{"approvals": […]}`.
#[tokio::test]
async fn approvals_commands() {
    let dev = Dev::start().await;
    let spec = write(dev.tmp.path(), "spec.kv", "pipeline=payments-api\n");
    let create = |env: &str| -> Vec<String> {
        [
            "--json",
            "approvals",
            "create",
            "--env",
            env,
            "--spec",
            &spec,
            "--justification",
            "release",
            "--initiated-by",
            "alice@dev.local",
        ]
        .map(str::to_owned)
        .to_vec()
    };
    let list = [
        "--json",
        "approvals",
        "list",
        "--env",
        "dev/app/prod",
        "--spec",
        &spec,
    ];
    let closed = [("ADMISSION_ENDPOINT", closed_endpoint())];

    let created = dev
        .run("orchestrator", &create("dev/app/prod"))
        .await
        .json(OK);
    assert_eq!(created["state"], "pending");
    let id = created["approval_id"].as_str().unwrap().to_owned();
    let refused = dev.run("reviewer", &create("dev/app/prod")).await;
    assert_eq!(
        refused.failure(REJECTED, "rejected")["reason"],
        "CALLER_NOT_AUTHORIZED"
    );
    dev.run("orchestrator", &create("prod"))
        .await
        .failure(USAGE, "usage");
    let unreachable = dev
        .run_with("orchestrator", &closed, &create("dev/app/prod"))
        .await;
    unreachable.failure(UNAVAILABLE, "unavailable");

    let got = dev
        .ctl("orchestrator", &["--json", "approvals", "get", &id])
        .await
        .json(OK);
    assert_eq!(got["approval_id"], id.as_str());
    let missing = dev
        .ctl("orchestrator", &["--json", "approvals", "get", "apr_nope"])
        .await;
    let missing = missing.failure(REJECTED, "rejected");
    assert_eq!(missing["reason"], "APPROVAL_NOT_FOUND");
    assert_eq!(missing["code"], "NOT_FOUND");
    dev.ctl("orchestrator", &["--json", "approvals", "get"])
        .await
        .failure(USAGE, "usage");
    let get = ["--json", "approvals", "get", id.as_str()].map(str::to_owned);
    dev.run_with("orchestrator", &closed, &get)
        .await
        .failure(UNAVAILABLE, "unavailable");

    let decide = ["--json", "approvals", "decide", id.as_str(), "--approve"];
    let not_reviewer = dev.ctl("orchestrator", &decide).await;
    assert_eq!(
        not_reviewer.failure(REJECTED, "rejected")["reason"],
        "CALLER_NOT_AUTHORIZED"
    );
    let decided = dev.ctl("reviewer", &decide).await.json(OK);
    assert_eq!(decided["state"], "approved");
    let twice = dev.ctl("reviewer2", &decide).await;
    assert_eq!(
        twice.failure(REJECTED, "rejected")["reason"],
        "APPROVAL_NOT_PENDING"
    );
    dev.ctl("reviewer", &["--json", "approvals", "decide", id.as_str()])
        .await
        .failure(USAGE, "usage");
    let decide = decide.map(str::to_owned);
    dev.run_with("reviewer", &closed, &decide)
        .await
        .failure(UNAVAILABLE, "unavailable");

    let listed = dev.ctl("orchestrator", &list).await.json(OK);
    assert_eq!(listed["approvals"][0]["approval_id"], id.as_str());
    let unknown = dev
        .ctl(
            "orchestrator",
            &[
                "--json",
                "approvals",
                "list",
                "--env",
                "dev/app/nope",
                "--spec",
                &spec,
            ],
        )
        .await;
    assert_eq!(
        unknown.failure(REJECTED, "rejected")["reason"],
        "ENVIRONMENT_UNKNOWN"
    );
    dev.ctl(
        "orchestrator",
        &["--json", "approvals", "list", "--env", "dev/app/prod"],
    )
    .await
    .failure(USAGE, "usage");
    dev.run_with("orchestrator", &closed, &list.map(str::to_owned))
        .await
        .failure(UNAVAILABLE, "unavailable");

    let revoke = [
        "--json",
        "approvals",
        "revoke",
        id.as_str(),
        "--reason",
        "rollback",
    ];
    let revoked = dev.ctl("reviewer", &revoke).await.json(OK);
    assert_eq!(revoked["state"], "revoked");
    let nope = dev
        .ctl(
            "reviewer",
            &["--json", "approvals", "revoke", "apr_nope", "--reason", "x"],
        )
        .await;
    assert_eq!(
        nope.failure(REJECTED, "rejected")["reason"],
        "APPROVAL_NOT_FOUND"
    );
    dev.ctl("reviewer", &["--json", "approvals", "revoke", id.as_str()])
        .await
        .failure(USAGE, "usage");
    dev.run_with("reviewer", &closed, &revoke.map(str::to_owned))
        .await
        .failure(UNAVAILABLE, "unavailable");

    // The row put back to approved behind the chain's revocation: verify exits 1 and names it.
    let verified = dev.ctl("auditor", &["audit", "verify"]).await;
    assert_eq!(verified.code, OK, "{verified:?}");
    let url = format!("sqlite://{}", dev.file("admission.db"));
    let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("UPDATE approvals SET state = 'approved' WHERE approval_id = $1")
        .bind(id.as_str())
        .execute(&mut db)
        .await
        .unwrap();
    db.close().await.unwrap();
    let tampered = dev.ctl("auditor", &["audit", "verify"]).await;
    assert_eq!(tampered.code, REJECTED, "{tampered:?}");
    let lines: Vec<&str> = tampered.stdout.lines().collect();
    assert!(lines[0].starts_with("MISMATCH: 1 row(s) disagree with the chain"));
    assert_eq!(
        lines[1],
        format!("approval {id}: state stored \"approved\", chain records \"revoked\"")
    );
    let report = dev
        .ctl("auditor", &["--json", "audit", "verify"])
        .await
        .json(REJECTED);
    assert_eq!(report["ok"], false);
    assert_eq!(report["first_bad_seq"], 0);
    assert_eq!(report["mismatches"][0]["approval_id"], id.as_str());
    assert_eq!(report["mismatches"][0]["field"], "state");
}

/// `audit list` and `audit verify`.
#[tokio::test]
async fn audit_commands() {
    let dev = Dev::start().await;
    let closed = [("ADMISSION_ENDPOINT", closed_endpoint())];
    dev.ctl("orchestrator", &["--json", "health"])
        .await
        .json(OK);
    let verify = ["--json", "audit", "verify"];
    let list = ["--json", "audit", "list", "--env", "dev/app"];

    let listed = dev.ctl("auditor", &list).await.json(OK);
    assert!(listed["entries"].as_array().unwrap().is_empty(), "{listed}");
    let report = dev.ctl("auditor", &verify).await.json(OK);
    assert_eq!(report["ok"], true);
    for args in [&list[..], &verify[..]] {
        let refused = dev.ctl("orchestrator", args).await;
        assert_eq!(
            refused.failure(REJECTED, "rejected")["reason"],
            "CALLER_NOT_AUTHORIZED"
        );
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        dev.run_with("auditor", &closed, &args)
            .await
            .failure(UNAVAILABLE, "unavailable");
    }
    dev.ctl(
        "auditor",
        &["--json", "audit", "list", "--since", "yesterday"],
    )
    .await
    .failure(USAGE, "usage");
    dev.ctl("auditor", &["--json", "audit", "verify", "--all"])
        .await
        .failure(USAGE, "usage");
}

/// The GitHub Action's script (`integrations/github-action/admit.sh`) with the variables the
/// action sets and a fake `GITHUB_OUTPUT`: a dev deploy is admitted, a prod deploy without
/// approval fails the step with an annotation, one with a signed credential is admitted, and
/// an unreachable service is exit status 3.
#[tokio::test]
async fn github_action_script_admits_and_fails_the_step_on_rejection() {
    let dev = Dev::start().await;
    let work = dev.tmp.path();
    let spec = write(work, "spec.kv", "pipeline=payments-api\nversion=1\n");
    let bundle = write(work, "bundle.cfg", "db_pool=20\n");
    let pem = |name: &str| std::fs::read_to_string(dev.dir.join(name)).unwrap();
    let inputs = HashMap::from([
        ("ADMISSIONCTL", ADMISSIONCTL.to_owned()),
        ("ADMISSION_ENDPOINT", dev.endpoint.clone()),
        // Secrets arrive as PEM text; a path works too.
        ("INPUT_CA", pem("ca.pem")),
        ("INPUT_CERT", pem("orchestrator.pem")),
        ("INPUT_KEY", dev.file("orchestrator.key")),
        ("INPUT_SPEC", spec.clone()),
        ("INPUT_BUNDLE", bundle),
        ("GITHUB_RUN_ID", "4242".to_owned()),
        ("GITHUB_ACTOR", "alice".to_owned()),
        ("RUNNER_TEMP", work.to_str().unwrap().to_owned()),
    ])
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value))
    .collect::<HashMap<String, String>>();
    let step = |name: &str, extra: &[(&str, &str)]| {
        let mut env = inputs.clone();
        let outputs = work.join(format!("{name}.out"));
        std::fs::write(&outputs, "").unwrap();
        env.insert(
            "GITHUB_OUTPUT".to_owned(),
            outputs.to_str().unwrap().to_owned(),
        );
        // One job per deploy: the default request id is made from the run, attempt and job.
        env.insert("GITHUB_JOB".to_owned(), name.to_owned());
        for (key, value) in extra {
            env.insert((*key).to_owned(), (*value).to_owned());
        }
        async move {
            let ran = tokio::process::Command::new("bash")
                .arg(ACTION_SCRIPT)
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .envs(env)
                .output()
                .await
                .unwrap();
            let written = std::fs::read_to_string(&outputs).unwrap();
            let outputs: HashMap<String, String> = written
                .lines()
                .filter_map(|line| line.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            let stdout = String::from_utf8(ran.stdout).unwrap();
            (ran.status.code().unwrap(), stdout, outputs)
        }
    };

    let (code, stdout, outputs) = step("dev", &[("INPUT_ENVIRONMENT", "dev/app/dev")]).await;
    assert_eq!(code, OK, "{stdout}");
    assert_eq!(outputs["admitted"], "true");
    assert!(outputs["decision_id"].starts_with("dec_"), "{outputs:?}");
    assert_eq!(outputs["reason"], "");
    let leftovers: Vec<_> = std::fs::read_dir(work)
        .unwrap()
        .filter_map(|entry| entry.ok())
        .filter(|entry| {
            entry
                .file_name()
                .to_string_lossy()
                .starts_with("admission.")
        })
        .collect();
    assert!(
        leftovers.is_empty(),
        "the PEM files are removed: {leftovers:?}"
    );

    let (code, stdout, outputs) = step("prod", &[("INPUT_ENVIRONMENT", "dev/app/prod")]).await;
    assert_eq!(code, REJECTED, "{stdout}");
    assert_eq!(outputs["admitted"], "false");
    assert_eq!(outputs["reason"], "APPROVAL_REQUIRED");
    let decision_id = &outputs["decision_id"];
    assert!(decision_id.starts_with("dec_"), "{outputs:?}");
    assert_eq!(
        stdout,
        format!(
            "::error title=Admission rejected::APPROVAL_REQUIRED: deploy in dev/app/prod \
             requires approval; attach a credential covering deploy (decision {decision_id})\n"
        )
    );

    let config = std::fs::read_to_string(dev.dir.join("admission.toml")).unwrap();
    let kid = config
        .lines()
        .find_map(|line| line.strip_prefix("kid = "))
        .unwrap()
        .trim_matches('"');
    let signing_key = dev.file("signing.key");
    let sign = [
        "sign",
        "--signing-key",
        &signing_key,
        "--kid",
        kid,
        "--org",
        "dev",
        "--project",
        "app",
        "--env",
        "prod",
        "--posture",
        "prod",
        "--spec",
        &spec,
        "--capability",
        "deploy",
        "--issued-by",
        "spiffe://dev.local/reviewer/bob",
        "--approval-id",
        "apr_action_1",
    ];
    let signed = ctl(&HashMap::new(), &sign).await;
    assert_eq!(signed.code, OK, "{signed:?}");
    let credential = signed.stdout.trim();
    let (code, stdout, outputs) = step(
        "signed",
        &[
            ("INPUT_ENVIRONMENT", "dev/app/prod"),
            ("INPUT_CREDENTIAL", credential),
        ],
    )
    .await;
    assert_eq!(code, OK, "{stdout}");
    assert_eq!(outputs["admitted"], "true");

    let closed = closed_endpoint();
    let (code, stdout, outputs) = step(
        "closed",
        &[
            ("INPUT_ENVIRONMENT", "dev/app/dev"),
            ("ADMISSION_ENDPOINT", &closed),
        ],
    )
    .await;
    assert_eq!(code, UNAVAILABLE, "{stdout}");
    assert!(
        stdout.starts_with("::error title=Admission service unavailable::cannot connect to"),
        "{stdout}"
    );
    assert_eq!(outputs["admitted"], "false");
    assert_eq!(outputs["decision_id"], "");
}

/// One run of `admissionctl`.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// The one JSON object on stdout of a run that ended with `code`.
    fn json(&self, code: i32) -> Value {
        assert_eq!(self.code, code, "{self:?}");
        assert_eq!(
            self.stdout.lines().count(),
            1,
            "one line on stdout: {self:?}"
        );
        let value: Value =
            serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {self:?}"));
        assert!(value.is_object(), "an object: {self:?}");
        value
    }

    /// The failure object of a run that ended with `code`, `error` named `name`, holding
    /// every key scripts read.
    fn failure(&self, code: i32, name: &str) -> Value {
        let value = self.json(code);
        assert_eq!(value["error"], name, "{self:?}");
        for key in ["code", "reason", "message", "decision_id"] {
            assert!(value.get(key).is_some(), "{key} in {value}");
        }
        assert!(!value["message"].as_str().unwrap().is_empty(), "{value}");
        value
    }
}

/// A running `admission-server dev` and the files it wrote.
struct Dev {
    tmp: tempfile::TempDir,
    dir: PathBuf,
    endpoint: String,
    _server: tokio::process::Child,
}

impl Dev {
    async fn start() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("dev");
        let port = free_port();
        let server = server_binary_beside(Path::new(ADMISSIONCTL));
        let (server, _printed) = spawn_until_served(&mut dev_command(&server, &dir, port)).await;
        Self {
            tmp,
            dir,
            endpoint: format!("https://localhost:{port}"),
            _server: server,
        }
    }

    /// A file of the dev environment, as a string.
    fn file(&self, name: &str) -> String {
        self.dir.join(name).to_str().unwrap().to_owned()
    }

    /// The `ADMISSION_*` variables of dev identity `who` (orchestrator, reviewer, …).
    fn env(&self, who: &str) -> HashMap<String, String> {
        HashMap::from([
            ("ADMISSION_ENDPOINT".to_owned(), self.endpoint.clone()),
            ("ADMISSION_CA".to_owned(), self.file("ca.pem")),
            (
                "ADMISSION_CERT".to_owned(),
                self.file(&format!("{who}.pem")),
            ),
            ("ADMISSION_KEY".to_owned(), self.file(&format!("{who}.key"))),
        ])
    }

    async fn ctl(&self, who: &str, args: &[&str]) -> Run {
        ctl(&self.env(who), args).await
    }

    async fn run(&self, who: &str, args: &[String]) -> Run {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ctl(&self.env(who), &args).await
    }

    async fn ctl_with(&self, who: &str, overrides: &[(&str, &str)], args: &[&str]) -> Run {
        let mut env = self.env(who);
        for (name, value) in overrides {
            env.insert((*name).to_owned(), (*value).to_owned());
        }
        ctl(&env, args).await
    }

    async fn run_with(&self, who: &str, overrides: &[(&str, String)], args: &[String]) -> Run {
        let overrides: Vec<(&str, &str)> =
            overrides.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.ctl_with(who, &overrides, &args).await
    }
}

/// Runs `admissionctl` with exactly `env` as its `ADMISSION_*` environment.
async fn ctl(env: &HashMap<String, String>, args: &[&str]) -> Run {
    let mut command = tool_command(ADMISSIONCTL);
    let env = env.iter().filter(|(_, value)| !value.is_empty());
    let output = command.envs(env).args(args).output().await.unwrap();
    Run {
        code: output.status.code().unwrap(),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

/// `https://localhost:PORT` where nothing listens.
fn closed_endpoint() -> String {
    format!("https://localhost:{}", free_port())
}

/// A CA certificate the dev server's certificate does not chain to.
fn other_ca_pem() -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.self_signed(&key).unwrap().pem()
}

/// `args` with the value after `flag` set to `value`.
fn replaced(mut args: Vec<String>, flag: &str, value: &str) -> Vec<String> {
    let at = args.iter().position(|a| a == flag).unwrap();
    args[at + 1] = value.to_owned();
    args
}

fn write(dir: &Path, name: &str, contents: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path.to_str().unwrap().to_owned()
}
