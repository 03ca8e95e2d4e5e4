//! The command line, and the validated [`Plan`] it turns into: every limit is checked here,
//! once, so the load drivers never see an unbounded or non-loopback run.

use std::{
    fs,
    net::IpAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use admission_client::pb;
use admission_contract::credential::{KeySet, SigningKey};
use clap::{Parser, ValueEnum};
use tonic::codegen::http::Uri;

use crate::{BenchError, workload::Workload};

/// Longest measured phase.
pub const MAX_DURATION: Duration = Duration::from_secs(600);
/// Most calls in one phase (and so most credentials signed for it).
pub const MAX_CALLS: u64 = 1_000_000;
/// Most mTLS connections (the server's default cap per caller identity is 256).
pub const MAX_CONNECTIONS: usize = 256;
/// Most closed-loop workers, or open-loop calls in flight.
pub const MAX_CONCURRENCY: usize = 4096;
/// Highest open-loop rate, in calls per second.
pub const MAX_RATE: f64 = 100_000.0;
/// Most write+fsync samples of the disk probe.
pub const MAX_FSYNC_SAMPLES: u32 = 100_000;

/// Black-box load against a running admission server, over mTLS on loopback only.
///
/// Runs one phase per workload over the same connections: calls/s, latency percentiles,
/// answers by gRPC code and ErrorInfo reason, and the server's CPU time per call; and measures
/// the fsync latency of the server's data directory.
#[derive(Debug, Parser)]
#[command(name = "admission-bench", version, about)]
pub struct BenchArgs {
    /// An `admission-server dev` directory: CA, orchestrator certificate, signing key, key set
    /// and data directory are taken from it unless given on their own.
    #[arg(long, value_name = "DIR")]
    pub dev_dir: Option<PathBuf>,
    /// Service URL; the host must be loopback (localhost, 127.0.0.1 or [::1]).
    #[arg(
        long,
        env = "ADMISSION_ENDPOINT",
        default_value = "https://localhost:50051"
    )]
    pub endpoint: String,
    /// CA certificate (PEM) the server certificate chains to.
    #[arg(long, env = "ADMISSION_CA")]
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM) of a caller with the orchestrator role.
    #[arg(long, env = "ADMISSION_CERT")]
    pub cert: Option<PathBuf>,
    /// Client private key (PEM).
    #[arg(long, env = "ADMISSION_KEY")]
    pub key: Option<PathBuf>,
    /// Ed25519 signing key (PKCS#8 PEM) for the credentials of `admit-prod`.
    #[arg(long, value_name = "FILE")]
    pub signing_key: Option<PathBuf>,
    /// Key id of the signing key; default: looked up by public key in --key-set.
    #[arg(long)]
    pub kid: Option<String>,
    /// Trusted key set (`signing_keys.json`) to find the kid of --signing-key in.
    #[arg(long, value_name = "FILE")]
    pub key_set: Option<PathBuf>,
    /// Approver named in the credentials (must differ from the caller and --initiated-by).
    #[arg(long, default_value = "spiffe://dev.local/reviewer/alice")]
    pub issued_by: String,
    /// `initiated_by` of every request.
    #[arg(long, default_value = "bench@example.com")]
    pub initiated_by: String,
    /// Environment of `admit-dev`: one that admits without a credential.
    #[arg(long, default_value = "dev/app/dev", value_name = "ORG/PROJECT/ENV")]
    pub dev_env: String,
    /// Environment of `admit-prod` and `preview`: one that requires an approval.
    #[arg(long, default_value = "dev/app/prod", value_name = "ORG/PROJECT/ENV")]
    pub prod_env: String,
    /// Posture of --prod-env, as the credentials state it.
    #[arg(long, default_value = "prod", value_parser = ["dev", "staging", "prod"])]
    pub prod_posture: String,
    /// Capabilities the credentials grant; repeat or separate with commas.
    #[arg(long = "capability", default_value = "deploy", value_delimiter = ',')]
    pub capabilities: Vec<String>,
    /// Spec file (`spec.kv`) every request carries; default: a one-line spec.
    #[arg(long, value_name = "FILE")]
    pub spec: Option<PathBuf>,
    /// Workloads to run, in order; comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "health,admit-dev,admit-prod,preview"
    )]
    pub workloads: Vec<Workload>,
    /// `fresh`: a pre-signed single-use credential per call; `reuse`: one credential on every
    /// call (with `max_uses = 1`, all but the first are APPROVAL_CONSUMED).
    #[arg(long, value_enum, default_value_t = CredentialMode::Fresh)]
    pub credentials: CredentialMode,
    /// mTLS connections, opened once and shared by every phase.
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// Closed loop: workers, each sending its next call when the last one is answered.
    #[arg(long, default_value_t = 8, conflicts_with = "rate")]
    pub concurrency: usize,
    /// Open loop: calls per second, sent on schedule whether or not earlier ones were answered.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Open loop: most calls in flight; a call past it waits, and its wait counts as latency.
    #[arg(long, default_value_t = 256)]
    pub max_in_flight: usize,
    /// Time each measured phase runs for, at most (e.g. `10s`, `2m`).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Most calls per measured phase; `admit-prod` signs this many fresh credentials first.
    #[arg(long, default_value_t = 100_000)]
    pub max_calls: u64,
    /// Unmeasured calls per phase before the clock starts.
    #[arg(long, default_value_t = 20)]
    pub warmup: u64,
    /// Process id of the server, to read its CPU time from /proc/<pid>/stat.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Directory to probe fsync latency in (the server's data directory); default: --dev-dir,
    /// else the current directory.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Write+fsync samples of the disk probe (0 skips it).
    #[arg(long, default_value_t = 200)]
    pub fsync_samples: u32,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// How `admit-prod` gets its credentials.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CredentialMode {
    /// A fresh credential (its own approval id) per call, all signed before the clock starts.
    Fresh,
    /// One credential sent on every call.
    Reuse,
}

