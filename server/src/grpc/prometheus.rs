//! The service's metrics in Prometheus form, served by the operations listener's `/metrics`.
//!
//! The gRPC adapters record decisions and approval transitions, the audit store reports each
//! group commit through [`CommitObserver`], and the transport counters (refused handshakes,
//! calls in flight) are copied in from their owners when a scrape asks.

use std::{fmt, sync::atomic::Ordering, time::Duration};

use prometheus_client::{
    encoding::{EncodeLabelSet, text},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::{Registry, Unit},
};

use crate::store::CommitObserver;

/// Upper bounds (seconds) of the latency buckets: 1 ms to 10 s.
const LATENCY_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Upper bounds of the audit batch-size buckets: 1 to 128 appends per transaction.
const BATCH_BUCKETS: [f64; 8] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0];

/// The media type of [`Metrics::encode`]'s output (OpenMetrics text, which Prometheus reads).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every metric the service exposes, and the registry that encodes them.
pub struct Metrics {
    registry: Registry,
    decisions: Family<DecisionLabels, Counter>,
    decision_duration: Family<ActionLabels, Histogram>,
    audit_commit_duration: Histogram,
    audit_batch_size: Histogram,
    approval_transitions: Family<StateLabels, Counter>,
    reloads: Family<ResultLabels, Counter>,
    refused_handshakes: Family<ReasonLabels, Counter>,
    calls_in_flight: Gauge,
    checkpoint_write_failures: Counter,
}

/// Refused TLS handshakes since start, by why they were refused.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RefusedHandshakes {
    /// The handshake failed, timed out, or the certificate named no identity.
    pub failed: u64,
    /// Dropped to make room for a newer handshake.
    pub shed: u64,
    /// Its source address had too many handshakes pending.
    pub per_address: u64,
    /// Its caller identity had too many connections open.
    pub per_identity: u64,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    action: &'static str,
    outcome: &'static str,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    action: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

// === impl Metrics ===

impl Metrics {
    /// Zeroed metrics, registered under the `admission` prefix.
    pub fn new() -> Self {
        let latency = || Histogram::new(LATENCY_BUCKETS);
        let metrics = Self {
            registry: Registry::with_prefix("admission"),
            decisions: Family::default(),
            decision_duration: Family::new_with_constructor(latency),
            audit_commit_duration: latency(),
            audit_batch_size: Histogram::new(BATCH_BUCKETS),
            approval_transitions: Family::default(),
            reloads: Family::default(),
            refused_handshakes: Family::default(),
            calls_in_flight: Gauge::default(),
            checkpoint_write_failures: Counter::default(),
        };
        metrics.registered()
    }

    fn registered(mut self) -> Self {
        let r = &mut self.registry;
        r.register(
            "decisions",
            "Admission decisions, by action, outcome and reason",
            self.decisions.clone(),
        );
        r.register_with_unit(
            "decision_duration",
            "Time taken to decide an admission request",
            Unit::Seconds,
            self.decision_duration.clone(),
        );
        r.register_with_unit(
            "audit_commit_duration",
            "Time one audit group commit took, from its first statement to COMMIT",
            Unit::Seconds,
            self.audit_commit_duration.clone(),
        );
        r.register(
            "audit_commit_batch_size",
            "Audit entries written by one group commit",
            self.audit_batch_size.clone(),
        );
        r.register(
            "approval_transitions",
            "Approvals entering a state through the API, by the state entered",
            self.approval_transitions.clone(),
        );
        r.register(
            "config_reloads",
            "Configuration reloads, by result (applied or refused)",
            self.reloads.clone(),
        );
        r.register(
            "tls_handshakes_refused",
            "Connections refused at or right after the TLS handshake, by reason",
            self.refused_handshakes.clone(),
        );
        r.register(
            "calls_in_flight",
            "API calls being served now",
            self.calls_in_flight.clone(),
        );
        r.register(
            "checkpoint_write_failures",
            "Signed checkpoints that could not be written to [audit] checkpoint_dir",
            self.checkpoint_write_failures.clone(),
        );
        // Both results are exposed from the start, so a reload alert has a series to watch.
        for result in ["applied", "refused"] {
            drop(self.reloads.get_or_create(&ResultLabels { result }));
        }
        self
    }

