//! Retrying calls the service did not decide: `AUDIT_UNAVAILABLE`, `OVERLOADED`, and connection
//! failures, with bounded exponential backoff and jitter, honouring the server's `RetryInfo`.
//!
//! Every attempt sends the identical request message. For admissions that means the same
//! `request_id`, which the service answers idempotently: if an earlier attempt was in fact
//! admitted (its answer lost with the connection), the retry returns that same `Admission` and
//! consumes nothing again, so retrying can never admit twice.

use std::{
    fmt,
    future::Future,
    sync::Arc,
    time::{Duration, Instant},
};

use ring::rand::{SecureRandom, SystemRandom};
use tonic_types::StatusExt;

use crate::rejection::Rejection;

/// Attempts per call, the first one included (see [`RetryPolicy`]).
pub const DEFAULT_MAX_ATTEMPTS: u32 = 4;
/// Time budget of one call across all its attempts and waits (see [`RetryPolicy`]).
pub const DEFAULT_RETRY_DEADLINE: Duration = Duration::from_secs(30);
/// Backoff before the first retry when the server sends no `RetryInfo`.
pub const DEFAULT_INITIAL_BACKOFF: Duration = Duration::from_millis(100);
/// Upper bound of the exponential backoff.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(5);

/// How a call that the service did not decide is sent again.
///
/// Defaults: [`DEFAULT_MAX_ATTEMPTS`] attempts within [`DEFAULT_RETRY_DEADLINE`]; waits grow
/// from [`DEFAULT_INITIAL_BACKOFF`], doubling up to [`DEFAULT_MAX_BACKOFF`], each between half
/// and all of that value (jitter). When the status carries `google.rpc.RetryInfo`, the wait is at
/// least its `retry_delay`. Each attempt's gRPC timeout is what remains of the deadline (or the
/// attempt timeout, when shorter), and no wait runs past it: the call then returns the last
/// answer it got. An idempotent attempt cut off by the attempt timeout is retried like a
/// connection failure.
#[derive(Clone)]
pub struct RetryPolicy {
    max_attempts: u32,
    deadline: Duration,
    attempt_timeout: Option<Duration>,
    initial_backoff: Duration,
    max_backoff: Duration,
    observer: Option<RetryObserver>,
}

/// A callback told about each retry.
type RetryObserver = Arc<dyn Fn(&RetryEvent) + Send + Sync>;

/// One retry about to happen, as reported to [`RetryPolicy::on_retry`] observers.
#[derive(Clone, Debug)]
pub struct RetryEvent {
    /// The attempt that just failed (1 for the first).
    pub attempt: u32,
    /// How long the client waits before the next attempt.
    pub delay: Duration,
    /// The status the failed attempt got.
    pub status: tonic::Status,
}

/// Whether a call may be repeated after a failure whose outcome the client cannot know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Idempotency {
    /// Repeating it returns the first outcome (admissions keyed by `request_id`, reads).
    Idempotent,
    /// Repeating it after a lost answer could act twice: retried only on a typed rejection
    /// that says nothing was done.
    NotIdempotent,
}

// === impl RetryPolicy ===

impl RetryPolicy {
    /// A policy that sends each call exactly once.
    pub fn no_retries() -> Self {
        Self::default().with_max_attempts(1)
    }

