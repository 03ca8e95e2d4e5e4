use admission_contract::Reason;
use tonic_types::StatusExt;

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
