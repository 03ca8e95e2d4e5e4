//! How a command ends: the exit statuses scripts rely on, and failures printed as text or as
//! one JSON object.

use std::{fmt, process::ExitCode};

use admission_contract::reason::code_name;
use serde_json::{Value, json};

use crate::{AdmitError, ClientError, Rejection};

/// The exit status of `admissionctl`. The numbers and names are the CLI's contract with the
/// scripts that call it; `docs/reference.md` lists them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    /// 0: admitted, or the command did what it was asked.
    Ok,
    /// 1: the service said no: a typed rejection, an Approvals refusal, or a check that did not
    /// pass (`audit verify` on a broken chain).
    Rejected,
    /// 2: bad flags or local input (an unreadable file, a malformed value); nothing was decided.
    Usage,
    /// 3: the service was unreachable or decided nothing: connection, TLS, deadline,
    /// `AUDIT_UNAVAILABLE`, `OVERLOADED`, a health check that is not SERVING.
    Unavailable,
}

/// Why a command did not succeed. Each variant has one exit status ([`CliError::exit_status`]).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad flags or local input; nothing was sent, or nothing could be.
    #[error("{0}")]
    Usage(String),
    /// The service answered with a typed rejection (`google.rpc.ErrorInfo`).
    #[error("{0}")]
    Rejected(Box<Rejection>),
    /// The service's answer means no, without a typed rejection: an approval given with
    /// `--approval` that has no credentials yet.
    #[error("{0}")]
    Refused(String),
    /// The service could not be reached or gave no decision.
    #[error("{message}")]
    Unavailable {
        /// The gRPC code, when a call got one.
        code: Option<tonic::Code>,
        /// What happened, on one line.
        message: String,
    },
}

// === impl ExitStatus ===

impl ExitStatus {
    /// The process exit status: 0, 1, 2 or 3.
    pub fn code(self) -> u8 {
        match self {
            ExitStatus::Ok => 0,
            ExitStatus::Rejected => 1,
            ExitStatus::Usage => 2,
            ExitStatus::Unavailable => 3,
        }
    }

    /// The name scripts see as `error` in JSON: `ok`, `rejected`, `usage`, `unavailable`.
    pub fn name(self) -> &'static str {
        match self {
            ExitStatus::Ok => "ok",
            ExitStatus::Rejected => "rejected",
            ExitStatus::Usage => "usage",
            ExitStatus::Unavailable => "unavailable",
        }
    }
}

impl From<ExitStatus> for ExitCode {
    fn from(status: ExitStatus) -> Self {
        ExitCode::from(status.code())
    }
}

// === impl CliError ===

impl CliError {
    /// Bad input (exit status 2).
    pub fn usage(message: impl fmt::Display) -> Self {
        Self::Usage(one_line(message))
    }

    /// The service could not be reached or decided nothing (exit status 3).
    pub fn unavailable(code: Option<tonic::Code>, message: impl fmt::Display) -> Self {
        Self::Unavailable {
            code,
            message: one_line(message),
        }
    }

    /// A failed call: the typed rejection when the status carries one, else unavailable.
    pub fn from_status(status: &tonic::Status) -> Self {
        match Rejection::from_status(status) {
            Some(rejection) => Self::Rejected(Box::new(rejection)),
            None => Self::unavailable(Some(status.code()), status_message(status)),
        }
    }

    /// The exit status this failure ends the command with.
    pub fn exit_status(&self) -> ExitStatus {
        match self {
            CliError::Usage(_) => ExitStatus::Usage,
            CliError::Rejected(rejection) => rejection_status(rejection),
            CliError::Refused(_) => ExitStatus::Rejected,
            CliError::Unavailable { .. } => ExitStatus::Unavailable,
        }
    }

