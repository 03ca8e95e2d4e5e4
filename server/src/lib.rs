//! The ByteOr admission service.
//!
//! Dependencies point one way: `runtime` wires `grpc`, `identity` and `store` together;
//! `grpc` adapts the wire to `app`, `app` runs the use cases over `store`, and every layer
//! uses `domain`, which depends on nothing else in the crate.
#![forbid(unsafe_code)]

/// `service.name` when neither `OTEL_SERVICE_NAME` nor `OTEL_RESOURCE_ATTRIBUTES` names one;
/// also the tracer and meter name.
pub const SERVICE_NAME: &str = "admission-server";

pub mod app;
pub mod domain;
pub mod grpc;
pub mod identity;
pub mod runtime;
pub mod store;
