//! The report: one JSON object (`--json`) or tables, with every phase also shown as ratios to
//! the `health` phase of the same run.

use std::{path::Path, time::Duration};

use serde::Serialize;

use crate::{
    cpu::{self, CpuSpent},
    fsync::{self, FsyncProbe},
    phase::Phase,
    plan::{CredentialMode, LoadShape, Plan},
    tally::Percentiles,
    workload::Workload,
};

/// Everything one run measured.
#[derive(Debug, Serialize)]
pub struct Report {
    /// Always `admission-bench`.
    pub bench: &'static str,
    /// When the run started, RFC 3339 UTC.
    pub started_at: Option<String>,
    /// The service URL.
    pub endpoint: String,
    /// mTLS connections shared by every phase.
    pub connections: usize,
    /// The load shape and bounds.
    pub load: LoadReport,
    /// `fresh` or `reuse`.
    pub credentials: &'static str,
    /// The machine the run was on.
    pub machine: MachineReport,
    /// The server process whose CPU time was read.
    pub server_pid: Option<u32>,
    /// The disk probe, unless skipped.
    pub fsync: Option<FsyncReport>,
    /// The phases, in the order run.
    pub phases: Vec<PhaseReport>,
}

/// The load shape and its bounds.
#[derive(Debug, Serialize)]
pub struct LoadReport {
    /// `closed` or `open`.
    pub shape: &'static str,
    /// Closed loop: workers.
    pub concurrency: Option<usize>,
    /// Open loop: calls per second scheduled.
    pub rate: Option<f64>,
    /// Open loop: most calls in flight.
    pub max_in_flight: Option<usize>,
    /// Longest phase, seconds.
    pub duration_s: f64,
    /// Most calls per phase.
    pub max_calls: u64,
    /// Unmeasured calls before each phase.
    pub warmup_calls: u64,
}

/// Cores and clock tick of the machine.
#[derive(Debug, Serialize)]
pub struct MachineReport {
    /// Cores this process may run on (shared with the server when it runs here too).
    pub cores: usize,
    /// Unit of `/proc/<pid>/stat` CPU times, per second.
    pub clock_ticks_per_s: u64,
}

/// Write+fsync latency of the data directory.
#[derive(Debug, Serialize)]
pub struct FsyncReport {
    /// The directory probed.
    pub dir: String,
    /// Bytes appended before each fsync.
    pub block_bytes: usize,
    /// Samples taken.
    pub samples: u64,
    /// Latency percentiles, microseconds.
    pub latency_us: LatencyReport,
}

/// One phase.
#[derive(Debug, Serialize)]
pub struct PhaseReport {
    /// Workload name.
    pub workload: &'static str,
    /// The RPC called.
    pub rpc: &'static str,
    /// Calls answered (or timed out).
    pub calls: u64,
    /// Calls answered OK.
    pub ok: u64,
    /// From first call sent to last answered, seconds.
    pub elapsed_s: f64,
    /// Calls per second.
    pub calls_per_s: f64,
    /// `duration` or `max_calls`.
    pub stopped_by: &'static str,
    /// Latency percentiles, microseconds (open loop: from when each call was due).
    pub latency_us: LatencyReport,
    /// Open loop: how late calls were sent after they were due, microseconds; a large lag
    /// means the bench, not the server, was behind.
    pub send_lag_us: Option<LatencyReport>,
    /// Answers by code and reason.
    pub outcomes: Vec<OutcomeCount>,
    /// Server CPU time over the phase, when its pid was given.
    pub server_cpu: Option<CpuReport>,
    /// The bench's own CPU time over the phase.
    pub bench_cpu: Option<CpuReport>,
    /// This phase divided by the health phase of the same run.
    pub vs_health: Option<Ratios>,
}

/// Latency percentiles in microseconds.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct LatencyReport {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

/// How many calls got one answer.
#[derive(Debug, Serialize)]
pub struct OutcomeCount {
    /// gRPC code name.
    pub code: &'static str,
    /// ErrorInfo reason, if any.
    pub reason: Option<String>,
    /// Calls.
    pub count: u64,
    /// Their latency percentiles, microseconds.
    pub latency_us: LatencyReport,
}

/// CPU time spent over a phase.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct CpuReport {
    /// Seconds of CPU (user + system).
    pub seconds: f64,
    /// The same in clock ticks, the resolution of the reading.
    pub ticks: u64,
    /// Microseconds of CPU per call.
    pub us_per_call: f64,
}

/// A phase relative to the health baseline.
#[derive(Debug, Serialize)]
pub struct Ratios {
    /// Calls per second ÷ health's.
    pub calls_per_s: f64,
    /// p50 latency ÷ health's.
    pub p50: f64,
    /// p99 latency ÷ health's.
    pub p99: f64,
    /// Server CPU per call ÷ health's, when both were read.
    pub server_cpu_per_call: Option<f64>,
}

// === impl Report ===

