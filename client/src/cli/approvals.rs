//! `admissionctl approvals create|get|list|decide|revoke`.

use std::path::PathBuf;

use admission_contract::SpecHash;
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};

use super::{
    CliError, ExitStatus, Output,
    admit::{parse_environment, read_file},
    output,
};
use crate::{AdmissionClient, pb};

/// `admissionctl approvals …`.
#[derive(Debug, Subcommand)]
pub enum ApprovalsCommand {
    /// Request approval for an action (orchestrator).
    Create(CreateArgs),
    /// Show one approval.
    Get {
        /// The approval id.
        approval_id: String,
    },
    /// List the approvals that would admit an action now.
    List(ListArgs),
    /// Approve or deny a pending approval (reviewer).
    Decide(DecideArgs),
    /// Revoke an approval (reviewer).
    Revoke {
        /// The approval id.
        approval_id: String,
        /// Why it is revoked.
        #[arg(long)]
        reason: String,
    },
}

/// The action an approval covers.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ActionArg {
    /// A deployment.
    Deploy,
    /// An execute-mode replay.
    ReplayExecute,
    /// A dry-run replay.
    ReplayDryRun,
}

/// `approvals create` flags.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Target environment as ORG/PROJECT/ENV.
    #[arg(long = "env")]
    environment: String,
    /// The action to approve.
    #[arg(long, value_enum, default_value = "deploy")]
    action: ActionArg,
    /// The spec file; or give --spec-hash.
    #[arg(long, required_unless_present = "spec_hash")]
    spec: Option<PathBuf>,
    /// The spec hash (sha256:…).
    #[arg(long, conflicts_with = "spec")]
    spec_hash: Option<String>,
    /// Capability to grant beyond the environment's required set (repeatable).
    #[arg(long = "capability")]
    capabilities: Vec<String>,
    /// Requested lifetime, e.g. 15m (capped by the environment's max_credential_ttl).
    #[arg(long)]
    ttl: Option<humantime::Duration>,
    /// Why the action is needed.
    #[arg(long)]
    justification: String,
    /// On whose behalf the request is made.
    #[arg(long, env = "ADMISSION_INITIATED_BY")]
    initiated_by: String,
}

/// `approvals list` flags.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Target environment as ORG/PROJECT/ENV.
    #[arg(long = "env")]
    environment: String,
    /// The action.
    #[arg(long, value_enum, default_value = "deploy")]
    action: ActionArg,
    /// The spec file; or give --spec-hash.
    #[arg(long, required_unless_present = "spec_hash")]
    spec: Option<PathBuf>,
    /// The spec hash (sha256:…).
    #[arg(long, conflicts_with = "spec")]
    spec_hash: Option<String>,
}

/// `approvals decide` flags.
#[derive(Debug, Args)]
pub struct DecideArgs {
    /// The approval id.
    approval_id: String,
    /// Approve it.
    #[arg(long, conflicts_with = "deny", required_unless_present = "deny")]
    approve: bool,
    /// Deny it.
    #[arg(long)]
    deny: bool,
    /// The reviewer's reason (required to deny).
    #[arg(long, default_value = "")]
    reason: String,
}

/// Runs `admissionctl approvals …`. One approval prints as one object; `list` as
/// `{"approvals": […]}`.
pub async fn run(
    client: &AdmissionClient,
    command: ApprovalsCommand,
    output: &Output,
) -> Result<ExitStatus, CliError> {
    let approval = match command {
        ApprovalsCommand::Create(args) => client.create_approval(create_request(args)?).await?,
        ApprovalsCommand::Get { approval_id } => client.get_approval(&approval_id).await?,
        ApprovalsCommand::List(args) => {
            let approvals = client.list_eligible(list_request(args)?).await?;
            print_list(&approvals, output);
            return Ok(ExitStatus::Ok);
        }
        ApprovalsCommand::Decide(args) => {
            let verdict = if args.approve {
                pb::Verdict::Approve
            } else {
                pb::Verdict::Deny
            };
            let request = pb::DecideApprovalRequest {
                approval_id: args.approval_id,
                verdict: verdict as i32,
                reason: args.reason,
            };
            client.decide_approval(request).await?
        }
        ApprovalsCommand::Revoke {
            approval_id,
            reason,
        } => client.revoke_approval(&approval_id, &reason).await?,
    };
    if output.json {
        output::print_json(&output::approval_json(&approval));
    } else {
        output::print_approval(&approval);
    }
    Ok(ExitStatus::Ok)
}

fn create_request(args: CreateArgs) -> Result<pb::CreateApprovalRequest, CliError> {
    let spec = match (&args.spec, args.spec_hash) {
        (Some(path), _) => pb::create_approval_request::Spec::SpecKv(read_file(path)?),
        (None, Some(hash)) => pb::create_approval_request::Spec::SpecHash(hash),
        (None, None) => return Err(CliError::usage("--spec or --spec-hash is required")),
    };
    Ok(pb::CreateApprovalRequest {
        environment: Some(parse_environment(&args.environment).map_err(CliError::usage)?),
        action: pb_action(args.action) as i32,
        spec: Some(spec),
        capabilities: args.capabilities,
        ttl: args.ttl.map(|ttl| prost_types::Duration {
            seconds: i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX),
            nanos: 0,
        }),
        justification: args.justification,
        initiated_by: args.initiated_by,
    })
}

fn list_request(args: ListArgs) -> Result<pb::ListEligibleRequest, CliError> {
    let spec_hash = match (&args.spec, args.spec_hash) {
        (Some(path), _) => SpecHash::of_bytes(&read_file(path)?).to_string(),
        (None, Some(hash)) => hash,
        (None, None) => return Err(CliError::usage("--spec or --spec-hash is required")),
    };
    Ok(pb::ListEligibleRequest {
        environment: Some(parse_environment(&args.environment).map_err(CliError::usage)?),
        action: pb_action(args.action) as i32,
        spec_hash,
    })
}

fn print_list(approvals: &[pb::Approval], output: &Output) {
    if output.json {
        let approvals: Vec<Value> = approvals.iter().map(output::approval_json).collect();
        output::print_json(&json!({ "approvals": approvals }));
        return;
    }
    if approvals.is_empty() {
        println!("no eligible approvals");
    }
    for approval in approvals {
        output::print_approval(approval);
    }
}

fn pb_action(action: ActionArg) -> pb::Action {
    match action {
        ActionArg::Deploy => pb::Action::Deploy,
        ActionArg::ReplayExecute => pb::Action::ReplayExecute,
        ActionArg::ReplayDryRun => pb::Action::ReplayDryRun,
    }
}
