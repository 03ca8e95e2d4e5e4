//! `admissionctl`: the operator CLI. Each command group lives in its own file here; to add
//! one, add a variant to [`Command`] and a match arm in [`run`].
//!
//! Every command ends with an [`ExitStatus`] (0 ok, 1 rejected, 2 usage, 3 unavailable) and,
//! with `--json`, prints exactly one JSON object on stdout, failures included.

pub mod admit;
pub mod approvals;
pub mod audit;
pub mod checkpoint;
pub mod completion;
pub mod error;
pub mod health;
pub mod keys;
pub mod log_key;
pub mod output;
pub mod receipt;
pub mod spec;
mod verify_report;

use std::{ffi::OsString, fmt, path::PathBuf, process::ExitCode, time::Duration};

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

pub use error::{CliError, ExitStatus};

use crate::{AdmissionClient, Rejection, RetryEvent, RetryPolicy, retry::DEFAULT_MAX_ATTEMPTS};

/// Operator CLI for the ByteOr admission service.
///
/// Exit status: 0 ok, 1 rejected, 2 usage or local input error, 3 service unavailable. The
/// reasons, exit statuses and formats are described in docs/reference.md.
#[derive(Debug, Parser)]
#[command(name = "admissionctl", version)]
pub struct Cli {
    /// Print one JSON object on stdout instead of text, errors included.
    #[arg(long, global = true)]
    pub json: bool,
    /// How to reach the service.
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Endpoint, mTLS files and call limits, from flags or the environment.
#[derive(Clone, Debug, Args)]
#[command(next_help_heading = "Connection")]
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
    /// Deadline of connecting and of each call attempt, e.g. `10s`.
    #[arg(
        long,
        global = true,
        env = "ADMISSION_TIMEOUT",
        default_value = "10s",
        value_parser = humantime::parse_duration
    )]
    pub timeout: Duration,
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
    /// Check the service health (exit status 0 only when SERVING, 3 otherwise).
    Health(health::HealthArgs),
    /// Print the spec hash of a spec_kv file (checked locally, no service needed).
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
    /// List and verify the audit trail; save, prove and check its signed checkpoints.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Verify admission receipts offline with the log's public key.
    #[command(subcommand)]
    Receipt(receipt::ReceiptCommand),
    /// Print a shell completion script: bash, zsh or fish.
    Completion(completion::CompletionArgs),
}

/// Where results go: text or JSON on stdout.
#[derive(Clone, Copy, Debug)]
pub struct Output {
    /// Whether to print JSON.
    pub json: bool,
}

/// The commands that never call the service; the connection options are left out of their
/// help.
const OFFLINE_COMMANDS: [&str; 5] = ["spec-hash", "keygen", "sign", "receipt", "completion"];

/// The argument ids of [`ConnectionArgs`].
const CONNECTION_ARGS: [&str; 7] = [
    "endpoint",
    "ca",
    "cert",
    "key",
    "timeout",
    "max_attempts",
    "retry_deadline",
];

/// The command line: [`Cli`] with the connection options hidden where they do not apply.
pub fn command() -> clap::Command {
    let command = Cli::command();
    // A subcommand that defines an argument itself does not receive the global one of that
    // id, so a hidden copy keeps the connection options out of the offline commands' help.
    let hidden: Vec<clap::Arg> = command
        .get_arguments()
        .filter(|arg| CONNECTION_ARGS.contains(&arg.get_id().as_str()))
        .map(|arg| arg.clone().hide(true))
        .collect();
    OFFLINE_COMMANDS.iter().fold(command, |command, name| {
        command.mut_subcommand(name, |sub| {
            let own: Vec<clap::Id> = sub.get_arguments().map(|a| a.get_id().clone()).collect();
            let copies = hidden.iter().filter(|arg| !own.contains(arg.get_id()));
            sub.args(copies.cloned())
        })
    })
}

/// Parses the command line. On a usage error it prints the error (one JSON object on stdout
/// when `--json` is among the arguments) and returns the exit status to end with.
pub fn parse(args: impl IntoIterator<Item = impl Into<OsString>>) -> Result<Cli, ExitCode> {
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let error = match command().try_get_matches_from(&args).and_then(|matches| {
        Cli::from_arg_matches(&matches).map(|cli| without_inherited_log_key(cli, &matches))
    }) {
        Ok(cli) => return Ok(cli),
        Err(error) => error,
    };
    let help = matches!(
        error.kind(),
        clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
    );
    let json = args.iter().skip(1).any(|arg| arg == "--json");
    if help || !json {
        // Best effort: nothing else can be told if stdout or stderr is closed.
        let _ = error.print();
        return Err(ExitCode::from(if help {
            0
        } else {
            ExitStatus::Usage.code()
        }));
    }
    let message = match error.kind() {
        clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            "a subcommand is missing; run with --help to list them".to_owned()
        }
        _ => {
            let rendered = error.render().to_string();
            let first = rendered.lines().next().unwrap_or_default();
            first.strip_prefix("error: ").unwrap_or(first).to_owned()
        }
    };
    println!("{}", CliError::usage(message).to_json());
    Err(ExitStatus::Usage.into())
}

