//! An approval's lifecycle (SPEC §3 Approvals): the states it is stored in, the state it is
//! shown in, and the transitions reviews make.
//!
//! Stored states are `pending → approved | denied | revoked` (an approved one can still be
//! revoked); `expired` is derived from `expires_at` when read, never stored.

use std::{fmt, str::FromStr, time::SystemTime};

use super::{action::ActionKind, policy::Posture, request::EnvironmentKey};

/// The state an approval is stored in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ApprovalState {
    /// Waiting for reviewers (possibly approved by some, short of the quorum).
    Pending,
    /// Approved by the quorum: its credentials may admit.
    Approved,
    /// Denied by a reviewer; final.
    Denied,
    /// Revoked by a reviewer; final, and refused by every later admission.
    Revoked,
}

/// The state an approval is shown in: its stored state, or `Expired` once its time is up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ShownState {
    /// See [`ApprovalState::Pending`].
    Pending,
    /// See [`ApprovalState::Approved`].
    Approved,
    /// See [`ApprovalState::Denied`].
    Denied,
    /// See [`ApprovalState::Revoked`].
    Revoked,
    /// Pending or approved, past `expires_at`.
    Expired,
}

/// An approval as reviewers and orchestrators are shown it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApprovalView {
    /// Its id.
    pub approval_id: String,
    /// Its state now.
    pub state: ShownState,
    /// The environment.
    pub environment: EnvironmentKey,
    /// The action approved; `None` for approvals recorded from offline credentials.
    pub action: Option<ActionKind>,
    /// The spec hash approved.
    pub spec_hash: String,
    /// Capabilities granted.
    pub capabilities: Vec<String>,
    /// Who asked for it.
    pub requested_by: String,
    /// On whose behalf.
    pub initiated_by: String,
    /// Why it is needed.
    pub justification: String,
    /// When it was created.
    pub created_at: SystemTime,
    /// When it expires.
    pub expires_at: SystemTime,
    /// Distinct approvers needed.
    pub approvals_required: u32,
    /// Reviewers who approved.
    pub approvers: Vec<String>,
    /// The credentials issued, once the quorum is reached (none before).
    pub credentials: Vec<String>,
    /// Uses consumed.
    pub uses: u32,
    /// Uses allowed.
    pub max_uses: u32,
    /// The reviewer's or revoker's reason.
    pub decision_reason: String,
    /// The environment's posture, if it is still configured.
    pub posture: Option<Posture>,
}

/// A stored state this version does not know: the store holds data it did not write.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown approval state {0:?}")]
pub struct UnknownApprovalState(pub String);

// === impl ApprovalState ===

impl ApprovalState {
    /// Every stored state.
    pub const ALL: [ApprovalState; 4] = [
        ApprovalState::Pending,
        ApprovalState::Approved,
        ApprovalState::Denied,
        ApprovalState::Revoked,
    ];

    /// The stored text, e.g. `"pending"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalState::Pending => "pending",
            ApprovalState::Approved => "approved",
            ApprovalState::Denied => "denied",
            ApprovalState::Revoked => "revoked",
        }
    }

    /// The state shown at a moment when the approval is `expired` or not.
    pub fn shown(self, expired: bool) -> ShownState {
        match self {
            ApprovalState::Denied => ShownState::Denied,
            ApprovalState::Revoked => ShownState::Revoked,
            ApprovalState::Pending | ApprovalState::Approved if expired => ShownState::Expired,
            ApprovalState::Approved => ShownState::Approved,
            ApprovalState::Pending => ShownState::Pending,
        }
    }

    /// Whether a reviewer may approve or deny it now: pending and unexpired; otherwise the
    /// state it is shown in.
    pub fn check_decidable(self, expired: bool) -> Result<(), ShownState> {
        match self.shown(expired) {
            ShownState::Pending => Ok(()),
            shown => Err(shown),
        }
    }

    /// The state after one more reviewer approved: approved once the quorum is reached.
    pub fn approved(self, quorum_reached: bool) -> Self {
        if quorum_reached {
            ApprovalState::Approved
        } else {
            self
        }
    }

    /// The state after a revocation; denied and revoked approvals cannot be revoked (the error
    /// is the state they stay in).
    pub fn revoked(self) -> Result<Self, Self> {
        match self {
            ApprovalState::Pending | ApprovalState::Approved => Ok(ApprovalState::Revoked),
            ApprovalState::Denied | ApprovalState::Revoked => Err(self),
        }
    }

    /// Whether its credentials may admit (rows 23–24 check uses and revocation on top).
    pub fn admits(self) -> bool {
        self == ApprovalState::Approved
    }
}

impl FromStr for ApprovalState {
    type Err = UnknownApprovalState;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        ApprovalState::ALL
            .into_iter()
            .find(|state| state.as_str() == text)
            .ok_or_else(|| UnknownApprovalState(text.to_owned()))
    }
}

impl fmt::Display for ApprovalState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// === impl ShownState ===

impl ShownState {
    /// The lowercase name, as messages say it.
    pub fn as_str(self) -> &'static str {
        match self {
            ShownState::Pending => "pending",
            ShownState::Approved => "approved",
            ShownState::Denied => "denied",
            ShownState::Revoked => "revoked",
            ShownState::Expired => "expired",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_text_round_trips_and_unknown_text_is_an_error() {
        for state in ApprovalState::ALL {
            assert_eq!(state.as_str().parse::<ApprovalState>(), Ok(state));
        }
        assert_eq!(
            "expired".parse::<ApprovalState>(),
            Err(UnknownApprovalState("expired".to_owned()))
        );
        assert!("Pending".parse::<ApprovalState>().is_err());
    }

    #[test]
    fn expiry_shows_only_on_open_states() {
        assert_eq!(ApprovalState::Pending.shown(true), ShownState::Expired);
        assert_eq!(ApprovalState::Approved.shown(true), ShownState::Expired);
        assert_eq!(ApprovalState::Denied.shown(true), ShownState::Denied);
        assert_eq!(ApprovalState::Revoked.shown(true), ShownState::Revoked);
        assert_eq!(ApprovalState::Approved.shown(false), ShownState::Approved);
    }

    #[test]
    fn only_pending_unexpired_approvals_are_decidable() {
        assert_eq!(ApprovalState::Pending.check_decidable(false), Ok(()));
        assert_eq!(
            ApprovalState::Pending.check_decidable(true),
            Err(ShownState::Expired)
        );
        assert_eq!(
            ApprovalState::Approved.check_decidable(false),
            Err(ShownState::Approved)
        );
    }

    #[test]
    fn transitions() {
        assert_eq!(
            ApprovalState::Pending.approved(false),
            ApprovalState::Pending
        );
        assert_eq!(
            ApprovalState::Pending.approved(true),
            ApprovalState::Approved
        );
        assert_eq!(
            ApprovalState::Approved.revoked(),
            Ok(ApprovalState::Revoked)
        );
        assert_eq!(ApprovalState::Pending.revoked(), Ok(ApprovalState::Revoked));
        assert_eq!(ApprovalState::Denied.revoked(), Err(ApprovalState::Denied));
        assert_eq!(
            ApprovalState::Revoked.revoked(),
            Err(ApprovalState::Revoked)
        );
        assert!(ApprovalState::Approved.admits());
        assert!(!ApprovalState::Pending.admits());
    }
}
