//! The ByteOr admission service.
//!
//! Dependencies point down the layers, never up: `runtime` → `grpc` → `app` → `identity`,
//! `store` → `domain` (`server/tests/layering.rs` holds it). `domain` names no tonic, sqlx or
//! pb; `grpc` is the only adapter to the wire; `runtime` reads the files and wires everything.
#![forbid(unsafe_code)]
#![warn(unreachable_pub)]

/// `service.name` when neither `OTEL_SERVICE_NAME` nor `OTEL_RESOURCE_ATTRIBUTES` names one;
/// also the tracer and meter name.
pub const SERVICE_NAME: &str = "admission-server";

// Every layer is public because the tests or the binary name something in it: the store and the
// audit queries in storage tests, domain types in the fuzz targets, and grpc types in the
// composition root's API (`runtime::state::AppState`). Inside, modules are `pub(crate)` where
// nothing outside needs them, and `unreachable_pub` keeps `pub` honest.
pub mod app;
pub mod domain;
pub mod grpc;
pub mod identity;
pub mod runtime;
pub mod store;
