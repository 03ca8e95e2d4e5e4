//! Rust client for the ByteOr admission service: an mTLS channel builder, the generated
//! service clients, typed rejections decoded from `google.rpc.ErrorInfo`, and retries of
//! what the service did not decide.
#![forbid(unsafe_code)]

pub mod admit;
pub mod channel;
pub mod cli;
pub mod rejection;
pub mod retry;
pub mod transparency;

pub use admission_contract::{ERROR_DOMAIN, Reason, SpecHash, pb};
pub use admit::AdmitError;
pub use channel::{AdmissionClient, AdmissionClientBuilder, ClientError};
pub use rejection::{Rejection, RejectionReason};
pub use retry::{RetryEvent, RetryPolicy};
