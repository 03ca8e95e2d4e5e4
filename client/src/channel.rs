//! The mTLS channel to the service and the generated clients over it.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use rustls::{InconsistentKeys, sign::CertifiedKey};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic_health::pb::health_client::HealthClient;

use crate::{
    pb::{
        approvals_client::ApprovalsClient, audit_client::AuditClient,
        deploy_admission_client::DeployAdmissionClient,
        replay_admission_client::ReplayAdmissionClient,
    },
    retry::RetryPolicy,
};

/// How long [`AdmissionClientBuilder::connect`] waits for a connection by default.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A connected client; cheap to clone (the channel is shared).
///
/// The typed calls (`admit_deploy`, `preview_deploy`, …) retry what the service did not decide
/// under the client's [`RetryPolicy`]; the raw service clients (`deploy()`, …) send once.
#[derive(Clone, Debug)]
pub struct AdmissionClient {
    channel: Channel,
    retry: RetryPolicy,
}

/// Builds an [`AdmissionClient`]: endpoint, CA, the client certificate and key, and the retry
/// policy (by default [`RetryPolicy::default`]).
#[derive(Clone, Debug, Default)]
pub struct AdmissionClientBuilder {
    endpoint: Option<String>,
    ca: Option<Pem>,
    identity: Option<(Pem, Pem)>,
    domain_name: Option<String>,
    connect_timeout: Option<Duration>,
    request_timeout: Option<Duration>,
    retry: RetryPolicy,
}

#[derive(Clone, Debug)]
enum Pem {
    Bytes(Vec<u8>),
    File(PathBuf),
}

/// Why a client could not be built or connected.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A required builder setting is missing.
    #[error("{0} is not set")]
    Missing(&'static str),
    /// A PEM file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The endpoint URL is invalid.
    #[error("invalid endpoint {endpoint:?}: {source}")]
    Endpoint {
        /// The endpoint as given.
        endpoint: String,
        /// The parse error.
        source: tonic::transport::Error,
    },
    /// The endpoint is not an `https://` URL; the service only accepts TLS.
    #[error("endpoint {endpoint} is not https://: the service only accepts TLS; use {suggestion}")]
    NotHttps {
        /// The endpoint as given.
        endpoint: String,
        /// The same endpoint with `https://`.
        suggestion: String,
    },
    /// A PEM input holds nothing usable of what it should.
    #[error("{source_name}: {problem}")]
    Pem {
        /// The file, or what an in-memory PEM was given as.
        source_name: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The client certificate and private key are not one key pair.
    #[error(
        "certificate {cert} does not match key {key}: give the key the certificate was issued for"
    )]
    KeyMismatch {
        /// The certificate file (or `client certificate` when given in memory).
        cert: String,
        /// The key file (or `client key` when given in memory).
        key: String,
    },
    /// The TLS settings were refused.
    #[error("tls configuration refused: {0}")]
    Tls(tonic::transport::Error),
    /// The connection, TLS handshake included, was not established within the connect timeout.
    #[error("cannot connect to {endpoint}: no TLS connection within {}", humantime::format_duration(*.timeout))]
    ConnectTimeout {
        /// The endpoint.
        endpoint: String,
        /// The connect timeout.
        timeout: Duration,
    },
    /// The connection could not be established.
    #[error("cannot connect to {endpoint}: {source}")]
    Connect {
        /// The endpoint.
        endpoint: String,
        /// The transport error.
        source: tonic::transport::Error,
    },
}

// === impl AdmissionClient ===

impl AdmissionClient {
    /// Starts a builder.
    pub fn builder() -> AdmissionClientBuilder {
        AdmissionClientBuilder::default()
    }

    /// Wraps an existing channel, with the default retry policy.
    pub fn from_channel(channel: Channel) -> Self {
        Self {
            channel,
            retry: RetryPolicy::default(),
        }
    }

    /// The same client with another retry policy.
    pub fn with_retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// The retry policy of the typed calls.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.retry
    }

    /// The underlying channel.
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// `DeployAdmission`.
    pub fn deploy(&self) -> DeployAdmissionClient<Channel> {
        DeployAdmissionClient::new(self.channel.clone())
    }

    /// `ReplayAdmission`.
    pub fn replay(&self) -> ReplayAdmissionClient<Channel> {
        ReplayAdmissionClient::new(self.channel.clone())
    }

    /// `Approvals`.
    pub fn approvals(&self) -> ApprovalsClient<Channel> {
        ApprovalsClient::new(self.channel.clone())
    }

    /// `Audit`.
    pub fn audit(&self) -> AuditClient<Channel> {
        AuditClient::new(self.channel.clone())
    }

    /// `grpc.health.v1.Health`.
    pub fn health(&self) -> HealthClient<Channel> {
        HealthClient::new(self.channel.clone())
    }
}

