//! Property tests: round trips, and no panic or unbounded buffering on
//! arbitrary peer bytes.

use bytes::{BufMut, BytesMut};
use clonebd_proto::fuzzing;
use clonebd_proto::{
    BlockExtent, Command, CommandFlags, Cookie, HandshakeError, IHAVEOPT, Request, ServerConfig,
    ServerHandshake, decode_request, encode_block_status, encode_error_chunk, encode_request,
    parse_block_status, parse_error_chunk, parse_offset_data, parse_offset_hole, peek_reply_header,
    peek_request_header, request_header_len,
};
use proptest::collection::vec;
use proptest::prelude::*;

fn command(extended: bool) -> impl Strategy<Value = Command> {
    let len = if extended { any::<u64>().boxed() } else { (0..=u64::from(u32::MAX)).boxed() };
    let range = (any::<u64>(), len);
    prop_oneof![
        range.clone().prop_map(|(offset, length)| Command::Read { offset, length }),
        (any::<u64>(), vec(any::<u8>(), 0..64))
            .prop_map(|(offset, d)| Command::Write { offset, data: d.into() }),
        Just(Command::Disconnect),
        range.clone().prop_map(|(offset, length)| Command::Flush { offset, length }),
        range.clone().prop_map(|(offset, length)| Command::Trim { offset, length }),
        range.clone().prop_map(|(offset, length)| Command::Cache { offset, length }),
        range.clone().prop_map(|(offset, length)| Command::WriteZeroes { offset, length }),
        range.clone().prop_map(|(offset, length)| Command::BlockStatus { offset, length }),
        (8u16.., range).prop_map(|(kind, (offset, length))| Command::Unknown {
            kind,
            offset,
            length
        }),
    ]
}

fn request(extended: bool) -> impl Strategy<Value = Request> {
    (any::<u64>(), any::<u16>(), command(extended)).prop_map(|(cookie, flags, command)| Request {
        cookie: Cookie(cookie),
        // PAYLOAD_LEN is framing: the encoder sets it, the decoder strips it.
        flags: CommandFlags::from_bits_retain(flags) - CommandFlags::PAYLOAD_LEN,
        command,
    })
}

fn round_trip(reqs: Vec<Request>, extended: bool) -> Result<(), TestCaseError> {
    let mut buf = BytesMut::new();
    for r in &reqs {
        encode_request(&mut buf, r, extended);
    }
    // Every strict prefix of the first request decodes to "need more".
    let mut probe = BytesMut::new();
    encode_request(&mut probe, &reqs[0], extended);
    for cut in 0..probe.len() {
        let mut part = BytesMut::from(&probe[..cut]);
        prop_assert_eq!(decode_request(&mut part, extended, 64), Ok(None));
        prop_assert_eq!(part.len(), cut);
    }
    for r in reqs {
        prop_assert_eq!(decode_request(&mut buf, extended, 64), Ok(Some(r)));
    }
    prop_assert!(buf.is_empty());
    Ok(())
}

