//! Transmission replies: the server encodes headers into a `BytesMut` (read
//! data goes out separately, for vectored writes); the client peeks headers
//! and parses chunk payloads.
//!
//! ```text
//! simple     (16 B): u32 SIMPLE_REPLY_MAGIC | u32 error | u64 cookie
//! structured (20 B): u32 STRUCTURED_REPLY_MAGIC | u16 flags | u16 type | u64 cookie | u32 length
//! extended   (32 B): u32 EXTENDED_REPLY_MAGIC | u16 flags | u16 type | u64 cookie | u64 offset | u64 length
//! ```

use bytes::{Buf, BufMut, BytesMut};

use super::{Cookie, ReplyFlags};
use crate::consts::{
    EXTENDED_REPLY_MAGIC, MAX_STRING_LEN, SIMPLE_REPLY_MAGIC, STRUCTURED_REPLY_MAGIC, chunk,
};
use crate::error::DecodeError;

const SIMPLE_LEN: usize = 16;
const STRUCTURED_LEN: usize = 20;
const EXTENDED_LEN: usize = 32;

/// Slack allowed above the payload bound for a chunk: the offset of
/// `OFFSET_DATA`, and error chunks with a maximal message.
const CHUNK_SLACK: u64 = 8 + 4 + 2 + MAX_STRING_LEN as u64 + 8;

/// One extent of a `BLOCK_STATUS` reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlockExtent {
    /// Extent length in bytes.
    pub length: u64,
    /// Context-defined flags (for `base:allocation`: `STATE_HOLE`, `STATE_ZERO`).
    pub flags: u32,
}

/// Encodes a 16-byte simple reply header; `READ` data (iff `error == 0`) follows separately.
pub fn encode_simple_reply(buf: &mut BytesMut, cookie: Cookie, error: u32) {
    buf.reserve(SIMPLE_LEN);
    buf.put_u32(SIMPLE_REPLY_MAGIC);
    buf.put_u32(error);
    buf.put_u64(cookie.0);
}

/// Encodes a structured (20-byte) or extended (32-byte) chunk header.
///
/// `request_offset` is only sent in extended mode. `payload_len` is the
/// length of everything after the header.
///
/// # Panics
///
/// In structured mode, if `payload_len` exceeds `u32::MAX`.
pub fn encode_chunk_header(
    buf: &mut BytesMut,
    extended: bool,
    flags: ReplyFlags,
    kind: u16,
    cookie: Cookie,
    request_offset: u64,
    payload_len: u64,
) {
    if extended {
        buf.reserve(EXTENDED_LEN);
        buf.put_u32(EXTENDED_REPLY_MAGIC);
    } else {
        buf.reserve(STRUCTURED_LEN);
        buf.put_u32(STRUCTURED_REPLY_MAGIC);
    }
    buf.put_u16(flags.bits());
    buf.put_u16(kind);
    buf.put_u64(cookie.0);
    if extended {
        buf.put_u64(request_offset);
        buf.put_u64(payload_len);
    } else {
        // invariant: documented panic; a structured chunk length is 32-bit.
        buf.put_u32(u32::try_from(payload_len).expect("structured chunk length exceeds u32"));
    }
}

fn done_flag(done: bool) -> ReplyFlags {
    if done { ReplyFlags::DONE } else { ReplyFlags::empty() }
}

/// Encodes an `OFFSET_DATA` chunk header plus its u64 offset; `data_len`
/// bytes of data follow separately.
pub fn encode_offset_data_header(
    buf: &mut BytesMut,
    extended: bool,
    done: bool,
    cookie: Cookie,
    request_offset: u64,
    data_offset: u64,
    data_len: u64,
) {
    let flags = done_flag(done);
    encode_chunk_header(
        buf,
        extended,
        flags,
        chunk::OFFSET_DATA,
        cookie,
        request_offset,
        8 + data_len,
    );
    buf.put_u64(data_offset);
}

/// Encodes a complete `OFFSET_HOLE` chunk (u64 offset, u32 length; the hole
/// length stays 32-bit with extended headers too).
pub fn encode_offset_hole(
    buf: &mut BytesMut,
    extended: bool,
    done: bool,
    cookie: Cookie,
    request_offset: u64,
    hole_offset: u64,
    hole_len: u32,
) {
    let flags = done_flag(done);
    encode_chunk_header(buf, extended, flags, chunk::OFFSET_HOLE, cookie, request_offset, 12);
    buf.put_u64(hole_offset);
    buf.put_u32(hole_len);
}

/// Encodes a `NONE` chunk with `DONE`: success with nothing more to say.
pub fn encode_none(buf: &mut BytesMut, extended: bool, cookie: Cookie, request_offset: u64) {
    encode_chunk_header(buf, extended, ReplyFlags::DONE, chunk::NONE, cookie, request_offset, 0);
}

