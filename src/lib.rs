//! callauth: real-time call authorization for separately invoiced
//! premium-rate calls, and the settlement behind it.
//!
//! One library crate, two processes (docs/architecture.md): the gateway
//! (`gateway` over `store`) and the settlement worker (`settlement` over
//! PostgreSQL), both built on `domain` (pure rules) and sharing `auth`,
//! `process`, `tls`, `metrics`, `status` and `clock`. Dependencies point
//! down: `domain` ← `store` ← `gateway`, and `domain` ← `settlement`; the
//! gateway never names settlement's internals.

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
