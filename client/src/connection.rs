//! The client's reader task: decodes replies (simple, structured, extended)
//! from a `BytesMut`, assembles multi-chunk READ and BLOCK_STATUS replies,
//! and completes the waiting request by cookie.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use proto::{BlockExtent, Command, Cookie, ReplyHeader, Request, chunk, cmd};
use tokio::io::AsyncReadExt;
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::oneshot;

use crate::error::ClientError;

/// What a successful reply carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyData {
    /// No payload (WRITE, FLUSH, TRIM, ...).
    None,
    /// READ data, holes filled with zeroes.
    Read(Bytes),
    /// BLOCK_STATUS extents of the selected context.
    BlockStatus(Vec<BlockExtent>),
}

struct Waiting {
    tx: oneshot::Sender<Result<ReplyData, ClientError>>,
    kind: u16,
    offset: u64,
    length: u64,
    data: Option<BytesMut>,
    extents: Vec<BlockExtent>,
    error: Option<ClientError>,
}

/// Requests waiting for replies.
pub(crate) struct Pending {
    map: HashMap<u64, Waiting>,
    extended: bool,
    pub(crate) closed: bool,
}

impl Pending {
    pub(crate) fn new(extended: bool) -> Self {
        Self { map: HashMap::new(), extended, closed: false }
    }

    pub(crate) fn insert(
        &mut self,
        cookie: Cookie,
        req: &Request,
        tx: oneshot::Sender<Result<ReplyData, ClientError>>,
    ) {
        let (offset, length) = match req.command {
            Command::Read { offset, length } => (offset, length),
            Command::BlockStatus { offset, length } => (offset, length),
            _ => (0, 0),
        };
        self.map.insert(
            cookie.0,
            Waiting {
                tx,
                kind: req.kind(),
                offset,
                length,
                data: None,
                extents: Vec::new(),
                error: None,
            },
        );
    }

    /// The request a reply chunk answers.
    fn chunk_target(&mut self, cookie: Cookie) -> Result<&mut Waiting, ClientError> {
        self.map.get_mut(&cookie.0).ok_or(ClientError::Unexpected("chunk for unknown cookie"))
    }

    /// Answers the request whose last chunk (DONE) arrived.
    fn complete(&mut self, cookie: Cookie) {
        if let Some(w) = self.map.remove(&cookie.0) {
            let _ = w.tx.send(finish(w.kind, w.data, w.extents, w.error));
        }
    }

    fn fail_all(&mut self) {
        self.closed = true;
        for (_, w) in self.map.drain() {
            let _ = w.tx.send(Err(ClientError::Closed));
        }
    }
}

/// Largest reply payload we buffer: a 32 MiB READ plus chunk overhead.
const MAX_REPLY: u32 = 32 << 20;

/// Reads replies until EOF or a protocol error, then fails whatever waits.
pub(crate) async fn read_replies(
    mut rd: OwnedReadHalf,
    mut buf: BytesMut,
    pending: Arc<Mutex<Pending>>,
) {
    let extended = pending.lock().map(|p| p.extended).unwrap_or(false);
    let _ = run(&mut rd, &mut buf, &pending, extended).await;
    if let Ok(mut p) = pending.lock() {
        p.fail_all();
    }
}

async fn need(rd: &mut OwnedReadHalf, buf: &mut BytesMut, n: usize) -> Result<(), ClientError> {
    while buf.len() < n {
        buf.reserve(n - buf.len());
        if rd.read_buf(buf).await? == 0 {
            return Err(ClientError::Closed);
        }
    }
    Ok(())
}

/// Where READ data starts in its buffer. The kernel's copy into user memory
/// (`recv`) runs 4-5 times slower when the destination lies 1-63 bytes past
/// the source modulo 4 KiB, and glibc puts a large allocation 16 bytes past
/// a page (the server's `IoBuf` has the numbers).
const DATA_ALIGN: usize = 64;

/// An empty buffer with room for `len` bytes that starts on a `DATA_ALIGN`
/// boundary.
fn read_buffer(len: usize) -> BytesMut {
    let mut b = BytesMut::with_capacity(len + DATA_ALIGN);
    let skip = b.as_ptr().align_offset(DATA_ALIGN).min(DATA_ALIGN);
    b.put_bytes(0, skip);
    b.advance(skip);
    b
}