/// A validated run.
#[derive(Debug)]
pub struct Plan {
    /// Endpoint and mTLS files.
    pub connection: ConnectionPlan,
    /// What the requests carry.
    pub target: Target,
    /// The key that signs `admit-prod` credentials, when that workload runs.
    pub signer: Option<SigningKey>,
    /// Workloads, in order.
    pub workloads: Vec<Workload>,
    /// Fresh or reused credentials.
    pub credentials: CredentialMode,
    /// How hard and for how long.
    pub load: Load,
    /// The server process whose CPU time is read.
    pub server_pid: Option<u32>,
    /// The disk probe.
    pub fsync: FsyncPlan,
    /// JSON output.
    pub json: bool,
}

/// Where the server is and how to authenticate to it.
#[derive(Clone, Debug)]
pub struct ConnectionPlan {
    /// Service URL, on loopback.
    pub endpoint: String,
    /// CA file.
    pub ca: PathBuf,
    /// Client certificate file.
    pub cert: PathBuf,
    /// Client key file.
    pub key: PathBuf,
    /// Number of connections.
    pub connections: usize,
}

/// The fields every request shares.
#[derive(Clone, Debug)]
pub struct Target {
    /// Environment of `admit-dev`.
    pub dev_env: pb::EnvironmentRef,
    /// Environment of `admit-prod` and `preview`.
    pub prod_env: pb::EnvironmentRef,
    /// Posture of the prod environment.
    pub prod_posture: String,
    /// Capabilities granted by credentials.
    pub capabilities: Vec<String>,
    /// The spec sent.
    pub spec_kv: Vec<u8>,
    /// Approver named in credentials.
    pub issued_by: String,
    /// `initiated_by` of requests.
    pub initiated_by: String,
}

/// The shape and bounds of every measured phase.
#[derive(Clone, Copy, Debug)]
pub struct Load {
    /// Closed or open loop.
    pub shape: LoadShape,
    /// Time cap per phase.
    pub duration: Duration,
    /// Call cap per phase.
    pub max_calls: u64,
    /// Unmeasured calls before each phase.
    pub warmup: u64,
}

/// Closed loop at a concurrency, or open loop at a rate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LoadShape {
    /// `concurrency` workers, each one call at a time.
    Closed {
        /// Workers.
        concurrency: usize,
    },
    /// Calls sent on a fixed schedule.
    Open {
        /// Calls per second.
        rate: f64,
        /// Most calls in flight.
        max_in_flight: usize,
    },
}

