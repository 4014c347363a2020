//! `Export::read_sparse` against `read` + `block_status` on random states
//! and random ranges (heads, snapshots, clones, shrunk volumes), and the
//! map cache's coherency across commits and restarts.

use proptest::prelude::*;

use super::config;
use crate::{Export, SnapshotKind, Store};

const SIZE: u64 = 96 * 4096;

#[derive(Clone, Debug)]
enum Op {
    Write { off: u64, len: u64, byte: u8 },
    Zero { off: u64, len: u64 },
    Trim { off: u64, len: u64 },
    Snapshot,
    Shrink { sectors: u64 },
    Commit,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..SIZE, 1u64..70_000, 1u8..=255).prop_map(|(off, len, byte)| Op::Write { off, len, byte }),
        1 => (0..SIZE, 1u64..70_000).prop_map(|(off, len)| Op::Zero { off, len }),
        1 => (0..SIZE, 1u64..70_000).prop_map(|(off, len)| Op::Trim { off, len }),
        1 => Just(Op::Snapshot),
        1 => (1..SIZE / 512).prop_map(|sectors| Op::Shrink { sectors }),
        1 => Just(Op::Commit),
    ]
}

fn check(e: &Export, ranges: &[(u64, u64)]) -> Result<(), TestCaseError> {
    let size = e.size();
    for &(o, l) in ranges {
        let off = o % size;
        let len = l.min(size - off);
        let mut want = vec![0u8; len as usize];
        e.read(off, &mut want).unwrap();
        let mut got = vec![0x5au8; len as usize];
        let extents = e.read_sparse(off, &mut got).unwrap();
        prop_assert!(got == want, "{} bytes at {} of {} differ", len, off, e.name());
        prop_assert_eq!(extents, e.block_status(off, len).unwrap(), "{} at {}", len, off);
        // What was just written is in the page cache; if the kernel dropped
        // some of it, the read from memory must say so rather than guess.
        // (That such reads do succeed on real files is pinned by
        // `data::tests::cached_reads_refuse_data_the_page_cache_dropped`.)
        let mut cached = vec![0xa5u8; len as usize];
        if let Some(extents) = e.read_sparse_cached(off, &mut cached).unwrap() {
            prop_assert!(
                cached == want,
                "{} bytes at {} of {} differ from memory",
                len,
                off,
                e.name()
            );
            prop_assert_eq!(extents, e.block_status(off, len).unwrap(), "{} at {}", len, off);
        }
    }
    Ok(())
}

fn run(chunk: u32, ops: Vec<Op>, ranges: Vec<(u64, u64)>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(config(dir.path())).unwrap();
    store.create_volume("v", SIZE, chunk).unwrap().unwrap();
    let mut snaps = 0;
    for (i, op) in ops.iter().enumerate() {
        let e = store.open_export("v").unwrap();
        let size = e.size();
        let clip = |off: u64, len: u64| (off % size, len.min(size - off % size));
        match *op {
            Op::Write { off, len, byte } => {
                let (o, l) = clip(off, len);
                e.write(o, &vec![byte; l as usize]).unwrap();
            }
            Op::Zero { off, len } => {
                let (o, l) = clip(off, len);
                e.write_zeroes(o, l, true).unwrap();
            }
            Op::Trim { off, len } => {
                let (o, l) = clip(off, len);
                e.trim(o, l).unwrap();
            }
            Op::Snapshot => {
                snaps += 1;
                let name = format!("s{snaps}");
                store.create_snapshot("v", Some(&name), SnapshotKind::Manual).unwrap().unwrap();
            }
            Op::Shrink { sectors } => {
                store.resize_volume("v", sectors * 512).unwrap().unwrap();
                store.resize_volume("v", SIZE).unwrap().unwrap();
            }
            Op::Commit => e.commit().unwrap(),
        }
        if i == ops.len() / 2 {
            store.create_clone("v", "c").unwrap().unwrap();
            let c = store.open_export("c").unwrap();
            c.write(5000, &[7u8; 9000]).unwrap();
        }
    }
    let mut exports = vec![store.open_export("v").unwrap()];
    exports.extend(store.open_export("c"));
    for s in 1..=snaps {
        exports.push(store.open_export(&format!("v@s{s}")).unwrap());
    }
    for e in &exports {
        check(e, &ranges)?;
    }
    // the same after a restart (cold cache) and after GC
    let before: Vec<Vec<u8>> = exports.iter().map(|e| super::read_all(&store, e.name())).collect();
    drop(exports);
    store.close().unwrap();
    drop(store);
    store = Store::open(config(dir.path())).unwrap();
    if snaps > 0 {
        store.delete_snapshot("v", "s1").unwrap().ok();
        store.gc_now().unwrap();
    }
    let names: Vec<String> = store.exports().into_iter().map(|x| x.name).collect();
    for name in names {
        let e = store.open_export(&name).unwrap();
        check(&e, &ranges)?;
    }
    let e = store.open_export("v").unwrap();
    prop_assert!(super::read_all(&store, "v") == before[0]);
    drop(e);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: super::cases(48), ..ProptestConfig::default() })]

    #[test]
    fn read_sparse_matches_read_and_block_status(
        chunk in prop::sample::select(vec![4096u32, 8192, 16384]),
        ops in prop::collection::vec(op(), 1..24),
        ranges in prop::collection::vec((0..SIZE, 1u64..200_000), 1..12),
    ) {
        run(chunk, ops, ranges)?;
    }
}

