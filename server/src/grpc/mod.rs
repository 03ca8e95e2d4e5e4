//! The gRPC adapters: the four API services of SPEC §3, plus health and reflection.
//!
//! [`routes`] serves them all; each adapter converts wire types, names the caller and hands
//! over to the domain.

pub mod admission;
pub mod approvals;
pub mod audit;
pub mod body;
pub mod call_limits;
pub mod connect;
mod convert;
pub mod metrics;
pub mod prometheus;
pub mod request;
pub mod status;
pub mod trace_context;

use std::sync::Arc;

use admission_contract::pb::{
    self, approvals_server::ApprovalsServer, audit_server::AuditServer,
    deploy_admission_server::DeployAdmissionServer, replay_admission_server::ReplayAdmissionServer,
};
use tonic::service::Routes;
use tonic_health::{pb::health_server::HealthServer, server::HealthService};

use tonic_health::server::HealthReporter;

use crate::{
    app::{admission::Engine, approvals::ApprovalService, settings::SharedSettings},
    identity::roles::{Role, RoleBindings},
    identity::tls::{Caller, caller},
    store::AuditStore,
};

pub use self::{
    admission::{DeployService, ReplayService},
    approvals::ApprovalsService,
    audit::AuditService,
    body::BodyGuard,
};

/// What the services are built over; the composition root assembles it.
#[derive(Clone)]
pub struct Services {
    /// The decision engine (Deploy and Replay admission).
    pub engine: Engine,
    /// The approval workflow.
    pub approvals: ApprovalService,
    /// The audit store the Audit service reads.
    pub store: AuditStore,
    /// The reloadable settings; their role bindings say who may call which RPC.
    pub settings: SharedSettings,
    /// The `grpc.health.v1.Health` statuses to serve.
    pub health: HealthReporter,
    /// The largest request message accepted, in bytes.
    pub max_request_bytes: usize,
    /// The metrics the operations listener serves.
    pub metrics: Arc<prometheus::Metrics>,
}

/// Every RPC of the API, for role checks (SPEC §2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rpc {
    /// DeployAdmission.Admit.
    DeployAdmit,
    /// DeployAdmission.Preview.
    DeployPreview,
    /// ReplayAdmission.Admit.
    ReplayAdmit,
    /// ReplayAdmission.Preview.
    ReplayPreview,
    /// Approvals.Create.
    ApprovalsCreate,
    /// Approvals.Decide.
    ApprovalsDecide,
    /// Approvals.Get.
    ApprovalsGet,
    /// Approvals.ListEligible.
    ApprovalsListEligible,
    /// Approvals.Revoke.
    ApprovalsRevoke,
    /// Audit.List.
    AuditList,
    /// Audit.Verify.
    AuditVerify,
    /// Audit.GetCheckpoint.
    AuditGetCheckpoint,
    /// Audit.ProveInclusion.
    AuditProveInclusion,
    /// Audit.ProveConsistency.
    AuditProveConsistency,
}