    /// One admission decision (`outcome` `admitted` or `rejected`, `reason` empty when admitted
    /// outright).
    pub fn record_decision(
        &self,
        action: &'static str,
        outcome: &'static str,
        reason: &str,
        elapsed: Duration,
    ) {
        self.decisions
            .get_or_create(&DecisionLabels {
                action,
                outcome,
                reason: reason.to_owned(),
            })
            .inc();
        self.decision_duration
            .get_or_create(&ActionLabels { action })
            .observe(elapsed.as_secs_f64());
    }

    /// An approval entered `state` (`pending`, `approved`, `denied`, `revoked`, …).
    pub fn record_approval_transition(&self, state: &'static str) {
        self.approval_transitions
            .get_or_create(&StateLabels { state })
            .inc();
    }

    /// One configuration reload, applied or refused.
    pub fn record_reload(&self, applied: bool) {
        let result = if applied { "applied" } else { "refused" };
        self.reloads.get_or_create(&ResultLabels { result }).inc();
    }

    /// Copies the transport's totals in, just before a scrape encodes them.
    pub fn observe_transport(&self, refused: RefusedHandshakes, calls_in_flight: usize) {
        for (reason, total) in [
            ("handshake_failed", refused.failed),
            ("shed", refused.shed),
            ("per_address_limit", refused.per_address),
            ("per_identity_limit", refused.per_identity),
        ] {
            // The owner's totals only grow, so storing them keeps the counter monotonic.
            self.refused_handshakes
                .get_or_create(&ReasonLabels { reason })
                .inner()
                .store(total, Ordering::Relaxed);
        }
        self.calls_in_flight
            .set(i64::try_from(calls_in_flight).unwrap_or(i64::MAX));
    }

    /// Copies the log's count of failed checkpoint file writes in, before a scrape.
    pub fn observe_checkpoint_write_failures(&self, total: u64) {
        // The log's total only grows, so storing it keeps the counter monotonic.
        self.checkpoint_write_failures
            .inner()
            .store(total, Ordering::Relaxed);
    }

    /// The exposition text of every metric, ending in `# EOF`.
    pub fn encode(&self) -> Result<String, fmt::Error> {
        let mut out = String::new();
        text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl CommitObserver for Metrics {
    fn committed(&self, appends: usize, took: Duration) {
        self.audit_commit_duration.observe(took.as_secs_f64());
        self.audit_batch_size.observe(appends as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_every_family_with_its_labels() {
        let metrics = Metrics::new();
        metrics.record_decision(
            "deploy",
            "rejected",
            "APPROVAL_REQUIRED",
            Duration::from_millis(3),
        );
        metrics.record_approval_transition("pending");
        metrics.record_reload(false);
        metrics.committed(4, Duration::from_millis(2));
        metrics.observe_transport(
            RefusedHandshakes {
                failed: 2,
                ..RefusedHandshakes::default()
            },
            1,
        );
        metrics.observe_checkpoint_write_failures(3);
        let text = metrics.encode().unwrap_or_default();
        for line in [
            r#"admission_decisions_total{action="deploy",outcome="rejected",reason="APPROVAL_REQUIRED"} 1"#,
            r#"admission_decision_duration_seconds_count{action="deploy"} 1"#,
            "admission_audit_commit_duration_seconds_count 1",
            "admission_audit_commit_batch_size_sum 4.0",
            r#"admission_approval_transitions_total{state="pending"} 1"#,
            r#"admission_config_reloads_total{result="refused"} 1"#,
            r#"admission_tls_handshakes_refused_total{reason="handshake_failed"} 2"#,
            "admission_calls_in_flight 1",
            "admission_checkpoint_write_failures_total 3",
            "# EOF",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from:\n{text}"
            );
        }
    }
}
