//! What starts a reload: SIGHUP always, and with `[reload] watch = true` a change to the
//! config file or any file it names.
//!
//! The watch follows the directories holding those files, not the files themselves, so a file
//! replaced by rename (editors, `admissionctl keygen`, a Kubernetes ConfigMap's `..data`
//! symlink swap) is seen too. Events for other files in those directories (the SQLite
//! database beside the config, say) are ignored. A burst of events settles into one reload,
//! and a burst that leaves every file as it was reloads nothing.

use std::{
    collections::HashSet,
    ffi::OsString,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use notify::{Event, EventKind, RecursiveMode, Watcher};
use sha2::{Digest, Sha256};
use tokio::{sync::mpsc, time::Instant};

use crate::runtime::{
    config::Config,
    reload::{Reloader, TRIGGER_WATCH},
};

/// A burst has settled once no event arrived for this long.
const QUIET: Duration = Duration::from_millis(250);
/// A burst that never settles still reloads after this long.
const MAX_SETTLE: Duration = Duration::from_secs(2);

/// Starts reloading `config`'s file through `reloader` on SIGHUP, and on file changes when
/// `[reload] watch` is on. Failing to set either up is logged; the server serves regardless.
pub fn start_reloading(reloader: Reloader, config: &Config) {
    let reloader = Arc::new(reloader);
    #[cfg(unix)]
    if let Err(error) = reloader.clone().spawn_on_sighup() {
        tracing::warn!(%error, "cannot listen for SIGHUP; the config reloads only on restart");
    }
    if config.reload.watch {
        let files = watched_files(config);
        match spawn_watch(reloader, files) {
            Ok(()) => {
                tracing::info!(config = %config.path.display(), "watching the config files for changes")
            }
            Err(error) => {
                tracing::warn!(%error, "cannot watch the config files; reload with SIGHUP")
            }
        }
    }
}

/// The config file and every file it names, absolute.
fn watched_files(config: &Config) -> Vec<PathBuf> {
    let mut files = vec![
        config.path.clone(),
        config.key_set.clone(),
        config.tls.cert.clone(),
        config.tls.key.clone(),
        config.tls.client_ca.clone(),
    ];
    files.extend(config.tls.crls.iter().cloned());
    files.extend(config.signing.iter().map(|s| s.private_key.clone()));
    files
        .into_iter()
        .map(|file| std::path::absolute(&file).unwrap_or(file))
        .collect()
}

fn spawn_watch(reloader: Arc<Reloader>, files: Vec<PathBuf>) -> notify::Result<()> {
    let names: HashSet<OsString> = files
        .iter()
        .filter_map(|file| file.file_name().map(OsString::from))
        .collect();
    // One pending notice is enough: the loop re-reads everything once a burst settles.
    let (notify_tx, notices) = mpsc::channel(1);
    let mut watcher =
        notify::recommended_watcher(move |event: notify::Result<Event>| match event {
            Ok(event) if concerns(&event, &names) => {
                let _ = notify_tx.try_send(());
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "config file watch failed"),
        })?;
    let directories: HashSet<&Path> = files.iter().filter_map(|file| file.parent()).collect();
    for directory in directories {
        watcher.watch(directory, RecursiveMode::NonRecursive)?;
    }
    tokio::spawn(async move {
        // The watcher stops when dropped, so the task owns it.
        let _watcher = watcher;
        reload_on_changes(reloader, notices, files).await;
    });
    Ok(())
}

/// Whether `event` may have changed one of the watched files (by name, or a Kubernetes
/// `..data`-style swap in their directory).
fn concerns(event: &Event, names: &HashSet<OsString>) -> bool {
    if matches!(event.kind, EventKind::Access(_)) {
        return false;
    }
    event.paths.iter().any(|path| {
        path.file_name()
            .is_some_and(|name| names.contains(name) || name.to_string_lossy().starts_with(".."))
    })
}

async fn reload_on_changes(
    reloader: Arc<Reloader>,
    mut notices: mpsc::Receiver<()>,
    files: Vec<PathBuf>,
) {
    let mut last = fingerprint(&files);
    while notices.recv().await.is_some() {
        settle(&mut notices).await;
        let now = fingerprint(&files);
        if now == last {
            continue;
        }
        last = now;
        tracing::info!("config files changed, reloading the config");
        // The outcome is logged and audited by reload().
        let _ = reloader.reload(TRIGGER_WATCH).await;
    }
}

/// Waits until no notice came for [`QUIET`], or [`MAX_SETTLE`] passed.
async fn settle(notices: &mut mpsc::Receiver<()>) {
    let give_up = Instant::now() + MAX_SETTLE;
    loop {
        let quiet_until = (Instant::now() + QUIET).min(give_up);
        match tokio::time::timeout_at(quiet_until, notices.recv()).await {
            Ok(Some(())) if Instant::now() < give_up => continue,
            _ => return,
        }
    }
}

/// A digest over every watched file's name and contents (a missing file counts as such).
fn fingerprint(files: &[PathBuf]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for file in files {
        hasher.update(file.as_os_str().as_encoded_bytes());
        match std::fs::read(file) {
            Ok(bytes) => {
                hasher.update([1]);
                hasher.update((bytes.len() as u64).to_be_bytes());
                hasher.update(&bytes);
            }
            Err(_) => hasher.update([0]),
        }
    }
    hasher.finalize().into()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use notify::event::{AccessKind, CreateKind, ModifyKind};

    use super::*;

    fn event(kind: EventKind, path: &str) -> Event {
        Event::new(kind).add_path(PathBuf::from(path))
    }

    #[test]
    fn only_changes_to_the_named_files_or_a_symlink_swap_concern_the_watch() {
        let names: HashSet<OsString> = ["admission.toml", "server.pem"]
            .into_iter()
            .map(OsString::from)
            .collect();
        let modify = EventKind::Modify(ModifyKind::Any);
        assert!(concerns(
            &event(modify, "/etc/admission/admission.toml"),
            &names
        ));
        assert!(concerns(
            &event(
                EventKind::Create(CreateKind::File),
                "/etc/admission/tls/server.pem"
            ),
            &names
        ));
        assert!(concerns(&event(modify, "/etc/admission/..data"), &names));
        // The SQLite database beside the config changes on every decision.
        assert!(!concerns(
            &event(modify, "/etc/admission/admission.db-wal"),
            &names
        ));
        assert!(!concerns(
            &event(
                EventKind::Access(AccessKind::Any),
                "/etc/admission/admission.toml"
            ),
            &names
        ));
    }

    #[test]
    fn the_fingerprint_follows_contents() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("admission.toml");
        let files = vec![file.clone()];
        let missing = fingerprint(&files);
        std::fs::write(&file, "a").unwrap();
        let first = fingerprint(&files);
        assert_ne!(first, missing);
        assert_eq!(fingerprint(&files), first);
        std::fs::write(&file, "b").unwrap();
        assert_ne!(fingerprint(&files), first);
    }
}
