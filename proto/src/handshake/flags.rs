//! Flag words of the handshake: the server's greeting flags and the client's reply.

use bitflags::bitflags;

bitflags! {
    /// Handshake flags (u16) the server sends in its greeting.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct HandshakeFlags: u16 {
        /// The server speaks fixed newstyle.
        const FIXED_NEWSTYLE = 1 << 0;
        /// The server can omit the 124 zero bytes after `EXPORT_NAME`.
        const NO_ZEROES = 1 << 1;
    }
}

bitflags! {
    /// Client flags (u32) the client sends after the greeting.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct ClientFlags: u32 {
        /// The client speaks fixed newstyle.
        const FIXED_NEWSTYLE = 1 << 0;
        /// The server must omit the 124 zero bytes after `EXPORT_NAME`.
        const NO_ZEROES = 1 << 1;
    }
}
