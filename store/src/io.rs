//! The data path on one node (ARCHITECTURE "Write path"): reads, writes with
//! copy-on-write, zeroing and block status. Callers hold the node's `op`
//! lock shared and have checked ranges; this module takes the group locks.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::engine::Engine;
use crate::entry::{GROUP_SLOTS, GroupEntry, SLOTS, Slot};
use crate::error::StoreError;
use crate::node::{HEAD, NodeState, Res, Resolved};
use crate::pending::{OwnedDelta, PENDING_HARD_LIMIT, PENDING_SOFT_LIMIT};

/// One piece of a request inside one chunk.
#[derive(Copy, Clone, Debug)]
pub(crate) struct Piece {
    pub(crate) slot: usize,
    /// Offset inside the chunk.
    pub(crate) off: u64,
    pub(crate) len: u64,
    /// Offset inside the request.
    pub(crate) at: usize,
}

/// Splits `[offset, offset + len)` into per-group lists of chunk pieces.
pub(crate) fn split(chunk_size: u32, offset: u64, len: u64) -> Vec<(u64, Vec<Piece>)> {
    let cs = u64::from(chunk_size);
    let mut out: Vec<(u64, Vec<Piece>)> = Vec::new();
    let mut pos = offset;
    let end = offset + len;
    while pos < end {
        let chunk = pos / cs;
        let off = pos % cs;
        let n = (cs - off).min(end - pos);
        let group = chunk / GROUP_SLOTS;
        let piece = Piece {
            slot: (chunk % GROUP_SLOTS) as usize,
            off,
            len: n,
            at: usize::try_from(pos - offset).unwrap_or(usize::MAX),
        };
        match out.last_mut() {
            Some((g, v)) if *g == group => v.push(piece),
            _ => out.push((group, vec![piece])),
        }
        pos += n;
    }
    out
}