impl Report {
    /// Builds the report of a run that started at `started_at`.
    pub fn new(
        plan: &Plan,
        started_at: Option<String>,
        probe: Option<&FsyncProbe>,
        phases: &[Phase],
    ) -> Self {
        let mut reports: Vec<PhaseReport> = phases.iter().map(PhaseReport::new).collect();
        let baseline = reports
            .iter()
            .position(|phase| phase.workload == Workload::Health.name() && phase.calls > 0);
        if let Some(baseline) = baseline {
            let ratios: Vec<_> = reports
                .iter()
                .map(|phase| Ratios::new(phase, &reports[baseline]))
                .collect();
            for (phase, ratios) in reports.iter_mut().zip(ratios) {
                phase.vs_health = Some(ratios);
            }
        }
        Self {
            bench: "admission-bench",
            started_at,
            endpoint: plan.connection.endpoint.clone(),
            connections: plan.connection.connections,
            load: LoadReport::new(plan),
            credentials: match plan.credentials {
                CredentialMode::Fresh => "fresh",
                CredentialMode::Reuse => "reuse",
            },
            machine: MachineReport {
                cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
                clock_ticks_per_s: cpu::ticks_per_second(),
            },
            server_pid: plan.server_pid,
            fsync: probe.map(FsyncReport::new),
            phases: reports,
        }
    }

    /// The report as human-readable tables.
    pub fn text(&self) -> String {
        let mut out = self.header();
        out.push('\n');
        out.push_str(&self.phase_table());
        out.push_str("\nanswers (calls, p50 / p99 ms):\n");
        for phase in &self.phases {
            let answers: Vec<String> = phase.outcomes.iter().map(OutcomeCount::text).collect();
            out.push_str(&format!(
                "  {:<11} {}\n",
                phase.workload,
                answers.join(", ")
            ));
        }
        let lags: Vec<_> = self
            .phases
            .iter()
            .filter_map(|phase| Some((phase.workload, phase.send_lag_us?)))
            .collect();
        if !lags.is_empty() {
            out.push_str("\nsend lag (after the call was due; part of its latency):\n");
        }
        for (workload, lag) in lags {
            out.push_str(&format!(
                "  {workload:<11} p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms\n",
                lag.p50 / 1e3,
                lag.p99 / 1e3,
                lag.max / 1e3
            ));
        }
        out
    }

    fn header(&self) -> String {
        let load = &self.load;
        let shape = match (load.concurrency, load.rate) {
            (Some(concurrency), _) => format!("closed loop at concurrency {concurrency}"),
            (None, Some(rate)) => format!(
                "open loop at {rate} calls/s (at most {} in flight)",
                load.max_in_flight.unwrap_or_default()
            ),
            (None, None) => "no load".to_owned(),
        };
        let mut out = format!(
            "admission-bench {} against {}: {} connections, {shape}; each phase at most {} or \
             {} calls after {} warmup calls; {} credentials\n",
            self.started_at.as_deref().unwrap_or("-"),
            self.endpoint,
            self.connections,
            humantime::format_duration(Duration::from_secs_f64(load.duration_s)),
            load.max_calls,
            load.warmup_calls,
            self.credentials,
        );
        out.push_str(&format!(
            "machine: {} cores; CPU time from /proc/<pid>/stat in ticks of 1/{} s{}\n",
            self.machine.cores,
            self.machine.clock_ticks_per_s,
            match self.server_pid {
                Some(pid) => format!("; server pid {pid}"),
                None => "; no --server-pid, so no server CPU".to_owned(),
            }
        ));
        if let Some(probe) = &self.fsync {
            let l = probe.latency_us;
            out.push_str(&format!(
                "disk: {} B append + fsync in {}, {} samples: p50 {:.3} ms, p90 {:.3} ms, \
                 p99 {:.3} ms, max {:.3} ms\n",
                probe.block_bytes,
                probe.dir,
                probe.samples,
                l.p50 / 1e3,
                l.p90 / 1e3,
                l.p99 / 1e3,
                l.max / 1e3
            ));
        }
        out
    }

    fn phase_table(&self) -> String {
        let mut out = format!(
            "{:<11} {:>7} {:>9} {:>8} {:>8} {:>8} {:>8} {:>11} {:>11} {:>9} {:>9} {:>9}  {}\n",
            "workload",
            "calls",
            "calls/s",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "max ms",
            "server µs",
            "bench µs",
            "x thr",
            "x p50",
            "x cpu",
            "stopped by"
        );
        for phase in &self.phases {
            out.push_str(&phase.row());
        }
        out.push_str(
            "(server µs, bench µs: CPU time per call; x thr, x p50, x cpu: ÷ the health phase)\n",
        );
        out
    }
}

// === impl LoadReport ===

impl LoadReport {
    fn new(plan: &Plan) -> Self {
        let (shape, concurrency, rate, max_in_flight) = match plan.load.shape {
            LoadShape::Closed { concurrency } => ("closed", Some(concurrency), None, None),
            LoadShape::Open {
                rate,
                max_in_flight,
            } => ("open", None, Some(rate), Some(max_in_flight)),
        };
        Self {
            shape,
            concurrency,
            rate,
            max_in_flight,
            duration_s: plan.load.duration.as_secs_f64(),
            max_calls: plan.load.max_calls,
            warmup_calls: plan.load.warmup,
        }
    }
}

