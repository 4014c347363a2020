//! The block-map value: one group of 32 chunk slots at one birth epoch.
//!
//! Encoding (big-endian):
//!
//! ```text
//! u32 present   bit i: slot i is described here (else: fall through to the parent)
//! u32 zero      bit i: slot i reads as zeroes (no chunk); zero ⊆ present
//! u32 owned     bit i: this entry allocated slot i's chunk; owned ⊆ present & !zero
//! u32 partial   (only when non-zero) bit i: slot i's chunk holds some sub-blocks
//! u64 chunk[k]  chunk ids (≥ 1) of the slots in present & !zero, in slot order
//! u64 mask[p]   (only with `partial`) per partial slot, in slot order: the
//!               sub-blocks its chunk holds (low 32 bits; the high 32 are zero)
//! ```
//!
//! An entry without partial slots keeps the first layout (12 + 8k bytes,
//! 4 mod 8); one with them is 16 + 8k + 8p bytes (0 mod 8), so the length
//! says which, and entries written before partial chunks existed decode as
//! they always did.

use crate::keys::ChunkId;

/// Chunk slots per group (one map entry).
pub(crate) const SLOTS: usize = 32;
/// `SLOTS` for chunk arithmetic.
pub(crate) const GROUP_SLOTS: u64 = SLOTS as u64;
/// The mask of a chunk that holds all its sub-blocks.
pub(crate) const FULL: u32 = u32::MAX;

/// Sub-blocks of a chunk: at most 32 (one mask bit each), at least 4 KiB
/// (a page). Returns (bytes per sub-block, sub-blocks per chunk).
pub(crate) fn sub_blocks(chunk_size: u32) -> (u64, u32) {
    let sub = (chunk_size / 32).max(4096).min(chunk_size);
    (u64::from(sub), chunk_size / sub)
}

/// The mask of sub-blocks that `[off, off + len)` inside a chunk touches;
/// `FULL` when that is all of them.
pub(crate) fn touched(chunk_size: u32, off: u64, len: u64) -> u32 {
    let (sub, _) = sub_blocks(chunk_size);
    let first = off / sub;
    let last = (off + len).div_ceil(sub);
    let mut mask = 0u32;
    for b in first..last {
        mask |= 1 << b;
    }
    normalize(chunk_size, mask)
}

/// Whether a write touching `touched` continues a sequential run through a
/// partial chunk holding `mask`: the held sub-blocks form one run of at
/// least two and the write adds sub-blocks starting right after it. Random
/// writes almost never do: a chunk's second random write would have to land
/// right after its first, and its third right after that.
pub(crate) fn extends_a_run(mask: u32, touched: u32) -> bool {
    let added = touched & !mask;
    let run = mask.checked_shr(mask.trailing_zeros()).unwrap_or(0);
    let one_run = run >= 0b11 && run & run.wrapping_add(1) == 0;
    one_run && added != 0 && added.trailing_zeros() == 32 - mask.leading_zeros()
}

/// The sub-blocks that `[off, off + len)` inside a chunk covers only in
/// part (at most its first and its last).
pub(crate) fn partly_touched(chunk_size: u32, off: u64, len: u64) -> u32 {
    let (sub, _) = sub_blocks(chunk_size);
    let end = off + len;
    let mut mask = 0u32;
    if !off.is_multiple_of(sub) {
        mask |= 1 << (off / sub);
    }
    if !end.is_multiple_of(sub) {
        mask |= 1 << (end / sub);
    }
    mask
}

/// `FULL` for a mask with every sub-block of the chunk set.
pub(crate) fn normalize(chunk_size: u32, mask: u32) -> u32 {
    let (_, count) = sub_blocks(chunk_size);
    let all = if count >= 32 { u32::MAX } else { (1u32 << count) - 1 };
    if mask & all == all { FULL } else { mask }
}

/// What one slot of an entry says.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Slot {
    /// Not described: read the parent (or zeroes for a root node).
    Absent,
    /// Reads as zeroes.
    Zero,
    /// Data in a chunk; `owned` if this entry allocated it. A `mask` other
    /// than `FULL` marks a partial chunk: it holds only those sub-blocks,
    /// the others read as the parent reads them (a first write into a
    /// slot shared with the parent copies only what it touches).
    Chunk { id: ChunkId, owned: bool, mask: u32 },
}

/// One decoded group entry.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub(crate) struct GroupEntry {
    present: u32,
    zero: u32,
    owned: u32,
    partial: u32,
    chunks: [u64; SLOTS],
    masks: [u32; SLOTS],
}

impl GroupEntry {
    pub(crate) fn slot(&self, i: usize) -> Slot {
        let bit = 1u32 << i;
        if self.present & bit == 0 {
            Slot::Absent
        } else if self.zero & bit != 0 {
            Slot::Zero
        } else {
            let mask = if self.partial & bit != 0 { self.masks[i] } else { FULL };
            Slot::Chunk { id: ChunkId(self.chunks[i]), owned: self.owned & bit != 0, mask }
        }
    }

