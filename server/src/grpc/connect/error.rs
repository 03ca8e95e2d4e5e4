//! Connect error JSON: a `tonic::Status` as `{"code", "message", "details"}` with the HTTP
//! status the Connect protocol assigns to its code.

use base64::{Engine as _, engine::general_purpose::STANDARD_NO_PAD};
use http::{HeaderValue, StatusCode, header::CONTENT_TYPE};
use prost::Message as _;
use tonic::{Code, body::Body};

use super::schema::Schema;

/// The prefix of a `google.protobuf.Any` type URL that Connect details leave out.
const TYPE_URL_PREFIX: &str = "type.googleapis.com/";

/// Connect's name of a gRPC code.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "canceled",
        Code::Unknown => "unknown",
        Code::InvalidArgument => "invalid_argument",
        Code::DeadlineExceeded => "deadline_exceeded",
        Code::NotFound => "not_found",
        Code::AlreadyExists => "already_exists",
        Code::PermissionDenied => "permission_denied",
        Code::ResourceExhausted => "resource_exhausted",
        Code::FailedPrecondition => "failed_precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out_of_range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data_loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

/// The HTTP status of an error with `code`, per the Connect protocol's table.
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            StatusCode::BAD_REQUEST
        }
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
    }
}

/// The Connect error body of `status`: its details (ErrorInfo, BadRequest, RetryInfo…) each
/// as `type`, unpadded base64 `value`, and the decoded `debug` form.
pub(super) fn error_body(status: &tonic::Status, schema: &Schema) -> serde_json::Value {
    let mut body = serde_json::json!({ "code": code_name(error_code(status)) });
    if !status.message().is_empty() {
        body["message"] = status.message().into();
    }
    let details = decoded_details(status, schema);
    if !details.is_empty() {
        body["details"] = details.into();
    }
    body
}

/// The code an error response carries: an OK status is no error, and only a broken answer
/// gets here with one.
fn error_code(status: &tonic::Status) -> Code {
    match status.code() {
        Code::Ok => Code::Internal,
        code => code,
    }
}

/// The details of `status` in Connect's form.
fn decoded_details(status: &tonic::Status, schema: &Schema) -> Vec<serde_json::Value> {
    let Ok(rpc_status) = tonic_types::pb::Status::decode(status.details()) else {
        return Vec::new();
    };
    rpc_status
        .details
        .iter()
        .map(|any| {
            let type_name = any
                .type_url
                .strip_prefix(TYPE_URL_PREFIX)
                .unwrap_or(&any.type_url);
            let mut detail = serde_json::json!({
                "type": type_name,
                "value": STANDARD_NO_PAD.encode(&any.value),
            });
            if let Some(debug) = schema.detail_to_json(type_name, &any.value) {
                detail["debug"] = debug;
            }
            detail
        })
        .collect()
}

/// The HTTP response carrying `status` as a Connect error.
pub(super) fn error_response(status: &tonic::Status, schema: &Schema) -> http::Response<Body> {
    let code = error_code(status);
    let body = error_body(status, schema);
    let mut response = http::Response::new(Body::new(http_body_util::Full::new(
        bytes::Bytes::from(body.to_string()),
    )));
    *response.status_mut() = http_status(code);
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