    /// The JSON object printed for this failure: `error` (the exit status name), `code`,
    /// `reason`, `message` and `decision_id` always (null when unknown), plus a rejection's
    /// `metadata` and `field_violations`.
    pub fn to_json(&self) -> Value {
        let error = self.exit_status().name();
        match self {
            CliError::Rejected(rejection) => json!({
                "error": error,
                "code": code_name(rejection.code),
                "reason": rejection.reason.as_str(),
                "message": rejection.message,
                "decision_id": rejection.decision_id,
                "metadata": rejection.metadata,
                "field_violations": rejection.field_violations.iter().map(|violation| json!({
                    "field": violation.field,
                    "description": violation.description,
                })).collect::<Vec<_>>(),
            }),
            CliError::Usage(message) | CliError::Refused(message) => json!({
                "error": error,
                "code": Value::Null,
                "reason": Value::Null,
                "message": message,
                "decision_id": Value::Null,
            }),
            CliError::Unavailable { code, message } => json!({
                "error": error,
                "code": code.map(code_name),
                "reason": Value::Null,
                "message": message,
                "decision_id": Value::Null,
            }),
        }
    }

    /// The failure for a person: a rejection as a block, anything else as one line.
    pub fn to_text(&self) -> String {
        let CliError::Rejected(rejection) = self else {
            return format!("admissionctl: {self}");
        };
        let heading = match self.exit_status() {
            ExitStatus::Unavailable => "UNAVAILABLE",
            _ => "REJECTED",
        };
        let mut text = format!(
            "{heading} {} ({})\n  {}",
            rejection.reason,
            code_name(rejection.code),
            rejection.message
        );
        if let Some(decision_id) = &rejection.decision_id {
            text.push_str(&format!("\n  decision_id: {decision_id}"));
        }
        let mut metadata: Vec<_> = rejection
            .metadata
            .iter()
            .filter(|(key, _)| key.as_str() != "decision_id")
            .collect();
        metadata.sort();
        for (key, value) in metadata {
            text.push_str(&format!("\n  {key}: {value}"));
        }
        for violation in &rejection.field_violations {
            text.push_str(&format!(
                "\n  field {}: {}",
                violation.field, violation.description
            ));
        }
        text
    }
}

impl From<AdmitError> for CliError {
    fn from(error: AdmitError) -> Self {
        match error {
            AdmitError::Rejected(rejection) => CliError::Rejected(Box::new(rejection)),
            AdmitError::Call(status) => CliError::from_status(&status),
        }
    }
}

impl From<tonic::Status> for CliError {
    fn from(status: tonic::Status) -> Self {
        CliError::from_status(&status)
    }
}

impl From<ClientError> for CliError {
    fn from(error: ClientError) -> Self {
        let message = error_chain(&error);
        match error {
            ClientError::Missing(_)
            | ClientError::Read { .. }
            | ClientError::Endpoint { .. }
            | ClientError::NotHttps { .. }
            | ClientError::Pem { .. }
            | ClientError::KeyMismatch { .. }
            | ClientError::Tls(_) => CliError::usage(message),
            ClientError::Connect { .. } | ClientError::ConnectTimeout { .. } => {
                CliError::unavailable(Some(tonic::Code::Unavailable), message)
            }
        }
    }
}

/// Rejections are 1, except the two reasons that say the service decided nothing.
fn rejection_status(rejection: &Rejection) -> ExitStatus {
    match rejection.reason.known() {
        Some(reason) if reason.is_retryable() => ExitStatus::Unavailable,
        Some(_) | None => ExitStatus::Rejected,
    }
}

/// `CODE: message: causes`, with what to change when the call ran out of time.
fn status_message(status: &tonic::Status) -> String {
    let mut text = format!("{}: {}", code_name(status.code()), status.message());
    let mut source = std::error::Error::source(status);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text = format!("{text}: {cause_text}");
        }
        source = cause.source();
    }
    let timed_out = status.code() == tonic::Code::DeadlineExceeded
        || (status.code() == tonic::Code::Cancelled && status.message() == "Timeout expired");
    if timed_out {
        return format!("{text}: no answer in time; raise --timeout or --retry-deadline");
    }
    if text.contains("transport error") {
        // An mTLS server that refuses a client certificate closes the connection once the
        // handshake is over, which the client only sees at its first call.
        return format!(
            "{text}: the connection failed; if the service is up, check that it trusts the \
             client certificate (--cert)"
        );
    }
    text
}

