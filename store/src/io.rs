//! The data path on one node (ARCHITECTURE "Write path"): reads, writes with
//! copy-on-write, zeroing and block status. Callers hold the node's `op`
//! lock shared and have checked ranges; this module takes the group locks.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::data::{DataFiles, Fetch};
use crate::engine::Engine;
use crate::entry::{
    FULL, GROUP_SLOTS, GroupEntry, SLOTS, Slot, extends_a_run, normalize, partly_touched,
    sub_blocks, touched,
};
use crate::error::StoreError;
use crate::export::Extent;
use crate::iobuf::IoBuf;
use crate::keys::ChunkId;
use crate::node::{Base, HEAD, NodeState, Res, Resolved};
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

/// The chunk pieces of one group's part of a request, in order.
#[derive(Copy, Clone, Debug)]
pub(crate) struct GroupPieces {
    cs: u64,
    pos: u64,
    end: u64,
    /// Where the request starts.
    start: u64,
}

impl Iterator for GroupPieces {
    type Item = Piece;

    fn next(&mut self) -> Option<Piece> {
        if self.pos >= self.end {
            return None;
        }
        let chunk = self.pos / self.cs;
        let off = self.pos % self.cs;
        let len = (self.cs - off).min(self.end - self.pos);
        let piece =
            Piece { slot: (chunk % GROUP_SLOTS) as usize, off, len, at: us(self.pos - self.start) };
        self.pos += len;
        Some(piece)
    }
}

/// Splits `[offset, offset + len)` into groups and their chunk pieces
/// (without allocating).
pub(crate) fn groups(
    chunk_size: u32,
    offset: u64,
    len: u64,
) -> impl Iterator<Item = (u64, GroupPieces)> {
    let cs = u64::from(chunk_size);
    let span = cs * GROUP_SLOTS;
    let end = offset + len;
    let mut pos = offset;
    std::iter::from_fn(move || {
        if pos >= end {
            return None;
        }
        let group = pos / span;
        let group_end = (group + 1).saturating_mul(span).min(end);
        let pieces = GroupPieces { cs, pos, end: group_end, start: offset };
        pos = group_end;
        Some((group, pieces))
    })
}

