//! `admissionctl spec-hash`.

use std::path::PathBuf;

use clap::Args;

use super::{CliError, ExitStatus, Output};
use crate::SpecHash;

/// Arguments of `spec-hash`.
#[derive(Debug, Args)]
pub struct SpecHashArgs {
    /// The spec_kv file.
    pub file: PathBuf,
}

/// Checks that the file is a canonical spec and prints `sha256:…`, the same as
/// `sha256sum FILE`; a file that is not is a usage error (exit status 2).
pub fn run(output: &Output, args: SpecHashArgs) -> Result<ExitStatus, CliError> {
    let file = args.file.display();
    let bytes = std::fs::read(&args.file)
        .map_err(|e| CliError::usage(format_args!("cannot read {file}: {e}")))?;
    let hash =
        SpecHash::of_spec(&bytes).map_err(|e| CliError::usage(format_args!("{file}: {e}")))?;
    output.print(
        &hash,
        serde_json::json!({ "file": file.to_string(), "spec_hash": hash.as_str() }),
    );
    Ok(ExitStatus::Ok)
}
