//! Request bodies read before tonic decodes them, so a body that is not the RPC's message is
//! answered like any other invalid request (SPEC §7 row 1).
//!
//! tonic decodes a unary request inside the generated service and answers a body it cannot
//! decode with a bare INTERNAL, an oversized one with OUT_OF_RANGE and a compressed one it was
//! not configured for with UNIMPLEMENTED; none of those carries ErrorInfo and none is audited.
//! [`BodyGuard`] sits in front of each API service: it reads the one gRPC message of the body
//! (at most the largest request the limits allow, after gzip decompression), checks that it decodes as the RPC's
//! request type, and either hands tonic an uncompressed body it will decode, or answers
//! INVALID_ARGUMENT / REQUEST_INVALID with ErrorInfo and a `decision_id` after recording the
//! rejection with the caller and the RPC.

use std::{
    convert::Infallible,
    io::Read as _,
    pin::Pin,
    task::{Context, Poll},
};

use admission_contract::pb;
use bytes::{Buf as _, BufMut as _, Bytes, BytesMut};
use http::{HeaderValue, header::CONTENT_TYPE};
use http_body_util::{BodyExt as _, Full};
use prost::Message;
use tonic::{body::Body, server::NamedService};
use tower::Service;

use super::Rpc;
use crate::{app::admission::Engine, domain::rejection::Rejection, identity::tls::caller_of};

/// Length of a gRPC message prefix: one flag byte and a four-byte big-endian length.
const PREFIX_LEN: usize = 5;

/// The `grpc-accept-encoding` the service answers with: what request bodies may use.
const ACCEPTED_ENCODINGS: &str = "gzip,identity";

/// Reads and checks the request body of every unary RPC of the wrapped service.
#[derive(Clone)]
pub struct BodyGuard<S> {
    inner: S,
    engine: Engine,
    max_message_bytes: usize,
}

/// Why a request body is not the RPC's message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BodyError {
    /// The body ended before one whole message.
    #[error("holds no complete grpc message")]
    Truncated,
    /// More follows the message of a unary call.
    #[error("holds more than the one message of a unary call")]
    Trailing,
    /// The message, or its decompressed form, is over the limit.
    #[error("must be at most {max} bytes (it is {actual} or more)")]
    TooLarge {
        /// The limit.
        max: usize,
        /// The size seen when reading stopped.
        actual: usize,
    },
    /// The message is compressed with an encoding the service does not accept.
    #[error("is compressed as {0:?}, but only gzip and identity are accepted")]
    UnsupportedEncoding(String),
    /// The message is flagged compressed but no `grpc-encoding` says how.
    #[error("is flagged compressed without a grpc-encoding header")]
    MissingEncoding,
    /// The gzip stream is corrupt.
    #[error("is not valid gzip data")]
    BadGzip,
    /// The bytes are not the RPC's protobuf message.
    #[error("is not a valid {message} protobuf message ({detail})")]
    NotTheMessage {
        /// The expected message type.
        message: &'static str,
        /// What the decoder found, naming the field path.
        detail: String,
    },
    /// The body could not be read from the connection.
    #[error("could not be read from the connection")]
    Unreadable,
}

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send>>;

// === impl BodyGuard ===

impl<S> BodyGuard<S> {
    /// Guards `inner`: bodies over `max_message_bytes` bytes (decompressed) or not decodable as the
    /// RPC's request are rejected and recorded through `engine`.
    pub fn new(inner: S, engine: Engine, max_message_bytes: usize) -> Self {
        Self {
            inner,
            engine,
            max_message_bytes,
        }
    }
}

impl<S: NamedService> NamedService for BodyGuard<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<http::Request<Body>> for BodyGuard<S>
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
            let rpc = Rpc::from_path(request.uri().path());
            let (Some(rpc), true) = (rpc, is_grpc(&request)) else {
                return inner.call(request).await;
            };
            let (mut parts, body) = request.into_parts();
            match read_message(&parts.headers, body, rpc, max).await {
                Ok(message) => {
                    parts.headers.remove("grpc-encoding");
                    let body = Body::new(Full::new(frame(&message)));
                    inner.call(http::Request::from_parts(parts, body)).await
                }
                Err(error) => Ok(reject(&engine, &parts, rpc, &error).await),
            }
        })
    }
}

