//! Nodes in memory and the block-map read side: `versions` (a group's
//! versions, the pending map merged with sled, through the map cache) and
//! `resolve_group` (walks the lineage and applies shrink masks).

use std::collections::BTreeMap;
use std::num::NonZeroU64;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use parking_lot::{Mutex, RwLock};

use crate::cache::{Cached, Versions, at};
use crate::engine::Engine;
use crate::entry::{FULL, GROUP_SLOTS, GroupEntry, SLOTS, Slot};
use crate::error::StoreError;
use crate::keys::{ChunkId, NodeId, decode_map_key, map_key};
use crate::record::{Life, Trunc};

/// Bound of the head: it sees every entry.
pub(crate) const HEAD: u64 = u64::MAX;

/// One node, shared by the catalog and by exports.
pub(crate) struct NodeState {
    pub(crate) id: NodeId,
    pub(crate) chunk_size: u32,
    pub(crate) class: u8,
    pub(crate) created: i64,
    /// Data ops hold it shared; snapshot, rollback, resize, delete hold it exclusively.
    pub(crate) op: RwLock<()>,
    pub(crate) head: AtomicU64,
    pub(crate) size: AtomicU64,
    life: AtomicU8,
    pub(crate) parent: RwLock<Option<(Arc<NodeState>, u64)>>,
    pub(crate) truncs: RwLock<Vec<Trunc>>,
    /// Chunks owned by this node's entries, per birth epoch.
    pub(crate) owned: Mutex<BTreeMap<u64, u64>>,
}

impl NodeState {
    pub(crate) fn new(id: NodeId, chunk_size: u32, created: i64, head: u64, size: u64) -> Self {
        NodeState {
            id,
            chunk_size,
            class: crate::data::class_of(chunk_size),
            created,
            op: RwLock::new(()),
            head: AtomicU64::new(head),
            size: AtomicU64::new(size),
            life: AtomicU8::new(0),
            parent: RwLock::new(None),
            truncs: RwLock::new(Vec::new()),
            owned: Mutex::new(BTreeMap::new()),
        }
    }

    pub(crate) fn life(&self) -> Life {
        match self.life.load(Ordering::Acquire) {
            0 => Life::Volume,
            1 => Life::Hidden,
            _ => Life::Dead,
        }
    }

    pub(crate) fn set_life(&self, life: Life) {
        let v = match life {
            Life::Volume => 0,
            Life::Hidden => 1,
            Life::Dead => 2,
        };
        self.life.store(v, Ordering::Release);
    }

    pub(crate) fn head(&self) -> u64 {
        self.head.load(Ordering::Acquire)
    }

    pub(crate) fn size(&self) -> u64 {
        self.size.load(Ordering::Acquire)
    }

    pub(crate) fn owned_total(&self) -> u64 {
        self.owned.lock().values().sum()
    }

    /// Owned chunks born in `(after, upto]`.
    pub(crate) fn owned_between(&self, after: u64, upto: u64) -> u64 {
        if upto <= after {
            return 0;
        }
        self.owned.lock().range(after + 1..=upto).map(|(_, v)| v).sum()
    }

    /// Slots of `group` cut by shrinks visible at `bound`, with the epoch
    /// below which (inclusive) entries are cut; the latest shrink wins.
    fn masks(&self, group: u64, bound: u64) -> [Option<u64>; SLOTS] {
        let mut out = [None; SLOTS];
        let cs = u64::from(self.chunk_size);
        for t in self.truncs.read().iter().filter(|t| t.epoch < bound) {
            let first = t.size.div_ceil(cs);
            for (i, m) in out.iter_mut().enumerate() {
                if group * GROUP_SLOTS + i as u64 >= first {
                    *m = Some(m.map_or(t.epoch, |e: u64| e.max(t.epoch)));
                }
            }
        }
        out
    }
}

