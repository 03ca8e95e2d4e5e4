//! Admission throughput and latency, reported as ratios against a transport baseline measured in
//! the same run: `cargo bench -p admission-server --bench admission`.
//!
//! Starts the real server in-process on loopback with a fresh `admission-server dev` environment
//! and calls it over real mTLS with the client crate. The baseline is
//! `grpc.health.v1.Health/Check` over the same connections at the same concurrency: the transport
//! cost without a decision or a durable write. Every other scenario makes one durable audit
//! append per call; at the end the bench checks that the chain verifies and holds exactly the
//! decisions it made, so it measures real decisions. Last, it appends straight into fresh
//! SQLite audit stores with one COMMIT per append and with the default group commit, which
//! isolates what batching is worth on this disk.
//!
//! Settings, from the environment:
//! - `BENCH_CALLS`: calls per scenario (default 2000; 10 when run as a smoke check by
//!   `cargo test --benches`, which does not pass `--bench`);
//! - `BENCH_SECONDS`: time cap per scenario (default 20);
//! - `BENCH_CONCURRENCY`: comma-separated concurrency levels (default `1,8,64`); the credential
//!   and rejection scenarios run at 8, or at the highest level when 8 is not listed;
//! - `BENCH_CONNECTIONS`: most mTLS connections per concurrency level (default 8);
//! - `ADMISSION_BENCH_DATABASE_URL`: also run the admit scenario on this PostgreSQL database
//!   (the bench appends to its trail; use a dedicated database).
//!
//! The load generator shares the process, and the cores, with the server.

use std::{
    env,
    error::Error,
    fs,
    io::Write,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use admission_client::{AdmissionClient, Reason, SpecHash, pb};
use admission_contract::credential::{Claims, SigningKey};
use admission_server::{
    runtime::config::Config,
    runtime::dev::{self, DevEnvironment},
    runtime::serve,
    runtime::state::{AppState, ServeError},
    store::{
        Append, Appended, AuditStore, ListFilter, MAX_PAGE_SIZE, NewEntry, Scope, StoreOptions,
    },
};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};

type BenchError = Box<dyn Error + Send + Sync>;

/// What one call does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scenario {
    /// `Health/Check`: transport only.
    Baseline,
    /// Admit to `dev/app/dev` (posture dev): admitted without credentials.
    AdmitDev,
    /// Admit to `dev/app/prod` with one signed credential: verification and a use consumed.
    AdmitProd,
    /// Admit to `dev/app/prod` without credentials: rejected APPROVAL_REQUIRED, and audited.
    RejectProd,
}

/// Bench settings.
#[derive(Clone, Debug)]
struct Settings {
    calls: usize,
    max_time: Duration,
    concurrency: Vec<usize>,
    policy_concurrency: usize,
    connections: usize,
    postgres_url: Option<String>,
}

/// A server running in-process on an ephemeral loopback port.
struct Server {
    store: &'static str,
    state: AppState,
    port: u16,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), ServeError>>,
    /// Entries in the trail before the bench's first decision.
    entries_before: u64,
    /// When the server started: every entry recorded since is the bench's.
    started: SystemTime,
}

/// Decisions the bench made on one server, by the outcome the service must have recorded.
#[derive(Clone, Copy, Debug, Default)]
struct Tally {
    admitted: u64,
    rejected: u64,
}

/// The calls of one scenario, shared by its workers.
struct Work {
    scenario: Scenario,
    requests: Vec<pb::DeployRequest>,
    calls: usize,
    next: AtomicUsize,
    deadline: Instant,
}

/// Request ids and approval ids unique to this run, so a reused database never replays them.
struct Ids {
    run: String,
    next: AtomicUsize,
}

/// One scenario's measured calls.
#[derive(Clone, Debug)]
struct Measurement {
    store: &'static str,
    scenario: Scenario,
    concurrency: usize,
    connections: usize,
    calls: usize,
    elapsed: Duration,
    /// Sorted ascending.
    latencies: Vec<Duration>,
}

