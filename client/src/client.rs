//! The async NBD client: one connection, pipelined requests matched to
//! replies by cookie. The reader task (`connection.rs`) completes the
//! oneshot each request waits on; requests are written under a lock so each
//! goes out whole.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};
use proto::{
    BlockExtent, BlockSize, ClientConfig, ClientHandshake, ClientNegotiated, ClientStatus, Command,
    CommandFlags, Cookie, Request, TransmissionFlags,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpStream, ToSocketAddrs};
use tokio::sync::{Mutex, oneshot};

use crate::connection::{self, Pending, ReplyData};
use crate::error::ClientError;

/// What the client asks for in the handshake.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// The export name ("" is the server's default export).
    pub export: String,
    /// Ask for structured replies (sparse reads, block status).
    pub structured_replies: bool,
    /// Ask for 64-bit extended headers (falls back if refused).
    pub extended_headers: bool,
    /// Select `base:allocation` for block status.
    pub block_status: bool,
}

impl ConnectOptions {
    /// A modern client: extended headers, structured replies, block status.
    pub fn modern(export: impl Into<String>) -> Self {
        Self {
            export: export.into(),
            structured_replies: true,
            extended_headers: true,
            block_status: true,
        }
    }

    /// The Linux kernel's way: simple replies only.
    pub fn simple(export: impl Into<String>) -> Self {
        Self {
            export: export.into(),
            structured_replies: false,
            extended_headers: false,
            block_status: false,
        }
    }
}

/// An open NBD connection in the transmission phase.
pub struct NbdClient {
    writer: Mutex<OwnedWriteHalf>,
    pending: Arc<std::sync::Mutex<Pending>>,
    next_cookie: AtomicU64,
    negotiated: ClientNegotiated,
    reader: tokio::task::JoinHandle<()>,
}

impl NbdClient {
    /// Connects and negotiates.
    pub async fn connect(
        addr: impl ToSocketAddrs,
        options: ConnectOptions,
    ) -> Result<Self, ClientError> {
        let mut stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let meta =
            if options.block_status { vec![proto::BASE_ALLOCATION.to_owned()] } else { Vec::new() };
        let hs = ClientHandshake::new(ClientConfig {
            export: options.export,
            structured_replies: options.structured_replies,
            extended_headers: options.extended_headers,
            meta_contexts: meta,
            request_info: true,
        });
        let (negotiated, leftover) = match drive(&mut stream, hs).await? {
            (ClientStatus::Done(n), rest) => (n, rest),
            _ => return Err(ClientError::Unexpected("handshake ended without an export")),
        };
        let (rd, wr) = stream.into_split();
        let pending = Arc::new(std::sync::Mutex::new(Pending::new(negotiated.extended_headers)));
        let reader = tokio::spawn(connection::read_replies(rd, leftover, pending.clone()));
        Ok(Self {
            writer: Mutex::new(wr),
            pending,
            next_cookie: AtomicU64::new(1),
            negotiated,
            reader,
        })
    }

    /// Lists the server's exports: (name, description).
    pub async fn list(addr: impl ToSocketAddrs) -> Result<Vec<(String, String)>, ClientError> {
        let mut stream = TcpStream::connect(addr).await?;
        match drive(&mut stream, ClientHandshake::list()).await? {
            (ClientStatus::Listed(exports), _) => Ok(exports),
            _ => Err(ClientError::Unexpected("LIST ended without a list")),
        }
    }

    /// Export size in bytes.
    pub fn size(&self) -> u64 {
        self.negotiated.size
    }

    /// Transmission flags the server sent.
    pub fn flags(&self) -> TransmissionFlags {
        self.negotiated.flags
    }

    /// Block size constraints, if the server sent them.
    pub fn block_size(&self) -> Option<BlockSize> {
        self.negotiated.block_size
    }

    /// Everything negotiated.
    pub fn negotiated(&self) -> &ClientNegotiated {
        &self.negotiated
    }

    /// Reads `length` bytes at `offset`.
    pub async fn read(&self, offset: u64, length: u32) -> Result<Bytes, ClientError> {
        let r = self
            .request(CommandFlags::empty(), Command::Read { offset, length: length.into() })
            .await?;
        match r {
            ReplyData::Read(b) => Ok(b),
            _ => Err(ClientError::Unexpected("read reply without data")),
        }
    }

