//! Compiles `sesame/v1/*.proto` with protox (pure Rust, no system protoc) and
//! generates the prost messages and tonic clients and servers. The encoded
//! file descriptor set is written next to the code for gRPC reflection.

use std::path::{Path, PathBuf};

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_dir = Path::new("sesame/v1");
    let mut files: Vec<PathBuf> = std::fs::read_dir(proto_dir)?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "proto"))
        .collect();
    files.sort();
    println!("cargo:rerun-if-changed=sesame");

    let descriptors = protox::compile(&files, ["."])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("sesame_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .codec_path("crate::codec::SesameCodec")
        .compile_fds(descriptors)?;
    Ok(())
}
