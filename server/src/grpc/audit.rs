//! `Audit`: auditor-only reads of the trail, adapted to [`crate::audit::service`].

use std::sync::Arc;

use admission_contract::pb::{self, audit_server::Audit};
use tonic::{Request, Response, Status};

use super::{Rpc, authorize_rpc};
use crate::{
    audit::{AuditStore, service},
    roles::RoleBindings,
};

/// The `Audit` service.
#[derive(Clone)]
pub struct AuditService {
    roles: Arc<RoleBindings>,
    store: AuditStore,
}

// === impl AuditService ===

impl AuditService {
    /// The service over `store`, for callers holding the auditor role.
    pub fn new(roles: Arc<RoleBindings>, store: AuditStore) -> Self {
        Self { roles, store }
    }
}

#[tonic::async_trait]
impl Audit for AuditService {
    async fn list(
        &self,
        request: Request<pb::ListAuditRequest>,
    ) -> Result<Response<pb::ListAuditResponse>, Status> {
        authorize_rpc(&self.roles, &request, Rpc::AuditList)?;
        let response = service::list(&self.store, request.into_inner()).await?;
        Ok(Response::new(response))
    }

    async fn verify(
        &self,
        request: Request<pb::VerifyAuditRequest>,
    ) -> Result<Response<pb::VerifyAuditResponse>, Status> {
        authorize_rpc(&self.roles, &request, Rpc::AuditVerify)?;
        let response = service::verify(&self.store, request.into_inner()).await?;
        Ok(Response::new(response))
    }
}