    /// Writes `data` at `offset`; with `fua` the reply means it is durable.
    pub async fn write(&self, offset: u64, data: Bytes, fua: bool) -> Result<(), ClientError> {
        self.request(fua_flag(fua), Command::Write { offset, data }).await.map(drop)
    }

    /// Makes every completed write durable.
    pub async fn flush(&self) -> Result<(), ClientError> {
        self.request(CommandFlags::empty(), Command::Flush { offset: 0, length: 0 }).await.map(drop)
    }

    /// Discards a range.
    pub async fn trim(&self, offset: u64, length: u64) -> Result<(), ClientError> {
        self.request(CommandFlags::empty(), Command::Trim { offset, length }).await.map(drop)
    }

    /// Zeroes a range (`no_hole` asks the server to keep it allocated).
    pub async fn write_zeroes(
        &self,
        offset: u64,
        length: u64,
        no_hole: bool,
    ) -> Result<(), ClientError> {
        let flags = if no_hole { CommandFlags::NO_HOLE } else { CommandFlags::empty() };
        self.request(flags, Command::WriteZeroes { offset, length }).await.map(drop)
    }

    /// `base:allocation` extents from `offset`.
    pub async fn block_status(
        &self,
        offset: u64,
        length: u64,
    ) -> Result<Vec<BlockExtent>, ClientError> {
        match self.request(CommandFlags::empty(), Command::BlockStatus { offset, length }).await? {
            ReplyData::BlockStatus(e) => Ok(e),
            _ => Err(ClientError::Unexpected("block status reply without extents")),
        }
    }

    /// Sends any request (tests use this for malformed ones) and waits for its reply.
    pub async fn request(
        &self,
        flags: CommandFlags,
        command: Command,
    ) -> Result<ReplyData, ClientError> {
        let cookie = Cookie(self.next_cookie.fetch_add(1, Ordering::Relaxed));
        let req = Request { cookie, flags, command };
        let (tx, rx) = oneshot::channel();
        {
            let mut p = self.pending.lock().map_err(|_| ClientError::Closed)?;
            if p.closed {
                return Err(ClientError::Closed);
            }
            p.insert(cookie, &req, tx);
        }
        let mut buf = BytesMut::new();
        proto::encode_request(&mut buf, &req, self.negotiated.extended_headers);
        {
            let mut w = self.writer.lock().await;
            w.write_all_buf(&mut buf).await?;
        }
        rx.await.map_err(|_| ClientError::Closed)?
    }

    /// Sends NBD_CMD_DISC after waiting for in-flight replies the caller
    /// already awaited, and closes.
    pub async fn disconnect(mut self) -> Result<(), ClientError> {
        let req = Request {
            cookie: Cookie(self.next_cookie.fetch_add(1, Ordering::Relaxed)),
            flags: CommandFlags::empty(),
            command: Command::Disconnect,
        };
        let mut buf = BytesMut::new();
        proto::encode_request(&mut buf, &req, self.negotiated.extended_headers);
        let mut w = self.writer.lock().await;
        w.write_all_buf(&mut buf).await?;
        w.shutdown().await?;
        drop(w);
        // The server closes after DISC; the reader sees EOF and ends.
        let reader = &mut self.reader;
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), reader).await;
        Ok(())
    }
}

impl Drop for NbdClient {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

fn fua_flag(fua: bool) -> CommandFlags {
    if fua { CommandFlags::FUA } else { CommandFlags::empty() }
}

async fn drive(
    stream: &mut TcpStream,
    mut hs: ClientHandshake,
) -> Result<(ClientStatus, BytesMut), ClientError> {
    let mut input = BytesMut::with_capacity(4096);
    let mut output = BytesMut::new();
    loop {
        // Send what the last input produced before waiting for the reply.
        let status = hs.handle_input(&mut input);
        hs.take_output(&mut output);
        if !output.is_empty() {
            let sent = stream.write_all_buf(&mut output).await;
            // A LIST ends with ABORT, which the server may not wait for.
            if !matches!(status, Ok(ClientStatus::Listed(_))) {
                sent?;
            }
        }
        match status? {
            ClientStatus::NeedMore => {
                if stream.read_buf(&mut input).await? == 0 {
                    return Err(ClientError::Closed);
                }
            }
            done => return Ok((done, input)),
        }
    }
}
