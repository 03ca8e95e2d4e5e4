//! `[limits]`: request and transport limits, their defaults and their validation.

use super::*;

/// `[limits]`: request and transport limits (SPEC §3 defaults).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest accepted `spec_kv`, in bytes.
    pub spec_kv_max_bytes: usize,
    /// Most credentials accepted on one request.
    pub max_credentials: usize,
    /// Largest accepted credential, in bytes.
    pub credential_max_bytes: usize,
    /// Time a client has to complete the TLS handshake.
    #[serde(with = "duration")]
    pub handshake_timeout: Duration,
    /// TLS handshakes in progress at once; when full, the oldest one is dropped for a newcomer.
    pub max_pending_handshakes: usize,
    /// TLS handshakes in progress at once from one source address; more are refused.
    pub max_pending_handshakes_per_address: usize,
    /// HTTP/2 streams (calls) a client may have open at once on one connection.
    pub max_concurrent_streams: u32,
    /// Request bytes buffered across all calls at once; a call that would exceed it is
    /// refused with OVERLOADED before its body is read.
    pub max_buffered_request_bytes: usize,
    /// Calls in flight at once for one caller identity; more are refused with OVERLOADED.
    pub max_calls_per_identity: usize,
    /// Connections one caller identity may hold open at once; more are closed after the
    /// handshake.
    pub max_connections_per_identity: usize,
    /// Decisions evaluated at once (from a decoded request to its answer); one more is
    /// refused with OVERLOADED and RetryInfo before anything is read, verified or recorded
    /// (SPEC §7 row 27). It bounds the CPU spent on calls the writer could not take anyway.
    pub max_in_flight_decisions: usize,
    /// Decisions that may wait at once for the audit writer; one more is refused with
    /// OVERLOADED at once, before anything is recorded. Size it to what the store commits in
    /// about `max_audit_queue_wait`.
    pub max_queued_audit_appends: usize,
    /// How long a decision may wait for the audit writer to start on it; after that it is
    /// refused with OVERLOADED, unrecorded, instead of timing out later (capped at
    /// `[audit] durable_timeout`).
    #[serde(with = "duration")]
    pub max_audit_queue_wait: Duration,
    /// Time one call may take from its headers to its answer.
    #[serde(with = "duration")]
    pub request_timeout: Duration,
    /// A connection without a call in flight for this long is closed.
    #[serde(with = "duration")]
    pub idle_timeout: Duration,
    /// Interval between HTTP/2 keepalive pings the server sends.
    #[serde(with = "duration")]
    pub keepalive_interval: Duration,
    /// Time a keepalive ping may go unacknowledged before the connection is closed.
    #[serde(with = "duration")]
    pub keepalive_timeout: Duration,

    // Request body and field lengths, in bytes; longer input is REQUEST_INVALID.
    /// Longest id (request_id, bundle_id, artifact_id, incident_id, approval_id, …).
    pub id_max_bytes: usize,
    /// Longest org_id, project_id or environment_id.
    pub environment_part_max_bytes: usize,
    /// Longest free text (initiated_by, justification, reason).
    pub text_max_bytes: usize,
    /// Longest capability name.
    pub capability_max_bytes: usize,
    /// Most capabilities named on one request.
    pub max_capabilities: usize,
}

/// Decisions evaluated at once by default: enough to keep group commits full at a 2-core
/// server's peak (BENCHMARKS.md), few enough that a burst is refused before it costs CPU.
const DEFAULT_MAX_IN_FLIGHT_DECISIONS: usize = 256;

/// Bytes a request may hold beyond `spec_kv` and its credentials: ids, environment parts, free
/// text and protobuf framing, with room to spare.
pub const REQUEST_FIELDS_ALLOWANCE_BYTES: usize = 64 * 1024;

/// The largest request buffer budget: a gRPC message length is 32 bits, and no server holds
/// more than 4 GiB of requests in flight.
const MAX_BUFFER_BUDGET_BYTES: usize = u32::MAX as usize;

pub(super) fn validate_limits(limits: &Limits) -> Result<(), String> {
    validate_counts(limits)?;
    validate_timeouts(limits)?;
    validate_buffer_budget(limits)
}

