//! `admissionctl audit checkpoint|verify --since-checkpoint|prove`: the trail as a transparency
//! log, checked against the log's public key (`log.pub`) alone. Whatever the service answers is
//! verified here; an answer that does not verify ends with exit status 1, a local file that
//! cannot be used with 2.

use std::path::{Path, PathBuf};

use admission_contract::pb;
use admission_contract::pb::audit_client::AuditClient;
use clap::Args;
use serde_json::{Value, json};
use tonic::transport::Channel;

use super::{
    CliError, ConnectionArgs, ExitStatus, Output,
    verify_report::{verify_json, verify_line},
};
use crate::transparency::{self, Checkpoint, TransparencyError, VerifierKey};

/// Arguments of `audit checkpoint`.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct CheckpointArgs {
    /// Write the signed checkpoint note to this file instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Verify the checkpoint's signature with this `log.pub` first; exits 1 when it fails.
    #[arg(long, value_name = "LOG_PUB")]
    pub log_key: Option<PathBuf>,
}

/// Arguments of `audit verify`.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct SinceArgs {
    /// A checkpoint saved earlier (`audit checkpoint --out`): prove that today's log still
    /// starts with exactly the entries it signed. Exits 1 when the log was rewritten or cut.
    #[arg(long, value_name = "FILE", requires = "log_key")]
    pub since_checkpoint: Option<PathBuf>,
    /// The log's public key (`log.pub`) the checkpoints must be signed with.
    #[arg(long, value_name = "LOG_PUB", requires = "since_checkpoint")]
    pub log_key: Option<PathBuf>,
    /// With --since-checkpoint: check only the log's consistency, not also the chain
    /// (`Audit.Verify`), which is run by default.
    #[arg(long, requires = "since_checkpoint")]
    pub skip_chain: bool,
}

/// Arguments of `audit prove`.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct ProveArgs {
    /// The decision id (the audit entry's entry_id) to prove.
    pub decision_id: String,
    /// The log's public key (`log.pub`) the checkpoint must be signed with.
    #[arg(long, value_name = "LOG_PUB")]
    pub log_key: PathBuf,
    /// The decision's receipt (DSSE JSON): verify it too, and prove its entry_hash.
    #[arg(long, value_name = "FILE")]
    pub receipt: Option<PathBuf>,
}

/// `audit checkpoint`: fetch, optionally verify, and save or print the signed checkpoint.
pub async fn run_checkpoint(
    connection: &ConnectionArgs,
    args: &CheckpointArgs,
    output: &Output,
) -> Result<ExitStatus, CliError> {
    let key = args.log_key.as_deref().map(read_key).transpose()?;
    let mut client = audit_client(connection).await?;
    let answer = client
        .get_checkpoint(pb::GetCheckpointRequest {})
        .await?
        .into_inner();
    let verified = match &key {
        Some(key) => Some(open_current(&answer, key)?),
        None => None,
    };
    if let Some(out) = &args.out {
        std::fs::write(out, &answer.note)
            .map_err(|e| CliError::usage(format_args!("cannot write {}: {e}", out.display())))?;
    }
    let value = json!({
        "tree_size": answer.tree_size,
        "root_hash": hex::encode(&answer.root_hash),
        "origin": verified.as_ref().map(|c| c.origin.clone()),
        "verified": verified.is_some(),
        "out": args.out.as_ref().map(|p| p.display().to_string()),
        "note": answer.note,
    });
    match (&args.out, output.json) {
        (None, false) => print!("{}", answer.note),
        (Some(out), false) => println!(
            "checkpoint of {} entries, root sha256 {}, {} written to {}",
            answer.tree_size,
            hex::encode(&answer.root_hash),
            if verified.is_some() {
                "signature verified,"
            } else {
                "signature not checked (pass --log-key),"
            },
            out.display()
        ),
        (_, true) => println!("{value}"),
    }
    Ok(ExitStatus::Ok)
}

