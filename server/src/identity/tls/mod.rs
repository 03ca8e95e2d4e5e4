//! mTLS transport and caller identity (SPEC §2).
//!
//! Connections are accepted on a plain `TcpListener`; every TLS handshake runs in its own task
//! with a deadline, so a slow or silent client never holds up the others. The accept loop never
//! waits for a free handshake slot: a source address with too many handshakes in progress is
//! refused, and when every slot is taken the oldest pending handshake is dropped for the
//! newcomer, so idle sockets cannot lock legitimate clients out. Only connections whose client
//! certificate chains to the client CA (and is not revoked) are handed to tonic, each carrying
//! the [`Caller`] read once from its leaf certificate and a [`ConnectionActivity`] that closes
//! the connection once it has had no call in flight for the idle timeout.

use std::{
    collections::{BTreeMap, HashMap},
    fmt, io,
    net::IpAddr,
    pin::Pin,
    sync::{Arc, Mutex, PoisonError},
    task::{Context, Poll},
    time::Duration,
};

use futures::{Stream, task::AtomicWaker};
use rustls::ServerConfig;
use sha2::{Digest, Sha256};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{mpsc, oneshot, watch},
    time::{Instant, Sleep},
};
use tokio_rustls::{TlsAcceptor, server::TlsStream};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

mod material;

pub use material::{TlsConfigError, TlsMaterial, TlsPaths, server_config};

/// A caller identity: the first URI SAN, else the first DNS SAN, else the subject CN.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identity(String);

/// Who is calling: the identity and the SHA-256 fingerprint of the client certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The caller identity roles are matched on.
    pub identity: Identity,
    /// 64 lowercase hex digits of SHA-256 over the leaf certificate DER.
    pub cert_sha256: String,
}

/// A TLS stream whose client certificate was verified, with the caller it names. Reading ends
/// once the connection has had no call in flight for the idle timeout.
#[derive(Debug)]
pub struct AuthenticatedStream {
    inner: TlsStream<TcpStream>,
    connection: ConnectionInfo,
    idle: IdleDeadline,
    /// Counts this connection against its caller's connection cap while it is open.
    _slot: IdentitySlot,
}

/// What every request on a connection carries: its caller and its activity.
#[derive(Clone, Debug)]
pub struct ConnectionInfo {
    caller: Caller,
    activity: Arc<ConnectionActivity>,
}

/// Calls in flight on one connection, and since when it has had none.
#[derive(Debug)]
pub struct ConnectionActivity {
    state: Mutex<ActivityState>,
    /// The connection's reader, woken when the last call ends so it re-arms its idle deadline.
    reader: AtomicWaker,
}

/// One call in flight on a connection; dropping it ends the call.
#[derive(Debug)]
pub struct CallActivity {
    activity: Arc<ConnectionActivity>,
}

#[derive(Debug)]
struct ActivityState {
    calls: usize,
    idle_since: Instant,
}

#[derive(Debug)]
struct IdleDeadline {
    timeout: Duration,
    sleep: Pin<Box<Sleep>>,
}

/// Counts of TLS handshakes, for operators and for tests that must know a connection was
/// refused before any RPC ran.
#[derive(Clone, Debug)]
pub struct TransportMetrics {
    counts: Arc<watch::Sender<HandshakeCounts>>,
    connections: Arc<PerIdentity>,
}

/// A count per caller identity of something each holds (calls, connections), with a cap.
#[derive(Debug, Default)]
pub struct PerIdentity {
    counts: Mutex<HashMap<Identity, usize>>,
}

/// One unit counted against an identity in a [`PerIdentity`] until dropped.
#[derive(Debug)]
pub struct IdentitySlot {
    owner: Arc<PerIdentity>,
    identity: Identity,
}

