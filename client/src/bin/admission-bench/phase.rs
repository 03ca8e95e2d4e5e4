//! One measured phase: prepare its calls, warm up, then drive the load between two readings
//! of the server's (and the bench's own) CPU time.

use std::{sync::Arc, time::Duration};

use crate::{
    BenchError,
    cpu::{CpuSpent, CpuTicks},
    drive::{self, Driven},
    plan::{LoadShape, Plan},
    workload::{Calls, Connection, Workload},
};

/// What one phase measured.
#[derive(Debug)]
pub struct Phase {
    /// The workload.
    pub workload: Workload,
    /// Latencies, answers and elapsed time.
    pub driven: Driven,
    /// CPU time the server used during the measured calls, when its pid was given.
    pub server_cpu: Option<CpuSpent>,
    /// CPU time the bench itself used meanwhile (it shares the machine with the server).
    pub bench_cpu: Option<CpuSpent>,
}

/// Longest warmup of a phase.
const WARMUP_CAP: Duration = Duration::from_secs(30);

/// Runs `workload`: its warmup calls unmeasured, then its measured calls under the plan's load.
pub async fn run(
    plan: &Plan,
    connections: &[Connection],
    workload: Workload,
    run_id: &str,
) -> Result<Phase, BenchError> {
    let (warmup, measured) = (plan.load.warmup, plan.load.calls_per_phase());
    // Signing a large pool takes every core for a while; nothing else runs meanwhile.
    let calls =
        tokio::task::block_in_place(|| Calls::prepare(workload, plan, run_id, warmup + measured))?;
    let calls = Arc::new(calls);
    if warmup > 0 {
        let workers = connections.len();
        drive::closed_loop(connections, calls.clone(), 0..warmup, workers, WARMUP_CAP).await?;
    }
    let server_before = plan.server_pid.map(CpuTicks::of_process).transpose()?;
    let bench_before = CpuTicks::of_self().ok();
    let indices = warmup..warmup + measured;
    let duration = plan.load.duration;
    let driven = match plan.load.shape {
        LoadShape::Closed { concurrency } => {
            drive::closed_loop(connections, calls, indices, concurrency, duration).await?
        }
        LoadShape::Open {
            rate,
            max_in_flight,
        } => drive::open_loop(connections, calls, indices, rate, max_in_flight, duration).await?,
    };
    let server_cpu = match (plan.server_pid, server_before) {
        (Some(pid), Some(before)) => Some(CpuTicks::of_process(pid)?.since(before)),
        _ => None,
    };
    let bench_cpu =
        bench_before.and_then(|before| CpuTicks::of_self().ok().map(|after| after.since(before)));
    Ok(Phase {
        workload,
        driven,
        server_cpu,
        bench_cpu,
    })
}
