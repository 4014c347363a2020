//! clonebd-client: an async NBD client library (handshake with GO,
//! structured replies, block status, extended headers, pipelined requests)
//! and the admin API client behind the `clonebd` command-line tool.
//!
//! ```text
//!   NbdClient ── request() ──► writer (one request at a time, whole)
//!       ▲                          │ TCP
//!       └── oneshot by cookie ◄── reader task (connection.rs)
//! ```
#![warn(missing_docs)]

/// The admin API client (HTTP/JSON) and its DTOs.
pub mod admin;
mod client;
mod connection;
mod error;
/// Size parsing and printing (K/M/G/T suffixes).
pub mod size;

pub use client::{ConnectOptions, NbdClient};
pub use connection::ReplyData;
pub use error::ClientError;
