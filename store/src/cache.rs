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

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::entry::GroupEntry;
use crate::keys::NodeId;
use crate::pending::MapKey;

/// Every version of one group, sorted by birth.
pub(crate) type Versions = Arc<[(u64, GroupEntry)]>;

/// The index of the version with the greatest birth ≤ `bound`.
pub(crate) fn at(versions: &[(u64, GroupEntry)], bound: u64) -> Option<usize> {
    versions.partition_point(|(b, _)| *b <= bound).checked_sub(1)
}

const SHARDS: usize = 64;

type Key = (NodeId, u64);

/// A multiply-xorshift hasher for the two-`u64` key.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        let h = self.0 ^ (self.0 >> 29);
        h.wrapping_mul(0xBF58_476D_1CE4_E5B9) ^ (h >> 32)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(23) ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

struct Slot {
    key: Key,
    versions: Versions,
    bytes: usize,
    referenced: bool,
}

#[derive(Default)]
struct Shard {
    index: HashMap<Key, usize, BuildHasherDefault<KeyHasher>>,
    slots: Vec<Slot>,
    hand: usize,
    bytes: usize,
    /// Changes applied to this shard (validates fills).
    seq: u64,
}

/// Approximate memory of one cached group.
fn cost(versions: &[(u64, GroupEntry)]) -> usize {
    // slot, index entry, Arc header, the versions
    size_of::<Slot>() + 2 * size_of::<(Key, usize)>() + 16 + size_of_val(versions)
}

impl Shard {
    fn remove_at(&mut self, i: usize) {
        let s = self.slots.swap_remove(i);
        self.index.remove(&s.key);
        if let Some(moved) = self.slots.get(i) {
            self.index.insert(moved.key, i);
        }
        self.bytes -= s.bytes;
    }

    /// CLOCK: the first slot not used since the hand last passed it.
    fn evict_one(&mut self) {
        loop {
            if self.hand >= self.slots.len() {
                self.hand = 0;
            }
            let Some(s) = self.slots.get_mut(self.hand) else { return };
            if s.referenced {
                s.referenced = false;
                self.hand += 1;
            } else {
                self.remove_at(self.hand);
                return;
            }
        }
    }

    fn put(&mut self, key: Key, versions: Versions, budget: usize) {
        let bytes = cost(&versions);
        if let Some(&i) = self.index.get(&key) {
            self.remove_at(i);
        }
        if bytes > budget {
            return;
        }
        while self.bytes + bytes > budget && !self.slots.is_empty() {
            self.evict_one();
        }
        self.index.insert(key, self.slots.len());
        self.slots.push(Slot { key, versions, bytes, referenced: false });
        self.bytes += bytes;
    }
}

/// The bounded cache of group version lists.
pub(crate) struct MapCache {
    shards: Box<[Mutex<Shard>]>,
    /// Bytes per shard; 0 disables the cache.
    shard_budget: usize,
}

fn shard_of(key: Key) -> usize {
    let h =
        (key.0.0.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ key.1).wrapping_mul(0xD6E8_FEB8_6659_FD93);
    // invariant: the shift leaves 6 bits
    usize::try_from(h >> 58).unwrap_or(0) % SHARDS
}

impl MapCache {
    pub(crate) fn new(budget: u64) -> MapCache {
        let budget = usize::try_from(budget).unwrap_or(usize::MAX);
        MapCache {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            shard_budget: budget / SHARDS,
        }
    }

    /// The cached versions of a group, or the token to `fill` it with.
    pub(crate) fn get(&self, node: NodeId, group: u64) -> Result<Versions, u64> {
        let key = (node, group);
        let mut s = self.shards[shard_of(key)].lock();
        match s.index.get(&key) {
            Some(&i) => {
                let slot = &mut s.slots[i];
                slot.referenced = true;
                Ok(slot.versions.clone())
            }
            None => Err(s.seq),
        }
    }

    /// Caches `versions` (computed after `get` returned `token`) unless the
    /// shard changed meanwhile.
    pub(crate) fn fill(&self, node: NodeId, group: u64, token: u64, versions: Versions) {
        if self.shard_budget == 0 {
            return;
        }
        let key = (node, group);
        let mut s = self.shards[shard_of(key)].lock();
        if s.seq == token && !s.index.contains_key(&key) {
            s.put(key, versions, self.shard_budget);
        }
    }

    /// Applies one change of the merged view (`None` deletes the version).
    /// The caller holds the pending map's write lock.
    pub(crate) fn apply(&self, key: MapKey, value: Option<&GroupEntry>) {
        let (node, group, birth) = key;
        let key = (node, group);
        let mut s = self.shards[shard_of(key)].lock();
        s.seq += 1;
        let Some(&i) = s.index.get(&key) else { return };
        let old = &s.slots[i].versions;
        let pos = old.partition_point(|(b, _)| *b < birth);
        let exists = old.get(pos).is_some_and(|(b, _)| *b == birth);
        let mut new: Vec<(u64, GroupEntry)> = Vec::with_capacity(old.len() + 1);
        new.extend_from_slice(&old[..pos]);
        if let Some(e) = value {
            new.push((birth, e.clone()));
        }
        new.extend_from_slice(&old[pos + usize::from(exists)..]);
        let referenced = s.slots[i].referenced;
        s.put(key, new.into(), self.shard_budget);
        if let Some(&j) = s.index.get(&key) {
            s.slots[j].referenced = referenced;
        }
    }

    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.shards.iter().map(|s| s.lock().bytes).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::Slot as EntrySlot;
    use crate::keys::ChunkId;

    fn entry(id: u64) -> GroupEntry {
        let mut e = GroupEntry::default();
        e.set(0, EntrySlot::Chunk { id: ChunkId(id), owned: true });
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
        let v = c.get(n, 4).unwrap();
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
