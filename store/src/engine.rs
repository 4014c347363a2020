//! The shared engine state behind `Store` and `Export`, and loading it at open.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::{Condvar, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::alloc::Allocator;
use crate::catalog::{Catalog, GcMark, NodeEntry, SnapEntry};
use crate::commit::Committer;
use crate::data::{DataFileFactory, DataFiles, LANES};
use crate::error::StoreError;
use crate::intent::{DEFAULT_INTENT_LOG_BYTES, IntentLog, LOG_FILE};
use crate::keys::{
    FREE, GC, HWM, INTENT_EPOCH, LAYOUT, NEXT_NODE, NODE, NodeId, OWNED, SNAP, decode_free_key,
    decode_node_key, decode_pair_key, decode_u64,
};
use crate::lineage::LineageCache;
use crate::meta::{KeyOp, MetaStore, SledMeta};
use crate::node::NodeState;
use crate::pending::Pending;
use crate::record::{Life, NodeRec, SnapRec};

/// How often the background thread commits, unless configured: five
/// seconds, as ext4's journal and ZFS's transaction groups. Each background
/// commit `fdatasync`s everything written since the last one, so under
/// writes that allocate (a clone's first writes) a shorter interval makes
/// the server write back its page cache while it serves: with one second,
/// 1 MiB sequential writes into a fresh clone ran at half the speed
/// (BENCHMARKS.md, session 5). FLUSH and FUA commit at once either way.
pub const DEFAULT_COMMIT_INTERVAL: Duration = Duration::from_secs(5);

/// How to open a store.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// The data directory (sled in `DIR/sled`, chunks in `DIR/chunks`).
    pub dir: PathBuf,
    /// sled's cache in bytes.
    pub cache_capacity: u64,
    /// How often the background thread commits.
    pub commit_interval: Duration,
    /// Pause between GC steps (throttle).
    pub gc_pause: Duration,
    /// Memory for the read-path caches, in bytes; 0 disables them. Three
    /// quarters hold decoded block-map entries of recently read groups (the
    /// map cache), one quarter resolved parent views of clones (the lineage
    /// cache).
    pub map_cache_bytes: u64,
    /// Size of the intent log (`DIR/intent.log`), which lets a FLUSH after
    /// writes that changed the block map cost one device flush; 0 turns it
    /// off (such a FLUSH then commits the map: two).
    pub intent_log_bytes: u64,
}

impl StoreConfig {
    /// Defaults: 256 MiB sled cache, 64 MiB map cache, commit every 5 s,
    /// 10 ms between GC steps, intent log of up to 1 GiB.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        StoreConfig {
            dir: dir.into(),
            cache_capacity: 256 << 20,
            commit_interval: DEFAULT_COMMIT_INTERVAL,
            gc_pause: Duration::from_millis(10),
            map_cache_bytes: 64 << 20,
            intent_log_bytes: DEFAULT_INTENT_LOG_BYTES,
        }
    }
}

const STRIPES: usize = 1024;

/// Write-path counters since open, for `Store::stats` (metrics).
#[derive(Default)]
pub(crate) struct WriteStats {
    /// Chunks allocated (copy-ups, first writes, flatten copies).
    pub(crate) chunks_allocated: AtomicU64,
    /// Allocations that replaced a chunk shared with a snapshot or origin.
    pub(crate) copy_ups: AtomicU64,
    /// Bytes copied into new or partial chunks from below (a snapshot's
    /// chunk, the origin's, or zeroes), the request's own bytes excluded.
    pub(crate) copy_up_bytes: AtomicU64,
    /// Commits that had anything to make durable (FLUSH, FUA, background).
    pub(crate) commits: AtomicU64,
    /// Of those, the ones that wrote to sled (map, allocator or catalog
    /// changes) and so paid sled's flush and fsync after the data files'.
    pub(crate) map_commits: AtomicU64,
    /// FLUSHes made durable by the intent log instead of a commit.
    pub(crate) intent_flushes: AtomicU64,
}

#[derive(Default)]
pub(crate) struct GcStats {
    pub(crate) chunks_freed: AtomicU64,
    pub(crate) bytes_freed: AtomicU64,
}

pub(crate) struct Engine {
    pub(crate) config: StoreConfig,
    pub(crate) meta: Box<dyn MetaStore>,
    pub(crate) data: DataFiles,
    pub(crate) pending: Pending,
    /// Frozen views of clones' parents (`lineage.rs`).
    pub(crate) lineage: LineageCache,
    pub(crate) alloc: Allocator,
    pub(crate) committer: Committer,
    pub(crate) intent: IntentLog,
    pub(crate) catalog: Mutex<Catalog>,
    stripes: Box<[RwLock<()>]>,
    pub(crate) closed: AtomicBool,
    pub(crate) gc_stats: GcStats,
    pub(crate) write_stats: WriteStats,
    /// One GC runner at a time (background or `gc_now`).
    pub(crate) gc_lock: Mutex<()>,
    /// Wakes the background thread early (pending map past its soft limit, close).
    pub(crate) wake: (Mutex<bool>, Condvar),
}

