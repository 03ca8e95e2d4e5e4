//! Placeholders for API services not built yet: each RPC checks the caller's role first (so
//! authorization behaves as it will), then answers UNIMPLEMENTED.

use std::sync::Arc;

use admission_contract::pb;
use tonic::{Request, Response, Status};

use super::{Rpc, authorize_rpc};
use crate::{roles::RoleBindings, serve::AppState};

/// Serves every API service with role checks and an UNIMPLEMENTED answer.
#[derive(Clone, Debug)]
pub struct Unimplemented {
    roles: Arc<RoleBindings>,
}

// === impl Unimplemented ===

impl Unimplemented {
    /// Checks roles against the bindings of `state`.
    pub fn new(state: &AppState) -> Self {
        Self {
            roles: state.roles(),
        }
    }

    fn answer<T, R>(&self, request: &Request<T>, rpc: Rpc) -> Result<Response<R>, Status> {
        authorize_rpc(&self.roles, request, rpc)?;
        Err(Status::unimplemented(format!(
            "{} is not implemented yet",
            rpc.name()
        )))
    }
}

#[tonic::async_trait]
impl pb::deploy_admission_server::DeployAdmission for Unimplemented {
    async fn admit(
        &self,
        request: Request<pb::DeployRequest>,
    ) -> Result<Response<pb::Admission>, Status> {
        self.answer(&request, Rpc::DeployAdmit)
    }

    async fn preview(
        &self,
        request: Request<pb::DeployRequest>,
    ) -> Result<Response<pb::Preview>, Status> {
        self.answer(&request, Rpc::DeployPreview)
    }
}

#[tonic::async_trait]
impl pb::replay_admission_server::ReplayAdmission for Unimplemented {
    async fn admit(
        &self,
        request: Request<pb::ReplayRequest>,
    ) -> Result<Response<pb::Admission>, Status> {
        self.answer(&request, Rpc::ReplayAdmit)
    }

    async fn preview(
        &self,
        request: Request<pb::ReplayRequest>,
    ) -> Result<Response<pb::Preview>, Status> {
        self.answer(&request, Rpc::ReplayPreview)
    }
}

#[tonic::async_trait]
impl pb::approvals_server::Approvals for Unimplemented {
    async fn create(
        &self,
        request: Request<pb::CreateApprovalRequest>,
    ) -> Result<Response<pb::Approval>, Status> {
        self.answer(&request, Rpc::ApprovalsCreate)
    }

    async fn decide(
        &self,
        request: Request<pb::DecideApprovalRequest>,
    ) -> Result<Response<pb::Approval>, Status> {
        self.answer(&request, Rpc::ApprovalsDecide)
    }

    async fn get(
        &self,
        request: Request<pb::GetApprovalRequest>,
    ) -> Result<Response<pb::Approval>, Status> {
        self.answer(&request, Rpc::ApprovalsGet)
    }

    async fn list_eligible(
        &self,
        request: Request<pb::ListEligibleRequest>,
    ) -> Result<Response<pb::ListEligibleResponse>, Status> {
        self.answer(&request, Rpc::ApprovalsListEligible)
    }

    async fn revoke(
        &self,
        request: Request<pb::RevokeApprovalRequest>,
    ) -> Result<Response<pb::Approval>, Status> {
        self.answer(&request, Rpc::ApprovalsRevoke)
    }
}

#[tonic::async_trait]
impl pb::audit_server::Audit for Unimplemented {
    async fn list(
        &self,
        request: Request<pb::ListAuditRequest>,
    ) -> Result<Response<pb::ListAuditResponse>, Status> {
        self.answer(&request, Rpc::AuditList)
    }

    async fn verify(
        &self,
        request: Request<pb::VerifyAuditRequest>,
    ) -> Result<Response<pb::VerifyAuditResponse>, Status> {
        self.answer(&request, Rpc::AuditVerify)
    }
}