/// `audit verify --since-checkpoint FILE --log-key LOG_PUB`: the saved checkpoint must be a
/// prefix of the current one (RFC 6962 consistency proof), and the chain must verify.
pub async fn run_since(
    connection: &ConnectionArgs,
    args: &SinceArgs,
    output: &Output,
) -> Result<ExitStatus, CliError> {
    let (Some(path), Some(log_pub)) = (&args.since_checkpoint, &args.log_key) else {
        return Err(CliError::usage(
            "--since-checkpoint and --log-key go together",
        ));
    };
    let key = read_key(log_pub)?;
    let (note, saved) = transparency::read_checkpoint(path, &key).map_err(|e| match e {
        TransparencyError::Input(message) => CliError::usage(message),
        TransparencyError::Invalid(error) => CliError::Refused(format!(
            "{}: the saved checkpoint does not verify with {}: {error}",
            path.display(),
            log_pub.display()
        )),
    })?;
    let mut client = audit_client(connection).await?;
    let latest = prove_extends(&mut client, &key, path, &note, &saved).await?;
    let chain = match args.skip_chain {
        true => None,
        false => Some(client.verify(pb::VerifyAuditRequest {}).await?.into_inner()),
    };
    print_since(output, &saved, &latest, chain.as_ref());
    Ok(match chain {
        Some(report) if !report.ok => ExitStatus::Rejected,
        _ => ExitStatus::Ok,
    })
}

/// The service's current signed checkpoint, once a consistency proof shows that it extends
/// the `saved` one (the note read from `path`); else the error that says it was rewritten.
async fn prove_extends(
    client: &mut AuditClient<Channel>,
    key: &VerifierKey,
    path: &Path,
    note: &str,
    saved: &Checkpoint,
) -> Result<Checkpoint, CliError> {
    let answer = client
        .get_checkpoint(pb::GetCheckpointRequest {})
        .await?
        .into_inner();
    let latest = open_current(&answer, key)?;
    let rewritten = |detail: String| {
        CliError::Refused(format!(
            "the log was rewritten or truncated since checkpoint {} ({} entries, root sha256 {}): {detail}",
            path.display(),
            saved.tree_size,
            hex::encode(saved.root_hash)
        ))
    };
    if latest.tree_size < saved.tree_size {
        return Err(rewritten(format!(
            "the service's signed checkpoint has only {} entries",
            latest.tree_size
        )));
    }
    let proof = match saved.tree_size {
        0 => pb::ConsistencyProof { hashes: Vec::new() },
        old_size => {
            let request = pb::ProveConsistencyRequest {
                old_size,
                new_size: latest.tree_size,
            };
            client.prove_consistency(request).await?.into_inner()
        }
    };
    transparency::check_since_checkpoint(note, &answer, &proof, key).map_err(|e| {
        rewritten(format!(
            "no valid consistency proof to its {} entries, root sha256 {} ({e})",
            latest.tree_size,
            hex::encode(latest.root_hash)
        ))
    })?;
    Ok(latest)
}

/// `audit prove DECISION_ID`: the decision's entry is in the log of the signed checkpoint.
pub async fn run_prove(
    connection: &ConnectionArgs,
    args: &ProveArgs,
    output: &Output,
) -> Result<ExitStatus, CliError> {
    let key = read_key(&args.log_key)?;
    let statement = match &args.receipt {
        Some(path) => Some(read_receipt(path, &key)?),
        None => None,
    };
    let mut client = audit_client(connection).await?;
    let (checkpoint, proof, leaf) =
        prove_decision(&mut client, &key, &args.decision_id, statement.as_ref()).await?;
    let value = json!({
        "ok": true,
        "decision_id": args.decision_id,
        "leaf_index": proof.leaf_index,
        "tree_size": checkpoint.tree_size,
        "root_hash": hex::encode(checkpoint.root_hash),
        "entry_hash": leaf,
        "log_origin": checkpoint.origin,
        "receipt_checked": statement.is_some(),
    });
    let receipt = match statement {
        Some(_) => "receipt valid, its entry_hash proved",
        None => "no receipt checked (pass --receipt)",
    };
    let text = format!(
        "ok: decision {} is leaf {} of the signed tree of {} entries\n  root sha256: {}\n  entry_hash: {leaf}\n  {receipt}",
        args.decision_id,
        proof.leaf_index,
        checkpoint.tree_size,
        hex::encode(checkpoint.root_hash)
    );
    output.print(text, value);
    Ok(ExitStatus::Ok)
}

