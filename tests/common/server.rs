//! A config writer for the PKI files and the service's signing key, and an in-process server
//! on `127.0.0.1:0` with real mTLS.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use admission_client::{AdmissionClient, AdmissionClientBuilder};
use admission_contract::credential::{Jwk, KeyStatus, SigningKey};
use admission_server::runtime::{
    config::Config,
    serve,
    state::{AppState, ServeError},
};
use tempfile::TempDir;
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

use admission_contract::pb;

use super::{
    DEFAULT_ROLES,
    pki::{Issued, Pki},
    requests::create_approval,
    store::{Backend, TestDb},
};

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

// === impl TestServer ===

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

    /// Starts a server with `extra` appended to its config, its audit store at `db`.
    pub async fn start_on(db: &TestDb, extra: &str) -> Self {
        Self::start_on_with(db, extra, &ConfigOptions::default()).await
    }

    /// [`TestServer::start_on`] with config options.
    pub async fn start_on_with(db: &TestDb, extra: &str, options: &ConfigOptions) -> Self {
        Self::start_on_url(&db.url, extra, options).await
    }

    /// Starts a server with `extra` appended to its config, its audit store at `database_url`.
    pub async fn start_on_url(database_url: &str, extra: &str, options: &ConfigOptions) -> Self {
        let pki = Pki::new("test clients CA");
        let dir = tempfile::tempdir().unwrap();
        let path = write_config_with(dir.path(), &pki, &[], extra, options);
        let mut config = Config::load(&path).unwrap();
        config.database_url = database_url.to_owned();
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

    /// A server with `extra` appended to its config on a fresh database of `backend`; `None`
    /// for PostgreSQL when `ADMISSION_TEST_DATABASE_URL` is unset.
    pub async fn start_fresh(backend: Backend, test: &str, extra: &str) -> Option<(Self, TestDb)> {
        let db = backend.database(test).await?;
        let server = Self::start_on(&db, extra).await;
        Some((server, db))
    }

    /// Stops the server, then drops its database.
    pub async fn finish(self, db: TestDb) {
        self.stop().await;
        db.cleanup().await;
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

/// An approval of the standard spec in `acme/payments/prod`, requested by `orchestrator` and
/// approved by `reviewer`.
pub async fn approved_in_prod(
    orchestrator: &AdmissionClient,
    reviewer: &AdmissionClient,
) -> pb::Approval {
    let created = orchestrator
        .create_approval(create_approval("prod", "release 1.4.2"))
        .await
        .unwrap();
    let approved = reviewer
        .decide_approval(pb::DecideApprovalRequest {
            approval_id: created.approval_id.clone(),
            verdict: pb::Verdict::Approve as i32,
            reason: "looks good".to_owned(),
        })
        .await
        .unwrap();
    assert_eq!(approved.state, pb::ApprovalState::Approved as i32);
    approved
}

/// Every audit entry `auditor` can list, following page tokens (`page_size` per page).
pub async fn audit_entries(auditor: &AdmissionClient, page_size: u32) -> Vec<pb::AuditEntry> {
    let mut entries = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = auditor
            .audit()
            .list(pb::ListAuditRequest {
                page_size,
                page_token,
                ..pb::ListAuditRequest::default()
            })
            .await
            .unwrap()
            .into_inner();
        entries.extend(page.entries);
        if page.next_page_token.is_empty() {
            return entries;
        }
        page_token = page.next_page_token;
    }
}
