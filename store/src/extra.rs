//! `flatten` (copy a clone's origin data into it and cut the lineage) and
//! `diff` (changed byte ranges between two points of one volume, from the
//! block map only).

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;

use crate::data::Fetch;
use crate::engine::Engine;
use crate::entry::{FULL, GROUP_SLOTS, SLOTS, Slot};
use crate::error::{Refusal, StoreError};
use crate::info::{ByteRange, VolumeInfo};
use crate::io::base;
use crate::iobuf::IoBuf;
use crate::keys::{NodeId, decode_map_key, map_key};
use crate::node::{HEAD, Res};
use crate::ops::Outcome;
use crate::pending::{OwnedDelta, PENDING_SOFT_LIMIT};

impl Engine {
    /// Copies every chunk the clone reads through its origin into chunks of
    /// its own, then drops the origin link. Refused while the clone has
    /// snapshots (they still read through the origin). Cost: one resolve per
    /// group of the volume plus a copy of the inherited data; the clone's IO
    /// waits meanwhile.
    pub(crate) fn flatten(&self, name: &str) -> Outcome<VolumeInfo> {
        self.check_open()?;
        let mut cat = self.catalog.lock();
        let (id, state) = match Self::volume_node(&cat, name) {
            Ok(found) => found,
            Err(r) => return Ok(Err(r)),
        };
        let Some((parent, epoch)) = state.parent.read().clone() else {
            return Ok(Err(Refusal::NotAClone(name.into())));
        };
        let snaps: Vec<String> = cat.snaps_of(id).map(|(_, s)| s.rec.name.clone()).collect();
        if !snaps.is_empty() {
            return Ok(Err(Refusal::CloneHasSnapshots { clone: name.into(), snapshots: snaps }));
        }
        let w = state.op.write();
        let cs = u64::from(state.chunk_size);
        let groups = state.size().div_ceil(cs * GROUP_SLOTS);
        let mut buf = IoBuf::zeroed(usize::try_from(cs).unwrap_or(0));
        // the copies go in runs on disk, as a write's chunks do (`alloc.rs`)
        let mut run = None;
        for g in 0..groups {
            let _s = self.write_stripe(id, g);
            let head = state.head();
            let r = self.resolve_group(&state, g, HEAD)?;
            let mut entry = None;
            let mut used = Vec::new();
            let (class, chunk_size) = (state.class, state.chunk_size);
            let copied = (|| -> Result<(), StoreError> {
                for i in 0..SLOTS {
                    let own = r.own().map_or(Slot::Absent, |(_, e)| e.slot(i));
                    let id = match (own, r.slots[i]) {
                        // a partial chunk of the head's own: completed in place
                        (Slot::Chunk { id, owned: true, .. }, Res::Partial { mask, below, .. })
                            if r.own().is_some_and(|(b, _)| b == head) =>
                        {
                            self.fill_sub_blocks(class, chunk_size, id, below, !mask, &mut buf)?;
                            id
                        }
                        // read through to the parent, or a partial chunk of
                        // an older entry: copied whole into a new chunk
                        (Slot::Absent, Res::Chunk(_)) | (_, Res::Partial { .. }) => {
                            let a = self.alloc.alloc(class, run);
                            run = Some(a.id);
                            used.push(a);
                            self.write_stats.chunks_allocated.fetch_add(1, Ordering::Relaxed);
                            buf.resize(usize::try_from(cs).unwrap_or(0));
                            self.read_slot(
                                class,
                                chunk_size,
                                r.slots[i],
                                0,
                                &mut buf,
                                Fetch::Wait,
                            )?;
                            self.data.write(class, a.id, 0, &buf)?;
                            self.write_stats.copy_up_bytes.fetch_add(cs, Ordering::Relaxed);
                            a.id
                        }
                        _ => continue,
                    };
                    entry
                        .get_or_insert_with(|| base(&r, head))
                        .set(i, Slot::Chunk { id, owned: true, mask: FULL });
                }
                Ok(())
            })();
            if let Err(e) = copied {
                used.iter().for_each(|a| self.alloc.unuse(*a, &self.pending));
                return Err(e);
            }
            if let Some(e) = entry {
                let delta = OwnedDelta {
                    counters: &state.owned,
                    node: id,
                    birth: head,
                    delta: used.len() as i64,
                };
                self.pending.record(vec![((id, g, head), Some(e))], &used, &[], &[delta]);
            }
            if self.pending.len() > PENDING_SOFT_LIMIT {
                self.commit()?;
            }
        }
        *state.parent.write() = None;
        drop(w);
        let mut ops = cat.node_put(id);
        Self::release_snapshot(&mut cat, parent, epoch, &mut ops);
        self.pending.push_extras(ops);
        self.commit()?;
        self.wake_background();
        self.lineage.clear();
        Ok(Self::volume_info(&cat, id).ok_or_else(|| Refusal::NotFound(name.into())))
    }

