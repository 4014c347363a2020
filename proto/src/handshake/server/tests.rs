use bytes::{BufMut, BytesMut};
use hex_literal::hex;

use super::*;
use crate::fuzzing::FixedCatalog;
use crate::transmission::TransmissionFlags;

/// Client bytes: u32 client flags, then each option framed with IHAVEOPT.
fn client(flags: u32, options: &[(u32, &[u8])]) -> BytesMut {
    let mut b = BytesMut::new();
    b.put_u32(flags);
    for (o, data) in options {
        super::super::option::encode_option_request(&mut b, *o, data);
    }
    b
}

/// Runs a fresh server over `input`; returns the status and the output after the greeting.
fn run(
    config: ServerConfig,
    input: &mut BytesMut,
) -> (Result<HandshakeStatus, HandshakeError>, BytesMut) {
    let mut hs = ServerHandshake::new(config);
    let mut greeting = BytesMut::new();
    hs.take_output(&mut greeting);
    assert_eq!(greeting.len(), 18);
    let status = hs.handle_input(input, &FixedCatalog::sample());
    let mut out = BytesMut::new();
    hs.take_output(&mut out);
    (status, out)
}

fn done(status: Result<HandshakeStatus, HandshakeError>) -> Negotiated {
    match status {
        Ok(HandshakeStatus::Done(n)) => n,
        other => panic!("expected Done, got {other:?}"),
    }
}

#[test]
fn golden_greeting() {
    let wire = hex!(
        "4e42444d41474943" // NBDMAGIC ("NBDMAGIC")
        "49484156454f5054" // IHAVEOPT ("IHAVEOPT")
        "0003"             // handshake flags: FIXED_NEWSTYLE | NO_ZEROES
    );
    let mut out = BytesMut::new();
    ServerHandshake::new(ServerConfig::default()).take_output(&mut out);
    assert_eq!(&out[..], &wire[..]);
}

#[test]
fn golden_go_the_kernel_way() {
    // nbd-client: flags 0x3, GO with zero info requests.
    let mut input = client(0x3, &[(opt::GO, &hex!("00000003 766f6c 0000"))]);
    let (status, out) = run(ServerConfig::default(), &mut input);
    let wire = hex!(
        // REP_INFO, NBD_INFO_EXPORT
        "0003e889045565a9" // OPTION_REPLY_MAGIC
        "00000007"         // option: GO
        "00000003"         // reply type: INFO
        "0000000c"         // length 12
        "0000"             // info type: EXPORT
        "0000000004000000" // size 64 MiB
        "0d6d"             // flags: HAS_FLAGS|FLUSH|FUA|TRIM|WRITE_ZEROES|MULTI_CONN|CACHE|FAST_ZERO (no DF: no SR)
        // REP_INFO, NBD_INFO_BLOCK_SIZE (sent even unasked)
        "0003e889045565a9" // OPTION_REPLY_MAGIC
        "00000007"         // option: GO
        "00000003"         // reply type: INFO
        "0000000e"         // length 14
        "0003"             // info type: BLOCK_SIZE
        "00000001"         // minimum 1
        "00001000"         // preferred 4096
        "02000000"         // maximum 32 MiB
        // REP_ACK
        "0003e889045565a9" // OPTION_REPLY_MAGIC
        "00000007"         // option: GO
        "00000001"         // reply type: ACK
        "00000000"         // length 0
    );
    assert_eq!(&out[..], &wire[..]);
    let n = done(status);
    assert_eq!(n.export.flags.bits(), 0x0d6d);
    assert!(n.no_zeroes && !n.structured_replies && n.meta_contexts.is_empty());
    assert!(input.is_empty());
}

