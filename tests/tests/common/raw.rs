//! Raw-socket NBD helpers for tests that must control every byte.
// Test buffers are a few MiB at most: their lengths always fit the wire's u32.
#![allow(clippy::cast_possible_truncation)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

pub fn greet(s: &mut TcpStream) -> anyhow::Result<()> {
    let mut g = [0u8; 18];
    s.read_exact(&mut g)?;
    assert_eq!(&g[..8], b"NBDMAGIC");
    assert_eq!(&g[8..16], b"IHAVEOPT");
    assert_eq!(u16::from_be_bytes([g[16], g[17]]) & 1, 1, "fixed newstyle");
    Ok(())
}

pub fn option(s: &mut TcpStream, opt: u32, data: &[u8]) -> anyhow::Result<()> {
    let mut m = Vec::new();
    m.extend_from_slice(b"IHAVEOPT");
    m.extend_from_slice(&opt.to_be_bytes());
    m.extend_from_slice(&(data.len() as u32).to_be_bytes());
    m.extend_from_slice(data);
    s.write_all(&m)?;
    Ok(())
}

/// Reads one option reply: (option, type, payload).
pub fn reply(s: &mut TcpStream) -> anyhow::Result<(u32, u32, Vec<u8>)> {
    let mut h = [0u8; 20];
    s.read_exact(&mut h)?;
    assert_eq!(u64::from_be_bytes(h[..8].try_into()?), 0x0003_e889_0455_65a9);
    let opt = u32::from_be_bytes(h[8..12].try_into()?);
    let ty = u32::from_be_bytes(h[12..16].try_into()?);
    let len = u32::from_be_bytes(h[16..20].try_into()?) as usize;
    let mut p = vec![0; len];
    s.read_exact(&mut p)?;
    Ok((opt, ty, p))
}

pub fn request(
    s: &mut TcpStream,
    flags: u16,
    kind: u16,
    cookie: u64,
    offset: u64,
    len: u32,
    data: &[u8],
) -> anyhow::Result<()> {
    let mut m = Vec::new();
    m.extend_from_slice(&0x2560_9513u32.to_be_bytes());
    m.extend_from_slice(&flags.to_be_bytes());
    m.extend_from_slice(&kind.to_be_bytes());
    m.extend_from_slice(&cookie.to_be_bytes());
    m.extend_from_slice(&offset.to_be_bytes());
    m.extend_from_slice(&len.to_be_bytes());
    m.extend_from_slice(data);
    s.write_all(&m)?;
    Ok(())
}

pub fn simple_reply(s: &mut TcpStream) -> anyhow::Result<(u32, u64)> {
    let mut r = [0u8; 16];
    s.read_exact(&mut r)?;
    assert_eq!(u32::from_be_bytes(r[..4].try_into()?), 0x6744_6698, "simple reply magic");
    Ok((u32::from_be_bytes(r[4..8].try_into()?), u64::from_be_bytes(r[8..16].try_into()?)))
}

/// Connects, negotiates GO for `export` with structured replies off (the
/// kernel's way) and returns the socket in transmission.
pub fn connect_simple(addr: std::net::SocketAddr, export: &str) -> anyhow::Result<TcpStream> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    greet(&mut s)?;
    s.write_all(&3u32.to_be_bytes())?;
    let mut go = Vec::new();
    go.extend_from_slice(&(export.len() as u32).to_be_bytes());
    go.extend_from_slice(export.as_bytes());
    go.extend_from_slice(&0u16.to_be_bytes());
    option(&mut s, 7, &go)?;
    loop {
        let (_, ty, _) = reply(&mut s)?;
        match ty {
            1 => return Ok(s),
            3 => {}
            other => anyhow::bail!("GO for {export} failed with reply type {other:#x}"),
        }
    }
}

/// True once the server has closed the connection (EOF or reset).
pub fn closed_by_server(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 1];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return false;
            }
            Err(_) => return true,
        }
    }
}

/// A fresh connection still reads: the server survived whatever came before.
pub fn assert_server_healthy(addr: std::net::SocketAddr) -> anyhow::Result<()> {
    let mut s = connect_simple(addr, "default")?;
    request(&mut s, 0, 0, 77, 0, 4096, &[])?;
    assert_eq!(simple_reply(&mut s)?, (0, 77));
    let mut d = vec![0u8; 4096];
    s.read_exact(&mut d)?;
    Ok(())
}
