//! One request in, one reply out: validation against the negotiated export,
//! the store call on the IO pool, and the reply's bytes. The connection
//! driver (`connection.rs`) owns the socket; this file owns the meaning.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use proto::{
    BlockExtent, Command, CommandFlags, Cookie, Errno, MetaContext, Request, TransmissionFlags, cmd,
};
use store::{ErrorKind, Export, Fetch, StoreError};

use super::buffers::BufPool;
use crate::metrics::{ExportMetrics, Op};

/// The most block status extents one reply carries (the spec's bound is 2^20).
const MAX_STATUS_EXTENTS: usize = 64 * 1024;
/// Block status looks at most this far per request; clients ask again.
const MAX_STATUS_SPAN: u64 = 4 << 30;

/// What every request handler of one connection shares.
pub(crate) struct Session {
    pub(crate) export: Export,
    pub(crate) flags: TransmissionFlags,
    pub(crate) structured: bool,
    pub(crate) extended: bool,
    /// The id of `base:allocation`, when the client selected it.
    pub(crate) allocation_context: Option<u32>,
    pub(crate) max_payload: u32,
    /// Set once the server shuts down: new requests get ESHUTDOWN.
    pub(crate) shutting_down: Arc<AtomicBool>,
    pub(crate) metrics: ExportMetrics,
    /// Reply buffers of large READs (`buffers.rs`).
    pub(crate) buffers: Arc<BufPool>,
}

impl Session {
    /// Builds the session from what the handshake negotiated.
    pub(crate) fn new(
        export: Export,
        negotiated: &proto::Negotiated,
        max_payload: u32,
        shutting_down: Arc<AtomicBool>,
        metrics: ExportMetrics,
        buffers: Arc<BufPool>,
    ) -> Self {
        let allocation_context = negotiated
            .meta_contexts
            .iter()
            .find(|(_, c)| matches!(c, MetaContext::BaseAllocation))
            .map(|(id, _)| *id);
        Self {
            export,
            flags: negotiated.export.flags,
            structured: negotiated.structured_replies || negotiated.extended_headers,
            extended: negotiated.extended_headers,
            allocation_context,
            max_payload,
            shutting_down,
            metrics,
            buffers,
        }
    }

    /// Handles one request and returns the reply as byte pieces, ready for a
    /// vectored write. DISC never reaches here.
    /// Runs on an IO thread or the connection's reader thread: it blocks.
    pub(crate) fn handle(&self, req: Request) -> Vec<Bytes> {
        let start = Instant::now();
        let op = Op::from_kind(req.kind());
        let bytes = match &req.command {
            Command::Read { length, .. } => *length,
            Command::Write { data, .. } => data.len() as u64,
            _ => 0,
        };
        self.metrics.inflight.inc();
        let answer = self.answer(req);
        self.metrics.inflight.dec();
        self.metrics.record(op, bytes, answer.ok, start.elapsed().as_secs_f64());
        answer.pieces
    }

    /// `handle` for a READ whose data is all in memory: the reply, or the
    /// request back (it is not a READ, or some of its data would have to
    /// come from the disk) to be handled where waiting holds nothing up.
    pub(crate) fn handle_cached(&self, req: Request) -> Result<Vec<Bytes>, Request> {
        let Command::Read { offset, length } = req.command else {
            return Err(req);
        };
        if self.shutting_down.load(Ordering::Relaxed) || self.validate(&req).is_err() {
            // error replies never wait
            return Ok(self.handle(req));
        }
        let start = Instant::now();
        self.metrics.inflight.inc();
        let answer = self.read(req.cookie, req.flags, offset, length, Fetch::Cached);
        self.metrics.inflight.dec();
        let Some(answer) = answer else {
            self.metrics.read_misses.inc();
            return Err(req);
        };
        self.metrics.record(Op::Read, length, answer.ok, start.elapsed().as_secs_f64());
        Ok(answer.pieces)
    }

