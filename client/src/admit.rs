//! Typed admission calls: an [`Admission`](pb::Admission) or a typed [`Rejection`].

use std::future::Future;

use crate::{
    AdmissionClient, pb,
    rejection::Rejection,
    retry::Idempotency::{self, Idempotent, NotIdempotent},
};

/// Why an admission or preview call did not return its answer.
#[derive(Debug, thiserror::Error)]
pub enum AdmitError {
    /// The service rejected the request with a typed reason (see docs/reference.md).
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

/// A closure sending one attempt of `client.method` on its own clone of the client, so the
/// future owns everything it borrows.
macro_rules! attempt {
    ($client:ident . $method:ident) => {
        move |request| {
            let mut client = $client.clone();
            async move { client.$method(request).await }
        }
    };
}

// === impl AdmissionClient ===

impl AdmissionClient {
    /// `DeployAdmission.Admit`; retried under the retry policy with the same `request_id`.
    pub async fn admit_deploy(
        &self,
        request: pb::DeployRequest,
    ) -> Result<pb::Admission, AdmitError> {
        let client = self.deploy();
        self.retried(Idempotent, request, attempt!(client.admit))
            .await
    }

    /// `DeployAdmission.Preview`; retried under the retry policy.
    pub async fn preview_deploy(
        &self,
        request: pb::DeployRequest,
    ) -> Result<pb::Preview, AdmitError> {
        let client = self.deploy();
        self.retried(Idempotent, request, attempt!(client.preview))
            .await
    }

    /// `ReplayAdmission.Admit`; retried under the retry policy with the same `request_id`.
    pub async fn admit_replay(
        &self,
        request: pb::ReplayRequest,
    ) -> Result<pb::Admission, AdmitError> {
        let client = self.replay();
        self.retried(Idempotent, request, attempt!(client.admit))
            .await
    }

    /// `ReplayAdmission.Preview`; retried under the retry policy.
    pub async fn preview_replay(
        &self,
        request: pb::ReplayRequest,
    ) -> Result<pb::Preview, AdmitError> {
        let client = self.replay();
        self.retried(Idempotent, request, attempt!(client.preview))
            .await
    }

    /// `Approvals.Create`; retried only when the service says it did nothing, since a retry
    /// after a lost answer would create a second approval.
    pub async fn create_approval(
        &self,
        request: pb::CreateApprovalRequest,
    ) -> Result<pb::Approval, AdmitError> {
        let client = self.approvals();
        self.retried(NotIdempotent, request, attempt!(client.create))
            .await
    }

    /// `Approvals.Decide`; retried only when the service says it did nothing.
    pub async fn decide_approval(
        &self,
        request: pb::DecideApprovalRequest,
    ) -> Result<pb::Approval, AdmitError> {
        let client = self.approvals();
        self.retried(NotIdempotent, request, attempt!(client.decide))
            .await
    }

    /// `Approvals.Get`; retried under the retry policy.
    pub async fn get_approval(&self, approval_id: &str) -> Result<pb::Approval, AdmitError> {
        let request = pb::GetApprovalRequest {
            approval_id: approval_id.to_owned(),
        };
        let client = self.approvals();
        self.retried(Idempotent, request, attempt!(client.get))
            .await
    }

    /// `Approvals.ListEligible`; retried under the retry policy.
    pub async fn list_eligible(
        &self,
        request: pb::ListEligibleRequest,
    ) -> Result<Vec<pb::Approval>, AdmitError> {
        let client = self.approvals();
        let response = self
            .retried(Idempotent, request, attempt!(client.list_eligible))
            .await?;
        Ok(response.approvals)
    }

    /// `Approvals.Revoke`; retried only when the service says it did nothing.
    pub async fn revoke_approval(
        &self,
        approval_id: &str,
        reason: &str,
    ) -> Result<pb::Approval, AdmitError> {
        let request = pb::RevokeApprovalRequest {
            approval_id: approval_id.to_owned(),
            reason: reason.to_owned(),
        };
        let client = self.approvals();
        self.retried(NotIdempotent, request, attempt!(client.revoke))
            .await
    }

    /// Runs `call` under the retry policy and types its failure.
    async fn retried<Req, Resp, F, Fut>(
        &self,
        idempotency: Idempotency,
        request: Req,
        call: F,
    ) -> Result<Resp, AdmitError>
    where
        Req: Clone,
        F: FnMut(tonic::Request<Req>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Resp>, tonic::Status>>,
    {
        Ok(self.retry_policy().run(idempotency, request, call).await?)
    }
}
