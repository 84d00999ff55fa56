//! Generated protobuf messages and tonic stubs for the Sesame API.
//!
//! The code is produced at build time from `proto/sesame/v1/*.proto` by
//! protox and tonic-prost-build; nothing here is edited by hand.

pub mod codec;

/// The `sesame.v1` package: messages, `*_client` and `*_server` modules.
pub mod v1 {
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    tonic::include_proto!("sesame.v1");
}

/// Encoded `FileDescriptorSet` of every Sesame proto file and its imports,
/// served by gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/sesame_descriptor.bin"));