    pub(crate) fn set(&mut self, i: usize, slot: Slot) {
        let bit = 1u32 << i;
        self.present &= !bit;
        self.zero &= !bit;
        self.owned &= !bit;
        self.partial &= !bit;
        self.chunks[i] = 0;
        self.masks[i] = 0;
        match slot {
            Slot::Absent => {}
            Slot::Zero => {
                self.present |= bit;
                self.zero |= bit;
            }
            Slot::Chunk { id, owned, mask } => {
                self.present |= bit;
                self.chunks[i] = id.0;
                if owned {
                    self.owned |= bit;
                }
                if mask != FULL {
                    self.partial |= bit;
                    self.masks[i] = mask;
                }
            }
        }
    }

    /// A copy for a newer birth: same slots, nothing owned.
    pub(crate) fn copy_forward(&self) -> GroupEntry {
        GroupEntry { owned: 0, ..self.clone() }
    }

    /// The chunk ids this entry owns, with their slots.
    pub(crate) fn owned_chunks(&self) -> impl Iterator<Item = (usize, ChunkId)> + '_ {
        (0..SLOTS).filter(|i| self.owned & (1 << i) != 0).map(|i| (i, ChunkId(self.chunks[i])))
    }

    #[cfg(test)]
    pub(crate) fn owned_count(&self) -> u64 {
        u64::from(self.owned.count_ones())
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let data = self.present & !self.zero;
        let n = (data.count_ones() + self.partial.count_ones()) as usize;
        let mut v = Vec::with_capacity(16 + 8 * n);
        v.extend_from_slice(&self.present.to_be_bytes());
        v.extend_from_slice(&self.zero.to_be_bytes());
        v.extend_from_slice(&self.owned.to_be_bytes());
        if self.partial != 0 {
            v.extend_from_slice(&self.partial.to_be_bytes());
        }
        for i in 0..SLOTS {
            if data & (1 << i) != 0 {
                v.extend_from_slice(&self.chunks[i].to_be_bytes());
            }
        }
        for i in 0..SLOTS {
            if self.partial & (1 << i) != 0 {
                v.extend_from_slice(&u64::from(self.masks[i]).to_be_bytes());
            }
        }
        v
    }

    /// Decodes and validates; `None` means corrupt.
    pub(crate) fn decode(v: &[u8]) -> Option<GroupEntry> {
        let word = |i: usize| -> Option<u32> {
            Some(u32::from_be_bytes(v.get(4 * i..4 * i + 4)?.try_into().ok()?))
        };
        let (present, zero, owned) = (word(0)?, word(1)?, word(2)?);
        let (partial, mut at) = if v.len().is_multiple_of(8) { (word(3)?, 16) } else { (0, 12) };
        let data = present & !zero;
        if zero & !present != 0 || owned & !data != 0 || partial & !data != 0 {
            return None;
        }
        if at == 16 && partial == 0 {
            return None;
        }
        let n = (data.count_ones() + partial.count_ones()) as usize;
        if v.len() != at + 8 * n {
            return None;
        }
        let mut e =
            GroupEntry { present, zero, owned, partial, chunks: [0; SLOTS], masks: [0; SLOTS] };
        for i in 0..SLOTS {
            if data & (1 << i) != 0 {
                let id = u64::from_be_bytes(v.get(at..at + 8)?.try_into().ok()?);
                if id == 0 {
                    return None;
                }
                e.chunks[i] = id;
                at += 8;
            }
        }
        for i in 0..SLOTS {
            if partial & (1 << i) != 0 {
                let mask = u64::from_be_bytes(v.get(at..at + 8)?.try_into().ok()?);
                // a partial chunk holds some sub-blocks, not all
                let mask = u32::try_from(mask).ok().filter(|m| *m != 0 && *m != FULL)?;
                e.masks[i] = mask;
                at += 8;
            }
        }
        Some(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_golden() {
        let mut e = GroupEntry::default();
        e.set(0, Slot::Chunk { id: ChunkId(0x0a), owned: true, mask: FULL });
        e.set(1, Slot::Zero);
        e.set(3, Slot::Chunk { id: ChunkId(0x0b), owned: false, mask: FULL });
        #[rustfmt::skip]
        let want = vec![
            0, 0, 0, 0b1011,          // present: slots 0, 1, 3
            0, 0, 0, 0b0010,          // zero: slot 1
            0, 0, 0, 0b0001,          // owned: slot 0
            0, 0, 0, 0, 0, 0, 0, 0x0a, // chunk of slot 0
            0, 0, 0, 0, 0, 0, 0, 0x0b, // chunk of slot 3
        ];
        assert_eq!(e.encode(), want);
        assert_eq!(GroupEntry::decode(&want), Some(e.clone()));
        assert_eq!(e.slot(2), Slot::Absent);
        assert_eq!(e.owned_count(), 1);
    }

    #[test]
    fn corrupt_entries_are_rejected() {
        let mut e = GroupEntry::default();
        e.set(5, Slot::Chunk { id: ChunkId(1), owned: true, mask: FULL });
        let good = e.encode();
        assert!(GroupEntry::decode(&good[..good.len() - 1]).is_none());
        let mut zero_id = good.clone();
        zero_id[19] = 0;
        assert!(GroupEntry::decode(&zero_id).is_none());
        let mut owned_zero = good.clone();
        owned_zero[7] = 1 << 5; // slot 5 zero and owned
        assert!(GroupEntry::decode(&owned_zero).is_none());
        assert!(GroupEntry::decode(&[]).is_none());
    }

    #[test]
    fn partial_entry_golden() {
        let mut e = GroupEntry::default();
        e.set(0, Slot::Chunk { id: ChunkId(0x0a), owned: true, mask: FULL });
        e.set(2, Slot::Chunk { id: ChunkId(0x0c), owned: true, mask: 0b0110 });
        #[rustfmt::skip]
        let want = vec![
            0, 0, 0, 0b0101,           // present: slots 0, 2
            0, 0, 0, 0,                // zero: none
            0, 0, 0, 0b0101,           // owned: slots 0, 2
            0, 0, 0, 0b0100,           // partial: slot 2
            0, 0, 0, 0, 0, 0, 0, 0x0a, // chunk of slot 0
            0, 0, 0, 0, 0, 0, 0, 0x0c, // chunk of slot 2
            0, 0, 0, 0, 0, 0, 0, 0b0110, // sub-blocks 1 and 2 of slot 2
        ];
        assert_eq!(e.encode(), want);
        assert_eq!(GroupEntry::decode(&want), Some(e.clone()));
        assert_eq!(e.slot(2), Slot::Chunk { id: ChunkId(0x0c), owned: true, mask: 0b0110 });
        // copied forward, a partial slot stays partial
        assert_eq!(
            e.copy_forward().slot(2),
            Slot::Chunk { id: ChunkId(0x0c), owned: false, mask: 0b0110 }
        );
        // a partial bit on a zero slot, an empty or full mask, a missing mask
        let mut bad = want.clone();
        bad[15] = 0b0001 | 0b0100;
        assert!(GroupEntry::decode(&bad).is_none());
        let mut empty = want.clone();
        empty[39] = 0;
        assert!(GroupEntry::decode(&empty).is_none());
        let mut full = want.clone();
        full[32..36].copy_from_slice(&[0xff; 4]);
        full[36..40].copy_from_slice(&[0xff; 4]);
        assert!(GroupEntry::decode(&full).is_none());
        assert!(GroupEntry::decode(&want[..want.len() - 8]).is_none());
    }

    #[test]
    fn sub_block_geometry() {
        assert_eq!(sub_blocks(65536), (4096, 16));
        assert_eq!(sub_blocks(4096), (4096, 1));
        assert_eq!(sub_blocks(1 << 20), (32768, 32));
        assert_eq!(touched(65536, 0, 4096), 0b1);
        assert_eq!(touched(65536, 4000, 200), 0b11);
        assert_eq!(touched(65536, 0, 65536), FULL);
        assert_eq!(touched(4096, 0, 512), FULL);
        assert_eq!(touched(1 << 20, 0, 1 << 20), FULL);
        assert_eq!(partly_touched(65536, 0, 4096), 0);
        assert_eq!(partly_touched(65536, 4000, 200), 0b11);
        assert_eq!(partly_touched(65536, 4096 + 10, 10), 0b10);
        assert_eq!(partly_touched(65536, 61440 + 1, 4095), 1 << 15);
        assert_eq!(normalize(65536, 0xffff), FULL);
        assert_eq!(normalize(65536, 0x7fff), 0x7fff);
        // right after one run of two or more, overlapping its end and adding
        assert!(extends_a_run(0b0011, 0b1100));
        assert!(extends_a_run(0b0110, 0b1000));
        assert!(extends_a_run(0b0110, 0b1100));
        assert!(extends_a_run(0x7fff, 1 << 15));
        // after a single sub-block, before a run, away from it, after two
        // runs, nothing added
        assert!(!extends_a_run(0b0010, 0b0110));
        assert!(!extends_a_run(0b0001, 0b0010));
        assert!(!extends_a_run(0b11000, 0b00100));
        assert!(!extends_a_run(1 << 15, 1 << 14));
        assert!(!extends_a_run(0b0001, 0b0100));
        assert!(!extends_a_run(0b1001, 0b110000));
        assert!(!extends_a_run(0b0110, 0b0010));
    }
}