proptest! {
    /// A server may read a WRITE's payload itself (into buffers of its own):
    /// the header plus that payload is the same request the decoder gives.
    #[test]
    fn write_from_header_and_own_payload_equals_decoded(
        cookie: u64, flags: u16, offset: u64, data in vec(any::<u8>(), 0..64), extended: bool,
    ) {
        let flags = CommandFlags::from_bits_retain(flags) - CommandFlags::PAYLOAD_LEN;
        let data = bytes::Bytes::from(data);
        let command = Command::Write { offset, data: data.clone() };
        let req = Request { cookie: Cookie(cookie), flags, command };
        let mut buf = BytesMut::new();
        encode_request(&mut buf, &req, extended);
        let hdr = peek_request_header(&buf, extended).unwrap().unwrap();
        let payload = buf.split_off(request_header_len(extended)).freeze();
        prop_assert_eq!(&payload, &data);
        let mut whole: BytesMut = buf.iter().chain(payload.iter()).copied().collect();
        let decoded = decode_request(&mut whole, extended, 64);
        let own = hdr.into_write(extended, payload.clone());
        prop_assert_eq!(own.clone(), decoded.unwrap());
        prop_assert_eq!(own, Some(req));
        // a payload of the wrong length or a header of another command is refused
        let mut longer = payload.to_vec();
        longer.push(0);
        prop_assert!(hdr.into_write(extended, longer.into()).is_none());
        let read = clonebd_proto::RequestHeader { kind: 0, ..hdr };
        prop_assert!(read.into_write(extended, payload).is_none());
    }

    #[test]
    fn compact_requests_round_trip(reqs in vec(request(false), 1..8)) {
        round_trip(reqs, false)?;
    }

    #[test]
    fn extended_requests_round_trip(reqs in vec(request(true), 1..8)) {
        round_trip(reqs, true)?;
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_decoders(data in vec(any::<u8>(), 0..256)) {
        fuzzing::request_decode(&data);
        for extended in [false, true] {
            let _ = peek_reply_header(&data, extended);
            let _ = parse_offset_data(&data, extended);
            let _ = parse_offset_hole(&data, extended);
            let _ = parse_block_status(&data, extended);
        }
        let _ = parse_error_chunk(&data);
    }

    #[test]
    fn request_like_bytes_never_panic(
        magic in prop_oneof![Just(0x2560_9513u32), Just(0x21e4_1c71u32)],
        rest in vec(any::<u8>(), 0..128),
    ) {
        let mut data = magic.to_be_bytes().to_vec();
        data.extend(rest);
        fuzzing::request_decode(&data);
    }

    #[test]
    fn arbitrary_handshake_input_never_panics_or_overbuffers(data in vec(any::<u8>(), 0..512)) {
        fuzzing::server_handshake(&data);
    }

    #[test]
    fn well_framed_random_options_never_panic_or_overbuffer(
        options in vec((0u32..14, vec(any::<u8>(), 0..64)), 0..12),
        step in 1u8..40,
    ) {
        // Piece size, then client flags FIXED_NEWSTYLE | NO_ZEROES.
        let mut data = vec![step, 0, 0, 0, 3];
        for (o, d) in options {
            data.extend_from_slice(&IHAVEOPT.to_be_bytes());
            data.extend_from_slice(&o.to_be_bytes());
            data.extend_from_slice(&u32::try_from(d.len()).unwrap().to_be_bytes());
            data.extend(d);
        }
        fuzzing::server_handshake(&data);
    }

    #[test]
    fn huge_option_lengths_are_refused_before_buffering(max in 0u32..100_000, extra in 1u32..1000) {
        let len = max.saturating_add(extra);
        let mut hs = ServerHandshake::new(ServerConfig { max_option_len: max, ..Default::default() });
        let mut input = BytesMut::new();
        input.put_u32(3);
        input.put_u64(IHAVEOPT);
        input.put_u32(7);
        input.put_u32(len);
        let got = hs.handle_input(&mut input, &fuzzing::FixedCatalog::sample());
        prop_assert_eq!(got, Err(HandshakeError::OptionTooLong { len, max }));
    }

    #[test]
    fn block_status_round_trips(
        extended: bool,
        id: u32,
        extents in vec((1u64..=u64::from(u32::MAX), any::<u32>()), 1..16),
    ) {
        let extents: Vec<_> = extents.into_iter().map(|(length, flags)| BlockExtent { length, flags }).collect();
        let mut buf = BytesMut::new();
        encode_block_status(&mut buf, extended, true, Cookie(1), 0, id, &extents);
        let (_, hdr_len) = peek_reply_header(&buf, extended).unwrap().unwrap();
        prop_assert_eq!(parse_block_status(&buf[hdr_len..], extended), Ok((id, extents)));
    }

    #[test]
    fn error_chunks_round_trip(extended: bool, errno: u32, message in ".{0,40}") {
        let mut buf = BytesMut::new();
        encode_error_chunk(&mut buf, extended, true, Cookie(1), 0, errno, &message);
        let (_, hdr_len) = peek_reply_header(&buf, extended).unwrap().unwrap();
        prop_assert_eq!(parse_error_chunk(&buf[hdr_len..]), Ok((errno, message, None)));
    }
}
