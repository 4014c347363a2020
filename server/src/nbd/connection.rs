//! The transmission phase of one connection, on an OS thread of its own.
//!
//! The reader decodes every complete request in its buffer (mini-redis
//! style: read into a `BytesMut`, decode what is whole). A small request
//! that arrives alone is answered right there on the reader thread; a batch
//! (a pipelining client) is split across the IO pool; a large WRITE (64 KiB
//! or more) always goes to the pool on its own, its payload read from the
//! socket straight into a recycled buffer (`buffers.rs`). Whoever computes a reply
//! writes it to the socket under a mutex, with one vectored write per batch,
//! so a reply costs at most one thread hand-off. With tokio tasks for reader,
//! handler and writer it was three hand-offs, and on this 2-vCPU machine each
//! cross-CPU wake-up costs tens of µs (BENCHMARKS.md has the numbers).

use std::io::{IoSlice, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use bytes::{Buf, Bytes, BytesMut};
use proto::{Command, DecodeError, Request};
use store::IoBuf;
use tracing::debug;

use super::buffers::POOLED_MIN;
use super::iopool::IoPool;
use super::spin::Waiter;
use super::transmission::Session;

/// Per-connection limits.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub(crate) max_payload: u32,
    pub(crate) max_inflight_bytes: u32,
    pub(crate) max_inflight_requests: u32,
    /// How long a queue-depth-1 connection polls for its next request
    /// before it sleeps (`spin.rs`); zero never.
    pub(crate) poll: std::time::Duration,
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

/// READs from this size up are answered from memory at once on the reader
/// (`Conn::dispatch`). Below it a reply's socket copy is short and cheap
/// either way, and batches of 64-128 KiB READs went faster split over the
/// pool (1.7-2.5 GB/s against 1.7-1.9 read one at a time).
const SEND_AT_ONCE: u64 = 256 * 1024;

/// Smallest read we ask the kernel for.
const READ_CHUNK: usize = 256 * 1024;

/// Serves requests until DISC, EOF, a malformed stream or shutdown (the
/// server shuts the socket's read side); requests already handed out always
/// finish and their replies are sent before this returns.
pub(crate) fn serve(
    mut socket: TcpStream,
    mut buf: BytesMut,
    session: Arc<Session>,
    pool: Arc<IoPool>,
    limits: Limits,
) -> Result<(), ConnectionError> {
    let writer = Arc::new(ReplyWriter {
        socket: Mutex::new(socket.try_clone()?),
        broken: AtomicBool::new(false),
    });
    let inflight = Arc::new(InFlight::default());
    let mut scratch = IoBuf::zeroed(READ_CHUNK);
    // More parts than CPUs only adds wake-ups.
    let split = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
    let conn = Conn {
        session: &session,
        pool: &pool,
        writer: &writer,
        inflight: &inflight,
        limits,
        split,
    };
    let result = conn.read_loop(&mut socket, &mut buf, &mut scratch);
    inflight.wait_idle();
    // FIN after the last reply; the client may already be gone.
    let _ = socket.shutdown(Shutdown::Write);
    result
}

/// What the reader loop works with.
struct Conn<'a> {
    session: &'a Arc<Session>,
    pool: &'a Arc<IoPool>,
    writer: &'a Arc<ReplyWriter>,
    inflight: &'a Arc<InFlight>,
    limits: Limits,
    split: usize,
}

