//! What the handshake needs to know about exports: [`ExportInfo`] and the
//! [`ExportCatalog`] trait the server implements over its store.

use crate::consts::DEFAULT_MAX_PAYLOAD;
use crate::transmission::TransmissionFlags;

/// Block size constraints sent in `NBD_INFO_BLOCK_SIZE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlockSize {
    /// Minimum block size: a power of two, at most 64 KiB.
    pub min: u32,
    /// Preferred block size: a power of two, at least `max(min, 512)`.
    pub preferred: u32,
    /// Largest payload accepted; at least `preferred`. `u32::MAX` means no limit.
    pub max: u32,
}

impl Default for BlockSize {
    /// The spec's defaults, with our 32 MiB payload bound as the maximum.
    fn default() -> Self {
        BlockSize { min: 1, preferred: 4096, max: DEFAULT_MAX_PAYLOAD }
    }
}

/// One export as the handshake advertises it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportInfo {
    /// Canonical name (sent in `NBD_INFO_NAME` and `NBD_REP_SERVER`).
    pub name: String,
    /// Human-readable description; may be empty.
    pub description: String,
    /// Size in bytes.
    pub size: u64,
    /// What the export supports. The handshake adds `HAS_FLAGS`, and keeps
    /// `SEND_DF` only when structured replies were negotiated; see
    /// [`ExportInfo::wire_flags`].
    pub flags: TransmissionFlags,
    /// Block size constraints; always advertised.
    pub block_size: BlockSize,
}

impl ExportInfo {
    /// The transmission flags actually sent for this export.
    ///
    /// Adds `HAS_FLAGS`; clears `SEND_DF` without structured replies,
    /// `BLOCK_STATUS_PAYLOAD` without extended headers, and `SEND_FAST_ZERO`
    /// without `SEND_WRITE_ZEROES` (the spec forbids each combination).
    pub fn wire_flags(&self, structured: bool, extended: bool) -> TransmissionFlags {
        let mut f = self.flags | TransmissionFlags::HAS_FLAGS;
        if !structured && !extended {
            f.remove(TransmissionFlags::SEND_DF);
        }
        if !extended {
            f.remove(TransmissionFlags::BLOCK_STATUS_PAYLOAD);
        }
        if !f.contains(TransmissionFlags::SEND_WRITE_ZEROES) {
            f.remove(TransmissionFlags::SEND_FAST_ZERO);
        }
        f
    }
}

/// The server's view of its exports, queried during the handshake.
pub trait ExportCatalog {
    /// Every export, for `NBD_OPT_LIST`.
    fn list(&self) -> Vec<ExportInfo>;
    /// One export by name. `""` asks for the default export; the catalog
    /// decides what that means (or returns `None`).
    fn lookup(&self, name: &str) -> Option<ExportInfo>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn export(flags: TransmissionFlags) -> ExportInfo {
        ExportInfo {
            name: "a".into(),
            description: String::new(),
            size: 0,
            flags,
            block_size: BlockSize::default(),
        }
    }

    #[test]
    fn wire_flags_drop_df_without_structured_replies() {
        let e = export(TransmissionFlags::SEND_DF | TransmissionFlags::SEND_FLUSH);
        assert_eq!(e.wire_flags(false, false).bits(), 0x0005);
        assert_eq!(e.wire_flags(true, false).bits(), 0x0085);
        assert_eq!(e.wire_flags(false, true).bits(), 0x0085);
    }

    #[test]
    fn wire_flags_drop_fast_zero_without_write_zeroes() {
        let e = export(TransmissionFlags::SEND_FAST_ZERO | TransmissionFlags::BLOCK_STATUS_PAYLOAD);
        assert_eq!(e.wire_flags(true, false), TransmissionFlags::HAS_FLAGS);
        let e = export(TransmissionFlags::SEND_FAST_ZERO | TransmissionFlags::SEND_WRITE_ZEROES);
        assert_eq!(e.wire_flags(true, true).bits(), 0x0841);
    }
}
