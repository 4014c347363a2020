//! A block format that verifies itself: every written block starts with its
//! own offset, a sequence number and a CRC32C of the rest, so a read can tell
//! a block that is intact from one that holds another block's bytes, torn
//! bytes, or garbage, without remembering what was written.

use std::fmt;

/// Bytes of header at the start of each verified block.
pub const HEADER_LEN: usize = 20;

/// Fills `block` (at least `HEADER_LEN` bytes) for `offset` and `seq`.
pub fn fill_block(block: &mut [u8], offset: u64, seq: u64) {
    let mut x = offset ^ seq.rotate_left(32) ^ 0x9E37_79B9_7F4A_7C15;
    for chunk in block[HEADER_LEN..].chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let b = x.to_le_bytes();
        chunk.copy_from_slice(&b[..chunk.len()]);
    }
    block[..8].copy_from_slice(&offset.to_le_bytes());
    block[8..16].copy_from_slice(&seq.to_le_bytes());
    let crc = crc32c::crc32c(&block[HEADER_LEN..]);
    let crc = crc32c::crc32c_append(crc, &block[..16]);
    block[16..20].copy_from_slice(&crc.to_le_bytes());
}

/// Why a block failed verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyError {
    /// The block carries another block's offset.
    WrongOffset {
        /// where we read
        expected: u64,
        /// what the block says
        found: u64,
    },
    /// The checksum does not match the content.
    BadChecksum {
        /// where we read
        offset: u64,
    },
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VerifyError::WrongOffset { expected, found } => {
                write!(f, "block at {expected} holds the block written at {found}")
            }
            VerifyError::BadChecksum { offset } => {
                write!(f, "block at {offset} fails its checksum")
            }
        }
    }
}

impl std::error::Error for VerifyError {}

/// Checks a block read at `offset`. An all-zero block was never written and
/// passes.
pub fn check_block(block: &[u8], offset: u64) -> Result<(), VerifyError> {
    if block.len() < HEADER_LEN || block.iter().all(|b| *b == 0) {
        return Ok(());
    }
    let found = u64::from_le_bytes(block[..8].try_into().unwrap_or_default());
    if found != offset {
        return Err(VerifyError::WrongOffset { expected: offset, found });
    }
    let stored = u32::from_le_bytes(block[16..20].try_into().unwrap_or_default());
    let crc = crc32c::crc32c(&block[HEADER_LEN..]);
    let crc = crc32c::crc32c_append(crc, &block[..16]);
    if crc != stored {
        return Err(VerifyError::BadChecksum { offset });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intact_blocks_pass() {
        let mut b = vec![0u8; 4096];
        fill_block(&mut b, 8192, 7);
        assert_eq!(check_block(&b, 8192), Ok(()));
        assert_eq!(check_block(&[0u8; 4096], 0), Ok(()), "never-written block");
    }

    #[test]
    fn a_flipped_byte_is_caught() {
        let mut b = vec![0u8; 4096];
        fill_block(&mut b, 8192, 7);
        b[1000] ^= 1;
        assert_eq!(check_block(&b, 8192), Err(VerifyError::BadChecksum { offset: 8192 }));
    }

    #[test]
    fn another_blocks_data_is_caught() {
        let mut b = vec![0u8; 4096];
        fill_block(&mut b, 4096, 1);
        assert_eq!(
            check_block(&b, 8192),
            Err(VerifyError::WrongOffset { expected: 8192, found: 4096 })
        );
    }

    #[test]
    fn a_torn_block_is_caught() {
        let mut a = vec![0u8; 4096];
        let mut b = vec![0u8; 4096];
        fill_block(&mut a, 0, 1);
        fill_block(&mut b, 0, 2);
        a[2048..].copy_from_slice(&b[2048..]);
        assert!(check_block(&a, 0).is_err());
    }
}
