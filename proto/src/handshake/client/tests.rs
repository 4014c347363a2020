use bytes::{BufMut, BytesMut};
use hex_literal::hex;

use super::*;
use crate::handshake::option::encode_option_reply;

const GREETING: [u8; 18] = hex!("4e42444d41474943 49484156454f5054 0003");

fn output(hs: &mut ClientHandshake) -> BytesMut {
    let mut out = BytesMut::new();
    hs.take_output(&mut out);
    out
}

fn reply(option: u32, reply_type: u32, data: &[u8]) -> BytesMut {
    let mut b = BytesMut::new();
    encode_option_reply(&mut b, option, reply_type, data);
    b
}

fn config() -> ClientConfig {
    ClientConfig {
        export: "vol".into(),
        structured_replies: true,
        extended_headers: true,
        meta_contexts: vec!["base:allocation".into()],
        request_info: false,
    }
}

#[test]
fn golden_first_bytes_like_qemu() {
    let mut hs = ClientHandshake::new(config());
    let mut input = BytesMut::from(&GREETING[..]);
    assert_eq!(hs.handle_input(&mut input), Ok(ClientStatus::NeedMore));
    let wire = hex!(
        "00000003"         // client flags: FIXED_NEWSTYLE | NO_ZEROES
        "49484156454f5054" // IHAVEOPT
        "0000000b"         // option: EXTENDED_HEADERS
        "00000000"         // length 0
    );
    assert_eq!(&output(&mut hs)[..], &wire[..]);
}

#[test]
fn falls_back_from_extended_headers_to_structured_replies_and_from_go_to_export_name() {
    let mut hs = ClientHandshake::new(config());
    let mut input = BytesMut::from(&GREETING[..]);
    hs.handle_input(&mut input).unwrap();
    output(&mut hs);

    // EXTENDED_HEADERS refused: the client asks for STRUCTURED_REPLY.
    let mut input = reply(opt::EXTENDED_HEADERS, rep::ERR_UNSUP, b"no");
    assert_eq!(hs.handle_input(&mut input), Ok(ClientStatus::NeedMore));
    assert_eq!(&output(&mut hs)[..], &hex!("49484156454f5054 00000008 00000000"));

    // STRUCTURED_REPLY acked: SET_META_CONTEXT next.
    let mut input = reply(opt::STRUCTURED_REPLY, rep::ACK, &[]);
    hs.handle_input(&mut input).unwrap();
    assert_eq!(&output(&mut hs)[8..12], &hex!("0000000a"));

    // A context, then ACK: GO next, asking for BLOCK_SIZE.
    let mut input = reply(opt::SET_META_CONTEXT, rep::META_CONTEXT, b"\0\0\0\x05base:allocation");
    input.extend_from_slice(&reply(opt::SET_META_CONTEXT, rep::ACK, &[]));
    hs.handle_input(&mut input).unwrap();
    let go = hex!("49484156454f5054 00000007 0000000b 00000003 766f6c 0001 0003");
    assert_eq!(&output(&mut hs)[..], &go[..]);

    // GO unsupported: EXPORT_NAME, whose reply has no zeroes (both sides said NO_ZEROES).
    let mut input = reply(opt::GO, rep::ERR_UNSUP, &[]);
    hs.handle_input(&mut input).unwrap();
    assert_eq!(&output(&mut hs)[..], &hex!("49484156454f5054 00000001 00000003 766f6c"));
    let mut input = BytesMut::from(&hex!("0000000000001000 0003 aa")[..]);
    let status = hs.handle_input(&mut input).unwrap();
    let want = ClientNegotiated {
        size: 4096,
        flags: TransmissionFlags::HAS_FLAGS | TransmissionFlags::READ_ONLY,
        block_size: None,
        structured_replies: true,
        extended_headers: false,
        meta_contexts: vec![(5, "base:allocation".into())],
        description: None,
    };
    assert_eq!(status, ClientStatus::Done(want));
    assert_eq!(&input[..], &[0xaa], "transmission bytes are left alone");
}

#[test]
fn export_name_reply_waits_for_124_zeroes_without_no_zeroes() {
    let cfg = ClientConfig { export: "x".into(), ..Default::default() };
    let mut hs = ClientHandshake::new(cfg);
    let mut input = BytesMut::from(&hex!("4e42444d41474943 49484156454f5054 0001")[..]);
    hs.handle_input(&mut input).unwrap();
    assert_eq!(&output(&mut hs)[..4], &hex!("00000001"), "no NO_ZEROES if the server lacks it");
    let mut input = reply(opt::GO, rep::ERR_UNSUP, &[]);
    hs.handle_input(&mut input).unwrap();
    let mut input = BytesMut::from(&hex!("0000000000001000 0001")[..]);
    input.put_bytes(0, 123);
    assert_eq!(hs.handle_input(&mut input), Ok(ClientStatus::NeedMore));
    input.put_u8(0);
    assert!(matches!(hs.handle_input(&mut input), Ok(ClientStatus::Done(_))));
    assert!(input.is_empty());
}

#[test]
fn go_error_is_rejected_with_message() {
    let mut hs = ClientHandshake::new(ClientConfig::default());
    let mut input = BytesMut::from(&GREETING[..]);
    input.extend_from_slice(&reply(opt::GO, rep::ERR_UNKNOWN, b"unknown export"));
    let err = hs.handle_input(&mut input).unwrap_err();
    let want = HandshakeError::Rejected {
        option: opt::GO,
        reply_type: rep::ERR_UNKNOWN,
        message: "unknown export".into(),
    };
    assert_eq!(err, want);
}

#[test]
fn bad_greeting_and_old_servers_are_errors() {
    let mut hs = ClientHandshake::new(ClientConfig::default());
    let mut input = BytesMut::from(&hex!("4e42444d41474943 0000000000000000 0003")[..]);
    assert_eq!(hs.handle_input(&mut input), Err(HandshakeError::BadServerMagic(0)));
    let mut hs = ClientHandshake::new(ClientConfig::default());
    let mut input = BytesMut::from(&hex!("4e42444d41474943 49484156454f5054 0000")[..]);
    assert_eq!(hs.handle_input(&mut input), Err(HandshakeError::BadHandshakeFlags(0)));
}

#[test]
fn replies_for_the_wrong_option_or_too_long_are_errors() {
    let mut hs = ClientHandshake::new(ClientConfig::default());
    let mut input = BytesMut::from(&GREETING[..]);
    input.extend_from_slice(&reply(opt::LIST, rep::ACK, &[]));
    let err = hs.handle_input(&mut input).unwrap_err();
    assert_eq!(err, HandshakeError::UnexpectedReply { option: opt::LIST, reply_type: rep::ACK });

    let mut hs = ClientHandshake::new(ClientConfig::default());
    let mut input = BytesMut::from(&GREETING[..]);
    input.extend_from_slice(&hex!("0003e889045565a9 00000007 00000003 ffffffff"));
    let err = hs.handle_input(&mut input).unwrap_err();
    assert_eq!(err, HandshakeError::ReplyTooLong { len: u32::MAX, max: MAX_OPTION_LEN });
}

#[test]
fn go_ack_without_info_export_is_malformed() {
    let mut hs = ClientHandshake::new(ClientConfig::default());
    let mut input = BytesMut::from(&GREETING[..]);
    input.extend_from_slice(&reply(opt::GO, rep::ACK, &[]));
    assert!(matches!(hs.handle_input(&mut input), Err(HandshakeError::Malformed(_))));
}
