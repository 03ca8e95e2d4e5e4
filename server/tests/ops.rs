//! The operations listener and the operator-facing parts of the real `admission-server`
//! binary: `/healthz`, `/readyz` (503 while the audit store cannot be written), a Prometheus
//! scrape after admissions, gRPC health over h2c, no admission RPC on the ops port,
//! `healthcheck` exit statuses, `ADMISSION_CONFIG`, `${VAR}` expansion, and `check-config`
//! reaching the database and reporting every problem at once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../tests/common/mod.rs"]
mod common;

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use admission_client::{AdmissionClient, Reason, pb};
use common::{
    DEV_ENVIRONMENT, ORCHESTRATOR, PROD_ENVIRONMENT, Pki, ROLES,
    dev::free_port,
    requests::deploy,
    store::{Backend, StoreLock, TestDb},
};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tonic::Code;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

const BIN: &str = env!("CARGO_BIN_EXE_admission-server");

/// Polls every 100 ms, at most 300 times (30 s).
const POLL: Duration = Duration::from_millis(100);
const POLLS: u32 = 300;

/// A real `admission-server --config` with an operations listener; killed when dropped.
struct Served {
    child: tokio::process::Child,
    api_port: u16,
    ops_port: u16,
    pki: Pki,
    config: PathBuf,
    _dir: TempDir,
}

/// An HTTP answer: status, the content type, the body.
struct Answer {
    status: u16,
    content_type: String,
    body: String,
}

/// Writes a config with roles, the dev and prod environments, a short durable timeout and
/// `[ops] listen` on a free port (and `database_url` when given).
fn write_ops_config(dir: &Path, pki: &Pki, database_url: Option<&str>) -> (PathBuf, u16, u16) {
    let (api_port, ops_port) = (free_port(), free_port());
    let extra = format!(
        "{ROLES}{DEV_ENVIRONMENT}{PROD_ENVIRONMENT}\n[audit]\ndurable_timeout = \"500ms\"\n\n\
         [ops]\nlisten = \"127.0.0.1:{ops_port}\"\n"
    );
    let path = common::write_config(dir, pki, &[], &extra);
    let mut top = format!("listen = \"127.0.0.1:{api_port}\"\n");
    if let Some(url) = database_url {
        top.push_str(&format!("database_url = {url:?}\n"));
    }
    let text =
        std::fs::read_to_string(&path)
            .unwrap()
            .replacen("listen = \"127.0.0.1:0\"\n", &top, 1);
    std::fs::write(&path, text).unwrap();
    (path, api_port, ops_port)
}

async fn serve(database_url: Option<&str>) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("ops");
    let (config, api_port, ops_port) = write_ops_config(dir.path(), &pki, database_url);
    let child = tokio::process::Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "warn")
        .env_remove("ADMISSION_CONFIG")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let served = Served {
        child,
        api_port,
        ops_port,
        pki,
        config,
        _dir: dir,
    };
    served.until_status("/healthz", 200).await;
    served
}

/// `GET path` on plain HTTP/1.1, or `None` when nothing answers.
async fn get(port: u16, method: &str, path: &str) -> Option<Answer> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\n\
         Connection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.ok()?;
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head[9..12].parse().unwrap();
    let content_type = head
        .lines()
        .find_map(|line| {
            line.to_ascii_lowercase()
                .strip_prefix("content-type: ")
                .map(str::to_owned)
        })
        .unwrap_or_default();
    Some(Answer {
        status,
        content_type,
        body: body.to_owned(),
    })
}

fn healthcheck(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let output = Command::new(BIN)
        .arg("healthcheck")
        .args(args)
        .env_remove("ADMISSION_CONFIG")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8(output.stdout).unwrap(),
    )
}

/// The value of the sample `name{labels}` in an exposition text.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

// === impl Served ===

impl Served {
    async fn until_status(&self, path: &str, status: u16) -> Answer {
        for _ in 0..POLLS {
            if let Some(answer) = get(self.ops_port, "GET", path).await {
                if answer.status == status {
                    return answer;
                }
            }
            tokio::time::sleep(POLL).await;
        }
        panic!("{path} never answered {status}");
    }

    async fn client(&self) -> AdmissionClient {
        let cert = self.pki.client(ORCHESTRATOR);
        AdmissionClient::builder()
            .endpoint(format!("https://localhost:{}", self.api_port))
            .ca_pem(self.pki.ca_pem())
            .identity_pem(cert.cert_pem, cert.key_pem)
            .connect()
            .await
            .unwrap()
    }

    fn ops_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.ops_port)
    }

    async fn stop(mut self) {
        let pid = self.child.id().unwrap();
        Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        assert_eq!(self.child.wait().await.unwrap().code(), Some(0));
    }
}

