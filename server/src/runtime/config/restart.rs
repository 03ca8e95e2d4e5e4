//! The settings a reload cannot apply: they shape sockets, the store or the server built at
//! start. A reload that changes them reports each by name ("requires restart: listen") and
//! applies the rest.

use super::*;

/// The restart-only fields as one reading of the file wrote them. An override after loading
/// (`dev --listen`, a test's database) does not change these, so a reload compares file with
/// file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestartOnly {
    /// `listen`.
    pub listen: SocketAddr,
    /// `database_url`, resolved.
    pub database_url: String,
    /// `[limits]`: the accept loop, HTTP/2 settings and request limits are built at start.
    pub limits: Limits,
    /// `[audit]`: the store's tuning.
    pub audit: AuditConfig,
    /// `[reload]`: the watch is set up at start.
    pub reload: ReloadConfig,
    /// `[ops]`: the operations listener is bound at start.
    pub ops: Option<OpsConfig>,
}

/// `[reload]`: besides SIGHUP, optionally watch the config file and the files it names.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReloadConfig {
    /// Reload when one of the files changes (a burst of changes is one reload).
    pub watch: bool,
}

// === impl RestartOnly ===

impl RestartOnly {
    /// The names of the fields that differ between `self` (running) and `new` (just read).
    pub fn changed(&self, new: &RestartOnly) -> Vec<&'static str> {
        let mut changed = Vec::new();
        if self.listen != new.listen {
            changed.push("listen");
        }
        if self.database_url != new.database_url {
            changed.push("database_url");
        }
        if self.limits != new.limits {
            changed.push("[limits]");
        }
        if self.audit != new.audit {
            changed.push("[audit]");
        }
        if self.reload != new.reload {
            changed.push("[reload]");
        }
        if self.ops != new.ops {
            changed.push("[ops]");
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running() -> RestartOnly {
        RestartOnly {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            database_url: "sqlite://admission.db".to_owned(),
            limits: Limits::default(),
            audit: AuditConfig::default(),
            reload: ReloadConfig::default(),
            ops: None,
        }
    }

    #[test]
    fn each_changed_field_is_named() {
        assert!(running().changed(&running()).is_empty());
        let mut new = running();
        new.listen = SocketAddr::from(([0, 0, 0, 0], 50051));
        new.database_url = "postgres://db/admission".to_owned();
        new.limits.max_credentials += 1;
        new.audit.durable_timeout += Duration::from_secs(1);
        new.reload.watch = true;
        assert_eq!(
            running().changed(&new),
            ["listen", "database_url", "[limits]", "[audit]", "[reload]"]
        );
    }

    #[test]
    fn the_transparency_log_fields_are_restart_only() {
        let changes: [fn(&mut AuditConfig); 4] = [
            |audit| audit.log_key = Some(PathBuf::from("log.key")),
            |audit| audit.log_origin = "other.example/log".to_owned(),
            |audit| audit.checkpoint_interval = Duration::from_secs(5),
            |audit| audit.checkpoint_dir = Some(PathBuf::from("checkpoints")),
        ];
        for change in changes {
            let mut new = running();
            change(&mut new.audit);
            assert_eq!(running().changed(&new), ["[audit]"]);
        }
    }
}
