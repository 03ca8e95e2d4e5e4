//! The request half of the bridge, inside the per-call limits: the Connect body (metered by
//! them as it arrives) becomes the one gRPC message the API services decode, or an audited
//! REQUEST_INVALID exactly like a gRPC body that is not the RPC's message.

use std::{
    convert::Infallible,
    io::Read as _,
    task::{Context, Poll},
};

use bytes::{BufMut as _, Bytes, BytesMut};
use http::{HeaderValue, header};
use http_body_util::{BodyExt as _, Full};
use tonic::body::Body;
use tower::{Layer, Service};

use super::{BoxFuture, ConnectCall, Format, schema::Schema};
use crate::{
    app::admission::Engine, domain::rejection::Rejection, grpc::Rpc, grpc::status::ToStatus,
    identity::tls::caller_of,
};

/// How much larger than the protobuf message its JSON may be: base64 makes `bytes` fields a
/// third larger, and field names and quoting add the rest.
const JSON_EXPANSION: usize = 2;

/// Turns Connect request bodies into gRPC ones in front of the routes.
#[derive(Clone)]
pub struct ConnectBodyLayer {
    engine: Engine,
    max_message_bytes: usize,
}

/// A service wrapped by [`ConnectBodyLayer`].
#[derive(Clone)]
pub struct ConnectBodyService<S> {
    inner: S,
    engine: Engine,
    max_message_bytes: usize,
}

/// Why a Connect body is not the RPC's request.
#[derive(Debug, thiserror::Error)]
enum BodyProblem {
    #[error("must be at most {max} bytes (it is {actual} or more)")]
    TooLarge { max: usize, actual: usize },
    #[error("is compressed as {0:?}, but only gzip and identity are accepted")]
    UnsupportedEncoding(String),
    #[error("is not valid gzip data")]
    BadGzip,
    #[error("{0}")]
    Json(#[from] super::schema::JsonError),
}

// === impl ConnectBodyLayer ===

impl ConnectBodyLayer {
    /// Bodies of at most `max_message_bytes` as protobuf (and a bounded multiple as JSON);
    /// the rejection of any other is recorded through `engine`.
    pub fn new(engine: Engine, max_message_bytes: usize) -> Self {
        Self {
            engine,
            max_message_bytes,
        }
    }
}

impl<S> Layer<S> for ConnectBodyLayer {
    type Service = ConnectBodyService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ConnectBodyService {
            inner,
            engine: self.engine.clone(),
            max_message_bytes: self.max_message_bytes,
        }
    }
}

// === impl ConnectBodyService ===

impl<S> Service<http::Request<Body>> for ConnectBodyService<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        // The clone is ready only if polled; keep the polled one for this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let engine = self.engine.clone();
        let max = self.max_message_bytes;
        Box::pin(async move {
            let Some(call) = request.extensions().get::<ConnectCall>().cloned() else {
                return inner.call(request).await;
            };
            let (mut parts, body) = request.into_parts();
            let message = match read_message(&parts.headers, body, &call, max).await {
                Ok(message) => message,
                Err(Read::Failed(status)) => return Ok(status.into_http()),
                Err(Read::Invalid(problem)) => {
                    return Ok(reject(&engine, &parts, &problem).await);
                }
            };
            as_grpc_headers(&mut parts.headers);
            let body = Body::new(Full::new(frame(&message)));
            inner.call(http::Request::from_parts(parts, body)).await
        })
    }
}

/// How reading a body went wrong.
enum Read {
    /// The body could not be read: the connection failed, or the buffer budget ran out.
    Failed(tonic::Status),
    /// The body is not the RPC's message.
    Invalid(BodyProblem),
}

/// The RPC's request message, as protobuf, from a Connect body.
async fn read_message(
    headers: &http::HeaderMap,
    body: Body,
    call: &ConnectCall,
    max: usize,
) -> Result<Bytes, Read> {
    let limit = match call.format {
        Format::Json => max.saturating_mul(JSON_EXPANSION),
        Format::Proto => max,
    };
    let raw = read_capped(body, limit).await?;
    let raw = decompress(headers, raw, limit).map_err(Read::Invalid)?;
    match call.format {
        Format::Proto => Ok(raw),
        Format::Json => Schema::json_to_proto(&call.method.input(), &raw)
            .map(Bytes::from)
            .map_err(|error| Read::Invalid(error.into())),
    }
}

/// The whole body, refused as soon as it passes `limit` bytes.
async fn read_capped(mut body: Body, limit: usize) -> Result<Bytes, Read> {
    let mut buffer = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(Read::Failed)?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        buffer.extend_from_slice(&data);
        if buffer.len() > limit {
            return Err(Read::Invalid(BodyProblem::TooLarge {
                max: limit,
                actual: buffer.len(),
            }));
        }
    }
    Ok(buffer.freeze())
}

/// The body as sent, undone from its `Content-Encoding`, to at most `limit` bytes.
fn decompress(headers: &http::HeaderMap, raw: Bytes, limit: usize) -> Result<Bytes, BodyProblem> {
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
    match encoding.as_deref() {
        None | Some("identity") => return Ok(raw),
        Some("gzip") => {}
        Some(other) => {
            return Err(BodyProblem::UnsupportedEncoding(
                admission_contract::echo::truncated(other),
            ));
        }
    }
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(raw.as_ref())
        .take(cap)
        .read_to_end(&mut out)
        .map_err(|_| BodyProblem::BadGzip)?;
    if out.len() > limit {
        return Err(BodyProblem::TooLarge {
            max: limit,
            actual: out.len(),
        });
    }
    Ok(Bytes::from(out))
}

/// The headers of the gRPC call the Connect one becomes; every other header is metadata in
/// both protocols and passes unchanged.
fn as_grpc_headers(headers: &mut http::HeaderMap) {
    headers.remove(header::CONTENT_LENGTH);
    headers.remove(header::CONTENT_ENCODING);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert(header::TE, HeaderValue::from_static("trailers"));
}

/// An uncompressed gRPC frame of `message`.
fn frame(message: &[u8]) -> Bytes {
    let mut framed = BytesMut::with_capacity(5 + message.len());
    framed.put_u8(0);
    // A message over u32::MAX is longer than any limit; the body guard refuses the claim.
    framed.put_u32(u32::try_from(message.len()).unwrap_or(u32::MAX));
    framed.extend_from_slice(message);
    framed.freeze()
}

/// Records the rejection of a body that is not the RPC's message and answers it as a gRPC
/// status, which the outer layer turns into Connect error JSON.
async fn reject(
    engine: &Engine,
    parts: &http::request::Parts,
    problem: &BodyProblem,
) -> http::Response<Body> {
    let Some(caller) = caller_of(&parts.extensions) else {
        return tonic::Status::unauthenticated("the connection carries no client identity")
            .into_http();
    };
    let field = match problem {
        BodyProblem::Json(error) => error.field.as_str(),
        _ => "body",
    };
    let mut rejection = Rejection::invalid_field(field, problem.to_string());
    rejection.message = format!("the request body {problem}");
    let Some(rpc) = Rpc::from_path(parts.uri.path()) else {
        // An RPC newer than the audit's list of actions: refused all the same.
        return rejection.to_status().into_http();
    };
    tracing::info!(rpc = rpc.name(), error = %problem, "connect request body is not the rpc's message");
    tonic::Status::from(
        engine
            .record_unreadable(caller, rpc.audit_action(), rejection)
            .await,
    )
    .into_http()
}
