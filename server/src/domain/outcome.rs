//! What an audit entry says happened: the `outcome` column of the trail.

use std::{fmt, str::FromStr};

/// The outcome of a recorded decision or approval change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// An admission.
    Admitted,
    /// A break-glass admission (rows 10–25 skipped).
    AdmittedBreakGlass,
    /// A shadow-mode admission of what enforcement would reject.
    AdmittedShadow,
    /// A rejection, of an admission or of an approval call.
    Rejected,
    /// A preview.
    Previewed,
    /// A new approval request.
    ApprovalCreated,
    /// One reviewer's approval.
    ApprovalApproved,
    /// A reviewer's denial.
    ApprovalDenied,
    /// A revocation.
    ApprovalRevoked,
    /// A configuration reload put in force.
    ConfigReloaded,
    /// A configuration reload refused; the previous configuration stays in force.
    ConfigReloadRefused,
}

/// An outcome text this version does not write.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown audit outcome {0:?}")]
pub struct UnknownOutcome(pub String);

// === impl Outcome ===

impl Outcome {
    /// Every outcome.
    pub const ALL: [Outcome; 11] = [
        Outcome::Admitted,
        Outcome::AdmittedBreakGlass,
        Outcome::AdmittedShadow,
        Outcome::Rejected,
        Outcome::Previewed,
        Outcome::ApprovalCreated,
        Outcome::ApprovalApproved,
        Outcome::ApprovalDenied,
        Outcome::ApprovalRevoked,
        Outcome::ConfigReloaded,
        Outcome::ConfigReloadRefused,
    ];

    /// The recorded text, e.g. `"admitted_break_glass"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Admitted => "admitted",
            Outcome::AdmittedBreakGlass => "admitted_break_glass",
            Outcome::AdmittedShadow => "admitted_shadow",
            Outcome::Rejected => "rejected",
            Outcome::Previewed => "previewed",
            Outcome::ApprovalCreated => "approval_created",
            Outcome::ApprovalApproved => "approval_approved",
            Outcome::ApprovalDenied => "approval_denied",
            Outcome::ApprovalRevoked => "approval_revoked",
            Outcome::ConfigReloaded => "config_reloaded",
            Outcome::ConfigReloadRefused => "config_reload_refused",
        }
    }
}

impl FromStr for Outcome {
    type Err = UnknownOutcome;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Outcome::ALL
            .into_iter()
            .find(|outcome| outcome.as_str() == text)
            .ok_or_else(|| UnknownOutcome(text.to_owned()))
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_text_round_trips_and_unknown_text_is_an_error() {
        for outcome in Outcome::ALL {
            assert_eq!(outcome.as_str().parse::<Outcome>(), Ok(outcome));
        }
        assert_eq!(
            "admit".parse::<Outcome>(),
            Err(UnknownOutcome("admit".to_owned()))
        );
    }
}