/// Handshake totals since start, and the handshakes in progress now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HandshakeCounts {
    /// Connections that completed mTLS and were handed to the gRPC server.
    pub established: u64,
    /// Connections refused: handshake error, timeout, or a certificate without an identity.
    pub failed: u64,
    /// Pending handshakes dropped to make room for a newer connection.
    pub shed: u64,
    /// Connections closed unread because their source address had too many handshakes pending.
    pub refused_per_address: u64,
    /// Connections closed after the handshake because their caller had too many open.
    pub refused_per_identity: u64,
    /// Handshakes in progress now.
    pub pending: u64,
}

/// Settings of the accept loop.
#[derive(Clone, Debug)]
pub struct AcceptSettings {
    /// Deadline for one TLS handshake.
    pub handshake_timeout: Duration,
    /// Handshakes in progress at once; when full, the oldest is dropped for a newcomer.
    pub max_pending_handshakes: usize,
    /// Handshakes in progress at once from one source address; more are refused.
    pub max_pending_handshakes_per_address: usize,
    /// An established connection without a call in flight for this long is closed.
    pub idle_timeout: Duration,
    /// Connections one caller identity may hold open at once; more are closed.
    pub max_connections_per_identity: usize,
}

/// How one accepted connection ended its time in the accept loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum HandshakeOutcome {
    Established,
    Failed,
    Shed,
    RefusedPerAddress,
    RefusedPerIdentity,
}

/// Why a connection was not handed to the gRPC server.
#[derive(Debug)]
enum Refusal {
    /// The handshake failed, timed out, or the certificate names no identity.
    Handshake(String),
    /// The caller already holds its share of connections.
    TooManyConnections(Identity),
}

/// The handshakes in progress, oldest first, with a count per source address.
#[derive(Debug)]
struct PendingHandshakes {
    next_id: u64,
    by_age: BTreeMap<u64, PendingHandshake>,
    per_address: HashMap<IpAddr, usize>,
    max_total: usize,
    max_per_address: usize,
}

#[derive(Debug)]
struct PendingHandshake {
    address: IpAddr,
    /// Dropping it cancels the handshake task.
    _cancel: oneshot::Sender<()>,
}

// === impl Identity ===

impl Identity {
    /// Wraps an identity string.
    pub fn new(identity: impl Into<String>) -> Self {
        Self(identity.into())
    }

    /// The identity text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

// === impl Caller ===

impl Caller {
    /// Reads the caller from a DER leaf certificate; `None` when it names no identity.
    pub fn from_certificate(der: &[u8]) -> Option<Self> {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        let identity = certificate_identity(&cert)?;
        Some(Self {
            identity: Identity(identity),
            cert_sha256: hex::encode(Sha256::digest(der)),
        })
    }
}

fn certificate_identity(cert: &X509Certificate<'_>) -> Option<String> {
    let names = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| san.value.general_names.clone())
        .unwrap_or_default();
    let uri = names.iter().find_map(|name| match name {
        GeneralName::URI(uri) => Some(*uri),
        _ => None,
    });
    let dns = || {
        names.iter().find_map(|name| match name {
            GeneralName::DNSName(dns) => Some(*dns),
            _ => None,
        })
    };
    let common_name = || {
        cert.subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
    };
    uri.or_else(dns)
        .or_else(common_name)
        .filter(|identity| !identity.is_empty())
        .map(str::to_owned)
}

/// The caller of a request, as read from its connection's client certificate.
pub fn caller<T>(request: &tonic::Request<T>) -> Result<Caller, tonic::Status> {
    caller_of(request.extensions())
        .cloned()
        .ok_or_else(|| tonic::Status::unauthenticated("the connection carries no client identity"))
}

/// The caller a request's extensions name: from the connection's info, or set on its own.
pub fn caller_of(extensions: &http::Extensions) -> Option<&Caller> {
    extensions
        .get::<ConnectionInfo>()
        .map(|connection| &connection.caller)
        .or_else(|| extensions.get::<Caller>())
}

// === impl AuthenticatedStream ===

impl AuthenticatedStream {
    /// The caller this connection authenticated as.
    pub fn caller(&self) -> &Caller {
        &self.connection.caller
    }
}

impl Connected for AuthenticatedStream {
    type ConnectInfo = ConnectionInfo;

