//! `admissionctl audit …`: read and check the audit trail (auditor role). `list` and the chain
//! `verify` are here; the transparency-log commands (`checkpoint`, `verify --since-checkpoint`,
//! `prove`) are in [`super::checkpoint`], the offline `log-key` in [`super::log_key`].

use std::time::SystemTime;

use admission_contract::hash::{bare_hash, wire_hash};
use admission_contract::pb;
use admission_contract::pb::audit_client::AuditClient;
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use tonic::transport::Channel;

use super::{
    CliError, ConnectionArgs, ExitStatus, Output,
    checkpoint::{self, CheckpointArgs, ProveArgs, SinceArgs},
    log_key::{self, LogKeyArgs},
    verify_report::{verify_json, verify_line},
};

/// Largest page the service serves.
const MAX_PAGE_SIZE: u32 = 1000;
/// Hex digits of `entry_hash` shown in human output.
const HASH_PREFIX: usize = 12;

/// `admissionctl audit …`
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum AuditCommand {
    /// List audit entries, oldest first.
    List(ListArgs),
    /// Re-compute every hash of the chain; exits 1 when it does not check out. With
    /// --since-checkpoint, also prove that the log still holds a saved signed checkpoint.
    Verify(SinceArgs),
    /// Fetch the current signed checkpoint (verified with --log-key) and save it with --out.
    Checkpoint(CheckpointArgs),
    /// Prove that a decision is in the log of a signed checkpoint (and check its receipt).
    Prove(ProveArgs),
    /// Print the log's public key (the `log.pub` line) from its private key, offline.
    LogKey(LogKeyArgs),
}

/// Filters of `admissionctl audit list`.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct ListArgs {
    /// Only this environment: ORG, ORG/PROJECT or ORG/PROJECT/ENV.
    #[arg(long, value_name = "ORG/PROJECT/ENV")]
    pub env: Option<String>,
    /// Only this outcome (admitted, rejected, previewed, approval_created, …).
    #[arg(long)]
    pub outcome: Option<String>,
    /// Only entries recorded at or after this time (RFC 3339, UTC, e.g. 2026-11-23T10:00:00Z).
    #[arg(long, value_name = "RFC3339")]
    pub since: Option<String>,
    /// Most entries to print; 0 prints all.
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
}

/// Runs one audit command, printing to stdout (JSON with `--json`); local input is read before
/// the service is called. `verify` ends with exit status 1 when the chain does not check out.
pub async fn run(
    connection: &ConnectionArgs,
    command: AuditCommand,
    output: &Output,
) -> Result<ExitStatus, CliError> {
    match command {
        AuditCommand::Verify(args) if args.since_checkpoint.is_some() => {
            checkpoint::run_since(connection, &args, output).await
        }
        AuditCommand::Checkpoint(args) => {
            checkpoint::run_checkpoint(connection, &args, output).await
        }
        AuditCommand::Prove(args) => checkpoint::run_prove(connection, &args, output).await,
        AuditCommand::LogKey(args) => log_key::run(&args, output),
        AuditCommand::List(_) | AuditCommand::Verify(_) => {
            let client = connection.connect().await?;
            run_chain(client.channel(), command, output).await
        }
    }
}

/// `list` and the chain-only `verify` over `channel`.
async fn run_chain(
    channel: Channel,
    command: AuditCommand,
    output: &Output,
) -> Result<ExitStatus, CliError> {
    let mut client = AuditClient::new(channel);
    match command {
        AuditCommand::List(args) => {
            let request = list_request(&args)?;
            let entries = list_entries(&mut client, request, args.limit).await?;
            if output.json {
                let entries: Vec<Value> = entries.iter().map(entry_json).collect();
                println!("{}", json!({ "entries": entries }));
            } else {
                for entry in &entries {
                    println!("{}", entry_line(entry));
                }
            }
            Ok(ExitStatus::Ok)
        }
        _ => {
            let report = client.verify(pb::VerifyAuditRequest {}).await?.into_inner();
            output.print(verify_line(&report), verify_json(&report));
            Ok(if report.ok {
                ExitStatus::Ok
            } else {
                ExitStatus::Rejected
            })
        }
    }
}