/// Whether the request speaks gRPC (`application/grpc`, `application/grpc+proto`, …).
fn is_grpc(request: &http::Request<Body>) -> bool {
    request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/grpc"))
}

/// The one message of a unary body, decompressed and checked to decode as `rpc`'s request.
async fn read_message(
    headers: &http::HeaderMap,
    body: Body,
    rpc: Rpc,
    max: usize,
) -> Result<Bytes, BodyError> {
    let (compressed, message) = read_frame(body, max).await?;
    let message = if compressed {
        decompress(headers, &message, max)?
    } else {
        message
    };
    rpc.check_decodes(&message)?;
    Ok(message)
}

/// Reads the body up to one length-prefixed message, never buffering more than the prefix,
/// `max` bytes and one more chunk.
async fn read_frame(mut body: Body, max: usize) -> Result<(bool, Bytes), BodyError> {
    let mut buffer = BytesMut::new();
    let mut declared: Option<usize> = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| BodyError::Unreadable)?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        buffer.extend_from_slice(&data);
        if declared.is_none() && buffer.len() >= PREFIX_LEN {
            let length = u32::from_be_bytes([buffer[1], buffer[2], buffer[3], buffer[4]]);
            let length = usize::try_from(length).unwrap_or(usize::MAX);
            if length > max {
                return Err(BodyError::TooLarge {
                    max,
                    actual: length,
                });
            }
            declared = Some(length);
        }
        if let Some(length) = declared {
            if buffer.len() > PREFIX_LEN + length {
                return Err(BodyError::Trailing);
            }
        }
    }
    let Some(length) = declared else {
        return Err(BodyError::Truncated);
    };
    if buffer.len() < PREFIX_LEN + length {
        return Err(BodyError::Truncated);
    }
    let compressed = buffer[0] != 0;
    buffer.advance(PREFIX_LEN);
    Ok((compressed, buffer.freeze()))
}

/// Decompresses a message flagged compressed, per its `grpc-encoding`, to at most `max` bytes.
fn decompress(headers: &http::HeaderMap, message: &[u8], max: usize) -> Result<Bytes, BodyError> {
    let encoding = headers
        .get("grpc-encoding")
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
    match encoding.as_deref() {
        Some("gzip") => {}
        None | Some("identity") => return Err(BodyError::MissingEncoding),
        Some(other) => {
            return Err(BodyError::UnsupportedEncoding(
                admission_contract::echo::truncated(other),
            ));
        }
    }
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(message)
        .take(limit)
        .read_to_end(&mut out)
        .map_err(|_| BodyError::BadGzip)?;
    if out.len() > max {
        return Err(BodyError::TooLarge {
            max,
            actual: out.len(),
        });
    }
    Ok(Bytes::from(out))
}

/// An uncompressed gRPC frame of `message`.
fn frame(message: &[u8]) -> Bytes {
    let mut framed = BytesMut::with_capacity(PREFIX_LEN + message.len());
    framed.put_u8(0);
    // `message` is at most `max_message_bytes`, which config keeps within a gRPC message.
    framed.put_u32(u32::try_from(message.len()).unwrap_or(u32::MAX));
    framed.extend_from_slice(message);
    framed.freeze()
}

/// Records the rejection of an unreadable body and answers it as a gRPC status.
async fn reject(
    engine: &Engine,
    parts: &http::request::Parts,
    rpc: Rpc,
    error: &BodyError,
) -> http::Response<Body> {
    let Some(caller) = caller_of(&parts.extensions) else {
        return tonic::Status::unauthenticated("the connection carries no client identity")
            .into_http();
    };
    tracing::info!(rpc = rpc.name(), error = %error, "request body is not the rpc's message");
    let rejection = engine
        .record_unreadable(caller, rpc.audit_action(), body_rejection(error))
        .await;
    let mut response = tonic::Status::from(rejection).into_http::<Body>();
    if matches!(error, BodyError::UnsupportedEncoding(_)) {
        response.headers_mut().insert(
            "grpc-accept-encoding",
            HeaderValue::from_static(ACCEPTED_ENCODINGS),
        );
    }
    response
}

/// REQUEST_INVALID (row 1) with a BadRequest violation on the field `body`.
fn body_rejection(error: &BodyError) -> Rejection {
    let mut rejection = Rejection::invalid_field("body", error.to_string());
    rejection.message = format!("the request body {error}");
    rejection
}

