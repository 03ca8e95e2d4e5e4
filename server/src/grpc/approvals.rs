//! `Approvals`: a thin adapter from the wire to [`ApprovalService`].

use std::sync::Arc;

use admission_contract::pb::{self, approvals_server::Approvals};
use tonic::{Request, Response, Status};

use super::{Rpc, authorize_rpc, prometheus::Metrics};
use crate::app::{approvals::ApprovalService, settings::SharedSettings};

/// The `Approvals` service. Callers without any role for the RPC are refused before the request
/// is read; the domain then checks the role for the approval's environment.
#[derive(Clone)]
pub struct ApprovalsService {
    settings: SharedSettings,
    approvals: ApprovalService,
    metrics: Arc<Metrics>,
}

// === impl ApprovalsService ===

impl ApprovalsService {
    /// The service over `approvals`, counting the state each write leaves an approval in.
    pub fn new(
        settings: SharedSettings,
        approvals: ApprovalService,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            settings,
            approvals,
            metrics,
        }
    }

    /// Counts the state a successful Create, Decide or Revoke left `approval` in.
    fn transitioned(&self, approval: pb::Approval) -> Response<pb::Approval> {
        self.metrics
            .record_approval_transition(approval_state_label(approval.state()));
        Response::new(approval)
    }
}

/// The metric label of an approval state: its proto name without the prefix, lowercase.
fn approval_state_label(state: pb::ApprovalState) -> &'static str {
    match state {
        pb::ApprovalState::Unspecified => "unspecified",
        pb::ApprovalState::Pending => "pending",
        pb::ApprovalState::Approved => "approved",
        pb::ApprovalState::Denied => "denied",
        pb::ApprovalState::Expired => "expired",
        pb::ApprovalState::Revoked => "revoked",
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
        Ok(self.transitioned(approval.into()))
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
        Ok(self.transitioned(approval.into()))
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
        Ok(self.transitioned(approval.into()))
    }
}