    fn connect_info(&self) -> ConnectionInfo {
        self.connection.clone()
    }
}

impl AsyncRead for AuthenticatedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let ready @ Poll::Ready(_) = Pin::new(&mut this.inner).poll_read(cx, buf) {
            return ready;
        }
        if this.idle.expired(&this.connection.activity, cx) {
            tracing::debug!(caller = %this.connection.caller.identity, "closing idle connection");
            // End of stream: the HTTP/2 connection closes with no call in flight.
            return Poll::Ready(Ok(()));
        }
        Poll::Pending
    }
}

impl AsyncWrite for AuthenticatedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

// === impl PerIdentity ===

impl PerIdentity {
    /// Counts one more for `identity` unless it already holds `max`.
    pub fn begin(self: &Arc<Self>, identity: &Identity, max: usize) -> Option<IdentitySlot> {
        let mut counts = self.lock();
        let count = counts.entry(identity.clone()).or_insert(0);
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(IdentitySlot {
            owner: self.clone(),
            identity: identity.clone(),
        })
    }

    /// How many `identity` holds now.
    pub fn count(&self, identity: &Identity) -> usize {
        self.lock().get(identity).copied().unwrap_or(0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Identity, usize>> {
        // Every update leaves the counts consistent, so a panic elsewhere cannot corrupt them.
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for IdentitySlot {
    fn drop(&mut self) {
        let mut counts = self.owner.lock();
        if let Some(count) = counts.get_mut(&self.identity) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(&self.identity);
            }
        }
    }
}

// === impl ConnectionInfo ===

impl ConnectionInfo {
    /// The caller the connection authenticated as.
    pub fn caller(&self) -> &Caller {
        &self.caller
    }

    /// The connection's call activity.
    pub fn activity(&self) -> &Arc<ConnectionActivity> {
        &self.activity
    }
}

// === impl ConnectionActivity ===

impl ConnectionActivity {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(ActivityState {
                calls: 0,
                idle_since: Instant::now(),
            }),
            reader: AtomicWaker::new(),
        })
    }

    /// Counts a call in flight until the returned guard is dropped.
    pub fn begin_call(self: &Arc<Self>) -> CallActivity {
        self.lock().calls += 1;
        CallActivity {
            activity: self.clone(),
        }
    }

    /// Since when the connection has had no call in flight; `None` while one is.
    fn idle_since(&self) -> Option<Instant> {
        let state = self.lock();
        (state.calls == 0).then_some(state.idle_since)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ActivityState> {
        // The state stays consistent whatever panicked while holding the lock.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for CallActivity {
    fn drop(&mut self) {
        let mut state = self.activity.lock();
        state.calls = state.calls.saturating_sub(1);
        if state.calls == 0 {
            state.idle_since = Instant::now();
            drop(state);
            self.activity.reader.wake();
        }
    }
}

// === impl IdleDeadline ===

impl IdleDeadline {
    fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            sleep: Box::pin(tokio::time::sleep(timeout)),
        }
    }

    /// Whether the connection has had no call in flight for the timeout; otherwise arranges
    /// for `cx` to be woken when that may change.
    fn expired(&mut self, activity: &ConnectionActivity, cx: &mut Context<'_>) -> bool {
        activity.reader.register(cx.waker());
        let Some(idle_since) = activity.idle_since() else {
            return false;
        };
        let deadline = idle_since + self.timeout;
        if self.sleep.deadline() != deadline {
            self.sleep.as_mut().reset(deadline);
        }
        self.sleep.as_mut().poll(cx).is_ready()
    }
}

// === impl PendingHandshakes ===

impl PendingHandshakes {
    fn new(settings: &AcceptSettings) -> Self {
        Self {
            next_id: 0,
            by_age: BTreeMap::new(),
            per_address: HashMap::new(),
            max_total: settings.max_pending_handshakes,
            max_per_address: settings.max_pending_handshakes_per_address,
        }
    }

