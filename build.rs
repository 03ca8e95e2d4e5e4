//! Compiles `proto/` with protox (no system `protoc`) and generates tonic code from the descriptors.

use std::{env, path::PathBuf};

const PROTOS: &[&str] = &[
    "byteor/admission/v1/types.proto",
    "byteor/admission/v1/error_reason.proto",
    "byteor/admission/v1/admission.proto",
    "byteor/admission/v1/approvals.proto",
    "byteor/admission/v1/audit.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);

    let fds = protox::compile(PROTOS, ["proto"])?;
    let descriptor_path = out_dir.join("admission_descriptor.bin");
    std::fs::write(&descriptor_path, prost::Message::encode_to_vec(&fds))?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
