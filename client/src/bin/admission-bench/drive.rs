//! The load shapes: a closed loop of workers, or an open loop sending on a fixed schedule.
//! Both spread calls over the same connections, round robin.

use std::{
    ops::Range,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;
use tokio::{sync::Semaphore, task::JoinSet};

use crate::{
    BenchError,
    tally::{self, Tally},
    workload::{Calls, Connection},
};

/// Resolution of the runtime's timer.
const TIMER_TICK: Duration = Duration::from_millis(1);

/// What one run of a load shape measured.
#[derive(Debug)]
pub struct Driven {
    /// Latencies and answers.
    pub tally: Tally,
    /// From the first call sent to the last one answered.
    pub elapsed: Duration,
    /// Why it stopped sending.
    pub stopped_by: StopReason,
    /// Open loop: how late each call was sent after it was due (timer granularity, the
    /// in-flight cap, the bench waiting for a core), in nanoseconds. Part of every latency.
    pub send_lag: Option<Histogram<u64>>,
}

/// Why a phase stopped sending calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// Its duration was up.
    Duration,
    /// It made its last allowed call.
    MaxCalls,
}

// === impl StopReason ===

impl StopReason {
    /// The name in reports.
    pub fn name(self) -> &'static str {
        match self {
            StopReason::Duration => "duration",
            StopReason::MaxCalls => "max_calls",
        }
    }
}

/// Calls `indices` of `calls` from `concurrency` workers, each sending its next call when its
/// last one is answered, until the indices or `duration` run out. Latency is send to answer.
pub async fn closed_loop(
    connections: &[Connection],
    calls: Arc<Calls>,
    indices: Range<u64>,
    concurrency: usize,
    duration: Duration,
) -> Result<Driven, BenchError> {
    let tally = Arc::new(Mutex::new(Tally::new()));
    let next = Arc::new(AtomicU64::new(indices.start));
    let started = Instant::now();
    let deadline = started + duration;
    let mut workers = JoinSet::new();
    for connection in connections.iter().cycle().take(concurrency) {
        let (connection, calls) = (connection.clone(), calls.clone());
        let (next, tally, end) = (next.clone(), tally.clone(), indices.end);
        workers.spawn(async move {
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= end || Instant::now() >= deadline {
                    return;
                }
                let call = calls.call(index);
                let sent = Instant::now();
                let outcome = call.send(&connection).await;
                let latency = sent.elapsed();
                lock(&tally).record(latency, outcome);
            }
        });
    }
    while let Some(joined) = workers.join_next().await {
        joined?;
    }
    let elapsed = started.elapsed();
    let stopped_by = if next.load(Ordering::Relaxed) >= indices.end {
        StopReason::MaxCalls
    } else {
        StopReason::Duration
    };
    let tally = lock(&tally).clone();
    Ok(Driven {
        tally,
        elapsed,
        stopped_by,
        send_lag: None,
    })
}

/// Sends calls `indices` of `calls` at `rate` per second on a fixed schedule, whatever the
/// answers, with at most `max_in_flight` outstanding, until the indices or `duration` run out.
///
/// Latency runs from when a call was due, not when it was sent: a call held back by the
/// in-flight cap or a late timer counts its wait (no coordinated omission). Calls may leave up
/// to one timer tick early; those count from when they were sent.
pub async fn open_loop(
    connections: &[Connection],
    calls: Arc<Calls>,
    indices: Range<u64>,
    rate: f64,
    max_in_flight: usize,
    duration: Duration,
) -> Result<Driven, BenchError> {
    let permits = Arc::new(Semaphore::new(max_in_flight));
    let mut tally = Tally::new();
    let mut send_lag = tally::latency_histogram();
    let mut in_flight = JoinSet::new();
    let started = Instant::now();
    let deadline = started + duration;
    let mut connection = connections.iter().cycle();
    let mut sent = 0u64;
    let stopped_by = loop {
        let due = started + Duration::from_secs_f64(sent as f64 / rate);
        if due >= deadline {
            break StopReason::Duration;
        }
        let index = indices.start + sent;
        if index >= indices.end {
            break StopReason::MaxCalls;
        }
        // The timer fires on the first millisecond tick at or after its deadline; aiming one
        // tick early puts sends near their due time instead of up to a tick late.
        let wake = due.checked_sub(TIMER_TICK).unwrap_or(due);
        tokio::time::sleep_until(wake.into()).await;
        // The semaphore is never closed, so acquiring only waits.
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break StopReason::Duration;
        };
        let Some(connection) = connection.next().cloned() else {
            return Err(BenchError::usage("no connection to send on"));
        };
        let call = calls.call(index);
        let now = Instant::now();
        send_lag.saturating_record(tally::nanos(now.saturating_duration_since(due)));
        // Late: latency counts from the due time. Early (by under a tick): from the send.
        let origin = now.min(due);
        in_flight.spawn(async move {
            let outcome = call.send(&connection).await;
            drop(permit);
            (origin.elapsed(), outcome)
        });
        sent += 1;
        while let Some(done) = in_flight.try_join_next() {
            let (latency, outcome) = done?;
            tally.record(latency, outcome);
        }
    };
    while let Some(done) = in_flight.join_next().await {
        let (latency, outcome) = done?;
        tally.record(latency, outcome);
    }
    Ok(Driven {
        tally,
        elapsed: started.elapsed(),
        stopped_by,
        send_lag: Some(send_lag),
    })
}

/// The tally, even if a worker panicked while holding it (its counts so far are still right).
fn lock(tally: &Mutex<Tally>) -> std::sync::MutexGuard<'_, Tally> {
    tally.lock().unwrap_or_else(PoisonError::into_inner)
}