/// Where and how often to write+fsync.
#[derive(Clone, Debug)]
pub struct FsyncPlan {
    /// Directory of the probe file.
    pub dir: PathBuf,
    /// Samples; 0 skips the probe.
    pub samples: u32,
}

/// The spec sent when `--spec` is not given.
const DEFAULT_SPEC_KV: &[u8] = b"bench=admission\n";

// === impl Plan ===

impl TryFrom<BenchArgs> for Plan {
    type Error = BenchError;

    fn try_from(args: BenchArgs) -> Result<Self, BenchError> {
        let dev_dir = args.dev_dir.as_deref();
        let load = Load::from_args(&args)?;
        let connection = ConnectionPlan::from_args(&args, dev_dir)?;
        let target = Target::from_args(&args)?;
        let signer = if args.workloads.contains(&Workload::AdmitProd) {
            Some(signer(&args, dev_dir)?)
        } else {
            None
        };
        if args.workloads.is_empty() {
            return Err(BenchError::usage("--workloads must name at least one"));
        }
        if args.fsync_samples > MAX_FSYNC_SAMPLES {
            return Err(BenchError::usage(format!(
                "--fsync-samples must be at most {MAX_FSYNC_SAMPLES}"
            )));
        }
        let fsync_dir = args
            .data_dir
            .clone()
            .or_else(|| args.dev_dir.clone())
            .unwrap_or_else(|| PathBuf::from("."));
        Ok(Plan {
            connection,
            target,
            signer,
            workloads: args.workloads,
            credentials: args.credentials,
            load,
            server_pid: args.server_pid,
            fsync: FsyncPlan {
                dir: fsync_dir,
                samples: args.fsync_samples,
            },
            json: args.json,
        })
    }
}

// === impl ConnectionPlan ===

impl ConnectionPlan {
    fn from_args(args: &BenchArgs, dev_dir: Option<&Path>) -> Result<Self, BenchError> {
        check_loopback(&args.endpoint)?;
        if args.connections == 0 || args.connections > MAX_CONNECTIONS {
            return Err(BenchError::usage(format!(
                "--connections must be between 1 and {MAX_CONNECTIONS}"
            )));
        }
        Ok(Self {
            endpoint: args.endpoint.clone(),
            ca: file_or_dev(&args.ca, dev_dir, "ca.pem", "--ca")?,
            cert: file_or_dev(&args.cert, dev_dir, "orchestrator.pem", "--cert")?,
            key: file_or_dev(&args.key, dev_dir, "orchestrator.key", "--key")?,
            connections: args.connections,
        })
    }
}

// === impl Target ===

impl Target {
    fn from_args(args: &BenchArgs) -> Result<Self, BenchError> {
        let spec_kv = match &args.spec {
            Some(path) => fs::read(path).map_err(|source| BenchError::Read {
                path: path.clone(),
                source,
            })?,
            None => DEFAULT_SPEC_KV.to_vec(),
        };
        if args.capabilities.iter().any(String::is_empty) {
            return Err(BenchError::usage("--capability must not be empty"));
        }
        Ok(Self {
            dev_env: parse_environment("--dev-env", &args.dev_env)?,
            prod_env: parse_environment("--prod-env", &args.prod_env)?,
            prod_posture: args.prod_posture.clone(),
            capabilities: args.capabilities.clone(),
            spec_kv,
            issued_by: args.issued_by.clone(),
            initiated_by: args.initiated_by.clone(),
        })
    }
}

// === impl Load ===

impl Load {
    fn from_args(args: &BenchArgs) -> Result<Self, BenchError> {
        if args.duration.is_zero() || args.duration > MAX_DURATION {
            return Err(BenchError::usage(format!(
                "--duration must be positive and at most {}",
                humantime::format_duration(MAX_DURATION)
            )));
        }
        if args.max_calls == 0 || args.max_calls > MAX_CALLS {
            return Err(BenchError::usage(format!(
                "--max-calls must be between 1 and {MAX_CALLS}"
            )));
        }
        if args.warmup > MAX_CALLS {
            return Err(BenchError::usage(format!(
                "--warmup must be at most {MAX_CALLS}"
            )));
        }
        Ok(Self {
            shape: LoadShape::from_args(args)?,
            duration: args.duration,
            max_calls: args.max_calls,
            warmup: args.warmup,
        })
    }

