//! Crash safety (DESIGN item 9): after a crash, committed writes read back and
//! every page holds its committed content or newer content of the same
//! volume, never another volume's bytes or bytes of a freed chunk.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use rand::{Rng, SeedableRng};

use super::memfs::MemFs;
use super::{check_invariants, config, read_all};
use crate::{ErrorKind, SnapshotKind, Store};

const SIZE: u64 = 256 * 1024;
const PAGE: u64 = 4096;

type Allowed = BTreeMap<u64, BTreeSet<u8>>;

fn write_pages(s: &Store, vol: &str, first: u64, n: u64, byte: u8, allowed: &mut Allowed) {
    let e = s.open_export(vol).unwrap();
    e.write(first * PAGE, &vec![byte; (n * PAGE) as usize]).unwrap();
    for p in first..first + n {
        allowed.entry(p).or_default().insert(byte);
    }
}

/// Every page of every volume is one byte repeated, and one it may hold.
fn check_allowed(s: &Store, allowed: &BTreeMap<&str, Allowed>, what: &str) {
    for (vol, m) in allowed {
        let got = read_all(s, vol);
        for (p, set) in m {
            let page = &got[(*p * PAGE) as usize..((*p + 1) * PAGE) as usize];
            assert!(
                page.iter().all(|b| *b == page[0]) && set.contains(&page[0]),
                "{what}: {vol} page {p} holds {:?}, allowed {set:?}",
                &page[..8]
            );
        }
    }
}

#[test]
fn crash_keeps_committed_data_and_never_foreign_bytes() {
    for seed in 0..12u64 {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let dir = tempfile::tempdir().unwrap();
        let fs = MemFs::default();
        let s = Store::open_with(config(dir.path()), Arc::new(fs.clone())).unwrap();
        let mut allowed: BTreeMap<&str, Allowed> = BTreeMap::new();
        for (vol, cs) in [("a", 4096), ("b", 8192)] {
            s.create_volume(vol, SIZE, cs).unwrap().unwrap();
            let m = allowed.entry(vol).or_default();
            for p in 0..SIZE / PAGE {
                m.entry(p).or_default().insert(0);
            }
        }
        // committed state: bytes 1 (a) and 2 (b)
        write_pages(&s, "a", 0, 40, 1, allowed.get_mut("a").unwrap());
        write_pages(&s, "b", 10, 40, 2, allowed.get_mut("b").unwrap());
        // a volume whose freed chunks the uncommitted writes will reuse
        s.create_volume("x", SIZE, 4096).unwrap().unwrap();
        s.open_export("x").unwrap().write(0, &vec![0xee; SIZE as usize]).unwrap();
        s.commit().unwrap();
        s.create_snapshot("a", Some("s"), SnapshotKind::Manual).unwrap().unwrap();
        let snap_a = read_all(&s, "a@s");
        s.delete_volume("x").unwrap().unwrap();
        s.gc_now().unwrap();
        let committed: BTreeMap<&str, Vec<u8>> =
            ["a", "b"].into_iter().map(|v| (v, read_all(&s, v))).collect();
        // the committed content is the only one allowed so far
        for (vol, m) in allowed.iter_mut() {
            for (p, set) in m.iter_mut() {
                set.clear();
                set.insert(committed[vol][(*p * PAGE) as usize]);
            }
        }
        // uncommitted writes: in place, copy-up, new chunks, trims
        for i in 0..30u8 {
            let vol = if rng.random_bool(0.5) { "a" } else { "b" };
            let first = rng.random_range(0..SIZE / PAGE - 4);
            let n = rng.random_range(1..4);
            if rng.random_bool(0.2) {
                let e = s.open_export(vol).unwrap();
                e.trim(first * PAGE, n * PAGE).unwrap();
                for p in first..first + n {
                    allowed.get_mut(vol).unwrap().entry(p).or_default().insert(0);
                }
            } else {
                write_pages(&s, vol, first, n, 10 + i, allowed.get_mut(vol).unwrap());
            }
            if i == 15 && seed % 2 == 0 {
                s.commit().unwrap(); // a second committed point
                for (vol, m) in allowed.iter_mut() {
                    let now = read_all(&s, vol);
                    for (p, set) in m.iter_mut() {
                        set.clear();
                        set.insert(now[(*p * PAGE) as usize]);
                    }
                }
            }
        }
        s.abandon();
        drop(s);
        fs.crash(|_| rng.random_bool(0.5));
        let s = Store::open_with(config(dir.path()), Arc::new(fs.clone())).unwrap();
        assert_eq!(read_all(&s, "a@s"), snap_a, "seed {seed}: snapshot changed");
        check_allowed(&s, &allowed, &format!("seed {seed}"));
        check_invariants(&s);
        s.close().unwrap();
    }
}

