//! A typed rejection: the one error every decision path produces, turned into a `tonic::Status`
//! with `google.rpc.ErrorInfo` (and `BadRequest` field violations, and `RetryInfo` when the
//! caller may try again) in exactly one place.

use std::{collections::HashMap, time::Duration};

use admission_contract::{ERROR_DOMAIN, Reason};
use tonic_types::{ErrorDetails, StatusExt};

/// A rejection with its SPEC §7 reason, an operator-facing sentence and ErrorInfo metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// The ErrorInfo reason; decides the gRPC code.
    pub reason: Reason,
    /// One lowercase sentence an operator can act on.
    pub message: String,
    /// ErrorInfo metadata (`decision_id`, `expected`/`actual`, `missing`, `kid`, `approval_id`).
    pub metadata: HashMap<String, String>,
    /// BadRequest field violations (`REQUEST_INVALID` only): field path and description.
    pub field_violations: Vec<(String, String)>,
}

/// How long a caller should wait before resending a request the audit trail could not take:
/// long enough for a brief store stall or failover to clear.
pub const AUDIT_UNAVAILABLE_RETRY_DELAY: Duration = Duration::from_secs(1);

/// How long a caller should wait before resending a request refused at the in-flight limit:
/// decisions take milliseconds, so capacity returns quickly.
pub const OVERLOADED_RETRY_DELAY: Duration = Duration::from_millis(200);

// === impl Rejection ===

impl Rejection {
    /// A rejection with no metadata yet.
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
            metadata: HashMap::new(),
            field_violations: Vec::new(),
        }
    }

    /// A `REQUEST_INVALID` rejection naming one field.
    pub fn invalid_field(field: &str, description: impl Into<String>) -> Self {
        let description = description.into();
        let mut rejection = Self::new(Reason::RequestInvalid, format!("{field} {description}"));
        rejection
            .field_violations
            .push((field.to_owned(), description));
        rejection
    }

    /// Adds one metadata entry.
    pub fn with(mut self, key: &str, value: impl Into<String>) -> Self {
        self.metadata.insert(key.to_owned(), value.into());
        self
    }

    /// Adds `expected` and `actual` metadata.
    pub fn expected_actual(self, expected: impl Into<String>, actual: impl Into<String>) -> Self {
        self.with("expected", expected).with("actual", actual)
    }

    /// The wire status: code from the reason, ErrorInfo in the details, and RetryInfo on the
    /// reasons a caller may retry.
    pub fn to_status(&self) -> tonic::Status {
        let mut details = ErrorDetails::with_error_info(
            self.reason.as_str(),
            ERROR_DOMAIN,
            self.metadata.clone(),
        );
        for (field, description) in &self.field_violations {
            details.add_bad_request_violation(field.clone(), description.clone());
        }
        if let Some(delay) = retry_delay(self.reason) {
            details.set_retry_info(Some(delay));
        }
        tonic::Status::with_error_details(self.reason.code(), self.message.clone(), details)
    }
}

/// The RetryInfo delay sent with `reason`, for the reasons a caller may retry.
fn retry_delay(reason: Reason) -> Option<Duration> {
    match reason.code() {
        tonic::Code::Unavailable => Some(AUDIT_UNAVAILABLE_RETRY_DELAY),
        tonic::Code::ResourceExhausted => Some(OVERLOADED_RETRY_DELAY),
        _ => None,
    }
}

impl From<Rejection> for tonic::Status {
    fn from(rejection: Rejection) -> Self {
        rejection.to_status()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_carries_code_reason_domain_and_metadata() {
        let status = Rejection::new(Reason::SpecHashMismatch, "spec differs")
            .expected_actual("sha256:aa", "sha256:bb")
            .with("decision_id", "dec_1")
            .to_status();
        assert_eq!(status.code(), tonic::Code::FailedPrecondition);
        let info = status.get_details_error_info().expect("error info");
        assert_eq!(info.reason, "SPEC_HASH_MISMATCH");
        assert_eq!(info.domain, "byteor.admission.v1");
        assert_eq!(info.metadata["expected"], "sha256:aa");
        assert_eq!(info.metadata["decision_id"], "dec_1");
    }

    #[test]
    fn invalid_field_adds_bad_request_violation() {
        let status = Rejection::invalid_field("request_id", "must not be empty").to_status();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        let bad = status.get_details_bad_request().expect("bad request");
        assert_eq!(bad.field_violations[0].field, "request_id");
        assert!(status.get_details_retry_info().is_none());
    }

    #[test]
    fn retryable_reasons_carry_retry_info() {
        let audit = Rejection::new(Reason::AuditUnavailable, "audit is unavailable").to_status();
        assert_eq!(audit.code(), tonic::Code::Unavailable);
        assert_eq!(
            audit.get_details_error_info().unwrap().reason,
            "AUDIT_UNAVAILABLE"
        );
        assert_eq!(
            audit.get_details_retry_info().unwrap().retry_delay,
            Some(AUDIT_UNAVAILABLE_RETRY_DELAY)
        );
        let overloaded = Rejection::new(Reason::Overloaded, "server is overloaded").to_status();
        assert_eq!(overloaded.code(), tonic::Code::ResourceExhausted);
        assert_eq!(
            overloaded.get_details_retry_info().unwrap().retry_delay,
            Some(OVERLOADED_RETRY_DELAY)
        );
        for reason in Reason::ALL.iter().filter(|r| !r.is_retryable()) {
            let status = Rejection::new(*reason, "refused").to_status();
            assert!(status.get_details_retry_info().is_none(), "{reason}");
        }
    }
}