/// Sequential writes allocate consecutive chunks: large reads and
/// overwrites of them go through coalesced IO and must stay exact.
#[test]
fn coalesced_reads_and_writes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path())).unwrap();
    store.create_volume("v", 4 << 20, 4096).unwrap().unwrap();
    let e = store.open_export("v").unwrap();
    let mut model = vec![0u8; 4 << 20];
    let pattern: Vec<u8> = (0..(1 << 20) + 777).map(|i| (i * 7 + i / 4096) as u8).collect();
    for (off, len) in [(0usize, 1 << 20), (12_345, (1 << 20) + 777), (3 << 20, 300_000)] {
        e.write(off as u64, &pattern[..len]).unwrap();
        model[off..off + len].copy_from_slice(&pattern[..len]);
    }
    // overwrite in place across chunks (owned, consecutive)
    e.write(5000, &pattern[..200_000]).unwrap();
    model[5000..205_000].copy_from_slice(&pattern[..200_000]);
    e.write_zeroes(2 << 20, 1 << 19, true).unwrap();
    model[2 << 20..(2 << 20) + (1 << 19)].fill(0);
    for (off, len) in [(0usize, 4 << 20), (4095, 8194), (131_000, 1 << 20), (3 << 20, 1 << 20)] {
        let mut buf = vec![1u8; len];
        e.read(off as u64, &mut buf).unwrap();
        assert!(buf == model[off..off + len], "read {len} at {off}");
        let mut sparse = vec![1u8; len];
        let ext = e.read_sparse(off as u64, &mut sparse).unwrap();
        assert!(sparse == buf);
        assert_eq!(ext, e.block_status(off as u64, len as u64).unwrap());
    }
    // copy-up after a snapshot: the snapshot keeps the old bytes
    store.create_snapshot("v", Some("s"), SnapshotKind::Manual).unwrap().unwrap();
    let old = model.clone();
    e.write(0, &pattern[..1 << 20]).unwrap();
    e.write(4096 * 3 + 5, &pattern[..100_000]).unwrap();
    model[..1 << 20].copy_from_slice(&pattern[..1 << 20]);
    model[4096 * 3 + 5..4096 * 3 + 100_005].copy_from_slice(&pattern[..100_000]);
    assert!(super::read_all(&store, "v") == model);
    assert!(super::read_all(&store, "v@s") == old);
    super::check_invariants(&store);
}

/// Reads from memory only (`read_sparse_cached`, the server's first try for
/// large READs) give what `read_sparse` gives while the data files are in
/// memory, refuse once they are not, and never need the files for holes.
#[test]
fn reads_from_memory_match_and_refuse_when_data_is_evicted() {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;

    use super::memfs::MemFs;

    const CHUNK: u64 = 65536;
    let dir = tempfile::tempdir().unwrap();
    let fs = MemFs::default();
    let s = Store::open_with(config(dir.path()), Arc::new(fs.clone())).unwrap();
    s.create_volume("v", 64 * CHUNK, CHUNK as u32).unwrap().unwrap();
    let v = s.open_export("v").unwrap();
    v.write(0, &vec![1u8; 8 * CHUNK as usize]).unwrap();
    s.create_snapshot("v", Some("s"), SnapshotKind::Manual).unwrap().unwrap();
    s.create_clone("v@s", "c").unwrap().unwrap();
    let c = s.open_export("c").unwrap();
    // a partial chunk: 4 KiB of its own over the snapshot's chunk
    c.write(CHUNK + 4096, &[2u8; 4096]).unwrap();

    let ranges =
        [(v.clone(), 0, 8 * CHUNK), (c.clone(), 0, 4 * CHUNK), (c.clone(), 4 * CHUNK, 8 * CHUNK)];
    for (e, off, len) in &ranges {
        let mut want = vec![0u8; *len as usize];
        let want_extents = e.read_sparse(*off, &mut want).unwrap();
        let mut got = vec![0xa5u8; *len as usize];
        let extents = e.read_sparse_cached(*off, &mut got).unwrap();
        assert_eq!(extents.as_ref(), Some(&want_extents), "{} at {off}", e.name());
        assert!(got == want, "{len} bytes at {off} of {}", e.name());
    }
    assert_eq!(&c.read_sparse_cached(CHUNK, &mut [0u8; 8192]).unwrap().map(|_| ()), &Some(()));

    fs.faults.evicted.store(true, Ordering::Relaxed);
    for (e, off, len) in [(&v, 0, 8 * CHUNK), (&c, CHUNK, 8192), (&c, 0, CHUNK)] {
        let mut buf = vec![0u8; len as usize];
        assert!(e.read_sparse_cached(off, &mut buf).unwrap().is_none(), "{} at {off}", e.name());
        // the blocking read still gets everything
        e.read_sparse(off, &mut buf).unwrap();
        let partial = e.name() == "c" && off == CHUNK;
        assert!(
            buf.iter()
                .enumerate()
                .all(|(i, b)| *b == if partial && (4096..8192).contains(&i) { 2 } else { 1 })
        );
    }
    // never-written space needs no file
    let mut hole = vec![0xa5u8; 16 * CHUNK as usize];
    let extents = v.read_sparse_cached(16 * CHUNK, &mut hole).unwrap().unwrap();
    assert!(hole.iter().all(|b| *b == 0));
    assert!(extents.iter().all(|e| !e.allocated));
    // a bad range is an error, not a miss
    assert!(v.read_sparse_cached(64 * CHUNK, &mut [0u8; 1]).is_err());
}
