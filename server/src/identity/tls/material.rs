//! The server's TLS material: where the `[tls]` files are, what they hold, and the rustls
//! configuration built from them.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use rustls::{RootCertStore, ServerConfig, server::WebPkiClientVerifier};
use rustls_pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer,
    pem::{self, PemObject},
};

/// Resolved locations of the `[tls]` files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsPaths {
    /// Server certificate chain (PEM).
    pub cert: PathBuf,
    /// Server private key (PEM).
    pub key: PathBuf,
    /// CA bundle client certificates must chain to (PEM).
    pub client_ca: PathBuf,
    /// Certificate revocation lists (PEM or DER).
    pub crls: Vec<PathBuf>,
}

/// The parsed contents of the `[tls]` files.
#[derive(Debug)]
pub struct TlsMaterial {
    /// Server certificate chain, leaf first.
    pub cert_chain: Vec<CertificateDer<'static>>,
    /// Server private key.
    pub key: PrivateKeyDer<'static>,
    /// Client CA certificates.
    pub client_ca: Vec<CertificateDer<'static>>,
    /// Certificate revocation lists.
    pub crls: Vec<CertificateRevocationListDer<'static>>,
}

// === impl TlsMaterial ===

impl TlsMaterial {
    /// Reads and parses every `[tls]` file; the error names the field and the file.
    pub fn read(paths: &TlsPaths) -> Result<Self, String> {
        let cert_chain = read_certificates(&paths.cert).map_err(|e| format!("[tls] cert: {e}"))?;
        let key = read_private_key(&paths.key).map_err(|e| format!("[tls] key: {e}"))?;
        let client_ca =
            read_certificates(&paths.client_ca).map_err(|e| format!("[tls] client_ca: {e}"))?;
        let crls = paths
            .crls
            .iter()
            .map(|crl| read_crls(crl).map_err(|e| format!("[tls] crls: {e}")))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .flatten()
            .collect();
        Ok(Self {
            cert_chain,
            key,
            client_ca,
            crls,
        })
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = read_file(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, pem::Error>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate found", path.display()));
    }
    Ok(certs)
}

fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let bytes = read_file(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        pem::Error::NoItemsFound => format!("{}: no private key found", path.display()),
        other => format!("{}: {other}", path.display()),
    })
}

fn read_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, String> {
    let bytes = read_file(path)?;
    if !bytes.starts_with(b"-----BEGIN") {
        return Ok(vec![CertificateRevocationListDer::from(bytes)]);
    }
    let crls = CertificateRevocationListDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, pem::Error>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if crls.is_empty() {
        return Err(format!(
            "{}: no certificate revocation list found",
            path.display()
        ));
    }
    Ok(crls)
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
