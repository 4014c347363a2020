use bytes::BytesMut;
use hex_literal::hex;

use super::*;
use crate::consts::STATE_HOLE;
use crate::consts::STATE_ZERO;

fn encoded(f: impl FnOnce(&mut BytesMut)) -> BytesMut {
    let mut buf = BytesMut::new();
    f(&mut buf);
    buf
}

#[test]
fn golden_simple_reply() {
    let wire = hex!(
        "67446698"         // SIMPLE_REPLY_MAGIC
        "00000016"         // error: EINVAL (22)
        "0000000000000042" // cookie
    );
    let buf = encoded(|b| encode_simple_reply(b, Cookie(0x42), 22));
    assert_eq!(&buf[..], &wire[..]);
    let hdr = ReplyHeader::Simple { cookie: Cookie(0x42), error: 22 };
    assert_eq!(peek_reply_header(&wire, false), Ok(Some((hdr, 16))));
}

#[test]
fn golden_offset_data_header() {
    let wire = hex!(
        "668e33ef"         // STRUCTURED_REPLY_MAGIC
        "0001"             // flags: DONE
        "0001"             // type: OFFSET_DATA
        "0000000000000005" // cookie
        "00001008"         // length: 8-byte offset + 4096 data bytes
        "0000000000002000" // data offset 8192
    );
    let buf = encoded(|b| encode_offset_data_header(b, false, true, Cookie(5), 8192, 8192, 4096));
    assert_eq!(&buf[..], &wire[..]);
}

#[test]
fn golden_offset_hole() {
    let wire = hex!(
        "668e33ef"         // STRUCTURED_REPLY_MAGIC
        "0000"             // flags: none (more chunks follow)
        "0002"             // type: OFFSET_HOLE
        "0000000000000006" // cookie
        "0000000c"         // length 12
        "0000000000010000" // hole offset 64 KiB
        "00008000"         // hole length 32 KiB
    );
    let buf = encoded(|b| encode_offset_hole(b, false, false, Cookie(6), 0, 0x1_0000, 0x8000));
    assert_eq!(&buf[..], &wire[..]);
    assert_eq!(parse_offset_hole(&wire[20..], false), Ok((0x1_0000, 0x8000)));
}

#[test]
fn golden_none() {
    let wire = hex!(
        "668e33ef"         // STRUCTURED_REPLY_MAGIC
        "0001"             // flags: DONE
        "0000"             // type: NONE
        "0000000000000009" // cookie
        "00000000"         // length 0
    );
    let buf = encoded(|b| encode_none(b, false, Cookie(9), 123));
    assert_eq!(&buf[..], &wire[..]);
}

#[test]
fn golden_block_status_is_type_5() {
    let wire = hex!(
        "668e33ef"         // STRUCTURED_REPLY_MAGIC
        "0001"             // flags: DONE
        "0005"             // type: BLOCK_STATUS (5, not nbd.h's 3)
        "0000000000000007" // cookie
        "00000014"         // length: 4 + 2 * 8
        "00000001"         // context id 1 (base:allocation)
        "00001000"         // extent 1 length 4096
        "00000000"         // extent 1 flags: allocated data
        "00002000"         // extent 2 length 8192
        "00000003"         // extent 2 flags: HOLE | ZERO
    );
    let extents = [
        BlockExtent { length: 4096, flags: 0 },
        BlockExtent { length: 8192, flags: STATE_HOLE | STATE_ZERO },
    ];
    let buf = encoded(|b| encode_block_status(b, false, true, Cookie(7), 0, 1, &extents));
    assert_eq!(&buf[..], &wire[..]);
    assert_eq!(parse_block_status(&wire[20..], false), Ok((1, extents.to_vec())));
}

