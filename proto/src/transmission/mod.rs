//! The transmission phase: request framing and decoding for the server,
//! reply encoding for the server and reply parsing for the client.

mod cookie;
mod flags;
mod reply;
mod request;

pub use cookie::Cookie;
pub use flags::{CommandFlags, ReplyFlags, TransmissionFlags};
pub use reply::{
    BlockExtent, ReplyHeader, chunk_payload_len, encode_block_status, encode_chunk_header,
    encode_error_chunk, encode_none, encode_offset_data_header, encode_offset_hole,
    encode_simple_reply, parse_block_status, parse_error_chunk, parse_offset_data,
    parse_offset_hole, peek_reply_header,
};
pub use request::{
    Command, Request, RequestHeader, decode_request, encode_request, peek_request_header,
    request_header_len, request_payload_len,
};