fn stripe_of(node: NodeId, group: u64) -> usize {
    let h =
        (node.0.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ group).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    // invariant: the shift leaves 10 bits
    usize::try_from(h >> 54).unwrap_or(0) % STRIPES
}

/// How many files each chunk class is striped over. A new store records
/// `LANES` before anything else; a store without the key was made before
/// striping and keeps its single lane.
fn data_lanes(meta: &dyn MetaStore) -> Result<u64, StoreError> {
    if let Some(v) = meta.get(LAYOUT)? {
        let lanes = <[u8; 8]>::try_from(v.as_slice()).map(u64::from_be_bytes).unwrap_or(0);
        if !(1..=1024).contains(&lanes) {
            return Err(StoreError::corrupt(format!("data layout record ({} bytes)", v.len())));
        }
        return Ok(lanes);
    }
    if !meta.scan(&[], &[0xff], 1)?.is_empty() {
        return Ok(1);
    }
    meta.apply(&[KeyOp::Put(LAYOUT.to_vec(), LANES.to_be_bytes().to_vec())])?;
    meta.durable_flush()?;
    Ok(LANES)
}

impl Engine {
    pub(crate) fn open(
        config: StoreConfig,
        factory: Arc<dyn DataFileFactory>,
    ) -> Result<Engine, StoreError> {
        let io = |e| StoreError::io(format!("data directory {}", config.dir.display()), e);
        std::fs::create_dir_all(&config.dir).map_err(io)?;
        let meta = SledMeta::open(&config.dir.join("sled"), config.cache_capacity)?;
        let lanes = data_lanes(&meta)?;
        let data = DataFiles::new(config.dir.join("chunks"), factory.clone(), lanes);
        let epoch = match meta.get(INTENT_EPOCH)? {
            Some(v) => decode_u64(&v).ok_or_else(|| StoreError::corrupt("intent log epoch"))?,
            None => 0,
        };
        let intent = IntentLog::new(config.intent_log_bytes);
        intent.open(factory.as_ref(), &config.dir.join(LOG_FILE), epoch)?;
        let pending = Pending::new(config.map_cache_bytes / 4 * 3);
        let lineage = LineageCache::new(config.map_cache_bytes / 4);
        let engine = Engine {
            config,
            meta: Box::new(meta),
            data,
            pending,
            lineage,
            alloc: Allocator::new(lanes),
            committer: Committer::default(),
            intent,
            catalog: Mutex::new(Catalog::default()),
            stripes: (0..STRIPES).map(|_| RwLock::new(())).collect(),
            closed: AtomicBool::new(false),
            gc_stats: GcStats::default(),
            write_stats: WriteStats::default(),
            gc_lock: Mutex::new(()),
            wake: (Mutex::new(false), Condvar::new()),
        };
        engine.load()?;
        engine.replay_intent()?;
        engine.intent.finish_open();
        Ok(engine)
    }

