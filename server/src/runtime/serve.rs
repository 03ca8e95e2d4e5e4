//! Server assembly: the shared state, the router, and serving with graceful shutdown.

use std::{future::Future, io, net::SocketAddr, sync::Arc};

use admission_contract::pb::{
    approvals_server::ApprovalsServer, audit_server::AuditServer,
    deploy_admission_server::DeployAdmissionServer, replay_admission_server::ReplayAdmissionServer,
};
use tokio::net::TcpListener;
use tonic::server::NamedService;
use tonic_health::{ServingStatus, server::HealthReporter};

use tokio::sync::watch;

use crate::{
    app::admission::Engine,
    app::approvals::ApprovalService,
    grpc::call_limits::{CallLimits, CallLimitsLayer},
    grpc::{self, RouterError},
    identity::roles::RoleBindings,
    identity::tls::{self, AcceptSettings, TransportMetrics},
    runtime::config::Config,
    store::{AuditStore, StoreError, StoreOptions},
};

/// What every service shares: the config, role bindings, the audit store and the decision
/// engine built over them, health, transport metrics.
#[derive(Clone)]
pub struct AppState {
    config: Arc<Config>,
    roles: Arc<RoleBindings>,
    store: AuditStore,
    engine: Engine,
    approvals: ApprovalService,
    health: Health,
    transport: TransportMetrics,
    call_limits: Arc<CallLimits>,
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
    /// The audit store could not be opened.
    #[error("database_url: {0}")]
    Store(#[from] StoreError),
}

/// The fully-qualified names of the API services, as health and reflection report them.
pub const API_SERVICE_NAMES: [&str; 4] = [
    <DeployAdmissionServer<grpc::DeployService> as NamedService>::NAME,
    <ReplayAdmissionServer<grpc::ReplayService> as NamedService>::NAME,
    <ApprovalsServer<grpc::ApprovalsService> as NamedService>::NAME,
    <AuditServer<grpc::AuditService> as NamedService>::NAME,
];

/// Decisions evaluated at once before new ones are refused with OVERLOADED (SPEC §7 row 27).
const MAX_IN_FLIGHT_DECISIONS: usize = 4096;

// === impl AppState ===

impl AppState {
    /// State for `config`: opens (and migrates) the audit store; health follows the store.
    pub async fn new(config: Config) -> Result<Self, ServeError> {
        let options = StoreOptions {
            durable_timeout: config.audit.durable_timeout,
            queue_capacity: config.limits.max_queued_audit_appends,
            max_queue_wait: config.limits.max_audit_queue_wait,
            ..StoreOptions::default()
        };
        let store = AuditStore::open(&config.database_url, options).await?;
        let roles = Arc::new(config.roles.clone());
        let limits = config.limits.request_limits();
        let engine = Engine::new(
            config.policies.clone(),
            roles.clone(),
            config.key_ring.clone(),
            store.clone(),
            limits,
            MAX_IN_FLIGHT_DECISIONS,
        );
        let approvals = ApprovalService::new(
            config.policies.clone(),
            roles.clone(),
            store.clone(),
            config.signing.as_ref().map(|s| s.key.clone()),
            limits,
        );
        let health = Health::new();
        health.set_serving(*store.health().borrow()).await;
        health.follow(store.health());
        Ok(Self {
            roles,
            call_limits: CallLimits::new(config.limits.call_settings()),
            config: Arc::new(config),
            store,
            engine,
            approvals,
            health,
            transport: TransportMetrics::new(),
        })
    }

    /// What the gRPC services are built over.
    pub fn services(&self) -> grpc::Services {
        grpc::Services {
            engine: self.engine.clone(),
            approvals: self.approvals.clone(),
            store: self.store.clone(),
            roles: self.roles.clone(),
            health: self.health.reporter(),
            max_request_bytes: self.config.limits.max_request_bytes(),
        }
    }

    /// The audit store.
    pub fn store(&self) -> &AuditStore {
        &self.store
    }

    /// The decision engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The approval lifecycle.
    pub fn approvals(&self) -> &ApprovalService {
        &self.approvals
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

    /// The per-call limits: buffer budget and calls per identity.
    pub fn call_limits(&self) -> &Arc<CallLimits> {
        &self.call_limits
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

    /// Mirrors the audit store's health: NOT_SERVING while it cannot make entries durable.
    fn follow(&self, mut store_health: watch::Receiver<bool>) {
        let health = self.clone();
        tokio::spawn(async move {
            while store_health.changed().await.is_ok() {
                let healthy = *store_health.borrow_and_update();
                if healthy {
                    tracing::info!("audit store recovered; reporting SERVING");
                } else {
                    tracing::warn!("audit store is failing; reporting NOT_SERVING");
                }
                health.set_serving(healthy).await;
            }
        });
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
    run_on(listener, config, shutdown).await
}

/// Opens the store, starts the SIGHUP key-set reloader and serves on `listener` until
/// `shutdown` completes.
pub async fn run_on(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let addr = listener.local_addr().unwrap_or(config.listen);
    let state = AppState::new(config).await?;
    #[cfg(unix)]
    if let Err(error) = state.config.key_ring.clone().spawn_sighup_reloader() {
        tracing::warn!(%error, "cannot listen for SIGHUP; the key set reloads only on restart");
    }
    tracing::info!(%addr, "serving");
    serve_with_listener(listener, state, shutdown).await
}

/// Serves the API on an already-bound listener until `shutdown` completes; calls in flight
/// then finish before this returns.
pub async fn serve_with_listener(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let routes = grpc::routes(&state.services())?;
    let limits = &state.config.limits;
    let incoming = tls::incoming(
        listener,
        state.config.server_tls.clone(),
        AcceptSettings {
            handshake_timeout: limits.handshake_timeout,
            max_pending_handshakes: limits.max_pending_handshakes,
            max_pending_handshakes_per_address: limits.max_pending_handshakes_per_address,
            idle_timeout: limits.idle_timeout,
            max_connections_per_identity: limits.max_connections_per_identity,
        },
        state.transport.clone(),
    );
    tonic::transport::Server::builder()
        .max_concurrent_streams(limits.max_concurrent_streams)
        .http2_keepalive_interval(Some(limits.keepalive_interval))
        .http2_keepalive_timeout(Some(limits.keepalive_timeout))
        .layer(CallLimitsLayer::new(state.call_limits.clone()))
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
