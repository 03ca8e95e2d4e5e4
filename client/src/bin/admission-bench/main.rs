//! `admission-bench`: a black-box benchmark of a running admission server.
//!
//! A separate process opens N mTLS connections to a server on loopback and runs one phase per
//! workload over them (`health`, the baseline, then `admit-dev`, `admit-prod`, `preview`), as
//! a closed loop at a concurrency or an open loop at a rate, each phase bounded by a duration
//! and a call count. It reports calls/s, latency percentiles, answers by gRPC code and
//! ErrorInfo reason, the server's CPU time per call (`/proc/<pid>/stat`, read before and after
//! each phase), and the write+fsync latency of the server's data directory.
#![forbid(unsafe_code)]

mod cpu;
mod drive;
mod error;
mod fsync;
mod phase;
mod plan;
mod report;
mod tally;
mod workload;

use std::{process::ExitCode, time::SystemTime};

use admission_client::AdmissionClient;
use admission_contract::credential::format_time;
use clap::Parser;

use crate::{
    error::BenchError,
    fsync::FsyncProbe,
    plan::{BenchArgs, ConnectionPlan, Plan},
    report::Report,
    workload::Connection,
};

#[tokio::main]
async fn main() -> ExitCode {
    let args = BenchArgs::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("admission-bench: {error}");
            error.exit_code()
        }
    }
}

/// Validates the arguments, probes the disk, runs every phase and prints the report.
async fn run(args: BenchArgs) -> Result<(), BenchError> {
    let plan = Plan::try_from(args)?;
    let started = SystemTime::now();
    let run_id = run_id(started);
    let connections = connect(&plan.connection).await?;
    let probe = probe_disk(&plan).await?;
    let mut phases = Vec::with_capacity(plan.workloads.len());
    for &workload in &plan.workloads {
        if !plan.json {
            eprintln!("admission-bench: running {}", workload.name());
        }
        phases.push(phase::run(&plan, &connections, workload, &run_id).await?);
    }
    let report = Report::new(&plan, format_time(started).ok(), probe.as_ref(), &phases);
    if plan.json {
        // A report of plain numbers and strings always serializes.
        let json = serde_json::to_string_pretty(&report).unwrap_or_default();
        println!("{json}");
    } else {
        print!("{}", report.text());
    }
    Ok(())
}

/// Opens each connection now, so a TLS or identity problem stops the run before any phase.
async fn connect(plan: &ConnectionPlan) -> Result<Vec<Connection>, BenchError> {
    let mut connections = Vec::with_capacity(plan.connections);
    for _ in 0..plan.connections {
        let client = AdmissionClient::builder()
            .endpoint(plan.endpoint.clone())
            .ca_file(&plan.ca)
            .identity_files(&plan.cert, &plan.key)
            .connect()
            .await?;
        connections.push(Connection::new(client.channel()));
    }
    Ok(connections)
}

/// The fsync probe, before any load so the disk is otherwise quiet; none with 0 samples.
async fn probe_disk(plan: &Plan) -> Result<Option<FsyncProbe>, BenchError> {
    if plan.fsync.samples == 0 {
        return Ok(None);
    }
    let (dir, samples) = (plan.fsync.dir.clone(), plan.fsync.samples);
    let probe = tokio::task::spawn_blocking(move || fsync::probe(&dir, samples)).await??;
    Ok(Some(probe))
}

/// A prefix unique to this run for request and approval ids, so runs against the same audit
/// trail never collide: `bench-<unix ms, hex>-<pid>`.
fn run_id(started: SystemTime) -> String {
    let millis = started
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!("bench-{millis:x}-{}", std::process::id())
}
