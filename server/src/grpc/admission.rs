//! `DeployAdmission` and `ReplayAdmission`: thin adapters from the wire to [`Engine`].
//!
//! Both services share [`Admissions`]: name the caller, validate the wire request into an
//! [`AdmissionRequest`], decide, and record the span and metrics.

use std::{sync::Arc, time::Instant};

use admission_contract::pb::{
    self, deploy_admission_server::DeployAdmission, replay_admission_server::ReplayAdmission,
};
use tonic::{Request, Response, Status};
use tracing::{Instrument as _, Span, field::Empty};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use super::{metrics::DecisionMetrics, prometheus::Metrics, trace_context};
use crate::{
    app::admission::Engine,
    app::failure::Failure,
    domain::outcome::Outcome,
    domain::request::{AdmissionRequest, EnvironmentKey, Invalid, RequestLimits},
    identity::tls::caller,
};

/// The `DeployAdmission` service.
#[derive(Clone)]
pub struct DeployService(Admissions);

/// The `ReplayAdmission` service.
#[derive(Clone)]
pub struct ReplayService(Admissions);

/// What the two admission services share.
#[derive(Clone)]
struct Admissions {
    engine: Engine,
    metrics: DecisionMetrics,
}

/// Rows 1–2: a wire request validated into the engine's request.
type Parse<T> = fn(&T, &RequestLimits) -> Result<AdmissionRequest, Box<Invalid>>;

// === impl DeployService ===

impl DeployService {
    /// The service over `engine`, recording decisions on `metrics`.
    pub fn new(engine: Engine, metrics: Arc<Metrics>) -> Self {
        Self(Admissions::new(engine, metrics))
    }
}

#[tonic::async_trait]
impl DeployAdmission for DeployService {
    async fn admit(
        &self,
        request: Request<pb::DeployRequest>,
    ) -> Result<Response<pb::Admission>, Status> {
        let parse: Parse<_> = AdmissionRequest::from_deploy;
        let span = rpc_span(
            "DeployAdmission/Admit",
            request.get_ref().environment.as_ref(),
            request.metadata(),
        );
        self.0
            .admit("deploy", request, parse)
            .instrument(span)
            .await
    }

    async fn preview(
        &self,
        request: Request<pb::DeployRequest>,
    ) -> Result<Response<pb::Preview>, Status> {
        let parse: Parse<_> = AdmissionRequest::from_deploy;
        let span = rpc_span(
            "DeployAdmission/Preview",
            request.get_ref().environment.as_ref(),
            request.metadata(),
        );
        self.0.preview(request, parse).instrument(span).await
    }
}

// === impl ReplayService ===

impl ReplayService {
    /// The service over `engine`, recording decisions on `metrics`.
    pub fn new(engine: Engine, metrics: Arc<Metrics>) -> Self {
        Self(Admissions::new(engine, metrics))
    }
}

#[tonic::async_trait]
impl ReplayAdmission for ReplayService {
    async fn admit(
        &self,
        request: Request<pb::ReplayRequest>,
    ) -> Result<Response<pb::Admission>, Status> {
        let parse: Parse<_> = AdmissionRequest::from_replay;
        let span = rpc_span(
            "ReplayAdmission/Admit",
            request.get_ref().environment.as_ref(),
            request.metadata(),
        );
        self.0
            .admit("replay", request, parse)
            .instrument(span)
            .await
    }

    async fn preview(
        &self,
        request: Request<pb::ReplayRequest>,
    ) -> Result<Response<pb::Preview>, Status> {
        let parse: Parse<_> = AdmissionRequest::from_replay;
        let span = rpc_span(
            "ReplayAdmission/Preview",
            request.get_ref().environment.as_ref(),
            request.metadata(),
        );
        self.0.preview(request, parse).instrument(span).await
    }
}

// === impl Admissions ===

impl Admissions {
    fn new(engine: Engine, metrics: Arc<Metrics>) -> Self {
        Self {
            engine,
            metrics: DecisionMetrics::new(metrics),
        }
    }

    /// Decides an admission; records outcome, reason and duration (in the current span).
    async fn admit<T>(
        &self,
        action: &'static str,
        request: Request<T>,
        parse: Parse<T>,
    ) -> Result<Response<pb::Admission>, Status> {
        let caller = caller(&request)?;
        let parsed = parse(request.get_ref(), self.engine.limits());
        let started = Instant::now();
        let admission = self
            .engine
            .admit(&caller, parsed)
            .await
            .map(pb::Admission::from);
        let (outcome, reason) = admission_outcome(&admission);
        self.metrics
            .record(&Span::current(), action, outcome, reason, started.elapsed());
        Ok(Response::new(admission?))
    }

    /// Evaluates a preview; records outcome and reason (in the current span).
    async fn preview<T>(
        &self,
        request: Request<T>,
        parse: Parse<T>,
    ) -> Result<Response<pb::Preview>, Status> {
        let caller = caller(&request)?;
        let parsed = parse(request.get_ref(), self.engine.limits());
        let preview = self
            .engine
            .preview(&caller, parsed)
            .await
            .map(pb::Preview::from);
        let (outcome, reason) = match &preview {
            Ok(_) => (Outcome::Previewed.as_str(), ""),
            Err(failure) => failure_outcome(failure),
        };
        Span::current()
            .record("outcome", outcome)
            .record("reason", reason);
        Ok(Response::new(preview?))
    }
}

/// The span of one admission RPC; `outcome` and `reason` are recorded once decided. A W3C
/// `traceparent` in the call's metadata makes it a child of the caller's span.
fn rpc_span(
    rpc: &'static str,
    environment: Option<&pb::EnvironmentRef>,
    metadata: &tonic::metadata::MetadataMap,
) -> Span {
    let environment = environment
        .map(|e| EnvironmentKey::from(e).to_string())
        .unwrap_or_default();
    let span = tracing::info_span!(
        "admission",
        otel.name = rpc,
        otel.kind = "server",
        rpc,
        environment,
        outcome = Empty,
        reason = Empty
    );
    if let Some(parent) = trace_context::caller_context(metadata) {
        // Only fails when the span is disabled (not exported), which needs no parent.
        let _ = span.set_parent(parent);
    }
    span
}

/// `admitted` (with the shadow-mode reason, if any) or `rejected` with its reason.
fn admission_outcome(admission: &Result<pb::Admission, Failure>) -> (&'static str, &str) {
    match admission {
        Ok(admitted) => (Outcome::Admitted.as_str(), admitted.shadow_reason.as_str()),
        Err(failure) => failure_outcome(failure),
    }
}

/// `rejected` with its reason, or `failed` with `INTERNAL`.
fn failure_outcome(failure: &Failure) -> (&'static str, &'static str) {
    match failure {
        Failure::Rejected(rejection) => (Outcome::Rejected.as_str(), rejection.reason.as_str()),
        Failure::Internal => ("failed", "INTERNAL"),
    }
}
