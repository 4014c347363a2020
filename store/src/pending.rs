//! The pending map (map-entry versions and allocator changes not yet in the
//! metadata store). Reads merge the pending map with sled; a commit
//! (`commit.rs`) moves it there after the data is synced.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use crate::cache::MapCache;
use crate::entry::GroupEntry;
use crate::keys::{ChunkId, NodeId};
use crate::meta::KeyOp;

/// Number of chunk-size classes (4 KiB … 1 MiB).
pub(crate) const CLASSES: usize = 9;

/// Pending entry versions above which writers ask for a commit.
pub(crate) const PENDING_SOFT_LIMIT: usize = 4096;
/// Pending entry versions above which a writer commits itself (back-pressure).
pub(crate) const PENDING_HARD_LIMIT: usize = 16384;

pub(crate) type MapKey = (NodeId, u64, u64);

/// One generation of changes; a commit takes a whole generation.
#[derive(Default)]
pub(crate) struct Gen {
    /// `None` is a deletion.
    pub(crate) entries: BTreeMap<MapKey, Option<GroupEntry>>,
    /// Chunks taken from the durable free list (their `F` keys go).
    pub(crate) taken: HashSet<(u8, ChunkId)>,
    /// Chunks whose last reference this generation dropped (`F` keys come).
    pub(crate) freed: Vec<(u8, ChunkId)>,
    /// Chunks taken from the free list and released again within this
    /// generation: their `F` keys never went, they only return to the pool.
    pub(crate) requeue: Vec<(u8, ChunkId)>,
    /// Owned-chunk counters per (node, birth), absolute values.
    pub(crate) owned: BTreeMap<(NodeId, u64), u64>,
    /// Catalog keys, applied in the last batch.
    pub(crate) extras: Vec<KeyOp>,
}

impl Gen {
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
            && self.taken.is_empty()
            && self.freed.is_empty()
            && self.requeue.is_empty()
            && self.owned.is_empty()
            && self.extras.is_empty()
    }
}

#[derive(Default)]
pub(crate) struct Layers {
    pub(crate) active: Gen,
    /// The generation a running commit is applying; readers still see it.
    pub(crate) committing: Option<Arc<Gen>>,
}

/// The pending map and its companions.
pub(crate) struct Pending {
    pub(crate) layers: RwLock<Layers>,
    /// Decoded version lists of recently used groups; `record` keeps them
    /// equal to the merged view (`cache.rs`).
    pub(crate) cache: MapCache,
}

/// A chunk handed out by the allocator.
#[derive(Copy, Clone, Debug)]
pub(crate) struct Allocation {
    pub(crate) class: u8,
    pub(crate) id: ChunkId,
    pub(crate) from_free: bool,
}

/// A change of a node's owned-chunk counter.
pub(crate) struct OwnedDelta<'a> {
    pub(crate) counters: &'a Mutex<BTreeMap<u64, u64>>,
    pub(crate) node: NodeId,
    pub(crate) birth: u64,
    pub(crate) delta: i64,
}

impl Pending {
    /// An empty pending map with a map cache of `cache_bytes`.
    pub(crate) fn new(cache_bytes: u64) -> Pending {
        Pending { layers: RwLock::default(), cache: MapCache::new(cache_bytes) }
    }

    /// Every pending version of one group, newest layer winning, by birth.
    pub(crate) fn versions(&self, node: NodeId, group: u64) -> Vec<(u64, Option<GroupEntry>)> {
        let layers = self.layers.read();
        let range = (node, group, 0)..=(node, group, u64::MAX);
        let in_layer = |g: &Gen| g.entries.range(range.clone()).next().is_some();
        if !in_layer(&layers.active) && !layers.committing.as_deref().is_some_and(in_layer) {
            return Vec::new();
        }
        let mut out: BTreeMap<u64, Option<GroupEntry>> = BTreeMap::new();
        if let Some(c) = &layers.committing {
            for (k, v) in c.entries.range(range.clone()) {
                out.insert(k.2, v.clone());
            }
        }
        for (k, v) in layers.active.entries.range(range) {
            out.insert(k.2, v.clone());
        }
        out.into_iter().collect()
    }

    pub(crate) fn len(&self) -> usize {
        self.layers.read().active.entries.len()
    }

    /// Records one group change atomically: entry versions, allocations it
    /// used, chunks it freed, counter changes.
    pub(crate) fn record(
        &self,
        entries: Vec<(MapKey, Option<GroupEntry>)>,
        used: &[Allocation],
        freed: &[(u8, ChunkId)],
        owned: &[OwnedDelta<'_>],
    ) {
        let mut layers = self.layers.write();
        let g = &mut layers.active;
        for (k, v) in entries {
            // under the write lock: no reader sees the pending change
            // without the cached one, nor the reverse
            self.cache.apply(k, v.as_ref());
            g.entries.insert(k, v);
        }
        for a in used.iter().filter(|a| a.from_free) {
            g.taken.insert((a.class, a.id));
        }
        for &f in freed {
            if g.taken.remove(&f) {
                g.requeue.push(f);
            } else {
                g.freed.push(f);
            }
        }
        for d in owned {
            let mut c = d.counters.lock();
            let v = c.entry(d.birth).or_insert(0);
            *v = v.saturating_add_signed(d.delta);
            let now = *v;
            if now == 0 {
                c.remove(&d.birth);
            }
            g.owned.insert((d.node, d.birth), now);
        }
    }

    /// Adds catalog keys to the next commit.
    pub(crate) fn push_extras(&self, ops: Vec<KeyOp>) {
        self.layers.write().active.extras.extend(ops);
    }
}

impl Pending {
    /// Groups of `node` with pending versions born after `epoch`.
    pub(crate) fn groups_born_after(&self, node: NodeId, epoch: u64) -> Vec<u64> {
        let layers = self.layers.read();
        let range = (node, 0, 0)..=(node, u64::MAX, u64::MAX);
        let mut out = Vec::new();
        let committing = layers.committing.iter().flat_map(|c| c.entries.range(range.clone()));
        for (k, _) in committing.chain(layers.active.entries.range(range.clone())) {
            if k.2 > epoch {
                out.push(k.1);
            }
        }
        out
    }
}