impl NodeState {
    /// Resolves the open slots of `slots` from this node's own entry of
    /// `group` at `bound` and its shrink masks. Slots the node leaves to
    /// its parent stay `None`. Returns the own-entry chunk slots a shrink
    /// cut, and the partial slots, whose `below` the caller completes from
    /// the parent's view with `stack`.
    pub(crate) fn resolve_level(
        &self,
        group: u64,
        bound: u64,
        versions: &[(u64, GroupEntry)],
        slots: &mut [Option<Res>; SLOTS],
    ) -> (u32, u32) {
        let masks = self.masks(group, bound);
        let entry = at(versions, bound).and_then(|i| versions.get(i));
        let birth = entry.map_or(0, |(b, _)| *b);
        let mut masked = 0u32;
        let mut partial = 0u32;
        for (i, out) in slots.iter_mut().enumerate() {
            if out.is_some() {
                continue;
            }
            let slot = entry.map_or(Slot::Absent, |(_, e)| e.slot(i));
            *out = match (slot, masks[i]) {
                (Slot::Absent, Some(_)) => Some(Res::Zero),
                (Slot::Absent, None) => None,
                (Slot::Zero, _) => Some(Res::Zero),
                (Slot::Chunk { .. }, Some(m)) if birth <= m => {
                    masked |= 1 << i;
                    Some(Res::Zero)
                }
                (Slot::Chunk { id, mask, .. }, _) if mask != FULL => {
                    partial |= 1 << i;
                    Some(Res::Partial { id, mask, below: Base::ZERO })
                }
                (Slot::Chunk { id, .. }, _) => Some(Res::Chunk(id)),
            };
        }
        (masked, partial)
    }
}

/// One level's resolution over the level below (`None`: no parent,
/// zeroes): its open slots read as below, and its `partial` slots get
/// their `below` from it. A partial chunk is only made over a plain chunk
/// of the parent, and the parent's view never changes while the child
/// exists, so a partial slot over a partial slot is a corrupt map.
pub(crate) fn stack(
    slots: [Option<Res>; SLOTS],
    partial: u32,
    below: Option<&[Res; SLOTS]>,
) -> Result<[Res; SLOTS], StoreError> {
    let mut out = [Res::Zero; SLOTS];
    for (i, (slot, out)) in slots.into_iter().zip(out.iter_mut()).enumerate() {
        let under = below.map_or(Res::Zero, |b| b[i]);
        *out = match slot {
            None => under,
            Some(Res::Partial { id, mask, .. }) if partial & (1 << i) != 0 => {
                let below = match under {
                    Res::Zero => Base::ZERO,
                    Res::Chunk(c) => Base::of(c),
                    Res::Partial { .. } => {
                        return Err(StoreError::corrupt("a partial chunk over a partial chunk"));
                    }
                };
                Res::Partial { id, mask, below }
            }
            Some(res) => res,
        };
    }
    Ok(out)
}

/// What a slot reads as.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Res {
    Zero,
    Chunk(ChunkId),
    /// The sub-blocks in `mask` from chunk `id`, the others from `below`.
    Partial {
        id: ChunkId,
        mask: u32,
        below: Base,
    },
}

/// What the sub-blocks a partial chunk does not hold read as: a chunk of
/// the parent, or zeroes. Chunk ids are never 0, so `Option<NonZeroU64>`
/// keeps `Res` at 24 bytes (it is copied 32 at a time on every read).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) struct Base(Option<NonZeroU64>);

impl Base {
    pub(crate) const ZERO: Base = Base(None);

    pub(crate) fn of(id: ChunkId) -> Base {
        Base(NonZeroU64::new(id.0))
    }

    /// The chunk below, `None` for zeroes.
    pub(crate) fn chunk(self) -> Option<ChunkId> {
        self.0.map(|n| ChunkId(n.get()))
    }
}

/// A node's own entry for a group plus the resolution of each slot.
pub(crate) struct Resolved {
    /// The node's versions of the group and the one the bound sees.
    own_versions: Versions,
    own_at: Option<usize>,
    pub(crate) slots: [Res; SLOTS],
    /// Own-entry chunk slots cut by a shrink (they become zero slots when
    /// the entry is copied forward).
    pub(crate) own_masked: u32,
}

impl Resolved {
    /// The node's own entry the bound sees, with its birth.
    pub(crate) fn own(&self) -> Option<(u64, &GroupEntry)> {
        self.own_at.and_then(|i| self.own_versions.get(i)).map(|(b, e)| (*b, e))
    }
}

impl Engine {
    /// Every version of `(node, group)` by birth: the map cache, else
    /// `all_versions` (then cached). The caller holds a lock of the group's
    /// stripe (any node's: a fill is validated, see `cache.rs`).
    pub(crate) fn versions(&self, node: NodeId, group: u64) -> Result<Versions, StoreError> {
        Ok(self.cached(node, group)?.versions)
    }

