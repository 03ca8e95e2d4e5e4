//! `admissionctl deploy|replay preview|admit`.

use std::{path::PathBuf, time::SystemTime};

use admission_contract::SpecHash;
use admission_contract::hash::wire_hash;
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};

use super::{CliError, ExitStatus, Output, output};
use crate::{AdmissionClient, pb};

/// `admissionctl deploy …`.
#[derive(Debug, Subcommand)]
pub enum DeployCommand {
    /// Evaluate a deployment without credentials and without consuming anything.
    Preview(DeployArgs),
    /// Ask for admission of a deployment.
    Admit(DeployArgs),
}

/// `admissionctl replay …`.
#[derive(Debug, Subcommand)]
pub enum ReplayCommand {
    /// Evaluate a replay without credentials and without consuming anything.
    Preview(ReplayArgs),
    /// Ask for admission of a replay.
    Admit(ReplayArgs),
}

/// What deploy and replay requests share.
#[derive(Debug, Args)]
pub struct CommonArgs {
    /// Target environment as ORG/PROJECT/ENV.
    #[arg(long = "env")]
    pub environment: String,
    /// The canonical spec file (key=value lines).
    #[arg(long)]
    pub spec: PathBuf,
    /// Capability needed beyond the environment's required set (repeatable).
    #[arg(long = "capability")]
    pub capabilities: Vec<String>,
    /// Approval credential (repeatable).
    #[arg(long = "credential")]
    pub credentials: Vec<String>,
    /// File holding one credential per line (repeatable).
    #[arg(long = "credential-file")]
    pub credential_files: Vec<PathBuf>,
    /// Attach the credentials of this approval, fetched from the service (repeatable).
    #[arg(long = "approval")]
    pub approvals: Vec<String>,
    /// On whose behalf this runs (person or system).
    #[arg(long, env = "ADMISSION_INITIATED_BY")]
    pub initiated_by: String,
    /// Idempotency key; generated when omitted. Reuse it to retry safely.
    #[arg(long)]
    pub request_id: Option<String>,
    /// With admit: write the admission's receipt (DSSE envelope JSON, signed with the log key)
    /// to this file, for `receipt verify` and `audit prove --receipt`.
    #[arg(long, value_name = "FILE")]
    pub receipt_out: Option<PathBuf>,
}

/// `deploy preview|admit` flags.
#[derive(Debug, Args)]
pub struct DeployArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// The pipeline version being deployed.
    #[arg(long)]
    pipeline_version: String,
    /// Config bundle id.
    #[arg(long)]
    bundle_id: String,
    /// Config bundle digest (sha256:…); or give --bundle-file to compute it.
    #[arg(long, required_unless_present = "bundle_file")]
    bundle_digest: Option<String>,
    /// Config bundle file whose SHA-256 is the digest.
    #[arg(long, conflicts_with = "bundle_digest")]
    bundle_file: Option<PathBuf>,
    /// Environment id the bundle was made for (default: the target's).
    #[arg(long)]
    bundle_env: Option<String>,
    /// Request break-glass admission with this justification.
    #[arg(long)]
    break_glass: Option<String>,
}

/// Replay mode flag.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Mode {
    /// Simulate only.
    DryRun,
    /// Execute side effects.
    Execute,
}

/// `replay preview|admit` flags.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// dry-run or execute.
    #[arg(long, value_enum)]
    mode: Mode,
    /// The incident being investigated.
    #[arg(long)]
    incident: String,
    /// Source artifact id.
    #[arg(long)]
    artifact_id: String,
    /// Source artifact digest (sha256:…).
    #[arg(long)]
    artifact_digest: String,
    /// Environment id the artifact was captured in (default: the target's).
    #[arg(long)]
    artifact_env: Option<String>,
}