// === impl AdmissionClientBuilder ===

impl AdmissionClientBuilder {
    /// The service URL, e.g. `https://admission.internal:50051`.
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self
    }

    /// The CA that signed the server certificate, as PEM.
    pub fn ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca = Some(Pem::Bytes(pem.into()));
        self
    }

    /// The CA that signed the server certificate, read from a PEM file at connect time.
    pub fn ca_file(mut self, path: impl AsRef<Path>) -> Self {
        self.ca = Some(Pem::File(path.as_ref().to_path_buf()));
        self
    }

    /// The client certificate chain and private key, as PEM.
    pub fn identity_pem(mut self, cert: impl Into<Vec<u8>>, key: impl Into<Vec<u8>>) -> Self {
        self.identity = Some((Pem::Bytes(cert.into()), Pem::Bytes(key.into())));
        self
    }

    /// The client certificate chain and private key, read from PEM files at connect time.
    pub fn identity_files(mut self, cert: impl AsRef<Path>, key: impl AsRef<Path>) -> Self {
        self.identity = Some((
            Pem::File(cert.as_ref().to_path_buf()),
            Pem::File(key.as_ref().to_path_buf()),
        ));
        self
    }

    /// The name to verify the server certificate against, when it differs from the URL host.
    pub fn domain_name(mut self, name: impl Into<String>) -> Self {
        self.domain_name = Some(name.into());
        self
    }

    /// Deadline for establishing the connection, TLS handshake included (default 10s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// Deadline of every call on the channel, the raw service clients' too (default: none; the
    /// typed calls still stop at their retry deadline).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = Some(timeout);
        self
    }

    /// The whole retry policy of the typed calls.
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Attempts per typed call, the first one included (default 4; 1 turns retries off).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.retry = self.retry.with_max_attempts(attempts);
        self
    }

    /// Time budget of one typed call across all attempts and waits (default 30s).
    pub fn retry_deadline(mut self, deadline: Duration) -> Self {
        self.retry = self.retry.with_deadline(deadline);
        self
    }

    /// Connects now; fails when the server is unreachable or the TLS handshake fails.
    pub async fn connect(self) -> Result<AdmissionClient, ClientError> {
        let retry = self.retry.clone();
        let timeout = self.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        let (endpoint, url) = self.build_endpoint()?;
        // The endpoint's own connect timeout covers the TCP connect, not the TLS handshake.
        let connected = tokio::time::timeout(timeout, endpoint.connect())
            .await
            .map_err(|_| ClientError::ConnectTimeout {
                endpoint: url.clone(),
                timeout,
            })?;
        let channel = connected.map_err(|source| ClientError::Connect {
            endpoint: url,
            source,
        })?;
        Ok(AdmissionClient { channel, retry })
    }

    /// Builds a client that connects on first use.
    pub fn connect_lazy(self) -> Result<AdmissionClient, ClientError> {
        let retry = self.retry.clone();
        let (endpoint, _) = self.build_endpoint()?;
        Ok(AdmissionClient {
            channel: endpoint.connect_lazy(),
            retry,
        })
    }

    /// Checks everything it can before a connection is tried, so a mistake names its input.
    fn build_endpoint(self) -> Result<(Endpoint, String), ClientError> {
        let url = self.endpoint.ok_or(ClientError::Missing("endpoint"))?;
        require_https(&url)?;
        let ca_pem = self.ca.ok_or(ClientError::Missing("ca"))?;
        let ca = ca_pem.read()?;
        first_certificate(&ca, &ca_pem.name("CA certificate"))?;
        let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
        if let Some((cert_pem, key_pem)) = self.identity {
            let (cert, key) = (cert_pem.read()?, key_pem.read()?);
            check_key_pair(
                &cert,
                &key,
                &cert_pem.name("client certificate"),
                &key_pem.name("client key"),
            )?;
            tls = tls.identity(Identity::from_pem(cert, key));
        }
        if let Some(name) = self.domain_name {
            tls = tls.domain_name(name);
        }
        let mut endpoint = Endpoint::from_shared(url.clone())
            .map_err(|source| ClientError::Endpoint {
                endpoint: url.clone(),
                source,
            })?
            .connect_timeout(self.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT));
        if let Some(timeout) = self.request_timeout {
            endpoint = endpoint.timeout(timeout);
        }
        let endpoint = endpoint.tls_config(tls).map_err(ClientError::Tls)?;
        Ok((endpoint, url))
    }
}

