//! The rustls server configuration in force. The accept loop reads it once per handshake, so a
//! reload's certificate, client CA and CRLs apply to the next connection; connections already
//! established keep the session they negotiated.

use super::*;

/// The server's TLS configuration, replaceable while serving; cheap to clone.
#[derive(Clone, Debug)]
pub struct ServerTls {
    current: Arc<std::sync::RwLock<Arc<ServerConfig>>>,
}

// === impl ServerTls ===

impl ServerTls {
    /// Serves `config` until [`ServerTls::replace`].
    pub fn new(config: Arc<ServerConfig>) -> Self {
        Self {
            current: Arc::new(std::sync::RwLock::new(config)),
        }
    }

    /// The configuration a handshake starting now uses.
    pub fn current(&self) -> Arc<ServerConfig> {
        // A writer only swaps an Arc while holding the lock, so a poisoned lock still holds a
        // complete configuration.
        let guard = self.current.read().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(&guard)
    }

    /// Uses `config` for every handshake from now on.
    pub fn replace(&self, config: Arc<ServerConfig>) {
        let mut guard = self.current.write().unwrap_or_else(PoisonError::into_inner);
        *guard = config;
    }

    /// An acceptor over the configuration in force now.
    pub(super) fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current())
    }
}
