//! Transmission requests: header layout, framing (how many payload bytes
//! follow) and the decoded [`Request`]. Replies live in `reply.rs`.
//!
//! ```text
//! compact  (28 B): u32 REQUEST_MAGIC | u16 flags | u16 type | u64 cookie | u64 offset | u32 length
//! extended (32 B): u32 EXTENDED_REQUEST_MAGIC | u16 flags | u16 type | u64 cookie | u64 offset | u64 length
//! ```

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::{CommandFlags, Cookie};
use crate::consts::{EXTENDED_REQUEST_MAGIC, REQUEST_MAGIC, cmd};
use crate::error::DecodeError;

const COMPACT_LEN: usize = 28;
const EXTENDED_LEN: usize = 32;

/// A request header as it appears on the wire, before payload handling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestHeader {
    /// Command flags, as sent.
    pub flags: CommandFlags,
    /// Command type (`cmd::*`), possibly unknown.
    pub kind: u16,
    /// Request identifier.
    pub cookie: Cookie,
    /// Byte offset.
    pub offset: u64,
    /// Length field: u32 on the wire in compact mode, u64 in extended mode.
    pub length: u64,
}

/// Header length: 28 bytes compact, 32 bytes with extended headers.
pub fn request_header_len(extended: bool) -> usize {
    if extended { EXTENDED_LEN } else { COMPACT_LEN }
}

/// Decodes a header from the front of `buf` without consuming it.
///
/// `Ok(None)` if fewer than [`request_header_len`] bytes are buffered. A
/// wrong magic for the negotiated mode is [`DecodeError::BadMagic`].
pub fn peek_request_header(
    buf: &[u8],
    extended: bool,
) -> Result<Option<RequestHeader>, DecodeError> {
    let Some(mut hdr) = buf.get(..request_header_len(extended)) else { return Ok(None) };
    let magic = hdr.get_u32();
    let want = if extended { EXTENDED_REQUEST_MAGIC } else { REQUEST_MAGIC };
    if magic != want {
        return Err(DecodeError::BadMagic(magic));
    }
    let flags = CommandFlags::from_bits_retain(hdr.get_u16());
    let kind = hdr.get_u16();
    let cookie = Cookie(hdr.get_u64());
    let offset = hdr.get_u64();
    let length = if extended { hdr.get_u64() } else { u64::from(hdr.get_u32()) };
    Ok(Some(RequestHeader { flags, kind, cookie, offset, length }))
}

/// How many payload bytes follow this header.
///
/// Compact mode: `length` for `WRITE`, else 0. Extended mode: `length` for
/// `WRITE` and for any command carrying `PAYLOAD_LEN`, else 0. A payload
/// above `max_payload` is [`DecodeError::PayloadTooLarge`]: we cannot skip
/// it without buffering it, so the stream is lost.
pub fn request_payload_len(
    hdr: &RequestHeader,
    extended: bool,
    max_payload: u32,
) -> Result<usize, DecodeError> {
    let has_payload =
        hdr.kind == cmd::WRITE || (extended && hdr.flags.contains(CommandFlags::PAYLOAD_LEN));
    if !has_payload {
        return Ok(0);
    }
    if hdr.length > u64::from(max_payload) {
        return Err(DecodeError::PayloadTooLarge { len: hdr.length, max: max_payload });
    }
    usize::try_from(hdr.length)
        .map_err(|_| DecodeError::PayloadTooLarge { len: hdr.length, max: max_payload })
}

impl RequestHeader {
    /// The WRITE request this header announces, with its payload read by the
    /// caller (a server reading large payloads straight into buffers of its
    /// own instead of through its stream buffer). `None` unless the header is
    /// a WRITE whose length is `data.len()`.
    pub fn into_write(self, extended: bool, data: Bytes) -> Option<Request> {
        if self.kind != cmd::WRITE || self.length != data.len() as u64 {
            return None;
        }
        let command = Command::Write { offset: self.offset, data };
        Some(Request { cookie: self.cookie, flags: framing_flags(self.flags, extended), command })
    }
}

/// PAYLOAD_LEN is framing in extended mode; in compact mode it is just an
/// invalid flag, left for the server to answer with EINVAL.
fn framing_flags(flags: CommandFlags, extended: bool) -> CommandFlags {
    if extended { flags - CommandFlags::PAYLOAD_LEN } else { flags }
}

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command {
    /// `NBD_CMD_READ`.
    Read {
        /// Byte offset.
        offset: u64,
        /// Bytes to read.
        length: u64,
    },
    /// `NBD_CMD_WRITE`; `data.len()` is the length.
    Write {
        /// Byte offset.
        offset: u64,
        /// The payload.
        data: Bytes,
    },
    /// `NBD_CMD_DISC`: finish in-flight requests, then close. No reply.
    Disconnect,
    /// `NBD_CMD_FLUSH`; the spec says offset and length must be 0.
    Flush {
        /// Byte offset as sent.
        offset: u64,
        /// Length as sent.
        length: u64,
    },
    /// `NBD_CMD_TRIM`.
    Trim {
        /// Byte offset.
        offset: u64,
        /// Bytes to discard.
        length: u64,
    },
    /// `NBD_CMD_CACHE`.
    Cache {
        /// Byte offset.
        offset: u64,
        /// Bytes to prefetch.
        length: u64,
    },
    /// `NBD_CMD_WRITE_ZEROES`.
    WriteZeroes {
        /// Byte offset.
        offset: u64,
        /// Bytes to zero.
        length: u64,
    },
    /// `NBD_CMD_BLOCK_STATUS`. With an extended-header payload, `length` is
    /// the effect length from the payload and the context filter is dropped.
    BlockStatus {
        /// Byte offset.
        offset: u64,
        /// Bytes to describe.
        length: u64,
    },
    /// Any other command type (including experimental `RESIZE`); answer `EINVAL`.
    Unknown {
        /// Command type.
        kind: u16,
        /// Offset field.
        offset: u64,
        /// Length field.
        length: u64,
    },
}

