//! Latencies and answers of one phase: an HDR histogram and counts by outcome.

use std::{collections::BTreeMap, time::Duration};

use hdrhistogram::Histogram;

use crate::workload::Outcome;

/// Highest latency the histogram tells apart, in nanoseconds (one hour); longer ones are
/// recorded as this.
const HIGHEST_NANOS: u64 = 3_600_000_000_000;
/// Significant decimal digits kept: 0.1% relative error.
const SIGNIFICANT_DIGITS: u8 = 3;

/// Latencies (nanoseconds), of all calls and of each answer.
#[derive(Clone, Debug)]
pub struct Tally {
    latency: Histogram<u64>,
    outcomes: BTreeMap<Outcome, Histogram<u64>>,
}

/// Latency percentiles of a histogram.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Percentiles {
    /// Median.
    pub p50: Duration,
    /// 90th percentile.
    pub p90: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Largest.
    pub max: Duration,
}

// === impl Tally ===

impl Tally {
    /// An empty tally.
    pub fn new() -> Self {
        Self {
            latency: latency_histogram(),
            outcomes: BTreeMap::new(),
        }
    }

    /// Records one answered call.
    pub fn record(&mut self, latency: Duration, outcome: Outcome) {
        self.latency.saturating_record(nanos(latency));
        let by_answer = self
            .outcomes
            .entry(outcome)
            .or_insert_with(latency_histogram);
        by_answer.saturating_record(nanos(latency));
    }

    /// Calls recorded.
    pub fn calls(&self) -> u64 {
        self.latency.len()
    }

    /// Calls answered OK.
    pub fn ok(&self) -> u64 {
        self.outcomes.get(&Outcome::OK).map_or(0, Histogram::len)
    }

    /// Each answer with its count and latency percentiles, in code then reason order.
    pub fn outcomes(&self) -> impl Iterator<Item = (&Outcome, u64, Percentiles)> {
        let answers = self.outcomes.iter();
        answers.map(|(outcome, latency)| (outcome, latency.len(), Percentiles::of(latency)))
    }

    /// The latency percentiles; all zero for no calls.
    pub fn percentiles(&self) -> Percentiles {
        Percentiles::of(&self.latency)
    }
}

impl Default for Tally {
    fn default() -> Self {
        Self::new()
    }
}

// === impl Percentiles ===

impl Percentiles {
    /// The percentiles of `histogram` (nanoseconds); all zero when it is empty.
    pub fn of(histogram: &Histogram<u64>) -> Self {
        if histogram.is_empty() {
            return Self::default();
        }
        let at = |quantile| Duration::from_nanos(histogram.value_at_quantile(quantile));
        Self {
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            max: Duration::from_nanos(histogram.max()),
        }
    }
}

/// An empty nanosecond histogram from 1 ns to an hour at 3 significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    // The bounds are constants the constructor accepts (low >= 1, high >= 2 * low, at most 5
    // significant digits), so it cannot fail.
    #[allow(clippy::expect_used)]
    Histogram::new_with_bounds(1, HIGHEST_NANOS, SIGNIFICANT_DIGITS)
        .expect("constant histogram bounds are valid")
}

/// Whole nanoseconds, saturating.
pub fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn counts_outcomes_and_reports_percentiles() {
        let mut tally = Tally::new();
        for micros in 1..=100 {
            tally.record(Duration::from_micros(micros), Outcome::OK);
        }
        let consumed = Outcome {
            code: "FAILED_PRECONDITION",
            reason: Some("APPROVAL_CONSUMED".to_owned()),
        };
        tally.record(Duration::from_millis(5), consumed.clone());
        assert_eq!(tally.calls(), 101);
        assert_eq!(tally.ok(), 100);
        let answers: Vec<_> = tally.outcomes().collect();
        assert_eq!(answers.len(), 2);
        // In code order: FAILED_PRECONDITION before OK.
        assert_eq!((answers[0].0, answers[0].1), (&consumed, 1));
        assert_eq!((answers[1].0, answers[1].1), (&Outcome::OK, 100));
        let refused = answers[0].2;
        assert!(refused.p50.abs_diff(Duration::from_millis(5)) < Duration::from_micros(10));
        let p = tally.percentiles();
        let close =
            |d: Duration, micros: u64| d.abs_diff(Duration::from_micros(micros)).as_nanos() < 200;
        assert!(close(p.p50, 51), "{p:?}");
        assert!(close(p.p90, 91), "{p:?}");
        assert!(p.max >= Duration::from_micros(4995), "{p:?}");
    }

    #[test]
    fn an_empty_tally_reports_zeros() {
        assert_eq!(Tally::new().percentiles(), Percentiles::default());
    }
}
