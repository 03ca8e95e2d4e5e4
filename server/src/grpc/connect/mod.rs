//! The Connect protocol's unary form beside gRPC, on the same listener: `POST
//! /byteor.admission.v1.<Service>/<Method>` with `Content-Type: application/json` (or
//! `application/proto`), answered with the response message or Connect error JSON.
//!
//! The bridge is two layers around the gRPC routes, so a Connect call takes the gRPC path
//! itself, with the same caller, roles, limits, decision and audit entry:
//! [`ConnectLayer`], outermost, checks the protocol (path 404, method 405, content type 415,
//! version and timeout headers), bounds the call by `Connect-Timeout-Ms`, and turns the gRPC
//! answer into Connect's form; [`ConnectBodyLayer`], inside the per-call limits (which meter
//! the body as it arrives), turns the body into the one gRPC message the services decode.

mod error;
mod request;
mod response;
mod schema;

use std::{
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use http::{HeaderValue, Method, header};
use http_body::Body as _;
use http_body_util::BodyExt as _;
use prost_reflect::MethodDescriptor;
use tonic::body::Body;
use tower::{Layer, Service};

pub use self::{
    error::{code_name, http_status},
    request::{ConnectBodyLayer, ConnectBodyService},
    schema::{Schema, SchemaError},
};

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send>>;

/// The content types of Connect unary requests the service reads.
const ACCEPT_POST: &str = "application/json, application/proto";

/// Speaks the Connect protocol in front of the gRPC routes.
#[derive(Clone, Debug)]
pub struct ConnectLayer {
    schema: Schema,
}

/// A service wrapped by [`ConnectLayer`].
#[derive(Clone, Debug)]
pub struct ConnectService<S> {
    inner: S,
    schema: Schema,
}

/// A Connect call on its way through the gRPC path: which method, in which format.
#[derive(Clone, Debug)]
pub struct ConnectCall {
    method: MethodDescriptor,
    format: Format,
}

/// The message encoding of a Connect unary call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `application/json`: the proto3 JSON mapping.
    Json,
    /// `application/proto`: the protobuf bytes, unframed.
    Proto,
}

// === impl ConnectLayer ===

impl ConnectLayer {
    /// The layer over the API's descriptors.
    pub fn new(schema: Schema) -> Self {
        Self { schema }
    }
}

impl<S> Layer<S> for ConnectLayer {
    type Service = ConnectService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ConnectService {
            inner,
            schema: self.schema.clone(),
        }
    }
}

// === impl ConnectService ===

impl<S> Service<http::Request<Body>> for ConnectService<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        // The clone is ready only if polled; keep the polled one for this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let schema = self.schema.clone();
        Box::pin(async move {
            if is_grpc(&request) {
                return inner.call(request).await;
            }
            let (call, timeout) = match accept(&schema, &mut request) {
                Ok(accepted) => accepted,
                Err(refusal) => {
                    drain(request.into_body()).await;
                    return Ok(refusal.into_response(&schema));
                }
            };
            request.extensions_mut().insert(call.clone());
            let answer = match timeout {
                Some(timeout) => match tokio::time::timeout(timeout, inner.call(request)).await {
                    Ok(answer) => answer?,
                    Err(_) => {
                        let status = tonic::Status::deadline_exceeded(format!(
                            "the call did not complete within its connect-timeout-ms of {}",
                            timeout.as_millis()
                        ));
                        return Ok(error::error_response(&status, &schema));
                    }
                },
                None => inner.call(request).await?,
            };
            Ok(response::into_connect(answer, &call, &schema).await)
        })
    }
}

/// Reads and drops what a refused request still sends, up to [`DRAIN_LIMIT`] bytes and for at
/// most [`DRAIN_WAIT`], so a small body is taken before the answer ends the stream. Answering
/// first resets the stream while the client may still be sending it, and some clients (curl)
/// then report a stream error instead of the refusal.
async fn drain(mut body: Body) {
    let read = async {
        let mut seen = 0usize;
        while seen < DRAIN_LIMIT && !body.is_end_stream() {
            match body.frame().await {
                Some(Ok(frame)) => seen += frame.data_ref().map_or(0, |data| data.len()),
                Some(Err(_)) | None => break,
            }
        }
    };
    // A body that does not end in time is left unread; the answer resets its stream.
    let _ = tokio::time::timeout(DRAIN_WAIT, read).await;
}

/// How much of a refused request's body is read before it is answered.
const DRAIN_LIMIT: usize = 64 * 1024;

/// How long a refused request's body is waited for before it is answered.
const DRAIN_WAIT: Duration = Duration::from_millis(200);