#[tokio::test]
async fn probes_scrape_and_grpc_health_on_the_ops_port() {
    let served = serve(None).await;
    let healthz = served.until_status("/healthz", 200).await;
    assert_eq!(healthz.body, "ok\n");
    let readyz = served.until_status("/readyz", 200).await;
    assert_eq!(readyz.body, "ready\n");

    let client = served.client().await;
    for id in ["ops-dev-1", "ops-dev-2"] {
        client.admit_deploy(deploy("dev", id)).await.unwrap();
    }
    let rejected = client.admit_deploy(deploy("prod", "ops-prod-1")).await;
    let rejection = rejected.unwrap_err();
    assert_eq!(
        rejection.rejection().unwrap().reason,
        admission_client::RejectionReason::Known(Reason::ApprovalRequired)
    );

    let scrape = served.until_status("/metrics", 200).await;
    assert!(
        scrape
            .content_type
            .starts_with("application/openmetrics-text"),
        "{}",
        scrape.content_type
    );
    let text = scrape.body;
    assert!(text.trim_end().ends_with("# EOF"), "{text}");
    assert!(
        text.contains("# TYPE admission_decisions counter"),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            r#"admission_decisions_total{action="deploy",outcome="admitted",reason=""}"#
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            r#"admission_decisions_total{action="deploy",outcome="rejected",reason="APPROVAL_REQUIRED"}"#
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            r#"admission_decision_duration_seconds_count{action="deploy"}"#
        ),
        Some(3.0),
        "{text}"
    );
    // Every decision is audited, in one or more group commits.
    let commits = sample(&text, "admission_audit_commit_duration_seconds_count").unwrap();
    assert!(commits >= 1.0, "{text}");
    assert_eq!(
        sample(&text, "admission_audit_commit_batch_size_sum"),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            r#"admission_tls_handshakes_refused_total{reason="handshake_failed"}"#
        ),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "admission_calls_in_flight"),
        Some(0.0),
        "{text}"
    );

    // grpc.health.v1 over h2c, from the same reporter as the API port.
    let channel = tonic::transport::Endpoint::from_shared(served.ops_url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let health = HealthClient::new(channel.clone())
        .check(HealthCheckRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(health.status, ServingStatus::Serving as i32);

    // No admission RPC here: gRPC says UNIMPLEMENTED, plain HTTP 404; nothing is decided.
    let mut deploys = pb::deploy_admission_client::DeployAdmissionClient::new(channel);
    let refused = deploys.admit(deploy("dev", "ops-dev-3")).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unimplemented);
    let post = get(
        served.ops_port,
        "POST",
        "/byteor.admission.v1.DeployAdmission/Admit",
    )
    .await
    .unwrap();
    assert_eq!(post.status, 404);
    assert_eq!(get(served.ops_port, "GET", "/").await.unwrap().status, 404);
    let after = served.until_status("/metrics", 200).await.body;
    assert_eq!(
        sample(
            &after,
            r#"admission_decision_duration_seconds_count{action="deploy"}"#
        ),
        Some(3.0)
    );
    served.stop().await;
}

#[tokio::test]
async fn healthcheck_exits_0_when_ready_and_1_otherwise() {
    let served = serve(None).await;
    served.until_status("/readyz", 200).await;
    let config = served.config.to_str().unwrap().to_owned();
    let (code, line) = healthcheck(&["--ops", &served.ops_url()], &[]);
    assert_eq!(code, Some(0), "{line}");
    assert_eq!(
        line,
        format!("ready: {}/readyz answered 200 ready\n", served.ops_url())
    );
    // Without --ops: the config's [ops] listen, from --config or ADMISSION_CONFIG.
    assert_eq!(healthcheck(&["--config", &config], &[]).0, Some(0));
    assert_eq!(
        healthcheck(&[], &[("ADMISSION_CONFIG", &config)]).0,
        Some(0)
    );

    let nobody = format!("http://127.0.0.1:{}", free_port());
    let (code, line) = healthcheck(&["--ops", &nobody], &[]);
    assert_eq!(code, Some(1));
    assert!(
        line.starts_with(&format!("not ready: {nobody}/readyz: ")),
        "{line}"
    );
    assert_eq!(line.lines().count(), 1);
    let (code, line) = healthcheck(&["--ops", "https://127.0.0.1:9090"], &[]);
    assert_eq!(code, Some(1));
    assert!(line.contains("plain http"), "{line}");
    served.stop().await;
}

async fn readyz_follows_the_audit_store(db: &TestDb, backend: Backend) {
    let served = serve(Some(&db.url)).await;
    served.until_status("/readyz", 200).await;
    let lock = StoreLock::acquire(backend, &db.url).await;
    let down = served.until_status("/readyz", 503).await;
    assert_eq!(down.body, "not ready: the audit store is not writable\n");
    let (code, line) = healthcheck(&["--ops", &served.ops_url()], &[]);
    assert_eq!(code, Some(1));
    assert_eq!(
        line,
        format!(
            "not ready: {}/readyz answered 503 not ready: the audit store is not writable\n",
            served.ops_url()
        )
    );
    // The process is still up.
    served.until_status("/healthz", 200).await;
    lock.release().await;
    served.until_status("/readyz", 200).await;
    served.stop().await;
}

