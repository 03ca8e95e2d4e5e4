//! CPU time of a process (user + system, all its threads) from `/proc/<pid>/stat`, read
//! before and after each phase.

use std::{fs, time::Duration};

use crate::BenchError;

/// Cumulative CPU time of a process, in clock ticks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuTicks(pub u64);

/// CPU time used between two readings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CpuSpent {
    /// Clock ticks (`utime + stime` difference).
    pub ticks: u64,
    /// The same in time.
    pub time: Duration,
}

// === impl CpuTicks ===

impl CpuTicks {
    /// Reads `utime + stime` of process `pid`.
    pub fn of_process(pid: u32) -> Result<Self, BenchError> {
        let text = fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|error| {
            BenchError::ProcStat {
                pid,
                detail: error.to_string(),
            }
        })?;
        parse_stat(&text).ok_or_else(|| BenchError::ProcStat {
            pid,
            detail: "no utime and stime fields".to_owned(),
        })
    }

    /// Reads this process's own CPU time.
    pub fn of_self() -> Result<Self, BenchError> {
        Self::of_process(std::process::id())
    }

    /// What was used since `earlier`.
    pub fn since(self, earlier: CpuTicks) -> CpuSpent {
        let ticks = self.0.saturating_sub(earlier.0);
        CpuSpent {
            ticks,
            time: Duration::from_secs_f64(ticks as f64 / ticks_per_second() as f64),
        }
    }
}

/// The kernel's clock tick rate (`sysconf(_SC_CLK_TCK)`), the unit of `/proc/<pid>/stat` times.
pub fn ticks_per_second() -> u64 {
    rustix::param::clock_ticks_per_second().max(1)
}

/// `utime + stime` (fields 14 and 15) of a `/proc/<pid>/stat` line.
fn parse_stat(text: &str) -> Option<CpuTicks> {
    // Field 2, the command name, is in parentheses and may itself hold spaces or ')': the
    // fields after it start after the last ')'.
    let after_name = &text[text.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace();
    // Fields 3 (state) to 13 come first.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(CpuTicks(utime + stime))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_utime_and_stime_after_an_awkward_command_name() {
        let line = "4242 (admission) srv) S 1 4242 4242 0 -1 4194560 9000 0 0 0 \
                    1234 56 0 0 20 0 9 0 777 123456789 4321 18446744073709551615\n";
        assert_eq!(parse_stat(line), Some(CpuTicks(1290)));
        assert_eq!(parse_stat("4242 (truncated) S 1 2"), None);
    }

    #[test]
    fn reads_its_own_cpu_time() {
        let before = CpuTicks::of_self().unwrap();
        let mut x = 0u64;
        let started = std::time::Instant::now();
        while started.elapsed() < Duration::from_millis(60) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let spent = CpuTicks::of_self().unwrap().since(before);
        assert!(spent.ticks > 0, "{spent:?}");
        assert!(CpuTicks::of_process(u32::MAX).is_err());
    }
}
