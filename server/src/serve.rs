//! Server assembly: the shared state, the router, and serving with graceful shutdown.

use std::{future::Future, io, net::SocketAddr, sync::Arc};

use admission_contract::pb::{
    approvals_server::{Approvals, ApprovalsServer},
    audit_server::{Audit, AuditServer},
    deploy_admission_server::{DeployAdmission, DeployAdmissionServer},
    replay_admission_server::{ReplayAdmission, ReplayAdmissionServer},
};
use tokio::net::TcpListener;
use tonic::server::NamedService;
use tonic_health::{ServingStatus, server::HealthReporter};

use crate::{
    config::Config,
    grpc::{self, Api, RouterError},
    roles::RoleBindings,
    tls::{self, AcceptSettings, TransportMetrics},
};

/// What every service shares: the config, role bindings, health, transport metrics.
#[derive(Clone, Debug)]
pub struct AppState {
    config: Arc<Config>,
    roles: Arc<RoleBindings>,
    health: Health,
    transport: TransportMetrics,
}

/// The `grpc.health.v1.Health` statuses: the overall status (`""`) and one per API service.
#[derive(Clone, Debug)]
pub struct Health {
    reporter: HealthReporter,
}

/// Why the server stopped or could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The configured address.
        addr: SocketAddr,
        /// The bind error.
        source: io::Error,
    },
    /// The router could not be assembled.
    #[error(transparent)]
    Router(#[from] RouterError),
    /// The gRPC server failed.
    #[error("grpc server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// The fully-qualified names of the API services, as health and reflection report them.
pub const API_SERVICE_NAMES: [&str; 4] = [
    <DeployAdmissionServer<grpc::Unimplemented> as NamedService>::NAME,
    <ReplayAdmissionServer<grpc::Unimplemented> as NamedService>::NAME,
    <ApprovalsServer<grpc::Unimplemented> as NamedService>::NAME,
    <AuditServer<grpc::Unimplemented> as NamedService>::NAME,
];

// === impl AppState ===

impl AppState {
    /// State for `config`; health starts SERVING.
    pub async fn new(config: Config) -> Self {
        let health = Health::new();
        health.set_serving(true).await;
        Self {
            roles: Arc::new(config.roles.clone()),
            config: Arc::new(config),
            health,
            transport: TransportMetrics::new(),
        }
    }

    /// The loaded configuration.
    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    /// The role bindings.
    pub fn roles(&self) -> Arc<RoleBindings> {
        self.roles.clone()
    }

    /// The health statuses; the audit store flips them while it is unhealthy.
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// TLS handshake counters.
    pub fn transport(&self) -> &TransportMetrics {
        &self.transport
    }
}

// === impl Health ===

impl Health {
    fn new() -> Self {
        Self {
            reporter: HealthReporter::new(),
        }
    }

    /// Reports SERVING or NOT_SERVING for the server as a whole and every API service.
    pub async fn set_serving(&self, serving: bool) {
        let status = if serving {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        self.reporter.set_service_status("", status).await;
        for name in API_SERVICE_NAMES {
            self.reporter.set_service_status(name, status).await;
        }
    }

    /// The reporter the health service reads from.
    pub fn reporter(&self) -> HealthReporter {
        self.reporter.clone()
    }
}

// === serving ===

/// Binds `config.listen` and serves until `shutdown` completes.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), ServeError> {
    let addr = config.listen;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    let state = AppState::new(config).await;
    tracing::info!(addr = %listener.local_addr().unwrap_or(addr), "serving");
    serve_with_listener(listener, state, shutdown).await
}

/// Serves the API services of this build on an already-bound listener.
pub async fn serve_with_listener(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let api = grpc::services(&state);
    serve_api(listener, state, api, shutdown).await
}

/// Serves `api` on an already-bound listener until `shutdown` completes; calls in flight
/// then finish before this returns.
pub async fn serve_api<D, R, A, U>(
    listener: TcpListener,
    state: AppState,
    api: Api<D, R, A, U>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError>
where
    D: DeployAdmission,
    R: ReplayAdmission,
    A: Approvals,
    U: Audit,
{
    let routes = api.into_routes(&state)?;
    let limits = &state.config.limits;
    let incoming = tls::incoming(
        listener,
        state.config.server_tls.clone(),
        AcceptSettings {
            handshake_timeout: limits.handshake_timeout,
            max_pending_handshakes: limits.max_pending_handshakes,
        },
        state.transport.clone(),
    );
    tonic::transport::Server::builder()
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await?;
    tracing::info!("server stopped");
    Ok(())
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only SIGINT stops the server");
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
    tracing::info!("shutdown requested; finishing calls in flight");
}
