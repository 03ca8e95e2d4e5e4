//! `admissionctl`: the operator CLI. Each command group lives in its own file here; to add
//! one, add a variant to [`Command`] and a match arm in [`run`].

pub mod admit;
pub mod approvals;
pub mod audit;
pub mod health;
pub mod keys;
pub mod output;
pub mod spec;

use std::{fmt, path::PathBuf, process::ExitCode, time::Duration};

use clap::{Args, Parser, Subcommand};

use crate::{AdmissionClient, Rejection, RetryEvent, RetryPolicy, retry::DEFAULT_MAX_ATTEMPTS};

/// Operator CLI for the ByteOr admission service.
#[derive(Debug, Parser)]
#[command(name = "admissionctl", version, about)]
pub struct Cli {
    /// How to reach the service.
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// Print JSON instead of human-readable text.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Endpoint and mTLS files, from flags or the environment.
#[derive(Clone, Debug, Args)]
pub struct ConnectionArgs {
    /// Service URL, e.g. https://localhost:50051.
    #[arg(long, global = true, env = "ADMISSION_ENDPOINT")]
    pub endpoint: Option<String>,
    /// CA certificate (PEM) the server certificate chains to.
    #[arg(long, global = true, env = "ADMISSION_CA")]
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM).
    #[arg(long, global = true, env = "ADMISSION_CERT")]
    pub cert: Option<PathBuf>,
    /// Client private key (PEM).
    #[arg(long, global = true, env = "ADMISSION_KEY")]
    pub key: Option<PathBuf>,
    /// Attempts per call while the service is unavailable or overloaded (1: no retries).
    #[arg(long, global = true, env = "ADMISSION_MAX_ATTEMPTS", default_value_t = DEFAULT_MAX_ATTEMPTS)]
    pub max_attempts: u32,
    /// Time budget of one call across its retries, e.g. `30s` or `2m` (the client's default).
    #[arg(
        long,
        global = true,
        env = "ADMISSION_RETRY_DEADLINE",
        default_value = "30s",
        value_parser = humantime::parse_duration
    )]
    pub retry_deadline: Duration,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the service health (exit status 0 only when SERVING).
    Health(health::HealthArgs),
    /// Print the spec hash of a spec_kv file (SPEC §4).
    SpecHash(spec::SpecHashArgs),
    /// Generate an Ed25519 signing key (PKCS#8 PEM) and add it to a JWKS key set.
    Keygen(keys::KeygenArgs),
    /// Sign an approval credential offline (approval-credentials-v1).
    Sign(keys::SignArgs),
    /// Preview or admit a deployment.
    #[command(subcommand)]
    Deploy(admit::DeployCommand),
    /// Preview or admit a replay.
    #[command(subcommand)]
    Replay(admit::ReplayCommand),
    /// Request, review, list and revoke approvals.
    #[command(subcommand)]
    Approvals(approvals::ApprovalsCommand),
    /// List and verify the audit trail.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
}

/// A command failure: a one-line message and the exit status.
#[derive(Debug)]
pub struct CliError {
    message: String,
    status: u8,
}

/// Exit status for bad input: flags, files, specs.
pub const EXIT_USAGE: u8 = 2;

/// Exit status for a failed or refused call.
pub const EXIT_FAILURE: u8 = 1;

/// Runs the parsed command line and returns the process exit status.
pub async fn run(cli: Cli) -> ExitCode {
    let output = Output { json: cli.json };
    let result = match cli.command {
        Command::Health(args) => health::run(&cli.connection, &output, args).await,
        Command::SpecHash(args) => spec::run(&output, args),
        Command::Keygen(args) => keys::run_keygen(&args)
            .map(|()| ExitCode::SUCCESS)
            .map_err(CliError::usage),
        Command::Sign(args) => keys::run_sign(&args)
            .map(|credential| {
                println!("{credential}");
                ExitCode::SUCCESS
            })
            .map_err(CliError::usage),
        Command::Deploy(command) => match cli.connection.connect().await {
            Ok(client) => admit::run_deploy(&client, command, cli.json)
                .await
                .map_err(CliError::usage),
            Err(error) => Err(error),
        },
        Command::Replay(command) => match cli.connection.connect().await {
            Ok(client) => admit::run_replay(&client, command, cli.json)
                .await
                .map_err(CliError::usage),
            Err(error) => Err(error),
        },
        Command::Approvals(command) => match cli.connection.connect().await {
            Ok(client) => approvals::run(&client, command, cli.json)
                .await
                .map_err(CliError::usage),
            Err(error) => Err(error),
        },
        Command::Audit(command) => match cli.connection.connect().await {
            Ok(client) => audit::run(client.channel(), command, cli.json)
                .await
                .map_err(|error| match error {
                    audit::AuditCliError::Usage(message) => CliError::usage(message),
                    audit::AuditCliError::Rpc(status) => CliError::from_status(&status),
                }),
            Err(error) => Err(error),
        },
    };
    match result {
        Ok(status) => status,
        Err(error) => {
            eprintln!("admissionctl: {error}");
            ExitCode::from(error.status)
        }
    }
}

/// Where results go: text or JSON on stdout.
#[derive(Clone, Copy, Debug)]
pub struct Output {
    /// Whether to print JSON.
    pub json: bool,
}

