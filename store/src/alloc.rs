//! The chunk allocator: which id, and so which place in the data files, a
//! new chunk gets.
//!
//! Chunk `i` lives in lane `(i - 1) % lanes`, right after chunk `i - lanes`
//! (`data.rs`). Handing ids out in plain order put a write's consecutive
//! chunks into eight files, and reading them back took one `pread` per
//! 64 KiB chunk, sixteen per 1 MiB READ; one `pread` of the whole run costs
//! the server less per byte (BENCHMARKS.md). So each lane has its own
//! cursor: a write's next chunk continues in the lane of its previous one
//! while that lane's next place follows it, the run sits in a row in one
//! file, and a READ takes it with one `pread` (`io.rs` reads physically
//! adjacent chunks at once). A run ends at a `RUN_BYTES` boundary of its
//! file, and a new run starts in the lane furthest behind, which keeps the
//! lanes level and spreads a volume over all the files, as plain order did:
//! random writes into one file queue on its inode lock (`data.rs`). Runs
//! without that bound put a clone written by one sequential pass into one
//! file, and 4 KiB random writes into it from four connections fell from
//! 28-29k to 23k IOPS.
//!
//! Only the highest id handed out is durable (the `A` key of each class).
//! After a restart every lane resumes at the first run boundary above it;
//! the places skipped stay unused: less than two runs in each lane per
//! restart. Most are holes in sparse files; after a crash (not a clean
//! stop) some may hold data a lagging lane wrote below the mark since the
//! last commit, never referenced and never reused: at most that much space
//! leaks per crash (16 MiB with 64 KiB chunks), as chunks allocated in a
//! crashed multi-batch commit do (docs/ARCHITECTURE.md "Recovery").

use parking_lot::Mutex;

use crate::keys::ChunkId;
use crate::pending::{Allocation, CLASSES, Pending};

struct ClassState {
    /// Highest chunk id ever handed out fresh.
    hwm: u64,
    /// Durably free chunks, reusable now.
    free: Vec<u64>,
    /// Per lane, the next fresh id.
    next: Vec<u64>,
}

/// Bytes of one run of chunks in a row in one file (see the module
/// comment): a 1 MiB READ takes one or two `pread`s.
const RUN_BYTES: u64 = 1 << 20;

/// Free list first, else a fresh id (see the module comment).
pub(crate) struct Allocator {
    lanes: u64,
    classes: Mutex<[ClassState; CLASSES]>,
}

/// Chunks of one run in `class` (4 KiB << class).
fn run_rows(class: usize) -> u64 {
    (RUN_BYTES >> (12 + class.min(8))).max(1)
}

/// The first id of each lane in the first row that starts a run and lies
/// wholly above `hwm`.
fn cursors(hwm: u64, lanes: u64, rows: u64) -> Vec<u64> {
    let row = if hwm == 0 { 0 } else { ((hwm - 1) / lanes + 1).next_multiple_of(rows) };
    (0..lanes).map(|lane| row * lanes + lane + 1).collect()
}

impl Allocator {
    /// An allocator for a store whose data files have `lanes` lanes.
    pub(crate) fn new(lanes: u64) -> Self {
        let lanes = lanes.max(1);
        let classes = std::array::from_fn(|class| ClassState {
            hwm: 0,
            free: Vec::new(),
            next: cursors(0, lanes, run_rows(class)),
        });
        Self { lanes, classes: Mutex::new(classes) }
    }

    /// Adds what the metadata store holds for `class`.
    pub(crate) fn load(&self, class: u8, hwm: u64, free: Vec<u64>) {
        let mut c = self.classes.lock();
        if let Some(s) = c.get_mut(usize::from(class)) {
            if hwm > s.hwm {
                s.hwm = hwm;
                s.next = cursors(hwm, self.lanes, run_rows(usize::from(class)));
            }
            s.free.extend(free);
        }
    }

    /// A chunk for `class`; `after` is the chunk holding the data just
    /// before the new one's, if any: the new one goes right after it on
    /// disk when it can.
    pub(crate) fn alloc(&self, class: u8, after: Option<ChunkId>) -> Allocation {
        let mut c = self.classes.lock();
        let s = &mut c[usize::from(class) % CLASSES];
        if let Some(id) = s.free.pop() {
            return Allocation { class, id: ChunkId(id), from_free: true };
        }
        let (lanes, rows) = (self.lanes, run_rows(usize::from(class)));
        // the place right after `after`, if that is its lane's next and
        // not the start of a run
        let continued = after.and_then(|prev| {
            let row = (prev.0.checked_sub(1)?) / lanes + 1;
            let lane = usize::try_from((prev.0 - 1) % lanes).ok()?;
            (row % rows != 0 && s.next.get(lane) == Some(&(prev.0 + lanes))).then_some(lane)
        });
        // the lane furthest behind; the first of equals
        let lane = continued.unwrap_or_else(|| {
            s.next.iter().enumerate().min_by_key(|&(_, next)| *next).map_or(0, |(lane, _)| lane)
        });
        let id = s.next[lane];
        s.next[lane] += lanes;
        s.hwm = s.hwm.max(id);
        Allocation { class, id: ChunkId(id), from_free: false }
    }

