//! The governed actions and their names: in messages, in approval rows and in the audit trail.

use std::fmt;

/// The governed action being admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ActionKind {
    /// A deployment.
    Deploy,
    /// A dry-run replay.
    ReplayDryRun,
    /// An execute-mode replay.
    ReplayExecute,
}

// === impl ActionKind ===

impl ActionKind {
    /// How messages name the action.
    pub fn phrase(self) -> &'static str {
        match self {
            ActionKind::Deploy => "deploy",
            ActionKind::ReplayDryRun => "dry-run replay",
            ActionKind::ReplayExecute => "execute replay",
        }
    }

    /// The stored form, in approval rows.
    pub fn key(self) -> &'static str {
        match self {
            ActionKind::Deploy => "deploy",
            ActionKind::ReplayDryRun => "replay_dry_run",
            ActionKind::ReplayExecute => "replay_execute",
        }
    }

    /// The action a stored [`ActionKind::key`] names.
    pub fn from_key(key: &str) -> Option<Self> {
        match key {
            "deploy" => Some(ActionKind::Deploy),
            "replay_dry_run" => Some(ActionKind::ReplayDryRun),
            "replay_execute" => Some(ActionKind::ReplayExecute),
            _ => None,
        }
    }

    /// The audit entry's `action` for an admission of it.
    pub fn admit_audit_action(self) -> &'static str {
        match self {
            ActionKind::Deploy => "deploy.admit",
            ActionKind::ReplayDryRun | ActionKind::ReplayExecute => "replay.admit",
        }
    }

    /// The audit entry's `action` for a preview of it.
    pub fn preview_audit_action(self) -> &'static str {
        match self {
            ActionKind::Deploy => "deploy.preview",
            ActionKind::ReplayDryRun | ActionKind::ReplayExecute => "replay.preview",
        }
    }
}

impl fmt::Display for ActionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.phrase())
    }
}
