//! callauth: real-time call authorization for separately invoiced
//! premium-rate calls, and the settlement behind it.
//!
//! The layout follows the architecture (DESIGN.md):
//! `domain` (pure rules) → `store` (the state store trait and its backends) →
//! `gateway` (the business operations over a store) → `api` (gRPC) →
//! `server` (wiring, HTTP, shutdown).

pub mod auth;
pub mod clock;
pub mod ctl;
pub mod domain;
pub mod gateway;
pub mod process;
pub mod settlement;
pub mod status;
pub mod tls;

/// Generated protobuf and gRPC code for `callauth.v1`. Generated types stop at
/// `api/`; everything else works with `domain` types.
pub mod pb {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("callauth.v1");

    /// The encoded descriptor set of `proto/`, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("callauth_descriptor");
}
pub mod metrics;
pub mod store;
