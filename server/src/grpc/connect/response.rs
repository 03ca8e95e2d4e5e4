//! The response half of the bridge: the gRPC answer of the API services, read whole, as a
//! Connect unary response (the message as JSON or protobuf) or Connect error JSON.

use bytes::{Buf as _, Bytes};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use http_body_util::{BodyExt as _, Full};
use tonic::body::Body;

use super::{ConnectCall, Format, error::error_response, schema::Schema};

/// Turns the gRPC `response` to `call` into its Connect form.
pub(super) async fn into_connect(
    response: http::Response<Body>,
    call: &ConnectCall,
    schema: &Schema,
) -> http::Response<Body> {
    let (parts, body) = response.into_parts();
    let metadata = metadata_headers(&parts.headers, "");
    // Trailers-only: a status in the headers and no message.
    if let Some(status) = tonic::Status::from_header_map(&parts.headers) {
        return with_headers(error_response(&status, schema), &metadata);
    }
    let collected = match body.collect().await {
        Ok(collected) => collected,
        Err(status) => return with_headers(error_response(&status, schema), &metadata),
    };
    let trailers = collected.trailers().cloned().unwrap_or_default();
    let data = collected.to_bytes();
    let status = tonic::Status::from_header_map(&trailers)
        .unwrap_or_else(|| tonic::Status::internal("the service answered without a grpc status"));
    if status.code() != tonic::Code::Ok {
        return with_headers(error_response(&status, schema), &metadata);
    }
    let answer = match unframe(data).and_then(|message| encode(call, message)) {
        Ok(answer) => answer,
        Err(status) => return error_response(&status, schema),
    };
    let mut response = http::Response::new(Body::new(Full::new(answer)));
    *response.status_mut() = StatusCode::OK;
    let content_type = match call.format {
        Format::Json => "application/json",
        Format::Proto => "application/proto",
    };
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    let response = with_headers(response, &metadata);
    with_headers(response, &metadata_headers(&trailers, "trailer-"))
}

/// The one uncompressed message of a unary gRPC answer.
fn unframe(mut data: Bytes) -> Result<Bytes, tonic::Status> {
    let broken = || tonic::Status::internal("the service's answer is not one grpc message");
    if data.len() < 5 || data[0] != 0 {
        return Err(broken());
    }
    data.advance(1);
    let length = usize::try_from(data.get_u32()).map_err(|_| broken())?;
    if data.len() != length {
        return Err(broken());
    }
    Ok(data)
}

/// The answer's body in the call's format.
fn encode(call: &ConnectCall, message: Bytes) -> Result<Bytes, tonic::Status> {
    match call.format {
        Format::Proto => Ok(message),
        Format::Json => Schema::proto_to_json(&call.method.output(), &message)
            .map(Bytes::from)
            .map_err(|error| {
                tracing::error!(%error, "the service's answer does not decode as its message");
                tonic::Status::internal("the service's answer could not be encoded as json")
            }),
    }
}

/// The application metadata among gRPC `headers` (not the protocol's own), with `prefix`
/// added to each name: Connect sends unary trailers as `trailer-` headers.
fn metadata_headers(headers: &HeaderMap, prefix: &str) -> Vec<(HeaderName, HeaderValue)> {
    headers
        .iter()
        .filter(|(name, _)| {
            let name = name.as_str();
            !name.starts_with("grpc-")
                && name != header::CONTENT_TYPE.as_str()
                && name != header::CONTENT_LENGTH.as_str()
                && name != header::TRAILER.as_str()
        })
        .filter_map(|(name, value)| {
            let name = HeaderName::try_from(format!("{prefix}{name}")).ok()?;
            Some((name, value.clone()))
        })
        .collect()
}

/// `response` with `headers` appended.
fn with_headers(
    mut response: http::Response<Body>,
    headers: &[(HeaderName, HeaderValue)],
) -> http::Response<Body> {
    for (name, value) in headers {
        response.headers_mut().append(name.clone(), value.clone());
    }
    response
}