/// Appends per second straight into an [`AuditStore`], one COMMIT per append against group
/// commit: the batching evidence the end-to-end numbers cannot isolate.
#[derive(Clone, Copy, Debug)]
struct StoreBatching {
    concurrency: usize,
    appends: usize,
    single_per_second: f64,
    grouped_per_second: f64,
    max_batch: usize,
}

/// A measurement next to the baseline measured at the same concurrency.
#[derive(Clone, Debug)]
struct Row {
    measured: Measurement,
    baseline_throughput: f64,
    baseline_p50: Duration,
}

const SPEC_KV: &[u8] = b"a=1\n";
const REVIEWER: &str = "spiffe://dev.local/reviewer/alice";
/// Admissions made before measuring, so the first scenario does not pay for a cold store.
const WARMUP_ADMITS: usize = 20;

#[tokio::main]
async fn main() -> Result<(), BenchError> {
    let settings = Settings::from_env()?;
    let tmp = tempfile::tempdir()?;
    let dev_env = dev::prepare(&tmp.path().join("dev"))?;
    let probe_dir = dev_env.dir.clone();
    let fsync_per_second = tokio::task::spawn_blocking(move || fsync_rate(&probe_dir)).await??;
    let ids = Ids::new();
    let mut rows = Vec::new();

    let sqlite = Server::start("sqlite", &dev_env, None).await?;
    let (measured, tally) = run_store(&sqlite, &dev_env, &settings, &ids, true).await?;
    rows.extend(measured);
    let sqlite_entries = sqlite.check_trail(tally).await?;
    sqlite.stop().await?;

    let mut postgres_entries = None;
    if let Some(url) = settings.postgres_url.clone() {
        let postgres = Server::start("postgres", &dev_env, Some(url)).await?;
        let (measured, tally) = run_store(&postgres, &dev_env, &settings, &ids, false).await?;
        rows.extend(measured);
        postgres_entries = Some(postgres.check_trail(tally).await?);
        postgres.stop().await?;
    }

    let batching = store_batching(&dev_env.dir, &settings).await?;

    print_table(&rows);
    print_group_commit(&rows, fsync_per_second, &batching);
    println!("audit trail: sqlite verified {sqlite_entries} entries, one per decision");
    if let Some(entries) = postgres_entries {
        println!("audit trail: postgres verified {entries} new entries, one per decision");
    }
    println!(
        "{}",
        json_line(&settings, &rows, fsync_per_second, &batching)
    );
    Ok(())
}

/// Every scenario against one server, each concurrency level with its own baseline.
async fn run_store(
    server: &Server,
    dev_env: &DevEnvironment,
    settings: &Settings,
    ids: &Ids,
    with_policy_scenarios: bool,
) -> Result<(Vec<Row>, Tally), BenchError> {
    let mut rows = Vec::new();
    let mut tally = Tally::default();
    let signing_key = signing_key(&dev_env.config)?;
    let warmup = Settings {
        calls: WARMUP_ADMITS,
        ..settings.clone()
    };
    let pool = server.connect(dev_env, 1).await?;
    let warmed = measure(Scenario::AdmitDev, server, &pool, 1, &warmup, ids, None).await?;
    tally.admitted += warmed.calls as u64;
    for &concurrency in &settings.concurrency {
        let pool = server
            .connect(dev_env, concurrency.min(settings.connections))
            .await?;
        let baseline = measure(
            Scenario::Baseline,
            server,
            &pool,
            concurrency,
            settings,
            ids,
            None,
        )
        .await?;
        let mut scenarios = vec![Scenario::AdmitDev];
        if with_policy_scenarios && concurrency == settings.policy_concurrency {
            scenarios.extend([Scenario::AdmitProd, Scenario::RejectProd]);
        }
        let baseline_throughput = baseline.throughput();
        let baseline_p50 = baseline.percentile(0.50);
        rows.push(Row::new(baseline.clone(), &baseline));
        for scenario in scenarios {
            let key = (scenario == Scenario::AdmitProd).then_some(signing_key.as_ref());
            let measured =
                measure(scenario, server, &pool, concurrency, settings, ids, key).await?;
            match scenario {
                Scenario::RejectProd => tally.rejected += measured.calls as u64,
                _ => tally.admitted += measured.calls as u64,
            }
            rows.push(Row {
                measured,
                baseline_throughput,
                baseline_p50,
            });
        }
    }
    Ok((rows, tally))
}

