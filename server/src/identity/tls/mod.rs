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

mod accept;
mod caller;
mod material;
mod reloadable;

use self::accept::*;
pub use self::{
    accept::{AcceptSettings, incoming},
    caller::{Caller, Identity, caller, caller_of},
    material::{TlsConfigError, TlsMaterial, TlsPaths, server_config},
    reloadable::ServerTls,
};

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

    /// The count across every identity.
    pub fn total(&self) -> usize {
        self.lock().values().sum()
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