/// Follows `next_page_token` until `limit` entries (0: all) or the last page.
async fn list_entries(
    client: &mut AuditClient<Channel>,
    mut request: pb::ListAuditRequest,
    limit: u32,
) -> Result<Vec<pb::AuditEntry>, CliError> {
    let mut entries = Vec::new();
    loop {
        let remaining = match limit {
            0 => MAX_PAGE_SIZE,
            limit => limit
                .saturating_sub(entries.len() as u32)
                .min(MAX_PAGE_SIZE),
        };
        request.page_size = remaining;
        let page = client.list(request.clone()).await?.into_inner();
        entries.extend(page.entries);
        let full = limit != 0 && entries.len() >= limit as usize;
        if full || page.next_page_token.is_empty() {
            entries.truncate(if limit == 0 {
                usize::MAX
            } else {
                limit as usize
            });
            return Ok(entries);
        }
        request.page_token = page.next_page_token;
    }
}

/// The first-page request for these arguments.
fn list_request(args: &ListArgs) -> Result<pb::ListAuditRequest, CliError> {
    let environment = args.env.as_deref().map(parse_environment).transpose()?;
    let since = match args.since.as_deref() {
        None => None,
        Some(text) => {
            let time = humantime::parse_rfc3339(text).map_err(|e| {
                CliError::usage(format_args!(
                    "--since must be an RFC 3339 UTC time such as 2026-11-23T10:00:00Z: {e}"
                ))
            })?;
            Some(prost_types::Timestamp::from(time))
        }
    };
    Ok(pb::ListAuditRequest {
        environment,
        outcome: args.outcome.clone().unwrap_or_default(),
        since,
        page_size: 0,
        page_token: String::new(),
    })
}

/// `ORG[/PROJECT[/ENV]]`; omitted parts match any.
fn parse_environment(text: &str) -> Result<pb::EnvironmentRef, CliError> {
    let parts: Vec<&str> = text.split('/').collect();
    if parts.len() > 3 || parts.iter().any(|part| part.is_empty()) {
        return Err(CliError::usage(format_args!(
            "--env must be ORG, ORG/PROJECT or ORG/PROJECT/ENV, got {text:?}"
        )));
    }
    let part = |i: usize| parts.get(i).map(|p| (*p).to_owned()).unwrap_or_default();
    Ok(pb::EnvironmentRef {
        org_id: part(0),
        project_id: part(1),
        environment_id: part(2),
    })
}

/// One human line: seq, time, outcome, reason, action, scope, actor, entry_hash prefix.
fn entry_line(entry: &pb::AuditEntry) -> String {
    let reason = if entry.reason.is_empty() {
        "-"
    } else {
        entry.reason.as_str()
    };
    let hex = bare_hash(&entry.entry_hash);
    let hash = hex.get(..HASH_PREFIX).unwrap_or(hex);
    format!(
        "{:>6}  {}  {:<20} {:<34} {:<16} {}  {}  {}",
        entry.seq,
        recorded_at_text(entry),
        entry.outcome,
        reason,
        entry.action,
        scope_text(entry.resource_scope.as_ref()),
        entry.actor,
        hash
    )
}

/// Every field of an entry, with the time as RFC 3339.
fn entry_json(entry: &pb::AuditEntry) -> Value {
    let scope = entry.resource_scope.clone().unwrap_or_default();
    json!({
        "seq": entry.seq,
        "entry_id": entry.entry_id,
        "recorded_at": recorded_at_text(entry),
        "actor": entry.actor,
        "actor_cert_sha256": entry.actor_cert_sha256,
        "initiated_by": entry.initiated_by,
        "action": entry.action,
        "resource_scope": {
            "org_id": scope.org_id,
            "project_id": scope.project_id,
            "environment_id": scope.environment_id,
        },
        "spec_hash": entry.spec_hash,
        "capabilities": entry.capabilities,
        "approval_ids": entry.approval_ids,
        "approvers": entry.approvers,
        "outcome": entry.outcome,
        "reason": entry.reason,
        "grpc_code": entry.grpc_code,
        "request_id": entry.request_id,
        "detail": entry.detail,
        "prev_hash": wire_hash(&entry.prev_hash),
        "entry_hash": wire_hash(&entry.entry_hash),
    })
}

