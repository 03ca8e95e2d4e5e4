//! Typed rejections: the `google.rpc.ErrorInfo` of a non-OK status, decoded.

use std::{collections::HashMap, fmt};

use admission_contract::{ERROR_DOMAIN, Reason};
use tonic_types::StatusExt;

/// A rejection answered by the service; docs/reference.md lists every reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// The ErrorInfo reason.
    pub reason: RejectionReason,
    /// The gRPC status code.
    pub code: tonic::Code,
    /// The decision id from the metadata, when the decision was recorded.
    pub decision_id: Option<String>,
    /// All ErrorInfo metadata (`decision_id`, `expected`, `actual`, `missing`, `kid`, …).
    pub metadata: HashMap<String, String>,
    /// The operator-facing message.
    pub message: String,
    /// BadRequest field violations: field path and description.
    pub field_violations: Vec<FieldViolation>,
}

/// A reason this client knows, or the text of one it does not (from a newer server).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RejectionReason {
    /// A reason of this contract version.
    Known(Reason),
    /// A reason this version does not know, kept verbatim.
    Unknown(String),
}

/// One BadRequest field violation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldViolation {
    /// Field path, e.g. `environment.org_id`.
    pub field: String,
    /// What is wrong with it.
    pub description: String,
}

// === impl Rejection ===

impl Rejection {
    /// Decodes `status` when it carries an ErrorInfo of the admission domain.
    pub fn from_status(status: &tonic::Status) -> Option<Self> {
        let info = status.get_details_error_info()?;
        if info.domain != ERROR_DOMAIN {
            return None;
        }
        let field_violations = status
            .get_details_bad_request()
            .map(|bad| {
                bad.field_violations
                    .into_iter()
                    .map(|v| FieldViolation {
                        field: v.field,
                        description: v.description,
                    })
                    .collect()
            })
            .unwrap_or_default();
        Some(Self {
            reason: RejectionReason::parse(&info.reason),
            code: status.code(),
            decision_id: info.metadata.get("decision_id").cloned(),
            metadata: info.metadata,
            message: status.message().to_owned(),
            field_violations,
        })
    }

    /// Whether this is a rejection with `reason`.
    pub fn is(&self, reason: Reason) -> bool {
        self.reason == RejectionReason::Known(reason)
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason, self.message)?;
        if let Some(decision_id) = &self.decision_id {
            write!(f, " (decision {decision_id})")?;
        }
        Ok(())
    }
}

impl std::error::Error for Rejection {}

// === impl RejectionReason ===

impl RejectionReason {
    /// Parses wire text; unknown text is kept, never an error.
    pub fn parse(text: &str) -> Self {
        text.parse()
            .map_or_else(|_| Self::Unknown(text.to_owned()), Self::Known)
    }

    /// The wire text.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Known(reason) => reason.as_str(),
            Self::Unknown(text) => text,
        }
    }

    /// The known reason, if any.
    pub fn known(&self) -> Option<Reason> {
        match self {
            Self::Known(reason) => Some(*reason),
            Self::Unknown(_) => None,
        }
    }
}

impl fmt::Display for RejectionReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use tonic::Code;
    use tonic_types::ErrorDetails;

    use super::*;

    fn status(reason: &str, domain: &str) -> tonic::Status {
        let mut details = ErrorDetails::with_error_info(
            reason,
            domain,
            HashMap::from([
                ("decision_id".to_owned(), "dec_01".to_owned()),
                ("kid".to_owned(), "org-2026-11".to_owned()),
            ]),
        );
        details.add_bad_request_violation("request_id", "must not be empty");
        tonic::Status::with_error_details(Code::Unauthenticated, "key is unknown", details)
    }

    #[test]
    fn decodes_reason_code_metadata_and_violations() {
        let rejection =
            Rejection::from_status(&status("SIGNING_KEY_UNKNOWN", ERROR_DOMAIN)).unwrap();
        assert_eq!(
            rejection.reason,
            RejectionReason::Known(Reason::SigningKeyUnknown)
        );
        assert!(rejection.is(Reason::SigningKeyUnknown));
        assert_eq!(rejection.code, Code::Unauthenticated);
        assert_eq!(rejection.decision_id.as_deref(), Some("dec_01"));
        assert_eq!(rejection.metadata["kid"], "org-2026-11");
        assert_eq!(rejection.message, "key is unknown");
        assert_eq!(
            rejection.field_violations,
            vec![FieldViolation {
                field: "request_id".into(),
                description: "must not be empty".into()
            }]
        );
        assert_eq!(
            rejection.to_string(),
            "SIGNING_KEY_UNKNOWN: key is unknown (decision dec_01)"
        );
    }

    #[test]
    fn keeps_unknown_reasons() {
        let rejection = Rejection::from_status(&status("FROM_THE_FUTURE", ERROR_DOMAIN)).unwrap();
        assert_eq!(
            rejection.reason,
            RejectionReason::Unknown("FROM_THE_FUTURE".into())
        );
        assert_eq!(rejection.reason.known(), None);
    }

    #[test]
    fn ignores_other_domains_and_plain_statuses() {
        assert_eq!(
            Rejection::from_status(&status("SIGNING_KEY_UNKNOWN", "other.example")),
            None
        );
        assert_eq!(
            Rejection::from_status(&tonic::Status::unavailable("down")),
            None
        );
    }
}
