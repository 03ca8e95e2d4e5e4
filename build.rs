//! Compiles `proto/` with protox (no system `protoc`) and generates tonic code from the descriptors.
//!
//! Two descriptor sets come out: the admission API, which also drives code generation, and the
//! vendored `google.rpc` status and error-detail messages, which only reflection serves (the Rust
//! types for them come from `tonic-types`).

use std::{env, path::PathBuf};

const PROTOS: &[&str] = &[
    "byteor/admission/v1/types.proto",
    "byteor/admission/v1/error_reason.proto",
    "byteor/admission/v1/admission.proto",
    "byteor/admission/v1/approvals.proto",
    "byteor/admission/v1/audit.proto",
];

/// Vendored from googleapis so reflection clients can decode rejection details.
const GOOGLE_RPC_PROTOS: &[&str] = &["google/rpc/status.proto", "google/rpc/error_details.proto"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);

    let google_rpc = protox::compile(GOOGLE_RPC_PROTOS, ["proto"])?;
    std::fs::write(
        out_dir.join("google_rpc_descriptor.bin"),
        prost::Message::encode_to_vec(&google_rpc),
    )?;

    let fds = protox::compile(PROTOS, ["proto"])?;
    let descriptor_path = out_dir.join("admission_descriptor.bin");
    std::fs::write(&descriptor_path, prost::Message::encode_to_vec(&fds))?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
