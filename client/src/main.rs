//! `admissionctl`: operator CLI for the ByteOr admission service.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use admission_client::cli::{self, Cli, CliError};
use clap::Parser;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime.block_on(cli::run(cli)),
        Err(error) => {
            eprintln!(
                "admissionctl: {}",
                CliError::failure(format_args!("cannot start the async runtime: {error}"))
            );
            ExitCode::FAILURE
        }
    }
}
