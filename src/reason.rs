//! Every `google.rpc.ErrorInfo.reason` the service answers with (SPEC §7), and its gRPC code.

use std::{fmt, str::FromStr};

use tonic::Code;

macro_rules! reasons {
    ($($(#[$doc:meta])* $variant:ident => $text:literal,)+) => {
        /// An `ErrorInfo.reason` of a rejection. SPEC §7 rows 1–27, plus the approval-lifecycle
        /// reasons of the Approvals service.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum Reason {
            $($(#[$doc])* $variant,)+
        }

        impl Reason {
            /// Every reason, in SPEC §7 order.
            pub const ALL: &'static [Reason] = &[$(Reason::$variant,)+];

            /// The wire text, e.g. `"SPEC_HASH_MISMATCH"`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Reason::$variant => $text,)+
                }
            }
        }

        impl FromStr for Reason {
            type Err = UnknownReason;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok(Reason::$variant),)+
                    other => Err(UnknownReason(other.to_owned())),
                }
            }
        }
    };
}

reasons! {
    /// Row 1: request fields missing or malformed.
    RequestInvalid => "REQUEST_INVALID",
    /// Row 2: spec_kv malformed.
    SpecMalformed => "SPEC_MALFORMED",
    /// Row 3: caller lacks the role for this RPC and environment.
    CallerNotAuthorized => "CALLER_NOT_AUTHORIZED",
    /// Row 4: environment not configured.
    EnvironmentUnknown => "ENVIRONMENT_UNKNOWN",
    /// Row 5: request_id reused by this caller with different content.
    RequestIdConflict => "REQUEST_ID_CONFLICT",
    /// Row 6: policy DENY.
    PolicyDenied => "POLICY_DENIED",
    /// Row 7: execute replay where only dry-run is allowed.
    ReplayExecuteNotPermitted => "REPLAY_EXECUTE_NOT_PERMITTED",
    /// Row 8: config bundle made for another environment.
    ConfigBundleEnvironmentMismatch => "CONFIG_BUNDLE_ENVIRONMENT_MISMATCH",
    /// Row 9: replay source artifact from another environment.
    SourceEnvironmentMismatch => "SOURCE_ENVIRONMENT_MISMATCH",
    /// Row 10: approval required, no credential attached.
    ApprovalRequired => "APPROVAL_REQUIRED",
    /// Row 11: credential cannot be decoded, misses a field, or is too long.
    CredentialMalformed => "CREDENTIAL_MALFORMED",
    /// Row 12: `kid` not in the key set.
    SigningKeyUnknown => "SIGNING_KEY_UNKNOWN",
    /// Row 13: `kid` revoked.
    SigningKeyRevoked => "SIGNING_KEY_REVOKED",
    /// Row 14: signature does not verify.
    SignatureInvalid => "SIGNATURE_INVALID",
    /// Row 15: `v` unsupported.
    CredentialVersionUnsupported => "CREDENTIAL_VERSION_UNSUPPORTED",
    /// Row 16: credential `spec_hash` differs from the request's.
    SpecHashMismatch => "SPEC_HASH_MISMATCH",
    /// Row 17: org, project, environment or posture differs.
    EnvironmentMismatch => "ENVIRONMENT_MISMATCH",
    /// Row 18: credential expired (beyond clock skew).
    CredentialExpired => "CREDENTIAL_EXPIRED",
    /// Row 18: credential issued in the future (beyond clock skew).
    CredentialNotYetValid => "CREDENTIAL_NOT_YET_VALID",
    /// Row 19: capabilities do not cover the required set.
    CapabilitiesInsufficient => "CAPABILITIES_INSUFFICIENT",
    /// Row 20: `config_bundle_digest` differs.
    ConfigBundleMismatch => "CONFIG_BUNDLE_MISMATCH",
    /// Row 21: lifetime longer than `max_credential_ttl`.
    CredentialLifetimeExceedsPolicy => "CREDENTIAL_LIFETIME_EXCEEDS_POLICY",
    /// Row 22: `issued_by` equals `initiated_by` or the caller.
    SelfApproval => "SELF_APPROVAL",
    /// Row 23: approval revoked.
    ApprovalRevoked => "APPROVAL_REVOKED",
    /// Row 24: approval uses exhausted.
    ApprovalConsumed => "APPROVAL_CONSUMED",
    /// Row 25: fewer distinct valid issuers than `required_approvals`.
    QuorumNotMet => "QUORUM_NOT_MET",
    /// Row 26: audit entry could not be made durable in time.
    AuditUnavailable => "AUDIT_UNAVAILABLE",
    /// Row 27: server overloaded.
    Overloaded => "OVERLOADED",
    /// Approvals: no approval with that id.
    ApprovalNotFound => "APPROVAL_NOT_FOUND",
    /// Approvals: the approval is not pending, so it cannot be decided.
    ApprovalNotPending => "APPROVAL_NOT_PENDING",
    /// Approvals: the approval cannot be revoked in its current state.
    ApprovalNotRevocable => "APPROVAL_NOT_REVOCABLE",
    /// Approvals: the reviewer already approved this request.
    AlreadyApproved => "ALREADY_APPROVED",
    /// Approvals: the service has no `[signing]` key, so it cannot issue credentials.
    SigningNotConfigured => "SIGNING_NOT_CONFIGURED",
    /// Audit.ProveInclusion: no audit entry has that decision_id.
    DecisionNotFound => "DECISION_NOT_FOUND",
}

