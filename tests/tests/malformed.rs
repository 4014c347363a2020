//! Acceptance 6: malformed input, each its own test. Every case gets the
//! spec's reply or a closed connection; other connections keep working; the
//! server never panics (it would exit, and the health check would fail).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::TestServer;
use common::raw::{
    assert_server_healthy, closed_by_server, connect_simple, greet, option, reply, request,
    simple_reply,
};

const EINVAL: u32 = 22;
const ENOSPC: u32 = 28;
const EPERM: u32 = 1;

fn raw(server: &TestServer) -> anyhow::Result<TcpStream> {
    let s = TcpStream::connect(server.nbd)?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    Ok(s)
}

#[test]
fn bad_option_magic_closes_the_connection() -> anyhow::Result<()> {
    let server = TestServer::start()?;
    let mut s = raw(&server)?;
    greet(&mut s)?;
    s.write_all(&3u32.to_be_bytes())?;
    s.write_all(b"NOTMAGIC\0\0\0\x03\0\0\0\0")?;
    assert!(closed_by_server(&mut s));
    assert_server_healthy(server.nbd)
}

#[test]
fn bad_request_magic_closes_the_connection() -> anyhow::Result<()> {
    let server = TestServer::start()?;
    let mut s = connect_simple(server.nbd, "default")?;
    s.write_all(&[0xde, 0xad, 0xbe, 0xef].repeat(7))?;
    assert!(closed_by_server(&mut s));
    assert_server_healthy(server.nbd)
}

#[test]
fn unknown_client_flags_close_the_connection() -> anyhow::Result<()> {
    let server = TestServer::start()?;
    let mut s = raw(&server)?;
    greet(&mut s)?;
    s.write_all(&0x8000_0003u32.to_be_bytes())?;
    assert!(closed_by_server(&mut s));
    assert_server_healthy(server.nbd)
}

#[test]
fn unknown_option_gets_err_unsup_and_the_handshake_goes_on() -> anyhow::Result<()> {
    let server = TestServer::start()?;
    let mut s = raw(&server)?;
    greet(&mut s)?;
    s.write_all(&3u32.to_be_bytes())?;
    option(&mut s, 0x4242, b"whatever")?;
    let (opt, ty, _) = reply(&mut s)?;
    assert_eq!((opt, ty), (0x4242, 0x8000_0001));
    option(&mut s, 3, &[])?; // LIST still works
    loop {
        let (_, ty, _) = reply(&mut s)?;
        if ty == 1 {
            break;
        }
        assert_eq!(ty, 2);
    }
    Ok(())
}

#[test]
fn oversize_option_closes_without_buffering_it() -> anyhow::Result<()> {
    let server = TestServer::start()?;
    let mut s = raw(&server)?;
    greet(&mut s)?;
    s.write_all(&3u32.to_be_bytes())?;
    // Announce 1 GiB of option data and send only the header.
    let mut m = b"IHAVEOPT".to_vec();
    m.extend_from_slice(&7u32.to_be_bytes());
    m.extend_from_slice(&(1u32 << 30).to_be_bytes());
    s.write_all(&m)?;
    assert!(closed_by_server(&mut s));
    assert_server_healthy(server.nbd)
}

#[test]
fn write_larger_than_32_mib_closes_the_connection() -> anyhow::Result<()> {
    let server = TestServer::start()?;
    let mut s = connect_simple(server.nbd, "default")?;
    request(&mut s, 0, 1, 1, 0, (32 << 20) + 1, &[])?;
    assert!(closed_by_server(&mut s));
    assert_server_healthy(server.nbd)
}

#[test]
fn truncated_payload_closes_only_that_connection() -> anyhow::Result<()> {
    let server = TestServer::start()?;
    let mut other = connect_simple(server.nbd, "default")?;
    let mut s = connect_simple(server.nbd, "default")?;
    request(&mut s, 0, 1, 1, 0, 65536, &[7u8; 1000])?;
    s.shutdown(std::net::Shutdown::Write)?;
    assert!(closed_by_server(&mut s));
    // The other connection, opened before, still works.
    request(&mut other, 0, 0, 2, 0, 512, &[])?;
    assert_eq!(simple_reply(&mut other)?, (0, 2));
    let mut d = [0u8; 512];
    other.read_exact(&mut d)?;
    assert!(d.iter().all(|b| *b == 0), "the truncated write must not have landed");
    Ok(())
}