    pub(crate) fn read_stripe(&self, node: NodeId, group: u64) -> RwLockReadGuard<'_, ()> {
        self.stripes[stripe_of(node, group)].read()
    }

    pub(crate) fn write_stripe(&self, node: NodeId, group: u64) -> RwLockWriteGuard<'_, ()> {
        self.stripes[stripe_of(node, group)].write()
    }

    pub(crate) fn check_open(&self) -> Result<(), StoreError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::new(crate::ErrorKind::Gone, "store closed"));
        }
        Ok(())
    }

    pub(crate) fn wake_background(&self) {
        *self.wake.0.lock() = true;
        self.wake.1.notify_all();
    }

    /// Every `(key, value)` with the given one-byte prefix.
    fn scan_prefix(&self, prefix: u8) -> Result<Vec<crate::meta::Pair>, StoreError> {
        let mut out = Vec::new();
        let hi = [prefix + 1];
        let mut from = vec![prefix];
        loop {
            let page = self.meta.scan(&from, &hi, 1000)?;
            let n = page.len();
            if let Some((k, _)) = page.last() {
                from = k.clone();
                from.push(0);
            }
            out.extend(page);
            if n < 1000 {
                return Ok(out);
            }
        }
    }

    fn load(&self) -> Result<(), StoreError> {
        let mut cat = self.catalog.lock();
        let mut recs: BTreeMap<NodeId, NodeRec> = BTreeMap::new();
        for (k, v) in self.scan_prefix(NODE)? {
            let id = decode_node_key(NODE, &k).ok_or_else(|| StoreError::corrupt("node key"))?;
            match NodeRec::decode(&v) {
                Some(r) => {
                    recs.insert(id, r);
                }
                None => tracing::error!(node = id.0, "corrupt node record; node not served"),
            }
        }
        for (&id, r) in &recs {
            let s = NodeState::new(id, r.chunk_size, r.created, r.head, r.size);
            s.set_life(r.life);
            *s.truncs.write() = r.truncs.clone();
            if r.life == Life::Volume {
                cat.names.insert(r.name.clone(), id);
            }
            let entry =
                NodeEntry { state: Arc::new(s), name: r.name.clone(), label: r.label.clone() };
            cat.nodes.insert(id, entry);
        }
        for (&id, r) in &recs {
            if let Some((p, e)) = r.parent {
                let parent = cat.nodes.get(&p).map(|n| n.state.clone());
                match (parent, cat.nodes.get(&id)) {
                    (Some(ps), Some(n)) => *n.state.parent.write() = Some((ps, e)),
                    _ if r.life == Life::Dead => {} // GC removed the origin first
                    _ => tracing::error!(node = id.0, parent = p.0, "clone's origin node missing"),
                }
            }
        }
        for (k, v) in self.scan_prefix(SNAP)? {
            let (id, epoch) =
                decode_pair_key(SNAP, &k).ok_or_else(|| StoreError::corrupt("snapshot key"))?;
            match SnapRec::decode(&v) {
                Some(rec) => {
                    let alive = Arc::new(AtomicBool::new(true));
                    cat.snaps.insert((id, epoch), SnapEntry { rec, alive });
                }
                None => tracing::error!(node = id.0, epoch, "corrupt snapshot record"),
            }
        }
        for (k, v) in self.scan_prefix(OWNED)? {
            let (id, birth) =
                decode_pair_key(OWNED, &k).ok_or_else(|| StoreError::corrupt("counter key"))?;
            let n = decode_u64(&v).ok_or_else(|| StoreError::corrupt("owned counter"))?;
            if let Some(node) = cat.nodes.get(&id) {
                node.state.owned.lock().insert(birth, n);
            }
        }
        let mut free: BTreeMap<u8, Vec<u64>> = BTreeMap::new();
        for (k, _) in self.scan_prefix(FREE)? {
            let (class, id) = decode_free_key(&k).ok_or_else(|| StoreError::corrupt("free key"))?;
            free.entry(class).or_default().push(id.0);
        }
        for (k, v) in self.scan_prefix(HWM)? {
            let class = *k.get(1).ok_or_else(|| StoreError::corrupt("allocator key"))?;
            let hwm = decode_u64(&v).ok_or_else(|| StoreError::corrupt("allocator value"))?;
            self.alloc.load(class, hwm, free.remove(&class).unwrap_or_default());
        }
        for (class, ids) in free {
            self.alloc.load(class, 0, ids);
        }
        for (k, v) in self.scan_prefix(GC)? {
            let id = decode_node_key(GC, &k).ok_or_else(|| StoreError::corrupt("gc key"))?;
            let resume = decode_u64(&v).unwrap_or(0);
            cat.gc_generation += 1;
            let generation = cat.gc_generation;
            cat.gc.insert(id, GcMark { resume, generation });
        }
        cat.next_node = match self.meta.get(NEXT_NODE)? {
            Some(v) => decode_u64(&v).ok_or_else(|| StoreError::corrupt("next node id"))?,
            None => 1,
        };
        let max = cat.nodes.keys().next_back().map_or(0, |k| k.0);
        cat.next_node = cat.next_node.max(max + 1);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_stores_are_striped_and_old_ones_keep_one_lane() {
        let dir = tempfile::tempdir().unwrap();
        let fresh = SledMeta::open(&dir.path().join("a"), 1 << 20).unwrap();
        assert_eq!(data_lanes(&fresh).unwrap(), LANES);
        // recorded: the same answer once the store has other keys
        fresh.apply(&[KeyOp::Put(NEXT_NODE.to_vec(), 5u64.to_be_bytes().to_vec())]).unwrap();
        assert_eq!(data_lanes(&fresh).unwrap(), LANES);

        let old = SledMeta::open(&dir.path().join("b"), 1 << 20).unwrap();
        old.apply(&[KeyOp::Put(NEXT_NODE.to_vec(), 5u64.to_be_bytes().to_vec())]).unwrap();
        assert_eq!(data_lanes(&old).unwrap(), 1);
        assert_eq!(old.get(LAYOUT).unwrap(), None);

        old.apply(&[KeyOp::Put(LAYOUT.to_vec(), vec![1, 2, 3])]).unwrap();
        assert!(data_lanes(&old).is_err());
    }
}