#[tokio::test]
async fn readyz_is_503_while_the_audit_store_cannot_be_written() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let Some(db) = backend.database("ops_readyz").await else {
            continue;
        };
        readyz_follows_the_audit_store(&db, backend).await;
        db.cleanup().await;
    }
}

#[tokio::test]
async fn admission_config_and_variables_in_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("ops-env");
    let (config, _, ops_port) = write_ops_config(dir.path(), &pki, None);
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text
        .replacen(
            &format!("listen = \"127.0.0.1:{ops_port}\""),
            "listen = \"${OPS_HOST:-127.0.0.1}:${OPS_PORT}\" # ${NOT_EXPANDED} in a comment",
            1,
        )
        .replacen(
            "key_set = \"signing_keys.json\"",
            "key_set = \"${KEY_SET}\"\ndatabase_url = \"sqlite://${DB_FILE:-admission.db}\"",
            1,
        );
    std::fs::write(&config, text).unwrap();
    let config_str = config.to_str().unwrap();

    // Unset variables: every one is named, with its field and line.
    let output = Command::new(BIN)
        .arg("check-config")
        .env("ADMISSION_CONFIG", config_str)
        .env_remove("OPS_PORT")
        .env_remove("KEY_SET")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    let lines: Vec<_> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(
        lines[0].starts_with(&format!(
            "{config_str}: key_set: environment variable KEY_SET is not set"
        )),
        "{stderr}"
    );
    assert!(
        lines[1].starts_with(&format!(
            "{config_str}: [ops] listen: environment variable OPS_PORT is not set"
        )),
        "{stderr}"
    );

    // Served from ADMISSION_CONFIG alone, with the variables set.
    let mut child = tokio::process::Command::new(BIN)
        .env("ADMISSION_CONFIG", config_str)
        .env("OPS_PORT", ops_port.to_string())
        .env("KEY_SET", "signing_keys.json")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut up = false;
    for _ in 0..POLLS {
        if get(ops_port, "GET", "/readyz")
            .await
            .is_some_and(|a| a.status == 200)
        {
            up = true;
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    assert!(up, "the server from ADMISSION_CONFIG never got ready");
    assert!(dir.path().join("admission.db").exists());
    child.kill().await.unwrap();
}

fn check_config(config: &Path) -> (Option<i32>, String, String) {
    let output = Command::new(BIN)
        .arg("check-config")
        .arg(config)
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

#[test]
fn check_config_names_an_unreachable_database_without_its_password() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("ops-db");
    let url = format!(
        "postgres://admission:hunter2@127.0.0.1:{}/admission",
        free_port()
    );
    let (config, _, _) = write_ops_config(dir.path(), &pki, Some(&url));
    let (code, stdout, stderr) = check_config(&config);
    assert_eq!(code, Some(2), "{stdout}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    let port = url.rsplit(':').next().unwrap().split('/').next().unwrap();
    assert!(
        stderr.starts_with(&format!(
            "{}: database_url: cannot connect to postgres at 127.0.0.1:{port}: ",
            config.display()
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");

    // --offline checks the file only.
    let output = Command::new(BIN)
        .args(["check-config", "--offline"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
}

#[test]
fn check_config_reports_every_problem_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("ops-many");
    let (config, _, ops_port) = write_ops_config(dir.path(), &pki, None);
    let (code, stdout, _) = check_config(&config);
    assert_eq!(code, Some(0));
    assert_eq!(stdout, "config ok: 2 environments, 3 role bindings\n");

    let text = std::fs::read_to_string(&config).unwrap();
    let broken = text
        .replacen(
            &format!("listen = \"127.0.0.1:{ops_port}\""),
            "listen = \"nowhere\"",
            1,
        )
        .replacen("posture = \"prod\"", "posture = \"prod\"\nmax_uses = 0", 1)
        .replacen(
            "key_set = \"signing_keys.json\"",
            "key_set = \"missing.json\"",
            1,
        );
    std::fs::write(&config, broken).unwrap();
    let (code, _, stderr) = check_config(&config);
    assert_eq!(code, Some(2));
    let file = config.display();
    let lines: Vec<_> = stderr.lines().collect();
    assert_eq!(lines.len(), 3, "{stderr}");
    assert!(
        lines[0].starts_with(&format!("{file}: key_set: cannot read key set")),
        "{stderr}"
    );
    assert_eq!(
        lines[1],
        format!("{file}: [[environments]] #2 max_uses: must be at least 1")
    );
    assert_eq!(
        lines[2],
        format!("{file}: [ops] listen: \"nowhere\" is not an ip:port socket address")
    );
}
