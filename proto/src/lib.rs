//! Sans-IO implementation of the NBD (Network Block Device) protocol: wire
//! constants, flag words, request and reply encoding and decoding, and the
//! fixed-newstyle handshake as state machines for both sides.
//!
//! Nothing here does IO, spawns tasks or reads a clock. Drivers own the
//! sockets and move bytes between them and these types:
//!
//! ```text
//!   socket ──read_buf──▶ BytesMut ──▶ ServerHandshake::handle_input ──▶ HandshakeStatus
//!   socket ◀──write──── BytesMut ◀── ServerHandshake::take_output
//!                                         │ Done(Negotiated)
//!                                         ▼
//!   socket ──read_buf──▶ BytesMut ──▶ decode_request ──▶ Request ──▶ server (store)
//!   socket ◀──writev─── header BytesMut ◀── encode_*_reply/chunk ◀──┘  + data Bytes
//!
//!   +--------------------------------------------------------------+
//!   | handshake/   option.rs (layouts)  server.rs  client.rs       |
//!   | transmission/ request.rs  reply.rs  flags.rs  cookie.rs      |
//!   | consts.rs  errno.rs  export.rs  error.rs                     |
//!   +--------------------------------------------------------------+
//! ```
//!
//! Errors are split the same way the protocol splits them: a
//! [`HandshakeError`] or [`DecodeError`] means the byte stream can no longer
//! be trusted and the connection must be closed; a bad but well-framed
//! request is decoded fine and answered with an [`Errno`].
//!
//! ```
//! use bytes::BytesMut;
//! use clonebd_proto::{Command, CommandFlags, Cookie, Request, decode_request, encode_request};
//!
//! let req = Request {
//!     cookie: Cookie(7),
//!     flags: CommandFlags::FUA,
//!     command: Command::Read { offset: 4096, length: 512 },
//! };
//! let mut buf = BytesMut::new();
//! encode_request(&mut buf, &req, false);
//! assert_eq!(decode_request(&mut buf, false, 1 << 25).unwrap(), Some(req));
//! ```
#![warn(missing_docs)]

mod consts;
mod errno;
mod error;
mod export;
#[doc(hidden)]
pub mod fuzzing;
mod handshake;
mod transmission;

pub use consts::{
    BASE_ALLOCATION, DEFAULT_MAX_PAYLOAD, EXTENDED_REPLY_MAGIC, EXTENDED_REQUEST_MAGIC, IHAVEOPT,
    MAX_OPTION_LEN, MAX_STRING_LEN, NBDMAGIC, OPTION_REPLY_MAGIC, REQUEST_MAGIC,
    SIMPLE_REPLY_MAGIC, STATE_HOLE, STATE_ZERO, STRUCTURED_REPLY_MAGIC, chunk, cmd, info, opt, rep,
};
pub use errno::Errno;
pub use error::{DecodeError, HandshakeError};
pub use export::{BlockSize, ExportCatalog, ExportInfo};
pub use handshake::{
    ClientConfig, ClientFlags, ClientHandshake, ClientNegotiated, ClientStatus, HandshakeFlags,
    HandshakeStatus, MetaContext, Negotiated, ServerConfig, ServerHandshake,
};
pub use transmission::{
    BlockExtent, Command, CommandFlags, Cookie, ReplyFlags, ReplyHeader, Request, RequestHeader,
    TransmissionFlags, chunk_payload_len, decode_request, encode_block_status, encode_chunk_header,
    encode_error_chunk, encode_none, encode_offset_data_header, encode_offset_hole, encode_request,
    encode_simple_reply, parse_block_status, parse_error_chunk, parse_offset_data,
    parse_offset_hole, peek_reply_header, peek_request_header, request_header_len,
    request_payload_len,
};
