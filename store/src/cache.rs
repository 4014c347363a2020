//! The map cache: for recently used groups, every version of the group as
//! the block map holds it (the pending map laid over sled, deletions
//! applied), decoded and sorted by birth. A lookup at any bound is then a
//! binary search in memory, with no sled call and no allocation.
//!
//! Coherency has one rule: the cached list of a group always equals what
//! `Engine::all_versions` would return now. Only `Pending::record` changes
//! that (a commit moves entries from the pending map to sled without
//! changing the merged view), and it applies every change to the cached list
//! under the shard lock, inside the pending map's write lock. A reader that
//! missed fills the list it computed only if no change hit the shard since
//! it looked (`seq`), so a fill can never install a list older than a
//! change. Bounded by `StoreConfig::map_cache_bytes` (CLOCK eviction per
//! shard); nothing else depends on what it holds.

use std::sync::Arc;

use parking_lot::Mutex;

use crate::clock::{ClockShard, Sharded, overhead};
use crate::entry::GroupEntry;
use crate::keys::NodeId;
use crate::lineage::View;
use crate::pending::MapKey;

/// Every version of one group, sorted by birth.
pub(crate) type Versions = Arc<[(u64, GroupEntry)]>;

/// What the cache holds for a group: its versions and, for a clone, the
/// parent's frozen view tagged with the lineage cache's generation
/// (`lineage.rs`), so a clone's read finds both with one lookup.
#[derive(Clone, Debug)]
pub(crate) struct Cached {
    pub(crate) versions: Versions,
    pub(crate) view: Option<(u64, View)>,
}

/// The index of the version with the greatest birth ≤ `bound`.
pub(crate) fn at(versions: &[(u64, GroupEntry)], bound: u64) -> Option<usize> {
    versions.partition_point(|(b, _)| *b <= bound).checked_sub(1)
}

const SHARDS: usize = 64;

type Key = (NodeId, u64);

/// Approximate memory of one cached group.
fn cost(versions: &[(u64, GroupEntry)]) -> usize {
    // slot and index entry, Arc header, the versions
    overhead::<Key, Cached>() + 16 + size_of_val(versions)
}

/// The bounded cache of group version lists.
pub(crate) struct MapCache {
    shards: Sharded<Key, Cached>,
}

impl MapCache {
    pub(crate) fn new(budget: u64) -> MapCache {
        MapCache { shards: Sharded::new(budget, SHARDS) }
    }

    fn shard(&self, key: Key) -> &Mutex<ClockShard<Key, Cached>> {
        self.shards.shard(key.0.0, key.1)
    }

    /// The cached versions of a group, or the token to `fill` it with.
    pub(crate) fn get(&self, node: NodeId, group: u64) -> Result<Cached, u64> {
        self.shards.get(&(node, group), node.0, group)
    }

    /// Caches `versions` (computed after `get` returned `token`) unless the
    /// shard changed meanwhile.
    pub(crate) fn fill(&self, node: NodeId, group: u64, token: u64, versions: Versions) {
        let budget = self.shards.shard_budget;
        if budget == 0 {
            return;
        }
        let key = (node, group);
        let mut s = self.shard(key).lock();
        if s.seq == token && !s.contains(&key) {
            let bytes = cost(&versions);
            s.put(key, Cached { versions, view: None }, bytes, false, budget);
        }
    }

    /// Keeps a clone's parent view beside the group's versions, if cached.
    pub(crate) fn attach_view(&self, node: NodeId, group: u64, view: (u64, View)) {
        let key = (node, group);
        let mut s = self.shard(key).lock();
        if let Some(c) = s.get_mut(&key) {
            c.view = Some(view);
        }
    }

    /// Applies one change of the merged view (`None` deletes the version).
    /// The caller holds the pending map's write lock.
    pub(crate) fn apply(&self, key: MapKey, value: Option<&GroupEntry>) {
        let (node, group, birth) = key;
        let key = (node, group);
        let mut s = self.shard(key).lock();
        s.seq += 1;
        let Some((old, referenced)) = s.peek(&key) else { return };
        // the parent's view is frozen: it survives changes to the node's own entries
        let view = old.view.clone();
        let old = &old.versions;
        let pos = old.partition_point(|(b, _)| *b < birth);
        let exists = old.get(pos).is_some_and(|(b, _)| *b == birth);
        let mut new: Vec<(u64, GroupEntry)> = Vec::with_capacity(old.len() + 1);
        new.extend_from_slice(&old[..pos]);
        if let Some(e) = value {
            new.push((birth, e.clone()));
        }
        new.extend_from_slice(&old[pos + usize::from(exists)..]);
        let new: Versions = new.into();
        let bytes = cost(&new);
        s.put(key, Cached { versions: new, view }, bytes, referenced, self.shards.shard_budget);
    }

    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.shards.shards().map(|s| s.lock().bytes()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::Slot as EntrySlot;
    use crate::keys::ChunkId;

    fn entry(id: u64) -> GroupEntry {
        let mut e = GroupEntry::default();
        e.set(0, EntrySlot::Chunk { id: ChunkId(id), owned: true, mask: crate::entry::FULL });
        e
    }

    #[test]
    fn at_finds_greatest_birth_not_above_bound() {
        let v = vec![(1, entry(1)), (3, entry(3)), (7, entry(7))];
        assert_eq!(at(&v, 0), None);
        assert_eq!(at(&v, 1), Some(0));
        assert_eq!(at(&v, 6), Some(1));
        assert_eq!(at(&v, u64::MAX), Some(2));
        assert_eq!(at(&[], 5), None);
    }

    #[test]
    fn apply_updates_cached_lists_and_stale_fills_are_dropped() {
        let c = MapCache::new(1 << 20);
        let n = NodeId(1);
        let t = c.get(n, 4).unwrap_err();
        c.fill(n, 4, t, vec![(1, entry(1))].into());
        c.apply((n, 4, 2), Some(&entry(2)));
        c.apply((n, 4, 1), None);
        let v = c.get(n, 4).unwrap().versions;
        assert_eq!(v.iter().map(|(b, _)| *b).collect::<Vec<_>>(), vec![2]);
        // a change between get and fill voids the fill
        let t = c.get(n, 5).unwrap_err();
        c.apply((n, 5, 1), Some(&entry(9)));
        c.fill(n, 5, t, Vec::new().into());
        assert!(c.get(n, 5).is_err());
    }

    #[test]
    fn bounded_by_budget() {
        let budget = 64 * 4096;
        let c = MapCache::new(budget);
        for g in 0..10_000 {
            let t = c.get(NodeId(1), g).unwrap_err();
            c.fill(NodeId(1), g, t, vec![(1, entry(g + 1))].into());
        }
        assert!(u64::try_from(c.bytes()).unwrap() <= budget);
        assert!(u64::try_from(c.bytes()).unwrap() > budget / 2);
        let off = MapCache::new(0);
        let t = off.get(NodeId(1), 1).unwrap_err();
        off.fill(NodeId(1), 1, t, Vec::new().into());
        assert!(off.get(NodeId(1), 1).is_err());
    }
}