impl Conn<'_> {
    fn read_loop(
        &self,
        socket: &mut TcpStream,
        buf: &mut BytesMut,
        scratch: &mut [u8],
    ) -> Result<(), ConnectionError> {
        let (session, writer, limits) = (self.session, self.writer, self.limits);
        let extended = session.extended;
        let header_len = proto::request_header_len(extended);
        // After a large WRITE the next request is most likely another one:
        // then only its header is read, so that its payload goes from the
        // socket straight into a pooled buffer instead of through `scratch`
        // and `buf` (two copies of up to 256 KiB; 6% of the server under
        // 1 MiB sequential writes).
        let mut streaming = false;
        let mut waiter = Waiter::new(limits.poll, self.split);
        loop {
            if !session.export.is_live() {
                debug!("export was deleted; closing");
                return Ok(());
            }
            if writer.broken.load(Ordering::Relaxed) {
                return Ok(());
            }
            // Decode everything that is complete.
            let mut batch = Vec::new();
            let mut need = header_len;
            let mut disconnect = false;
            while let Some(header) = proto::peek_request_header(buf, extended)? {
                let payload = proto::request_payload_len(&header, extended, limits.max_payload)?;
                if buf.len() < header_len + payload {
                    if header.kind == proto::cmd::WRITE && payload >= POOLED_MIN {
                        // answer what is decoded before blocking on the payload
                        if !batch.is_empty() {
                            self.dispatch(std::mem::take(&mut batch), false);
                        }
                        batch.push(self.read_write_payload(socket, buf, header, payload)?);
                        streaming = true;
                        continue;
                    }
                    need = header_len + payload;
                    break;
                }
                let Some(request) = proto::decode_request(buf, extended, limits.max_payload)?
                else {
                    // invariant: header and payload are buffered, checked above.
                    return Err(ConnectionError::Truncated);
                };
                if matches!(request.command, Command::Disconnect) {
                    disconnect = true;
                    break;
                }
                streaming = false;
                batch.push(request);
            }
            if !batch.is_empty() {
                waiter.answered(batch.len() == 1 && buf.is_empty());
                self.dispatch(batch, buf.is_empty());
            }
            if disconnect {
                return Ok(());
            }
            // Read more. The scratch buffer is zeroed once; copying what a read
            // returns costs less than zeroing fresh BytesMut space every time.
            buf.reserve(need.saturating_sub(buf.len()));
            let want = if streaming {
                need.saturating_sub(buf.len()).clamp(1, scratch.len())
            } else {
                scratch.len()
            };
            let n = loop {
                match waiter.read(socket, &mut scratch[..want]) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e.into()),
                }
            };
            if n == 0 {
                return if buf.is_empty() { Ok(()) } else { Err(ConnectionError::Truncated) };
            }
            buf.extend_from_slice(&scratch[..n]);
        }
    }

    /// Reads the payload of a large WRITE straight from the socket into a
    /// pooled buffer (`buffers.rs`): no pass through the stream buffer, no
    /// copy out of it. `buf` holds the header and the payload's first bytes.
    fn read_write_payload(
        &self,
        socket: &mut TcpStream,
        buf: &mut BytesMut,
        header: proto::RequestHeader,
        payload: usize,
    ) -> Result<Request, ConnectionError> {
        let header_len = proto::request_header_len(self.session.extended);
        let mut data = self.session.buffers.take(payload);
        let have = buf.len() - header_len;
        data.as_mut()[..have].copy_from_slice(&buf[header_len..]);
        buf.clear();
        socket.read_exact(&mut data.as_mut()[have..]).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                ConnectionError::Truncated
            } else {
                ConnectionError::Io(e)
            }
        })?;
        // invariant: the header is a WRITE of `payload` bytes (checked by the caller)
        header.into_write(self.session.extended, data.freeze()).ok_or(ConnectionError::Truncated)
    }

    fn dispatch(&self, batch: Vec<Request>, alone: bool) {
        let limits = self.limits;
        // Large WRITEs go to the pool one by one: their IO dwarfs a
        // hand-off, and the reader goes back to the socket at once to read
        // the next payload while this one is written. (Large READs from
        // memory did worse that way: 1 MiB sequential reads fell from 1.4 to
        // 1.0-1.2 GB/s with eight threads contending for two CPUs and the
        // socket. Those that must wait for the disk go so: see
        // `answer_large_reads`.)
        let (large, batch): (Vec<Request>, Vec<Request>) = batch.into_iter().partition(|r| {
            matches!(r.command, Command::Write { .. })
                && cost(r, limits.max_payload) >= POOLED_MIN as u64
        });
        for r in large {
            self.hand_off(vec![r]);
        }
        // Large READs are answered after the rest of the batch is on its
        // way (`answer_large_reads`), so small requests do not wait behind
        // their copies.
        let (large_reads, batch): (Vec<Request>, Vec<Request>) = batch.into_iter().partition(
            |r| matches!(r.command, Command::Read { length, .. } if length >= SEND_AT_ONCE),
        );
        let lone_read = alone && batch.is_empty() && large_reads.len() == 1;
        self.dispatch_small(batch, alone && large_reads.is_empty());
        self.answer_large_reads(large_reads, lone_read);
    }

    /// Answers large READs whose data is in the page cache here, one at a
    /// time, each right after its read: the reply buffer is still in this
    /// CPU's cache when the socket copies it, and the next read reuses the
    /// same buffer (`buffers.rs` hands back the last one returned). Spread
    /// over the pool, a part's replies went out together after all its
    /// reads, from memory the reads had pushed out of the cache: the socket
    /// copy cost 70% more per byte and 1 MiB sequential reads reached 0.8 of
    /// nbd-server's rate (BENCHMARKS.md). A READ that would wait for the
    /// disk goes to the pool on its own, as large WRITEs do, so disk reads
    /// overlap; what its try copied is read again (a sequential stream
    /// rarely misses: the memory-only read still starts the kernel's
    /// readahead). A lone one is read here: nothing waits behind it.
    fn answer_large_reads(&self, reads: Vec<Request>, lone: bool) {
        for r in reads {
            match self.session.handle_cached(r) {
                Ok(reply) => self.writer.send(reply),
                Err(r) if lone => self.writer.send(self.session.handle(r)),
                Err(r) => self.hand_off(vec![r]),
            }
        }
    }

    /// Answers the requests of a batch other than large WRITEs and READs.
    fn dispatch_small(&self, batch: Vec<Request>, alone: bool) {
        let (session, writer) = (self.session, self.writer);
        if batch.is_empty() {
            return;
        }
        // A lone request (a client at queue depth 1, or the kernel between
        // bursts) is answered here: no hand-off, no wake-up.
        if alone && batch.len() == 1 {
            let pieces: Vec<Bytes> = batch.into_iter().flat_map(|r| session.handle(r)).collect();
            writer.send(pieces);
            return;
        }
        // A batch is split across the CPUs: the reader keeps the first part
        // (it is awake already) and hands the rest to the pool.
        let parts = batch.len().min(self.pool.threads() + 1).min(self.split).max(1);
        let per_part = batch.len().div_ceil(parts);
        let mut batch = batch.into_iter();
        let own: Vec<Request> = batch.by_ref().take(per_part).collect();
        let mut rest = batch.peekable();
        while rest.peek().is_some() {
            self.hand_off(rest.by_ref().take(per_part).collect());
        }
        let pieces: Vec<Bytes> = own.into_iter().flat_map(|r| session.handle(r)).collect();
        writer.send(pieces);
    }

    /// Runs `part` on the pool, within the connection's in-flight budget.
    fn hand_off(&self, part: Vec<Request>) {
        let limits = self.limits;
        let bytes: u64 = part.iter().map(|r| cost(r, limits.max_payload)).sum();
        self.inflight.acquire(part.len(), bytes, limits);
        let (session, writer, inflight) =
            (self.session.clone(), self.writer.clone(), self.inflight.clone());
        let count = part.len();
        self.pool.execute(move || {
            let pieces: Vec<Bytes> = part.into_iter().flat_map(|r| session.handle(r)).collect();
            writer.send(pieces);
            inflight.release(count, bytes);
        });
    }
}