    /// Registers a handshake from `address`: `None` when that address is at its cap; else its
    /// id, its cancellation, and whether the oldest handshake was shed to make room.
    fn admit(&mut self, address: IpAddr) -> Option<(u64, oneshot::Receiver<()>, bool)> {
        if self.per_address.get(&address).copied().unwrap_or(0) >= self.max_per_address {
            return None;
        }
        let oldest = self.by_age.keys().next().copied();
        let shed = match oldest {
            Some(oldest) if self.by_age.len() >= self.max_total => self.finish(oldest),
            _ => false,
        };
        let id = self.next_id;
        self.next_id += 1;
        let (cancel, cancelled) = oneshot::channel();
        self.by_age.insert(
            id,
            PendingHandshake {
                address,
                _cancel: cancel,
            },
        );
        *self.per_address.entry(address).or_insert(0) += 1;
        Some((id, cancelled, shed))
    }

    /// Removes handshake `id`; `false` when it was no longer pending (it was shed).
    fn finish(&mut self, id: u64) -> bool {
        let Some(pending) = self.by_age.remove(&id) else {
            return false;
        };
        if let Some(count) = self.per_address.get_mut(&pending.address) {
            *count -= 1;
            if *count == 0 {
                self.per_address.remove(&pending.address);
            }
        }
        true
    }

    fn len(&self) -> u64 {
        self.by_age.len() as u64
    }
}

// === impl TransportMetrics ===

impl TransportMetrics {
    /// Zeroed counters.
    pub fn new() -> Self {
        Self {
            counts: Arc::new(watch::channel(HandshakeCounts::default()).0),
            connections: Arc::default(),
        }
    }

    /// The current totals.
    pub fn handshakes(&self) -> HandshakeCounts {
        *self.counts.borrow()
    }

    /// Connections `identity` holds open now.
    pub fn connections_of(&self, identity: &Identity) -> usize {
        self.connections.count(identity)
    }

    /// A receiver that sees every change, e.g. to wait for a refused handshake.
    pub fn subscribe(&self) -> watch::Receiver<HandshakeCounts> {
        self.counts.subscribe()
    }

    fn record(&self, outcome: HandshakeOutcome, pending: u64) {
        self.counts.send_modify(|counts| {
            match outcome {
                HandshakeOutcome::Established => counts.established += 1,
                HandshakeOutcome::Failed => counts.failed += 1,
                HandshakeOutcome::Shed => counts.shed += 1,
                HandshakeOutcome::RefusedPerAddress => counts.refused_per_address += 1,
                HandshakeOutcome::RefusedPerIdentity => counts.refused_per_identity += 1,
            }
            counts.pending = pending;
        });
    }

    fn set_pending(&self, pending: u64) {
        self.counts.send_modify(|counts| counts.pending = pending);
    }
}

impl Default for TransportMetrics {
    fn default() -> Self {
        Self::new()
    }
}

// === accept loop ===

/// Accepts connections on `listener` and yields those that complete mTLS.
///
/// The stream ends when the listener fails permanently; dropping the stream stops the accept
/// loop and closes the listener.
pub fn incoming(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    settings: AcceptSettings,
    metrics: TransportMetrics,
) -> impl Stream<Item = Result<AuthenticatedStream, io::Error>> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(accept_loop(
        listener,
        TlsAcceptor::from(tls),
        settings,
        metrics,
        tx,
    ));
    futures::StreamExt::map(ReceiverStream::new(rx), Ok)
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    settings: AcceptSettings,
    metrics: TransportMetrics,
    tx: mpsc::Sender<AuthenticatedStream>,
) {
    let pending = Arc::new(Mutex::new(PendingHandshakes::new(&settings)));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = tx.closed() => return,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Typically out of file descriptors; back off instead of spinning.
                tracing::warn!(%error, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (admitted, count) = {
            let mut pending = lock(&pending);
            let admitted = pending.admit(peer.ip());
            (admitted, pending.len())
        };
        let Some((id, cancelled, shed)) = admitted else {
            // Closed unread: this address already has its share of handshakes in progress.
            tracing::debug!(%peer, "too many tls handshakes pending from this address");
            metrics.record(HandshakeOutcome::RefusedPerAddress, count);
            continue;
        };
        if shed {
            tracing::debug!(%peer, "all tls handshake slots taken; dropped the oldest");
            metrics.record(HandshakeOutcome::Shed, count);
        } else {
            metrics.set_pending(count);
        }
        let task = HandshakeTask {
            acceptor: acceptor.clone(),
            settings: settings.clone(),
            metrics: metrics.clone(),
            pending: pending.clone(),
            tx: tx.clone(),
        };
        tokio::spawn(task.run(tcp, peer, id, cancelled));
    }
}