// === impl FsyncReport ===

impl FsyncReport {
    fn new(probe: &FsyncProbe) -> Self {
        Self {
            dir: display(&probe.dir),
            block_bytes: fsync::BLOCK_BYTES,
            samples: probe.latency.len(),
            latency_us: LatencyReport::from(Percentiles::of(&probe.latency)),
        }
    }
}

// === impl PhaseReport ===

impl PhaseReport {
    fn new(phase: &Phase) -> Self {
        let tally = &phase.driven.tally;
        let calls = tally.calls();
        let cpu = |spent: Option<CpuSpent>| spent.map(|spent| CpuReport::new(spent, calls));
        Self {
            workload: phase.workload.name(),
            rpc: phase.workload.rpc(),
            calls,
            ok: tally.ok(),
            elapsed_s: phase.driven.elapsed.as_secs_f64(),
            calls_per_s: per_second(calls, phase.driven.elapsed),
            stopped_by: phase.driven.stopped_by.name(),
            latency_us: LatencyReport::from(tally.percentiles()),
            send_lag_us: phase
                .driven
                .send_lag
                .as_ref()
                .map(|lag| LatencyReport::from(Percentiles::of(lag))),
            outcomes: tally
                .outcomes()
                .map(|(outcome, count, latency)| OutcomeCount {
                    code: outcome.code,
                    reason: outcome.reason.clone(),
                    count,
                    latency_us: LatencyReport::from(latency),
                })
                .collect(),
            server_cpu: cpu(phase.server_cpu),
            bench_cpu: cpu(phase.bench_cpu),
            vs_health: None,
        }
    }

    fn row(&self) -> String {
        let l = self.latency_us;
        let cpu = |cpu: Option<CpuReport>| {
            cpu.map_or_else(|| "-".to_owned(), |c| format!("{:.0}", c.us_per_call))
        };
        let ratio = |pick: fn(&Ratios) -> Option<f64>| {
            self.vs_health
                .as_ref()
                .and_then(pick)
                .map_or_else(|| "-".to_owned(), |r| format!("{r:.3}"))
        };
        format!(
            "{:<11} {:>7} {:>9.0} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>11} {:>11} {:>9} {:>9} {:>9}  {}\n",
            self.workload,
            self.calls,
            self.calls_per_s,
            l.p50 / 1e3,
            l.p90 / 1e3,
            l.p99 / 1e3,
            l.max / 1e3,
            cpu(self.server_cpu),
            cpu(self.bench_cpu),
            ratio(|r| Some(r.calls_per_s)),
            ratio(|r| Some(r.p50)),
            ratio(|r| r.server_cpu_per_call),
            self.stopped_by
        )
    }
}

// === impl OutcomeCount ===

impl OutcomeCount {
    fn text(&self) -> String {
        let l = self.latency_us;
        let answer = match &self.reason {
            Some(reason) => format!("{} {reason}", self.code),
            None => self.code.to_owned(),
        };
        format!(
            "{answer} {} ({:.3} / {:.3})",
            self.count,
            l.p50 / 1e3,
            l.p99 / 1e3
        )
    }
}

// === impl LatencyReport ===

impl From<Percentiles> for LatencyReport {
    fn from(p: Percentiles) -> Self {
        let micros = |d: Duration| d.as_secs_f64() * 1e6;
        Self {
            p50: micros(p.p50),
            p90: micros(p.p90),
            p99: micros(p.p99),
            max: micros(p.max),
        }
    }
}

// === impl CpuReport ===

impl CpuReport {
    fn new(spent: CpuSpent, calls: u64) -> Self {
        let seconds = spent.time.as_secs_f64();
        Self {
            seconds,
            ticks: spent.ticks,
            us_per_call: if calls == 0 {
                0.0
            } else {
                seconds * 1e6 / calls as f64
            },
        }
    }
}

// === impl Ratios ===

impl Ratios {
    fn new(phase: &PhaseReport, health: &PhaseReport) -> Self {
        let server_cpu_per_call = match (phase.server_cpu, health.server_cpu) {
            (Some(phase), Some(health)) => ratio(phase.us_per_call, health.us_per_call),
            _ => None,
        };
        Self {
            calls_per_s: ratio(phase.calls_per_s, health.calls_per_s).unwrap_or(0.0),
            p50: ratio(phase.latency_us.p50, health.latency_us.p50).unwrap_or(0.0),
            p99: ratio(phase.latency_us.p99, health.latency_us.p99).unwrap_or(0.0),
            server_cpu_per_call,
        }
    }
}

/// `numerator / denominator`, none when the denominator is zero.
fn ratio(numerator: f64, denominator: f64) -> Option<f64> {
    (denominator > 0.0).then(|| numerator / denominator)
}

fn per_second(calls: u64, elapsed: Duration) -> f64 {
    ratio(calls as f64, elapsed.as_secs_f64()).unwrap_or(0.0)
}

fn display(path: &Path) -> String {
    std::path::absolute(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .display()
        .to_string()
}