#[test]
fn failed_sync_poisons_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let fs = MemFs::default();
    let s = Store::open_with(config(dir.path()), Arc::new(fs.clone())).unwrap();
    s.create_volume("v", SIZE, 4096).unwrap().unwrap();
    let e = s.open_export("v").unwrap();
    e.write(0, &[1; 4096]).unwrap();
    fs.faults.fail_writes.store(true, Ordering::Relaxed);
    assert_eq!(e.write(8192, &[1; 10]).unwrap_err().kind(), ErrorKind::Io);
    fs.faults.fail_writes.store(false, Ordering::Relaxed);
    fs.faults.fail_sync.store(true, Ordering::Relaxed);
    assert_eq!(e.commit().unwrap_err().kind(), ErrorKind::Io);
    fs.faults.fail_sync.store(false, Ordering::Relaxed);
    assert_eq!(e.commit().unwrap_err().kind(), ErrorKind::Io);
    assert_eq!(e.write(0, &[2; 10]).unwrap_err().kind(), ErrorKind::Io);
    s.abandon();
}

/// A data directory (sled on disk, data files and the intent log in
/// memory) whose store commits only when told: every FLUSH after map
/// changes then goes to the intent log.
fn quiet_memfs() -> (tempfile::TempDir, MemFs, crate::StoreConfig) {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.commit_interval = std::time::Duration::from_secs(3600);
    (dir, MemFs::default(), c)
}

/// Every FLUSH (`Export::commit`) here follows map changes, so it goes to the
/// intent log; a crash then loses unsynced pages of every file, the log's
/// included. What a FLUSH acknowledged must read back (replayed at open),
/// through two crashes in a row, and the snapshot must not change.
#[test]
fn crash_keeps_what_the_intent_log_acknowledged() {
    for seed in 0..12u64 {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let (_dir, fs, c) = quiet_memfs();
        let mut s = Store::open_with(c.clone(), Arc::new(fs.clone())).unwrap();
        for (vol, cs) in [("a", 4096), ("b", 16384)] {
            s.create_volume(vol, SIZE, cs).unwrap().unwrap();
            s.open_export(vol).unwrap().write(0, &vec![1; SIZE as usize / 2]).unwrap();
        }
        s.create_snapshot("a", Some("s"), SnapshotKind::Manual).unwrap().unwrap();
        let snap_a = read_all(&s, "a@s");
        let mut allowed: BTreeMap<&str, Allowed> = BTreeMap::new();
        let reset = |s: &Store, allowed: &mut BTreeMap<&str, Allowed>| {
            for vol in ["a", "b"] {
                let now = read_all(s, vol);
                let m = allowed.entry(vol).or_default();
                for p in 0..SIZE / PAGE {
                    m.insert(p, BTreeSet::from([now[(p * PAGE) as usize]]));
                }
            }
        };
        reset(&s, &mut allowed);
        let mut logged = 0;
        for round in 0..2 {
            for i in 0..40u8 {
                let vol = if rng.random_bool(0.5) { "a" } else { "b" };
                let first = rng.random_range(0..SIZE / PAGE - 4);
                let n = rng.random_range(1..4);
                let e = s.open_export(vol).unwrap();
                if rng.random_bool(0.15) {
                    e.trim(first * PAGE, n * PAGE).unwrap();
                    for p in first..first + n {
                        allowed.get_mut(vol).unwrap().entry(p).or_default().insert(0);
                    }
                } else {
                    let byte = 20 + round * 50 + i;
                    write_pages(&s, vol, first, n, byte, allowed.get_mut(vol).unwrap());
                }
                if rng.random_bool(0.3) {
                    e.commit().unwrap();
                    reset(&s, &mut allowed);
                }
                if rng.random_bool(0.05) {
                    s.commit().unwrap(); // retires the records so far
                }
            }
            logged += s.stats().intent_flushes;
            s.abandon();
            drop(s);
            fs.crash(|_| rng.random_bool(0.5));
            s = Store::open_with(c.clone(), Arc::new(fs.clone())).unwrap();
            assert_eq!(read_all(&s, "a@s"), snap_a, "seed {seed}: snapshot changed");
            check_allowed(&s, &allowed, &format!("seed {seed} round {round}"));
            check_invariants(&s);
            reset(&s, &mut allowed);
        }
        assert!(logged > 0, "seed {seed}: no FLUSH went to the intent log");
        s.close().unwrap();
    }
}

