//! `Audit`: reads of the trail, adapted to [`crate::app::audit`] and
//! [`crate::app::transparency`]. Auditors may call every RPC; an orchestrator may also prove
//! the inclusion of its own decisions.

use admission_contract::pb::{self, audit_server::Audit};
use tonic::{Request, Response, Status};

use super::{Rpc, authorize_rpc};
use crate::{
    app::audit as service,
    app::settings::SharedSettings,
    app::transparency::{
        SharedLog,
        proofs::{self, Provable},
    },
    domain::rejection::Rejection,
    domain::request::{EnvironmentKey, FieldCheck, RequestLimits},
    identity::roles::Role,
    store::AuditStore,
};

/// The `Audit` service.
#[derive(Clone)]
pub struct AuditService {
    settings: SharedSettings,
    store: AuditStore,
    log: SharedLog,
    limits: RequestLimits,
}

// === impl AuditService ===

impl AuditService {
    /// The service over `store` and `log`; filters are bounded by `limits`.
    pub fn new(
        settings: SharedSettings,
        store: AuditStore,
        log: SharedLog,
        limits: RequestLimits,
    ) -> Self {
        Self {
            settings,
            store,
            log,
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
        request: Request<pb::GetCheckpointRequest>,
    ) -> Result<Response<pb::Checkpoint>, Status> {
        authorize_rpc(
            &self.settings.current().roles,
            &request,
            Rpc::AuditGetCheckpoint,
        )?;
        let checkpoint = self.log.checkpoint(&self.store).await?;
        Ok(Response::new(checkpoint.into()))
    }

    async fn prove_inclusion(
        &self,
        request: Request<pb::ProveInclusionRequest>,
    ) -> Result<Response<pb::InclusionProof>, Status> {
        let roles = self.settings.current().roles.clone();
        let caller = authorize_rpc(&roles, &request, Rpc::AuditProveInclusion)?;
        check_decision_id(request.get_ref(), &self.limits)?;
        let provable = if roles.has_role(&caller.identity, Role::Auditor, None) {
            Provable::Any
        } else {
            Provable::OwnedBy(caller.identity.as_str())
        };
        let proof = proofs::prove_inclusion(&self.store, request.get_ref(), provable).await?;
        Ok(Response::new(proof))
    }

    async fn prove_consistency(
        &self,
        request: Request<pb::ProveConsistencyRequest>,
    ) -> Result<Response<pb::ConsistencyProof>, Status> {
        authorize_rpc(
            &self.settings.current().roles,
            &request,
            Rpc::AuditProveConsistency,
        )?;
        let proof = proofs::prove_consistency(&self.store, request.get_ref()).await?;
        Ok(Response::new(proof))
    }
}

/// A decision id to prove is bounded like every id a request names.
fn check_decision_id(
    request: &pb::ProveInclusionRequest,
    limits: &RequestLimits,
) -> Result<(), Rejection> {
    let mut fields = FieldCheck::new(limits);
    fields.optional_id("decision_id", &request.decision_id);
    fields.finish()
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
