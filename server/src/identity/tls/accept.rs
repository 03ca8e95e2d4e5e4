//! The accept loop: one task per TLS handshake, with a deadline, a per-address limit, and the
//! oldest pending handshake shed for a newcomer when every slot is taken.

use super::*;

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
pub(super) enum HandshakeOutcome {
    Established,
    Failed,
    Shed,
    RefusedPerAddress,
    RefusedPerIdentity,
}

/// Why a connection was not handed to the gRPC server.
#[derive(Debug)]
pub(super) enum Refusal {
    /// The handshake failed, timed out, or the certificate names no identity.
    Handshake(String),
    /// The caller already holds its share of connections.
    TooManyConnections(Identity),
}

/// The handshakes in progress, oldest first, with a count per source address.
#[derive(Debug)]
pub(super) struct PendingHandshakes {
    pub(super) next_id: u64,
    pub(super) by_age: BTreeMap<u64, PendingHandshake>,
    pub(super) per_address: HashMap<IpAddr, usize>,
    pub(super) max_total: usize,
    pub(super) max_per_address: usize,
}

#[derive(Debug)]
pub(super) struct PendingHandshake {
    address: IpAddr,
    /// Dropping it cancels the handshake task.
    _cancel: oneshot::Sender<()>,
}

// === impl PendingHandshakes ===

impl PendingHandshakes {
    pub(super) fn new(settings: &AcceptSettings) -> Self {
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
    pub(super) fn admit(&mut self, address: IpAddr) -> Option<(u64, oneshot::Receiver<()>, bool)> {
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
    pub(super) fn finish(&mut self, id: u64) -> bool {
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

    pub(super) fn len(&self) -> u64 {
        self.by_age.len() as u64
    }
}

// === accept loop ===

/// Accepts connections on `listener` and yields those that complete mTLS; each handshake uses
/// the configuration `tls` holds when the connection is accepted.
///
/// The stream ends when the listener fails permanently; dropping the stream stops the accept
/// loop and closes the listener.
pub fn incoming(
    listener: TcpListener,
    tls: ServerTls,
    settings: AcceptSettings,
    metrics: TransportMetrics,
) -> impl Stream<Item = Result<AuthenticatedStream, io::Error>> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(accept_loop(listener, tls, settings, metrics, tx));
    futures::StreamExt::map(ReceiverStream::new(rx), Ok)
}

pub(super) async fn accept_loop(
    listener: TcpListener,
    tls: ServerTls,
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
            acceptor: tls.acceptor(),
            settings: settings.clone(),
            metrics: metrics.clone(),
            pending: pending.clone(),
            tx: tx.clone(),
        };
        tokio::spawn(task.run(tcp, peer, id, cancelled));
    }
}

/// What one handshake task needs from the accept loop.
pub(super) struct HandshakeTask {
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

pub(super) fn lock(
    pending: &Mutex<PendingHandshakes>,
) -> std::sync::MutexGuard<'_, PendingHandshakes> {
    // Every update leaves the registry consistent, so a panic elsewhere cannot corrupt it.
    pending.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(super) async fn handshake(
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
