//! The fixed-newstyle handshake: wire layouts of options and replies, and
//! sans-IO state machines for both sides.

mod client;
mod flags;
mod meta_context;
mod option;
mod server;

pub use client::{ClientConfig, ClientHandshake, ClientNegotiated, ClientStatus};
pub use flags::{ClientFlags, HandshakeFlags};
pub use meta_context::MetaContext;
pub use server::{HandshakeStatus, Negotiated, ServerConfig, ServerHandshake};