/// The error and its sources, e.g. `cannot connect to …: transport error: connection refused`.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text = format!("{text}: {cause_text}");
        }
        source = cause.source();
    }
    text
}

fn one_line(message: impl fmt::Display) -> String {
    let text = message.to_string();
    // Transport errors nest their causes; the chain reads better on one line.
    text.split('\n')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(": ")
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use admission_contract::{ERROR_DOMAIN, Reason};
    use tonic_types::{ErrorDetails, StatusExt};

    use super::*;

    fn rejected(reason: Reason) -> CliError {
        let details = ErrorDetails::with_error_info(
            reason.as_str(),
            ERROR_DOMAIN,
            HashMap::from([("decision_id".to_owned(), "dec_1".to_owned())]),
        );
        CliError::from_status(&tonic::Status::with_error_details(
            reason.code(),
            "refused",
            details,
        ))
    }

    #[test]
    fn every_reason_has_its_exit_status() {
        for reason in Reason::ALL {
            let expected = match reason {
                Reason::AuditUnavailable | Reason::Overloaded => ExitStatus::Unavailable,
                _ => ExitStatus::Rejected,
            };
            assert_eq!(rejected(*reason).exit_status(), expected, "{reason}");
        }
        let plain = CliError::from_status(&tonic::Status::unavailable("connection refused"));
        assert_eq!(plain.exit_status(), ExitStatus::Unavailable);
        assert_eq!(CliError::usage("bad").exit_status(), ExitStatus::Usage);
        let codes: Vec<u8> = [
            ExitStatus::Ok,
            ExitStatus::Rejected,
            ExitStatus::Usage,
            ExitStatus::Unavailable,
        ]
        .iter()
        .map(|status| status.code())
        .collect();
        assert_eq!(codes, [0, 1, 2, 3]);
    }

    #[test]
    fn json_has_the_same_keys_for_every_failure() {
        let value = rejected(Reason::ApprovalRequired).to_json();
        assert_eq!(value["error"], "rejected");
        assert_eq!(value["code"], "PERMISSION_DENIED");
        assert_eq!(value["reason"], "APPROVAL_REQUIRED");
        assert_eq!(value["decision_id"], "dec_1");
        let value = rejected(Reason::AuditUnavailable).to_json();
        assert_eq!(value["error"], "unavailable");
        let timeout = CliError::from_status(&tonic::Status::cancelled("Timeout expired"));
        assert_eq!(
            timeout.to_json(),
            json!({
                "error": "unavailable",
                "code": "CANCELLED",
                "reason": null,
                "message": "CANCELLED: Timeout expired: no answer in time; raise --timeout or \
                            --retry-deadline",
                "decision_id": null,
            })
        );
        for key in ["error", "code", "reason", "message", "decision_id"] {
            assert!(CliError::usage("x").to_json().get(key).is_some(), "{key}");
        }
    }

    #[test]
    fn text_of_a_rejection_is_a_block_and_of_others_one_line() {
        assert_eq!(
            rejected(Reason::ApprovalRequired).to_text(),
            "REJECTED APPROVAL_REQUIRED (PERMISSION_DENIED)\n  refused\n  decision_id: dec_1"
        );
        assert!(
            rejected(Reason::Overloaded)
                .to_text()
                .starts_with("UNAVAILABLE OVERLOADED (RESOURCE_EXHAUSTED)\n")
        );
        assert_eq!(
            CliError::usage("a\n  b").to_text(),
            "admissionctl: a: b",
            "nested causes on one line"
        );
    }
}
