//! `admissionctl health`.

use std::process::ExitCode;

use clap::Args;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};

use super::{CliError, ConnectionArgs, Output};

/// Arguments of `health`.
#[derive(Debug, Args)]
pub struct HealthArgs {
    /// Check one service (e.g. byteor.admission.v1.DeployAdmission) instead of the server.
    #[arg(long, default_value = "")]
    pub service: String,
}

/// Prints SERVING or NOT_SERVING; exit status 0 only when serving.
pub async fn run(
    connection: &ConnectionArgs,
    output: &Output,
    args: HealthArgs,
) -> Result<ExitCode, CliError> {
    let client = connection.connect().await?;
    let response = client
        .health()
        .check(HealthCheckRequest {
            service: args.service.clone(),
        })
        .await
        .map_err(|status| CliError::from_status(&status))?
        .into_inner();
    let status = ServingStatus::try_from(response.status).unwrap_or(ServingStatus::Unknown);
    output.print(
        status.as_str_name(),
        serde_json::json!({ "service": args.service, "status": status.as_str_name() }),
    );
    Ok(if status == ServingStatus::Serving {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(super::EXIT_FAILURE)
    })
}
