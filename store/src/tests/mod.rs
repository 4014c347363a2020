//! Store-level tests: unit behaviours, the model proptest, crash and GC.

mod bench;
mod crash;
mod layout;
mod memfs;
mod model;
mod sparse;
mod unit;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use crate::entry::{GroupEntry, SLOTS, Slot};
use crate::keys::{FREE, MAP, decode_free_key, decode_map_key};
use crate::{Store, StoreConfig};

/// Proptest cases: `PROPTEST_CASES` if set, else `default`.
pub(crate) fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

pub(crate) fn config(dir: &std::path::Path) -> StoreConfig {
    let mut c = StoreConfig::new(dir);
    c.cache_capacity = 16 << 20;
    c.gc_pause = Duration::from_millis(1);
    c.intent_log_bytes = 1 << 20;
    c
}

/// The whole export, read with `read`; checks that `read_sparse` returns the
/// same bytes and `block_status`'s runs.
pub(crate) fn read_all(store: &Store, name: &str) -> Vec<u8> {
    let e = store.open_export(name).unwrap_or_else(|| panic!("export {name} missing"));
    let mut buf = vec![0u8; usize::try_from(e.size()).unwrap()];
    e.read(0, &mut buf).unwrap();
    let mut sparse = vec![0xa5u8; buf.len()];
    let extents = e.read_sparse(0, &mut sparse).unwrap();
    assert!(sparse == buf, "read_sparse of {name} differs from read");
    assert_eq!(extents, e.block_status(0, e.size()).unwrap(), "read_sparse extents of {name}");
    buf
}

/// Cross-checks the durable block map against the allocator and counters:
/// every referenced chunk has exactly one owner, no free chunk is
/// referenced, counters match owned bits.
pub(crate) fn check_invariants(store: &Store) {
    let e = store.engine_for_test();
    e.commit().unwrap();
    let cat = e.catalog.lock();
    let mut owners: HashMap<(u8, u64), u32> = HashMap::new();
    let mut refs: HashSet<(u8, u64)> = HashSet::new();
    let mut counts: BTreeMap<(u64, u64), u64> = BTreeMap::new();
    let mut masks: HashMap<(u8, u64), u32> = HashMap::new();
    for (k, v) in e.meta.scan(&[MAP], &[MAP + 1], usize::MAX).unwrap() {
        let (node, _g, birth) = decode_map_key(&k).unwrap();
        let entry = GroupEntry::decode(&v).unwrap();
        let n = cat.nodes.get(&node).unwrap_or_else(|| panic!("entry of unknown node {node:?}"));
        let class = n.state.class;
        for i in 0..SLOTS {
            if let Slot::Chunk { id, owned, mask } = entry.slot(i) {
                refs.insert((class, id.0));
                // every reference to a chunk says the same about its sub-blocks
                let seen = *masks.entry((class, id.0)).or_insert(mask);
                assert_eq!(seen, mask, "chunk {id:?} with two masks");
                if owned {
                    *owners.entry((class, id.0)).or_default() += 1;
                }
            }
        }
        if entry.owned_count() > 0 {
            *counts.entry((node.0, birth)).or_default() += entry.owned_count();
        }
    }
    for r in &refs {
        assert_eq!(owners.get(r).copied().unwrap_or(0), 1, "chunk {r:?} owners");
    }
    for (k, _) in e.meta.scan(&[FREE], &[FREE + 1], usize::MAX).unwrap() {
        let (class, id) = decode_free_key(&k).unwrap();
        assert!(!refs.contains(&(class, id.0)), "free chunk {id:?} is referenced");
    }
    let mut mem: BTreeMap<(u64, u64), u64> = BTreeMap::new();
    for (id, n) in &cat.nodes {
        for (b, c) in n.state.owned.lock().iter() {
            mem.insert((id.0, *b), *c);
        }
    }
    assert_eq!(counts, mem, "owned counters");
}