/// Fetches the signed checkpoint and the inclusion proof of `decision_id` at its size, and
/// verifies the path from the leaf (the receipt's entry_hash, else the proof's) to its root.
async fn prove_decision(
    client: &mut AuditClient<Channel>,
    key: &VerifierKey,
    decision_id: &str,
    statement: Option<&transparency::Statement>,
) -> Result<(Checkpoint, pb::InclusionProof, String), CliError> {
    let answer = client
        .get_checkpoint(pb::GetCheckpointRequest {})
        .await?
        .into_inner();
    let checkpoint = open_current(&answer, key)?;
    let request = pb::ProveInclusionRequest {
        seq: 0,
        tree_size: checkpoint.tree_size,
        decision_id: decision_id.to_owned(),
    };
    let proof = client
        .prove_inclusion(request)
        .await
        .map_err(|status| not_found_refused(&status, decision_id))?
        .into_inner();
    let not_proved = |detail: String| {
        CliError::Refused(format!(
            "decision {decision_id} is not proved in the log's signed checkpoint of {} entries: {detail}",
            checkpoint.tree_size
        ))
    };
    let leaf = match statement {
        Some(statement) => {
            transparency::check_receipt_against_proof(statement, decision_id, &proof)
                .map_err(|e| not_proved(e.to_string()))?
        }
        None => hex::encode(&proof.entry_hash),
    };
    let seq = proof.leaf_index.saturating_add(1);
    transparency::check_inclusion(seq, &leaf, &proof, &answer.note, key)
        .map_err(|e| not_proved(e.to_string()))?;
    Ok((checkpoint, proof, leaf))
}

/// Connects for the audit service.
async fn audit_client(connection: &ConnectionArgs) -> Result<AuditClient<Channel>, CliError> {
    Ok(AuditClient::new(connection.connect().await?.channel()))
}

fn read_key(path: &Path) -> Result<VerifierKey, CliError> {
    transparency::read_verifier_key(path).map_err(CliError::usage)
}

/// A receipt file, verified with `key`: unreadable or malformed is 2, not valid is 1.
fn read_receipt(path: &Path, key: &VerifierKey) -> Result<transparency::Statement, CliError> {
    let bytes = std::fs::read(path)
        .map_err(|e| CliError::usage(format_args!("cannot read {}: {e}", path.display())))?;
    transparency::check_receipt(&bytes, key, None).map_err(|e| match e {
        TransparencyError::Input(message) => CliError::usage(message),
        TransparencyError::Invalid(error) => {
            CliError::Refused(format!("receipt {} is not valid: {error}", path.display()))
        }
    })
}

/// The service's current checkpoint, which must verify with `key`.
fn open_current(answer: &pb::Checkpoint, key: &VerifierKey) -> Result<Checkpoint, CliError> {
    transparency::open_checkpoint(answer, key).map_err(|e| {
        CliError::Refused(format!(
            "the service's checkpoint does not verify with log key {key}: {e}"
        ))
    })
}

/// A decision the service has no entry for is a "no" (1), like any proof that fails.
fn not_found_refused(status: &tonic::Status, decision_id: &str) -> CliError {
    match (CliError::from_status(status), status.code()) {
        (CliError::Unavailable { .. }, tonic::Code::NotFound) => CliError::Refused(format!(
            "the log has no entry for decision {decision_id}: {}",
            status.message()
        )),
        (error, _) => error,
    }
}

fn print_since(
    output: &Output,
    saved: &Checkpoint,
    latest: &Checkpoint,
    chain: Option<&pb::VerifyAuditResponse>,
) {
    let value = json!({
        "ok": chain.is_none_or(|report| report.ok),
        "consistent": true,
        "saved_tree_size": saved.tree_size,
        "saved_root_hash": hex::encode(saved.root_hash),
        "tree_size": latest.tree_size,
        "root_hash": hex::encode(latest.root_hash),
        "chain": chain.map_or(Value::Null, verify_json),
    });
    let mut text = format!(
        "consistent: the log's {} entries (root sha256 {}) extend the saved checkpoint's {} (root sha256 {})",
        latest.tree_size,
        hex::encode(latest.root_hash),
        saved.tree_size,
        hex::encode(saved.root_hash)
    );
    match chain {
        Some(report) => text.push_str(&format!("\nchain {}", verify_line(report))),
        None => text.push_str("\nchain not verified (--skip-chain)"),
    }
    output.print(text, value);
}
