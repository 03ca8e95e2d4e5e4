//! `admission-server`: serve, check a config, or run a local dev environment.
#![forbid(unsafe_code)]

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::ExitCode,
};

use admission_server::{
    runtime::config::{Config, ConfigError, OpsConfig},
    runtime::healthcheck::{self, Outcome},
    runtime::serve,
    runtime::telemetry::{self, LogFormat},
    runtime::{dev, ops, state},
    store::AuditStore,
};
use clap::{Parser, Subcommand};
use tokio::net::TcpListener;

/// The ByteOr admission service.
#[derive(Debug, Parser)]
#[command(
    name = "admission-server",
    version,
    about,
    subcommand_negates_reqs = true
)]
struct Cli {
    /// Config file to serve with (SPEC §8).
    #[arg(long, value_name = "FILE", env = "ADMISSION_CONFIG", required = true)]
    config: Option<PathBuf>,
    /// Log line format.
    #[arg(long, global = true, default_value = "text", value_name = "text|json")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate a config file (and the files it names) and reach its database, without
    /// serving; every problem is printed, one line each.
    CheckConfig {
        /// The config file.
        #[arg(env = "ADMISSION_CONFIG", required = true)]
        file: Option<PathBuf>,
        /// Do not connect to the database.
        #[arg(long)]
        offline: bool,
    },
    /// Ask the operations listener's /readyz: exit 0 when it answers 200, 1 otherwise.
    Healthcheck {
        /// The config file whose `[ops] listen` to ask.
        #[arg(long, value_name = "FILE", env = "ADMISSION_CONFIG")]
        config: Option<PathBuf>,
        /// The operations listener (default: the config's [ops] listen, else
        /// http://127.0.0.1:9090).
        #[arg(long, value_name = "URL")]
        ops: Option<String>,
    },
    /// Create a local CA, certificates, signing key and config, then serve on loopback.
    Dev {
        /// Directory for the generated files; existing files are reused.
        #[arg(long, default_value = dev::DEFAULT_DIR)]
        dir: PathBuf,
        /// Address to serve on.
        #[arg(long, default_value = dev::DEFAULT_LISTEN)]
        listen: SocketAddr,
        /// Address of the operations listener (probes and metrics); skipped with a warning
        /// when it is taken.
        #[arg(long, default_value = DEV_OPS_LISTEN)]
        ops_listen: SocketAddr,
    },
}

/// The operations listener in dev mode.
const DEV_OPS_LISTEN: &str = "127.0.0.1:9090";

/// How long check-config waits for the database to answer.
const DATABASE_CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Exit status for an unusable config or dev directory.
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::CheckConfig { file, offline }) => {
            telemetry::init_logs(cli.log_format);
            // clap requires the file, from the command line or ADMISSION_CONFIG.
            let Some(file) = file else {
                return ExitCode::from(EXIT_CONFIG);
            };
            current_thread(check_config(&file, offline))
        }
        Some(Command::Healthcheck { config, ops }) => current_thread(run_healthcheck(ops, config)),
        Some(Command::Dev {
            dir,
            listen,
            ops_listen,
        }) => block_on(cli.log_format, run_dev(dir, listen, ops_listen)),
        None => match cli.config {
            Some(file) => block_on(cli.log_format, run_config(file)),
            // clap enforces `--config` when no subcommand is given.
            None => ExitCode::from(EXIT_CONFIG),
        },
    }
}