fn us(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// The entry a change to the head starts from.
pub(crate) fn base(r: &Resolved, head: u64) -> GroupEntry {
    match &r.own {
        Some((b, e)) if *b == head => e.clone(),
        Some((_, e)) => {
            let mut n = e.copy_forward();
            for i in 0..SLOTS {
                if r.own_masked & (1 << i) != 0 {
                    n.set(i, Slot::Zero);
                }
            }
            n
        }
        None => GroupEntry::default(),
    }
}

/// The head's own chunk in `slot` if the head may write it in place.
fn private_chunk(r: &Resolved, head: u64, slot: usize) -> Option<crate::keys::ChunkId> {
    match &r.own {
        Some((b, e)) if *b == head => match e.slot(slot) {
            Slot::Chunk { id, owned: true } => Some(id),
            _ => None,
        },
        _ => None,
    }
}

impl Engine {
    pub(crate) fn read_node(
        &self,
        node: &Arc<NodeState>,
        bound: u64,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<(), StoreError> {
        for (group, pieces) in split(node.chunk_size, offset, buf.len() as u64) {
            let _g = self.read_stripe(node.id, group);
            let r = self.resolve_group(node, group, bound)?;
            for p in pieces {
                let dst = &mut buf[p.at..p.at + us(p.len)];
                match r.slots[p.slot] {
                    Res::Zero => dst.fill(0),
                    Res::Chunk(id) => self.data.read(node.class, id, p.off, dst)?,
                }
            }
        }
        Ok(())
    }

    pub(crate) fn write_node(
        &self,
        node: &Arc<NodeState>,
        offset: u64,
        data: &[u8],
    ) -> Result<(), StoreError> {
        for (group, pieces) in split(node.chunk_size, offset, data.len() as u64) {
            self.write_group(node, group, &pieces, |p| &data[p.at..p.at + us(p.len)])?;
        }
        self.after_change()
    }

    /// Writes pieces of one group; `bytes` gives each piece's data.
    fn write_group<'d>(
        &self,
        node: &Arc<NodeState>,
        group: u64,
        pieces: &[Piece],
        bytes: impl Fn(&Piece) -> &'d [u8],
    ) -> Result<(), StoreError> {
        let cs = u64::from(node.chunk_size);
        let _g = self.write_stripe(node.id, group);
        let head = node.head();
        let r = self.resolve_group(node, group, HEAD)?;
        let mut entry: Option<GroupEntry> = None;
        let mut used = Vec::new();
        let mut scratch = Vec::new();
        for p in pieces {
            let src = bytes(p);
            if let Some(id) = private_chunk(&r, head, p.slot) {
                if let Err(e) = self.data.write(node.class, id, p.off, src) {
                    used.iter().for_each(|a| self.alloc.unuse(*a, &self.pending));
                    return Err(e);
                }
                continue;
            }
            // copy-on-write: a new chunk, always written in full
            let a = self.alloc.alloc(node.class);
            self.write_stats.chunks_allocated.fetch_add(1, Ordering::Relaxed);
            if matches!(r.slots[p.slot], Res::Chunk(_)) {
                self.write_stats.copy_ups.fetch_add(1, Ordering::Relaxed);
            }
            let full: &[u8] = if p.len == cs {
                src
            } else {
                scratch.resize(us(cs), 0);
                let got = match r.slots[p.slot] {
                    Res::Zero => {
                        scratch.fill(0);
                        Ok(())
                    }
                    Res::Chunk(old) => self.data.read(node.class, old, 0, &mut scratch),
                };
                if let Err(e) = got {
                    used.push(a);
                    used.iter().for_each(|a| self.alloc.unuse(*a, &self.pending));
                    return Err(e);
                }
                scratch[us(p.off)..us(p.off + p.len)].copy_from_slice(src);
                &scratch
            };
            used.push(a);
            if let Err(e) = self.data.write(node.class, a.id, 0, full) {
                used.iter().for_each(|a| self.alloc.unuse(*a, &self.pending));
                return Err(e);
            }
            entry
                .get_or_insert_with(|| base(&r, head))
                .set(p.slot, Slot::Chunk { id: a.id, owned: true });
        }
        if let Some(e) = entry {
            let delta = OwnedDelta {
                counters: &node.owned,
                node: node.id,
                birth: head,
                delta: used.len() as i64,
            };
            self.pending.record(vec![((node.id, group, head), Some(e))], &used, &[], &[delta]);
        }
        Ok(())
    }

    /// Whole chunks in the range become zero slots; partial chunks get zero
    /// bytes written unless `partial_too` is false or they already read as zero.
    pub(crate) fn zero_node(
        &self,
        node: &Arc<NodeState>,
        offset: u64,
        len: u64,
        partial_too: bool,
    ) -> Result<(), StoreError> {
        let cs = u64::from(node.chunk_size);
        let zeros = vec![0u8; us(cs)];
        for (group, pieces) in split(node.chunk_size, offset, len) {
            let (whole, part): (Vec<Piece>, Vec<Piece>) =
                pieces.into_iter().partition(|p| p.len == cs);
            if !whole.is_empty() {
                self.unmap_group(node, group, &whole)?;
            }
            if partial_too && !part.is_empty() {
                let r = {
                    let _g = self.read_stripe(node.id, group);
                    self.resolve_group(node, group, HEAD)?
                };
                let part: Vec<Piece> =
                    part.into_iter().filter(|p| r.slots[p.slot] != Res::Zero).collect();
                if !part.is_empty() {
                    self.write_group(node, group, &part, |p| &zeros[..us(p.len)])?;
                }
            }
        }
        self.after_change()
    }

    fn unmap_group(
        &self,
        node: &Arc<NodeState>,
        group: u64,
        whole: &[Piece],
    ) -> Result<(), StoreError> {
        let _g = self.write_stripe(node.id, group);
        let head = node.head();
        let r = self.resolve_group(node, group, HEAD)?;
        let mut entry: Option<GroupEntry> = None;
        let mut freed = Vec::new();
        for p in whole {
            if r.slots[p.slot] == Res::Zero {
                continue;
            }
            if let Some(id) = private_chunk(&r, head, p.slot) {
                freed.push((node.class, id));
            }
            entry.get_or_insert_with(|| base(&r, head)).set(p.slot, Slot::Zero);
        }
        if let Some(e) = entry {
            let delta = OwnedDelta {
                counters: &node.owned,
                node: node.id,
                birth: head,
                delta: -(freed.len() as i64),
            };
            self.pending.record(vec![((node.id, group, head), Some(e))], &[], &freed, &[delta]);
        }
        Ok(())
    }

    /// `(length, allocated)` runs covering `[offset, offset + len)`.
    pub(crate) fn status_node(
        &self,
        node: &Arc<NodeState>,
        bound: u64,
        offset: u64,
        len: u64,
    ) -> Result<Vec<(u64, bool)>, StoreError> {
        let mut out: Vec<(u64, bool)> = Vec::new();
        for (group, pieces) in split(node.chunk_size, offset, len) {
            let r = {
                let _g = self.read_stripe(node.id, group);
                self.resolve_group(node, group, bound)?
            };
            for p in pieces {
                let allocated = matches!(r.slots[p.slot], Res::Chunk(_));
                match out.last_mut() {
                    Some((l, a)) if *a == allocated => *l += p.len,
                    _ => out.push((p.len, allocated)),
                }
            }
        }
        Ok(out)
    }

    /// Bounds the pending map: past the soft limit the background thread
    /// commits; past the hard limit the writer itself waits for a commit.
    fn after_change(&self) -> Result<(), StoreError> {
        let n = self.pending.len();
        if n > PENDING_HARD_LIMIT {
            self.commit()
        } else {
            if n > PENDING_SOFT_LIMIT {
                self.wake_background();
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_by_group_and_chunk() {
        let g = split(4096, 4000, 200);
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].1.len(), 2);
        assert_eq!((g[0].1[0].off, g[0].1[0].len, g[0].1[0].at), (4000, 96, 0));
        assert_eq!((g[0].1[1].slot, g[0].1[1].off, g[0].1[1].len, g[0].1[1].at), (1, 0, 104, 96));
        let g = split(4096, 31 * 4096, 8192);
        assert_eq!(g.iter().map(|(g, _)| *g).collect::<Vec<_>>(), vec![0, 1]);
        assert!(split(4096, 10, 0).is_empty());
    }
}