/// Why a request is refused before it reaches the gRPC path.
#[derive(Debug)]
enum Refusal {
    /// No API method has this path.
    NotFound(String),
    /// Connect unary calls are POSTs.
    MethodNotAllowed(Method),
    /// The body is neither JSON nor protobuf.
    UnsupportedMediaType(String),
    /// A Connect header is malformed.
    BadHeader(&'static str, String),
}

/// The method, format and timeout of a Connect request; the timeout is also passed on as
/// `grpc-timeout`, so the services see the same deadline as a gRPC caller's.
fn accept(
    schema: &Schema,
    request: &mut http::Request<Body>,
) -> Result<(ConnectCall, Option<Duration>), Refusal> {
    let path = request.uri().path();
    let method = schema
        .method(path)
        .ok_or_else(|| Refusal::NotFound(admission_contract::echo::truncated(path)))?;
    if request.method() != Method::POST {
        return Err(Refusal::MethodNotAllowed(request.method().clone()));
    }
    let format = format_of(request.headers())?;
    if let Some(version) = request.headers().get("connect-protocol-version") {
        if version.as_bytes() != b"1" {
            let shown = String::from_utf8_lossy(version.as_bytes()).into_owned();
            return Err(Refusal::BadHeader("connect-protocol-version", shown));
        }
    }
    let timeout = timeout_of(request.headers())?;
    if let Some(timeout) = timeout {
        let millis = timeout.as_millis();
        // gRPC allows at most eight digits; longer timeouts are only enforced here.
        if millis <= 99_999_999 {
            if let Ok(value) = HeaderValue::try_from(format!("{millis}m")) {
                request.headers_mut().insert("grpc-timeout", value);
            }
        }
    }
    Ok((ConnectCall { method, format }, timeout))
}

/// The format a request's `Content-Type` names.
fn format_of(headers: &http::HeaderMap) -> Result<Format, Refusal> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
        .unwrap_or_default();
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "application/json" => Ok(Format::Json),
        "application/proto" => Ok(Format::Proto),
        _ => Err(Refusal::UnsupportedMediaType(
            admission_contract::echo::truncated(&content_type),
        )),
    }
}

/// `Connect-Timeout-Ms`: a positive integer of at most ten digits.
fn timeout_of(headers: &http::HeaderMap) -> Result<Option<Duration>, Refusal> {
    let Some(value) = headers.get("connect-timeout-ms") else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(value.as_bytes()).into_owned();
    let valid = !text.is_empty() && text.len() <= 10 && text.bytes().all(|b| b.is_ascii_digit());
    match text.parse::<u64>() {
        Ok(millis) if valid && millis > 0 => Ok(Some(Duration::from_millis(millis))),
        _ => Err(Refusal::BadHeader(
            "connect-timeout-ms",
            admission_contract::echo::truncated(&text),
        )),
    }
}

/// Whether the request speaks gRPC (`application/grpc`, `application/grpc+proto`, …); those
/// pass through untouched.
fn is_grpc<B>(request: &http::Request<B>) -> bool {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/grpc"))
}

// === impl Refusal ===

impl Refusal {
    /// The Connect error answering the refusal, with the HTTP status the protocol fixes for it.
    fn into_response(self, schema: &Schema) -> http::Response<Body> {
        let (status, http_status) = match &self {
            Refusal::NotFound(path) => (
                tonic::Status::unimplemented(format!("no rpc is served at {path}")),
                http::StatusCode::NOT_FOUND,
            ),
            Refusal::MethodNotAllowed(method) => (
                tonic::Status::unimplemented(format!("rpcs are called with POST, not {method}")),
                http::StatusCode::METHOD_NOT_ALLOWED,
            ),
            Refusal::UnsupportedMediaType(content_type) => (
                tonic::Status::unimplemented(format!(
                    "content-type {content_type:?} is not served; send application/json or application/proto"
                )),
                http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ),
            Refusal::BadHeader(name, value) => (
                tonic::Status::invalid_argument(format!(
                    "header {name} has an invalid value {value:?}"
                )),
                http::StatusCode::BAD_REQUEST,
            ),
        };
        let mut response = error::error_response(&status, schema);
        *response.status_mut() = http_status;
        let headers = response.headers_mut();
        match self {
            Refusal::MethodNotAllowed(_) => {
                headers.insert(header::ALLOW, HeaderValue::from_static("POST"));
            }
            Refusal::UnsupportedMediaType(_) => {
                headers.insert("accept-post", HeaderValue::from_static(ACCEPT_POST));
            }
            Refusal::NotFound(_) | Refusal::BadHeader(..) => {}
        }
        response
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