#[test]
fn golden_go_with_name_and_description() {
    // GO for the default export "", asking for NAME and DESCRIPTION.
    let mut input = client(0x3, &[(opt::GO, &hex!("00000000 0002 0001 0002"))]);
    let (status, out) = run(ServerConfig::default(), &mut input);
    let wire = hex!(
        "0003e889045565a9 00000007 00000003 0000000c" // REP_INFO to GO, length 12
        "0000 0000000004000000 0d6d"                  // EXPORT: size 64 MiB, flags
        "0003e889045565a9 00000007 00000003 00000005" // REP_INFO to GO, length 5
        "0001"                                        // info type: NAME
        "766f6c"                                      // "vol": the canonical name of ""
        "0003e889045565a9 00000007 00000003 0000000f" // REP_INFO to GO, length 15
        "0002"                                        // info type: DESCRIPTION
        "61207465737420766f6c756d65"                  // "a test volume"
        "0003e889045565a9 00000007 00000003 0000000e" // REP_INFO to GO, length 14
        "0003 00000001 00001000 02000000"             // BLOCK_SIZE: 1, 4096, 32 MiB
        "0003e889045565a9 00000007 00000001 00000000" // ACK
    );
    assert_eq!(&out[..], &wire[..]);
    assert_eq!(done(status).export.name, "vol");
}

#[test]
fn golden_export_name_with_zeroes() {
    // nbd-tester-client: flags 0x1 (no NO_ZEROES), EXPORT_NAME.
    let mut input = client(0x1, &[(opt::EXPORT_NAME, b"ro")]);
    let (status, out) = run(ServerConfig::default(), &mut input);
    let mut wire = hex!(
        "0000000000100000" // size 1 MiB (no option reply header!)
        "0007"             // flags: HAS_FLAGS | READ_ONLY | SEND_FLUSH
    )
    .to_vec();
    wire.extend_from_slice(&[0; 124]); // 124 zero bytes: the client did not set NO_ZEROES
    assert_eq!(&out[..], &wire[..]);
    assert!(!done(status).no_zeroes);
}

#[test]
fn golden_export_name_without_zeroes() {
    let mut input = client(0x3, &[(opt::EXPORT_NAME, b"ro")]);
    let (status, out) = run(ServerConfig::default(), &mut input);
    let wire = hex!(
        "0000000000100000" // size 1 MiB
        "0007"             // flags: HAS_FLAGS | READ_ONLY | SEND_FLUSH
    );
    assert_eq!(&out[..], &wire[..]);
    assert!(done(status).no_zeroes);
}

#[test]
fn golden_list() {
    let mut input = client(0x3, &[(opt::LIST, &[]), (opt::ABORT, &[])]);
    let (status, out) = run(ServerConfig::default(), &mut input);
    let wire = hex!(
        // REP_SERVER "vol"
        "0003e889045565a9"           // OPTION_REPLY_MAGIC
        "00000003"                   // option: LIST
        "00000002"                   // reply type: SERVER
        "00000014"                   // length 20
        "00000003"                   // name length 3
        "766f6c"                     // "vol"
        "61207465737420766f6c756d65"  // "a test volume"
        // REP_SERVER "ro"
        "0003e889045565a9 00000003 00000002 00000006" // header, length 6
        "00000002 726f"                               // name length 2, "ro", no description
        // REP_ACK to LIST
        "0003e889045565a9 00000003 00000001 00000000"
        // REP_ACK to ABORT
        "0003e889045565a9 00000002 00000001 00000000"
    );
    assert_eq!(&out[..], &wire[..]);
    assert_eq!(status, Ok(HandshakeStatus::Aborted));
}

#[test]
fn golden_unknown_option_gets_err_unsup_and_handshake_continues() {
    let mut input = client(0x3, &[(0x1234, b"xyz"), (opt::ABORT, &[])]);
    let (status, out) = run(ServerConfig::default(), &mut input);
    let mut wire = hex!(
        "0003e889045565a9" // OPTION_REPLY_MAGIC
        "00001234"         // option echoed
        "80000001"         // reply type: ERR_UNSUP
        "00000012"         // length 18: the message
    )
    .to_vec();
    wire.extend_from_slice(b"unsupported option");
    wire.extend_from_slice(&hex!("0003e889045565a9 00000002 00000001 00000000")); // ABORT ACK
    assert_eq!(out[..], wire[..]);
    assert_eq!(status, Ok(HandshakeStatus::Aborted));
}

