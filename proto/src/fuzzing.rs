//! Entry points shared by the fuzz targets (`/fuzz`) and the property tests,
//! so both exercise exactly the same code. Not part of the stable API.

use bytes::BytesMut;

use crate::{
    BlockSize, ExportCatalog, ExportInfo, HandshakeStatus, ServerConfig, ServerHandshake,
    TransmissionFlags, decode_request, peek_reply_header,
};

/// A small fixed catalog: `"vol"` (the default for `""`) and `"ro"`.
#[derive(Debug, Clone)]
pub struct FixedCatalog(pub Vec<ExportInfo>);

impl FixedCatalog {
    /// Two exports, one writable with every feature and one read-only.
    pub fn sample() -> Self {
        let full = TransmissionFlags::SEND_FLUSH
            | TransmissionFlags::SEND_FUA
            | TransmissionFlags::SEND_TRIM
            | TransmissionFlags::SEND_WRITE_ZEROES
            | TransmissionFlags::SEND_FAST_ZERO
            | TransmissionFlags::SEND_DF
            | TransmissionFlags::SEND_CACHE
            | TransmissionFlags::CAN_MULTI_CONN;
        FixedCatalog(vec![
            ExportInfo {
                name: "vol".into(),
                description: "a test volume".into(),
                size: 64 << 20,
                flags: full,
                block_size: BlockSize::default(),
            },
            ExportInfo {
                name: "ro".into(),
                description: String::new(),
                size: 1 << 20,
                flags: TransmissionFlags::READ_ONLY | TransmissionFlags::SEND_FLUSH,
                block_size: BlockSize { min: 512, preferred: 4096, max: 1 << 20 },
            },
        ])
    }
}

impl ExportCatalog for FixedCatalog {
    fn list(&self) -> Vec<ExportInfo> {
        self.0.clone()
    }

    fn lookup(&self, name: &str) -> Option<ExportInfo> {
        let name = if name.is_empty() { "vol" } else { name };
        self.0.iter().find(|e| e.name == name).cloned()
    }
}

/// Decodes `data` as a request stream in both header modes until it ends
/// or fails, and peeks it as replies too. Must never panic.
pub fn request_decode(data: &[u8]) {
    for extended in [false, true] {
        let mut buf = BytesMut::from(data);
        while let Ok(Some(_)) = decode_request(&mut buf, extended, 4096) {}
        let _ = peek_reply_header(data, extended);
    }
}

/// Feeds `data[1..]` to a server handshake in pieces of `data[0]` bytes
/// (at least 1). Panics if the handshake leaves more unconsumed input than
/// one maximal option.
pub fn server_handshake(data: &[u8]) {
    const MAX: u32 = 1024;
    let catalog = FixedCatalog::sample();
    let mut hs = ServerHandshake::new(ServerConfig { max_option_len: MAX, ..Default::default() });
    let mut out = BytesMut::new();
    let mut input = BytesMut::new();
    let Some((&step, stream)) = data.split_first() else { return };
    for piece in stream.chunks(usize::from(step.max(1))) {
        input.extend_from_slice(piece);
        match hs.handle_input(&mut input, &catalog) {
            Ok(HandshakeStatus::NeedMore) => {
                assert!(input.len() < 16 + MAX as usize, "handshake kept {} bytes", input.len());
            }
            Ok(_) | Err(_) => break,
        }
        hs.take_output(&mut out);
    }
}
