//! Drives `proto::ServerHandshake` over a socket and maps store exports to
//! the protocol's `ExportInfo`. The protocol logic itself lives in proto.

use bytes::BytesMut;
use proto::{
    BlockSize, ExportCatalog, ExportInfo, HandshakeStatus, Negotiated, ServerConfig,
    ServerHandshake, TransmissionFlags,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::config::DEFAULT_VOLUME;

/// The store's exports as the handshake sees them.
pub(crate) struct StoreCatalog<'a> {
    pub(crate) store: &'a store::Store,
    pub(crate) max_payload: u32,
}

/// Flags every writable export advertises. All connections share one engine
/// and one commit covers them all, so CAN_MULTI_CONN is honest. SEND_DF is
/// offered as-is; the handshake clears it unless structured replies are on.
fn writable_flags() -> TransmissionFlags {
    TransmissionFlags::SEND_FLUSH
        | TransmissionFlags::SEND_FUA
        | TransmissionFlags::SEND_TRIM
        | TransmissionFlags::SEND_WRITE_ZEROES
        | TransmissionFlags::SEND_FAST_ZERO
        | TransmissionFlags::SEND_CACHE
        | TransmissionFlags::SEND_DF
        | TransmissionFlags::CAN_MULTI_CONN
}

fn read_only_flags() -> TransmissionFlags {
    TransmissionFlags::READ_ONLY
        | TransmissionFlags::SEND_FLUSH
        | TransmissionFlags::SEND_CACHE
        | TransmissionFlags::SEND_DF
        | TransmissionFlags::CAN_MULTI_CONN
}

impl StoreCatalog<'_> {
    fn info(&self, e: store::ExportSummary) -> ExportInfo {
        let flags = if e.read_only { read_only_flags() } else { writable_flags() };
        ExportInfo {
            name: e.name,
            description: e.description,
            size: e.size,
            flags,
            // Byte-granular IO works; the chunk is the unit that avoids copy-up.
            block_size: BlockSize { min: 1, preferred: e.chunk_size, max: self.max_payload },
        }
    }
}

/// The default export ("" in GO/EXPORT_NAME) is the `default` volume.
pub(crate) fn canonical_name(name: &str) -> &str {
    if name.is_empty() { DEFAULT_VOLUME } else { name }
}

impl ExportCatalog for StoreCatalog<'_> {
    fn list(&self) -> Vec<ExportInfo> {
        self.store.exports().into_iter().map(|e| self.info(e)).collect()
    }

    fn lookup(&self, name: &str) -> Option<ExportInfo> {
        let name = canonical_name(name);
        self.store.exports().into_iter().find(|e| e.name == name).map(|e| self.info(e))
    }
}

/// How a handshake ended without an error.
pub(crate) enum Outcome {
    /// Transmission starts; the bytes are input already read past the handshake.
    Transmission(Negotiated, BytesMut),
    /// The client aborted or closed.
    Closed,
}

/// Runs the handshake to its end. The caller bounds it with a timeout.
pub(crate) async fn negotiate<S>(
    stream: &mut S,
    catalog: &StoreCatalog<'_>,
) -> Result<Outcome, HandshakeFailure>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut hs = ServerHandshake::new(ServerConfig::default());
    let mut input = BytesMut::with_capacity(4096);
    let mut output = BytesMut::with_capacity(512);
    loop {
        // Replies queued by the last input go out before we wait for more:
        // the client waits for them before it sends its next option.
        let status = hs.handle_input(&mut input, catalog);
        hs.take_output(&mut output);
        if !output.is_empty() {
            let sent = stream.write_all_buf(&mut output).await;
            // After ABORT the client may already be gone; the spec lets
            // either side close then.
            if !matches!(status, Ok(HandshakeStatus::Aborted)) {
                sent?;
            }
        }
        match status? {
            HandshakeStatus::NeedMore => {
                if stream.read_buf(&mut input).await? == 0 {
                    return Ok(Outcome::Closed);
                }
            }
            HandshakeStatus::Done(negotiated) => {
                return Ok(Outcome::Transmission(negotiated, input));
            }
            HandshakeStatus::Aborted => return Ok(Outcome::Closed),
        }
    }
}

/// Why a handshake ended the connection.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HandshakeFailure {
    /// Socket error.
    #[error("handshake i/o")]
    Io(#[from] std::io::Error),
    /// The client broke the protocol.
    #[error("handshake protocol")]
    Protocol(#[from] proto::HandshakeError),
}
