//! A PostgreSQL outage under load: the test runs its own PostgreSQL (initdb into a temporary
//! directory, its own port and socket directory, trust auth), serves admissions on it over real
//! mTLS with concurrent callers, kills the database (`pg_ctl stop -m immediate`, a crash as far
//! as the data is concerned) and starts it again on the same data. While it is down every
//! decision fails closed with UNAVAILABLE / AUDIT_UNAVAILABLE and health reports NOT_SERVING;
//! once it is back the same server reports SERVING and admits again, and every admission that
//! was answered OK at any point is in the trail, whose chain verifies.
//!
//! PostgreSQL refuses to run as root: as root the test runs its tools as the `postgres` user
//! (`runuser`), otherwise as the current user. Without PostgreSQL binaries under
//! `/usr/lib/postgresql/*/bin` (or `ADMISSION_TEST_PG_BIN`) the test fails saying so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    collections::HashMap,
    os::unix::fs::chown,
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use admission_client::{AdmissionClient, Reason, Rejection, pb};
use common::{
    AUDITOR, ConfigOptions, DEV_ENVIRONMENT, ORCHESTRATOR, TestServer, dev::free_port,
    requests::deploy,
};
use tempfile::TempDir;
use tokio::process::Command;
use tonic::Code;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};

/// Overrides where the PostgreSQL server binaries (`initdb`, `pg_ctl`, `postgres`) live.
const PG_BIN_ENV: &str = "ADMISSION_TEST_PG_BIN";

/// Roles and a durable timeout long enough
/// for a loaded machine, short enough that an outage is reported promptly; the servers add
/// [`DEV_ENVIRONMENT`], admitted without credentials.
const CONFIG: &str = r#"
[audit]
durable_timeout = "5s"

[[roles]]
identity = "spiffe://test.local/orchestrator/ci"
roles = ["orchestrator"]

[[roles]]
identity = "spiffe://test.local/auditor/audit"
roles = ["auditor"]
"#;

/// Concurrent callers putting load on the server.
const CALLERS: usize = 8;
/// Bound on the admits one caller sends.
const MAX_ADMITS_PER_CALLER: usize = 20_000;
/// Admissions answered OK before the database is stopped, and again after it is back.
const OK_BEFORE: usize = 40;
const OK_AFTER: usize = 40;
/// Bound on polling loops; each iteration sleeps [`POLL_INTERVAL`] (two minutes in all).
const POLL_ATTEMPTS: u32 = 2400;
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// A PostgreSQL server of this test's own; stopped when dropped.
struct OwnPostgres {
    bin: PathBuf,
    /// Holds `data/`, the socket directory and the log; owned by the server's user.
    dir: TempDir,
    port: u16,
    /// Run the tools as the `postgres` user (the test runs as root).
    as_postgres: bool,
}

/// What one admit was answered.
#[derive(Clone, Debug)]
enum Answer {
    /// OK: the decision_id and the audit entry hash.
    Admitted {
        decision_id: String,
        entry_hash: String,
    },
    /// UNAVAILABLE / AUDIT_UNAVAILABLE.
    AuditUnavailable,
    /// Anything else: always a failure of this test.
    Other(String),
}

/// What the callers have been answered, by request_id.
#[derive(Default)]
struct Answers {
    by_request: Mutex<HashMap<String, Answer>>,
}

// === impl OwnPostgres ===

impl OwnPostgres {
    /// Initializes a cluster in a fresh temporary directory and starts it on a free port.
    async fn start() -> Self {
        let bin = postgres_bin();
        let as_postgres = running_as_root();
        let dir = tempfile::Builder::new()
            .prefix("admission-pg-")
            .tempdir()
            .unwrap();
        if as_postgres {
            let (uid, gid) = postgres_user().await;
            chown(dir.path(), Some(uid), Some(gid)).unwrap();
        }
        let server = Self {
            bin,
            dir,
            port: free_port(),
            as_postgres,
        };
        let data = server.data();
        server
            .run(
                "initdb",
                &[
                    "-D",
                    &data,
                    "-U",
                    "postgres",
                    "-A",
                    "trust",
                    "-E",
                    "UTF8",
                    "--no-sync",
                ],
            )
            .await;
        server.start_again().await;
        server
    }

    /// `postgres://` URL of the `postgres` database.
    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    /// Starts the server on the existing data directory and waits until it accepts
    /// connections (which, after an immediate stop, includes crash recovery).
    async fn start_again(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("postgres.log").display().to_string();
        let data = self.data();
        self.run(
            "pg_ctl",
            &[
                "start", "-w", "-t", "120", "-D", &data, "-l", &log, "-o", &options,
            ],
        )
        .await;
    }

    /// Stops the server without a checkpoint and without waiting for clients: as far as the
    /// data is concerned, a crash.
    async fn stop_immediately(&self) {
        let data = self.data();
        self.run("pg_ctl", &["stop", "-w", "-m", "immediate", "-D", &data])
            .await;
    }

