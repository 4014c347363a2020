//! Store-level tests: unit behaviours, the model proptest, crash and GC.

mod crash;
mod memfs;
mod model;
mod unit;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use crate::entry::{GroupEntry, SLOTS, Slot};
use crate::keys::{FREE, MAP, decode_free_key, decode_map_key};
use crate::{Store, StoreConfig};

pub(crate) fn config(dir: &std::path::Path) -> StoreConfig {
    let mut c = StoreConfig::new(dir);
    c.cache_capacity = 16 << 20;
    c.gc_pause = Duration::from_millis(1);
    c
}

pub(crate) fn read_all(store: &Store, name: &str) -> Vec<u8> {
    let e = store.open_export(name).unwrap_or_else(|| panic!("export {name} missing"));
    let mut buf = vec![0u8; usize::try_from(e.size()).unwrap()];
    e.read(0, &mut buf).unwrap();
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
    for (k, v) in e.meta.scan(&[MAP], &[MAP + 1], usize::MAX).unwrap() {
        let (node, _g, birth) = decode_map_key(&k).unwrap();
        let entry = GroupEntry::decode(&v).unwrap();
        let n = cat.nodes.get(&node).unwrap_or_else(|| panic!("entry of unknown node {node:?}"));
        let class = n.state.class;
        for i in 0..SLOTS {
            if let Slot::Chunk { id, owned } = entry.slot(i) {
                refs.insert((class, id.0));
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