#[test]
fn out_of_range_requests_get_einval_or_enospc() -> anyhow::Result<()> {
    let server = TestServer::start()?;
    let size: u64 = 10 << 30;
    let mut s = connect_simple(server.nbd, "default")?;
    request(&mut s, 0, 0, 1, size - 512, 1024, &[])?; // READ past the end
    assert_eq!(simple_reply(&mut s)?, (EINVAL, 1));
    request(&mut s, 0, 1, 2, size, 512, &[1u8; 512])?; // WRITE past the end
    assert_eq!(simple_reply(&mut s)?, (ENOSPC, 2));
    request(&mut s, 0, 4, 3, size - 4096, 8192, &[])?; // TRIM past the end
    assert_eq!(simple_reply(&mut s)?, (EINVAL, 3));
    request(&mut s, 0, 0, 4, u64::MAX - 100, 512, &[])?; // offset overflow
    assert_eq!(simple_reply(&mut s)?, (EINVAL, 4));
    // The connection keeps going.
    request(&mut s, 0, 0, 5, 0, 512, &[])?;
    assert_eq!(simple_reply(&mut s)?, (0, 5));
    Ok(())
}

#[test]
fn unknown_command_gets_einval() -> anyhow::Result<()> {
    let server = TestServer::start()?;
    let mut s = connect_simple(server.nbd, "default")?;
    request(&mut s, 0, 42, 1, 0, 0, &[])?;
    assert_eq!(simple_reply(&mut s)?, (EINVAL, 1));
    request(&mut s, 0, 3, 2, 0, 0, &[])?;
    assert_eq!(simple_reply(&mut s)?, (0, 2));
    Ok(())
}

#[test]
fn unknown_command_flags_get_einval() -> anyhow::Result<()> {
    let server = TestServer::start()?;
    let mut s = connect_simple(server.nbd, "default")?;
    request(&mut s, 0x0400, 0, 1, 0, 512, &[])?;
    assert_eq!(simple_reply(&mut s)?, (EINVAL, 1));
    // DF without structured replies is not allowed either.
    request(&mut s, 0x0004, 0, 2, 0, 512, &[])?;
    assert_eq!(simple_reply(&mut s)?, (EINVAL, 2));
    Ok(())
}

#[test]
fn write_to_a_snapshot_export_gets_eperm() -> anyhow::Result<()> {
    let server = TestServer::start()?;
    server.cli_ok(&["snapshot", "create", "default", "--name", "frozen"])?;
    let mut s = connect_simple(server.nbd, "default@frozen")?;
    request(&mut s, 0, 1, 1, 0, 512, &[9u8; 512])?;
    assert_eq!(simple_reply(&mut s)?, (EPERM, 1));
    request(&mut s, 0, 4, 2, 0, 65536, &[])?;
    assert_eq!(simple_reply(&mut s)?, (EPERM, 2));
    request(&mut s, 0, 6, 3, 0, 65536, &[])?;
    assert_eq!(simple_reply(&mut s)?, (EPERM, 3));
    Ok(())
}

#[test]
fn a_client_that_never_finishes_the_handshake_is_dropped() -> anyhow::Result<()> {
    let server = TestServer::start_with(&["--handshake-timeout", "1"])?;
    let mut s = raw(&server)?;
    greet(&mut s)?;
    // Say nothing; the server must hang up by itself.
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let start = std::time::Instant::now();
    assert!(closed_by_server(&mut s));
    assert!(start.elapsed() < Duration::from_secs(9));
    assert_server_healthy(server.nbd)
}

#[test]
fn unknown_export_on_go_gets_err_unknown() -> anyhow::Result<()> {
    let server = TestServer::start()?;
    let mut s = raw(&server)?;
    greet(&mut s)?;
    s.write_all(&3u32.to_be_bytes())?;
    let mut go = Vec::new();
    go.extend_from_slice(&4u32.to_be_bytes());
    go.extend_from_slice(b"nope");
    go.extend_from_slice(&0u16.to_be_bytes());
    option(&mut s, 7, &go)?;
    let (_, ty, _) = reply(&mut s)?;
    assert_eq!(ty, 0x8000_0006);
    Ok(())
}