#[test]
fn golden_set_meta_context() {
    let query =
        hex!("00000003 766f6c 00000002 0000000f 626173653a616c6c6f636174696f6e 00000004 782d613a");
    let mut input = client(
        0x3,
        &[
            (opt::STRUCTURED_REPLY, &[]),
            (opt::SET_META_CONTEXT, &query),
            (opt::GO, &hex!("00000003 766f6c 0000")),
        ],
    );
    let (status, out) = run(ServerConfig::default(), &mut input);
    let wire = hex!(
        "0003e889045565a9 00000008 00000001 00000000" // ACK to STRUCTURED_REPLY
        // REP_META_CONTEXT: only "base:allocation" matches; "x-a:" is ignored
        "0003e889045565a9"               // OPTION_REPLY_MAGIC
        "0000000a"                       // option: SET_META_CONTEXT
        "00000004"                       // reply type: META_CONTEXT
        "00000013"                       // length 19
        "00000001"                       // context id 1
        "626173653a616c6c6f636174696f6e" // "base:allocation"
        "0003e889045565a9 0000000a 00000001 00000000" // ACK
    );
    assert_eq!(&out[..wire.len()], &wire[..]);
    let n = done(status);
    assert_eq!(n.meta_contexts, vec![(1, MetaContext::BaseAllocation)]);
    assert!(n.structured_replies);
    assert_eq!(n.export.flags.bits(), 0x0ded, "DF is kept with structured replies");
}

#[test]
fn list_meta_context_matches_namespace_with_id_zero() {
    for query in
        [&hex!("00000000 00000001 00000005 626173653a")[..], &hex!("00000000 00000000")[..]]
    {
        let mut input =
            client(0x3, &[(opt::STRUCTURED_REPLY, &[]), (opt::LIST_META_CONTEXT, query)]);
        let (status, out) = run(ServerConfig::default(), &mut input);
        assert_eq!(status, Ok(HandshakeStatus::NeedMore));
        let want = hex!(
            "0003e889045565a9 00000009 00000004 00000013 00000000 626173653a616c6c6f636174696f6e"
        );
        assert_eq!(&out[20..20 + want.len()], &want[..]);
    }
}

#[test]
fn meta_context_needs_structured_replies() {
    let query = hex!("00000000 00000000");
    let mut input = client(0x3, &[(opt::SET_META_CONTEXT, &query)]);
    let (status, out) = run(ServerConfig::default(), &mut input);
    assert_eq!(status, Ok(HandshakeStatus::NeedMore));
    assert_eq!(&out[8..16], &hex!("0000000a 80000003")); // SET_META_CONTEXT, ERR_INVALID
}

#[test]
fn meta_selection_for_another_export_is_dropped() {
    let query = hex!("00000002 726f 00000001 0000000f 626173653a616c6c6f636174696f6e");
    let mut input = client(
        0x3,
        &[
            (opt::STRUCTURED_REPLY, &[]),
            (opt::SET_META_CONTEXT, &query),
            (opt::GO, &hex!("00000003 766f6c 0000")),
        ],
    );
    let (status, _) = run(ServerConfig::default(), &mut input);
    assert!(done(status).meta_contexts.is_empty());
}

#[test]
fn info_stays_go_finishes_and_leftover_input_is_kept() {
    let mut input = client(
        0x3,
        &[(opt::INFO, &hex!("00000002 726f 0000")), (opt::GO, &hex!("00000002 726f 0000"))],
    );
    input.extend_from_slice(&hex!("25609513")); // first bytes of a transmission request
    let (status, out) = run(ServerConfig::default(), &mut input);
    assert_eq!(done(status).export.name, "ro");
    assert_eq!(&input[..], &hex!("25609513"));
    assert_eq!(out.len(), 2 * (32 + 34 + 20));
}

#[test]
fn unknown_export_on_go_is_err_unknown() {
    let mut input = client(0x3, &[(opt::GO, &hex!("00000004 6e6f7065 0000"))]);
    let (status, out) = run(ServerConfig::default(), &mut input);
    assert_eq!(status, Ok(HandshakeStatus::NeedMore));
    assert_eq!(&out[8..16], &hex!("00000007 80000006")); // GO, ERR_UNKNOWN
    assert_eq!(&out[20..], b"unknown export \"nope\"");
}

