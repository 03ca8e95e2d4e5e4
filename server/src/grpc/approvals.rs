//! `Approvals`: a thin adapter from the wire to [`ApprovalService`].

use admission_contract::pb::{self, approvals_server::Approvals};
use tonic::{Request, Response, Status};

use super::{Rpc, authorize_rpc};
use crate::app::{approvals::ApprovalService, settings::SharedSettings};

/// The `Approvals` service. Callers without any role for the RPC are refused before the request
/// is read; the domain then checks the role for the approval's environment.
#[derive(Clone)]
pub struct ApprovalsService {
    settings: SharedSettings,
    approvals: ApprovalService,
}

// === impl ApprovalsService ===

impl ApprovalsService {
    /// The service over `approvals`.
    pub fn new(settings: SharedSettings, approvals: ApprovalService) -> Self {
        Self {
            settings,
            approvals,
        }
    }
}

#[tonic::async_trait]
impl Approvals for ApprovalsService {
    async fn create(
        &self,
        request: Request<pb::CreateApprovalRequest>,
    ) -> Result<Response<pb::Approval>, Status> {
        let caller = authorize_rpc(
            &self.settings.current().roles,
            &request,
            Rpc::ApprovalsCreate,
        )?;
        let approval = self.approvals.create(&caller, request.into_inner()).await?;
        Ok(Response::new(approval.into()))
    }

    async fn decide(
        &self,
        request: Request<pb::DecideApprovalRequest>,
    ) -> Result<Response<pb::Approval>, Status> {
        let caller = authorize_rpc(
            &self.settings.current().roles,
            &request,
            Rpc::ApprovalsDecide,
        )?;
        let approval = self.approvals.decide(&caller, request.into_inner()).await?;
        Ok(Response::new(approval.into()))
    }

    async fn get(
        &self,
        request: Request<pb::GetApprovalRequest>,
    ) -> Result<Response<pb::Approval>, Status> {
        let caller = authorize_rpc(&self.settings.current().roles, &request, Rpc::ApprovalsGet)?;
        let approval = self
            .approvals
            .get(&caller, &request.get_ref().approval_id)
            .await?;
        Ok(Response::new(approval.into()))
    }

    async fn list_eligible(
        &self,
        request: Request<pb::ListEligibleRequest>,
    ) -> Result<Response<pb::ListEligibleResponse>, Status> {
        let caller = authorize_rpc(
            &self.settings.current().roles,
            &request,
            Rpc::ApprovalsListEligible,
        )?;
        let approvals = self
            .approvals
            .list_eligible(&caller, request.into_inner())
            .await?;
        Ok(Response::new(pb::ListEligibleResponse {
            approvals: approvals.into_iter().map(pb::Approval::from).collect(),
        }))
    }

    async fn revoke(
        &self,
        request: Request<pb::RevokeApprovalRequest>,
    ) -> Result<Response<pb::Approval>, Status> {
        let caller = authorize_rpc(
            &self.settings.current().roles,
            &request,
            Rpc::ApprovalsRevoke,
        )?;
        let approval = self.approvals.revoke(&caller, request.into_inner()).await?;
        Ok(Response::new(approval.into()))
    }
}
