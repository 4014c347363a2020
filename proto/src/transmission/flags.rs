//! Flag words of the transmission phase: per-export transmission flags,
//! per-request command flags and per-chunk reply flags.

use bitflags::bitflags;

bitflags! {
    /// Transmission flags (u16) the server sends with the export size.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct TransmissionFlags: u16 {
        /// Always set by the server.
        const HAS_FLAGS = 1 << 0;
        /// Writes, trims and write-zeroes fail with `EPERM`.
        const READ_ONLY = 1 << 1;
        /// `FLUSH` is supported.
        const SEND_FLUSH = 1 << 2;
        /// The `FUA` command flag is supported.
        const SEND_FUA = 1 << 3;
        /// Scheduling hint: seeks are expensive.
        const ROTATIONAL = 1 << 4;
        /// `TRIM` is supported.
        const SEND_TRIM = 1 << 5;
        /// `WRITE_ZEROES` and its `NO_HOLE` flag are supported.
        const SEND_WRITE_ZEROES = 1 << 6;
        /// The `DF` flag on `READ` is supported; only with structured replies.
        const SEND_DF = 1 << 7;
        /// Flush and FUA effects are visible on every connection to the export.
        const CAN_MULTI_CONN = 1 << 8;
        /// Experimental `RESIZE` is supported.
        const SEND_RESIZE = 1 << 9;
        /// `CACHE` is supported.
        const SEND_CACHE = 1 << 10;
        /// The `FAST_ZERO` flag is supported; needs `SEND_WRITE_ZEROES`.
        const SEND_FAST_ZERO = 1 << 11;
        /// `BLOCK_STATUS` may carry a payload (extended headers).
        const BLOCK_STATUS_PAYLOAD = 1 << 12;
    }
}

bitflags! {
    /// Command flags (u16) of one request.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct CommandFlags: u16 {
        /// Force unit access: durable before the reply.
        const FUA = 1 << 0;
        /// `WRITE_ZEROES` must not punch a hole.
        const NO_HOLE = 1 << 1;
        /// Don't fragment: `READ` must come back in one chunk.
        const DF = 1 << 2;
        /// `BLOCK_STATUS` needs only one extent.
        const REQ_ONE = 1 << 3;
        /// `WRITE_ZEROES` must fail fast rather than be slow.
        const FAST_ZERO = 1 << 4;
        /// The length field is a payload length (extended headers).
        const PAYLOAD_LEN = 1 << 5;
    }
}

bitflags! {
    /// Reply flags (u16) of a structured or extended reply chunk.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct ReplyFlags: u16 {
        /// This is the last chunk for the cookie.
        const DONE = 1 << 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observed_qemu_flags_decode() {
        // qemu-nbd writable -e 4: 0x1ded (research §1.6).
        let f = TransmissionFlags::from_bits_retain(0x1ded);
        assert!(f.contains(
            TransmissionFlags::HAS_FLAGS
                | TransmissionFlags::SEND_FLUSH
                | TransmissionFlags::SEND_DF
                | TransmissionFlags::CAN_MULTI_CONN
                | TransmissionFlags::BLOCK_STATUS_PAYLOAD
        ));
        assert!(!f.contains(TransmissionFlags::READ_ONLY));
        assert_eq!(CommandFlags::PAYLOAD_LEN.bits(), 0x20);
        assert_eq!(TransmissionFlags::SEND_FAST_ZERO.bits(), 0x800);
    }
}
