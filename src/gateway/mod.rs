//! The gateway process (`callauth-gateway`): real-time authorization over
//! gRPC for IVR platforms, usage from merchants, and the catalogue and
//! account administration — stateless over a [`Store`](crate::store::Store).
//!
//! - `ops` — the business operations over a store (validation against the
//!   cached catalogue, the store's atomic step, decision metrics);
//! - `catalog_cache` — the lock-free catalogue snapshot the hot path reads;
//! - `api` — the `callauth.v1` gRPC services: roles, conversions;
//! - `server` — gRPC and HTTP wiring, limits, health, graceful shutdown;
//! - `config`, `run` — the command line and the process;
//! - `catalog_file` — the catalogue TOML (the demo and `--catalog`).

pub mod api;
pub mod catalog_cache;
pub mod catalog_file;
pub mod config;
mod ops;
pub mod run;
pub mod server;

pub use catalog_cache::CatalogCache;
pub use ops::*;
