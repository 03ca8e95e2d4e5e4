//! A raw HTTP/2 client over mTLS, for tests that must misbehave as an attacker would: open many
//! streams, claim large messages, send them partly and leave them open.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::{net::SocketAddr, sync::Arc};

use bytes::Bytes;
use h2::client::{ResponseFuture, SendRequest};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};
use tokio::{net::TcpStream, task::JoinHandle};
use tokio_rustls::{TlsConnector, client::TlsStream};

/// A TLS connection to the server presenting a client certificate, with ALPN `h2`.
pub async fn tls_connect(
    addr: SocketAddr,
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> TlsStream<TcpStream> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(ca.unwrap()).unwrap();
    }
    let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = TcpStream::connect(addr).await.unwrap();
    TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap()
}

/// An HTTP/2 connection: the request handle and the task driving the connection, which ends
/// when the server closes it.
pub struct RawH2 {
    /// Opens streams.
    pub send: SendRequest<Bytes>,
    /// Drives the connection; completes when it closes.
    pub connection: JoinHandle<Result<(), h2::Error>>,
}

/// One call left open: the response to come and the request body stream.
pub struct OpenCall {
    /// The response, once the server answers.
    pub response: ResponseFuture,
    /// The request body; dropping it without ending the stream resets it.
    pub body: h2::SendStream<Bytes>,
}

impl RawH2 {
    /// Completes TLS and the HTTP/2 handshake as the holder of `cert_pem`.
    pub async fn connect(addr: SocketAddr, ca_pem: &str, cert_pem: &str, key_pem: &str) -> Self {
        let tls = tls_connect(addr, ca_pem, cert_pem, key_pem).await;
        let (send, connection) = h2::client::handshake(tls).await.unwrap();
        Self {
            send,
            connection: tokio::spawn(connection),
        }
    }

    /// Opens a gRPC call to `path` and sends the 5-byte prefix claiming a message of `claimed`
    /// bytes, then `sent` bytes of it; the stream is left open. Returns once the server has
    /// read them or answered.
    pub async fn open_call(&self, path: &str, claimed: u32, sent: &Bytes) -> OpenCall {
        open_call(self.send.clone(), path, claimed, sent).await
    }
}

/// [`RawH2::open_call`] on a request handle that tasks can share.
pub async fn open_call(
    send: SendRequest<Bytes>,
    path: &str,
    claimed: u32,
    sent: &Bytes,
) -> OpenCall {
    let request = http::Request::post(format!("https://localhost{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let mut send = send.ready().await.unwrap();
    let (response, mut body) = send.send_request(request, false).unwrap();
    let mut prefix = vec![0u8];
    prefix.extend_from_slice(&claimed.to_be_bytes());
    send_flow_controlled(&mut body, Bytes::from(prefix)).await;
    send_flow_controlled(&mut body, sent.clone()).await;
    until_read_or_answered(&mut body).await;
    OpenCall { response, body }
}

/// Sends `data` only as the server grants window (or until the stream is answered and reset).
pub async fn send_flow_controlled(body: &mut h2::SendStream<Bytes>, mut data: Bytes) {
    while !data.is_empty() {
        body.reserve_capacity(data.len());
        let granted = match std::future::poll_fn(|cx| body.poll_capacity(cx)).await {
            Some(Ok(granted)) => granted,
            // The server answered and reset the stream: nothing more to send.
            Some(Err(_)) | None => return,
        };
        if granted == 0 {
            continue;
        }
        let chunk = data.split_to(granted.min(data.len()));
        if body.send_data(chunk, false).is_err() {
            return;
        }
    }
}

/// Waits until the server has read what was sent on `body` (its window comes back only as the
/// service reads the bytes) or has answered and reset the stream.
pub async fn until_read_or_answered(body: &mut h2::SendStream<Bytes>) {
    body.reserve_capacity(1);
    // Zero means nothing assigned yet; any capacity, a reset or the end settles it.
    while let Some(Ok(0)) = std::future::poll_fn(|cx| body.poll_capacity(cx)).await {}
    body.reserve_capacity(0);
}

/// The gRPC status of a response: from its headers (trailers-only) or its trailers.
pub async fn grpc_status(response: ResponseFuture) -> tonic::Status {
    let response = response.await.unwrap();
    if let Some(status) = tonic::Status::from_header_map(response.headers()) {
        return status;
    }
    let mut body = response.into_body();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    let trailers = body.trailers().await.unwrap().expect("grpc trailers");
    tonic::Status::from_header_map(&trailers).expect("grpc-status in trailers")
}