/// RFC 3339 with microseconds, or `-` when the time is missing or out of range.
fn recorded_at_text(entry: &pb::AuditEntry) -> String {
    entry
        .recorded_at
        .and_then(|t| SystemTime::try_from(t).ok())
        .map_or_else(
            || "-".to_owned(),
            |t| humantime::format_rfc3339_micros(t).to_string(),
        )
}

fn scope_text(scope: Option<&pb::EnvironmentRef>) -> String {
    scope.map_or_else(
        || "-".to_owned(),
        |s| format!("{}/{}/{}", s.org_id, s.project_id, s.environment_id),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> pb::AuditEntry {
        pb::AuditEntry {
            seq: 7,
            entry_id: "dec_1".into(),
            recorded_at: Some(prost_types::Timestamp {
                seconds: 1_795_428_000,
                nanos: 123_456_000,
            }),
            actor: "spiffe://acme.example/orchestrator/ci".into(),
            action: "deploy.admit".into(),
            resource_scope: Some(pb::EnvironmentRef {
                org_id: "acme".into(),
                project_id: "payments".into(),
                environment_id: "prod".into(),
            }),
            outcome: "rejected".into(),
            reason: "POLICY_DENIED".into(),
            entry_hash: "0123456789abcdef".repeat(4),
            ..pb::AuditEntry::default()
        }
    }

    #[test]
    fn human_line_has_the_fields_in_order() {
        assert_eq!(
            entry_line(&pb::AuditEntry {
                entry_hash: format!("sha256:{}", sample().entry_hash),
                ..sample()
            }),
            entry_line(&sample())
        );
        assert_eq!(
            entry_line(&sample()),
            "     7  2026-11-23T10:00:00.123456Z  rejected             POLICY_DENIED                      \
             deploy.admit     acme/payments/prod  spiffe://acme.example/orchestrator/ci  0123456789ab"
        );
    }

    #[test]
    fn json_entry_carries_every_field() {
        let value = entry_json(&sample());
        assert_eq!(value["seq"], 7);
        assert_eq!(value["recorded_at"], "2026-11-23T10:00:00.123456Z");
        assert_eq!(value["resource_scope"]["environment_id"], "prod");
        assert_eq!(value["reason"], "POLICY_DENIED");
        assert_eq!(value["capabilities"], json!([]));
        assert_eq!(
            value["entry_hash"],
            format!("sha256:{}", "0123456789abcdef".repeat(4))
        );
    }

    #[test]
    fn list_request_from_arguments() {
        let args = ListArgs {
            env: Some("acme/payments/prod".into()),
            outcome: Some("admitted".into()),
            since: Some("2026-11-23T10:00:00Z".into()),
            limit: 10,
        };
        let request = list_request(&args).map_err(|e| e.to_string());
        assert_eq!(
            request,
            Ok(pb::ListAuditRequest {
                environment: Some(pb::EnvironmentRef {
                    org_id: "acme".into(),
                    project_id: "payments".into(),
                    environment_id: "prod".into(),
                }),
                outcome: "admitted".into(),
                since: Some(prost_types::Timestamp {
                    seconds: 1_795_428_000,
                    nanos: 0,
                }),
                page_size: 0,
                page_token: String::new(),
            })
        );
        let partial = parse_environment("acme").map_err(|e| e.to_string());
        assert_eq!(
            partial,
            Ok(pb::EnvironmentRef {
                org_id: "acme".into(),
                ..pb::EnvironmentRef::default()
            })
        );
        assert!(matches!(
            parse_environment("acme//prod"),
            Err(CliError::Usage(_))
        ));
        let bad_time = ListArgs {
            since: Some("yesterday".into()),
            ..args
        };
        assert!(matches!(list_request(&bad_time), Err(CliError::Usage(_))));
    }
}
