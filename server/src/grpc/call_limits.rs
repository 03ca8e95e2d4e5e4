//! Per-call resource limits, applied to every request before it reaches a service.
//!
//! A call is admitted only while its caller identity has fewer than `max_calls_per_identity`
//! calls in flight, and only once the request bytes it declares fit in the global buffer budget
//! (`max_buffered_request_bytes`): the gRPC length prefix of each message is read first and its
//! declared length reserved before any of the message is buffered, so a client that claims a
//! large message and trickles it in holds budget, never unbounded memory. A call that does not
//! fit is answered RESOURCE_EXHAUSTED / OVERLOADED at once, unread and unaudited. Every call is
//! bounded by the request timeout, and counts as activity on its connection until its answer
//! has been sent, so the idle timeout never closes a connection under a call.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use admission_contract::Reason;
use bytes::{Buf, Bytes};
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::sync::Semaphore;
use tonic::body::Body;
use tower::{Layer, Service};

mod meter;

use self::meter::{Meter, OverBudget};
use crate::{
    domain::rejection::Rejection,
    grpc::status::ToStatus,
    identity::tls::{CallActivity, ConnectionInfo, Identity, IdentitySlot, PerIdentity},
};

/// The tower layer that applies [`CallLimits`] in front of the routes.
#[derive(Clone, Debug)]
pub struct CallLimitsLayer {
    limits: Arc<CallLimits>,
}

/// The limits shared by every call: the buffer budget, calls per identity, the deadline.
#[derive(Debug)]
pub struct CallLimits {
    budget: Arc<Semaphore>,
    budget_bytes: usize,
    max_message_bytes: usize,
    identities: Arc<PerIdentity>,
    max_calls_per_identity: usize,
    request_timeout: Duration,
}

/// The `[limits]` a [`CallLimits`] enforces, as plain numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallSettings {
    /// Request bytes all calls together may hold buffered.
    pub max_buffered_request_bytes: usize,
    /// Largest request message, in bytes.
    pub max_message_bytes: usize,
    /// Calls one identity may have in flight.
    pub max_calls_per_identity: usize,
    /// How long a call may take.
    pub request_timeout: Duration,
}

/// The gRPC length prefix in front of every message: a compression flag and a 4-byte length.
pub const GRPC_FRAME_HEADER_BYTES: usize = 5;

/// A service wrapped by [`CallLimitsLayer`].
#[derive(Clone, Debug)]
pub struct CallLimitsService<S> {
    inner: S,
    limits: Arc<CallLimits>,
}

/// What a call holds until its answer has been sent.
#[derive(Debug)]
struct CallGuard {
    _identity: IdentitySlot,
    _activity: CallActivity,
}

/// The request body, metered against the budget as it arrives.
struct MeteredBody {
    /// Frames read ahead to learn the first message's length, replayed first.
    replay: std::collections::VecDeque<Result<Frame<Bytes>, tonic::Status>>,
    inner: Body,
    meter: Meter,
}

/// A response body that keeps its call counted until it is fully sent or dropped.
struct GuardedBody {
    inner: Body,
    _guard: CallGuard,
}

// === impl CallLimitsLayer ===

impl CallLimitsLayer {
    /// A layer enforcing `limits`.
    pub fn new(limits: Arc<CallLimits>) -> Self {
        Self { limits }
    }
}

impl<S> Layer<S> for CallLimitsLayer {
    type Service = CallLimitsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CallLimitsService {
            inner,
            limits: self.limits.clone(),
        }
    }
}

// === impl CallLimitsService ===

impl<S> Service<http::Request<Body>> for CallLimitsService<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        // The clone is not ready; the one that is goes with this call (tower's usual swap).
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let limits = self.limits.clone();
        Box::pin(async move { limits.run(request, inner).await })
    }
}

// === impl CallLimits ===

impl CallLimits {
    /// The call limits of `[limits]`.
    pub fn new(limits: CallSettings) -> Arc<Self> {
        Arc::new(Self {
            budget: Arc::new(Semaphore::new(limits.max_buffered_request_bytes)),
            budget_bytes: limits.max_buffered_request_bytes,
            max_message_bytes: limits.max_message_bytes,
            identities: Arc::default(),
            max_calls_per_identity: limits.max_calls_per_identity,
            request_timeout: limits.request_timeout,
        })
    }

    /// Request bytes reserved from the buffer budget right now.
    pub fn buffered_bytes(&self) -> usize {
        self.budget_bytes - self.budget.available_permits()
    }