/// Runs up to `settings.calls` calls of `scenario` from `concurrency` workers spread over
/// `pool`, stopping early at `settings.max_time`. Requests (and credentials) are made before
/// the clock starts.
async fn measure(
    scenario: Scenario,
    server: &Server,
    pool: &[AdmissionClient],
    concurrency: usize,
    settings: &Settings,
    ids: &Ids,
    signing_key: Option<&SigningKey>,
) -> Result<Measurement, BenchError> {
    let requests = (0..settings.calls)
        .map(|_| scenario.request(ids, signing_key))
        .collect::<Result<Vec<_>, _>>()?;
    let work = Arc::new(Work {
        scenario,
        requests,
        calls: settings.calls,
        next: AtomicUsize::new(0),
        deadline: Instant::now() + settings.max_time,
    });
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|worker| {
            let client = pool[worker % pool.len()].clone();
            tokio::spawn(run_worker(work.clone(), client))
        })
        .collect();
    let mut latencies = Vec::with_capacity(settings.calls);
    for worker in workers {
        latencies.extend(worker.await??);
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    Ok(Measurement {
        store: server.store,
        scenario,
        concurrency,
        connections: pool.len(),
        calls: latencies.len(),
        elapsed,
        latencies,
    })
}

/// Takes calls until none are left or the deadline passes; returns their latencies.
async fn run_worker(work: Arc<Work>, client: AdmissionClient) -> Result<Vec<Duration>, BenchError> {
    let mut latencies = Vec::new();
    loop {
        let index = work.next.fetch_add(1, Ordering::Relaxed);
        if index >= work.calls || Instant::now() >= work.deadline {
            return Ok(latencies);
        }
        let request = work.requests.get(index).cloned();
        let started = Instant::now();
        work.scenario.call(&client, request).await?;
        latencies.push(started.elapsed());
    }
}

/// Durable 4 KiB appends per second in `dir`: with one fsync per COMMIT, about the most commits
/// per second this disk allows.
fn fsync_rate(dir: &Path) -> std::io::Result<f64> {
    let path = dir.join("fsync-probe");
    let mut file = fs::File::create(&path)?;
    let block = [0u8; 4096];
    let started = Instant::now();
    let mut syncs = 0u32;
    while syncs < 200 && started.elapsed() < Duration::from_secs(2) {
        file.write_all(&block)?;
        file.sync_data()?;
        syncs += 1;
    }
    let rate = f64::from(syncs) / started.elapsed().as_secs_f64();
    fs::remove_file(&path)?;
    Ok(rate)
}

/// Appends straight into fresh SQLite stores in `dir` at the highest concurrency, first with
/// one append per transaction, then with the default group commit.
async fn store_batching(dir: &Path, settings: &Settings) -> Result<StoreBatching, BenchError> {
    let concurrency = settings.concurrency.iter().copied().max().unwrap_or(1);
    let grouped = StoreOptions::default();
    let max_batch = grouped.max_batch;
    let single = StoreOptions {
        max_batch: 1,
        ..StoreOptions::default()
    };
    let (appends, single_per_second) =
        appends_per_second(&dir.join("batch-1.db"), single, settings, concurrency).await?;
    let (_, grouped_per_second) = appends_per_second(
        &dir.join("batch-default.db"),
        grouped,
        settings,
        concurrency,
    )
    .await?;
    Ok(StoreBatching {
        concurrency,
        appends,
        single_per_second,
        grouped_per_second,
        max_batch,
    })
}

