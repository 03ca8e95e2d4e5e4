//! The one place a [`Rejection`] becomes a `tonic::Status`: the code from its reason,
//! `google.rpc.ErrorInfo` in the details, `BadRequest` field violations, and `RetryInfo` on the
//! reasons a caller may retry.

use std::time::Duration;

use admission_contract::{ERROR_DOMAIN, Reason};
use tonic_types::{ErrorDetails, StatusExt};

use crate::app::failure::Failure;
use crate::domain::rejection::{AUDIT_UNAVAILABLE_RETRY_DELAY, OVERLOADED_RETRY_DELAY, Rejection};

/// The message of an INTERNAL answer.
pub const INTERNAL_MESSAGE: &str = "the admission service failed internally; nothing was admitted or changed, and the server log says why";

/// Turns a rejection into its wire status.
pub trait ToStatus {
    /// The wire status: code from the reason, ErrorInfo in the details, and RetryInfo on the
    /// reasons a caller may retry.
    fn to_status(&self) -> tonic::Status;
}

// === impl Rejection ===

impl ToStatus for Rejection {
    fn to_status(&self) -> tonic::Status {
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

// === impl Failure ===

impl From<Failure> for tonic::Status {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::Rejected(rejection) => rejection.to_status(),
            // No ErrorInfo: INTERNAL is no SPEC §7 reason, and its cause stays in the log.
            Failure::Internal => tonic::Status::internal(INTERNAL_MESSAGE),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
