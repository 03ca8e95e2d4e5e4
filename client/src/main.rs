//! `admissionctl`: operator CLI for the ByteOr admission service.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use admission_client::cli::{self, CliError, Output};

fn main() -> ExitCode {
    let cli = match cli::parse(std::env::args_os()) {
        Ok(cli) => cli,
        Err(status) => return status,
    };
    match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime.block_on(cli::run(cli)),
        Err(error) => {
            let error = CliError::usage(format_args!("cannot start the async runtime: {error}"));
            Output { json: cli.json }.failure(&error, false);
            error.exit_status().into()
        }
    }
}