/// Up to `settings.calls` appends from `concurrency` tasks into a new store at `file`; returns
/// how many were made and their rate.
async fn appends_per_second(
    file: &Path,
    options: StoreOptions,
    settings: &Settings,
    concurrency: usize,
) -> Result<(usize, f64), BenchError> {
    let store = AuditStore::open(&format!("sqlite://{}", file.display()), options).await?;
    let next = Arc::new(AtomicUsize::new(0));
    let (calls, deadline) = (settings.calls, Instant::now() + settings.max_time);
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (store, next) = (store.clone(), next.clone());
            tokio::spawn(async move {
                let mut made = 0usize;
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= calls || Instant::now() >= deadline {
                        return Ok::<_, BenchError>(made);
                    }
                    match store.append(bench_append(index)).await? {
                        Appended::Committed(_) => made += 1,
                        other => return Err(format!("append refused: {other:?}").into()),
                    }
                }
            })
        })
        .collect();
    let mut made = 0;
    for task in tasks {
        made += task.await??;
    }
    Ok((made, made as f64 / started.elapsed().as_secs_f64()))
}

/// A plain decision entry, as the admit path records for `dev/app/dev`.
fn bench_append(index: usize) -> Append {
    Append {
        entry: NewEntry {
            entry_id: format!("store-bench-{index}"),
            actor: "spiffe://dev.local/orchestrator/ci".to_owned(),
            actor_cert_sha256: "0".repeat(64),
            initiated_by: "bench@example.com".to_owned(),
            action: "deploy.admit".to_owned(),
            scope: Scope {
                org_id: "dev".to_owned(),
                project_id: "app".to_owned(),
                environment_id: "dev".to_owned(),
            },
            outcome: "admitted".to_owned(),
            grpc_code: "OK".to_owned(),
            ..NewEntry::default()
        },
        consume: Vec::new(),
        on_refused: None,
        idempotency: None,
        admission: None,
        approval_write: None,
    }
}

/// The service's own signing key, as `admission-server dev` configured it.
fn signing_key(config: &Path) -> Result<Arc<SigningKey>, BenchError> {
    let config = Config::load(config)?;
    let signing = config
        .signing
        .ok_or("the dev config has no [signing] key")?;
    Ok(signing.key)
}

fn print_table(rows: &[Row]) {
    println!();
    println!(
        "{:<34} {:<8} {:>4} {:>5} {:>6} {:>9} {:>8} {:>8} {:>8} {:>9} {:>9}",
        "scenario",
        "store",
        "conc",
        "conns",
        "calls",
        "calls/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "thr/base",
        "p50/base"
    );
    for row in rows {
        let m = &row.measured;
        println!(
            "{:<34} {:<8} {:>4} {:>5} {:>6} {:>9.0} {:>8.2} {:>8.2} {:>8.2} {:>9.3} {:>9.2}",
            m.scenario.label(),
            m.store,
            m.concurrency,
            m.connections,
            m.calls,
            m.throughput(),
            millis(m.percentile(0.50)),
            millis(m.percentile(0.99)),
            millis(m.max()),
            row.throughput_ratio(),
            row.latency_ratio()
        );
    }
    println!();
}

/// How admit throughput scales with concurrency, the disk's fsync rate, and the store alone
/// with one COMMIT per append against group commit.
fn print_group_commit(rows: &[Row], fsync_per_second: f64, batching: &StoreBatching) {
    println!(
        "disk: {fsync_per_second:.0} fsync/s (4 KiB appends in the bench's directory); \
         one COMMIT per entry cannot exceed this"
    );
    for store in ["sqlite", "postgres"] {
        let admits: Vec<&Measurement> = rows
            .iter()
            .map(|row| &row.measured)
            .filter(|m| m.store == store && m.scenario == Scenario::AdmitDev)
            .collect();
        let (Some(first), Some(last)) = (admits.first(), admits.last()) else {
            continue;
        };
        println!(
            "admit dev ({store}): {:.0}/s at concurrency {} = {:.2}x the {:.0}/s at {}",
            last.throughput(),
            last.concurrency,
            last.throughput() / first.throughput(),
            first.throughput(),
            first.concurrency
        );
    }
    println!(
        "audit store alone (sqlite, {} appends from {} tasks): {:.0}/s with max_batch 1, \
         {:.0}/s with max_batch {} = {:.2}x from group commit",
        batching.appends,
        batching.concurrency,
        batching.single_per_second,
        batching.grouped_per_second,
        batching.max_batch,
        batching.grouped_per_second / batching.single_per_second
    );
}

