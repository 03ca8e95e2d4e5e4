//! `admissionctl health`.

use clap::Args;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};

use super::{CliError, ConnectionArgs, ExitStatus, Output};

/// Arguments of `health`.
#[derive(Debug, Args)]
pub struct HealthArgs {
    /// Check one service (e.g. byteor.admission.v1.DeployAdmission) instead of the server.
    #[arg(long, default_value = "")]
    pub service: String,
}

/// Prints SERVING or NOT_SERVING; exit status 0 only when serving, else 3 (unavailable).
pub async fn run(
    connection: &ConnectionArgs,
    output: &Output,
    args: HealthArgs,
) -> Result<ExitStatus, CliError> {
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
        ExitStatus::Ok
    } else {
        ExitStatus::Unavailable
    })
}