#[test]
fn golden_block_status_ext_is_type_6() {
    let wire = hex!(
        "6e8a278c"         // EXTENDED_REPLY_MAGIC
        "0001"             // flags: DONE
        "0006"             // type: BLOCK_STATUS_EXT
        "0000000000000007" // cookie
        "0000000000100000" // request offset 1 MiB
        "0000000000000018" // length: 8 + 1 * 16
        "00000001"         // context id 1
        "00000001"         // extent count 1
        "0000000100000000" // extent length 4 GiB
        "0000000000000001" // extent flags: HOLE
    );
    let extents = [BlockExtent { length: 1 << 32, flags: STATE_HOLE }];
    let buf = encoded(|b| encode_block_status(b, true, true, Cookie(7), 0x10_0000, 1, &extents));
    assert_eq!(&buf[..], &wire[..]);
    assert_eq!(parse_block_status(&wire[32..], true), Ok((1, extents.to_vec())));
}

#[test]
fn golden_error_chunk() {
    let wire = hex!(
        "668e33ef"         // STRUCTURED_REPLY_MAGIC
        "0001"             // flags: DONE
        "8001"             // type: ERROR
        "0000000000000008" // cookie
        "00000008"         // length: 4 + 2 + 2
        "00000005"         // errno: EIO
        "0002"             // message length 2
        "6f77"             // "ow"
    );
    let buf = encoded(|b| encode_error_chunk(b, false, true, Cookie(8), 0, 5, "ow"));
    assert_eq!(&buf[..], &wire[..]);
    assert_eq!(parse_error_chunk(&wire[20..]), Ok((5, "ow".to_string(), None)));
}

#[test]
fn golden_extended_reply_header() {
    let wire = hex!(
        "6e8a278c"         // EXTENDED_REPLY_MAGIC
        "0000"             // flags: none
        "0001"             // type: OFFSET_DATA
        "000000000000000a" // cookie
        "0000000000000200" // request offset 512
        "0000000000000108" // length: 8 + 256
        "0000000000000300" // data offset 768
    );
    let buf = encoded(|b| encode_offset_data_header(b, true, false, Cookie(10), 512, 768, 256));
    assert_eq!(&buf[..], &wire[..]);
    let hdr = ReplyHeader::Chunk {
        flags: ReplyFlags::empty(),
        kind: chunk::OFFSET_DATA,
        cookie: Cookie(10),
        offset: 512,
        length: 264,
    };
    assert_eq!(peek_reply_header(&wire, true), Ok(Some((hdr, 32))));
    assert!(!hdr.is_done());
}

#[test]
fn error_offset_chunk_parses_offset() {
    let payload = hex!("00000005 0001 78 0000000000001000");
    assert_eq!(parse_error_chunk(&payload), Ok((5, "x".to_string(), Some(4096))));
    assert!(parse_error_chunk(&hex!("00000005 0005 78")).is_err());
}

#[test]
fn long_error_messages_are_truncated_on_a_char_boundary() {
    let msg = "é".repeat(3000); // 6000 bytes
    let buf = encoded(|b| encode_error_chunk(b, false, true, Cookie(1), 0, 5, &msg));
    let (_, m, _) = parse_error_chunk(&buf[20..]).unwrap();
    assert_eq!(m.len(), 4096);
}

#[test]
fn reply_magic_must_match_mode() {
    let simple = hex!("67446698 00000000 0000000000000001");
    assert_eq!(
        peek_reply_header(&simple, true),
        Err(DecodeError::BadReplyMagic(SIMPLE_REPLY_MAGIC))
    );
    assert_eq!(peek_reply_header(&simple[..10], false), Ok(None));
}

#[test]
fn oversized_chunk_is_rejected() {
    let hdr = ReplyHeader::Chunk {
        flags: ReplyFlags::DONE,
        kind: chunk::OFFSET_DATA,
        cookie: Cookie(1),
        offset: 0,
        length: u64::MAX,
    };
    assert!(matches!(chunk_payload_len(&hdr, 1024), Err(DecodeError::ChunkTooLarge { .. })));
}
