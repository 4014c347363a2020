//! clonebd-server: serves clonebd's copy-on-write volumes, snapshots and
//! clones over NBD, with an HTTP/JSON admin API beside it.
//!
//! ```text
//!   NBD clients                      clonebd CLI / curl / Prometheus
//!       │                                     │
//!   nbd (tokio): listener → handshake →   admin (axum): routes → handlers
//!   reader → request tasks → writer           │
//!       │ IoPool (OS threads)                 │ spawn_blocking
//!   ────┴─────────── store (sync engine, sled + chunk files) ───┴────
//! ```
//!
//! [`run`] is the single entry point; tests call it with port 0 through
//! [`Server::bind`] to learn the bound addresses.

pub mod admin;
mod config;
mod error_chain;
pub mod metrics;
mod nbd;
pub mod schedule;
mod server;

pub use config::{
    Config, ConfigError, DEFAULT_ADMIN_ADDR, DEFAULT_COMMIT_INTERVAL, DEFAULT_DATA_DIR,
    DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_INFLIGHT_BYTES,
    DEFAULT_MAX_INFLIGHT_REQUESTS, DEFAULT_MAX_PAYLOAD, DEFAULT_NBD_ADDR, DEFAULT_SLED_CACHE,
    DEFAULT_VOLUME, DEFAULT_VOLUME_SIZE, FileConfig,
};
pub use server::{Server, ServerError, run};
