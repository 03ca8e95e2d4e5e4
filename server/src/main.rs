//! `admission-server`: serve, check a config, or run a local dev environment.
#![forbid(unsafe_code)]

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::ExitCode,
};

use admission_server::{
    runtime::config::{Config, ConfigError},
    runtime::dev,
    runtime::serve,
    runtime::telemetry::{self, LogFormat},
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
    #[arg(long, value_name = "FILE", required = true)]
    config: Option<PathBuf>,
    /// Log line format.
    #[arg(long, global = true, default_value = "text", value_name = "text|json")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate a config file (and the files it names) without serving.
    CheckConfig {
        /// The config file.
        file: PathBuf,
    },
    /// Create a local CA, certificates, signing key and config, then serve on loopback.
    Dev {
        /// Directory for the generated files; existing files are reused.
        #[arg(long, default_value = dev::DEFAULT_DIR)]
        dir: PathBuf,
        /// Address to serve on.
        #[arg(long, default_value = dev::DEFAULT_LISTEN)]
        listen: SocketAddr,
    },
}

/// Exit status for an unusable config or dev directory.
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::CheckConfig { file }) => {
            telemetry::init_logs(cli.log_format);
            check_config(&file)
        }
        Some(Command::Dev { dir, listen }) => block_on(cli.log_format, run_dev(dir, listen)),
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
    let code = runtime.block_on(future);
    // Outside `block_on`, so the final export runs on the runtime's still-running workers.
    drop(telemetry);
    code
}

fn config_failure(error: &ConfigError) -> ExitCode {
    eprintln!("{error}");
    ExitCode::from(EXIT_CONFIG)
}

fn check_config(file: &Path) -> ExitCode {
    match Config::load(file) {
        Ok(config) => {
            println!(
                "config ok: {} environments, {} role bindings",
                config.environments.len(),
                config.roles.len()
            );
            ExitCode::SUCCESS
        }
        Err(error) => config_failure(&error),
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
fn serve_failure(config: &std::path::Path, result: Result<(), serve::ServeError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error @ serve::ServeError::Store(_)) => {
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

async fn run_dev(dir: PathBuf, listen: SocketAddr) -> ExitCode {
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
    print!("{}", dev::instructions(&env, addr));
    tracing::info!(%addr, dir = %env.dir.display(), created = env.created.len(), "dev server serving");
    let path = config.path.clone();
    serve_failure(
        &path,
        serve::run_on(listener, config, serve::shutdown_signal()).await,
    )
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
