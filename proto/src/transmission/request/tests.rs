use bytes::{Bytes, BytesMut};
use hex_literal::hex;

use super::*;

fn decode_all(bytes: &[u8], extended: bool) -> Result<Option<Request>, DecodeError> {
    let mut buf = BytesMut::from(bytes);
    decode_request(&mut buf, extended, 1024)
}

#[test]
fn golden_compact_write() {
    let wire = hex!(
        "25609513"         // REQUEST_MAGIC
        "0001"             // flags: FUA
        "0001"             // type: WRITE
        "0102030405060708" // cookie
        "0000000000001000" // offset 4096
        "00000003"         // length 3 (u32)
        "aabbcc"           // payload
    );
    let req = Request {
        cookie: Cookie(0x0102_0304_0506_0708),
        flags: CommandFlags::FUA,
        command: Command::Write { offset: 4096, data: Bytes::from_static(&hex!("aabbcc")) },
    };
    let mut buf = BytesMut::new();
    encode_request(&mut buf, &req, false);
    assert_eq!(&buf[..], &wire[..]);
    assert_eq!(decode_all(&wire, false), Ok(Some(req)));
}

#[test]
fn golden_extended_write_sets_payload_len() {
    let wire = hex!(
        "21e41c71"         // EXTENDED_REQUEST_MAGIC
        "0020"             // flags: PAYLOAD_LEN
        "0001"             // type: WRITE
        "00000000000000ff" // cookie
        "0000000000000200" // offset 512
        "0000000000000002" // length 2 (u64)
        "1122"             // payload
    );
    let req = Request {
        cookie: Cookie(0xff),
        flags: CommandFlags::empty(),
        command: Command::Write { offset: 512, data: Bytes::from_static(&hex!("1122")) },
    };
    let mut buf = BytesMut::new();
    encode_request(&mut buf, &req, true);
    assert_eq!(&buf[..], &wire[..]);
    // The decoder strips PAYLOAD_LEN: it is framing, not a command flag.
    assert_eq!(decode_all(&wire, true), Ok(Some(req)));
}

#[test]
fn golden_extended_read_with_64_bit_length() {
    let wire = hex!(
        "21e41c71"         // EXTENDED_REQUEST_MAGIC
        "0004"             // flags: DF
        "0000"             // type: READ
        "0000000000000007" // cookie
        "0000000100000000" // offset 4 GiB
        "0000000200000000" // length 8 GiB: only expressible with extended headers
    );
    let want = Request {
        cookie: Cookie(7),
        flags: CommandFlags::DF,
        command: Command::Read { offset: 1 << 32, length: 2 << 32 },
    };
    assert_eq!(decode_all(&wire, true), Ok(Some(want)));
}

#[test]
fn incomplete_request_consumes_nothing() {
    let wire = hex!("25609513 0000 0001 0000000000000001 0000000000000000 00000004 aabb");
    for cut in 0..wire.len() {
        let mut buf = BytesMut::from(&wire[..cut]);
        assert_eq!(decode_request(&mut buf, false, 1024), Ok(None));
        assert_eq!(buf.len(), cut);
    }
}

#[test]
fn two_requests_in_one_buffer() {
    let mut buf = BytesMut::new();
    let a =
        Request { cookie: Cookie(1), flags: CommandFlags::empty(), command: Command::Disconnect };
    let b = Request {
        cookie: Cookie(2),
        flags: CommandFlags::FUA,
        command: Command::Flush { offset: 0, length: 0 },
    };
    encode_request(&mut buf, &a, false);
    encode_request(&mut buf, &b, false);
    assert_eq!(decode_request(&mut buf, false, 0), Ok(Some(a)));
    assert_eq!(decode_request(&mut buf, false, 0), Ok(Some(b)));
    assert!(buf.is_empty());
}

#[test]
fn oversized_write_is_rejected_from_the_header_alone() {
    let wire = hex!("25609513 0000 0001 0000000000000001 0000000000000000 00000401");
    assert_eq!(
        decode_all(&wire, false),
        Err(DecodeError::PayloadTooLarge { len: 1025, max: 1024 })
    );
}

#[test]
fn wrong_magic_for_mode_is_bad_magic() {
    let wire = hex!("25609513 0000 0000 0000000000000001 0000000000000000 0000000000000000");
    assert_eq!(decode_all(&wire, true), Err(DecodeError::BadMagic(REQUEST_MAGIC)));
    let wire = hex!("21e41c71 0000 0000 0000000000000001 0000000000000000 00000000");
    assert_eq!(decode_all(&wire, false), Err(DecodeError::BadMagic(EXTENDED_REQUEST_MAGIC)));
}

#[test]
fn unknown_command_and_resize_decode_as_unknown() {
    let wire = hex!("25609513 0000 0008 0000000000000009 0000000000100000 00000000");
    let req = decode_all(&wire, false).unwrap().unwrap();
    assert_eq!(req.command, Command::Unknown { kind: cmd::RESIZE, offset: 0x10_0000, length: 0 });
    assert_eq!(req.kind(), cmd::RESIZE);
}

#[test]
fn extended_block_status_payload_carries_effect_length() {
    let wire = hex!(
        "21e41c71"         // EXTENDED_REQUEST_MAGIC
        "0028"             // flags: PAYLOAD_LEN | REQ_ONE
        "0007"             // type: BLOCK_STATUS
        "0000000000000003" // cookie
        "0000000000000000" // offset
        "000000000000000c" // length: 12-byte payload
        "0000000000010000" // payload: effect length 64 KiB
        "00000001"         // payload: context id 1
    );
    let req = decode_all(&wire, true).unwrap().unwrap();
    assert_eq!(req.flags, CommandFlags::REQ_ONE);
    assert_eq!(req.command, Command::BlockStatus { offset: 0, length: 0x1_0000 });
}

#[test]
fn payload_len_in_compact_mode_is_kept_for_einval() {
    let wire = hex!("25609513 0020 0000 0000000000000001 0000000000000000 00000200");
    let req = decode_all(&wire, false).unwrap().unwrap();
    assert_eq!(req.flags, CommandFlags::PAYLOAD_LEN);
    assert_eq!(req.command, Command::Read { offset: 0, length: 512 });
}
