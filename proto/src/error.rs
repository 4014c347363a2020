//! Error types: [`HandshakeError`] for option haggling, [`DecodeError`] for the
//! transmission byte stream. Both mean "stop talking to this peer".

use thiserror::Error;

/// A handshake failure. Every variant means the connection must be closed;
/// recoverable option problems are answered with an error reply instead.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The client flags had an unknown bit, or lacked `FIXED_NEWSTYLE`.
    #[error("bad client flags {0:#x}")]
    BadClientFlags(u32),
    /// An option request did not start with `IHAVEOPT`.
    #[error("bad option magic {0:#x}")]
    BadOptionMagic(u64),
    /// An option's data is longer than we are willing to buffer.
    #[error("option data of {len} bytes exceeds the limit of {max}")]
    OptionTooLong {
        /// Length the peer announced.
        len: u32,
        /// Our bound.
        max: u32,
    },
    /// `NBD_OPT_EXPORT_NAME` named an export we do not have; the spec says disconnect.
    #[error("unknown export requested with NBD_OPT_EXPORT_NAME")]
    UnknownExport,
    /// `NBD_OPT_EXPORT_NAME` after extended headers were negotiated.
    #[error("NBD_OPT_EXPORT_NAME is not allowed after extended headers")]
    ExportNameAfterExtendedHeaders,
    /// The state machine already finished; feed the bytes to the transmission phase.
    #[error("handshake already finished")]
    Finished,
    /// The server greeting did not start with `NBDMAGIC` and `IHAVEOPT`.
    #[error("bad server greeting magic {0:#x}")]
    BadServerMagic(u64),
    /// The server does not speak fixed newstyle.
    #[error("unsupported server handshake flags {0:#x}")]
    BadHandshakeFlags(u16),
    /// An option reply did not start with the option reply magic.
    #[error("bad option reply magic {0:#x}")]
    BadReplyMagic(u64),
    /// An option reply is longer than we are willing to buffer.
    #[error("option reply of {len} bytes exceeds the limit of {max}")]
    ReplyTooLong {
        /// Length the peer announced.
        len: u32,
        /// Our bound.
        max: u32,
    },
    /// The server answered an option we did not send, or with a reply type
    /// that makes no sense for it.
    #[error("unexpected reply type {reply_type:#x} to option {option}")]
    UnexpectedReply {
        /// Option code in the reply.
        option: u32,
        /// Reply type in the reply.
        reply_type: u32,
    },
    /// A message had the right framing but an impossible payload.
    #[error("malformed handshake message: {0}")]
    Malformed(&'static str),
    /// The server refused an option we cannot do without.
    #[error("server rejected option {option} with {reply_type:#x}: {message}")]
    Rejected {
        /// Option code.
        option: u32,
        /// Error reply type (`rep::ERR_*`).
        reply_type: u32,
        /// The server's message, possibly empty.
        message: String,
    },
}

/// The transmission byte stream can no longer be trusted: hard-disconnect.
///
/// Problems with a single, well-framed request (unknown command, bad flag,
/// out of range) are not decode errors; they get an error reply.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// A request did not start with the request magic of the negotiated mode.
    #[error("bad request magic {0:#x}")]
    BadMagic(u32),
    /// A request announced a payload larger than we accept.
    #[error("request payload of {len} bytes exceeds the limit of {max}")]
    PayloadTooLarge {
        /// Announced payload length.
        len: u64,
        /// Our bound.
        max: u32,
    },
    /// A reply did not start with a reply magic valid in the negotiated mode.
    #[error("bad reply magic {0:#x}")]
    BadReplyMagic(u32),
    /// A reply chunk announced a payload larger than we accept.
    #[error("reply chunk of {len} bytes exceeds the limit of {max}")]
    ChunkTooLarge {
        /// Announced chunk payload length.
        len: u64,
        /// Our bound.
        max: u64,
    },
    /// A payload whose layout contradicts the spec.
    #[error("malformed message: {0}")]
    Malformed(&'static str),
}