/// Truncates `message` to the spec's 4096-byte string limit, on a char boundary.
fn bounded(message: &str) -> &str {
    if message.len() <= MAX_STRING_LEN {
        return message;
    }
    let mut end = MAX_STRING_LEN;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    &message[..end]
}

/// Encodes a complete `ERROR` chunk: u32 errno, u16 message length, message.
/// Messages longer than 4096 bytes are truncated.
pub fn encode_error_chunk(
    buf: &mut BytesMut,
    extended: bool,
    done: bool,
    cookie: Cookie,
    request_offset: u64,
    errno: u32,
    message: &str,
) {
    let msg = bounded(message).as_bytes();
    let payload_len = 6 + msg.len() as u64;
    let flags = done_flag(done);
    encode_chunk_header(buf, extended, flags, chunk::ERROR, cookie, request_offset, payload_len);
    buf.put_u32(errno);
    // invariant: `bounded` keeps the message within 4096 bytes.
    buf.put_u16(u16::try_from(msg.len()).expect("bounded message fits u16"));
    buf.extend_from_slice(msg);
}

/// Encodes a complete block status chunk for one metadata context.
///
/// Without extended headers: type `BLOCK_STATUS` (5), u32 context id, then
/// {u32 length, u32 flags} per extent; lengths above `u32::MAX` are clamped,
/// which is allowed (a shorter extent only makes the client ask again).
/// With extended headers: type `BLOCK_STATUS_EXT` (6), u32 context id, u32
/// count, then {u64 length, u64 flags} per extent.
pub fn encode_block_status(
    buf: &mut BytesMut,
    extended: bool,
    done: bool,
    cookie: Cookie,
    request_offset: u64,
    context_id: u32,
    extents: &[BlockExtent],
) {
    let flags = done_flag(done);
    let n = extents.len() as u64;
    if extended {
        let kind = chunk::BLOCK_STATUS_EXT;
        encode_chunk_header(buf, true, flags, kind, cookie, request_offset, 8 + 16 * n);
        buf.put_u32(context_id);
        // Callers send at most 2^20 extents per chunk (spec); clamp anyway.
        buf.put_u32(u32::try_from(extents.len()).unwrap_or(u32::MAX));
        for e in extents {
            buf.put_u64(e.length);
            buf.put_u64(u64::from(e.flags));
        }
    } else {
        let kind = chunk::BLOCK_STATUS;
        encode_chunk_header(buf, false, flags, kind, cookie, request_offset, 4 + 8 * n);
        buf.put_u32(context_id);
        for e in extents {
            buf.put_u32(u32::try_from(e.length).unwrap_or(u32::MAX));
            buf.put_u32(e.flags);
        }
    }
}

/// A decoded reply header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyHeader {
    /// A 16-byte simple reply; `READ` data follows iff `error == 0`.
    Simple {
        /// Request identifier.
        cookie: Cookie,
        /// Errno, 0 for success.
        error: u32,
    },
    /// A structured or extended chunk header; `length` payload bytes follow.
    Chunk {
        /// Chunk flags (`DONE`).
        flags: ReplyFlags,
        /// Chunk type (`chunk::*`).
        kind: u16,
        /// Request identifier.
        cookie: Cookie,
        /// Request offset (extended headers); 0 for structured chunks.
        offset: u64,
        /// Payload length.
        length: u64,
    },
}

impl ReplyHeader {
    /// The cookie this reply answers.
    pub fn cookie(&self) -> Cookie {
        match *self {
            ReplyHeader::Simple { cookie, .. } | ReplyHeader::Chunk { cookie, .. } => cookie,
        }
    }

    /// Whether no more replies follow for this cookie.
    pub fn is_done(&self) -> bool {
        match *self {
            ReplyHeader::Simple { .. } => true,
            ReplyHeader::Chunk { flags, .. } => flags.contains(ReplyFlags::DONE),
        }
    }
}

/// Decodes a reply header from the front of `buf` without consuming it;
/// returns the header and its length, or `Ok(None)` if incomplete.
///
/// Without extended headers, simple and structured magics are valid; with
/// them, only the extended magic is (the spec forbids the other two then).
pub fn peek_reply_header(
    buf: &[u8],
    extended: bool,
) -> Result<Option<(ReplyHeader, usize)>, DecodeError> {
    let Some(mut b) = buf.get(..4) else { return Ok(None) };
    let magic = b.get_u32();
    let len = match magic {
        SIMPLE_REPLY_MAGIC if !extended => SIMPLE_LEN,
        STRUCTURED_REPLY_MAGIC if !extended => STRUCTURED_LEN,
        EXTENDED_REPLY_MAGIC if extended => EXTENDED_LEN,
        other => return Err(DecodeError::BadReplyMagic(other)),
    };
    let Some(mut b) = buf.get(4..len) else { return Ok(None) };
    let hdr = if magic == SIMPLE_REPLY_MAGIC {
        let error = b.get_u32();
        ReplyHeader::Simple { cookie: Cookie(b.get_u64()), error }
    } else {
        let flags = ReplyFlags::from_bits_retain(b.get_u16());
        let kind = b.get_u16();
        let cookie = Cookie(b.get_u64());
        let (offset, length) =
            if extended { (b.get_u64(), b.get_u64()) } else { (0, u64::from(b.get_u32())) };
        ReplyHeader::Chunk { flags, kind, cookie, offset, length }
    };
    Ok(Some((hdr, len)))
}