fn us(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// Pieces that lie back to back both in the request and in one data file,
/// so one `read_at` serves them all.
#[derive(Copy, Clone, Debug)]
struct Run {
    first: ChunkId,
    last: ChunkId,
    /// Offset inside the first chunk.
    off: u64,
    /// Offset inside the request.
    at: usize,
    len: usize,
}

impl Run {
    fn start(id: ChunkId, p: &Piece) -> Run {
        Run { first: id, last: id, off: p.off, at: p.at, len: us(p.len) }
    }

    /// Adds `p` (in chunk `id`) if it continues the run on disk and in the request.
    fn extend(&mut self, id: ChunkId, p: &Piece, cs: u64, class: u8, data: &DataFiles) -> bool {
        let to_chunk_end = (self.off + self.len as u64).is_multiple_of(cs);
        if to_chunk_end
            && p.off == 0
            && p.at == self.at + self.len
            && data.next_on_disk(class, self.last) == Some(id)
        {
            self.last = id;
            self.len += us(p.len);
            true
        } else {
            false
        }
    }
}

/// Adds `len` bytes to block-status runs, merging equal neighbours.
fn push_extent(out: &mut Vec<Extent>, len: u64, allocated: bool) {
    match out.last_mut() {
        Some(x) if x.allocated == allocated => x.length += len,
        _ => out.push(Extent { length: len, allocated, zero: !allocated }),
    }
}

/// Where the bytes of a write come from.
#[derive(Copy, Clone)]
enum Src<'d> {
    /// The request's data (piece `p` is at `p.at`).
    Data(&'d [u8]),
    /// Zero bytes, at least a chunk of them.
    Zeros(&'d [u8]),
}

impl<'d> Src<'d> {
    fn bytes(self, at: usize, len: usize) -> &'d [u8] {
        match self {
            Src::Data(d) => &d[at..at + len],
            Src::Zeros(z) => &z[..len],
        }
    }
}

/// The entry a change to the head starts from.
pub(crate) fn base(r: &Resolved, head: u64) -> GroupEntry {
    match r.own() {
        Some((b, e)) if b == head => e.clone(),
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

/// The head's own chunk in `slot`, with its sub-block mask, if the head
/// may write it in place.
fn private_chunk(r: &Resolved, head: u64, slot: usize) -> Option<(ChunkId, u32)> {
    match r.own() {
        Some((b, e)) if b == head => match e.slot(slot) {
            Slot::Chunk { id, owned: true, mask } => Some((id, mask)),
            _ => None,
        },
        _ => None,
    }
}

impl Engine {
    /// Fills `buf` from `offset` at `bound`, with one resolve per group;
    /// zero slots are filled without touching files and physically adjacent
    /// chunks are read at once. With `extents`, also the allocation runs of
    /// the range (as `status_node`).
    pub(crate) fn read_node(
        &self,
        node: &Arc<NodeState>,
        bound: u64,
        offset: u64,
        buf: &mut [u8],
        mut extents: Option<&mut Vec<Extent>>,
        fetch: Fetch,
    ) -> Result<(), StoreError> {
        let cs = u64::from(node.chunk_size);
        for (group, pieces) in groups(node.chunk_size, offset, buf.len() as u64) {
            let _g = self.read_stripe(node.id, group);
            let r = self.resolve_group(node, group, bound)?;
            let mut run: Option<Run> = None;
            for p in pieces {
                let allocated = match r.slots[p.slot] {
                    Res::Zero => {
                        buf[p.at..p.at + us(p.len)].fill(0);
                        false
                    }
                    Res::Chunk(id) => {
                        if !run
                            .as_mut()
                            .is_some_and(|run| run.extend(id, &p, cs, node.class, &self.data))
                            && let Some(done) = run.replace(Run::start(id, &p))
                        {
                            self.read_run(node.class, done, buf, fetch)?;
                        }
                        true
                    }
                    res @ Res::Partial { .. } => {
                        if let Some(done) = run.take() {
                            self.read_run(node.class, done, buf, fetch)?;
                        }
                        let out = &mut buf[p.at..p.at + us(p.len)];
                        self.read_slot(node.class, node.chunk_size, res, p.off, out, fetch)?;
                        true
                    }
                };
                if let Some(out) = extents.as_deref_mut() {
                    push_extent(out, p.len, allocated);
                }
            }
            if let Some(done) = run {
                self.read_run(node.class, done, buf, fetch)?;
            }
        }
        Ok(())
    }

    fn read_run(
        &self,
        class: u8,
        run: Run,
        buf: &mut [u8],
        fetch: Fetch,
    ) -> Result<(), StoreError> {
        self.data.read(class, run.first, run.off, &mut buf[run.at..run.at + run.len], fetch)
    }

    /// Fills `out` with what a slot resolved to `res` holds from `off`
    /// inside its chunk: a partial chunk's sub-blocks from it, the others
    /// from below, each run of one source with one read.
    pub(crate) fn read_slot(
        &self,
        class: u8,
        chunk_size: u32,
        res: Res,
        off: u64,
        out: &mut [u8],
        fetch: Fetch,
    ) -> Result<(), StoreError> {
        let (id, mask, below) = match res {
            Res::Zero => {
                out.fill(0);
                return Ok(());
            }
            Res::Chunk(id) => return self.data.read(class, id, off, out, fetch),
            Res::Partial { id, mask, below } => (id, mask, below),
        };
        let (sub, _) = sub_blocks(chunk_size);
        let held = |pos: u64| mask & (1 << (pos / sub)) != 0;
        let end = off + out.len() as u64;
        let mut pos = off;
        while pos < end {
            let own = held(pos);
            let mut stop = ((pos / sub + 1) * sub).min(end);
            while stop < end && held(stop) == own {
                stop = ((stop / sub + 1) * sub).min(end);
            }
            let piece = &mut out[us(pos - off)..us(stop - off)];
            match (own, below.chunk()) {
                (true, _) => self.data.read(class, id, pos, piece, fetch)?,
                (false, Some(b)) => self.data.read(class, b, pos, piece, fetch)?,
                (false, None) => piece.fill(0),
            }
            pos = stop;
        }
        Ok(())
    }

    /// Copies into partial chunk `id` the sub-blocks in `which` from
    /// `below` (what the slot reads where the chunk holds nothing).
    pub(crate) fn fill_sub_blocks(
        &self,
        class: u8,
        chunk_size: u32,
        id: ChunkId,
        below: Base,
        which: u32,
        scratch: &mut IoBuf,
    ) -> Result<(), StoreError> {
        let (sub, count) = sub_blocks(chunk_size);
        let mut b = 0;
        while b < count {
            if which & (1 << b) == 0 {
                b += 1;
                continue;
            }
            let first = b;
            while b < count && which & (1 << b) != 0 {
                b += 1;
            }
            let (lo, hi) = (u64::from(first) * sub, u64::from(b) * sub);
            scratch.resize(us(hi - lo));
            match below.chunk() {
                Some(from) => self.data.read(class, from, lo, scratch, Fetch::Wait)?,
                None => scratch.fill(0),
            }
            self.data.write(class, id, lo, scratch)?;
            self.write_stats.copy_up_bytes.fetch_add(hi - lo, Ordering::Relaxed);
        }
        Ok(())
    }

    pub(crate) fn write_node(
        &self,
        node: &Arc<NodeState>,
        offset: u64,
        data: &[u8],
    ) -> Result<(), StoreError> {
        let mut run = None;
        for (group, pieces) in groups(node.chunk_size, offset, data.len() as u64) {
            self.write_group(node, group, pieces, Src::Data(data), &mut run)?;
        }
        self.after_change()
    }

    /// Writes pieces of one group from `src`: in place where the head owns
    /// the chunk, else copy-on-write into a new chunk, placed on disk right
    /// after the chunk that holds the data just before it, when it can
    /// (`alloc.rs`). Pieces are in order; `run` follows them, across groups
    /// (`None` to start from what the map holds before the first piece).
    fn write_group(
        &self,
        node: &Arc<NodeState>,
        group: u64,
        pieces: impl Iterator<Item = Piece>,
        src: Src<'_>,
        run: &mut Option<ChunkId>,
    ) -> Result<(), StoreError> {
        let cs = u64::from(node.chunk_size);
        let class = node.class;
        let _g = self.write_stripe(node.id, group);
        let head = node.head();
        let r = self.resolve_group(node, group, HEAD)?;
        let mut entry: Option<GroupEntry> = None;
        let mut used = Vec::new();
        let mut scratch = IoBuf::default();
        let mut prev_slot = None;
        let written = (|| -> Result<(), StoreError> {
            for p in pieces {
                let data = src.bytes(p.at, us(p.len));
                let touched = touched(node.chunk_size, p.off, p.len);
                // a piece that does not follow the previous one (the first
                // of a write, or a gap) continues what lies before it: a
                // sequential writer's previous request
                let follows = prev_slot.map_or(run.is_some(), |s: usize| s + 1 == p.slot);
                if !follows {
                    *run = match p.slot.checked_sub(1).map(|s| r.slots[s]) {
                        Some(Res::Chunk(id) | Res::Partial { id, .. }) => Some(id),
                        _ => None,
                    };
                }
                prev_slot = Some(p.slot);
                if let Some((id, mask)) = private_chunk(&r, head, p.slot) {
                    *run = Some(id);
                    if mask != FULL && touched & !mask != 0 {
                        // A write that adds sub-blocks to a partial chunk
                        // adds them to its mask (one map update, no copy);
                        // an edge sub-block it covers only in part first
                        // takes the rest from below. A write that continues
                        // the one run of sub-blocks the chunk holds is most
                        // likely part of a sequential run (a WAL, a file
                        // being written): it completes the chunk instead,
                        // so the rest of the run overwrites in place. Every
                        // map update makes the next FLUSH commit the map
                        // (a second fsync); a WAL paid that at every write.
                        let below = match r.slots[p.slot] {
                            Res::Partial { below, .. } => below,
                            _ => Base::ZERO,
                        };
                        let part = partly_touched(node.chunk_size, p.off, p.len);
                        let (fill, mask) = if extends_a_run(mask, touched) {
                            (!mask & !(touched & !part), FULL)
                        } else {
                            (part & !mask, normalize(node.chunk_size, mask | touched))
                        };
                        self.fill_sub_blocks(
                            class,
                            node.chunk_size,
                            id,
                            below,
                            fill,
                            &mut scratch,
                        )?;
                        entry
                            .get_or_insert_with(|| base(&r, head))
                            .set(p.slot, Slot::Chunk { id, owned: true, mask });
                    }
                    // No coalescing of writes to adjacent chunks: one large write
                    // makes the page cache use large folios (ext4 on Linux 6.x),
                    // and later 4 KiB overwrites in place then cost 3-5 times more.
                    self.data.write(class, id, p.off, data)?;
                    continue;
                }
                // copy-on-write into a new chunk
                let a = self.alloc.alloc(class, *run);
                *run = Some(a.id);
                used.push(a);
                self.write_stats.chunks_allocated.fetch_add(1, Ordering::Relaxed);
                if r.slots[p.slot] != Res::Zero {
                    self.write_stats.copy_ups.fetch_add(1, Ordering::Relaxed);
                }
                // A first write into data the parent holds copies only the
                // sub-blocks it touches (as qcow2's subclusters do): the
                // rest keeps reading through to the parent, whose view of
                // this slot cannot change while the clone exists. Anything
                // else (zeroes, a chunk of our own snapshot, a partial chunk
                // below) is copied whole.
                let own_absent = r.own().is_none_or(|(_, e)| e.slot(p.slot) == Slot::Absent);
                let mask = match r.slots[p.slot] {
                    Res::Chunk(_) if own_absent => touched,
                    _ => FULL,
                };
                entry
                    .get_or_insert_with(|| base(&r, head))
                    .set(p.slot, Slot::Chunk { id: a.id, owned: true, mask });
                let (lo, hi) = if mask == FULL {
                    (0, cs)
                } else {
                    let (sub, _) = sub_blocks(node.chunk_size);
                    (p.off / sub * sub, (p.off + p.len).div_ceil(sub) * sub)
                };
                if lo == p.off && hi == p.off + p.len {
                    self.data.write(class, a.id, p.off, data)?;
                    continue;
                }
                scratch.resize(us(hi - lo));
                self.read_slot(
                    class,
                    node.chunk_size,
                    r.slots[p.slot],
                    lo,
                    &mut scratch,
                    Fetch::Wait,
                )?;
                scratch[us(p.off - lo)..us(p.off - lo + p.len)].copy_from_slice(data);
                self.data.write(class, a.id, lo, &scratch)?;
                let copied = hi - lo - p.len;
                self.write_stats.copy_up_bytes.fetch_add(copied, Ordering::Relaxed);
            }
            Ok(())
        })();
        if let Err(e) = written {
            used.iter().for_each(|a| self.alloc.unuse(*a, &self.pending));
            return Err(e);
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
        for (group, pieces) in groups(node.chunk_size, offset, len) {
            let (whole, part): (Vec<Piece>, Vec<Piece>) = pieces.partition(|p| p.len == cs);
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
                    // the pieces are a range's partial ends, not one run:
                    // each is placed after what lies before it
                    let mut run = None;
                    self.write_group(node, group, part.into_iter(), Src::Zeros(&zeros), &mut run)?;
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
            if let Some((id, _)) = private_chunk(&r, head, p.slot) {
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

    /// Allocation runs covering `[offset, offset + len)`, merged.
    pub(crate) fn status_node(
        &self,
        node: &Arc<NodeState>,
        bound: u64,
        offset: u64,
        len: u64,
    ) -> Result<Vec<Extent>, StoreError> {
        let mut out = Vec::new();
        for (group, pieces) in groups(node.chunk_size, offset, len) {
            let r = {
                let _g = self.read_stripe(node.id, group);
                self.resolve_group(node, group, bound)?
            };
            for p in pieces {
                push_extent(&mut out, p.len, r.slots[p.slot] != Res::Zero);
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
        let split = |cs, off, len| -> Vec<(u64, Vec<Piece>)> {
            groups(cs, off, len).map(|(g, p)| (g, p.collect())).collect()
        };
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