    fn answer(&self, req: Request) -> Answer {
        let cookie = req.cookie;
        let kind = req.kind();
        let offset = request_offset(&req.command);
        if self.shutting_down.load(Ordering::Relaxed) {
            return self.error_reply(cookie, offset, Errno::Shutdown, "server is shutting down");
        }
        if let Err((errno, msg)) = self.validate(&req) {
            return self.error_reply(cookie, offset, errno, msg);
        }
        let fua = req.flags.contains(CommandFlags::FUA)
            && self.flags.contains(TransmissionFlags::SEND_FUA);
        match req.command {
            Command::Read { offset, length } => {
                // invariant: a blocking read always answers
                self.read(cookie, req.flags, offset, length, Fetch::Wait).unwrap_or_else(|| {
                    self.error_reply(cookie, offset, Errno::Io, "read found no data")
                })
            }
            Command::BlockStatus { offset, length } => {
                self.block_status(cookie, req.flags, offset, length)
            }
            command => {
                let export = &self.export;
                let result = (|| {
                    match command {
                        Command::Write { offset, data } => export.write(offset, &data)?,
                        Command::WriteZeroes { offset, length } => {
                            let unmap = !req.flags.contains(CommandFlags::NO_HOLE);
                            export.write_zeroes(offset, length, unmap)?
                        }
                        Command::Trim { offset, length } => export.trim(offset, length)?,
                        Command::Flush { .. } => return export.commit(),
                        // Chunks are read on demand; there is no cache to fill.
                        Command::Cache { .. } => {}
                        _ => {}
                    }
                    if fua { export.commit() } else { Ok(()) }
                })();
                match result {
                    Ok(()) => self.ok_reply(cookie, offset),
                    Err(e) => {
                        let errno = errno_for(kind, &e);
                        self.error_reply(cookie, offset, errno, &e.to_string())
                    }
                }
            }
        }
    }

    /// Request-level checks that need no IO. Each failure is the spec's errno.
    fn validate(&self, req: &Request) -> Result<(), (Errno, &'static str)> {
        let f = req.flags;
        // FUA is accepted on every command: clients set it on reads too.
        let allowed = CommandFlags::FUA
            | match &req.command {
                Command::Read { .. } if self.structured => CommandFlags::DF,
                Command::WriteZeroes { .. } => CommandFlags::NO_HOLE | CommandFlags::FAST_ZERO,
                Command::BlockStatus { .. } => CommandFlags::REQ_ONE,
                Command::Write { .. } if self.extended => CommandFlags::PAYLOAD_LEN,
                _ => CommandFlags::empty(),
            };
        if !allowed.contains(f) {
            return Err((Errno::Inval, "unsupported command flags"));
        }
        let size = self.export.size();
        let in_range =
            |offset: u64, length: u64| offset.checked_add(length).is_some_and(|end| end <= size);
        match &req.command {
            Command::Read { offset, length } => {
                if *length > u64::from(self.max_payload) {
                    return Err((Errno::Inval, "read larger than the maximum payload"));
                }
                if !in_range(*offset, *length) {
                    return Err((Errno::Inval, "read beyond the end of the export"));
                }
            }
            Command::Write { offset, data } => {
                self.check_writable()?;
                if !in_range(*offset, data.len() as u64) {
                    return Err((Errno::NoSpc, "write beyond the end of the export"));
                }
            }
            Command::Trim { offset, length } | Command::WriteZeroes { offset, length } => {
                self.check_writable()?;
                if !in_range(*offset, *length) {
                    return Err((Errno::Inval, "range beyond the end of the export"));
                }
            }
            Command::Cache { offset, length } => {
                if !in_range(*offset, *length) {
                    return Err((Errno::Inval, "range beyond the end of the export"));
                }
            }
            Command::BlockStatus { offset, length } => {
                if self.allocation_context.is_none() {
                    return Err((Errno::Inval, "no metadata context was negotiated"));
                }
                if *length == 0 || !in_range(*offset, *length) {
                    return Err((Errno::Inval, "block status range is empty or beyond the end"));
                }
            }
            Command::Flush { .. } => {}
            Command::Unknown { .. } | Command::Disconnect => {
                return Err((Errno::Inval, "unknown command"));
            }
            _ => return Err((Errno::Inval, "unknown command")),
        }
        Ok(())
    }

    fn check_writable(&self) -> Result<(), (Errno, &'static str)> {
        if self.export.read_only() { Err((Errno::Perm, "export is read-only")) } else { Ok(()) }
    }