/// One decoded request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Request identifier, echoed in the reply.
    pub cookie: Cookie,
    /// Command flags. With extended headers, minus `PAYLOAD_LEN` (framing,
    /// consumed by the decoder).
    pub flags: CommandFlags,
    /// The command and its arguments.
    pub command: Command,
}

impl Request {
    /// Command type (`cmd::*`) of this request.
    pub fn kind(&self) -> u16 {
        match self.command {
            Command::Read { .. } => cmd::READ,
            Command::Write { .. } => cmd::WRITE,
            Command::Disconnect => cmd::DISC,
            Command::Flush { .. } => cmd::FLUSH,
            Command::Trim { .. } => cmd::TRIM,
            Command::Cache { .. } => cmd::CACHE,
            Command::WriteZeroes { .. } => cmd::WRITE_ZEROES,
            Command::BlockStatus { .. } => cmd::BLOCK_STATUS,
            Command::Unknown { kind, .. } => kind,
        }
    }

    /// (offset, length) as they go in the header; the length of a write is
    /// its payload length.
    fn range(&self) -> (u64, u64) {
        match &self.command {
            Command::Read { offset, length }
            | Command::Flush { offset, length }
            | Command::Trim { offset, length }
            | Command::Cache { offset, length }
            | Command::WriteZeroes { offset, length }
            | Command::BlockStatus { offset, length }
            | Command::Unknown { offset, length, .. } => (*offset, *length),
            Command::Write { offset, data } => (*offset, data.len() as u64),
            Command::Disconnect => (0, 0),
        }
    }
}

/// Decodes one request from the front of `buf`.
///
/// Returns `Ok(None)`, consuming nothing, until the header and the whole
/// payload are buffered. The payload length is checked against
/// `max_payload` as soon as the header is in, so a hostile header cannot make
/// the caller buffer more than `max_payload` plus one header.
pub fn decode_request(
    buf: &mut BytesMut,
    extended: bool,
    max_payload: u32,
) -> Result<Option<Request>, DecodeError> {
    let Some(hdr) = peek_request_header(buf, extended)? else { return Ok(None) };
    let body_len = request_payload_len(&hdr, extended, max_payload)?;
    let hdr_len = request_header_len(extended);
    if buf.len() - hdr_len < body_len {
        return Ok(None);
    }
    buf.advance(hdr_len);
    let payload = buf.split_to(body_len).freeze();
    let RequestHeader { flags, kind, cookie, offset, length } = hdr;
    let command = match kind {
        cmd::READ => Command::Read { offset, length },
        cmd::WRITE => Command::Write { offset, data: payload },
        cmd::DISC => Command::Disconnect,
        cmd::FLUSH => Command::Flush { offset, length },
        cmd::TRIM => Command::Trim { offset, length },
        cmd::CACHE => Command::Cache { offset, length },
        cmd::WRITE_ZEROES => Command::WriteZeroes { offset, length },
        cmd::BLOCK_STATUS if body_len == 0 => Command::BlockStatus { offset, length },
        cmd::BLOCK_STATUS => {
            // Extended payload: u64 effect length, then u32 context ids.
            let mut p = &payload[..];
            if p.len() < 8 || !(p.len() - 8).is_multiple_of(4) {
                return Err(DecodeError::Malformed("block status payload length"));
            }
            Command::BlockStatus { offset, length: p.get_u64() }
        }
        kind => Command::Unknown { kind, offset, length },
    };
    Ok(Some(Request { cookie, flags: framing_flags(flags, extended), command }))
}

/// Encodes a request (header, then any payload) for the client side.
///
/// In extended mode a `WRITE` gets `PAYLOAD_LEN`, as the spec requires.
///
/// # Panics
///
/// In compact mode, if the length does not fit the 32-bit length field;
/// callers must split such requests (the server's block size max is far
/// smaller anyway).
pub fn encode_request(buf: &mut BytesMut, req: &Request, extended: bool) {
    let (offset, length) = req.range();
    let mut flags = req.flags;
    if extended && matches!(req.command, Command::Write { .. }) {
        flags |= CommandFlags::PAYLOAD_LEN;
    }
    buf.reserve(request_header_len(extended));
    buf.put_u32(if extended { EXTENDED_REQUEST_MAGIC } else { REQUEST_MAGIC });
    buf.put_u16(flags.bits());
    buf.put_u16(req.kind());
    buf.put_u64(req.cookie.0);
    buf.put_u64(offset);
    if extended {
        buf.put_u64(length);
    } else {
        // invariant: documented panic; compact lengths are 32-bit on the wire.
        let length = u32::try_from(length).expect("compact request length exceeds u32");
        buf.put_u32(length);
    }
    if let Command::Write { data, .. } = &req.command {
        buf.extend_from_slice(data);
    }
}

#[cfg(test)]
mod tests;