/// `len` zero bytes starting on a `DATA_ALIGN` boundary: a READ answered in
/// several chunks (holes read as zeroes).
fn zeroed_read_buffer(len: usize) -> BytesMut {
    let mut b = read_buffer(len);
    b.put_bytes(0, len);
    b
}

/// The next `len` bytes of the stream in a buffer of their own: what `buf`
/// already holds, then straight from the socket into memory nobody zeroed
/// (a 1 MiB READ used to be zeroed, received into `buf` and copied out).
async fn take_data(
    rd: &mut OwnedReadHalf,
    buf: &mut BytesMut,
    len: usize,
) -> Result<BytesMut, ClientError> {
    let mut data = read_buffer(len);
    let have = buf.len().min(len);
    data.extend_from_slice(&buf[..have]);
    buf.advance(have);
    while data.len() < len {
        let want = len - data.len();
        if rd.read_buf(&mut (&mut data).limit(want)).await? == 0 {
            return Err(ClientError::Closed);
        }
    }
    Ok(data)
}

/// Fills `dst` with the next `dst.len()` bytes of the stream: what `buf`
/// already holds, then straight from the socket.
async fn fill(
    rd: &mut OwnedReadHalf,
    buf: &mut BytesMut,
    dst: &mut [u8],
) -> Result<(), ClientError> {
    let have = buf.len().min(dst.len());
    dst[..have].copy_from_slice(&buf[..have]);
    buf.advance(have);
    match rd.read_exact(&mut dst[have..]).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(ClientError::Closed),
        Err(e) => Err(e.into()),
    }
}

async fn run(
    rd: &mut OwnedReadHalf,
    buf: &mut BytesMut,
    pending: &Mutex<Pending>,
    extended: bool,
) -> Result<(), ClientError> {
    loop {
        let (header, header_len) = loop {
            if let Some(h) = proto::peek_reply_header(buf, extended)? {
                break h;
            }
            buf.reserve(64 * 1024);
            if rd.read_buf(buf).await? == 0 {
                return Err(ClientError::Closed);
            }
        };
        match header {
            ReplyHeader::Simple { cookie, error } => {
                let read_len = {
                    let p = pending.lock().map_err(|_| ClientError::Closed)?;
                    let w = p
                        .map
                        .get(&cookie.0)
                        .ok_or(ClientError::Unexpected("reply to unknown cookie"))?;
                    if error == 0 && w.kind == cmd::READ { w.length } else { 0 }
                };
                let read_len =
                    usize::try_from(read_len).map_err(|_| ClientError::Unexpected("huge read"))?;
                buf.advance(header_len);
                let data = take_data(rd, buf, read_len).await?.freeze();
                let mut p = pending.lock().map_err(|_| ClientError::Closed)?;
                if let Some(w) = p.map.remove(&cookie.0) {
                    let result = if error != 0 {
                        Err(ClientError::Server { errno: error, message: String::new() })
                    } else if w.kind == cmd::READ {
                        Ok(ReplyData::Read(data))
                    } else {
                        Ok(ReplyData::None)
                    };
                    let _ = w.tx.send(result);
                }
            }
            ReplyHeader::Chunk { kind: chunk::OFFSET_DATA, cookie, .. } => {
                // The data goes from the socket straight into the READ's buffer.
                let plen = proto::chunk_payload_len(&header, MAX_REPLY)?;
                need(rd, buf, header_len + OFFSET_LEN).await?;
                let at = (&buf[header_len..header_len + OFFSET_LEN]).get_u64();
                let len = plen
                    .checked_sub(OFFSET_LEN)
                    .filter(|n| *n > 0)
                    .ok_or(ClientError::Unexpected("offset data chunk without data"))?;
                buf.advance(header_len + OFFSET_LEN);
                // A chunk with the whole READ (the usual reply) is taken as is;
                // others land in a zeroed buffer at their offset.
                let partial = {
                    let mut p = pending.lock().map_err(|_| ClientError::Closed)?;
                    let w = p.chunk_target(cookie)?;
                    let start = data_range(w, at, len)?;
                    if w.data.is_none() && start == 0 && len as u64 == w.length {
                        None
                    } else {
                        let d = match w.data.take() {
                            Some(d) => d,
                            None => zeroed_read_buffer(usize_of(w.length)?),
                        };
                        Some((d, start))
                    }
                };
                let data = match partial {
                    None => take_data(rd, buf, len).await?,
                    Some((mut d, start)) => {
                        fill(rd, buf, &mut d[start..start + len]).await?;
                        d
                    }
                };
                let mut p = pending.lock().map_err(|_| ClientError::Closed)?;
                let w = p.chunk_target(cookie)?;
                w.data = Some(data);
                if header.is_done() {
                    p.complete(cookie);
                }
            }
            ReplyHeader::Chunk { flags: _, kind, cookie, .. } => {
                let plen = proto::chunk_payload_len(&header, MAX_REPLY)?;
                need(rd, buf, header_len + plen).await?;
                buf.advance(header_len);
                let payload = buf.split_to(plen);
                let mut p = pending.lock().map_err(|_| ClientError::Closed)?;
                let w = p.chunk_target(cookie)?;
                apply_chunk(w, kind, &payload, extended)?;
                if header.is_done() {
                    p.complete(cookie);
                }
            }
        }
    }
}