/// What one handshake task needs from the accept loop.
struct HandshakeTask {
    acceptor: TlsAcceptor,
    settings: AcceptSettings,
    metrics: TransportMetrics,
    pending: Arc<Mutex<PendingHandshakes>>,
    tx: mpsc::Sender<AuthenticatedStream>,
}

impl HandshakeTask {
    async fn run(
        self,
        tcp: TcpStream,
        peer: std::net::SocketAddr,
        id: u64,
        cancelled: oneshot::Receiver<()>,
    ) {
        let stream = tokio::select! {
            stream = handshake(&self.acceptor, tcp, &self.settings, &self.metrics) => stream,
            // Shed by the accept loop, which already counted it; the socket closes here.
            _ = cancelled => return,
        };
        let (still_pending, count) = {
            let mut pending = lock(&self.pending);
            (pending.finish(id), pending.len())
        };
        if !still_pending {
            return;
        }
        match stream {
            Ok(stream) => {
                self.metrics.record(HandshakeOutcome::Established, count);
                tracing::debug!(%peer, caller = %stream.caller().identity, "client connected");
                // The server is shutting down when the receiver is gone.
                let _ = self.tx.send(stream).await;
            }
            Err(Refusal::Handshake(reason)) => {
                self.metrics.record(HandshakeOutcome::Failed, count);
                tracing::info!(%peer, %reason, "tls handshake refused");
            }
            Err(Refusal::TooManyConnections(caller)) => {
                self.metrics
                    .record(HandshakeOutcome::RefusedPerIdentity, count);
                tracing::info!(%peer, %caller, "caller has too many connections open; closing");
            }
        }
    }
}

fn lock(pending: &Mutex<PendingHandshakes>) -> std::sync::MutexGuard<'_, PendingHandshakes> {
    // Every update leaves the registry consistent, so a panic elsewhere cannot corrupt it.
    pending.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn handshake(
    acceptor: &TlsAcceptor,
    tcp: TcpStream,
    settings: &AcceptSettings,
    metrics: &TransportMetrics,
) -> Result<AuthenticatedStream, Refusal> {
    let _ = tcp.set_nodelay(true);
    let timeout = settings.handshake_timeout;
    let tls = match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => return Err(Refusal::Handshake(error.to_string())),
        Err(_) => {
            let reason = format!("handshake not completed within {timeout:?}");
            return Err(Refusal::Handshake(reason));
        }
    };
    let (_, session) = tls.get_ref();
    let Some(leaf) = session.peer_certificates().and_then(|certs| certs.first()) else {
        return Err(Refusal::Handshake(
            "client presented no certificate".to_owned(),
        ));
    };
    let Some(caller) = Caller::from_certificate(leaf) else {
        return Err(Refusal::Handshake(
            "client certificate names no identity (URI SAN, DNS SAN or CN)".to_owned(),
        ));
    };
    let max = settings.max_connections_per_identity;
    let Some(slot) = metrics.connections.begin(&caller.identity, max) else {
        return Err(Refusal::TooManyConnections(caller.identity));
    };
    Ok(AuthenticatedStream {
        inner: tls,
        connection: ConnectionInfo {
            caller,
            activity: ConnectionActivity::new(),
        },
        idle: IdleDeadline::new(settings.idle_timeout),
        _slot: slot,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
