//! `DeployAdmission` and `ReplayAdmission`: thin adapters from the wire to [`Engine`].

use admission_contract::pb::{
    self, deploy_admission_server::DeployAdmission, replay_admission_server::ReplayAdmission,
};
use tonic::{Request, Response, Status};

use crate::{
    decision::{Engine, request::AdmissionRequest},
    tls::caller,
};

/// The `DeployAdmission` service.
#[derive(Clone)]
pub struct DeployService {
    engine: Engine,
}

/// The `ReplayAdmission` service.
#[derive(Clone)]
pub struct ReplayService {
    engine: Engine,
}

// === impl DeployService ===

impl DeployService {
    /// The service over `engine`.
    pub fn new(engine: Engine) -> Self {
        Self { engine }
    }
}

#[tonic::async_trait]
impl DeployAdmission for DeployService {
    async fn admit(
        &self,
        request: Request<pb::DeployRequest>,
    ) -> Result<Response<pb::Admission>, Status> {
        let caller = caller(&request)?;
        let parsed = AdmissionRequest::from_deploy(request.get_ref(), self.engine.limits());
        let admission = self.engine.admit(&caller, parsed).await?;
        Ok(Response::new(admission))
    }

    async fn preview(
        &self,
        request: Request<pb::DeployRequest>,
    ) -> Result<Response<pb::Preview>, Status> {
        let caller = caller(&request)?;
        let parsed = AdmissionRequest::from_deploy(request.get_ref(), self.engine.limits());
        let preview = self.engine.preview(&caller, parsed).await?;
        Ok(Response::new(preview))
    }
}

// === impl ReplayService ===

impl ReplayService {
    /// The service over `engine`.
    pub fn new(engine: Engine) -> Self {
        Self { engine }
    }
}

#[tonic::async_trait]
impl ReplayAdmission for ReplayService {
    async fn admit(
        &self,
        request: Request<pb::ReplayRequest>,
    ) -> Result<Response<pb::Admission>, Status> {
        let caller = caller(&request)?;
        let parsed = AdmissionRequest::from_replay(request.get_ref(), self.engine.limits());
        let admission = self.engine.admit(&caller, parsed).await?;
        Ok(Response::new(admission))
    }

    async fn preview(
        &self,
        request: Request<pb::ReplayRequest>,
    ) -> Result<Response<pb::Preview>, Status> {
        let caller = caller(&request)?;
        let parsed = AdmissionRequest::from_replay(request.get_ref(), self.engine.limits());
        let preview = self.engine.preview(&caller, parsed).await?;
        Ok(Response::new(preview))
    }
}