/// Runs `admissionctl deploy …`.
pub async fn run_deploy(
    client: &AdmissionClient,
    command: DeployCommand,
    output: &Output,
) -> Result<ExitStatus, CliError> {
    let (args, admit) = match command {
        DeployCommand::Preview(args) => (args, false),
        DeployCommand::Admit(args) => (args, true),
    };
    let (environment, spec_kv, credentials) = args.common.resolve(client).await?;
    let receipt_out = args.common.receipt_out.clone();
    let bundle_digest = match (&args.bundle_digest, &args.bundle_file) {
        (Some(digest), _) => digest.clone(),
        (None, Some(path)) => SpecHash::of_bytes(&read_file(path)?).to_string(),
        (None, None) => {
            return Err(CliError::usage(
                "--bundle-digest or --bundle-file is required",
            ));
        }
    };
    let request = pb::DeployRequest {
        request_id: args.common.request_id(),
        config_bundle: Some(pb::ConfigBundle {
            bundle_id: args.bundle_id,
            digest: bundle_digest,
            environment_id: args
                .bundle_env
                .unwrap_or_else(|| environment.environment_id.clone()),
        }),
        environment: Some(environment),
        pipeline_version: args.pipeline_version,
        spec_kv,
        required_capabilities: args.common.capabilities,
        credentials,
        initiated_by: args.common.initiated_by,
        break_glass: args
            .break_glass
            .map(|justification| pb::BreakGlass { justification }),
    };
    if admit {
        let admission = client.admit_deploy(request).await?;
        write_receipt(&admission, receipt_out.as_deref())?;
        print_admission(&admission, output)
    } else {
        print_preview(&client.preview_deploy(request).await?, output)
    }
}

/// Runs `admissionctl replay …`.
pub async fn run_replay(
    client: &AdmissionClient,
    command: ReplayCommand,
    output: &Output,
) -> Result<ExitStatus, CliError> {
    let (args, admit) = match command {
        ReplayCommand::Preview(args) => (args, false),
        ReplayCommand::Admit(args) => (args, true),
    };
    let (environment, spec_kv, credentials) = args.common.resolve(client).await?;
    let receipt_out = args.common.receipt_out.clone();
    let mode = match args.mode {
        Mode::DryRun => pb::ReplayMode::DryRun,
        Mode::Execute => pb::ReplayMode::Execute,
    };
    let request = pb::ReplayRequest {
        request_id: args.common.request_id(),
        source_artifact: Some(pb::SourceArtifact {
            artifact_id: args.artifact_id,
            digest: args.artifact_digest,
            environment_id: args
                .artifact_env
                .unwrap_or_else(|| environment.environment_id.clone()),
        }),
        environment: Some(environment),
        mode: mode as i32,
        incident_id: args.incident,
        spec_kv,
        required_capabilities: args.common.capabilities,
        credentials,
        initiated_by: args.common.initiated_by,
    };
    if admit {
        let admission = client.admit_replay(request).await?;
        write_receipt(&admission, receipt_out.as_deref())?;
        print_admission(&admission, output)
    } else {
        print_preview(&client.preview_replay(request).await?, output)
    }
}

// === impl CommonArgs ===

impl CommonArgs {
    /// Environment, spec bytes and every credential (flags, files, then fetched approvals).
    ///
    /// Local input is checked before any approval is fetched. The spec is sent as it is: what
    /// the service finds wrong with it is a rejection it records (`SPEC_MALFORMED`).
    async fn resolve(
        &self,
        client: &AdmissionClient,
    ) -> Result<(pb::EnvironmentRef, Vec<u8>, Vec<String>), CliError> {
        let environment = parse_environment(&self.environment).map_err(CliError::usage)?;
        let spec_kv = read_file(&self.spec)?;
        let mut credentials = self.credentials.clone();
        for path in &self.credential_files {
            let text = String::from_utf8(read_file(path)?)
                .map_err(|e| CliError::usage(format_args!("{}: {e}", path.display())))?;
            credentials.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(str::to_owned),
            );
        }
        for approval_id in &self.approvals {
            let approval = client.get_approval(approval_id).await?;
            if approval.credentials.is_empty() {
                return Err(CliError::Refused(format!(
                    "approval {approval_id} has no credentials yet (state {}); it must be \
                     approved first",
                    output::approval_state(approval.state)
                )));
            }
            credentials.extend(approval.credentials);
        }
        Ok((environment, spec_kv, credentials))
    }

    fn request_id(&self) -> String {
        self.request_id.clone().unwrap_or_else(|| {
            let nanos = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos();
            format!("admissionctl-{nanos:x}-{}", std::process::id())
        })
    }
}

/// The bytes of a file named on the command line; unreadable is a usage error.
pub fn read_file(path: &std::path::Path) -> Result<Vec<u8>, CliError> {
    std::fs::read(path)
        .map_err(|e| CliError::usage(format_args!("cannot read {}: {e}", path.display())))
}

