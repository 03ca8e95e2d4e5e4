//! Shared end-to-end test helpers: an rcgen PKI, a config writer, an in-process server on
//! `127.0.0.1:0` with real mTLS, and client builders for it.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod store;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
};

use admission_client::{AdmissionClient, AdmissionClientBuilder};
use admission_contract::credential::{Jwk, KeyStatus, SigningKey};
use admission_server::{
    runtime::config::Config,
    runtime::serve::{self, AppState, ServeError},
};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CertifiedIssuer, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose, RevokedCertParams,
    SanType, SerialNumber, date_time_ymd,
};
use tempfile::TempDir;
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

/// Identity with the orchestrator role in [`DEFAULT_ROLES`].
pub const ORCHESTRATOR: &str = "spiffe://test.local/orchestrator/ci";
/// Identity with the reviewer role in [`DEFAULT_ROLES`].
pub const REVIEWER: &str = "spiffe://test.local/reviewer/alice";
/// Identity with the auditor role in [`DEFAULT_ROLES`].
pub const AUDITOR: &str = "spiffe://test.local/auditor/audit";
/// Identity with no role at all.
pub const NOBODY: &str = "spiffe://test.local/nobody";

/// Role bindings for the identities above.
pub const DEFAULT_ROLES: &str = r#"
[[roles]]
identity = "spiffe://test.local/orchestrator/ci"
roles = ["orchestrator"]

[[roles]]
identity = "spiffe://test.local/reviewer/*"
roles = ["reviewer"]

[[roles]]
identity = "spiffe://test.local/auditor/audit"
roles = ["auditor"]

[[environments]]
org_id = "acme"
project_id = "payments"
environment_id = "prod"
posture = "prod"
"#;

/// A certificate authority made at test time.
pub struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
    next_serial: AtomicU64,
}

/// A certificate and its key, as PEM.
#[derive(Clone, Debug)]
pub struct Issued {
    /// Certificate PEM.
    pub cert_pem: String,
    /// Private key PEM (PKCS#8).
    pub key_pem: String,
    /// Serial number, for revocation.
    pub serial: u64,
}

