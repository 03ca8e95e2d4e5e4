//! The operations listener (`[ops] listen`): plain HTTP/1.1 and h2c, no TLS, no client
//! certificate, for probes and scrapes only.
//!
//! It serves `GET /healthz` (200 while the process runs), `GET /readyz` (200 when the audit
//! store is writable and the key set is loaded, else 503 saying why), `GET /metrics`
//! (Prometheus/OpenMetrics text) and `grpc.health.v1.Health` from the same reporter as the API
//! port. Nothing else: an admission RPC sent here is answered UNIMPLEMENTED, any other path
//! 404. Connections, header sizes, calls per connection and request time are bounded.

use std::{
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use axum::{Router, routing::get};
use futures::Stream;
use http::{HeaderValue, StatusCode, header};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore},
};
use tonic::{
    service::Routes,
    transport::server::{Connected, TcpConnectInfo},
};
use tonic_health::{pb::health_server::HealthServer, server::HealthService};

use crate::{
    grpc::prometheus::{self, RefusedHandshakes},
    runtime::state::{AppState, ServeError},
};

/// Connections the listener holds open at once; more wait in the kernel's accept queue.
const MAX_CONNECTIONS: usize = 64;
/// Requests one HTTP/2 connection may have in flight.
const MAX_CALLS_PER_CONNECTION: usize = 8;
/// Largest HTTP/2 header list accepted, in bytes.
const MAX_HEADER_LIST_BYTES: u32 = 16 * 1024;
/// Time one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections are closed (gracefully) after this long, so idle keep-alives free their slot.
const MAX_CONNECTION_AGE: Duration = Duration::from_secs(60);

/// Why `/readyz` answers 503.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotReady {
    /// The audit store cannot make entries durable.
    AuditStore,
    /// The key set holds no key.
    KeySet,
}

/// An accepted connection, holding its slot of [`MAX_CONNECTIONS`] until dropped.
struct Slotted {
    stream: TcpStream,
    _slot: OwnedSemaphorePermit,
}

// === impl NotReady ===

impl NotReady {
    fn message(self) -> &'static str {
        match self {
            NotReady::AuditStore => "not ready: the audit store is not writable\n",
            NotReady::KeySet => "not ready: the key set holds no key\n",
        }
    }
}

/// Ready when the audit store is writable and the key set is loaded.
pub fn readiness(state: &AppState) -> Result<(), NotReady> {
    if !*state.store().health().borrow() {
        return Err(NotReady::AuditStore);
    }
    if state.settings().current().keys.is_empty() {
        return Err(NotReady::KeySet);
    }
    Ok(())
}

/// Binds the operations listener.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })
}

/// Serves the operations endpoints on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    match listener.local_addr() {
        Ok(addr) => tracing::info!(%addr, "operations listener serving"),
        Err(error) => tracing::info!(%error, "operations listener serving (address unknown)"),
    }
    tonic::transport::Server::builder()
        .accept_http1(true)
        .concurrency_limit_per_connection(MAX_CALLS_PER_CONNECTION)
        .http2_max_header_list_size(MAX_HEADER_LIST_BYTES)
        .timeout(REQUEST_TIMEOUT)
        .max_connection_age(MAX_CONNECTION_AGE)
        .add_routes(routes(state))
        .serve_with_incoming_shutdown(slotted(listener), shutdown)
        .await?;
    Ok(())
}

/// `/healthz`, `/readyz`, `/metrics`, `grpc.health.v1.Health`, and a fallback that refuses
/// everything else.
fn routes(state: AppState) -> Routes {
    let health = HealthServer::new(HealthService::from_health_reporter(
        state.health().reporter(),
    ));
    let ready = state.clone();
    let router: Router = Routes::new(health)
        .into_axum_router()
        .route("/healthz", get(|| async { (StatusCode::OK, "ok\n") }))
        .route("/readyz", get(move || async move { readyz(&ready) }))
        .route("/metrics", get(move || async move { metrics(&state) }))
        .fallback(not_served);
    Routes::from(router)
}

fn readyz(state: &AppState) -> (StatusCode, &'static str) {
    match readiness(state) {
        Ok(()) => (StatusCode::OK, "ready\n"),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, why.message()),
    }
}

fn metrics(state: &AppState) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let handshakes = state.transport().handshakes();
    let refused = RefusedHandshakes {
        failed: handshakes.failed,
        shed: handshakes.shed,
        per_address: handshakes.refused_per_address,
        per_identity: handshakes.refused_per_identity,
    };
    let exposition = state.metrics();
    exposition.observe_transport(refused, state.call_limits().calls_in_flight_total());
    exposition.observe_checkpoint_write_failures(state.engine().log().checkpoint_write_failures());
    match exposition.encode() {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(prometheus::CONTENT_TYPE),
            )],
            text,
        )
            .into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "cannot encode metrics\n").into_response(),
    }
}

/// gRPC calls other than health are UNIMPLEMENTED here; other HTTP requests are 404.
async fn not_served(request: http::Request<axum::body::Body>) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let grpc = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/grpc"));
    if grpc {
        tonic::Status::unimplemented("the operations listener serves only grpc.health.v1.Health")
            .into_http::<axum::body::Body>()
            .into_response()
    } else {
        (
            StatusCode::NOT_FOUND,
            "not found: this listener serves /healthz, /readyz and /metrics\n",
        )
            .into_response()
    }
}

/// Accepted connections, at most [`MAX_CONNECTIONS`] open at once.
fn slotted(listener: TcpListener) -> impl Stream<Item = io::Result<Slotted>> {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    futures::stream::unfold((listener, slots), |(listener, slots)| async move {
        // The semaphore is never closed, so acquiring only waits.
        let slot = slots.clone().acquire_owned().await.ok()?;
        let accepted = listener.accept().await.map(|(stream, _)| Slotted {
            stream,
            _slot: slot,
        });
        Some((accepted, (listener, slots)))
    })
}

// === impl Slotted ===

impl Connected for Slotted {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for Slotted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Slotted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