    /// An allocation that was never recorded (its write failed).
    pub(crate) fn unuse(&self, a: Allocation, pending: &Pending) {
        if a.from_free {
            self.release(&[(a.class, a.id)]);
        } else {
            pending.record(Vec::new(), &[], &[(a.class, a.id)], &[]);
        }
    }

    /// Makes chunks reusable (after the commit that freed them is durable).
    pub(crate) fn release(&self, chunks: &[(u8, ChunkId)]) {
        let mut c = self.classes.lock();
        for &(class, id) in chunks {
            if let Some(s) = c.get_mut(usize::from(class)) {
                s.free.push(id.0);
            }
        }
    }

    /// Per class, the highest id handed out fresh (what the next commit
    /// makes durable).
    pub(crate) fn hwms(&self) -> [u64; CLASSES] {
        let c = self.classes.lock();
        std::array::from_fn(|i| c[i].hwm)
    }

    pub(crate) fn free_count(&self) -> usize {
        self.classes.lock().iter().map(|s| s.free.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use proptest::prelude::*;

    use super::*;

    const LANES: u64 = 8;

    fn lane(id: ChunkId) -> u64 {
        (id.0 - 1) % LANES
    }

    #[test]
    fn a_write_s_chunks_follow_each_other_in_one_lane_up_to_a_run() {
        // 64 KiB chunks (class 4): runs of 16
        let a = Allocator::new(LANES);
        let mut prev = a.alloc(4, None).id;
        for _ in 0..15 {
            let next = a.alloc(4, Some(prev)).id;
            assert_eq!(next.0, prev.0 + LANES, "chunk right after the previous one on disk");
            prev = next;
        }
        assert_eq!(a.hwms()[4], prev.0);
        // the 17th starts a run in another lane, the one furthest behind
        let next = a.alloc(4, Some(prev)).id;
        assert_ne!(lane(next), lane(prev));
        assert_eq!(next, ChunkId(2));
        // 1 MiB chunks: every chunk is a run of its own
        let first = a.alloc(8, None).id;
        assert_ne!(lane(a.alloc(8, Some(first)).id), lane(first));
    }

    #[test]
    fn new_runs_start_in_the_lane_furthest_behind() {
        let a = Allocator::new(LANES);
        // two writes at once take two lanes, each keeps its own
        let (x, y) = (a.alloc(0, None).id, a.alloc(0, None).id);
        assert_ne!(lane(x), lane(y));
        let (x2, y2) = (a.alloc(0, Some(x)).id, a.alloc(0, Some(y)).id);
        assert_eq!((x2.0, y2.0), (x.0 + LANES, y.0 + LANES));
        // single-chunk writes go round the lanes that are behind
        let singles: HashSet<u64> = (0..6).map(|_| lane(a.alloc(0, None).id)).collect();
        assert_eq!(singles.len(), 6);
        assert!(!singles.contains(&lane(x)) && !singles.contains(&lane(y)));
        // a run whose lane another write took starts over elsewhere
        let z = a.alloc(0, None).id;
        let stolen = a.alloc(0, Some(ChunkId(z.0 - LANES)));
        assert_ne!(stolen.id.0, z.0);
    }

    #[test]
    fn freed_chunks_are_reused_first_and_classes_are_apart() {
        let a = Allocator::new(LANES);
        let first = a.alloc(4, None);
        a.release(&[(4, ChunkId(77))]);
        assert_eq!(a.free_count(), 1);
        let reused = a.alloc(4, Some(first.id));
        assert!(reused.from_free);
        assert_eq!(reused.id, ChunkId(77));
        assert_eq!(a.alloc(3, None).id, ChunkId(1), "class 3 has its own ids");
    }

    #[test]
    fn cursors_resume_at_the_next_run_above_the_durable_mark() {
        for (hwm, row) in [(0, 0), (1, 16), (8, 16), (128, 16), (129, 32), (200, 32)] {
            let next = cursors(hwm, LANES, 16);
            for (l, id) in next.iter().enumerate() {
                assert!(*id > hwm, "hwm {hwm} lane {l}: {id}");
                assert_eq!((id - 1) % LANES, l as u64, "hwm {hwm}: lane");
                assert_eq!((id - 1) / LANES, row, "hwm {hwm}: row");
            }
        }
        assert_eq!(cursors(5, 1, 1), vec![6]);
        assert_eq!(run_rows(4), 16);
        assert_eq!(run_rows(8), 1);
    }

    proptest! {
        /// Ids are never handed out twice, never at or below a loaded mark,
        /// and the mark covers every fresh id.
        #[test]
        fn fresh_ids_are_unique_and_above_the_mark(
            loaded in 0u64..200,
            lanes in 1u64..10,
            steps in proptest::collection::vec((0usize..4, any::<bool>()), 1..300),
        ) {
            let a = Allocator::new(lanes);
            a.load(2, loaded, Vec::new());
            let mut seen = HashSet::new();
            let mut writers: [Option<ChunkId>; 4] = [None; 4];
            for (w, cont) in steps {
                let after = if cont { writers[w] } else { None };
                let got = a.alloc(2, after);
                prop_assert!(!got.from_free);
                prop_assert!(got.id.0 > loaded);
                prop_assert!(seen.insert(got.id.0), "id {} twice", got.id.0);
                prop_assert!(a.hwms()[2] >= got.id.0);
                writers[w] = Some(got.id);
            }
        }
    }
}
