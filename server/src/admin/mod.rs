//! The HTTP/JSON admin API (axum): volumes, snapshots, clones, promote,
//! rollback, diff, exports, GC and snapshot schedules under `/v1` behind a
//! bearer token, and
//! `/healthz`. It owns no state of its own; every call goes to the store on
//! the blocking pool. `/metrics` is mounted by the caller.
//!
//! ```text
//!  HTTP ──▶ routes (auth layer) ──▶ handlers ──spawn_blocking──▶ Catalog ──▶ store::Store
//!                                      │                            │
//!                                   types (DTOs)          catalog.rs: store types → DTOs,
//!                                                         Refusal → HTTP status
//! ```

mod catalog;
mod error;
mod extract;
mod handlers;
mod routes;
mod schedules;
mod token;
pub mod types;

#[cfg(test)]
mod tests;

pub use catalog::Catalog;
pub use error::ApiError;
pub use routes::{AdminState, router, serve};
pub use schedules::Schedules;
pub use token::{TOKEN_FILE, load_or_create_token};