/// A FLUSH torn by a crash whose first record is lost leaves later records
/// of its epoch in the log. They must never replay: not at the next open,
/// and not after new records of a later run fill the log up to them.
#[test]
fn records_left_by_a_torn_flush_never_replay() {
    let (_dir, fs, c) = quiet_memfs();
    let s = Store::open_with(c.clone(), Arc::new(fs.clone())).unwrap();
    s.create_volume("v", SIZE, 4096).unwrap().unwrap();
    s.open_export("v").unwrap().write(0, &vec![1; SIZE as usize]).unwrap();
    s.create_snapshot("v", Some("s"), SnapshotKind::Manual).unwrap().unwrap();
    // three copy-ups; each record (header + 8144 bytes) fills two blocks
    let len = 8192 - crate::intent::HEADER;
    let (a, b, x) = (0, 64 * 1024, 128 * 1024);
    let e = s.open_export("v").unwrap();
    e.write(a, &vec![2; len]).unwrap();
    e.write(b, &vec![3; len]).unwrap();
    e.write(b + 32 * 1024, &vec![3; len]).unwrap();
    fs.faults.fail_sync.store(true, Ordering::Relaxed);
    assert_eq!(e.commit().unwrap_err().kind(), ErrorKind::Io, "this FLUSH is never acknowledged");
    fs.faults.fail_sync.store(false, Ordering::Relaxed);
    s.abandon();
    drop((e, s));
    fs.crash(|page| page != 0); // the first record's first page is lost
    let s = Store::open_with(c.clone(), Arc::new(fs.clone())).unwrap();
    assert!(read_all(&s, "v").iter().all(|&x| x == 1), "nothing of the torn FLUSH replays");
    // acknowledged and committed: b's range now holds 4
    let e = s.open_export("v").unwrap();
    e.write(b, &vec![4; len]).unwrap();
    s.commit().unwrap();
    // one record of the same size: the next header in the file is the torn
    // FLUSH's record for b
    e.write(x, &vec![5; len]).unwrap();
    e.commit().unwrap();
    assert_eq!(s.stats().intent_flushes, 1);
    s.abandon();
    drop((e, s));
    fs.crash(|_| false);
    let s = Store::open_with(c, Arc::new(fs.clone())).unwrap();
    let got = read_all(&s, "v");
    let at = |o: u64| got[usize::try_from(o).unwrap()];
    assert_eq!((at(a), at(b), at(b + 32 * 1024), at(x)), (1, 4, 1, 5));
    check_invariants(&s);
    s.close().unwrap();
}

/// The log cannot grow (a full disk): the FLUSH commits instead, the store
/// stays writable, and what it acknowledged survives a crash.
#[test]
fn a_log_that_cannot_grow_makes_the_flush_commit() {
    let (_dir, fs, c) = quiet_memfs();
    let s = Store::open_with(c.clone(), Arc::new(fs.clone())).unwrap();
    s.create_volume("v", SIZE, 4096).unwrap().unwrap();
    let e = s.open_export("v").unwrap();
    fs.faults.fail_log_growth.store(true, Ordering::Relaxed);
    e.write(0, &[7; 8192]).unwrap();
    let before = s.stats();
    e.commit().unwrap();
    let after = s.stats();
    assert_eq!(after.intent_flushes, before.intent_flushes);
    assert_eq!(after.map_commits, before.map_commits + 1, "it committed");
    e.write(PAGE * 8, &[8; 4096]).unwrap();
    fs.faults.fail_log_growth.store(false, Ordering::Relaxed);
    e.commit().unwrap();
    assert_eq!(s.stats().intent_flushes, after.intent_flushes + 1, "logging again");
    s.abandon();
    drop((e, s));
    fs.crash(|_| false);
    let s = Store::open_with(c, Arc::new(fs.clone())).unwrap();
    let got = read_all(&s, "v");
    assert!(got[..8192].iter().all(|&b| b == 7) && got[8 * 4096..9 * 4096].iter().all(|&b| b == 8));
    s.close().unwrap();
}
