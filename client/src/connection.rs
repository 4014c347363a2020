//! The client's reader task: decodes replies (simple, structured, extended)
//! from a `BytesMut`, assembles multi-chunk READ and BLOCK_STATUS replies,
//! and completes the waiting request by cookie.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::{Buf, Bytes, BytesMut};
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
                need(rd, buf, header_len + read_len).await?;
                buf.advance(header_len);
                let data = buf.split_to(read_len).freeze();
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
            ReplyHeader::Chunk { flags: _, kind, cookie, .. } => {
                let plen = proto::chunk_payload_len(&header, MAX_REPLY)?;
                need(rd, buf, header_len + plen).await?;
                buf.advance(header_len);
                let payload = buf.split_to(plen);
                let mut p = pending.lock().map_err(|_| ClientError::Closed)?;
                let w = p
                    .map
                    .get_mut(&cookie.0)
                    .ok_or(ClientError::Unexpected("chunk for unknown cookie"))?;
                apply_chunk(w, kind, &payload, extended)?;
                if header.is_done()
                    && let Some(w) = p.map.remove(&cookie.0)
                {
                    let _ = w.tx.send(finish(w.kind, w.data, w.extents, w.error));
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
    let read_buf = |w: &mut Waiting| -> Result<(), ClientError> {
        if w.data.is_none() {
            let len =
                usize::try_from(w.length).map_err(|_| ClientError::Unexpected("huge read"))?;
            w.data = Some(BytesMut::zeroed(len));
        }
        Ok(())
    };
    match kind {
        chunk::NONE => {}
        chunk::OFFSET_DATA => {
            let (at, data) = proto::parse_offset_data(payload, extended)?;
            read_buf(w)?;
            let start = at
                .checked_sub(w.offset)
                .ok_or(ClientError::Unexpected("data before the request"))?;
            let start = usize::try_from(start).map_err(|_| ClientError::Unexpected("offset"))?;
            let dst = w.data.as_mut().ok_or(ClientError::Unexpected("no buffer"))?;
            let end = start
                .checked_add(data.len())
                .filter(|e| *e <= dst.len())
                .ok_or(ClientError::Unexpected("data beyond the request"))?;
            dst[start..end].copy_from_slice(data);
        }
        chunk::OFFSET_HOLE => {
            let (at, len) = proto::parse_offset_hole(payload, extended)?;
            read_buf(w)?;
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
