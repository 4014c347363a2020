//! The block-map value: one group of 32 chunk slots at one birth epoch.
//!
//! Encoding (big-endian):
//!
//! ```text
//! u32 present   bit i: slot i is described here (else: fall through to the parent)
//! u32 zero      bit i: slot i reads as zeroes (no chunk); zero ⊆ present
//! u32 owned     bit i: this entry allocated slot i's chunk; owned ⊆ present & !zero
//! u64 chunk[k]  chunk ids (≥ 1) of the slots in present & !zero, in slot order
//! ```

use crate::keys::ChunkId;

/// Chunk slots per group (one map entry).
pub(crate) const SLOTS: usize = 32;
/// `SLOTS` for chunk arithmetic.
pub(crate) const GROUP_SLOTS: u64 = SLOTS as u64;

/// What one slot of an entry says.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Slot {
    /// Not described: read the parent (or zeroes for a root node).
    Absent,
    /// Reads as zeroes.
    Zero,
    /// Data in a chunk; `owned` if this entry allocated it.
    Chunk { id: ChunkId, owned: bool },
}

/// One decoded group entry.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub(crate) struct GroupEntry {
    present: u32,
    zero: u32,
    owned: u32,
    chunks: [u64; SLOTS],
}

impl GroupEntry {
    pub(crate) fn slot(&self, i: usize) -> Slot {
        let bit = 1u32 << i;
        if self.present & bit == 0 {
            Slot::Absent
        } else if self.zero & bit != 0 {
            Slot::Zero
        } else {
            Slot::Chunk { id: ChunkId(self.chunks[i]), owned: self.owned & bit != 0 }
        }
    }

    pub(crate) fn set(&mut self, i: usize, slot: Slot) {
        let bit = 1u32 << i;
        self.present &= !bit;
        self.zero &= !bit;
        self.owned &= !bit;
        self.chunks[i] = 0;
        match slot {
            Slot::Absent => {}
            Slot::Zero => {
                self.present |= bit;
                self.zero |= bit;
            }
            Slot::Chunk { id, owned } => {
                self.present |= bit;
                self.chunks[i] = id.0;
                if owned {
                    self.owned |= bit;
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
        let mut v = Vec::with_capacity(12 + 8 * data.count_ones() as usize);
        v.extend_from_slice(&self.present.to_be_bytes());
        v.extend_from_slice(&self.zero.to_be_bytes());
        v.extend_from_slice(&self.owned.to_be_bytes());
        for i in 0..SLOTS {
            if data & (1 << i) != 0 {
                v.extend_from_slice(&self.chunks[i].to_be_bytes());
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
        let data = present & !zero;
        if zero & !present != 0 || owned & !data != 0 {
            return None;
        }
        if v.len() != 12 + 8 * data.count_ones() as usize {
            return None;
        }
        let mut e = GroupEntry { present, zero, owned, chunks: [0; SLOTS] };
        let mut at = 12;
        for i in 0..SLOTS {
            if data & (1 << i) != 0 {
                let id = u64::from_be_bytes(v[at..at + 8].try_into().ok()?);
                if id == 0 {
                    return None;
                }
                e.chunks[i] = id;
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
        e.set(0, Slot::Chunk { id: ChunkId(0x0a), owned: true });
        e.set(1, Slot::Zero);
        e.set(3, Slot::Chunk { id: ChunkId(0x0b), owned: false });
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
        e.set(5, Slot::Chunk { id: ChunkId(1), owned: true });
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
}
