//! mTLS transport and caller identity (SPEC §2).
//!
//! Connections are accepted on a plain `TcpListener`; every TLS handshake runs in its own task
//! with a deadline, so a slow or silent client never holds up the others. Only connections
//! whose client certificate chains to the client CA (and is not revoked) are handed to tonic,
//! each carrying the [`Caller`] read once from its leaf certificate.

use std::{
    fmt, io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use futures::Stream;
use rustls::{RootCertStore, ServerConfig, server::WebPkiClientVerifier};
use sha2::{Digest, Sha256};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{Semaphore, mpsc, watch},
};
use tokio_rustls::{TlsAcceptor, server::TlsStream};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::config::TlsMaterial;

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

/// Why the TLS configuration cannot be built; names the `[tls]` field at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    /// A client CA certificate is unusable.
    #[error("[tls] client_ca: {0}")]
    ClientCa(String),
    /// A CRL is unusable, or the verifier cannot be built.
    #[error("[tls] crls: {0}")]
    Crls(String),
    /// The certificate chain and key do not form a usable server identity.
    #[error("[tls] key: {0}")]
    ServerKey(String),
}

/// A TLS stream whose client certificate was verified, with the caller it names.
#[derive(Debug)]
pub struct AuthenticatedStream {
    inner: TlsStream<TcpStream>,
    caller: Caller,
}

/// Counts of TLS handshakes, for operators and for tests that must know a connection was
/// refused before any RPC ran.
#[derive(Clone, Debug)]
pub struct TransportMetrics {
    counts: Arc<watch::Sender<HandshakeCounts>>,
}

/// Handshake totals since start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HandshakeCounts {
    /// Connections that completed mTLS and were handed to the gRPC server.
    pub established: u64,
    /// Connections refused: handshake error, timeout, or a certificate without an identity.
    pub failed: u64,
}

/// Settings of the accept loop.
#[derive(Clone, Debug)]
pub struct AcceptSettings {
    /// Deadline for one TLS handshake.
    pub handshake_timeout: Duration,
    /// Handshakes in progress at once.
    pub max_pending_handshakes: usize,
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
    request
        .extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| tonic::Status::unauthenticated("the connection carries no client identity"))
}

// === impl AuthenticatedStream ===

impl AuthenticatedStream {
    /// The caller this connection authenticated as.
    pub fn caller(&self) -> &Caller {
        &self.caller
    }
}

impl Connected for AuthenticatedStream {
    type ConnectInfo = Caller;

    fn connect_info(&self) -> Caller {
        self.caller.clone()
    }
}

impl AsyncRead for AuthenticatedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
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

// === impl TransportMetrics ===

impl TransportMetrics {
    /// Zeroed counters.
    pub fn new() -> Self {
        Self {
            counts: Arc::new(watch::channel(HandshakeCounts::default()).0),
        }
    }

    /// The current totals.
    pub fn handshakes(&self) -> HandshakeCounts {
        *self.counts.borrow()
    }

    /// A receiver that sees every change, e.g. to wait for a refused handshake.
    pub fn subscribe(&self) -> watch::Receiver<HandshakeCounts> {
        self.counts.subscribe()
    }

    fn record(&self, established: bool) {
        self.counts.send_modify(|counts| {
            if established {
                counts.established += 1;
            } else {
                counts.failed += 1;
            }
        });
    }
}

impl Default for TransportMetrics {
    fn default() -> Self {
        Self::new()
    }
}

// === rustls configuration ===

/// The rustls server configuration: ring provider, TLS 1.3 and 1.2, ALPN `h2`, and client
/// certificates required to chain to the client CA and not be revoked by a configured CRL.
///
/// With CRLs configured, the leaf certificate's revocation status must be known: every client
/// CA needs a CRL, so a forgotten CRL cannot silently disable revocation.
pub fn server_config(material: TlsMaterial) -> Result<Arc<ServerConfig>, TlsConfigError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for ca in material.client_ca {
        roots
            .add(ca)
            .map_err(|e| TlsConfigError::ClientCa(e.to_string()))?;
    }
    let mut verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
    if !material.crls.is_empty() {
        verifier = verifier
            .with_crls(material.crls)
            .only_check_end_entity_revocation();
    }
    let verifier = verifier
        .build()
        .map_err(|e| TlsConfigError::Crls(e.to_string()))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsConfigError::ServerKey(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(material.cert_chain, material.key)
        .map_err(|e| TlsConfigError::ServerKey(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
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
    let pending = Arc::new(Semaphore::new(settings.max_pending_handshakes));
    loop {
        let permit = tokio::select! {
            permit = pending.clone().acquire_owned() => permit,
            () = tx.closed() => return,
        };
        // The semaphore is never closed, so acquiring only fails if that changes.
        let Ok(permit) = permit else { return };
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
        let acceptor = acceptor.clone();
        let metrics = metrics.clone();
        let tx = tx.clone();
        let timeout = settings.handshake_timeout;
        tokio::spawn(async move {
            let stream = handshake(acceptor, tcp, timeout).await;
            drop(permit);
            match stream {
                Ok(stream) => {
                    metrics.record(true);
                    tracing::debug!(%peer, caller = %stream.caller.identity, "client connected");
                    // The server is shutting down when the receiver is gone.
                    let _ = tx.send(stream).await;
                }
                Err(reason) => {
                    metrics.record(false);
                    tracing::info!(%peer, %reason, "tls handshake refused");
                }
            }
        });
    }
}

async fn handshake(
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    timeout: Duration,
) -> Result<AuthenticatedStream, String> {
    let _ = tcp.set_nodelay(true);
    let tls = match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => return Err(error.to_string()),
        Err(_) => return Err(format!("handshake not completed within {timeout:?}")),
    };
    let (_, session) = tls.get_ref();
    let Some(leaf) = session.peer_certificates().and_then(|certs| certs.first()) else {
        return Err("client presented no certificate".to_owned());
    };
    let Some(caller) = Caller::from_certificate(leaf) else {
        return Err("client certificate names no identity (URI SAN, DNS SAN or CN)".to_owned());
    };
    Ok(AuthenticatedStream { inner: tls, caller })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use rcgen::{CertificateParams, DnType, KeyPair, SanType};

    use super::*;

    fn cert_der(params: CertificateParams) -> Vec<u8> {
        let key = KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn identity_prefers_uri_then_dns_then_common_name() {
        let mut params = CertificateParams::new(vec!["host.example".to_owned()]).unwrap();
        params
            .subject_alt_names
            .push(SanType::URI("spiffe://acme/ci".try_into().unwrap()));
        let der = cert_der(params);
        let caller = Caller::from_certificate(&der).unwrap();
        assert_eq!(caller.identity.as_str(), "spiffe://acme/ci");
        assert_eq!(caller.cert_sha256, hex::encode(Sha256::digest(&der)));
        assert_eq!(caller.cert_sha256.len(), 64);

        let params = CertificateParams::new(vec!["host.example".to_owned()]).unwrap();
        let caller = Caller::from_certificate(&cert_der(params)).unwrap();
        assert_eq!(caller.identity.as_str(), "host.example");

        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "build-agent");
        let caller = Caller::from_certificate(&cert_der(params)).unwrap();
        assert_eq!(caller.identity.as_str(), "build-agent");
    }

    #[test]
    fn certificate_without_a_name_has_no_caller() {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        assert_eq!(Caller::from_certificate(&cert_der(params)), None);
    }
}
