//! The lineage cache: how a node reads a group at one of its snapshot
//! epochs, every slot resolved through all its ancestors. A clone reads its
//! parent through exactly such a frozen view, so with it a read at clone
//! depth 8 costs the same two lookups as at depth 1 (its own versions, then
//! the parent's view) instead of one per level.
//!
//! Why it needs no invalidation on the data path: a view at epoch `e` below
//! the node's head only depends on entries born at or before `e`, in the
//! node and in its ancestors at their (also frozen) epochs. Writes land at
//! the head, which is above every snapshot epoch; GC removes only versions
//! no reader sees and moves ownership without changing chunk ids; rollback
//! refuses while newer snapshots exist. Node ids are never reused. The
//! catalog operations that rewrite history anyway (rollback, flatten,
//! deletes) clear the cache; a fill computed before a clear is refused.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::clock::{Sharded, overhead};
use crate::engine::Engine;
use crate::entry::SLOTS;
use crate::error::StoreError;
use crate::keys::NodeId;
use crate::node::{NodeState, Res, stack};

/// Every slot of a group as a node reads it at a frozen epoch.
pub(crate) type View = Arc<[Res; SLOTS]>;

type Key = (NodeId, u64, u64);

const SHARDS: usize = 64;

/// Bounded cache of frozen views, keyed by (node, group, epoch).
pub(crate) struct LineageCache {
    shards: Sharded<Key, View>,
    /// Bumped by `clear`: views kept elsewhere (the map cache) carry the
    /// generation they were computed in and are void once it moved.
    generation: AtomicU64,
}

fn cost() -> usize {
    overhead::<Key, View>() + 16 + size_of::<[Res; SLOTS]>()
}

/// The two words a key is sharded by.
fn hash_words(key: Key) -> (u64, u64) {
    (key.0.0 ^ key.2.rotate_left(32), key.1)
}

impl LineageCache {
    pub(crate) fn new(budget: u64) -> LineageCache {
        LineageCache { shards: Sharded::new(budget, SHARDS), generation: AtomicU64::new(0) }
    }

    /// The cached view, or the token to `fill` it with.
    fn get(&self, key: Key) -> Result<View, u64> {
        let (a, b) = hash_words(key);
        self.shards.get(&key, a, b)
    }

    fn fill(&self, key: Key, token: u64, view: View) {
        let budget = self.shards.shard_budget;
        if budget == 0 {
            return;
        }
        let (a, b) = hash_words(key);
        let mut s = self.shards.shard(a, b).lock();
        if s.seq == token {
            s.put(key, view, cost(), false, budget);
        }
    }

    /// The current generation; read it before the parent link a view is
    /// computed from.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Forgets every view (a catalog operation rewrote history).
    pub(crate) fn clear(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        for s in self.shards.shards() {
            s.lock().clear();
        }
    }

    #[cfg(test)]
    pub(crate) fn len_bytes(&self) -> usize {
        self.shards.shards().map(|s| s.lock().bytes()).sum()
    }
}

impl Engine {
    /// `node`'s view of `group` at `epoch`: cached, else resolved from the
    /// nearest cached ancestor view down, caching each level on the way.
    /// Iterative, so any clone depth costs no stack.
    pub(crate) fn frozen_view(
        &self,
        node: &Arc<NodeState>,
        group: u64,
        epoch: u64,
    ) -> Result<View, StoreError> {
        let mut chain = Vec::new();
        let mut below: Option<View> = None;
        let mut level = Some((node.clone(), epoch));
        while let Some((n, e)) = level {
            match self.lineage.get((n.id, group, e)) {
                Ok(v) => {
                    below = Some(v);
                    break;
                }
                Err(token) => {
                    level = n.parent.read().clone();
                    chain.push((n, e, token));
                }
            }
        }
        for (n, e, token) in chain.into_iter().rev() {
            let versions = self.versions(n.id, group)?;
            let mut slots = [None; SLOTS];
            let (_, partial) = n.resolve_level(group, e, &versions, &mut slots);
            let view: View = Arc::new(stack(slots, partial, below.as_deref())?);
            // a view at the head would change with the next write
            if e < n.head() {
                self.lineage.fill((n.id, group, e), token, view.clone());
            }
            below = Some(view);
        }
        Ok(below.unwrap_or_else(|| Arc::new([Res::Zero; SLOTS])))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::ChunkId;

    #[test]
    fn fills_before_a_clear_are_refused() {
        let c = LineageCache::new(1 << 20);
        let key = (NodeId(3), 7, 2);
        let token = c.get(key).unwrap_err();
        c.clear();
        c.fill(key, token, Arc::new([Res::Chunk(ChunkId(1)); SLOTS]));
        let token = c.get(key).unwrap_err();
        c.fill(key, token, Arc::new([Res::Zero; SLOTS]));
        assert_eq!(c.get(key).unwrap()[0], Res::Zero);
        assert!(c.len_bytes() > 0);
    }
}