/// Parses `ORG/PROJECT/ENV`.
pub fn parse_environment(text: &str) -> Result<pb::EnvironmentRef, String> {
    let parts: Vec<&str> = text.split('/').collect();
    match parts.as_slice() {
        [org, project, env] if !org.is_empty() && !project.is_empty() && !env.is_empty() => {
            Ok(pb::EnvironmentRef {
                org_id: (*org).to_owned(),
                project_id: (*project).to_owned(),
                environment_id: (*env).to_owned(),
            })
        }
        _ => Err(format!("--env {text:?} must be ORG/PROJECT/ENV")),
    }
}

/// Prints the admission; exit status 0.
/// Writes the admission's receipt to `path`, when one is asked for. A service without a log
/// key sends none; that is said on stderr and the admission stands.
fn write_receipt(
    admission: &pb::Admission,
    path: Option<&std::path::Path>,
) -> Result<(), CliError> {
    let Some(path) = path else {
        return Ok(());
    };
    if admission.receipt.is_empty() {
        eprintln!("admissionctl: the service sent no receipt (it has no [audit] log_key)");
        return Ok(());
    }
    std::fs::write(path, &admission.receipt)
        .map_err(|e| CliError::usage(format_args!("cannot write {}: {e}", path.display())))
}

fn print_admission(admission: &pb::Admission, output: &Output) -> Result<ExitStatus, CliError> {
    if output.json {
        output::print_json(&admission_json(admission));
        return Ok(ExitStatus::Ok);
    }
    let verdict = if admission.break_glass {
        "ADMITTED (break-glass)"
    } else if admission.shadow_reason.is_empty() {
        "ADMITTED"
    } else {
        "ADMITTED (shadow mode)"
    };
    println!("{verdict}");
    println!("  decision_id:  {}", admission.decision_id);
    println!("  action:       {}", output::action(admission.action));
    println!("  spec_hash:    {}", admission.spec_hash);
    if !admission.approval_ids.is_empty() {
        println!("  approvals:    {}", admission.approval_ids.join(", "));
    }
    if !admission.shadow_reason.is_empty() {
        println!("  would reject: {}", admission.shadow_reason);
    }
    println!("  audit entry:  {}", wire_hash(&admission.audit_entry_hash));
    Ok(ExitStatus::Ok)
}

/// Prints the preview; exit status 0 whatever the policy decision, which it reports.
fn print_preview(preview: &pb::Preview, output: &Output) -> Result<ExitStatus, CliError> {
    if output.json {
        output::print_json(&preview_json(preview));
        return Ok(ExitStatus::Ok);
    }
    let decision = output::policy_decision(preview.policy_decision);
    println!("policy decision: {decision}");
    println!(
        "  action:                {}",
        output::action(preview.action)
    );
    println!(
        "  posture:               {}",
        output::posture(preview.posture)
    );
    println!("  spec_hash:             {}", preview.spec_hash);
    println!(
        "  required capabilities: {}",
        preview.required_capabilities.join(", ")
    );
    println!("  required approvals:    {}", preview.required_approvals);
    if preview.eligible_approvals.is_empty() {
        println!("  eligible approvals:    none");
    } else {
        println!("  eligible approvals:");
        for approval in &preview.eligible_approvals {
            println!(
                "    {}  expires {}  uses {}/{}  approved by {}",
                approval.approval_id,
                output::time(approval.expires_at.as_ref()),
                approval.uses,
                approval.max_uses,
                approval.approvers.join(", ")
            );
        }
    }
    println!("  decision_id:           {}", preview.decision_id);
    Ok(ExitStatus::Ok)
}

fn preview_json(preview: &pb::Preview) -> Value {
    json!({
        "decision_id": preview.decision_id,
        "action": output::action(preview.action),
        "spec_hash": preview.spec_hash,
        "policy_decision": output::policy_decision(preview.policy_decision),
        "posture": output::posture(preview.posture),
        "required_capabilities": preview.required_capabilities,
        "required_approvals": preview.required_approvals,
        "eligible_approvals": preview
            .eligible_approvals
            .iter()
            .map(output::approval_json)
            .collect::<Vec<_>>(),
    })
}

fn admission_json(admission: &pb::Admission) -> Value {
    json!({
        "admitted": true,
        "decision_id": admission.decision_id,
        "action": output::action(admission.action),
        "spec_hash": admission.spec_hash,
        "approval_ids": admission.approval_ids,
        "decided_at": output::time(admission.decided_at.as_ref()),
        "audit_entry_hash": wire_hash(&admission.audit_entry_hash),
        "shadow_reason": admission.shadow_reason,
        "break_glass": admission.break_glass,
    })
}