/// A reason string this version does not know.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown rejection reason {0:?}")]
pub struct UnknownReason(pub String);

// === impl Reason ===

impl Reason {
    /// The gRPC status code this reason is answered with (SPEC §7).
    pub fn code(self) -> Code {
        // Exhaustive on purpose: a new reason must be given its code here.
        match self {
            Reason::RequestInvalid | Reason::SpecMalformed => Code::InvalidArgument,
            Reason::CallerNotAuthorized
            | Reason::PolicyDenied
            | Reason::ReplayExecuteNotPermitted
            | Reason::ApprovalRequired
            | Reason::CapabilitiesInsufficient
            | Reason::CredentialLifetimeExceedsPolicy
            | Reason::SelfApproval
            | Reason::ApprovalRevoked
            | Reason::QuorumNotMet => Code::PermissionDenied,
            Reason::EnvironmentUnknown | Reason::ApprovalNotFound | Reason::DecisionNotFound => {
                Code::NotFound
            }
            Reason::RequestIdConflict => Code::AlreadyExists,
            Reason::ConfigBundleEnvironmentMismatch
            | Reason::SourceEnvironmentMismatch
            | Reason::SpecHashMismatch
            | Reason::EnvironmentMismatch
            | Reason::ConfigBundleMismatch
            | Reason::ApprovalConsumed
            | Reason::ApprovalNotPending
            | Reason::ApprovalNotRevocable
            | Reason::AlreadyApproved
            | Reason::SigningNotConfigured => Code::FailedPrecondition,
            Reason::CredentialMalformed
            | Reason::SigningKeyUnknown
            | Reason::SigningKeyRevoked
            | Reason::SignatureInvalid
            | Reason::CredentialVersionUnsupported
            | Reason::CredentialExpired
            | Reason::CredentialNotYetValid => Code::Unauthenticated,
            Reason::AuditUnavailable => Code::Unavailable,
            Reason::Overloaded => Code::ResourceExhausted,
        }
    }
}

impl Reason {
    /// Whether the service decided nothing and the same request may be sent again later: the
    /// audit trail could not take the entry (UNAVAILABLE) or the server was overloaded
    /// (RESOURCE_EXHAUSTED). Nothing was admitted or consumed, so resending the identical
    /// request (same `request_id`) cannot admit twice.
    pub fn is_retryable(self) -> bool {
        matches!(self.code(), Code::Unavailable | Code::ResourceExhausted)
    }

    /// The canonical name of [`Reason::code`], e.g. `"PERMISSION_DENIED"`, as the audit records it.
    pub fn code_name(self) -> &'static str {
        code_name(self.code())
    }
}

/// The canonical upper-case name of a gRPC code (`"OK"`, `"PERMISSION_DENIED"`, …).
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_round_trips_through_its_text() {
        for reason in Reason::ALL {
            assert_eq!(reason.as_str().parse::<Reason>(), Ok(*reason));
        }
        assert_eq!(Reason::ALL.len(), 34);
    }

    /// The proto enum `ErrorReason` is the published list: it and `Reason` hold the same names.
    #[test]
    fn reasons_equal_the_proto_error_reason_enum() {
        use crate::pb::ErrorReason;

        for reason in Reason::ALL {
            assert!(
                ErrorReason::from_str_name(reason.as_str()).is_some(),
                "{reason} is missing from the proto enum ErrorReason"
            );
        }
        let proto_names: Vec<&str> = (1..)
            .map_while(|value| ErrorReason::try_from(value).ok())
            .map(|reason| reason.as_str_name())
            .collect();
        for name in &proto_names {
            assert!(
                name.parse::<Reason>().is_ok(),
                "ErrorReason.{name} is not a Reason the service knows"
            );
        }
        assert_eq!(proto_names.len(), Reason::ALL.len());
    }

    #[test]
    fn codes_follow_spec_table() {
        assert_eq!(Reason::SpecHashMismatch.code(), Code::FailedPrecondition);
        assert_eq!(Reason::CredentialExpired.code(), Code::Unauthenticated);
        assert_eq!(Reason::ApprovalConsumed.code(), Code::FailedPrecondition);
        assert_eq!(Reason::ApprovalRevoked.code(), Code::PermissionDenied);
        assert_eq!(Reason::RequestIdConflict.code(), Code::AlreadyExists);
        assert_eq!(Reason::Overloaded.code(), Code::ResourceExhausted);
    }

    #[test]
    fn only_audit_unavailable_and_overloaded_are_retryable() {
        let retryable: Vec<Reason> = Reason::ALL
            .iter()
            .copied()
            .filter(|reason| reason.is_retryable())
            .collect();
        assert_eq!(retryable, [Reason::AuditUnavailable, Reason::Overloaded]);
    }
}
