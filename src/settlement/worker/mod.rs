//! The `callauth-settlement` process: its configuration and clock, the
//! one-off commands, the long-running daemon with its daily loop, the daily
//! calendar run itself, and the Settlement gRPC API it serves.

pub mod api;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod daily;
pub mod scheduler;
pub mod time;
