//! A typed rejection: the one error every decision path produces, turned into a `tonic::Status`
//! with `google.rpc.ErrorInfo` (and `BadRequest` field violations) in exactly one place.

use std::collections::HashMap;

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

    /// The wire status: code from the reason, ErrorInfo in the details.
    pub fn to_status(&self) -> tonic::Status {
        let mut details = ErrorDetails::with_error_info(
            self.reason.as_str(),
            ERROR_DOMAIN,
            self.metadata.clone(),
        );
        for (field, description) in &self.field_violations {
            details.add_bad_request_violation(field.clone(), description.clone());
        }
        tonic::Status::with_error_details(self.reason.code(), self.message.clone(), details)
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
    }
}
