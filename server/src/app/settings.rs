//! The part of the configuration a reload replaces while serving: environment policies, role
//! bindings, the trusted key set and the signing key. Each call reads one [`Settings`] when it
//! starts and keeps that `Arc` to the end, so a reload never splits a call between two configs.

use std::sync::{Arc, RwLock};

use admission_contract::credential::{KeySet, SigningKey};

use crate::{domain::policy::Policies, identity::roles::RoleBindings};

/// One complete, validated set of what decisions read; replaced whole, never edited.
#[derive(Debug)]
pub struct Settings {
    /// The environments' policies (SPEC §6).
    pub policies: Arc<Policies>,
    /// Who holds which role (SPEC §2).
    pub roles: Arc<RoleBindings>,
    /// The trusted signing keys (SPEC §5).
    pub keys: Arc<KeySet>,
    /// The key approvals are signed with, when `[signing]` is configured.
    pub signer: Option<Arc<SigningKey>>,
}

/// The [`Settings`] in force, shared by every service; cheap to clone.
#[derive(Clone, Debug)]
pub struct SharedSettings {
    current: Arc<RwLock<Arc<Settings>>>,
}

// === impl SharedSettings ===

impl SharedSettings {
    /// Shares `settings`.
    pub fn new(settings: Settings) -> Self {
        Self {
            current: Arc::new(RwLock::new(Arc::new(settings))),
        }
    }

    /// The settings in force now; hold the `Arc` for the whole of one call.
    pub fn current(&self) -> Arc<Settings> {
        // A writer only swaps an Arc while holding the lock and cannot panic there, so a
        // poisoned lock still holds complete settings.
        let guard = self
            .current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Arc::clone(&guard)
    }

    /// Puts `settings` in force in one step; calls already running keep the previous ones.
    pub fn replace(&self, settings: Settings) {
        let settings = Arc::new(settings);
        let mut guard = self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *guard = settings;
    }
}