/// Checks a chunk's payload length before the client buffers it.
///
/// Allows `max_payload` plus a little slack (the `OFFSET_DATA` offset, a
/// maximal error message). Simple replies carry no self-described payload: 0.
pub fn chunk_payload_len(hdr: &ReplyHeader, max_payload: u32) -> Result<usize, DecodeError> {
    let ReplyHeader::Chunk { length, .. } = *hdr else { return Ok(0) };
    let max = u64::from(max_payload) + CHUNK_SLACK;
    if length > max {
        return Err(DecodeError::ChunkTooLarge { len: length, max });
    }
    usize::try_from(length).map_err(|_| DecodeError::ChunkTooLarge { len: length, max })
}

/// Parses an `OFFSET_DATA` payload into (offset, data). Same layout in both modes.
pub fn parse_offset_data(payload: &[u8], _extended: bool) -> Result<(u64, &[u8]), DecodeError> {
    if payload.len() < 9 {
        return Err(DecodeError::Malformed("offset data chunk shorter than 9 bytes"));
    }
    let (mut off, data) = payload.split_at(8);
    Ok((off.get_u64(), data))
}

/// Parses an `OFFSET_HOLE` payload into (offset, hole length); always 12 bytes.
pub fn parse_offset_hole(payload: &[u8], _extended: bool) -> Result<(u64, u32), DecodeError> {
    if payload.len() != 12 {
        return Err(DecodeError::Malformed("offset hole chunk is not 12 bytes"));
    }
    let mut p = payload;
    Ok((p.get_u64(), p.get_u32()))
}

/// Parses a `BLOCK_STATUS` (compact) or `BLOCK_STATUS_EXT` (extended)
/// payload into (context id, extents). At least one extent is required.
pub fn parse_block_status(
    payload: &[u8],
    extended: bool,
) -> Result<(u32, Vec<BlockExtent>), DecodeError> {
    let mut p = payload;
    if extended {
        if p.len() < 8 {
            return Err(DecodeError::Malformed("block status ext chunk too short"));
        }
        let id = p.get_u32();
        let count = p.get_u32();
        if !p.len().is_multiple_of(16) || p.is_empty() || p.len() / 16 != count as usize {
            return Err(DecodeError::Malformed("block status ext extent count mismatch"));
        }
        let mut extents = Vec::with_capacity(p.len() / 16);
        while p.has_remaining() {
            let length = p.get_u64();
            // Flags are u64 on the wire; contexts we know define only 32 bits.
            let flags = u32::try_from(p.get_u64())
                .map_err(|_| DecodeError::Malformed("block status flags exceed 32 bits"))?;
            extents.push(BlockExtent { length, flags });
        }
        Ok((id, extents))
    } else {
        if p.len() < 12 || !(p.len() - 4).is_multiple_of(8) {
            return Err(DecodeError::Malformed("block status chunk length"));
        }
        let id = p.get_u32();
        let mut extents = Vec::with_capacity(p.len() / 8);
        while p.has_remaining() {
            let length = u64::from(p.get_u32());
            extents.push(BlockExtent { length, flags: p.get_u32() });
        }
        Ok((id, extents))
    }
}

/// Parses an `ERROR` or `ERROR_OFFSET` payload into (errno, message,
/// offset). The offset is present iff exactly 8 bytes follow the message.
pub fn parse_error_chunk(payload: &[u8]) -> Result<(u32, String, Option<u64>), DecodeError> {
    let mut p = payload;
    if p.len() < 6 {
        return Err(DecodeError::Malformed("error chunk shorter than 6 bytes"));
    }
    let errno = p.get_u32();
    let msg_len = usize::from(p.get_u16());
    if p.len() < msg_len {
        return Err(DecodeError::Malformed("error chunk message overruns payload"));
    }
    let (msg, mut rest) = p.split_at(msg_len);
    let message = String::from_utf8_lossy(msg).into_owned();
    let offset = match rest.len() {
        0 => None,
        8 => Some(rest.get_u64()),
        _ => return Err(DecodeError::Malformed("error chunk trailing bytes")),
    };
    Ok((errno, message, offset))
}

#[cfg(test)]
mod tests;
