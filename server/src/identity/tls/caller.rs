//! The caller a verified client certificate names.

use super::*;

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

pub(super) fn certificate_identity(cert: &X509Certificate<'_>) -> Option<String> {
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
