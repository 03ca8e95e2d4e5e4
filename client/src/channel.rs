//! The mTLS channel to the service and the generated clients over it.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

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
    /// The TLS settings were refused.
    #[error("tls configuration refused: {0}")]
    Tls(tonic::transport::Error),
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

    /// Deadline for establishing the connection (default 10s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
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
        let (endpoint, url) = self.build_endpoint()?;
        let channel = endpoint
            .connect()
            .await
            .map_err(|source| ClientError::Connect {
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

    fn build_endpoint(self) -> Result<(Endpoint, String), ClientError> {
        let url = self.endpoint.ok_or(ClientError::Missing("endpoint"))?;
        let ca = self.ca.ok_or(ClientError::Missing("ca"))?.read()?;
        let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
        if let Some((cert, key)) = self.identity {
            tls = tls.identity(Identity::from_pem(cert.read()?, key.read()?));
        }
        if let Some(name) = self.domain_name {
            tls = tls.domain_name(name);
        }
        let endpoint = Endpoint::from_shared(url.clone())
            .map_err(|source| ClientError::Endpoint {
                endpoint: url.clone(),
                source,
            })?
            .connect_timeout(self.connect_timeout.unwrap_or(Duration::from_secs(10)))
            .tls_config(tls)
            .map_err(ClientError::Tls)?;
        Ok((endpoint, url))
    }
}

// === impl Pem ===

impl Pem {
    fn read(self) -> Result<Vec<u8>, ClientError> {
        match self {
            Pem::Bytes(bytes) => Ok(bytes),
            Pem::File(path) => {
                std::fs::read(&path).map_err(|source| ClientError::Read { path, source })
            }
        }
    }
}