/// Why the router cannot be assembled.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the reflection service: {0}")]
pub struct RouterError(#[from] tonic_reflection::server::Error);

/// The routes: the four API services over `state`, `grpc.health.v1.Health`, and reflection in
/// both versions tools speak (`grpc.reflection.v1` and `v1alpha`, each listing the other), over
/// the API, health, and the `google.rpc` error details rejections carry.
pub fn routes(state: &Services) -> Result<Routes, RouterError> {
    Ok(api_routes(state)?.add_service(reflection_v1alpha()?))
}

/// The four API services, health and `grpc.reflection.v1`.
fn api_routes(state: &Services) -> Result<Routes, RouterError> {
    let health = HealthServer::new(HealthService::from_health_reporter(state.health.clone()));
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(pb::GOOGLE_RPC_FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    // Every API service reads its bodies through a guard, so a body that is not the RPC's
    // message is answered and audited as an invalid request rather than by tonic's decoder.
    // The largest request the limits allow, instead of the codec's 4 MiB default.
    let max = state.max_request_bytes;
    Ok(Routes::new(health)
        .add_service(reflection)
        .add_service(BodyGuard::new(
            DeployAdmissionServer::new(DeployService::new(
                state.engine.clone(),
                state.metrics.clone(),
            ))
            .max_decoding_message_size(max),
            state.engine.clone(),
            max,
        ))
        .add_service(BodyGuard::new(
            ReplayAdmissionServer::new(ReplayService::new(
                state.engine.clone(),
                state.metrics.clone(),
            ))
            .max_decoding_message_size(max),
            state.engine.clone(),
            max,
        ))
        .add_service(BodyGuard::new(
            ApprovalsServer::new(ApprovalsService::new(
                state.settings.clone(),
                state.approvals.clone(),
                state.metrics.clone(),
            ))
            .max_decoding_message_size(max),
            state.engine.clone(),
            max,
        ))
        .add_service(BodyGuard::new(
            AuditServer::new(AuditService::new(
                state.settings.clone(),
                state.store.clone(),
                state.engine.log().clone(),
                *state.engine.limits(),
            ))
            .max_decoding_message_size(max),
            state.engine.clone(),
            max,
        )))
}

/// `grpc.reflection.v1alpha` (grpcurl 1.8 and many IDEs speak only this version), over the same
/// descriptors as the v1 service in [`api_routes`].
fn reflection_v1alpha() -> Result<
    tonic_reflection::server::v1alpha::ServerReflectionServer<
        impl tonic_reflection::server::v1alpha::ServerReflection,
    >,
    RouterError,
> {
    Ok(tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(pb::GOOGLE_RPC_FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?)
}

/// Checks that the caller of `request` holds a role `rpc` needs, without an environment;
/// returns the caller for the handler to use.
pub fn authorize_rpc<T>(
    roles: &RoleBindings,
    request: &tonic::Request<T>,
    rpc: Rpc,
) -> Result<Caller, tonic::Status> {
    let caller = caller(request)?;
    roles.authorize_any(&caller.identity, rpc.roles(), None)?;
    Ok(caller)
}

// === impl Rpc ===

impl Rpc {
    /// Roles any one of which allows the call (SPEC §2).
    pub fn roles(self) -> &'static [Role] {
        match self {
            Rpc::DeployAdmit
            | Rpc::DeployPreview
            | Rpc::ReplayAdmit
            | Rpc::ReplayPreview
            | Rpc::ApprovalsCreate => &[Role::Orchestrator],
            Rpc::ApprovalsGet | Rpc::ApprovalsListEligible => &[Role::Orchestrator, Role::Reviewer],
            Rpc::ApprovalsDecide | Rpc::ApprovalsRevoke => &[Role::Reviewer],
            Rpc::AuditList
            | Rpc::AuditVerify
            | Rpc::AuditGetCheckpoint
            | Rpc::AuditProveConsistency => &[Role::Auditor],
            // An orchestrator only of its own decisions, checked once the entry is known.
            Rpc::AuditProveInclusion => &[Role::Auditor, Role::Orchestrator],
        }
    }

    /// `Service.Method` as written in SPEC §3.
    pub fn name(self) -> &'static str {
        match self {
            Rpc::DeployAdmit => "DeployAdmission.Admit",
            Rpc::DeployPreview => "DeployAdmission.Preview",
            Rpc::ReplayAdmit => "ReplayAdmission.Admit",
            Rpc::ReplayPreview => "ReplayAdmission.Preview",
            Rpc::ApprovalsCreate => "Approvals.Create",
            Rpc::ApprovalsDecide => "Approvals.Decide",
            Rpc::ApprovalsGet => "Approvals.Get",
            Rpc::ApprovalsListEligible => "Approvals.ListEligible",
            Rpc::ApprovalsRevoke => "Approvals.Revoke",
            Rpc::AuditList => "Audit.List",
            Rpc::AuditVerify => "Audit.Verify",
            Rpc::AuditGetCheckpoint => "Audit.GetCheckpoint",
            Rpc::AuditProveInclusion => "Audit.ProveInclusion",
            Rpc::AuditProveConsistency => "Audit.ProveConsistency",
        }
    }
}