#[test]
fn malformed_go_is_err_invalid_and_continues() {
    let mut input =
        client(0x3, &[(opt::GO, &hex!("00000003 766f6c 0001")), (opt::GO, &hex!("00000000 0000"))]);
    let (status, out) = run(ServerConfig::default(), &mut input);
    assert_eq!(&out[8..16], &hex!("00000007 80000003")); // GO, ERR_INVALID
    done(status);
}

#[test]
fn unknown_export_on_export_name_disconnects() {
    let mut input = client(0x3, &[(opt::EXPORT_NAME, b"nope")]);
    let (status, out) = run(ServerConfig::default(), &mut input);
    assert_eq!(status, Err(HandshakeError::UnknownExport));
    assert!(out.is_empty());
}

#[test]
fn bad_client_flags_disconnect() {
    for flags in [0x0, 0x2, 0x4, 0x8000_0001] {
        let mut input = client(flags, &[]);
        let (status, _) = run(ServerConfig::default(), &mut input);
        assert_eq!(status, Err(HandshakeError::BadClientFlags(flags)));
    }
}

#[test]
fn huge_option_is_rejected_from_its_header() {
    let mut input = BytesMut::new();
    input.put_u32(0x3);
    input.put_slice(&hex!("49484156454f5054 00000007 ffffffff")); // GO with 4 GiB of data
    let (status, _) = run(ServerConfig::default(), &mut input);
    assert_eq!(status, Err(HandshakeError::OptionTooLong { len: u32::MAX, max: MAX_OPTION_LEN }));
}

#[test]
fn bad_option_magic_disconnects() {
    let mut input = BytesMut::from(&hex!("00000003 0000000000000000 00000007 00000000")[..]);
    let (status, _) = run(ServerConfig::default(), &mut input);
    assert_eq!(status, Err(HandshakeError::BadOptionMagic(0)));
}

#[test]
fn extended_headers_forbid_export_name() {
    let mut input = client(0x3, &[(opt::EXTENDED_HEADERS, &[]), (opt::EXPORT_NAME, b"vol")]);
    let (status, _) = run(ServerConfig::default(), &mut input);
    assert_eq!(status, Err(HandshakeError::ExportNameAfterExtendedHeaders));
}

#[test]
fn extended_headers_can_be_disabled() {
    let config = ServerConfig { allow_extended_headers: false, ..Default::default() };
    let mut input = client(0x3, &[(opt::EXTENDED_HEADERS, &[]), (opt::GO, &hex!("00000000 0000"))]);
    let (status, out) = run(config, &mut input);
    assert_eq!(&out[8..16], &hex!("0000000b 80000001")); // EXTENDED_HEADERS, ERR_UNSUP
    let n = done(status);
    assert!(!n.extended_headers && !n.structured_replies);
    assert!(!n.export.flags.contains(TransmissionFlags::SEND_DF));
}

#[test]
fn starttls_is_unsupported() {
    let mut input = client(0x3, &[(opt::STARTTLS, &[])]);
    let (status, out) = run(ServerConfig::default(), &mut input);
    assert_eq!(status, Ok(HandshakeStatus::NeedMore));
    assert_eq!(&out[8..16], &hex!("00000005 80000001"));
}

#[test]
fn handle_input_after_done_is_an_error() {
    let mut hs = ServerHandshake::new(ServerConfig::default());
    let catalog = FixedCatalog::sample();
    let mut input = client(0x3, &[(opt::GO, &hex!("00000000 0000"))]);
    done(hs.handle_input(&mut input, &catalog));
    assert_eq!(hs.handle_input(&mut input, &catalog), Err(HandshakeError::Finished));
}

#[test]
fn byte_at_a_time_input_gives_the_same_result() {
    let whole =
        client(0x3, &[(opt::STRUCTURED_REPLY, &[]), (opt::GO, &hex!("00000003 766f6c 0000"))]);
    let mut hs = ServerHandshake::new(ServerConfig::default());
    let catalog = FixedCatalog::sample();
    let mut input = BytesMut::new();
    let mut last = Ok(HandshakeStatus::NeedMore);
    for &b in whole.iter() {
        input.put_u8(b);
        last = hs.handle_input(&mut input, &catalog);
    }
    assert!(done(last).structured_replies);
}