// === impl Output ===

impl Output {
    /// Prints `text`, or `value` as one JSON line with `--json`.
    pub fn print(&self, text: impl fmt::Display, value: serde_json::Value) {
        if self.json {
            println!("{value}");
        } else {
            println!("{text}");
        }
    }
}

// === impl ConnectionArgs ===

impl ConnectionArgs {
    /// Connects with the configured endpoint, CA and client identity.
    pub async fn connect(&self) -> Result<AdmissionClient, CliError> {
        let endpoint = self.endpoint.as_ref().ok_or_else(|| {
            CliError::usage("no endpoint: pass --endpoint or set ADMISSION_ENDPOINT")
        })?;
        let ca = self
            .ca
            .as_ref()
            .ok_or_else(|| CliError::usage("no CA: pass --ca or set ADMISSION_CA"))?;
        let (Some(cert), Some(key)) = (&self.cert, &self.key) else {
            return Err(CliError::usage(
                "no client certificate: pass --cert and --key or set ADMISSION_CERT and ADMISSION_KEY",
            ));
        };
        let max_attempts = self.max_attempts.max(1);
        let policy = RetryPolicy::default()
            .with_max_attempts(max_attempts)
            .with_deadline(self.retry_deadline)
            .on_retry(move |event| eprintln!("{}", retry_notice(event, max_attempts)));
        AdmissionClient::builder()
            .endpoint(endpoint)
            .ca_file(ca)
            .identity_files(cert, key)
            .retry_policy(policy)
            .connect()
            .await
            .map_err(|error| match error {
                crate::ClientError::Connect { .. } => CliError::failure(error_chain(&error)),
                other => CliError::usage(error_chain(&other)),
            })
    }
}

/// One stderr line per retry, e.g. `AUDIT_UNAVAILABLE: retrying in 1.0s (attempt 2 of 4)`.
fn retry_notice(event: &RetryEvent, max_attempts: u32) -> String {
    let cause = Rejection::from_status(&event.status).map_or_else(
        || format!("{:?}", event.status.code()),
        |rejection| rejection.reason.to_string(),
    );
    format!(
        "{cause}: retrying in {:.1}s (attempt {} of {max_attempts})",
        event.delay.as_secs_f64(),
        event.attempt + 1
    )
}

// === impl CliError ===

impl CliError {
    /// Bad input (exit status 2).
    pub fn usage(message: impl fmt::Display) -> Self {
        Self {
            message: one_line(message),
            status: EXIT_USAGE,
        }
    }

    /// A failed or refused call (exit status 1).
    pub fn failure(message: impl fmt::Display) -> Self {
        Self {
            message: one_line(message),
            status: EXIT_FAILURE,
        }
    }

    /// A failed call, with the typed rejection when the status carries one.
    pub fn from_status(status: &tonic::Status) -> Self {
        match crate::Rejection::from_status(status) {
            Some(rejection) => Self::failure(rejection),
            None => Self::failure(format_args!("{:?}: {}", status.code(), status.message())),
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}

/// The error and its sources, e.g. `cannot connect to …: transport error: connection refused`.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text = format!("{text}: {cause_text}");
        }
        source = cause.source();
    }
    text
}

fn one_line(message: impl fmt::Display) -> String {
    let text = message.to_string();
    // Transport errors nest their causes; the chain reads better on one line.
    text.split('\n')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(": ")
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn retry_flags_default_to_the_client_defaults() {
        let cli = Cli::try_parse_from(["admissionctl", "health"]).unwrap();
        assert_eq!(cli.connection.max_attempts, DEFAULT_MAX_ATTEMPTS);
        assert_eq!(
            cli.connection.retry_deadline,
            crate::retry::DEFAULT_RETRY_DEADLINE
        );
        let cli = Cli::try_parse_from([
            "admissionctl",
            "--max-attempts",
            "1",
            "--retry-deadline",
            "2m",
            "health",
        ])
        .unwrap();
        assert_eq!(cli.connection.max_attempts, 1);
        assert_eq!(cli.connection.retry_deadline, Duration::from_secs(120));
    }

    #[test]
    fn retry_notice_names_the_cause_and_the_next_attempt() {
        let details = tonic_types::ErrorDetails::with_error_info(
            "AUDIT_UNAVAILABLE",
            crate::ERROR_DOMAIN,
            std::collections::HashMap::new(),
        );
        let status = <tonic::Status as tonic_types::StatusExt>::with_error_details(
            tonic::Code::Unavailable,
            "audit is unavailable",
            details,
        );
        let event = RetryEvent {
            attempt: 1,
            delay: Duration::from_millis(1200),
            status,
        };
        assert_eq!(
            retry_notice(&event, 4),
            "AUDIT_UNAVAILABLE: retrying in 1.2s (attempt 2 of 4)"
        );
        let refused = RetryEvent {
            attempt: 2,
            delay: Duration::from_millis(400),
            status: tonic::Status::unavailable("connection refused"),
        };
        assert_eq!(
            retry_notice(&refused, 4),
            "Unavailable: retrying in 0.4s (attempt 3 of 4)"
        );
    }
}