fn json_line(
    settings: &Settings,
    rows: &[Row],
    fsync_per_second: f64,
    batching: &StoreBatching,
) -> serde_json::Value {
    let results: Vec<serde_json::Value> = rows
        .iter()
        .map(|row| {
            let m = &row.measured;
            serde_json::json!({
                "scenario": m.scenario.key(),
                "store": m.store,
                "concurrency": m.concurrency,
                "connections": m.connections,
                "calls": m.calls,
                "elapsed_s": m.elapsed.as_secs_f64(),
                "throughput_per_s": m.throughput(),
                "p50_ms": millis(m.percentile(0.50)),
                "p99_ms": millis(m.percentile(0.99)),
                "max_ms": millis(m.max()),
                "throughput_ratio": row.throughput_ratio(),
                "p50_ratio": row.latency_ratio(),
            })
        })
        .collect();
    let unix_seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    serde_json::json!({
        "bench": "admission",
        "unix_time": unix_seconds,
        "calls_per_scenario": settings.calls,
        "max_seconds_per_scenario": settings.max_time.as_secs_f64(),
        "fsync_per_s": fsync_per_second,
        "store_batching": {
            "store": "sqlite",
            "concurrency": batching.concurrency,
            "appends": batching.appends,
            "max_batch_1_per_s": batching.single_per_second,
            "grouped_per_s": batching.grouped_per_second,
            "max_batch": batching.max_batch,
        },
        "results": results,
    })
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

fn env_number(name: &str, default: usize) -> Result<usize, BenchError> {
    match env::var(name) {
        Ok(text) => match text.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!("{name} must be a positive whole number, not {text:?}").into()),
        },
        Err(_) => Ok(default),
    }
}

/// Now, truncated to whole seconds (credential times are whole seconds).
fn now_whole_seconds() -> SystemTime {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    UNIX_EPOCH + Duration::from_secs(seconds)
}

// === impl Settings ===

impl Settings {
    fn from_env() -> Result<Self, BenchError> {
        // `cargo bench` passes `--bench`; `cargo test --benches` does not, and only needs to see
        // every scenario work.
        let default_calls = if env::args().any(|arg| arg == "--bench") {
            2000
        } else {
            10
        };
        let concurrency = match env::var("BENCH_CONCURRENCY") {
            Ok(text) => text
                .split(',')
                .map(|level| match level.trim().parse::<usize>() {
                    Ok(n) if n > 0 => Ok(n),
                    _ => Err(format!(
                        "BENCH_CONCURRENCY has {level:?}, not a positive number"
                    )),
                })
                .collect::<Result<Vec<_>, _>>()?,
            Err(_) => vec![1, 8, 64],
        };
        let policy_concurrency = if concurrency.contains(&8) {
            8
        } else {
            concurrency.iter().copied().max().unwrap_or(8)
        };
        Ok(Self {
            calls: env_number("BENCH_CALLS", default_calls)?,
            max_time: Duration::from_secs(env_number("BENCH_SECONDS", 20)? as u64),
            concurrency,
            policy_concurrency,
            connections: env_number("BENCH_CONNECTIONS", 8)?,
            postgres_url: env::var("ADMISSION_BENCH_DATABASE_URL")
                .ok()
                .filter(|url| !url.is_empty()),
        })
    }
}

// === impl Server ===

