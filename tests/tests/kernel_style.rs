//! The kernel client's handshake, byte for byte: flags 0x3, GO with zero
//! info requests; and old clients' EXPORT_NAME with and without NO_ZEROES.
//! Driven with raw sockets since no kernel client can attach here.
// Test buffers are a few MiB at most: their lengths always fit the wire's u32.
#![allow(clippy::cast_possible_truncation)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::TestServer;
use common::raw::{greet, option, reply, request, simple_reply};

#[test]
fn kernel_go_with_no_info_requests_then_simple_io() -> anyhow::Result<()> {
    let server = TestServer::start()?;
    let mut s = TcpStream::connect(server.nbd)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    greet(&mut s)?;
    s.write_all(&3u32.to_be_bytes())?;
    // GO: u32 namelen, name, u16 zero info requests.
    let mut go = Vec::new();
    go.extend_from_slice(&7u32.to_be_bytes());
    go.extend_from_slice(b"default");
    go.extend_from_slice(&0u16.to_be_bytes());
    option(&mut s, 7, &go)?;
    let mut saw_export = false;
    loop {
        let (opt, ty, p) = reply(&mut s)?;
        assert_eq!(opt, 7);
        match ty {
            3 => {
                if u16::from_be_bytes([p[0], p[1]]) == 0 {
                    assert_eq!(p.len(), 12);
                    assert_eq!(u64::from_be_bytes(p[2..10].try_into()?), 10 << 30);
                    let flags = u16::from_be_bytes([p[10], p[11]]);
                    assert_eq!(flags & 0x0001, 1, "HAS_FLAGS");
                    assert_eq!(flags & 0x0080, 0, "DF must be clear without structured replies");
                    assert_ne!(flags & 0x0100, 0, "CAN_MULTI_CONN");
                    saw_export = true;
                }
            }
            1 => break,
            other => panic!("unexpected reply type {other:#x}"),
        }
    }
    assert!(saw_export, "INFO_EXPORT is mandatory before ACK");
    // WRITE with FUA, FLUSH, READ — simple replies, data after the header.
    let data = vec![0x42u8; 131072];
    request(&mut s, 1, 1, 1, 4096, data.len() as u32, &data)?;
    assert_eq!(simple_reply(&mut s)?, (0, 1));
    request(&mut s, 0, 3, 2, 0, 0, &[])?;
    assert_eq!(simple_reply(&mut s)?, (0, 2));
    request(&mut s, 0, 0, 3, 4096, data.len() as u32, &[])?;
    assert_eq!(simple_reply(&mut s)?, (0, 3));
    let mut back = vec![0u8; data.len()];
    s.read_exact(&mut back)?;
    assert!(back == data);
    // TRIM of ~1 GiB as mkfs sends it, then the range reads as zeroes.
    request(&mut s, 0, 4, 4, 0, 1 << 30, &[])?;
    assert_eq!(simple_reply(&mut s)?, (0, 4));
    request(&mut s, 0, 0, 5, 4096, 4096, &[])?;
    assert_eq!(simple_reply(&mut s)?, (0, 5));
    let mut z = vec![1u8; 4096];
    s.read_exact(&mut z)?;
    assert!(z.iter().all(|b| *b == 0));
    request(&mut s, 0, 2, 6, 0, 0, &[])?; // DISC
    let mut rest = Vec::new();
    s.read_to_end(&mut rest)?;
    assert!(rest.is_empty(), "no reply to DISC");
    Ok(())
}

#[test]
fn export_name_with_and_without_no_zeroes() -> anyhow::Result<()> {
    let server = TestServer::start()?;
    for (client_flags, zeroes) in [(3u32, 0usize), (1, 124)] {
        let mut s = TcpStream::connect(server.nbd)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        greet(&mut s)?;
        s.write_all(&client_flags.to_be_bytes())?;
        option(&mut s, 1, b"default")?;
        let mut r = vec![0u8; 10 + zeroes];
        s.read_exact(&mut r)?;
        assert_eq!(u64::from_be_bytes(r[..8].try_into()?), 10 << 30);
        assert!(r[10..].iter().all(|b| *b == 0));
        // The next bytes are a reply to our request, not padding.
        request(&mut s, 0, 0, 9, 0, 512, &[])?;
        assert_eq!(simple_reply(&mut s)?, (0, 9));
    }
    Ok(())
}
