//! Wire layouts of the handshake: greeting, option requests, option replies
//! and the payloads inside them. Shared by the server and client machines.
//!
//! ```text
//! greeting     (18 B): u64 NBDMAGIC | u64 IHAVEOPT | u16 handshake flags
//! option       (16 B): u64 IHAVEOPT | u32 option | u32 length | data
//! option reply (20 B): u64 OPTION_REPLY_MAGIC | u32 option | u32 reply type | u32 length | data
//! INFO/GO data:        u32 name length | name | u16 n | u16 info type * n
//! META data:           u32 name length | name | u32 n | (u32 length | query) * n
//! ```

use bytes::{Buf, BufMut, BytesMut};

use super::HandshakeFlags;
use crate::consts::{IHAVEOPT, NBDMAGIC, OPTION_REPLY_MAGIC, info};
use crate::export::BlockSize;
use crate::transmission::TransmissionFlags;

/// Length of the server greeting.
pub(crate) const GREETING_LEN: usize = 18;
/// Length of an option request header.
pub(crate) const OPTION_HEADER_LEN: usize = 16;
/// Length of an option reply header.
pub(crate) const REPLY_HEADER_LEN: usize = 20;
/// Length of the `EXPORT_NAME` reply before the optional zeroes.
pub(crate) const EXPORT_NAME_REPLY_LEN: usize = 10;
/// Zero padding after the `EXPORT_NAME` reply unless both sides set `NO_ZEROES`.
pub(crate) const EXPORT_NAME_ZEROES: usize = 124;

pub(crate) fn encode_greeting(buf: &mut BytesMut, flags: HandshakeFlags) {
    buf.put_u64(NBDMAGIC);
    buf.put_u64(IHAVEOPT);
    buf.put_u16(flags.bits());
}

/// (magic, option, length) of the option request at the front of `buf`.
pub(crate) fn peek_option_header(buf: &[u8]) -> Option<(u64, u32, u32)> {
    let mut b = buf.get(..OPTION_HEADER_LEN)?;
    Some((b.get_u64(), b.get_u32(), b.get_u32()))
}

/// (magic, option, reply type, length) of the option reply at the front of `buf`.
pub(crate) fn peek_reply_header(buf: &[u8]) -> Option<(u64, u32, u32, u32)> {
    let mut b = buf.get(..REPLY_HEADER_LEN)?;
    Some((b.get_u64(), b.get_u32(), b.get_u32(), b.get_u32()))
}

/// Length of a buffer we built ourselves, as a u32 length field.
fn wire_len(data: &[u8]) -> u32 {
    // invariant: we only build option data from bounded strings (≤ 64 KiB).
    u32::try_from(data.len()).expect("option data exceeds u32")
}

pub(crate) fn encode_option_request(buf: &mut BytesMut, option: u32, data: &[u8]) {
    buf.put_u64(IHAVEOPT);
    buf.put_u32(option);
    buf.put_u32(wire_len(data));
    buf.extend_from_slice(data);
}

pub(crate) fn encode_option_reply(buf: &mut BytesMut, option: u32, reply_type: u32, data: &[u8]) {
    buf.put_u64(OPTION_REPLY_MAGIC);
    buf.put_u32(option);
    buf.put_u32(reply_type);
    buf.put_u32(wire_len(data));
    buf.extend_from_slice(data);
}

/// `NBD_INFO_EXPORT` payload: u16 type, u64 size, u16 flags (12 bytes).
pub(crate) fn info_export(size: u64, flags: TransmissionFlags) -> Vec<u8> {
    let mut v = Vec::with_capacity(12);
    v.put_u16(info::EXPORT);
    v.put_u64(size);
    v.put_u16(flags.bits());
    v
}

/// `NBD_INFO_BLOCK_SIZE` payload: u16 type, u32 min, u32 preferred, u32 max (14 bytes).
pub(crate) fn info_block_size(bs: BlockSize) -> Vec<u8> {
    let mut v = Vec::with_capacity(14);
    v.put_u16(info::BLOCK_SIZE);
    v.put_u32(bs.min);
    v.put_u32(bs.preferred);
    v.put_u32(bs.max);
    v
}

/// `NBD_INFO_NAME`/`NBD_INFO_DESCRIPTION` payload: u16 type, then the text.
pub(crate) fn info_string(kind: u16, text: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(2 + text.len());
    v.put_u16(kind);
    v.extend_from_slice(text.as_bytes());
    v
}

/// A length-prefixed string: u32 length, then the bytes.
fn put_string(v: &mut Vec<u8>, s: &[u8]) {
    v.put_u32(wire_len(s));
    v.extend_from_slice(s);
}

/// `NBD_REP_SERVER` payload: u32 name length, name, description.
pub(crate) fn rep_server(name: &str, description: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(4 + name.len() + description.len());
    put_string(&mut v, name.as_bytes());
    v.extend_from_slice(description.as_bytes());
    v
}