    /// Runs one PostgreSQL tool, failing the test with its output if it fails.
    async fn run(&self, tool: &str, args: &[&str]) {
        let output = self.command(tool, args).output().await.unwrap_or_else(|e| {
            panic!("cannot run {tool} from {}: {e}", self.bin.display());
        });
        if !output.status.success() {
            let log =
                std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default();
            panic!(
                "{tool} {args:?} failed ({}):\n{}\n{}\nserver log:\n{log}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr),
            );
        }
    }

    /// The tool's command line, as the user that may run the server.
    fn command(&self, tool: &str, args: &[&str]) -> Command {
        Command::from(self.std_command(tool, args))
    }

    fn std_command(&self, tool: &str, args: &[&str]) -> std::process::Command {
        let program = self.bin.join(tool);
        let mut command = if self.as_postgres {
            let mut command = std::process::Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            std::process::Command::new(program)
        };
        command.args(args).current_dir(self.dir.path());
        command
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        // Also when the test failed: never leave a server running on a deleted directory.
        let data = self.data();
        let stopped = self
            .std_command("pg_ctl", &["stop", "-w", "-m", "immediate", "-D", &data])
            .output();
        if !matches!(&stopped, Ok(output) if output.status.success()) {
            eprintln!("could not stop the test PostgreSQL server in {data}: {stopped:?}");
        }
    }
}

// === impl Answers ===

impl Answers {
    fn record(&self, request_id: String, answer: Answer) {
        self.by_request.lock().unwrap().insert(request_id, answer);
    }

    fn admitted(&self) -> usize {
        self.count(|a| matches!(a, Answer::Admitted { .. }))
    }

    fn unavailable(&self) -> usize {
        self.count(|a| matches!(a, Answer::AuditUnavailable))
    }

    fn count(&self, wanted: impl Fn(&Answer) -> bool) -> usize {
        self.by_request
            .lock()
            .unwrap()
            .values()
            .filter(|a| wanted(a))
            .count()
    }

    fn snapshot(&self) -> HashMap<String, Answer> {
        self.by_request.lock().unwrap().clone()
    }
}

// === helpers ===

/// The newest `/usr/lib/postgresql/<version>/bin`, or [`PG_BIN_ENV`].
fn postgres_bin() -> PathBuf {
    if let Ok(bin) = std::env::var(PG_BIN_ENV) {
        return PathBuf::from(bin);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    match versions.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "this test runs its own PostgreSQL server, but no initdb was found under \
             /usr/lib/postgresql/*/bin; install the PostgreSQL server package or set {PG_BIN_ENV}"
        ),
    }
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
}

/// uid and gid of the `postgres` user, which runs the server when the test runs as root.
async fn postgres_user() -> (u32, u32) {
    let id = |flag: &'static str| async move {
        let output = Command::new("id").args([flag, "postgres"]).output().await;
        match output {
            Ok(output) if output.status.success() => String::from_utf8_lossy(&output.stdout)
                .trim()
                .parse::<u32>()
                .ok(),
            _ => None,
        }
    };
    match (id("-u").await, id("-g").await) {
        (Some(uid), Some(gid)) => (uid, gid),
        _ => panic!(
            "this test runs as root and PostgreSQL refuses to; it needs a `postgres` user to run \
             the server as (created by the PostgreSQL server package)"
        ),
    }
}

/// Writes the config for `database_url` and starts the server in-process.
async fn serve_on(database_url: &str) -> TestServer {
    let extra = format!("{CONFIG}{DEV_ENVIRONMENT}");
    TestServer::start_on_url(database_url, &extra, &ConfigOptions::default()).await
}

/// One admit through the generated stub (no client-side retries), classified.
async fn admit(client: &AdmissionClient, request_id: &str) -> Answer {
    match client.deploy().admit(deploy("dev", request_id)).await {
        Ok(response) => {
            let admission = response.into_inner();
            Answer::Admitted {
                decision_id: admission.decision_id,
                entry_hash: admission.audit_entry_hash,
            }
        }
        Err(status) => match Rejection::from_status(&status) {
            Some(rejection)
                if rejection.code == Code::Unavailable
                    && rejection.is(Reason::AuditUnavailable)
                    && rejection.decision_id.is_none() =>
            {
                Answer::AuditUnavailable
            }
            _ => Answer::Other(format!("{status:?}")),
        },
    }
}

/// Starts the callers; each sends admits with fresh request_ids until `stop` is set.
fn start_load(
    client: &AdmissionClient,
    answers: &Arc<Answers>,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..CALLERS)
        .map(|caller| {
            let (client, answers, stop) = (client.clone(), answers.clone(), stop.clone());
            tokio::spawn(async move {
                for n in 0..MAX_ADMITS_PER_CALLER {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let request_id = format!("load-{caller}-{n}");
                    let answer = admit(&client, &request_id).await;
                    let failed = !matches!(answer, Answer::Admitted { .. });
                    answers.record(request_id, answer);
                    if failed {
                        // Back off like a real caller would, so an outage is not a busy loop.
                        tokio::time::sleep(POLL_INTERVAL).await;
                    }
                }
            })
        })
        .collect()
}

