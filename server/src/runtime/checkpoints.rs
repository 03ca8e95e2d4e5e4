//! The periodic checkpoint: every `[audit] checkpoint_interval`, a checkpoint of the trail is
//! signed, stored and written to `[audit] checkpoint_dir` if the trail grew since the latest
//! one (at most one per interval). Without a log key nothing is started.

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use crate::{app::transparency::SharedLog, store::AuditStore};

/// Starts the checkpoint task; it ends when `stopped` turns true (or its sender is gone).
pub fn start(
    log: SharedLog,
    store: AuditStore,
    interval: Duration,
    mut stopped: watch::Receiver<bool>,
) {
    if !log.signs() {
        return;
    }
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = stopped.wait_for(|stop| *stop) => return,
            }
            match log.refresh(&store).await {
                Ok(Some(tree_size)) => tracing::info!(tree_size, "checkpoint signed"),
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(%error, "checkpoint could not be signed; retrying next interval")
                }
            }
        }
    });
}