    /// Chunk-granular byte ranges whose block-map resolution differs between
    /// `from` (`V@A`) and `to` (`V@B` or `V`), clipped to `to`'s size. Cost:
    /// a scan of the volume's own map keys plus two resolves per candidate
    /// group (every group past a shrink made between the two).
    pub(crate) fn diff(&self, from: &str, to: &str) -> Outcome<Vec<ByteRange>> {
        self.check_open()?;
        let invalid = |reason: &str| {
            Ok(Err(Refusal::InvalidDiff {
                from: from.into(),
                to: to.into(),
                reason: reason.into(),
            }))
        };
        let Some((fv, fs)) = from.split_once('@') else {
            return invalid("from must be a snapshot, VOLUME@SNAP");
        };
        let (tv, ts) = match to.split_once('@') {
            Some((v, s)) => (v, Some(s)),
            None => (to, None),
        };
        if fv != tv {
            return invalid("both must be of the same volume");
        }
        let (state, a, b, to_size) = {
            let cat = self.catalog.lock();
            let (id, state) = match Self::volume_node(&cat, fv) {
                Ok(found) => found,
                Err(r) => return Ok(Err(r)),
            };
            let Some((a, _)) = cat.snap_by_name(id, fs) else {
                return Ok(Err(Refusal::SnapshotNotFound(from.into())));
            };
            let (b, to_size) = match ts {
                Some(s) => match cat.snap_by_name(id, s) {
                    Some((b, snap)) => (b, snap.rec.size),
                    None => return Ok(Err(Refusal::SnapshotNotFound(to.into()))),
                },
                None => (HEAD, state.size()),
            };
            (state, a, b, to_size)
        };
        if b <= a {
            return invalid("from is not older than to");
        }
        self.commit()?;
        let _op = state.op.read();
        let id = state.id;
        let cs = u64::from(state.chunk_size);
        let mut groups: BTreeSet<u64> = BTreeSet::new();
        let hi = map_key(NodeId(id.0 + 1), 0, 0);
        let mut at = map_key(id, 0, 0).to_vec();
        loop {
            let page = self.meta.scan(&at, &hi, 1000)?;
            for (k, _) in &page {
                let (_, g, birth) =
                    decode_map_key(k).ok_or_else(|| StoreError::corrupt("map key"))?;
                if birth > a && birth <= b {
                    groups.insert(g);
                }
            }
            match page.last() {
                Some((k, _)) if page.len() == 1000 => {
                    at = k.clone();
                    at.push(0);
                }
                _ => break,
            }
        }
        groups.extend(self.pending.groups_born_after(id, a));
        let span = to_size.max(state.size()).div_ceil(cs * GROUP_SLOTS);
        for t in state.truncs.read().iter().filter(|t| t.epoch >= a && t.epoch < b) {
            groups.extend(t.size / cs / GROUP_SLOTS..span);
        }
        let mut out: Vec<ByteRange> = Vec::new();
        for g in groups {
            let (ra, rb) = {
                let _s = self.read_stripe(id, g);
                (self.resolve_group(&state, g, a)?, self.resolve_group(&state, g, b)?)
            };
            for i in 0..SLOTS {
                let start = (g * GROUP_SLOTS + i as u64) * cs;
                if start >= to_size {
                    break;
                }
                if ra.slots[i] == rb.slots[i] {
                    continue;
                }
                let end = (start + cs).min(to_size);
                match out.last_mut() {
                    Some(r) if r.offset + r.length == start => r.length = end - r.offset,
                    _ => out.push(ByteRange { offset: start, length: end - start }),
                }
            }
        }
        Ok(Ok(out))
    }
}
