//! The gRPC contract of the Bedrock cost attribution service (`bedrock.attribution.v1`).
//!
//! This crate only holds generated code: the messages, the tonic server trait and client
//! stub, and the encoded file descriptor set that the server hands to gRPC reflection.
//! The server (`server/`) and the typed client (`client/`) both depend on it, so the
//! wire contract lives in exactly one place: `proto/`.

/// Version 1 of the attribution API.
pub mod v1 {
    #![allow(missing_docs, unreachable_pub, clippy::unwrap_used)]
    tonic::include_proto!("bedrock.attribution.v1");
}

/// Encoded `FileDescriptorSet` of `proto/`, for tonic-reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    tonic::include_file_descriptor_set!("attribution_descriptor");