/// Every count and size is at least 1.
fn validate_counts(limits: &Limits) -> Result<(), String> {
    for (field, value) in [
        ("spec_kv_max_bytes", limits.spec_kv_max_bytes),
        ("max_credentials", limits.max_credentials),
        ("credential_max_bytes", limits.credential_max_bytes),
        ("max_pending_handshakes", limits.max_pending_handshakes),
        ("id_max_bytes", limits.id_max_bytes),
        (
            "environment_part_max_bytes",
            limits.environment_part_max_bytes,
        ),
        ("text_max_bytes", limits.text_max_bytes),
        ("capability_max_bytes", limits.capability_max_bytes),
        ("max_capabilities", limits.max_capabilities),
        (
            "max_pending_handshakes_per_address",
            limits.max_pending_handshakes_per_address,
        ),
        (
            "max_concurrent_streams",
            limits.max_concurrent_streams as usize,
        ),
        (
            "max_buffered_request_bytes",
            limits.max_buffered_request_bytes,
        ),
        ("max_calls_per_identity", limits.max_calls_per_identity),
        ("max_queued_audit_appends", limits.max_queued_audit_appends),
        ("max_in_flight_decisions", limits.max_in_flight_decisions),
        (
            "max_connections_per_identity",
            limits.max_connections_per_identity,
        ),
    ] {
        if value == 0 {
            return Err(format!("[limits] {field}: must be at least 1"));
        }
    }
    Ok(())
}

/// Every timeout is longer than zero.
fn validate_timeouts(limits: &Limits) -> Result<(), String> {
    for (field, value) in [
        ("handshake_timeout", limits.handshake_timeout),
        ("request_timeout", limits.request_timeout),
        ("max_audit_queue_wait", limits.max_audit_queue_wait),
        ("idle_timeout", limits.idle_timeout),
        ("keepalive_interval", limits.keepalive_interval),
        ("keepalive_timeout", limits.keepalive_timeout),
    ] {
        if value.is_zero() {
            return Err(format!("[limits] {field}: must be longer than zero"));
        }
    }
    Ok(())
}

/// The buffer budget fits a gRPC message length and holds the largest request allowed.
fn validate_buffer_budget(limits: &Limits) -> Result<(), String> {
    if limits.max_buffered_request_bytes > MAX_BUFFER_BUDGET_BYTES {
        return Err(format!(
            "[limits] max_buffered_request_bytes: must be at most {MAX_BUFFER_BUDGET_BYTES}"
        ));
    }
    let largest = limits
        .max_request_bytes()
        .saturating_add(GRPC_FRAME_HEADER_BYTES);
    if largest > MAX_BUFFER_BUDGET_BYTES {
        return Err(format!(
            "[limits] credential_max_bytes: with spec_kv_max_bytes and max_credentials it allows \
             requests of {largest} bytes, more than the {MAX_BUFFER_BUDGET_BYTES} a gRPC \
             message can hold"
        ));
    }
    if limits.max_buffered_request_bytes < largest {
        return Err(format!(
            "[limits] max_buffered_request_bytes: must be at least {largest}, the largest \
             request the other limits allow"
        ));
    }
    Ok(())
}

// === impl Limits ===

impl Limits {
    /// The largest request message the API accepts, in bytes: the largest `spec_kv`, the most
    /// credentials at their largest, and room for every other field.
    pub fn max_request_bytes(&self) -> usize {
        self.max_credentials
            .saturating_mul(self.credential_max_bytes)
            .saturating_add(self.spec_kv_max_bytes)
            .saturating_add(REQUEST_FIELDS_ALLOWANCE_BYTES)
    }

    /// What the per-call layer enforces.
    pub fn call_settings(&self) -> CallSettings {
        CallSettings {
            max_buffered_request_bytes: self.max_buffered_request_bytes,
            max_message_bytes: self.max_request_bytes(),
            max_calls_per_identity: self.max_calls_per_identity,
            request_timeout: self.request_timeout,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            spec_kv_max_bytes: 1024 * 1024,
            max_credentials: 8,
            credential_max_bytes: 16 * 1024,
            handshake_timeout: Duration::from_secs(5),
            max_pending_handshakes: 1024,
            max_pending_handshakes_per_address: 64,
            max_concurrent_streams: 64,
            max_buffered_request_bytes: 128 * 1024 * 1024,
            max_calls_per_identity: 64,
            max_connections_per_identity: 256,
            max_in_flight_decisions: DEFAULT_MAX_IN_FLIGHT_DECISIONS,
            max_queued_audit_appends: crate::store::DEFAULT_QUEUE_CAPACITY,
            max_audit_queue_wait: crate::store::DEFAULT_MAX_QUEUE_WAIT,
            request_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(300),
            keepalive_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(10),
            id_max_bytes: 128,
            environment_part_max_bytes: 63,
            text_max_bytes: 1024,
            capability_max_bytes: 128,
            max_capabilities: 32,
        }
    }
}

impl Limits {
    /// The limits request validation applies.
    pub fn request_limits(&self) -> RequestLimits {
        RequestLimits {
            spec_kv_max_bytes: self.spec_kv_max_bytes,
            max_credentials: self.max_credentials,
            credential_max_bytes: self.credential_max_bytes,
            id_max_bytes: self.id_max_bytes,
            environment_part_max_bytes: self.environment_part_max_bytes,
            text_max_bytes: self.text_max_bytes,
            capability_max_bytes: self.capability_max_bytes,
            max_capabilities: self.max_capabilities,
        }
    }
}