    /// Attempts per call, the first one included; 0 is treated as 1.
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Time budget of one call across all attempts and waits.
    pub fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// Deadline of each attempt; without it an attempt may take what remains of the call's
    /// deadline.
    pub fn with_attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = Some(timeout);
        self
    }

    /// First backoff and the cap it doubles up to.
    pub fn with_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.initial_backoff = initial;
        self.max_backoff = max.max(initial);
        self
    }

    /// Calls `observer` before each retry (for logging or metrics).
    pub fn on_retry(mut self, observer: impl Fn(&RetryEvent) + Send + Sync + 'static) -> Self {
        self.observer = Some(Arc::new(observer));
        self
    }

    /// Attempts per call, the first one included.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// Time budget of one call.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// Deadline of each attempt, when one is set.
    pub fn attempt_timeout(&self) -> Option<Duration> {
        self.attempt_timeout
    }

    /// Runs `call` with `request` until it succeeds, fails in a way that must not be retried,
    /// or the attempts or the deadline run out; every attempt gets a clone of `request`.
    pub(crate) async fn run<Req, Resp, F, Fut>(
        &self,
        idempotency: Idempotency,
        request: Req,
        mut call: F,
    ) -> Result<Resp, tonic::Status>
    where
        Req: Clone,
        F: FnMut(tonic::Request<Req>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Resp>, tonic::Status>>,
    {
        let started = Instant::now();
        let mut attempt = 1;
        loop {
            let remaining = self.deadline.saturating_sub(started.elapsed());
            let timeout = self
                .attempt_timeout
                .map_or(remaining, |timeout| timeout.min(remaining));
            let mut message = tonic::Request::new(request.clone());
            message.set_timeout(timeout);
            let attempt_started = Instant::now();
            let status = match call(message).await {
                Ok(response) => return Ok(response.into_inner()),
                Err(status) => status,
            };
            let timed_out = attempt_started.elapsed() >= timeout && is_timeout(&status);
            let hint = match retry_hint(&status, idempotency) {
                None if timed_out && idempotency == Idempotency::Idempotent => Some(None),
                hint => hint,
            };
            let Some(server_delay) = hint else {
                return Err(status);
            };
            let delay = self.backoff(attempt, server_delay);
            let out_of_time = started.elapsed() + delay >= self.deadline;
            if attempt >= self.max_attempts || out_of_time {
                return Err(status);
            }
            if let Some(observer) = &self.observer {
                observer(&RetryEvent {
                    attempt,
                    delay,
                    status,
                });
            }
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    /// The wait after failed attempt `attempt`: exponential backoff with jitter, at least the
    /// server's delay when it sent one.
    fn backoff(&self, attempt: u32, server_delay: Option<Duration>) -> Duration {
        let doublings = attempt.saturating_sub(1).min(16);
        let base = self
            .initial_backoff
            .saturating_mul(1 << doublings)
            .min(self.max_backoff);
        let half = base / 2;
        let jittered = half + half.mul_f64(jitter_fraction());
        match server_delay {
            Some(delay) => delay.max(jittered) + half.mul_f64(jitter_fraction()),
            None => jittered,
        }
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            deadline: DEFAULT_RETRY_DEADLINE,
            attempt_timeout: None,
            initial_backoff: DEFAULT_INITIAL_BACKOFF,
            max_backoff: DEFAULT_MAX_BACKOFF,
            observer: None,
        }
    }
}

impl fmt::Debug for RetryPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryPolicy")
            .field("max_attempts", &self.max_attempts)
            .field("deadline", &self.deadline)
            .field("attempt_timeout", &self.attempt_timeout)
            .field("initial_backoff", &self.initial_backoff)
            .field("max_backoff", &self.max_backoff)
            .field("observer", &self.observer.is_some())
            .finish()
    }
}

/// `Some(server delay)` when `status` may be retried: a typed rejection whose reason says
/// nothing was decided (with its `RetryInfo` delay, if any), or, for idempotent calls only, a
/// connection failure (UNAVAILABLE without ErrorInfo). `None` when it must not be.
fn retry_hint(status: &tonic::Status, idempotency: Idempotency) -> Option<Option<Duration>> {
    match Rejection::from_status(status) {
        Some(rejection) => {
            let retryable = rejection.reason.known().is_some_and(|r| r.is_retryable());
            retryable.then(|| status.get_details_retry_info().and_then(|i| i.retry_delay))
        }
        None => {
            let connection_failure = status.code() == tonic::Code::Unavailable
                && status.get_details_error_info().is_none();
            (connection_failure && idempotency == Idempotency::Idempotent).then_some(None)
        }
    }
}

/// Whether `status` is how a call cut off by its deadline ends: tonic answers its own timeout
/// as CANCELLED, a server as DEADLINE_EXCEEDED; neither carries ErrorInfo.
fn is_timeout(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::Cancelled | tonic::Code::DeadlineExceeded
    ) && status.get_details_error_info().is_none()
}

