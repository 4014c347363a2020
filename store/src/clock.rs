//! A bounded map with CLOCK eviction: the storage of both read-path caches
//! (`cache.rs`, the map cache; `lineage.rs`, resolved parent views). Each is
//! sharded by its owner; a shard is used under the owner's lock.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};

use parking_lot::Mutex;

/// A multiply-xorshift hasher for keys made of a few `u64`s.
#[derive(Default)]
pub(crate) struct KeyHasher(u64);

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

/// The shard a key of `(a, b)` falls in, out of `shards`.
fn shard_of(a: u64, b: u64, shards: usize) -> usize {
    let h = (a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b).wrapping_mul(0xD6E8_FEB8_6659_FD93);
    // invariant: the shift leaves 32 bits, which fit every usize we build for
    usize::try_from(h >> 32).unwrap_or(0) % shards.max(1)
}

struct Slot<K, V> {
    key: K,
    value: V,
    bytes: usize,
    referenced: bool,
}

/// One shard: values with their approximate cost in bytes, evicted by CLOCK.
pub(crate) struct ClockShard<K, V> {
    index: HashMap<K, usize, BuildHasherDefault<KeyHasher>>,
    slots: Vec<Slot<K, V>>,
    hand: usize,
    bytes: usize,
    /// Changes applied to this shard (validates fills).
    pub(crate) seq: u64,
}

impl<K, V> Default for ClockShard<K, V> {
    fn default() -> Self {
        ClockShard { index: HashMap::default(), slots: Vec::new(), hand: 0, bytes: 0, seq: 0 }
    }
}

/// Bookkeeping bytes of one slot besides its value.
pub(crate) fn overhead<K, V>() -> usize {
    size_of::<Slot<K, V>>() + 2 * size_of::<(K, usize)>()
}

impl<K: Copy + Eq + Hash, V> ClockShard<K, V> {
    /// The value of `key`, marked as used.
    pub(crate) fn get(&mut self, key: &K) -> Option<&V> {
        let &i = self.index.get(key)?;
        let slot = &mut self.slots[i];
        slot.referenced = true;
        Some(&slot.value)
    }

    /// The value of `key`, to change in place (its cost must not change).
    pub(crate) fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        let &i = self.index.get(key)?;
        Some(&mut self.slots[i].value)
    }

    /// The value of `key` and whether it was used, without marking it.
    pub(crate) fn peek(&self, key: &K) -> Option<(&V, bool)> {
        self.index.get(key).map(|&i| (&self.slots[i].value, self.slots[i].referenced))
    }

    pub(crate) fn contains(&self, key: &K) -> bool {
        self.index.contains_key(key)
    }

    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    fn remove_at(&mut self, i: usize) {
        let s = self.slots.swap_remove(i);
        self.index.remove(&s.key);
        if let Some(moved) = self.slots.get(i) {
            self.index.insert(moved.key, i);
        }
        self.bytes -= s.bytes;
    }

    pub(crate) fn remove(&mut self, key: &K) {
        if let Some(&i) = self.index.get(key) {
            self.remove_at(i);
        }
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

    /// Stores `value` (costing `bytes`), evicting until the shard fits
    /// `budget`; a value larger than the budget is not kept.
    pub(crate) fn put(&mut self, key: K, value: V, bytes: usize, referenced: bool, budget: usize) {
        self.remove(&key);
        if bytes > budget {
            return;
        }
        while self.bytes + bytes > budget && !self.slots.is_empty() {
            self.evict_one();
        }
        self.index.insert(key, self.slots.len());
        self.slots.push(Slot { key, value, bytes, referenced });
        self.bytes += bytes;
    }

    /// Drops everything; fills computed before are refused (`seq`).
    pub(crate) fn clear(&mut self) {
        self.index.clear();
        self.slots.clear();
        self.hand = 0;
        self.bytes = 0;
        self.seq += 1;
    }
}

/// A cache of `SHARDS` CLOCK shards sharing one byte budget; the owner
/// says which shard a key falls in (two `u64`s from the key).
pub(crate) struct Sharded<K, V> {
    shards: Box<[Mutex<ClockShard<K, V>>]>,
    /// Bytes per shard; 0 disables the cache.
    pub(crate) shard_budget: usize,
}

impl<K: Copy + Eq + Hash, V: Clone> Sharded<K, V> {
    pub(crate) fn new(budget: u64, shards: usize) -> Self {
        let budget = usize::try_from(budget).unwrap_or(usize::MAX);
        Sharded {
            shards: (0..shards).map(|_| Mutex::new(ClockShard::default())).collect(),
            shard_budget: budget / shards.max(1),
        }
    }

    /// The shard of a key hashed to `(a, b)`.
    pub(crate) fn shard(&self, a: u64, b: u64) -> &Mutex<ClockShard<K, V>> {
        &self.shards[shard_of(a, b, self.shards.len())]
    }

    /// The cached value (marked as used), or the token a fill must present.
    pub(crate) fn get(&self, key: &K, a: u64, b: u64) -> Result<V, u64> {
        let mut s = self.shard(a, b).lock();
        match s.get(key) {
            Some(v) => Ok(v.clone()),
            None => Err(s.seq),
        }
    }

    pub(crate) fn shards(&self) -> impl Iterator<Item = &Mutex<ClockShard<K, V>>> {
        self.shards.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_keeps_used_entries_and_respects_the_budget() {
        let mut s: ClockShard<u64, u64> = ClockShard::default();
        for k in 0..4 {
            s.put(k, k * 10, 10, false, 40);
        }
        assert_eq!(s.get(&0), Some(&0));
        s.put(4, 40, 10, false, 40);
        assert_eq!(s.bytes(), 40);
        // 0 was used since the hand passed, so 1 went instead
        assert!(s.contains(&0));
        assert!(!s.contains(&1));
        s.put(5, 50, 100, false, 40);
        assert!(!s.contains(&5));
        let seq = s.seq;
        s.clear();
        assert_eq!((s.bytes(), s.seq), (0, seq + 1));
        assert!(s.get(&0).is_none());
    }
}