// === impl Pem ===

impl Pem {
    fn read(&self) -> Result<Vec<u8>, ClientError> {
        match self {
            Pem::Bytes(bytes) => Ok(bytes.clone()),
            Pem::File(path) => std::fs::read(path).map_err(|source| ClientError::Read {
                path: path.clone(),
                source,
            }),
        }
    }

    /// The file name, or `what` for PEM given in memory.
    fn name(&self, what: &str) -> String {
        match self {
            Pem::Bytes(_) => what.to_owned(),
            Pem::File(path) => path.display().to_string(),
        }
    }
}

/// Refuses `http://` and scheme-less endpoints with the `https://` URL to use instead.
fn require_https(url: &str) -> Result<(), ClientError> {
    if url.starts_with("https://") {
        return Ok(());
    }
    let rest = url.strip_prefix("http://").unwrap_or(url);
    Err(ClientError::NotHttps {
        endpoint: url.to_owned(),
        suggestion: format!("https://{rest}"),
    })
}

/// The first certificate of a PEM bundle, or an error naming `name`.
fn first_certificate(pem: &[u8], name: &str) -> Result<CertificateDer<'static>, ClientError> {
    let problem = |problem: String| ClientError::Pem {
        source_name: name.to_owned(),
        problem,
    };
    match CertificateDer::pem_slice_iter(pem).next() {
        Some(Ok(cert)) => Ok(cert),
        Some(Err(error)) => Err(problem(format!("not a PEM certificate: {error}"))),
        None => Err(problem("holds no PEM certificate".to_owned())),
    }
}

/// Checks that the key is the private half of the certificate's public key.
///
/// The TLS library would refuse a mismatched pair too, but without naming either file.
fn check_key_pair(
    cert: &[u8],
    key: &[u8],
    cert_name: &str,
    key_name: &str,
) -> Result<(), ClientError> {
    let leaf = first_certificate(cert, cert_name)?;
    let problem = |problem: String| ClientError::Pem {
        source_name: key_name.to_owned(),
        problem,
    };
    let key = PrivateKeyDer::from_pem_slice(key)
        .map_err(|error| problem(format!("not a PEM private key: {error}")))?;
    let signing_key = rustls::crypto::ring::default_provider()
        .key_provider
        .load_private_key(key)
        .map_err(|error| problem(format!("unsupported private key: {error}")))?;
    let mismatch = || ClientError::KeyMismatch {
        cert: cert_name.to_owned(),
        key: key_name.to_owned(),
    };
    match CertifiedKey::new(vec![leaf], signing_key).keys_match() {
        Ok(()) => Ok(()),
        Err(rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => Err(mismatch()),
        // The key cannot tell its public half: leave the check to the handshake.
        Err(rustls::Error::InconsistentKeys(_)) => Ok(()),
        Err(error) => Err(ClientError::Pem {
            source_name: cert_name.to_owned(),
            problem: format!("not a usable certificate: {error}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn plain_http_and_bare_hosts_are_told_to_use_https() {
        assert!(require_https("https://localhost:50051").is_ok());
        for (endpoint, suggestion) in [
            ("http://localhost:50051", "https://localhost:50051"),
            ("localhost:50051", "https://localhost:50051"),
        ] {
            let error = require_https(endpoint).unwrap_err();
            assert_eq!(
                error.to_string(),
                format!(
                    "endpoint {endpoint} is not https://: the service only accepts TLS; use \
                     {suggestion}"
                )
            );
        }
    }

    #[test]
    fn a_certificate_and_another_key_are_refused_naming_both() {
        let (cert, key) = pair("orchestrator");
        let (_, other_key) = pair("reviewer");
        assert!(check_key_pair(cert.as_bytes(), key.as_bytes(), "a.pem", "a.key").is_ok());
        let error =
            check_key_pair(cert.as_bytes(), other_key.as_bytes(), "a.pem", "b.key").unwrap_err();
        assert_eq!(
            error.to_string(),
            "certificate a.pem does not match key b.key: give the key the certificate was \
             issued for"
        );
        let error = check_key_pair(key.as_bytes(), key.as_bytes(), "a.key", "a.key").unwrap_err();
        assert_eq!(error.to_string(), "a.key: holds no PEM certificate");
        let error = check_key_pair(cert.as_bytes(), cert.as_bytes(), "a.pem", "a.pem").unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("a.pem: not a PEM private key"),
            "{error}"
        );
    }
}
