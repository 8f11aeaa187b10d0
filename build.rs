//! Generates the gRPC code from `proto/` with protox, a pure-Rust protobuf
//! compiler, so building needs no system `protoc`. The encoded descriptor set
//! is kept for gRPC server reflection.
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/callauth/v1/common.proto",
        "proto/callauth/v1/authorization.proto",
        "proto/callauth/v1/usage.proto",
        "proto/callauth/v1/catalog.proto",
        "proto/callauth/v1/accounts.proto",
        "proto/callauth/v1/events.proto",
        "proto/callauth/v1/settlement.proto",
    ];
    for p in &protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let fds = protox::compile(protos, ["proto"])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("callauth_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
