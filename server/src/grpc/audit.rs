//! `Audit`: auditor-only reads of the trail, adapted to [`crate::app::audit`].

use admission_contract::pb::{self, audit_server::Audit};
use tonic::{Request, Response, Status};

use super::{Rpc, authorize_rpc};
use crate::{
    app::audit as service,
    app::settings::SharedSettings,
    domain::rejection::Rejection,
    domain::request::{EnvironmentKey, FieldCheck, RequestLimits},
    store::AuditStore,
};

/// The `Audit` service.
#[derive(Clone)]
pub struct AuditService {
    settings: SharedSettings,
    store: AuditStore,
    limits: RequestLimits,
}

// === impl AuditService ===

impl AuditService {
    /// The service over `store`, for callers holding the auditor role; filters are bounded by
    /// `limits`.
    pub fn new(settings: SharedSettings, store: AuditStore, limits: RequestLimits) -> Self {
        Self {
            settings,
            store,
            limits,
        }
    }
}

#[tonic::async_trait]
impl Audit for AuditService {
    async fn list(
        &self,
        request: Request<pb::ListAuditRequest>,
    ) -> Result<Response<pb::ListAuditResponse>, Status> {
        authorize_rpc(&self.settings.current().roles, &request, Rpc::AuditList)?;
        check_list(request.get_ref(), &self.limits)?;
        let response = service::list(&self.store, request.into_inner()).await?;
        Ok(Response::new(response))
    }

    async fn verify(
        &self,
        request: Request<pb::VerifyAuditRequest>,
    ) -> Result<Response<pb::VerifyAuditResponse>, Status> {
        authorize_rpc(&self.settings.current().roles, &request, Rpc::AuditVerify)?;
        let response = service::verify(&self.store, request.into_inner()).await?;
        Ok(Response::new(response))
    }

    async fn get_checkpoint(
        &self,
        _request: Request<pb::GetCheckpointRequest>,
    ) -> Result<Response<pb::Checkpoint>, Status> {
        Err(Status::unimplemented(
            "UNIMPLEMENTED: signed checkpoints are not served yet",
        ))
    }

    async fn prove_inclusion(
        &self,
        _request: Request<pb::ProveInclusionRequest>,
    ) -> Result<Response<pb::InclusionProof>, Status> {
        Err(Status::unimplemented(
            "UNIMPLEMENTED: inclusion proofs are not served yet",
        ))
    }

    async fn prove_consistency(
        &self,
        _request: Request<pb::ProveConsistencyRequest>,
    ) -> Result<Response<pb::ConsistencyProof>, Status> {
        Err(Status::unimplemented(
            "UNIMPLEMENTED: consistency proofs are not served yet",
        ))
    }
}

/// Bounds on the filters of `Audit.List`: an environment filter names ids no longer than any
/// stored one could be.
fn check_list(request: &pb::ListAuditRequest, limits: &RequestLimits) -> Result<(), Rejection> {
    let mut fields = FieldCheck::new(limits);
    if let Some(environment) = &request.environment {
        fields.optional_environment(&EnvironmentKey::from(environment));
    }
    fields.optional_id("outcome", &request.outcome);
    fields.optional_id("page_token", &request.page_token);
    fields.finish()
}