    /// The reply to a READ; `None` only with `Fetch::Cached`, when some of
    /// the data is not in memory.
    fn read(
        &self,
        cookie: Cookie,
        flags: CommandFlags,
        offset: u64,
        length: u64,
        fetch: Fetch,
    ) -> Option<Answer> {
        // Holes are sent as OFFSET_HOLE chunks only when that saves bytes and
        // the client allows fragmentation.
        let sparse = self.structured && !flags.contains(CommandFlags::DF);
        let pieces = match read_pieces(&self.export, &self.buffers, offset, length, sparse, fetch) {
            Ok(Some(p)) => p,
            Ok(None) => return None,
            Err(e) => {
                let reply =
                    self.error_reply(cookie, offset, errno_for(cmd::READ, &e), &e.to_string());
                return Some(reply);
            }
        };
        let mut out = Vec::with_capacity(pieces.len() * 2);
        if !self.structured {
            let mut hdr = BytesMut::with_capacity(16);
            proto::encode_simple_reply(&mut hdr, cookie, 0);
            out.push(hdr.freeze());
            out.extend(pieces.into_iter().map(|p| match p {
                Piece::Data(_, data) => data,
                Piece::Hole(_, len) => zeroes(len),
            }));
            return Some(Answer::ok(out));
        }
        if pieces.is_empty() {
            return Some(self.ok_reply(cookie, offset));
        }
        let last = pieces.len() - 1;
        for (i, piece) in pieces.into_iter().enumerate() {
            let mut hdr = BytesMut::with_capacity(48);
            let done = i == last;
            match piece {
                Piece::Data(at, data) => {
                    proto::encode_offset_data_header(
                        &mut hdr,
                        self.extended,
                        done,
                        cookie,
                        offset,
                        at,
                        data.len() as u64,
                    );
                    out.push(hdr.freeze());
                    out.push(data);
                }
                Piece::Hole(at, len) => {
                    // invariant: read lengths are bounded by max_payload (< 4 GiB).
                    let len = u32::try_from(len).unwrap_or(u32::MAX);
                    proto::encode_offset_hole(
                        &mut hdr,
                        self.extended,
                        done,
                        cookie,
                        offset,
                        at,
                        len,
                    );
                    out.push(hdr.freeze());
                }
            }
        }
        Some(Answer::ok(out))
    }

    fn block_status(
        &self,
        cookie: Cookie,
        flags: CommandFlags,
        offset: u64,
        length: u64,
    ) -> Answer {
        let span = length.min(MAX_STATUS_SPAN);
        let extents = match self.export.block_status(offset, span) {
            Ok(e) => e,
            Err(e) => {
                return self.error_reply(
                    cookie,
                    offset,
                    errno_for(cmd::BLOCK_STATUS, &e),
                    &e.to_string(),
                );
            }
        };
        let limit = if flags.contains(CommandFlags::REQ_ONE) { 1 } else { MAX_STATUS_EXTENTS };
        let mut wire = Vec::with_capacity(extents.len().min(limit));
        for e in extents.into_iter().take(limit) {
            let flags = if e.allocated { 0 } else { proto::STATE_HOLE }
                | if e.zero { proto::STATE_ZERO } else { 0 };
            let mut length = e.length;
            if !self.extended && length > u64::from(u32::MAX) {
                // Compact replies carry 32-bit lengths: report a shorter
                // extent and stop; the client asks again from there.
                length = u64::from(u32::MAX) & !4095;
                wire.push(BlockExtent { length, flags });
                break;
            }
            wire.push(BlockExtent { length, flags });
        }
        let ctx = self.allocation_context.unwrap_or(1);
        let mut hdr = BytesMut::with_capacity(64 + wire.len() * 16);
        proto::encode_block_status(&mut hdr, self.extended, true, cookie, offset, ctx, &wire);
        Answer::ok(vec![hdr.freeze()])
    }

    fn ok_reply(&self, cookie: Cookie, offset: u64) -> Answer {
        let mut hdr = BytesMut::with_capacity(32);
        if self.extended {
            proto::encode_none(&mut hdr, true, cookie, offset);
        } else if self.structured {
            // Non-READ replies may be simple under SR; a NONE chunk is the
            // same size, so keep one shape for READs of length zero too.
            proto::encode_none(&mut hdr, false, cookie, offset);
        } else {
            proto::encode_simple_reply(&mut hdr, cookie, 0);
        }
        Answer::ok(vec![hdr.freeze()])
    }

