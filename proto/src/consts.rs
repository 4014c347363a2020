//! Every numeric constant of the wire protocol (magics, option codes, reply,
//! info, command and chunk types), named as in the spec minus the `NBD_` prefix.
//!
//! Flags live with the types that carry them (`TransmissionFlags`, ...).

/// `NBDMAGIC`: the first 8 bytes the server sends ("NBDMAGIC" in ASCII).
pub const NBDMAGIC: u64 = 0x4e42_444d_4147_4943;
/// `IHAVEOPT`: the newstyle magic in the greeting and in every option request.
pub const IHAVEOPT: u64 = 0x4948_4156_454F_5054;
/// Magic that opens every fixed-newstyle option reply.
pub const OPTION_REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
/// Magic of a 28-byte compact request.
pub const REQUEST_MAGIC: u32 = 0x2560_9513;
/// Magic of a 32-byte extended request (extended headers only).
pub const EXTENDED_REQUEST_MAGIC: u32 = 0x21e4_1c71;
/// Magic of a 16-byte simple reply.
pub const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;
/// Magic of a 20-byte structured reply chunk header.
pub const STRUCTURED_REPLY_MAGIC: u32 = 0x668e_33ef;
/// Magic of a 32-byte extended reply chunk header (extended headers only).
pub const EXTENDED_REPLY_MAGIC: u32 = 0x6e8a_278c;

/// Largest payload we accept by default: the spec says payloads up to 2^25
/// bytes (32 MiB) must not be treated as a denial of service.
pub const DEFAULT_MAX_PAYLOAD: u32 = 32 * 1024 * 1024;
/// Default bound on the data of one option that the server handshake buffers.
///
/// Strings (export names, queries) are at most 4096 bytes per the spec, so
/// 64 KiB leaves room for several meta-context queries.
pub const MAX_OPTION_LEN: u32 = 64 * 1024;
/// Longest string (export name, message, query) the spec allows.
pub const MAX_STRING_LEN: usize = 4096;

/// Name of the one metadata context we implement.
pub const BASE_ALLOCATION: &str = "base:allocation";
/// `base:allocation` bit 0: the extent is a hole (unallocated).
pub const STATE_HOLE: u32 = 1;
/// `base:allocation` bit 1: the extent reads as zeroes.
pub const STATE_ZERO: u32 = 2;

/// Option codes (`NBD_OPT_*`, u32) sent by the client during the handshake.
pub mod opt {
    /// Select an export and end the handshake; the reply has no header.
    pub const EXPORT_NAME: u32 = 1;
    /// End the handshake without entering transmission.
    pub const ABORT: u32 = 2;
    /// List the exports.
    pub const LIST: u32 = 3;
    /// Withdrawn; never used.
    pub const PEEK_EXPORT: u32 = 4;
    /// Upgrade the connection to TLS.
    pub const STARTTLS: u32 = 5;
    /// Ask about an export without selecting it.
    pub const INFO: u32 = 6;
    /// Like `INFO`, then enter transmission on `ACK`.
    pub const GO: u32 = 7;
    /// Ask for structured replies.
    pub const STRUCTURED_REPLY: u32 = 8;
    /// List the metadata contexts matching some queries.
    pub const LIST_META_CONTEXT: u32 = 9;
    /// Select metadata contexts for `BLOCK_STATUS`.
    pub const SET_META_CONTEXT: u32 = 10;
    /// Ask for 64-bit extended headers (implies structured replies).
    pub const EXTENDED_HEADERS: u32 = 11;
}

/// Option reply types (`NBD_REP_*`, u32).
pub mod rep {
    /// The option succeeded; ends the replies to that option.
    pub const ACK: u32 = 1;
    /// One export in a `LIST` reply.
    pub const SERVER: u32 = 2;
    /// One `NBD_INFO_*` item for `INFO`/`GO`.
    pub const INFO: u32 = 3;
    /// One metadata context for `LIST_META_CONTEXT`/`SET_META_CONTEXT`.
    pub const META_CONTEXT: u32 = 4;
    /// Bit set in every error reply type.
    pub const ERR_BIT: u32 = 0x8000_0000;
    /// The option is not supported.
    pub const ERR_UNSUP: u32 = 0x8000_0001;
    /// Forbidden by server policy.
    pub const ERR_POLICY: u32 = 0x8000_0002;
    /// Syntactically or semantically invalid option.
    pub const ERR_INVALID: u32 = 0x8000_0003;
    /// Not supported on this platform.
    pub const ERR_PLATFORM: u32 = 0x8000_0004;
    /// TLS is required first.
    pub const ERR_TLS_REQD: u32 = 0x8000_0005;
    /// The export does not exist.
    pub const ERR_UNKNOWN: u32 = 0x8000_0006;
    /// The server is shutting down.
    pub const ERR_SHUTDOWN: u32 = 0x8000_0007;
    /// The client must request `NBD_INFO_BLOCK_SIZE`.
    pub const ERR_BLOCK_SIZE_REQD: u32 = 0x8000_0008;
    /// The request or its reply would be too big.
    pub const ERR_TOO_BIG: u32 = 0x8000_0009;
    /// Extended headers are required first.
    pub const ERR_EXT_HEADER_REQD: u32 = 0x8000_000a;
}

/// Information types (`NBD_INFO_*`, u16) inside `NBD_REP_INFO`.
pub mod info {
    /// Size and transmission flags; mandatory before `ACK`.
    pub const EXPORT: u16 = 0;
    /// Canonical export name.
    pub const NAME: u16 = 1;
    /// Human-readable description.
    pub const DESCRIPTION: u16 = 2;
    /// Minimum, preferred and maximum block sizes.
    pub const BLOCK_SIZE: u16 = 3;
}

/// Command types (`NBD_CMD_*`, u16) of transmission requests.
pub mod cmd {
    /// Read `length` bytes at `offset`.
    pub const READ: u16 = 0;
    /// Write the payload at `offset`.
    pub const WRITE: u16 = 1;
    /// Disconnect after in-flight requests; no reply.
    pub const DISC: u16 = 2;
    /// Make earlier completed writes durable.
    pub const FLUSH: u16 = 3;
    /// Discard a range (advisory).
    pub const TRIM: u16 = 4;
    /// Prefetch a range.
    pub const CACHE: u16 = 5;
    /// Write zeroes without a payload.
    pub const WRITE_ZEROES: u16 = 6;
    /// Query the selected metadata contexts.
    pub const BLOCK_STATUS: u16 = 7;
    /// Experimental: resize the export to `offset` bytes.
    pub const RESIZE: u16 = 8;
}

/// Structured reply chunk types (`NBD_REPLY_TYPE_*`, u16).
pub mod chunk {
    /// No payload; must carry `DONE`.
    pub const NONE: u16 = 0;
    /// u64 offset, then data.
    pub const OFFSET_DATA: u16 = 1;
    /// u64 offset, u32 hole length.
    pub const OFFSET_HOLE: u16 = 2;
    /// u32 context id, then {u32 length, u32 flags}+. The spec says 5; the
    /// reference `nbd.h` wrongly says 3.
    pub const BLOCK_STATUS: u16 = 5;
    /// u32 context id, u32 count, then {u64 length, u64 flags}+ (extended headers).
    pub const BLOCK_STATUS_EXT: u16 = 6;
    /// Bit set in every error chunk type.
    pub const ERR_BIT: u16 = 0x8000;
    /// u32 errno, u16 message length, message.
    pub const ERROR: u16 = 0x8001;
    /// u32 errno, u16 message length, message, u64 offset.
    pub const ERROR_OFFSET: u16 = 0x8002;
}
