//! Compiles `proto/` into Rust with tonic-prost-build, using the protoc shipped by the
//! `protoc-bin-vendored` crate so that no system protoc is needed.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    let well_known = protoc_bin_vendored::include_path()?;
    let includes = [
        "proto",
        well_known.to_str().ok_or("non-UTF-8 include path")?,
    ];
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("attribution_descriptor.bin"))
        .compile_with_config(
            config,
            &["proto/bedrock/attribution/v1/attribution.proto"],
            &includes,
        )?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
