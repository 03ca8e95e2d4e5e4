//! `admissionctl receipt verify`: check an admission receipt offline with the log's public key.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::json;

use super::{CliError, ExitStatus, Output};
use crate::transparency::{self, Statement, TransparencyError};

/// `admissionctl receipt …`
#[derive(Debug, Subcommand)]
pub enum ReceiptCommand {
    /// Verify a receipt's signature (and, with --spec, that it is about that spec); exits 1 when
    /// it does not verify.
    Verify(VerifyArgs),
}

/// Arguments of `receipt verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The log's public key: a `log.pub` file (one signed-note verifier key line).
    #[arg(long = "key", value_name = "LOG_PUB")]
    pub key: PathBuf,
    /// The spec_kv file the receipt must be about.
    #[arg(long)]
    pub spec: Option<PathBuf>,
    /// The receipt: the DSSE envelope (JSON) an admission carried.
    pub receipt: PathBuf,
}

/// Runs a receipt command; nothing is sent to the service.
pub fn run(output: &Output, command: ReceiptCommand) -> Result<ExitStatus, CliError> {
    let ReceiptCommand::Verify(args) = command;
    let key = transparency::read_verifier_key(&args.key).map_err(CliError::usage)?;
    let receipt = read(&args.receipt)?;
    let spec = args.spec.as_ref().map(read).transpose()?;
    let statement =
        transparency::check_receipt(&receipt, &key, spec.as_deref()).map_err(|e| match e {
            TransparencyError::Input(message) => CliError::usage(message),
            TransparencyError::Invalid(error) => CliError::Refused(format!(
                "receipt {} is not valid: {error}",
                args.receipt.display()
            )),
        })?;
    output.print(
        text(&statement, spec.is_some()),
        json(&statement, spec.is_some()),
    );
    Ok(ExitStatus::Ok)
}

fn read(path: &PathBuf) -> Result<Vec<u8>, CliError> {
    std::fs::read(path)
        .map_err(|e| CliError::usage(format_args!("cannot read {}: {e}", path.display())))
}

fn text(statement: &Statement, spec_checked: bool) -> String {
    let p = &statement.predicate;
    let spec = if spec_checked {
        "matches the given spec"
    } else {
        "spec not checked (pass --spec)"
    };
    format!(
        "receipt valid: {} admitted {} in {} at {}\n  log_index: {}\n  entry_hash: {}\n  spec sha256: {} ({spec})\n  approvals: {}",
        p.decision_id,
        p.action,
        p.environment,
        p.decided_at,
        p.log_index,
        p.entry_hash,
        statement.spec_sha256(),
        if p.approval_ids.is_empty() {
            "none".to_owned()
        } else {
            p.approval_ids.join(", ")
        },
    )
}

fn json(statement: &Statement, spec_checked: bool) -> serde_json::Value {
    let p = &statement.predicate;
    json!({
        "valid": true,
        "decision_id": p.decision_id,
        "environment": p.environment,
        "action": p.action,
        "approval_ids": p.approval_ids,
        "decided_at": p.decided_at,
        "log_index": p.log_index,
        "entry_hash": p.entry_hash,
        "break_glass": p.break_glass,
        "log_origin": p.verifier.id,
        "spec_sha256": statement.spec_sha256(),
        "spec_checked": spec_checked,
    })
}