impl Pki {
    /// A new CA named `name`.
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Self {
            ca,
            // Serials start high so their DER encoding never needs a sign byte or trimming.
            next_serial: AtomicU64::new(0x1000_0000_0000_0001),
        }
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    /// A server certificate for `localhost` and `127.0.0.1`.
    pub fn server(&self) -> Issued {
        let params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        self.issue(params, "test server", ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate whose URI SAN is `identity`.
    pub fn client(&self, identity: &str) -> Issued {
        self.issue(
            client_params(identity),
            identity,
            ExtendedKeyUsagePurpose::ClientAuth,
        )
    }

    /// A client certificate for `identity` that expired in 2001.
    pub fn expired_client(&self, identity: &str) -> Issued {
        let mut params = client_params(identity);
        params.not_before = date_time_ymd(2000, 1, 1);
        params.not_after = date_time_ymd(2001, 1, 1);
        self.issue(params, identity, ExtendedKeyUsagePurpose::ClientAuth)
    }

    /// A PEM CRL revoking `revoked`.
    pub fn crl(&self, revoked: &[&Issued]) -> String {
        let params = CertificateRevocationListParams {
            this_update: date_time_ymd(2020, 1, 1),
            next_update: date_time_ymd(2999, 1, 1),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|cert| RevokedCertParams {
                    serial_number: SerialNumber::from(cert.serial),
                    revocation_time: date_time_ymd(2020, 1, 1),
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        params.signed_by(&self.ca).unwrap().pem().unwrap()
    }

    fn issue(
        &self,
        mut params: CertificateParams,
        common_name: &str,
        usage: ExtendedKeyUsagePurpose,
    ) -> Issued {
        let serial = self.next_serial.fetch_add(1, Ordering::Relaxed);
        params.serial_number = Some(SerialNumber::from(serial));
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.extended_key_usages = vec![usage];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            serial,
        }
    }
}

fn client_params(identity: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.subject_alt_names = vec![SanType::URI(identity.try_into().unwrap())];
    params
}

/// Kid of the service's own signing key, written by [`write_config`] as `signing.key`.
pub const SERVICE_KID: &str = "test-service-2026";

/// Key material and options beyond the defaults of [`write_config`].
#[derive(Default)]
pub struct ConfigOptions {
    /// Leave out `[signing]`: the service verifies but cannot issue credentials.
    pub without_signing: bool,
    /// More entries for the key set, after the service key.
    pub extra_keys: Vec<Jwk>,
}

/// Writes the PKI files, a signing key with its key set, and an `admission.toml` with `extra`
/// appended (roles, environments, `[limits]`…) into `dir`; `crls` are written as `crl-N.pem`
/// and listed under `[tls]`.
pub fn write_config(dir: &Path, pki: &Pki, crls: &[String], extra: &str) -> PathBuf {
    write_config_with(dir, pki, crls, extra, &ConfigOptions::default())
}

/// [`write_config`] with options.
pub fn write_config_with(
    dir: &Path,
    pki: &Pki,
    crls: &[String],
    extra: &str,
    options: &ConfigOptions,
) -> PathBuf {
    let server = pki.server();
    std::fs::write(dir.join("server.pem"), &server.cert_pem).unwrap();
    std::fs::write(dir.join("server.key"), &server.key_pem).unwrap();
    std::fs::write(dir.join("clients-ca.pem"), pki.ca_pem()).unwrap();
    let (service_key, service_pem) = SigningKey::generate(SERVICE_KID).unwrap();
    std::fs::write(dir.join("signing.key"), service_pem).unwrap();
    let mut keys = vec![service_key.public_jwk(KeyStatus::Active)];
    keys.extend(options.extra_keys.iter().cloned());
    let key_set = serde_json::json!({ "keys": keys });
    std::fs::write(dir.join("signing_keys.json"), key_set.to_string()).unwrap();
    let signing = if options.without_signing {
        String::new()
    } else {
        format!("[signing]\nkid = {SERVICE_KID:?}\nprivate_key = \"signing.key\"\n")
    };
    let mut crl_names = Vec::new();
    for (index, crl) in crls.iter().enumerate() {
        let name = format!("crl-{index}.pem");
        std::fs::write(dir.join(&name), crl).unwrap();
        crl_names.push(format!("{name:?}"));
    }
    let text = format!(
        r#"listen = "127.0.0.1:0"
key_set = "signing_keys.json"

[tls]
cert = "server.pem"
key = "server.key"
client_ca = "clients-ca.pem"
crls = [{}]
{signing}
{extra}"#,
        crl_names.join(", ")
    );
    let path = dir.join("admission.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A server running in-process on `127.0.0.1:<ephemeral>`.
pub struct TestServer {
    /// The bound address.
    pub addr: SocketAddr,
    /// The server state (transport counters, health).
    pub state: AppState,
    /// The CA that issues both the server and the client certificates.
    pub pki: Pki,
    /// Directory holding the config and its files.
    pub dir: TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), ServeError>>>,
}

impl TestServer {
    /// Starts a server with [`DEFAULT_ROLES`].
    pub async fn start() -> Self {
        Self::start_with(Pki::new("test clients CA"), &[], DEFAULT_ROLES).await
    }

    /// Starts a server whose certificates come from `pki`, with the PEM `crls` and `extra`
    /// appended to its config.
    pub async fn start_with(pki: Pki, crls: &[String], extra: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = write_config(dir.path(), &pki, crls, extra);
        let config = Config::load(&path).unwrap();
        Self::serve(config, pki, dir).await
    }

    /// Starts a server with config options.
    pub async fn start_opts(extra: &str, options: &ConfigOptions) -> Self {
        let pki = Pki::new("test clients CA");
        let dir = tempfile::tempdir().unwrap();
        let path = write_config_with(dir.path(), &pki, &[], extra, options);
        let config = Config::load(&path).unwrap();
        Self::serve(config, pki, dir).await
    }

    /// The service's signing key, as written to `signing.key`.
    pub fn service_key(&self) -> SigningKey {
        let pem = std::fs::read_to_string(self.dir.path().join("signing.key")).unwrap();
        SigningKey::from_pkcs8_pem(SERVICE_KID, &pem).unwrap()
    }

    /// Serves `config` on an ephemeral loopback port.
    pub async fn serve(config: Config, pki: Pki, dir: TempDir) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = AppState::new(config).await.expect("state");
        let (shutdown, stop) = oneshot::channel::<()>();
        let task = tokio::spawn(serve::serve_with_listener(
            listener,
            state.clone(),
            async move {
                let _ = stop.await;
            },
        ));
        Self {
            addr,
            state,
            pki,
            dir,
            shutdown: Some(shutdown),
            task: Some(task),
        }
    }

    /// `https://localhost:<port>`.
    pub fn endpoint(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }

    /// A builder with the endpoint and the server CA, without a client identity.
    pub fn builder(&self) -> AdmissionClientBuilder {
        AdmissionClient::builder()
            .endpoint(self.endpoint())
            .ca_pem(self.pki.ca_pem())
    }

    /// A builder presenting `cert`.
    pub fn builder_as(&self, cert: &Issued) -> AdmissionClientBuilder {
        self.builder()
            .identity_pem(cert.cert_pem.clone(), cert.key_pem.clone())
    }

    /// A connected client presenting a fresh certificate for `identity`.
    pub async fn client(&self, identity: &str) -> AdmissionClient {
        self.builder_as(&self.pki.client(identity))
            .connect()
            .await
            .unwrap()
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}
