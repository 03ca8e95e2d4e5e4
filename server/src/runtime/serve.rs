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
    app::settings::SharedSettings,
    app::transparency::TransparencyLog,
    grpc::call_limits::{CallLimits, CallLimitsLayer},
    grpc::connect::{ConnectBodyLayer, ConnectLayer, Schema, SchemaError},
    grpc::prometheus::Metrics,
    grpc::{self, RouterError},
    identity::roles::RoleBindings,
    identity::tls::{self, AcceptSettings, ServerTls, TransportMetrics},
    runtime::reload::{self, Reloader},
    runtime::watch::start_reloading,
    runtime::{checkpoints, config::Config, ops},
    store::{AuditStore, StoreError, StoreOptions},
};

/// What every service shares: the config, the reloadable settings and TLS configuration, the
/// audit store and the decision engine built over them, health, transport metrics.
#[derive(Clone)]
pub struct AppState {
    config: Arc<Config>,
    settings: SharedSettings,
    tls: ServerTls,
    store: AuditStore,
    engine: Engine,
    approvals: ApprovalService,
    health: Health,
    transport: TransportMetrics,
    call_limits: Arc<CallLimits>,
    metrics: Arc<Metrics>,
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
    /// The descriptors of the HTTP/JSON mapping do not load.
    #[error(transparent)]
    Schema(#[from] SchemaError),
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
        let metrics = Arc::new(Metrics::new());
        let options = StoreOptions {
            durable_timeout: config.audit.durable_timeout,
            commit_observer: Some(metrics.clone()),
            queue_capacity: config.limits.max_queued_audit_appends,
            max_queue_wait: config.limits.max_audit_queue_wait,
            ..StoreOptions::default()
        };
        let store = AuditStore::open(&config.database_url, options).await?;
        let settings = SharedSettings::new(reload::settings_of(&config));
        let limits = config.limits.request_limits();
        let engine = Engine::new(
            settings.clone(),
            store.clone(),
            Arc::new(TransparencyLog::new(
                config.log.key.clone(),
                config.log.checkpoint_dir.clone(),
            )),
            limits,
            MAX_IN_FLIGHT_DECISIONS,
        );
        let approvals = ApprovalService::new(settings.clone(), store.clone(), limits);
        let health = Health::new();
        health.set_serving(*store.health().borrow()).await;
        health.follow(store.health());
        Ok(Self {
            tls: ServerTls::new(config.server_tls.clone()),
            settings,
            call_limits: CallLimits::new(config.limits.call_settings()),
            config: Arc::new(config),
            store,
            engine,
            approvals,
            health,
            transport: TransportMetrics::new(),
            metrics,
        })
    }

    /// What the gRPC services are built over.
    pub fn services(&self) -> grpc::Services {
        grpc::Services {
            engine: self.engine.clone(),
            approvals: self.approvals.clone(),
            store: self.store.clone(),
            settings: self.settings.clone(),
            health: self.health.reporter(),
            max_request_bytes: self.config.limits.max_request_bytes(),
            metrics: self.metrics.clone(),
        }
    }

    /// The metrics the operations listener serves; `record_reload` counts config reloads.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
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

    /// The configuration as loaded at start; what a reload changes is in [`Self::settings`]
    /// and [`Self::tls`].
    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    /// The role bindings in force now.
    pub fn roles(&self) -> Arc<RoleBindings> {
        self.settings.current().roles.clone()
    }

    /// The reloadable settings: policies, roles, key set, signing key.
    pub fn settings(&self) -> &SharedSettings {
        &self.settings
    }

    /// The TLS configuration new connections use.
    pub fn tls(&self) -> &ServerTls {
        &self.tls
    }

    /// A reloader of the whole config file into this state.
    pub fn reloader(&self) -> Reloader {
        Reloader::new(
            &self.config,
            self.settings.clone(),
            self.tls.clone(),
            self.store.clone(),
            self.metrics.clone(),
        )
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

/// Binds `[ops] listen` when configured, then serves as [`run_with`] does: opens the store,
/// starts reloading the whole config on SIGHUP (and on file changes with `[reload] watch`) and
/// serves on `listener` until `shutdown` completes.
pub async fn run_on(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let ops_listener = match config.ops {
        Some(ops) => Some(ops::bind(ops.listen).await?),
        None => None,
    };
    run_with(listener, ops_listener, config, shutdown).await
}

/// Opens the store, starts the SIGHUP key-set reloader and serves the API on `listener` (and
/// the operations endpoints on `ops_listener`) until `shutdown` completes.
pub async fn run_with(
    listener: TcpListener,
    ops_listener: Option<TcpListener>,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let addr = listener.local_addr().unwrap_or(config.listen);
    let state = AppState::new(config).await?;
    start_reloading(state.reloader(), &state.config);
    let (stop, stopped) = watch::channel(false);
    checkpoints::start(
        state.engine.log().clone(),
        state.store.clone(),
        state.config.log.checkpoint_interval,
        stopped.clone(),
    );
    let ops_task = ops_listener.map(|ops_listener| {
        let mut stopped = stopped.clone();
        let until_stopped = async move {
            // An error means the sender is gone, which is a stop too.
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        tokio::spawn(ops::serve(ops_listener, state.clone(), until_stopped))
    });
    tracing::info!(%addr, "serving");
    let served = serve_with_listener(listener, state, async {
        shutdown.await;
        stop.send_replace(true);
    })
    .await;
    stop.send_replace(true);
    if let Some(task) = ops_task {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::error!(%error, "operations listener failed"),
            Err(error) => tracing::error!(%error, "operations listener task failed"),
        }
    }
    served
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
        state.tls.clone(),
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
        // Connect calls (HTTP/JSON) are checked and answered outside the call limits, and
        // their bodies become gRPC messages inside them, metered as they arrive.
        .layer(ConnectLayer::new(Schema::load()?))
        .layer(CallLimitsLayer::new(state.call_limits.clone()))
        .layer(ConnectBodyLayer::new(
            state.engine.clone(),
            limits.max_request_bytes(),
        ))
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
