use admission_contract::pb;
use http::{HeaderMap, HeaderValue, StatusCode};
use prost::Message as _;
use tonic::Code;

use super::{Format, Refusal, format_of, schema::Schema, timeout_of};

#[test]
fn every_code_has_connects_name_and_http_status() {
    let table = [
        (Code::Cancelled, "canceled", 499),
        (Code::Unknown, "unknown", 500),
        (Code::InvalidArgument, "invalid_argument", 400),
        (Code::DeadlineExceeded, "deadline_exceeded", 504),
        (Code::NotFound, "not_found", 404),
        (Code::AlreadyExists, "already_exists", 409),
        (Code::PermissionDenied, "permission_denied", 403),
        (Code::ResourceExhausted, "resource_exhausted", 429),
        (Code::FailedPrecondition, "failed_precondition", 400),
        (Code::Aborted, "aborted", 409),
        (Code::OutOfRange, "out_of_range", 400),
        (Code::Unimplemented, "unimplemented", 501),
        (Code::Internal, "internal", 500),
        (Code::Unavailable, "unavailable", 503),
        (Code::DataLoss, "data_loss", 500),
        (Code::Unauthenticated, "unauthenticated", 401),
    ];
    for (code, name, status) in table {
        assert_eq!(super::code_name(code), name);
        assert_eq!(
            super::http_status(code),
            StatusCode::from_u16(status).unwrap(),
            "{name}"
        );
    }
}

#[test]
fn paths_name_only_the_apis_unary_methods() {
    let schema = Schema::load().unwrap();
    let admit = schema
        .method("/byteor.admission.v1.DeployAdmission/Admit")
        .unwrap();
    assert_eq!(
        admit.input().full_name(),
        "byteor.admission.v1.DeployRequest"
    );
    assert_eq!(admit.output().full_name(), "byteor.admission.v1.Admission");
    assert!(schema.method("/byteor.admission.v1.Audit/Verify").is_some());
    for path in [
        "/byteor.admission.v1.DeployAdmission/Launch",
        "/byteor.admission.v1.Nothing/Admit",
        "/grpc.health.v1.Health/Check",
        "/google.rpc.Status/Get",
        "/byteor.admission.v1.DeployAdmission",
        "/",
    ] {
        assert!(schema.method(path).is_none(), "{path}");
    }
}

#[test]
fn json_follows_the_proto3_mapping_both_ways() {
    let schema = Schema::load().unwrap();
    let admit = schema
        .method("/byteor.admission.v1.DeployAdmission/Admit")
        .unwrap();
    // Both spellings of field names, bytes as base64.
    let json =
        br#"{"request_id": "r-1", "specKv": "YT0xCg==", "breakGlass": {"justification": "x"}}"#;
    let bytes = Schema::json_to_proto(&admit.input(), json).unwrap();
    let request = pb::DeployRequest::decode(bytes.as_slice()).unwrap();
    assert_eq!(request.request_id, "r-1");
    assert_eq!(request.spec_kv, b"a=1\n");
    assert_eq!(request.break_glass.unwrap().justification, "x");

    let list = schema.method("/byteor.admission.v1.Audit/List").unwrap();
    let response = pb::ListAuditResponse {
        entries: vec![pb::AuditEntry {
            seq: 7,
            ..pb::AuditEntry::default()
        }],
        next_page_token: String::new(),
    };
    let json = Schema::proto_to_json(&list.output(), &response.encode_to_vec()).unwrap();
    let json: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(json, serde_json::json!({"entries": [{"seq": "7"}]}));
}

#[test]
fn json_errors_name_the_field() {
    let schema = Schema::load().unwrap();
    let input = schema
        .method("/byteor.admission.v1.Approvals/Decide")
        .unwrap()
        .input();
    let cases: [(&[u8], &str); 5] = [
        (br#"{"verdict": "VERDICT_MAYBE"}"#, "verdict"),
        (br#"{"approvalId": 3}"#, "approvalId"),
        (br#"{"mood": "good"}"#, "mood"),
        (br#"{"reason": "x"} trailing"#, "body"),
        (b"  ", "body"),
    ];
    for (json, field) in cases {
        let error = Schema::json_to_proto(&input, json).unwrap_err();
        assert_eq!(error.field, field, "{error}");
        assert_eq!(error.message, "DecideApprovalRequest");
    }
    let unknown = Schema::json_to_proto(&input, br#"{"mood": "good"}"#).unwrap_err();
    assert!(unknown.detail.contains("mood"), "{unknown}");
}

#[test]
fn content_types_and_timeouts_are_read_as_connect_defines_them() {
    let headers = |name: &'static str, value: &'static str| {
        let mut headers = HeaderMap::new();
        headers.insert(name, HeaderValue::from_static(value));
        headers
    };
    let json = headers("content-type", "application/json; charset=utf-8");
    assert_eq!(format_of(&json).unwrap(), Format::Json);
    let proto = headers("content-type", "Application/Proto");
    assert_eq!(format_of(&proto).unwrap(), Format::Proto);
    for refused in [
        "application/grpc-web",
        "text/plain",
        "application/connect+json",
    ] {
        let refusal = format_of(&headers("content-type", refused)).unwrap_err();
        assert!(
            matches!(refusal, Refusal::UnsupportedMediaType(_)),
            "{refused}"
        );
    }
    assert!(matches!(
        format_of(&HeaderMap::new()),
        Err(Refusal::UnsupportedMediaType(_))
    ));

    let timeout = timeout_of(&headers("connect-timeout-ms", "1500")).unwrap();
    assert_eq!(timeout, Some(std::time::Duration::from_millis(1500)));
    assert_eq!(timeout_of(&HeaderMap::new()).unwrap(), None);
    for refused in ["0", "-1", "1.5", "soon", "12345678901"] {
        let refusal = timeout_of(&headers("connect-timeout-ms", refused)).unwrap_err();
        assert!(
            matches!(refusal, Refusal::BadHeader("connect-timeout-ms", _)),
            "{refused}"
        );
    }
}
