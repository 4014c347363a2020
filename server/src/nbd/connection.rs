//! The transmission phase of one connection: a reader that decodes requests
//! (mini-redis style: `read_buf` into a `BytesMut`, cancel-safe), one task per
//! request, and a writer that sends replies as they complete, out of order,
//! with vectored writes and no copies of READ payloads.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use proto::{Command, DecodeError};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tracing::debug;

use super::transmission::Session;

/// Per-connection limits.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub(crate) max_payload: u32,
    pub(crate) max_inflight_bytes: u32,
    pub(crate) max_inflight_requests: u32,
}

/// A finished reply and the budget it releases once written.
struct Outgoing {
    pieces: Vec<Bytes>,
    _permits: (OwnedSemaphorePermit, OwnedSemaphorePermit),
}

/// Why a connection ended abnormally.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectionError {
    /// Socket error.
    #[error("connection i/o")]
    Io(#[from] std::io::Error),
    /// The byte stream is no longer trustworthy: we hang up.
    #[error("malformed request stream")]
    Decode(#[from] DecodeError),
    /// The client closed in the middle of a request.
    #[error("client closed mid-request")]
    Truncated,
}

/// Serves requests until DISC, EOF, a malformed stream or shutdown; in-flight
/// requests always finish and their replies are sent before we return.
pub(crate) async fn serve<R, W>(
    mut rd: R,
    wr: W,
    mut buf: BytesMut,
    session: Arc<Session>,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ConnectionError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (tx, rx) = mpsc::channel::<Outgoing>(limits.max_inflight_requests as usize);
    let writer = tokio::spawn(write_loop(wr, rx));
    let bytes_budget = Arc::new(Semaphore::new(limits.max_inflight_bytes as usize));
    let count_budget = Arc::new(Semaphore::new(limits.max_inflight_requests as usize));
    let extended = session.extended;
    let header_len = proto::request_header_len(extended);

    let result = async {
        loop {
            if !session.export.is_live() {
                debug!("export was deleted; closing");
                return Ok(());
            }
            let header = loop {
                if let Some(h) = proto::peek_request_header(&buf, extended)? {
                    break h;
                }
                if !fill(&mut rd, &mut buf, &mut shutdown).await? {
                    if buf.is_empty() {
                        return Ok(());
                    }
                    return Err(ConnectionError::Truncated);
                }
            };
            let payload = proto::request_payload_len(&header, extended, limits.max_payload)?;
            // READs need room for their reply; WRITEs for their payload.
            let cost = if header.kind == proto::cmd::READ {
                header.length.min(u64::from(limits.max_payload))
            } else {
                payload as u64
            };
            let cost = u32::try_from(cost.max(1)).unwrap_or(limits.max_payload);
            let permits = acquire(&bytes_budget, &count_budget, cost).await;
            while buf.len() < header_len + payload {
                buf.reserve(header_len + payload - buf.len());
                if !fill(&mut rd, &mut buf, &mut shutdown).await? {
                    return Err(ConnectionError::Truncated);
                }
            }
            let Some(request) = proto::decode_request(&mut buf, extended, limits.max_payload)?
            else {
                // invariant: the whole request is buffered, checked just above.
                return Err(ConnectionError::Truncated);
            };
            if matches!(request.command, Command::Disconnect) {
                return Ok(());
            }
            let tx = tx.clone();
            let session = session.clone();
            tokio::spawn(async move {
                let pieces = session.handle(request).await;
                let _ = tx.send(Outgoing { pieces, _permits: permits }).await;
            });
        }
    }
    .await;
    // Handlers hold their own senders: the writer ends after the last reply.
    drop(tx);
    let written = writer.await;
    result?;
    match written {
        Ok(r) => r.map_err(ConnectionError::Io),
        Err(_) => Ok(()),
    }
}

async fn acquire(
    bytes: &Arc<Semaphore>,
    count: &Arc<Semaphore>,
    cost: u32,
) -> (OwnedSemaphorePermit, OwnedSemaphorePermit) {
    // invariant: the semaphores are never closed.
    let c = count.clone().acquire_owned().await.expect("semaphore open");
    let b = bytes.clone().acquire_many_owned(cost).await.expect("semaphore open");
    (b, c)
}

/// Reads more input. Returns false at EOF. On shutdown the reader stops as
/// if the client had gone quiet: requests already buffered are still
/// answered (with ESHUTDOWN) by the loop.
async fn fill<R: AsyncRead + Unpin>(
    rd: &mut R,
    buf: &mut BytesMut,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<bool, std::io::Error> {
    if buf.capacity() - buf.len() < 4096 {
        buf.reserve(64 * 1024);
    }
    if *shutdown.borrow() {
        return Ok(false);
    }
    tokio::select! {
        n = rd.read_buf(buf) => Ok(n? > 0),
        _ = shutdown.changed() => Ok(false),
    }
}

/// Most replies one vectored write carries.
const MAX_BATCH_REPLIES: usize = 64;
/// Stop gathering replies past this many bytes.
const MAX_BATCH_BYTES: usize = 4 << 20;
/// `writev` takes at most IOV_MAX (1024) slices; 64 is plenty.
const MAX_IOVECS: usize = 64;

async fn write_loop<W: AsyncWrite + Unpin>(
    mut wr: W,
    mut rx: mpsc::Receiver<Outgoing>,
) -> std::io::Result<()> {
    let mut queue: VecDeque<Bytes> = VecDeque::new();
    let mut held = Vec::with_capacity(MAX_BATCH_REPLIES);
    while let Some(first) = rx.recv().await {
        let mut bytes = push(&mut queue, &mut held, first);
        while held.len() < MAX_BATCH_REPLIES && bytes < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(next) => bytes += push(&mut queue, &mut held, next),
                Err(_) => break,
            }
        }
        write_all(&mut wr, &mut queue).await?;
        held.clear();
    }
    wr.shutdown().await
}

fn push(
    queue: &mut VecDeque<Bytes>,
    held: &mut Vec<(OwnedSemaphorePermit, OwnedSemaphorePermit)>,
    out: Outgoing,
) -> usize {
    let n = out.pieces.iter().map(Bytes::len).sum();
    queue.extend(out.pieces.into_iter().filter(|p| !p.is_empty()));
    held.push(out._permits);
    n
}

async fn write_all<W: AsyncWrite + Unpin>(
    wr: &mut W,
    queue: &mut VecDeque<Bytes>,
) -> std::io::Result<()> {
    while !queue.is_empty() {
        let slices: Vec<IoSlice<'_>> =
            queue.iter().take(MAX_IOVECS).map(|b| IoSlice::new(b)).collect();
        let mut n = wr.write_vectored(&slices).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while n > 0 {
            let Some(front) = queue.front_mut() else { break };
            if n >= front.len() {
                n -= front.len();
                queue.pop_front();
            } else {
                front.advance(n);
                n = 0;
            }
        }
    }
    wr.flush().await
}
