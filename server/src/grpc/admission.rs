//! `DeployAdmission` and `ReplayAdmission`: thin adapters from the wire to [`Engine`].

use admission_contract::pb::{
    self, deploy_admission_server::DeployAdmission, replay_admission_server::ReplayAdmission,
};
use std::time::Instant;

use tonic::{Request, Response, Status};
use tracing::{Instrument as _, Span, field::Empty};

use crate::{
    decision::{Engine, request::AdmissionRequest},
    rejection::Rejection,
    telemetry::DecisionMetrics,
    tls::caller,
};

/// The `DeployAdmission` service.
#[derive(Clone)]
pub struct DeployService {
    engine: Engine,
    metrics: DecisionMetrics,
}

/// The `ReplayAdmission` service.
#[derive(Clone)]
pub struct ReplayService {
    engine: Engine,
    metrics: DecisionMetrics,
}

// === impl DeployService ===

impl DeployService {
    /// The service over `engine`.
    pub fn new(engine: Engine) -> Self {
        Self {
            engine,
            metrics: DecisionMetrics::new(),
        }
    }
}

#[tonic::async_trait]
impl DeployAdmission for DeployService {
    async fn admit(
        &self,
        request: Request<pb::DeployRequest>,
    ) -> Result<Response<pb::Admission>, Status> {
        let span = rpc_span(
            "DeployAdmission/Admit",
            request.get_ref().environment.as_ref(),
        );
        async {
            let caller = caller(&request)?;
            let parsed = AdmissionRequest::from_deploy(request.get_ref(), self.engine.limits());
            let started = Instant::now();
            let admission = self.engine.admit(&caller, parsed).await;
            let (outcome, reason) = admission_outcome(&admission);
            let span = Span::current();
            self.metrics
                .record(&span, "deploy", outcome, reason, started.elapsed());
            Ok(Response::new(admission?))
        }
        .instrument(span)
        .await
    }

    async fn preview(
        &self,
        request: Request<pb::DeployRequest>,
    ) -> Result<Response<pb::Preview>, Status> {
        let span = rpc_span(
            "DeployAdmission/Preview",
            request.get_ref().environment.as_ref(),
        );
        async {
            let caller = caller(&request)?;
            let parsed = AdmissionRequest::from_deploy(request.get_ref(), self.engine.limits());
            let preview = self.engine.preview(&caller, parsed).await;
            let (outcome, reason) = match &preview {
                Ok(_) => ("previewed", ""),
                Err(rejection) => ("rejected", rejection.reason.as_str()),
            };
            Span::current()
                .record("outcome", outcome)
                .record("reason", reason);
            Ok(Response::new(preview?))
        }
        .instrument(span)
        .await
    }
}

// === impl ReplayService ===

impl ReplayService {
    /// The service over `engine`.
    pub fn new(engine: Engine) -> Self {
        Self {
            engine,
            metrics: DecisionMetrics::new(),
        }
    }
}

#[tonic::async_trait]
impl ReplayAdmission for ReplayService {
    async fn admit(
        &self,
        request: Request<pb::ReplayRequest>,
    ) -> Result<Response<pb::Admission>, Status> {
        let span = rpc_span(
            "ReplayAdmission/Admit",
            request.get_ref().environment.as_ref(),
        );
        async {
            let caller = caller(&request)?;
            let parsed = AdmissionRequest::from_replay(request.get_ref(), self.engine.limits());
            let started = Instant::now();
            let admission = self.engine.admit(&caller, parsed).await;
            let (outcome, reason) = admission_outcome(&admission);
            let span = Span::current();
            self.metrics
                .record(&span, "replay", outcome, reason, started.elapsed());
            Ok(Response::new(admission?))
        }
        .instrument(span)
        .await
    }

    async fn preview(
        &self,
        request: Request<pb::ReplayRequest>,
    ) -> Result<Response<pb::Preview>, Status> {
        let span = rpc_span(
            "ReplayAdmission/Preview",
            request.get_ref().environment.as_ref(),
        );
        async {
            let caller = caller(&request)?;
            let parsed = AdmissionRequest::from_replay(request.get_ref(), self.engine.limits());
            let preview = self.engine.preview(&caller, parsed).await;
            let (outcome, reason) = match &preview {
                Ok(_) => ("previewed", ""),
                Err(rejection) => ("rejected", rejection.reason.as_str()),
            };
            Span::current()
                .record("outcome", outcome)
                .record("reason", reason);
            Ok(Response::new(preview?))
        }
        .instrument(span)
        .await
    }
}

/// The span of one admission RPC; `outcome` and `reason` are recorded once decided.
fn rpc_span(rpc: &'static str, environment: Option<&pb::EnvironmentRef>) -> Span {
    let environment = environment
        .map(|e| format!("{}/{}/{}", e.org_id, e.project_id, e.environment_id))
        .unwrap_or_default();
    tracing::info_span!(
        "admission",
        otel.name = rpc,
        otel.kind = "server",
        rpc,
        environment,
        outcome = Empty,
        reason = Empty
    )
}

/// `admitted` (with the shadow-mode reason, if any) or `rejected` with its reason.
fn admission_outcome(admission: &Result<pb::Admission, Rejection>) -> (&'static str, &str) {
    match admission {
        Ok(admitted) => ("admitted", admitted.shadow_reason.as_str()),
        Err(rejection) => ("rejected", rejection.reason.as_str()),
    }
}
