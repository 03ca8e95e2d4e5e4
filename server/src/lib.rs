//! The ByteOr admission service.
//!
//! Modules follow the request path: `tls` accepts mTLS connections and names the caller,
//! `roles` authorizes it, `grpc` adapts the wire types, `decision` runs the SPEC §7 order using
//! `policy` and `credential`, and `audit` makes every decision durable before it is answered.
#![forbid(unsafe_code)]

pub mod approvals;
pub mod audit;
pub mod call_limits;
pub mod config;
pub mod credential;
pub mod decision;
pub mod dev;
pub mod grpc;
pub mod policy;
pub mod rejection;
pub mod roles;
pub mod serve;
pub mod telemetry;
pub mod tls;