/// A uniform fraction in `[0, 1)`; 0 when the system generator fails (no jitter, still bounded).
fn jitter_fraction() -> f64 {
    let mut bytes = [0u8; 4];
    if SystemRandom::new().fill(&mut bytes).is_err() {
        return 0.0;
    }
    f64::from(u32::from_le_bytes(bytes)) / (f64::from(u32::MAX) + 1.0)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use admission_contract::{ERROR_DOMAIN, Reason};
    use tonic::Code;
    use tonic_types::ErrorDetails;

    use super::*;

    fn typed(reason: Reason, delay: Option<Duration>) -> tonic::Status {
        let mut details =
            ErrorDetails::with_error_info(reason.as_str(), ERROR_DOMAIN, HashMap::new());
        if delay.is_some() {
            details.set_retry_info(delay);
        }
        tonic::Status::with_error_details(reason.code(), "refused", details)
    }

    #[test]
    fn retries_only_what_the_service_did_not_decide() {
        let idem = Idempotency::Idempotent;
        let delay = Some(Duration::from_secs(1));
        assert_eq!(
            retry_hint(&typed(Reason::AuditUnavailable, delay), idem),
            Some(delay)
        );
        assert_eq!(
            retry_hint(&typed(Reason::Overloaded, None), idem),
            Some(None)
        );
        assert_eq!(
            retry_hint(&typed(Reason::ApprovalRequired, None), idem),
            None
        );
        assert_eq!(retry_hint(&typed(Reason::RequestInvalid, None), idem), None);
        let refused = tonic::Status::unavailable("connection refused");
        assert_eq!(retry_hint(&refused, idem), Some(None));
        assert_eq!(retry_hint(&refused, Idempotency::NotIdempotent), None);
        let audit = typed(Reason::AuditUnavailable, None);
        assert_eq!(retry_hint(&audit, Idempotency::NotIdempotent), Some(None));
        assert_eq!(retry_hint(&tonic::Status::internal("boom"), idem), None);
        assert_eq!(
            retry_hint(&tonic::Status::new(Code::Unknown, "?"), idem),
            None
        );
    }

    #[test]
    fn backoff_doubles_within_bounds_and_honours_the_server_delay() {
        let policy = RetryPolicy::default()
            .with_backoff(Duration::from_millis(100), Duration::from_millis(800));
        for attempt in 1..=10 {
            let base = Duration::from_millis(100 * (1 << (attempt - 1).min(3)));
            let delay = policy.backoff(attempt, None);
            assert!(
                delay >= base / 2 && delay <= base,
                "attempt {attempt}: {delay:?}"
            );
            let server = Duration::from_secs(2);
            let delay = policy.backoff(attempt, Some(server));
            assert!(delay >= server && delay <= server + base / 2, "{delay:?}");
        }
    }

    /// Runs `policy` over a call answering `answer` every time; the number of attempts made.
    async fn attempts_with(policy: &RetryPolicy, answer: tonic::Status) -> (u32, tonic::Status) {
        let calls = std::sync::atomic::AtomicU32::new(0);
        let result: Result<(), _> = policy
            .run(Idempotency::Idempotent, "req-1".to_owned(), |request| {
                assert_eq!(
                    request.get_ref(),
                    "req-1",
                    "every attempt sends the same request"
                );
                calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let answer = answer.clone();
                async move { Err(answer) }
            })
            .await;
        (calls.into_inner(), result.unwrap_err())
    }

    #[tokio::test]
    async fn stops_after_max_attempts_with_the_last_status() {
        let policy = RetryPolicy::default()
            .with_max_attempts(3)
            .with_backoff(Duration::from_millis(1), Duration::from_millis(2));
        let answer = typed(Reason::Overloaded, Some(Duration::from_millis(1)));
        let (calls, status) = attempts_with(&policy, answer).await;
        assert_eq!(calls, 3);
        assert_eq!(status.code(), Code::ResourceExhausted);
    }

    #[tokio::test]
    async fn a_wait_past_the_deadline_is_not_taken() {
        let policy = RetryPolicy::default()
            .with_max_attempts(10)
            .with_deadline(Duration::from_secs(5));
        let answer = typed(Reason::AuditUnavailable, Some(Duration::from_secs(60)));
        let (calls, status) = attempts_with(&policy, answer).await;
        assert_eq!(calls, 1);
        assert_eq!(status.code(), Code::Unavailable);
    }

    #[tokio::test]
    async fn a_final_rejection_is_not_retried() {
        let policy = RetryPolicy::default().with_max_attempts(10);
        let (calls, status) = attempts_with(&policy, typed(Reason::ApprovalRequired, None)).await;
        assert_eq!(calls, 1);
        assert_eq!(status.code(), Code::PermissionDenied);
    }

    #[tokio::test]
    async fn an_attempt_cut_off_by_its_timeout_is_retried_when_idempotent() {
        let policy = RetryPolicy::default()
            .with_max_attempts(3)
            .with_attempt_timeout(Duration::from_millis(20))
            .with_backoff(Duration::from_millis(1), Duration::from_millis(2));
        for (idempotency, expected) in [
            (Idempotency::Idempotent, 3),
            (Idempotency::NotIdempotent, 1),
        ] {
            let calls = std::sync::atomic::AtomicU32::new(0);
            let result: Result<(), _> = policy
                .run(idempotency, (), |request| {
                    assert!(request.metadata().get("grpc-timeout").is_some());
                    calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    async {
                        tokio::time::sleep(Duration::from_millis(25)).await;
                        Err(tonic::Status::cancelled("Timeout expired"))
                    }
                })
                .await;
            assert_eq!(result.unwrap_err().code(), Code::Cancelled);
            assert_eq!(calls.into_inner(), expected, "{idempotency:?}");
        }
    }

    #[test]
    fn max_attempts_is_at_least_one() {
        assert_eq!(
            RetryPolicy::default().with_max_attempts(0).max_attempts(),
            1
        );
        assert_eq!(RetryPolicy::no_retries().max_attempts(), 1);
        assert_eq!(RetryPolicy::default().max_attempts(), DEFAULT_MAX_ATTEMPTS);
    }
}
