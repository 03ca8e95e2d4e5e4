use admission_contract::{Reason, SpecHash, pb};

use super::*;
use crate::domain::request::is_valid_request_id;

const LIMITS: RequestLimits = RequestLimits {
    spec_kv_max_bytes: 1024,
    max_credentials: 2,
    credential_max_bytes: 64,
    id_max_bytes: 128,
    environment_part_max_bytes: 63,
    text_max_bytes: 1024,
    capability_max_bytes: 128,
    max_capabilities: 4,
};

fn deploy() -> pb::DeployRequest {
    pb::DeployRequest {
        request_id: "req-1".into(),
        environment: Some(pb::EnvironmentRef {
            org_id: "acme".into(),
            project_id: "payments".into(),
            environment_id: "prod".into(),
        }),
        pipeline_version: "v1".into(),
        spec_kv: b"a=1\n".to_vec(),
        config_bundle: Some(pb::ConfigBundle {
            bundle_id: "b1".into(),
            digest: format!("sha256:{}", "0".repeat(64)),
            environment_id: "prod".into(),
        }),
        initiated_by: "alice@acme".into(),
        ..Default::default()
    }
}

#[test]
fn accepts_a_complete_deploy() {
    let request = AdmissionRequest::from_deploy(&deploy(), &LIMITS).unwrap();
    assert_eq!(request.environment.to_string(), "acme/payments/prod");
    assert_eq!(request.spec_hash, SpecHash::of_bytes(b"a=1\n"));
}

#[test]
fn names_every_bad_field() {
    let mut request = deploy();
    request.request_id = "bad id".into();
    request.pipeline_version.clear();
    request.credentials = vec!["a".into(), "b".into(), "c".into()];
    let invalid = AdmissionRequest::from_deploy(&request, &LIMITS).unwrap_err();
    assert_eq!(invalid.rejection.reason, Reason::RequestInvalid);
    let fields: Vec<_> = invalid
        .rejection
        .field_violations
        .iter()
        .map(|(f, _)| f.as_str())
        .collect();
    assert_eq!(fields, ["request_id", "pipeline_version", "credentials"]);
}

fn violated_fields(request: &pb::DeployRequest) -> Vec<String> {
    let invalid = AdmissionRequest::from_deploy(request, &LIMITS).unwrap_err();
    assert_eq!(invalid.rejection.reason, Reason::RequestInvalid);
    invalid
        .rejection
        .field_violations
        .iter()
        .map(|(f, _)| f.clone())
        .collect()
}

#[test]
fn every_string_field_is_bounded() {
    let long_id = "i".repeat(129);
    let long_part = "p".repeat(64);
    let long_text = "t".repeat(1025);
    let mut request = deploy();
    request.request_id = long_id.clone();
    request.environment.as_mut().unwrap().environment_id = long_part.clone();
    request.pipeline_version = long_id.clone();
    let bundle = request.config_bundle.as_mut().unwrap();
    bundle.bundle_id = long_id.clone();
    bundle.environment_id = long_part.clone();
    request.initiated_by = long_text.clone();
    request.break_glass = Some(pb::BreakGlass {
        justification: long_text.clone(),
    });
    assert_eq!(
        violated_fields(&request),
        [
            "request_id",
            "environment.environment_id",
            "pipeline_version",
            "config_bundle.bundle_id",
            "config_bundle.environment_id",
            "initiated_by",
            "break_glass.justification",
        ]
    );

    // At the limit is fine.
    let mut request = deploy();
    request.request_id = "i".repeat(128);
    request.environment.as_mut().unwrap().org_id = "p".repeat(63);
    request.initiated_by = "t".repeat(1024);
    request.required_capabilities = vec!["c".repeat(128); 4];
    assert!(AdmissionRequest::from_deploy(&request, &LIMITS).is_ok());
}

#[test]
fn capabilities_are_bounded_in_length_and_count() {
    let mut request = deploy();
    request.required_capabilities = vec!["c".repeat(129)];
    assert_eq!(violated_fields(&request), ["required_capabilities"]);
    request.required_capabilities = vec!["deploy".into(); 5];
    assert_eq!(violated_fields(&request), ["required_capabilities"]);
}

#[test]
fn an_invalid_request_echoes_its_input_truncated() {
    let mut request = deploy();
    request.request_id = "r".repeat(100_000);
    request.environment.as_mut().unwrap().org_id = "o".repeat(100_000);
    request.initiated_by = "b".repeat(100_000);
    let invalid = AdmissionRequest::from_deploy(&request, &LIMITS).unwrap_err();
    let bound = admission_contract::echo::ECHO_MAX_BYTES + '…'.len_utf8();
    assert_eq!(invalid.request_id.len(), bound);
    assert_eq!(invalid.environment.org_id.len(), bound);
    assert_eq!(invalid.initiated_by.len(), bound);
    assert!(
        invalid.rejection.message.len() < 200,
        "{}",
        invalid.rejection.message
    );
}

#[test]
fn malformed_spec_is_row_two() {
    let mut request = deploy();
    request.spec_kv = b"a=1\na=2\n".to_vec();
    let invalid = AdmissionRequest::from_deploy(&request, &LIMITS).unwrap_err();
    assert_eq!(invalid.rejection.reason, Reason::SpecMalformed);
}

#[test]
fn request_id_alphabet() {
    assert!(is_valid_request_id("a.b_c:d-1"));
    assert!(!is_valid_request_id(""));
    assert!(!is_valid_request_id(&"a".repeat(129)));
    assert!(!is_valid_request_id("a/b"));
}