    /// Calls `identity` has in flight right now.
    pub fn calls_in_flight(&self, identity: &Identity) -> usize {
        self.identities.count(identity)
    }

    /// Calls in flight right now, across every caller.
    pub fn calls_in_flight_total(&self) -> usize {
        self.identities.total()
    }

    async fn run<S>(
        &self,
        request: http::Request<Body>,
        inner: S,
    ) -> Result<http::Response<Body>, S::Error>
    where
        S: Service<http::Request<Body>, Response = http::Response<Body>>,
    {
        let Some(connection) = request.extensions().get::<ConnectionInfo>().cloned() else {
            // Only authenticated connections are served; fail closed if that ever changes.
            let status =
                tonic::Status::unauthenticated("the connection carries no client identity");
            return Ok(status.into_http());
        };
        let activity = connection.activity().begin_call();
        let identity = &connection.caller().identity;
        let Some(identity) = self.identities.begin(identity, self.max_calls_per_identity) else {
            tracing::debug!(caller = %identity, "caller is at its limit of calls in flight");
            return Ok(overloaded(
                "this caller has too many calls in flight; retry with backoff",
            ));
        };
        let guard = CallGuard {
            _identity: identity,
            _activity: activity,
        };
        let timeout = self.request_timeout;
        match tokio::time::timeout(timeout, self.admit(request, inner)).await {
            Ok(Ok(response)) => Ok(response.map(|body| {
                Body::new(GuardedBody {
                    inner: body,
                    _guard: guard,
                })
            })),
            Ok(Err(error)) => Err(error),
            Err(_) => {
                let message = format!(
                    "the call did not complete within the server's request timeout of {}",
                    humantime::format_duration(timeout)
                );
                Ok(tonic::Status::deadline_exceeded(message).into_http())
            }
        }
    }

    /// Reserves budget for the first message, then calls `inner` with the metered body.
    async fn admit<S>(
        &self,
        request: http::Request<Body>,
        mut inner: S,
    ) -> Result<http::Response<Body>, S::Error>
    where
        S: Service<http::Request<Body>, Response = http::Response<Body>>,
    {
        let grpc = is_grpc(&request);
        let (parts, body) = request.into_parts();
        let meter = Meter::new(self.budget.clone(), self.max_message_bytes, grpc);
        let Ok(body) = MeteredBody::read_first_prefix(body, meter).await else {
            tracing::debug!("request buffer budget exhausted; call refused");
            return Ok(overloaded(
                "the server is buffering as many requests as it can; retry with backoff",
            ));
        };
        inner
            .call(http::Request::from_parts(parts, Body::new(body)))
            .await
    }
}

fn is_grpc<B>(request: &http::Request<B>) -> bool {
    request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/grpc"))
}

fn overloaded(message: &str) -> http::Response<Body> {
    Rejection::new(Reason::Overloaded, message)
        .to_status()
        .into_http()
}

// === impl MeteredBody ===

impl MeteredBody {
    /// Reads ahead until the first message's length prefix is known and its bytes reserved.
    async fn read_first_prefix(mut inner: Body, mut meter: Meter) -> Result<Self, OverBudget> {
        let mut replay = std::collections::VecDeque::new();
        while meter.awaits_first_reservation() {
            let frame = std::future::poll_fn(|cx| Pin::new(&mut inner).poll_frame(cx)).await;
            let Some(frame) = frame else { break };
            let at_end = frame.is_err() || inner.is_end_stream();
            if let Some(data) = frame.as_ref().ok().and_then(Frame::data_ref) {
                meter.feed(data.chunk())?;
            }
            replay.push_back(frame);
            if at_end {
                break;
            }
        }
        Ok(Self {
            replay,
            inner,
            meter,
        })
    }
}

impl HttpBody for MeteredBody {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        let this = &mut *self;
        if let Some(frame) = this.replay.pop_front() {
            return Poll::Ready(Some(frame));
        }
        let frame = std::task::ready!(Pin::new(&mut this.inner).poll_frame(cx));
        let data = match &frame {
            Some(Ok(frame)) => frame.data_ref(),
            _ => None,
        };
        if data.is_some_and(|data| this.meter.feed(data.chunk()).is_err()) {
            return Poll::Ready(Some(Err(Rejection::new(
                Reason::Overloaded,
                "the server is buffering as many requests as it can; retry with backoff",
            )
            .to_status())));
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.replay.is_empty() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        if self.replay.is_empty() {
            self.inner.size_hint()
        } else {
            SizeHint::default()
        }
    }
}

// === impl GuardedBody ===

impl HttpBody for GuardedBody {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