/// `audit log-key --key` shares its id with the global client `--key`, so clap hands it
/// `ADMISSION_KEY` when `--key` is not given; that is the client key, never the log key.
fn without_inherited_log_key(mut cli: Cli, matches: &clap::ArgMatches) -> Cli {
    let from_env = matches
        .subcommand_matches("audit")
        .and_then(|audit| audit.subcommand_matches("log-key"))
        .and_then(|log_key| log_key.value_source("key"))
        == Some(clap::parser::ValueSource::EnvVariable);
    if let (true, Command::Audit(audit::AuditCommand::LogKey(args))) = (from_env, &mut cli.command)
    {
        args.key = None;
    }
    cli
}

/// Runs the parsed command line and returns the process exit status.
pub async fn run(cli: Cli) -> ExitCode {
    let output = Output { json: cli.json };
    let admission = matches!(
        cli.command,
        Command::Deploy(admit::DeployCommand::Admit(_))
            | Command::Replay(admit::ReplayCommand::Admit(_))
    );
    let result = match cli.command {
        Command::Health(args) => health::run(&cli.connection, &output, args).await,
        Command::SpecHash(args) => spec::run(&output, args),
        Command::Keygen(args) => keys::run_keygen(&output, &args),
        Command::Sign(args) => keys::print_sign(&output, &args),
        Command::Receipt(command) => receipt::run(&output, command),
        Command::Completion(args) => completion::run(&output, args),
        Command::Deploy(command) => match cli.connection.connect().await {
            Ok(client) => admit::run_deploy(&client, command, &output).await,
            Err(error) => Err(error),
        },
        Command::Replay(command) => match cli.connection.connect().await {
            Ok(client) => admit::run_replay(&client, command, &output).await,
            Err(error) => Err(error),
        },
        Command::Approvals(command) => match cli.connection.connect().await {
            Ok(client) => approvals::run(&client, command, &output).await,
            Err(error) => Err(error),
        },
        Command::Audit(command) => audit::run(&cli.connection, command, &output).await,
    };
    match result {
        Ok(status) => status.into(),
        Err(error) => {
            output.failure(&error, admission);
            error.exit_status().into()
        }
    }
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

    /// Prints a failure: its JSON object on stdout, or its text on stderr. An admission's
    /// object also says `"admitted": false`.
    pub fn failure(&self, error: &CliError, admission: bool) {
        if !self.json {
            eprintln!("{}", error.to_text());
            return;
        }
        let mut value = error.to_json();
        if let (true, Some(object)) = (admission, value.as_object_mut()) {
            object.insert("admitted".to_owned(), serde_json::Value::Bool(false));
        }
        println!("{value}");
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
            .with_attempt_timeout(self.timeout)
            .on_retry(move |event| eprintln!("{}", retry_notice(event, max_attempts)));
        AdmissionClient::builder()
            .endpoint(endpoint)
            .ca_file(ca)
            .identity_files(cert, key)
            .connect_timeout(self.timeout)
            .request_timeout(self.timeout)
            .retry_policy(policy)
            .connect()
            .await
            .map_err(|error| self.explain(error))
    }

    /// The error as the CLI reports it, naming the flag to fix when the handshake failed.
    fn explain(&self, error: crate::ClientError) -> CliError {
        let cause = error::error_chain(&error);
        let hint = if cause.contains("UnknownIssuer") || cause.contains("invalid peer certificate")
        {
            self.ca.as_ref().map(|ca| {
                format!(
                    "; the server certificate does not chain to --ca {}",
                    ca.display()
                )
            })
        } else if cause.contains("alert") || cause.contains("certificate required") {
            self.cert.as_ref().map(|cert| {
                format!(
                    "; the service refused the client certificate {}",
                    cert.display()
                )
            })
        } else {
            None
        };
        match (CliError::from(error), hint) {
            (CliError::Unavailable { code, message }, Some(hint)) => {
                CliError::unavailable(code, format!("{message}{hint}"))
            }
            (error, _) => error,
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_is_well_formed() {
        Cli::command().debug_assert();
        command().debug_assert();
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
    fn connection_options_are_global_and_hidden_from_offline_commands() {
        let cli = parse(["admissionctl", "health", "--timeout", "2s", "--json"]).unwrap();
        assert_eq!(cli.connection.timeout, Duration::from_secs(2));
        assert!(cli.json);
        let sign = [
            "admissionctl",
            "sign",
            "--signing-key",
            "s.key",
            "--kid",
            "k",
            "--org",
            "o",
            "--project",
            "p",
            "--env",
            "e",
            "--posture",
            "dev",
            "--spec-hash",
            "sha256:00",
            "--capability",
            "deploy",
            "--issued-by",
            "bob",
            "--approval-id",
            "apr_1",
            "--json",
        ];
        assert!(matches!(parse(sign).unwrap().command, Command::Sign(_)));
        let mut command = command();
        // Checks every subcommand's definition, as parsing it would.
        command.build();
        let top = command.render_help().to_string();
        assert!(
            top.contains("Connection:") && top.contains("--endpoint"),
            "{top}"
        );
        for name in OFFLINE_COMMANDS {
            let help = command
                .find_subcommand_mut(name)
                .unwrap()
                .render_help()
                .to_string();
            assert!(!help.contains("--endpoint"), "{name}: {help}");
            assert!(help.contains("--json"), "{name}: {help}");
        }
        let deploy = command.find_subcommand_mut("deploy").unwrap();
        let admit = deploy.find_subcommand_mut("admit").unwrap();
        let help = admit.render_help().to_string();
        assert!(
            help.contains("--endpoint") && help.contains("--timeout"),
            "{help}"
        );
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