    /// Most calls a phase can make: the call cap, and for an open loop what its schedule
    /// allows within the duration.
    pub fn calls_per_phase(&self) -> u64 {
        match self.shape {
            LoadShape::Closed { .. } => self.max_calls,
            LoadShape::Open { rate, .. } => {
                let scheduled = (rate * self.duration.as_secs_f64()).ceil() as u64;
                scheduled.clamp(1, self.max_calls)
            }
        }
    }
}

// === impl LoadShape ===

impl LoadShape {
    fn from_args(args: &BenchArgs) -> Result<Self, BenchError> {
        let in_range = |n: usize| (1..=MAX_CONCURRENCY).contains(&n);
        match args.rate {
            Some(rate) if !(rate > 0.0 && rate <= MAX_RATE) => Err(BenchError::usage(format!(
                "--rate must be positive and at most {MAX_RATE}"
            ))),
            Some(_) if !in_range(args.max_in_flight) => Err(BenchError::usage(format!(
                "--max-in-flight must be between 1 and {MAX_CONCURRENCY}"
            ))),
            Some(rate) => Ok(Self::Open {
                rate,
                max_in_flight: args.max_in_flight,
            }),
            None if !in_range(args.concurrency) => Err(BenchError::usage(format!(
                "--concurrency must be between 1 and {MAX_CONCURRENCY}"
            ))),
            None => Ok(Self::Closed {
                concurrency: args.concurrency,
            }),
        }
    }
}

/// Refuses an endpoint whose host is not loopback: a load generator must not reach another
/// machine by accident.
fn check_loopback(endpoint: &str) -> Result<(), BenchError> {
    let uri: Uri = endpoint
        .parse()
        .map_err(|_| BenchError::usage(format!("--endpoint {endpoint:?} is not a URL")))?;
    let host = uri.host().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if loopback {
        Ok(())
    } else {
        Err(BenchError::usage(format!(
            "--endpoint {endpoint:?} is not on loopback; the bench only drives a local server"
        )))
    }
}

/// The file given on the command line, else `name` in the dev directory.
fn file_or_dev(
    given: &Option<PathBuf>,
    dev_dir: Option<&Path>,
    name: &str,
    flag: &str,
) -> Result<PathBuf, BenchError> {
    given
        .clone()
        .or_else(|| dev_dir.map(|dir| dir.join(name)))
        .ok_or_else(|| BenchError::usage(format!("{flag} (or --dev-dir) is required")))
}

/// The signing key of `admit-prod`, with its kid given or found in the key set.
fn signer(args: &BenchArgs, dev_dir: Option<&Path>) -> Result<SigningKey, BenchError> {
    let path = file_or_dev(&args.signing_key, dev_dir, "signing.key", "--signing-key")?;
    let pem = fs::read_to_string(&path).map_err(|source| BenchError::Read {
        path: path.clone(),
        source,
    })?;
    let kid = match &args.kid {
        Some(kid) => kid.clone(),
        None => {
            let key_set = file_or_dev(&args.key_set, dev_dir, "signing_keys.json", "--kid")?;
            kid_of(&pem, &path, &key_set)?
        }
    };
    SigningKey::from_pkcs8_pem(&kid, &pem)
        .map_err(|error| BenchError::usage(format!("{}: {error}", path.display())))
}

/// The kid under which `key_set` publishes the public half of the key in `pem`.
fn kid_of(pem: &str, key_path: &Path, key_set: &Path) -> Result<String, BenchError> {
    // The kid is only a label here; the public key is what is matched.
    let key = SigningKey::from_pkcs8_pem("lookup", pem)
        .map_err(|error| BenchError::usage(format!("{}: {error}", key_path.display())))?;
    let bytes = fs::read(key_set).map_err(|source| BenchError::Read {
        path: key_set.to_path_buf(),
        source,
    })?;
    let keys = KeySet::from_jwks(&bytes)
        .map_err(|error| BenchError::usage(format!("{}: {error}", key_set.display())))?;
    keys.kids()
        .find(|kid| {
            keys.get(kid)
                .is_some_and(|trusted| trusted.public_key().as_slice() == key.public_key())
        })
        .map(str::to_owned)
        .ok_or_else(|| {
            BenchError::usage(format!(
                "{} does not hold the public key of {}; pass --kid",
                key_set.display(),
                key_path.display()
            ))
        })
}