impl Server {
    /// Serves the dev environment, on `database_url` instead of its SQLite file when given.
    async fn start(
        store: &'static str,
        dev_env: &DevEnvironment,
        database_url: Option<String>,
    ) -> Result<Self, BenchError> {
        let mut config = Config::load(&dev_env.config)?;
        if let Some(url) = database_url {
            config.database_url = url;
        }
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let state = AppState::new(config).await?;
        let entries_before = state.store().verify().await?.entries_checked;
        let started = SystemTime::now();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve::serve_with_listener(
            listener,
            state.clone(),
            async move {
                let _ = stopped.await;
            },
        ));
        Ok(Self {
            store,
            state,
            port,
            stop,
            task,
            entries_before,
            started,
        })
    }

    /// `count` separate mTLS connections as the orchestrator.
    async fn connect(
        &self,
        dev_env: &DevEnvironment,
        count: usize,
    ) -> Result<Vec<AdmissionClient>, BenchError> {
        let mut pool = Vec::with_capacity(count);
        for _ in 0..count {
            let client = AdmissionClient::builder()
                .endpoint(format!("https://localhost:{}", self.port))
                .ca_file(dev_env.dir.join("ca.pem"))
                .identity_files(
                    dev_env.dir.join("orchestrator.pem"),
                    dev_env.dir.join("orchestrator.key"),
                )
                .connect()
                .await?;
            Scenario::Baseline.call(&client, None).await?;
            pool.push(client);
        }
        Ok(pool)
    }

    /// Checks that the chain verifies and holds exactly the bench's decisions; returns how many
    /// entries the bench added.
    async fn check_trail(&self, tally: Tally) -> Result<u64, BenchError> {
        let report = self.state.store().verify().await?;
        if !report.ok {
            return Err(format!(
                "{}: audit chain does not verify (first bad seq {})",
                self.store, report.first_bad_seq
            )
            .into());
        }
        let added = report.entries_checked - self.entries_before;
        let admitted = self.count_since("admitted").await?;
        let rejected = self.count_since("rejected").await?;
        if added != tally.admitted + tally.rejected
            || admitted != tally.admitted
            || rejected != tally.rejected
        {
            return Err(format!(
                "{}: trail gained {added} entries ({admitted} admitted, {rejected} rejected \
                 recorded since the bench started) for {} admissions and {} rejections",
                self.store, tally.admitted, tally.rejected
            )
            .into());
        }
        Ok(added)
    }

    /// Entries with `outcome` recorded since the first decision of this server run.
    async fn count_since(&self, outcome: &str) -> Result<u64, BenchError> {
        let filter = ListFilter {
            scope: None,
            outcome: Some(outcome.to_owned()),
            since: Some(self.started),
        };
        let mut count = 0;
        let mut token = String::new();
        loop {
            let (page, next) = self
                .state
                .store()
                .list(&filter, MAX_PAGE_SIZE, &token)
                .await?;
            count += page.len() as u64;
            if next.is_empty() {
                return Ok(count);
            }
            token = next;
        }
    }

    async fn stop(self) -> Result<(), BenchError> {
        let _ = self.stop.send(());
        self.task.await??;
        Ok(())
    }
}

// === impl Ids ===

impl Ids {
    fn new() -> Self {
        Self {
            run: uuid::Uuid::now_v7().simple().to_string(),
            next: AtomicUsize::new(1),
        }
    }

    fn unique(&self, prefix: &str) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        format!("{prefix}-{}-{n}", self.run)
    }
}

// === impl Scenario ===

impl Scenario {
    fn label(self) -> &'static str {
        match self {
            Scenario::Baseline => "baseline (Health/Check)",
            Scenario::AdmitDev => "admit dev (no credential)",
            Scenario::AdmitProd => "admit prod (one signed credential)",
            Scenario::RejectProd => "reject prod (APPROVAL_REQUIRED)",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Scenario::Baseline => "baseline_health",
            Scenario::AdmitDev => "admit_dev",
            Scenario::AdmitProd => "admit_prod_credential",
            Scenario::RejectProd => "reject_prod_no_credential",
        }
    }

    /// The request of one call (none for the baseline); admit to prod signs a fresh credential.
    fn request(
        self,
        ids: &Ids,
        signing_key: Option<&SigningKey>,
    ) -> Result<pb::DeployRequest, BenchError> {
        let environment = match self {
            Scenario::Baseline => return Ok(pb::DeployRequest::default()),
            Scenario::AdmitDev => "dev",
            Scenario::AdmitProd | Scenario::RejectProd => "prod",
        };
        let credentials = match (self, signing_key) {
            (Scenario::AdmitProd, Some(key)) => vec![credential(key, ids)?],
            (Scenario::AdmitProd, None) => return Err("admit prod needs a signing key".into()),
            _ => Vec::new(),
        };
        Ok(deploy_request(
            environment,
            ids.unique("bench"),
            credentials,
        ))
    }

    /// Makes one call and checks that it got this scenario's answer.
    async fn call(
        self,
        client: &AdmissionClient,
        request: Option<pb::DeployRequest>,
    ) -> Result<(), BenchError> {
        let request = request.unwrap_or_default();
        match self {
            Scenario::Baseline => {
                let answer = client
                    .health()
                    .check(HealthCheckRequest::default())
                    .await?
                    .into_inner();
                if answer.status != ServingStatus::Serving as i32 {
                    return Err(format!("health answered status {}", answer.status).into());
                }
                Ok(())
            }
            Scenario::AdmitDev | Scenario::AdmitProd => {
                client.admit_deploy(request).await?;
                Ok(())
            }
            Scenario::RejectProd => match client.admit_deploy(request).await {
                Ok(_) => Err("a prod deploy without credentials was admitted".into()),
                Err(error)
                    if error
                        .rejection()
                        .is_some_and(|r| r.is(Reason::ApprovalRequired)) =>
                {
                    Ok(())
                }
                Err(error) => Err(error.into()),
            },
        }
    }
}

