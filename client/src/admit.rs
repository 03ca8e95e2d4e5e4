//! Typed admission calls: an [`Admission`](pb::Admission) or a typed [`Rejection`].

use crate::{AdmissionClient, pb, rejection::Rejection};

/// Why an admission or preview call did not return its answer.
#[derive(Debug, thiserror::Error)]
pub enum AdmitError {
    /// The service rejected the request with a typed reason (SPEC §7).
    #[error("{}", .0)]
    Rejected(Rejection),
    /// The call failed without a typed rejection (transport error, unknown status).
    #[error("admission call failed: {0}")]
    Call(tonic::Status),
}

impl AdmitError {
    /// The typed rejection, if the service answered with one.
    pub fn rejection(&self) -> Option<&Rejection> {
        match self {
            AdmitError::Rejected(rejection) => Some(rejection),
            AdmitError::Call(_) => None,
        }
    }
}

impl From<tonic::Status> for AdmitError {
    fn from(status: tonic::Status) -> Self {
        match Rejection::from_status(&status) {
            Some(rejection) => AdmitError::Rejected(rejection),
            None => AdmitError::Call(status),
        }
    }
}

// === impl AdmissionClient ===

impl AdmissionClient {
    /// `DeployAdmission.Admit`.
    pub async fn admit_deploy(
        &self,
        request: pb::DeployRequest,
    ) -> Result<pb::Admission, AdmitError> {
        Ok(self.deploy().admit(request).await?.into_inner())
    }

    /// `DeployAdmission.Preview`.
    pub async fn preview_deploy(
        &self,
        request: pb::DeployRequest,
    ) -> Result<pb::Preview, AdmitError> {
        Ok(self.deploy().preview(request).await?.into_inner())
    }

    /// `ReplayAdmission.Admit`.
    pub async fn admit_replay(
        &self,
        request: pb::ReplayRequest,
    ) -> Result<pb::Admission, AdmitError> {
        Ok(self.replay().admit(request).await?.into_inner())
    }

    /// `ReplayAdmission.Preview`.
    pub async fn preview_replay(
        &self,
        request: pb::ReplayRequest,
    ) -> Result<pb::Preview, AdmitError> {
        Ok(self.replay().preview(request).await?.into_inner())
    }

    /// `Approvals.Create`.
    pub async fn create_approval(
        &self,
        request: pb::CreateApprovalRequest,
    ) -> Result<pb::Approval, AdmitError> {
        Ok(self.approvals().create(request).await?.into_inner())
    }

    /// `Approvals.Decide`.
    pub async fn decide_approval(
        &self,
        request: pb::DecideApprovalRequest,
    ) -> Result<pb::Approval, AdmitError> {
        Ok(self.approvals().decide(request).await?.into_inner())
    }

    /// `Approvals.Get`.
    pub async fn get_approval(&self, approval_id: &str) -> Result<pb::Approval, AdmitError> {
        let request = pb::GetApprovalRequest {
            approval_id: approval_id.to_owned(),
        };
        Ok(self.approvals().get(request).await?.into_inner())
    }

    /// `Approvals.ListEligible`.
    pub async fn list_eligible(
        &self,
        request: pb::ListEligibleRequest,
    ) -> Result<Vec<pb::Approval>, AdmitError> {
        Ok(self
            .approvals()
            .list_eligible(request)
            .await?
            .into_inner()
            .approvals)
    }

    /// `Approvals.Revoke`.
    pub async fn revoke_approval(
        &self,
        approval_id: &str,
        reason: &str,
    ) -> Result<pb::Approval, AdmitError> {
        let request = pb::RevokeApprovalRequest {
            approval_id: approval_id.to_owned(),
            reason: reason.to_owned(),
        };
        Ok(self.approvals().revoke(request).await?.into_inner())
    }
}
