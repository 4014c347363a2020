//! Errors of the NBD client library.

/// What went wrong talking NBD to a server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Socket error.
    #[error("nbd i/o")]
    Io(#[from] std::io::Error),
    /// The server broke the handshake or refused an option.
    #[error("nbd handshake")]
    Handshake(#[from] proto::HandshakeError),
    /// The server sent bytes we cannot parse; the connection is unusable.
    #[error("nbd protocol")]
    Protocol(#[from] proto::DecodeError),
    /// The server answered a request with an error.
    #[error("server replied {} ({errno}){}", errno_name(*.errno), if .message.is_empty() { String::new() } else { format!(": {}", .message) })]
    Server {
        /// The errno from the reply.
        errno: u32,
        /// The message of a structured error chunk, if any.
        message: String,
    },
    /// The connection closed before the reply arrived.
    #[error("connection closed")]
    Closed,
    /// The server's reply does not fit the request.
    #[error("unexpected reply: {0}")]
    Unexpected(&'static str),
}

impl ClientError {
    /// The errno of a server error reply.
    pub fn errno(&self) -> Option<u32> {
        match self {
            ClientError::Server { errno, .. } => Some(*errno),
            _ => None,
        }
    }
}

fn errno_name(errno: u32) -> &'static str {
    match proto::Errno::from_wire(errno) {
        Some(proto::Errno::Perm) => "EPERM",
        Some(proto::Errno::Io) => "EIO",
        Some(proto::Errno::NoMem) => "ENOMEM",
        Some(proto::Errno::Inval) => "EINVAL",
        Some(proto::Errno::NoSpc) => "ENOSPC",
        Some(proto::Errno::Overflow) => "EOVERFLOW",
        Some(proto::Errno::NotSup) => "ENOTSUP",
        Some(proto::Errno::Shutdown) => "ESHUTDOWN",
        _ => "unknown errno",
    }
}