    fn error_reply(&self, cookie: Cookie, offset: u64, errno: Errno, msg: &str) -> Answer {
        let mut hdr = BytesMut::with_capacity(64 + msg.len());
        if self.structured {
            proto::encode_error_chunk(
                &mut hdr,
                self.extended,
                true,
                cookie,
                offset,
                errno as u32,
                msg,
            );
        } else {
            proto::encode_simple_reply(&mut hdr, cookie, errno as u32);
        }
        Answer { pieces: vec![hdr.freeze()], ok: false }
    }
}

/// A reply's bytes and whether it reports success (for the metrics).
struct Answer {
    pieces: Vec<Bytes>,
    ok: bool,
}

impl Answer {
    fn ok(pieces: Vec<Bytes>) -> Self {
        Self { pieces, ok: true }
    }
}

/// A piece of a READ reply.
enum Piece {
    Data(u64, Bytes),
    Hole(u64, u64),
}

fn read_pieces(
    export: &Export,
    buffers: &Arc<BufPool>,
    offset: u64,
    length: u64,
    sparse: bool,
    fetch: Fetch,
) -> Result<Option<Vec<Piece>>, StoreError> {
    if length == 0 {
        return Ok(Some(Vec::new()));
    }
    // invariant: lengths are bounded by max_payload before we get here.
    // The store fills every byte of the buffer, so a recycled one is safe.
    let mut buf = buffers.take(usize::try_from(length).unwrap_or(0));
    if !sparse && fetch == Fetch::Wait {
        export.read(offset, buf.as_mut())?;
        return Ok(Some(vec![Piece::Data(offset, buf.freeze())]));
    }
    // One pass fills the buffer and says where the holes are; holes then go
    // out as OFFSET_HOLE chunks and the data as slices of the same buffer.
    let extents = match fetch {
        Fetch::Wait => export.read_sparse(offset, buf.as_mut())?,
        Fetch::Cached => match export.read_sparse_cached(offset, buf.as_mut())? {
            Some(extents) => extents,
            None => return Ok(None),
        },
    };
    let data = buf.freeze();
    if !sparse || extents.iter().all(|e| e.allocated || !e.zero) {
        return Ok(Some(vec![Piece::Data(offset, data)]));
    }
    if extents.len() == 1 && !extents[0].allocated && extents[0].zero {
        return Ok(Some(vec![Piece::Hole(offset, length)]));
    }
    let mut pieces = Vec::with_capacity(extents.len());
    let mut at = 0usize;
    for e in extents {
        let len = usize::try_from(e.length).unwrap_or(0);
        let abs = offset + at as u64;
        if e.allocated || !e.zero {
            pieces.push(Piece::Data(abs, data.slice(at..at + len)));
        } else {
            pieces.push(Piece::Hole(abs, e.length));
        }
        at += len;
    }
    Ok(Some(pieces))
}

fn zeroes(len: u64) -> Bytes {
    Bytes::from(vec![0u8; usize::try_from(len).unwrap_or(0)])
}

fn request_offset(c: &Command) -> u64 {
    match c {
        Command::Read { offset, .. }
        | Command::Write { offset, .. }
        | Command::Trim { offset, .. }
        | Command::Cache { offset, .. }
        | Command::WriteZeroes { offset, .. }
        | Command::BlockStatus { offset, .. }
        | Command::Flush { offset, .. }
        | Command::Unknown { offset, .. } => *offset,
        _ => 0,
    }
}

/// The only place a store error becomes a wire error (proto.md "Error values").
pub(crate) fn errno_for(kind: u16, err: &StoreError) -> Errno {
    match (err.kind(), kind) {
        (ErrorKind::OutOfRange, cmd::WRITE) => Errno::NoSpc,
        (ErrorKind::OutOfRange, _) => Errno::Inval,
        (ErrorKind::ReadOnly, _) => Errno::Perm,
        (ErrorKind::NoSpace, _) => Errno::NoSpc,
        (ErrorKind::Gone, _) => Errno::Shutdown,
        (ErrorKind::Io | ErrorKind::Corrupt, _) => Errno::Io,
        _ => Errno::Io,
    }
}