// === impl Rpc ===

impl Rpc {
    /// The RPC a request path names, if it is one of the API's.
    pub fn from_path(path: &str) -> Option<Rpc> {
        let rpc = match path.strip_prefix("/byteor.admission.v1.")? {
            "DeployAdmission/Admit" => Rpc::DeployAdmit,
            "DeployAdmission/Preview" => Rpc::DeployPreview,
            "ReplayAdmission/Admit" => Rpc::ReplayAdmit,
            "ReplayAdmission/Preview" => Rpc::ReplayPreview,
            "Approvals/Create" => Rpc::ApprovalsCreate,
            "Approvals/Decide" => Rpc::ApprovalsDecide,
            "Approvals/Get" => Rpc::ApprovalsGet,
            "Approvals/ListEligible" => Rpc::ApprovalsListEligible,
            "Approvals/Revoke" => Rpc::ApprovalsRevoke,
            "Audit/List" => Rpc::AuditList,
            "Audit/Verify" => Rpc::AuditVerify,
            "Audit/GetCheckpoint" => Rpc::AuditGetCheckpoint,
            "Audit/ProveInclusion" => Rpc::AuditProveInclusion,
            "Audit/ProveConsistency" => Rpc::AuditProveConsistency,
            _ => return None,
        };
        Some(rpc)
    }

    /// The action an audit entry of this RPC records.
    pub fn audit_action(self) -> &'static str {
        match self {
            Rpc::DeployAdmit => "deploy.admit",
            Rpc::DeployPreview => "deploy.preview",
            Rpc::ReplayAdmit => "replay.admit",
            Rpc::ReplayPreview => "replay.preview",
            Rpc::ApprovalsCreate => "approval.create",
            Rpc::ApprovalsDecide => "approval.decide",
            Rpc::ApprovalsGet => "approval.get",
            Rpc::ApprovalsListEligible => "approval.list_eligible",
            Rpc::ApprovalsRevoke => "approval.revoke",
            Rpc::AuditList => "audit.list",
            Rpc::AuditVerify => "audit.verify",
            Rpc::AuditGetCheckpoint => "audit.get_checkpoint",
            Rpc::AuditProveInclusion => "audit.prove_inclusion",
            Rpc::AuditProveConsistency => "audit.prove_consistency",
        }
    }

    /// Whether `message` decodes as this RPC's request type.
    fn check_decodes(self, message: &[u8]) -> Result<(), BodyError> {
        fn check<M: Message + Default>(name: &'static str, bytes: &[u8]) -> Result<(), BodyError> {
            M::decode(bytes)
                .map(drop)
                .map_err(|error| BodyError::NotTheMessage {
                    message: name,
                    detail: error.to_string(),
                })
        }
        match self {
            Rpc::DeployAdmit | Rpc::DeployPreview => {
                check::<pb::DeployRequest>("DeployRequest", message)
            }
            Rpc::ReplayAdmit | Rpc::ReplayPreview => {
                check::<pb::ReplayRequest>("ReplayRequest", message)
            }
            Rpc::ApprovalsCreate => {
                check::<pb::CreateApprovalRequest>("CreateApprovalRequest", message)
            }
            Rpc::ApprovalsDecide => {
                check::<pb::DecideApprovalRequest>("DecideApprovalRequest", message)
            }
            Rpc::ApprovalsGet => check::<pb::GetApprovalRequest>("GetApprovalRequest", message),
            Rpc::ApprovalsListEligible => {
                check::<pb::ListEligibleRequest>("ListEligibleRequest", message)
            }
            Rpc::ApprovalsRevoke => {
                check::<pb::RevokeApprovalRequest>("RevokeApprovalRequest", message)
            }
            Rpc::AuditList => check::<pb::ListAuditRequest>("ListAuditRequest", message),
            Rpc::AuditVerify => check::<pb::VerifyAuditRequest>("VerifyAuditRequest", message),
            Rpc::AuditGetCheckpoint => {
                check::<pb::GetCheckpointRequest>("GetCheckpointRequest", message)
            }
            Rpc::AuditProveInclusion => {
                check::<pb::ProveInclusionRequest>("ProveInclusionRequest", message)
            }
            Rpc::AuditProveConsistency => {
                check::<pb::ProveConsistencyRequest>("ProveConsistencyRequest", message)
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
