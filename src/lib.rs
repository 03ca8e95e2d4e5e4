//! The ByteOr admission contract: the generated protobuf API (`pb`) and the spec hash of SPEC §4.
//!
//! Server and client crates both depend on this crate, so the wire types and the spec hash are
//! defined exactly once.
#![forbid(unsafe_code)]

pub mod credential;
pub mod echo;
pub mod hash;
pub mod reason;
pub mod spec;

pub use echo::echo;
pub use reason::Reason;
pub use spec::{SpecError, SpecHash};

/// Generated protobuf and tonic code for package `byteor.admission.v1`.
#[rustfmt::skip]
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/byteor.admission.v1.rs"));

    /// Encoded `FileDescriptorSet` of the API, for gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/admission_descriptor.bin"));

    /// Encoded `FileDescriptorSet` of `google/rpc/status.proto` and
    /// `google/rpc/error_details.proto` (vendored from googleapis), so reflection clients can
    /// decode `ErrorInfo`, `RetryInfo` and `BadRequest` in rejection details.
    pub const GOOGLE_RPC_FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/google_rpc_descriptor.bin"));
}

/// The `google.rpc.ErrorInfo.domain` of every rejection.
pub const ERROR_DOMAIN: &str = "byteor.admission.v1";