/// What a request costs the in-flight budget: READs need room for their
/// reply, WRITEs hold their payload.
fn cost(r: &Request, max_payload: u32) -> u64 {
    match &r.command {
        Command::Read { length, .. } => (*length).min(u64::from(max_payload)),
        Command::Write { data, .. } => data.len() as u64,
        _ => 0,
    }
    .max(1)
}

/// Writes replies; shared by the reader thread and the pool threads.
struct ReplyWriter {
    socket: Mutex<TcpStream>,
    broken: AtomicBool,
}

/// `writev` takes at most IOV_MAX (1024) slices.
const MAX_IOVECS: usize = 512;

impl ReplyWriter {
    fn send(&self, mut pieces: Vec<Bytes>) {
        if self.broken.load(Ordering::Relaxed) {
            return;
        }
        pieces.retain(|p| !p.is_empty());
        let mut socket = self.socket.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Err(e) = write_all(&mut socket, &mut pieces) {
            debug!(error = %e, "reply write failed; closing");
            self.broken.store(true, Ordering::Relaxed);
            // Wake the reader: the connection is over.
            let _ = socket.shutdown(Shutdown::Both);
        }
    }
}

fn write_all(socket: &mut TcpStream, pieces: &mut [Bytes]) -> std::io::Result<()> {
    let mut start = 0;
    while start < pieces.len() {
        let slices: Vec<IoSlice<'_>> =
            pieces[start..].iter().take(MAX_IOVECS).map(|b| IoSlice::new(b)).collect();
        let mut n = match socket.write_vectored(&slices) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        while n > 0 && start < pieces.len() {
            let len = pieces[start].len();
            if n >= len {
                n -= len;
                start += 1;
            } else {
                pieces[start].advance(n);
                n = 0;
            }
        }
    }
    Ok(())
}

/// Requests handed to the pool and not yet answered: the reader waits here
/// when the connection's budget is spent (back-pressure: it stops reading,
/// the TCP window closes), and at the end until all are answered.
#[derive(Default)]
struct InFlight {
    state: Mutex<(usize, u64)>,
    changed: Condvar,
}

impl InFlight {
    fn acquire(&self, count: usize, bytes: u64, limits: Limits) {
        let mut s = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // An idle connection always admits the next part, whatever its
        // size, so a batch larger than the budget cannot wait forever.
        while s.0 > 0
            && (s.0 + count > limits.max_inflight_requests as usize
                || s.1 + bytes > u64::from(limits.max_inflight_bytes))
        {
            s = self.changed.wait(s).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        s.0 += count;
        s.1 += bytes;
    }

    fn release(&self, count: usize, bytes: u64) {
        let mut s = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        s.0 -= count;
        s.1 -= bytes;
        drop(s);
        self.changed.notify_all();
    }

    fn wait_idle(&self) {
        let mut s = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        while s.0 > 0 {
            s = self.changed.wait(s).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }
}
