//! Generates the gRPC code from `proto/` with the vendored `protoc` (using bindery's own codec,
//! `shared::codec`), the file descriptor set that server reflection serves, and the canonical
//! protobuf JSON mapping of every message (serde, by `pbjson-build`) that the HTTP API speaks.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; prost-build reads PROTOC from the environment.
    unsafe { std::env::set_var("PROTOC", protoc) };
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    println!("cargo:rerun-if-changed=proto");
    // Every message knows its protobuf name (`prost::Name`), so the codec can say which message
    // a malformed request failed to be.
    let mut config = tonic_prost_build::Config::new();
    config.enable_type_names();
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("bindery_descriptor.bin"))
        .codec_path("crate::shared::codec::ProtoCodec")
        .compile_with_config(
            config,
            &["proto/bindery/v1/embedder.proto", "proto/bindery/v1/collections.proto"],
            &["proto"],
        )?;
    let descriptors = std::fs::read(out_dir.join("bindery_descriptor.bin"))?;
    pbjson_build::Builder::new().register_descriptors(&descriptors)?.build(&[".bindery.v1"])?;
    Ok(())
}