fn apply_chunk(
    w: &mut Waiting,
    kind: u16,
    payload: &[u8],
    extended: bool,
) -> Result<(), ClientError> {
    match kind {
        chunk::NONE => {}
        chunk::OFFSET_HOLE => {
            let (at, len) = proto::parse_offset_hole(payload, extended)?;
            if w.data.is_none() {
                w.data = Some(zeroed_read_buffer(usize_of(w.length)?));
            }
            let end = at.checked_add(len.into());
            if at < w.offset || end.is_none_or(|e| e > w.offset + w.length) {
                return Err(ClientError::Unexpected("hole beyond the request"));
            }
        }
        chunk::BLOCK_STATUS | chunk::BLOCK_STATUS_EXT => {
            let (_ctx, extents) =
                proto::parse_block_status(payload, kind == chunk::BLOCK_STATUS_EXT)?;
            w.extents.extend(extents);
        }
        chunk::ERROR | chunk::ERROR_OFFSET => {
            let (errno, message, _) = proto::parse_error_chunk(payload)?;
            w.error = Some(ClientError::Server { errno, message });
        }
        _ => return Err(ClientError::Unexpected("unknown reply chunk type")),
    }
    Ok(())
}

/// Bytes before the data in an `OFFSET_DATA` chunk.
const OFFSET_LEN: usize = 8;

fn usize_of(n: u64) -> Result<usize, ClientError> {
    usize::try_from(n).map_err(|_| ClientError::Unexpected("huge read"))
}

/// Where `len` bytes of data at export offset `at` go in the READ `w`.
fn data_range(w: &Waiting, at: u64, len: usize) -> Result<usize, ClientError> {
    if w.kind != cmd::READ {
        return Err(ClientError::Unexpected("offset data chunk for a request that is not a READ"));
    }
    let start =
        at.checked_sub(w.offset).ok_or(ClientError::Unexpected("data before the request"))?;
    let start = usize_of(start)?;
    start
        .checked_add(len)
        .filter(|e| *e as u64 <= w.length)
        .ok_or(ClientError::Unexpected("data beyond the request"))?;
    Ok(start)
}

