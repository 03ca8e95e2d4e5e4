//! The decision instruments the gRPC adapter records on every admission answer.

use std::{sync::Arc, time::Duration};

use opentelemetry::{
    KeyValue, global,
    metrics::{Counter, Histogram},
};
use tracing::Span;

use super::prometheus::Metrics;
use crate::SERVICE_NAME;

/// Upper bounds (seconds) of the decision-duration buckets: 1 ms to 10 s.
const DURATION_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The decision instruments: `admission.decisions` and `admission.decision.duration`.
///
/// Backed by the global meter, so they are no-ops unless OTLP metrics export is on; also
/// recorded on the Prometheus metrics the operations listener serves.
#[derive(Clone, Debug)]
pub struct DecisionMetrics {
    decisions: Counter<u64>,
    duration: Histogram<f64>,
    exposition: Arc<Metrics>,
}

// === impl DecisionMetrics ===

impl DecisionMetrics {
    /// The instruments on the global meter as it is now (create them once telemetry is
    /// initialised), recording on `exposition` too.
    pub fn new(exposition: Arc<Metrics>) -> Self {
        let meter = global::meter(SERVICE_NAME);
        Self {
            decisions: meter
                .u64_counter("admission.decisions")
                .with_description("Admission decisions, by action, outcome and reason.")
                .build(),
            duration: meter
                .f64_histogram("admission.decision.duration")
                .with_unit("s")
                .with_description("Time taken to decide an admission request.")
                .with_boundaries(DURATION_BUCKETS.to_vec())
                .build(),
            exposition,
        }
    }

    /// Records one decision on the metrics and on the RPC's `span` (`outcome`, `reason`).
    pub fn record(
        &self,
        span: &Span,
        action: &'static str,
        outcome: &'static str,
        reason: &str,
        elapsed: Duration,
    ) {
        span.record("outcome", outcome);
        span.record("reason", reason);
        let attributes = [
            KeyValue::new("action", action),
            KeyValue::new("outcome", outcome),
            KeyValue::new("reason", reason.to_owned()),
        ];
        self.decisions.add(1, &attributes);
        self.duration.record(elapsed.as_secs_f64(), &attributes);
        self.exposition
            .record_decision(action, outcome, reason, elapsed);
    }
}
