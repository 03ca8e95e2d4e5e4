//! Server assembly: the router over the shared state ([`AppState`]), and serving with
//! graceful shutdown.

use std::future::Future;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::{
    grpc,
    grpc::call_limits::CallLimitsLayer,
    grpc::connect::{ConnectBodyLayer, ConnectLayer, Schema},
    identity::tls::{self, AcceptSettings},
    runtime::state::{AppState, ServeError},
    runtime::watch::start_reloading,
    runtime::{checkpoints, config::Config, ops},
};

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
    start_reloading(state.reloader(), state.config());
    let (stop, stopped) = watch::channel(false);
    checkpoints::start(
        state.engine().log().clone(),
        state.store().clone(),
        state.config().log.checkpoint_interval,
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
    let limits = &state.config().limits;
    let incoming = tls::incoming(
        listener,
        state.tls().clone(),
        AcceptSettings {
            handshake_timeout: limits.handshake_timeout,
            max_pending_handshakes: limits.max_pending_handshakes,
            max_pending_handshakes_per_address: limits.max_pending_handshakes_per_address,
            idle_timeout: limits.idle_timeout,
            max_connections_per_identity: limits.max_connections_per_identity,
        },
        state.transport().clone(),
    );
    tonic::transport::Server::builder()
        .max_concurrent_streams(limits.max_concurrent_streams)
        .http2_keepalive_interval(Some(limits.keepalive_interval))
        .http2_keepalive_timeout(Some(limits.keepalive_timeout))
        // Connect calls (HTTP/JSON) are checked and answered outside the call limits, and
        // their bodies become gRPC messages inside them, metered as they arrive.
        .layer(ConnectLayer::new(Schema::load()?))
        .layer(CallLimitsLayer::new(state.call_limits().clone()))
        .layer(ConnectBodyLayer::new(
            state.engine().clone(),
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