fn finish(
    kind: u16,
    data: Option<BytesMut>,
    extents: Vec<BlockExtent>,
    error: Option<ClientError>,
) -> Result<ReplyData, ClientError> {
    if let Some(e) = error {
        return Err(e);
    }
    Ok(match kind {
        cmd::READ => ReplyData::Read(data.map(BytesMut::freeze).unwrap_or_default()),
        cmd::BLOCK_STATUS => ReplyData::BlockStatus(extents),
        _ => ReplyData::None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::{CommandFlags, encode_offset_data_header, encode_offset_hole, encode_simple_reply};
    use tokio::io::AsyncWriteExt;
    use tokio::net::{TcpListener, TcpStream};

    /// A reply reader on one end of a loopback connection, and the other
    /// end, on which a test plays the server.
    struct Harness {
        server: TcpStream,
        pending: Arc<Mutex<Pending>>,
        _client_write: tokio::net::tcp::OwnedWriteHalf,
    }

    async fn harness(extended: bool) -> Harness {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let (rd, wr) = client.into_split();
        let pending = Arc::new(Mutex::new(Pending::new(extended)));
        tokio::spawn(read_replies(rd, BytesMut::new(), pending.clone()));
        Harness { server, pending, _client_write: wr }
    }

    impl Harness {
        fn read(
            &self,
            cookie: u64,
            offset: u64,
            length: u64,
        ) -> oneshot::Receiver<Result<ReplyData, ClientError>> {
            let (tx, rx) = oneshot::channel();
            let req = Request {
                cookie: Cookie(cookie),
                flags: CommandFlags::empty(),
                command: Command::Read { offset, length },
            };
            self.pending.lock().unwrap().insert(Cookie(cookie), &req, tx);
            rx
        }

        /// Sends `bytes` in `pieces` writes, so the reader sees them split.
        async fn send(&mut self, bytes: &[u8], pieces: usize) {
            for part in bytes.chunks(bytes.len().div_ceil(pieces)) {
                self.server.write_all(part).await.unwrap();
                self.server.flush().await.unwrap();
                tokio::task::yield_now().await;
            }
        }
    }

    fn data_of(r: Result<ReplyData, ClientError>) -> Bytes {
        match r {
            Ok(ReplyData::Read(b)) => b,
            other => panic!("expected READ data, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn chunks_out_of_order_fill_data_and_leave_holes_zero() {
        for extended in [false, true] {
            let mut h = harness(extended).await;
            let rx = h.read(7, 4096, 12288);
            let mut out = BytesMut::new();
            encode_offset_data_header(&mut out, extended, false, Cookie(7), 4096, 12288, 4096);
            out.put_bytes(0xcc, 4096);
            encode_offset_hole(&mut out, extended, false, Cookie(7), 4096, 8192, 4096);
            encode_offset_data_header(&mut out, extended, true, Cookie(7), 4096, 4096, 4096);
            out.put_bytes(0xaa, 4096);
            h.send(&out, 5).await;
            let data = data_of(rx.await.unwrap());
            let mut want = vec![0xaa; 4096];
            want.extend([0; 4096]);
            want.extend([0xcc; 4096]);
            assert_eq!(&data[..], &want[..], "extended={extended}");
        }
    }

    #[tokio::test]
    async fn large_reads_arrive_whole_and_on_a_cache_line() {
        let mut h = harness(false).await;
        let len = 1 << 20;
        let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let structured = h.read(1, 0, len as u64);
        let simple = h.read(2, 1 << 20, len as u64);
        let mut out = BytesMut::new();
        encode_offset_data_header(&mut out, false, true, Cookie(1), 0, 0, len as u64);
        out.extend_from_slice(&payload);
        encode_simple_reply(&mut out, Cookie(2), 0);
        out.extend_from_slice(&payload);
        // the first piece ends inside the data: part of it is buffered
        h.send(&out, 7).await;
        for rx in [structured, simple] {
            let data = data_of(rx.await.unwrap());
            assert!(data[..] == payload[..]);
            assert_eq!(data.as_ptr().align_offset(DATA_ALIGN), 0);
        }
    }

    #[tokio::test]
    async fn data_outside_the_read_fails_it_without_a_panic() {
        for (at, len) in [(8192u64, 8192usize), (0, 4096), (4096, 0)] {
            let mut h = harness(false).await;
            let rx = h.read(3, 4096, 8192);
            let mut out = BytesMut::new();
            encode_offset_data_header(&mut out, false, true, Cookie(3), 0, at, len as u64);
            out.put_bytes(0xee, len);
            h.send(&out, 1).await;
            assert!(rx.await.unwrap().is_err(), "data at {at}+{len}");
        }
    }
}