    /// `versions` with the parent view the map cache may hold beside them.
    fn cached(&self, node: NodeId, group: u64) -> Result<Cached, StoreError> {
        match self.pending.cache.get(node, group) {
            Ok(c) => Ok(c),
            Err(token) => {
                let v: Versions = self.all_versions(node, group)?.into();
                self.pending.cache.fill(node, group, token, v.clone());
                Ok(Cached { versions: v, view: None })
            }
        }
    }

    /// Resolves every slot of `group` as `node` reads it at `bound`: its own
    /// entry, then for the slots it leaves open, the parent's frozen view
    /// (`lineage.rs`).
    pub(crate) fn resolve_group(
        &self,
        node: &Arc<NodeState>,
        group: u64,
        bound: u64,
    ) -> Result<Resolved, StoreError> {
        let generation = self.lineage.generation();
        let Cached { versions: own_versions, view } = self.cached(node.id, group)?;
        let own_at = at(&own_versions, bound);
        let mut slots: [Option<Res>; SLOTS] = [None; SLOTS];
        let (own_masked, partial) = node.resolve_level(group, bound, &own_versions, &mut slots);
        let slots = if partial == 0 && slots.iter().all(Option::is_some) {
            slots.map(|s| s.unwrap_or(Res::Zero))
        } else {
            // a view of this generation was computed from the current
            // parent link (changing the link bumps the generation)
            let view = match view {
                Some((g, view)) if g == generation => Some(view),
                _ => {
                    let parent = node.parent.read().clone();
                    match parent {
                        Some((p, e)) => {
                            let view = self.frozen_view(&p, group, e)?;
                            let tagged = (generation, view.clone());
                            self.pending.cache.attach_view(node.id, group, tagged);
                            Some(view)
                        }
                        None => None,
                    }
                }
            };
            stack(slots, partial, view.as_deref())?
        };
        Ok(Resolved { own_versions, own_at, slots, own_masked })
    }

    /// Every version of a group (sled merged with the pending map), by birth.
    pub(crate) fn all_versions(
        &self,
        node: NodeId,
        group: u64,
    ) -> Result<Vec<(u64, GroupEntry)>, StoreError> {
        let pending = self.pending.versions(node, group);
        let mut out: BTreeMap<u64, Option<GroupEntry>> = BTreeMap::new();
        let lo = map_key(node, group, 0);
        let hi = map_key(node, group + 1, 0);
        let mut from = lo.to_vec();
        loop {
            let page = self.meta.scan(&from, &hi, 1024)?;
            let n = page.len();
            for (k, v) in &page {
                let (_, _, b) = decode_map_key(k).ok_or_else(|| StoreError::corrupt("map key"))?;
                let e = GroupEntry::decode(v).ok_or_else(|| {
                    StoreError::corrupt(format!("block map entry of node {} group {group}", node.0))
                })?;
                out.insert(b, Some(e));
            }
            match page.last() {
                Some((k, _)) if n == 1024 => {
                    from = k.clone();
                    from.push(0);
                }
                _ => break,
            }
        }
        for (b, v) in pending {
            out.insert(b, v);
        }
        Ok(out.into_iter().filter_map(|(b, v)| v.map(|e| (b, e))).collect())
    }

    /// Distinct groups of `node` with durable entries, from `from_group`, at most `limit`.
    pub(crate) fn groups_from(
        &self,
        node: NodeId,
        from_group: u64,
        limit: usize,
    ) -> Result<Vec<u64>, StoreError> {
        let mut out: Vec<u64> = Vec::new();
        let hi = map_key(NodeId(node.0 + 1), 0, 0);
        let mut from = map_key(node, from_group, 0).to_vec();
        while out.len() < limit {
            let page = self.meta.scan(&from, &hi, 1024)?;
            let Some((last, _)) = page.last() else { break };
            for (k, _) in &page {
                let (_, g, _) = decode_map_key(k).ok_or_else(|| StoreError::corrupt("map key"))?;
                if out.last() != Some(&g) && out.len() < limit {
                    out.push(g);
                }
            }
            if page.len() < 1024 {
                break;
            }
            from = last.clone();
            from.push(0);
        }
        Ok(out)
    }
}
