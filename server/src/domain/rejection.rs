//! A typed rejection: the one error every decision path produces. The gRPC adapter turns it
//! into a status with `google.rpc.ErrorInfo` in exactly one place (`grpc::status`).

use std::{collections::HashMap, time::Duration};

use admission_contract::Reason;

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
}