fn deploy_request(
    environment_id: &str,
    request_id: String,
    credentials: Vec<String>,
) -> pb::DeployRequest {
    pb::DeployRequest {
        request_id,
        environment: Some(pb::EnvironmentRef {
            org_id: "dev".to_owned(),
            project_id: "app".to_owned(),
            environment_id: environment_id.to_owned(),
        }),
        pipeline_version: "bench-1".to_owned(),
        spec_kv: SPEC_KV.to_vec(),
        config_bundle: Some(pb::ConfigBundle {
            bundle_id: "bench-bundle".to_owned(),
            digest: SpecHash::of_bytes(b"bench bundle").to_string(),
            environment_id: environment_id.to_owned(),
        }),
        required_capabilities: Vec::new(),
        credentials,
        initiated_by: "bench@example.com".to_owned(),
        break_glass: None,
    }
}

/// A credential for one deploy of [`SPEC_KV`] to `dev/app/prod`, with an approval of its own
/// (prod allows one use per approval).
fn credential(key: &SigningKey, ids: &Ids) -> Result<String, BenchError> {
    let now = now_whole_seconds();
    let claims = Claims {
        v: 1,
        kid: key.kid().to_owned(),
        org_id: "dev".to_owned(),
        project_id: "app".to_owned(),
        environment_id: "prod".to_owned(),
        environment_posture: "prod".to_owned(),
        spec_hash: SpecHash::of_bytes(SPEC_KV).to_string(),
        capabilities: vec!["deploy".to_owned()],
        issued_at: now - Duration::from_secs(60),
        expires_at: now + Duration::from_secs(15 * 60),
        issued_by: REVIEWER.to_owned(),
        approval_id: ids.unique("apr"),
        config_bundle_digest: None,
    };
    Ok(key.sign(&claims)?)
}

// === impl Measurement ===

impl Measurement {
    fn throughput(&self) -> f64 {
        self.calls as f64 / self.elapsed.as_secs_f64()
    }

    /// Nearest-rank percentile; zero for no calls.
    fn percentile(&self, fraction: f64) -> Duration {
        let rank = (fraction * self.latencies.len() as f64).ceil() as usize;
        self.latencies
            .get(rank.saturating_sub(1))
            .copied()
            .unwrap_or_default()
    }

    fn max(&self) -> Duration {
        self.latencies.last().copied().unwrap_or_default()
    }
}

// === impl Row ===

impl Row {
    fn new(measured: Measurement, baseline: &Measurement) -> Self {
        Self {
            measured,
            baseline_throughput: baseline.throughput(),
            baseline_p50: baseline.percentile(0.50),
        }
    }

    fn throughput_ratio(&self) -> f64 {
        self.measured.throughput() / self.baseline_throughput
    }

    fn latency_ratio(&self) -> f64 {
        self.measured.percentile(0.50).as_secs_f64() / self.baseline_p50.as_secs_f64()
    }
}
