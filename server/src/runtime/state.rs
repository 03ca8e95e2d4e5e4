//! What every service shares (the config, reloadable settings, TLS, the audit store, the
//! decision engine, health and metrics), and the errors of serving it.

use std::{io, net::SocketAddr, sync::Arc};

use admission_contract::pb::{
    approvals_server::ApprovalsServer, audit_server::AuditServer,
    deploy_admission_server::DeployAdmissionServer, replay_admission_server::ReplayAdmissionServer,
};
use tokio::sync::watch;
use tonic::server::NamedService;
use tonic_health::{ServingStatus, server::HealthReporter};

use crate::{
    app::admission::Engine,
    app::approvals::ApprovalService,
    app::settings::SharedSettings,
    app::transparency::TransparencyLog,
    grpc::call_limits::CallLimits,
    grpc::connect::SchemaError,
    grpc::prometheus::Metrics,
    grpc::{self, RouterError},
    identity::roles::RoleBindings,
    identity::tls::{ServerTls, TransportMetrics},
    runtime::config::Config,
    runtime::reload::{self, Reloader},
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
            config.limits.max_in_flight_decisions,
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