/// `NBD_REP_META_CONTEXT` payload: u32 context id, name.
pub(crate) fn rep_meta_context(id: u32, name: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(4 + name.len());
    v.put_u32(id);
    v.extend_from_slice(name.as_bytes());
    v
}

/// Reads a u32-length-prefixed string, or `None` if it overruns.
fn get_string<'a>(p: &mut &'a [u8]) -> Option<&'a [u8]> {
    if p.len() < 4 {
        return None;
    }
    let len = usize::try_from(p.get_u32()).ok()?;
    if p.len() < len {
        return None;
    }
    let (s, rest) = p.split_at(len);
    *p = rest;
    Some(s)
}

/// The data of `NBD_OPT_INFO`/`NBD_OPT_GO`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct InfoRequest<'a> {
    pub(crate) name: &'a [u8],
    pub(crate) infos: Vec<u16>,
}

/// Parses INFO/GO data; every length must match exactly or it is `None`.
pub(crate) fn parse_info_request(data: &[u8]) -> Option<InfoRequest<'_>> {
    let mut p = data;
    let name = get_string(&mut p)?;
    if p.len() < 2 {
        return None;
    }
    let n = usize::from(p.get_u16());
    if p.len() != 2 * n {
        return None;
    }
    let infos = (0..n).map(|_| p.get_u16()).collect();
    Some(InfoRequest { name, infos })
}

pub(crate) fn info_request(name: &str, infos: &[u16]) -> Vec<u8> {
    let mut v = Vec::with_capacity(6 + name.len() + 2 * infos.len());
    put_string(&mut v, name.as_bytes());
    // invariant: the client asks for at most a handful of info types.
    v.put_u16(u16::try_from(infos.len()).expect("few info requests"));
    for &i in infos {
        v.put_u16(i);
    }
    v
}

/// The data of `NBD_OPT_LIST_META_CONTEXT`/`NBD_OPT_SET_META_CONTEXT`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct MetaRequest<'a> {
    pub(crate) name: &'a [u8],
    pub(crate) queries: Vec<&'a [u8]>,
}

/// Parses meta context data. The query count is checked against what
/// follows, never used to preallocate.
pub(crate) fn parse_meta_request(data: &[u8]) -> Option<MetaRequest<'_>> {
    let mut p = data;
    let name = get_string(&mut p)?;
    if p.len() < 4 {
        return None;
    }
    let n = p.get_u32();
    let mut queries = Vec::new();
    for _ in 0..n {
        queries.push(get_string(&mut p)?);
    }
    p.is_empty().then_some(MetaRequest { name, queries })
}

pub(crate) fn meta_request(name: &str, queries: &[String]) -> Vec<u8> {
    let mut v = Vec::new();
    put_string(&mut v, name.as_bytes());
    // invariant: the client's query list comes from its config, far below 2^32.
    v.put_u32(u32::try_from(queries.len()).expect("query count fits u32"));
    for q in queries {
        put_string(&mut v, q.as_bytes());
    }
    v
}

#[cfg(test)]
mod tests {
    use hex_literal::hex;

    use super::*;

    #[test]
    fn golden_option_request() {
        let wire = hex!(
            "49484156454f5054" // IHAVEOPT
            "00000007"         // option: GO
            "0000000d"         // length 13
            "00000003"         // name length 3
            "766f6c"           // "vol"
            "0002"             // 2 info requests
            "0003"             // BLOCK_SIZE
            "0001"             // NAME
        );
        let mut buf = BytesMut::new();
        encode_option_request(&mut buf, 7, &info_request("vol", &[3, 1]));
        assert_eq!(&buf[..], &wire[..]);
        let want = InfoRequest { name: b"vol", infos: vec![3, 1] };
        assert_eq!(parse_info_request(&wire[16..]), Some(want));
    }

    #[test]
    fn info_request_lengths_must_match_exactly() {
        assert!(parse_info_request(&hex!("00000000 0000")).is_some());
        assert!(parse_info_request(&hex!("00000000 0000 00")).is_none()); // trailing byte
        assert!(parse_info_request(&hex!("00000000 0001")).is_none()); // missing request
        assert!(parse_info_request(&hex!("00000005 616263 0000")).is_none()); // name overruns
        assert!(parse_info_request(&hex!("ffffffff")).is_none());
    }

    #[test]
    fn golden_meta_request() {
        let wire = hex!(
            "00000000"                       // export name length 0 (default)
            "00000001"                       // 1 query
            "0000000f"                       // query length 15
            "626173653a616c6c6f636174696f6e" // "base:allocation"
        );
        let got = meta_request("", &["base:allocation".to_string()]);
        assert_eq!(got, wire);
        let want = MetaRequest { name: b"", queries: vec![b"base:allocation"] };
        assert_eq!(parse_meta_request(&wire), Some(want));
        // A huge query count with no queries behind it is rejected, not allocated.
        assert!(parse_meta_request(&hex!("00000000 ffffffff")).is_none());
    }
}