/// Polls until `condition` holds, failing with `what` after [`POLL_ATTEMPTS`].
async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    for _ in 0..POLL_ATTEMPTS {
        if condition() {
            return;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    panic!("timed out waiting until {what}");
}

async fn health(client: &AdmissionClient, service: &str) -> ServingStatus {
    let response = client
        .health()
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await
        .unwrap()
        .into_inner();
    ServingStatus::try_from(response.status).unwrap()
}

/// Polls overall health until it reports `wanted`, then checks the deploy service agrees.
async fn wait_for_health(client: &AdmissionClient, wanted: ServingStatus) {
    let mut last = ServingStatus::Unknown;
    for _ in 0..POLL_ATTEMPTS {
        last = health(client, "").await;
        if last == wanted {
            let deploy = health(client, "byteor.admission.v1.DeployAdmission").await;
            assert_eq!(deploy, wanted);
            return;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    panic!("health stayed {last:?}, expected {wanted:?}");
}

async fn audit_entries(auditor: &AdmissionClient) -> Vec<pb::AuditEntry> {
    common::server::audit_entries(auditor, 1000).await
}

// === the test ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_under_load_fails_closed_and_recovers() {
    let postgres = OwnPostgres::start().await;
    let server = serve_on(&postgres.url()).await;
    let orchestrator = server.client(ORCHESTRATOR).await;
    let auditor = server.client(AUDITOR).await;
    assert_eq!(health(&auditor, "").await, ServingStatus::Serving);

    let answers = Arc::new(Answers::default());
    let stop = Arc::new(AtomicBool::new(false));
    let load = start_load(&orchestrator, &answers, &stop);
    wait_until("admissions flow", || answers.admitted() >= OK_BEFORE).await;

    // The outage, under load.
    postgres.stop_immediately().await;
    wait_for_health(&auditor, ServingStatus::NotServing).await;
    let during = admit(&orchestrator, "during-outage").await;
    assert!(matches!(during, Answer::AuditUnavailable), "{during:?}");
    wait_until("callers are told the audit is unavailable", || {
        answers.unavailable() > 0
    })
    .await;
    let admitted_before_restart = answers.admitted();

    // Recovery, without restarting the admission server.
    postgres.start_again().await;
    wait_for_health(&auditor, ServingStatus::Serving).await;
    let mut recovered = None;
    for n in 0..POLL_ATTEMPTS {
        match admit(&orchestrator, &format!("after-outage-{n}")).await {
            admitted @ Answer::Admitted { .. } => {
                recovered = Some((format!("after-outage-{n}"), admitted));
                break;
            }
            Answer::AuditUnavailable => tokio::time::sleep(POLL_INTERVAL).await,
            Answer::Other(status) => panic!("unexpected answer after recovery: {status}"),
        }
    }
    let (request_id, answer) = recovered.expect("an admit succeeds after the database is back");
    answers.record(request_id, answer);
    wait_until("callers are admitted again", || {
        answers.admitted() >= admitted_before_restart + OK_AFTER
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for caller in load {
        caller.await.unwrap();
    }

    // Every answer was an admission or AUDIT_UNAVAILABLE; every admission is in the trail.
    let answered = answers.snapshot();
    let entries = audit_entries(&auditor).await;
    let recorded: HashMap<&str, &pb::AuditEntry> =
        entries.iter().map(|e| (e.entry_id.as_str(), e)).collect();
    let mut admitted = 0;
    for (request_id, answer) in &answered {
        match answer {
            Answer::Admitted {
                decision_id,
                entry_hash,
            } => {
                let entry = recorded
                    .get(decision_id.as_str())
                    .unwrap_or_else(|| panic!("admission {decision_id} is not in the trail"));
                assert_eq!(
                    (entry.outcome.as_str(), entry.request_id.as_str()),
                    ("admitted", request_id.as_str())
                );
                assert_eq!(&entry.entry_hash, entry_hash);
                admitted += 1;
            }
            Answer::AuditUnavailable => {}
            Answer::Other(status) => panic!("{request_id} was answered {status}"),
        }
    }
    assert!(admitted >= OK_BEFORE + OK_AFTER, "{admitted}");
    let report = auditor
        .audit()
        .verify(pb::VerifyAuditRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(report.ok, "{report:?}");
    assert_eq!(report.entries_checked, entries.len() as u64);
    println!(
        "{} admits answered: {admitted} admitted, {} audit unavailable; {} entries in the trail",
        answered.len(),
        answered.len() - admitted,
        entries.len()
    );
    server.stop().await;
    drop(postgres);
}