/// Parses `ORG/PROJECT/ENV`.
fn parse_environment(flag: &str, text: &str) -> Result<pb::EnvironmentRef, BenchError> {
    match text.split('/').collect::<Vec<_>>().as_slice() {
        [org, project, env] if !org.is_empty() && !project.is_empty() && !env.is_empty() => {
            Ok(pb::EnvironmentRef {
                org_id: (*org).to_owned(),
                project_id: (*project).to_owned(),
                environment_id: (*env).to_owned(),
            })
        }
        _ => Err(BenchError::usage(format!(
            "{flag} {text:?} must be ORG/PROJECT/ENV"
        ))),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> BenchArgs {
        let mut argv = vec!["admission-bench", "--dev-dir", "/nonexistent"];
        argv.extend(extra);
        BenchArgs::parse_from(argv)
    }

    fn plan(extra: &[&str]) -> Result<Plan, BenchError> {
        let mut extra = extra.to_vec();
        extra.extend(["--workloads", "health,admit-dev,preview"]);
        Plan::try_from(args(&extra))
    }

    #[test]
    fn accepts_loopback_endpoints_only() {
        for endpoint in [
            "https://localhost:50051",
            "https://127.0.0.1:1",
            "https://[::1]:50051",
        ] {
            assert!(plan(&["--endpoint", endpoint]).is_ok(), "{endpoint}");
        }
        for endpoint in ["https://admission.internal:50051", "https://10.0.0.1:50051"] {
            let error = plan(&["--endpoint", endpoint]).unwrap_err();
            assert!(error.to_string().contains("not on loopback"), "{error}");
        }
    }

    #[test]
    fn bounds_duration_calls_and_connections() {
        for extra in [
            ["--duration", "11m"],
            ["--duration", "0s"],
            ["--max-calls", "0"],
            ["--max-calls", "1000001"],
            ["--connections", "0"],
            ["--connections", "257"],
            ["--concurrency", "0"],
            ["--rate", "0"],
            ["--rate", "1000000"],
        ] {
            assert!(
                matches!(plan(&extra), Err(BenchError::Usage(_))),
                "{extra:?}"
            );
        }
    }

    #[test]
    fn rate_makes_an_open_loop_bounded_by_its_schedule() {
        let plan = plan(&["--rate", "100", "--duration", "3s", "--max-calls", "1000"]).unwrap();
        assert_eq!(
            plan.load.shape,
            LoadShape::Open {
                rate: 100.0,
                max_in_flight: 256
            }
        );
        assert_eq!(plan.load.calls_per_phase(), 300);
    }

    #[test]
    fn dev_dir_supplies_the_files() {
        let plan = plan(&[]).unwrap();
        assert_eq!(plan.connection.ca, Path::new("/nonexistent/ca.pem"));
        assert_eq!(
            plan.connection.cert,
            Path::new("/nonexistent/orchestrator.pem")
        );
        assert_eq!(plan.fsync.dir, Path::new("/nonexistent"));
        assert_eq!(plan.target.prod_env.environment_id, "prod");
    }

    #[test]
    fn finds_the_kid_of_a_signing_key_in_the_key_set() {
        let dir = tempfile::tempdir().unwrap();
        let (key, pem) = SigningKey::generate("dev-2026-11").unwrap();
        let jwks = serde_json::json!({
            "keys": [key.public_jwk(admission_contract::credential::KeyStatus::Active)]
        });
        let set = dir.path().join("signing_keys.json");
        fs::write(&set, jwks.to_string()).unwrap();
        let kid = kid_of(&pem, Path::new("signing.key"), &set).unwrap();
        assert_eq!(kid, "dev-2026-11");
        let (_, other) = SigningKey::generate("other").unwrap();
        assert!(kid_of(&other, Path::new("other.key"), &set).is_err());
    }
}