/// Runs `future` on a new runtime, with telemetry set up inside it and flushed once it returns.
fn block_on(log_format: LogFormat, future: impl Future<Output = ExitCode>) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("admission-server: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    // The OTLP exporters spawn their connections on this runtime, so it is entered first.
    let telemetry = {
        let _entered = runtime.enter();
        telemetry::init(log_format)
    };
    let telemetry = match telemetry {
        Ok(telemetry) => telemetry,
        Err(problem) => {
            eprintln!("admission-server: {problem}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let code = runtime.block_on(future);
    // Outside `block_on`, so the final export runs on the runtime's still-running workers.
    drop(telemetry);
    code
}

/// Runs a short command's `future` on a single-threaded runtime, with no telemetry export.
fn current_thread(future: impl Future<Output = ExitCode>) -> ExitCode {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(future),
        Err(error) => {
            eprintln!("admission-server: cannot start the async runtime: {error}");
            ExitCode::FAILURE
        }
    }
}

fn config_failure(error: &ConfigError) -> ExitCode {
    eprintln!("{error}");
    ExitCode::from(EXIT_CONFIG)
}

async fn check_config(file: &Path, offline: bool) -> ExitCode {
    let config = match Config::load(file) {
        Ok(config) => config,
        Err(error) => return config_failure(&error),
    };
    if !offline {
        let reached =
            AuditStore::check_connection(&config.database_url, DATABASE_CHECK_TIMEOUT).await;
        if let Err(problem) = reached {
            let problem = format!("database_url: {problem}");
            return config_failure(&ConfigError::new(&config.path, problem));
        }
    }
    println!(
        "config ok: {} environments, {} role bindings",
        config.environments.len(),
        config.roles.len()
    );
    ExitCode::SUCCESS
}

/// `/readyz` of `--ops`, else of the config's `[ops] listen`, else of the default address.
async fn run_healthcheck(ops: Option<String>, config: Option<PathBuf>) -> ExitCode {
    let from_config = match (&ops, &config) {
        (None, Some(config)) => match healthcheck::url_from_config(config) {
            Ok(url) => url,
            Err(problem) => {
                println!("not ready: {problem}");
                return ExitCode::FAILURE;
            }
        },
        _ => None,
    };
    let url = ops
        .or(from_config)
        .unwrap_or_else(|| healthcheck::DEFAULT_OPS_URL.to_owned());
    match healthcheck::check(&url).await {
        Outcome::Ready(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Outcome::NotReady(line) => {
            println!("{line}");
            ExitCode::FAILURE
        }
    }
}

async fn run_config(file: PathBuf) -> ExitCode {
    let config = match Config::load(&file) {
        Ok(config) => config,
        Err(error) => return config_failure(&error),
    };
    let path = config.path.clone();
    serve_failure(&path, serve::run(config, serve::shutdown_signal()).await)
}

/// A store that cannot be opened is a config problem (exit 2, naming the file); anything else
/// failing while serving exits 1.
fn serve_failure(config: &std::path::Path, result: Result<(), state::ServeError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error @ state::ServeError::Store(_)) => {
            eprintln!("{}: {error}", config.display());
            ExitCode::from(EXIT_CONFIG)
        }
        Err(error) => {
            tracing::error!(%error, "server failed");
            eprintln!("admission-server: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run_dev(dir: PathBuf, listen: SocketAddr, ops_listen: SocketAddr) -> ExitCode {
    let env = match dev::prepare(&dir) {
        Ok(env) => env,
        Err(error) => {
            eprintln!("admission-server dev: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let mut config = match Config::load(&env.config) {
        Ok(config) => config,
        Err(error) => return config_failure(&error),
    };
    config.listen = listen;
    let listener = match TcpListener::bind(listen).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("admission-server dev: cannot listen on {listen}: {error}");
            return ExitCode::FAILURE;
        }
    };
    let addr = listener.local_addr().unwrap_or(listen);
    let ops_listener = dev_ops_listener(&mut config, ops_listen).await;
    print!("{}", dev::instructions(&env, addr));
    tracing::info!(%addr, dir = %env.dir.display(), created = env.created.len(), "dev server serving");
    let path = config.path.clone();
    serve_failure(
        &path,
        serve::run_with(listener, ops_listener, config, serve::shutdown_signal()).await,
    )
}

/// Dev mode's operations listener; a taken address (another dev server) only costs the probes.
async fn dev_ops_listener(config: &mut Config, addr: SocketAddr) -> Option<TcpListener> {
    match ops::bind(addr).await {
        Ok(listener) => {
            config.ops = Some(OpsConfig { listen: addr });
            Some(listener)
        }
        Err(error) => {
            tracing::warn!(%error, "serving without the operations listener");
            config.ops = None;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn command_line_is_well_formed() {
        Cli::command().debug_assert();
    }
}
