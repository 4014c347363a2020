//! Where chunks land on disk (`alloc.rs`): data written in order is read
//! back with one read per run, however it was split into requests.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::config;
use super::memfs::MemFs;
use crate::Store;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

/// Reads `len` bytes of `vol` at `off`; returns the data-file reads it took
/// and the bytes.
fn counted_read(fs: &MemFs, s: &Store, vol: &str, off: u64, len: u64) -> (u64, Vec<u8>) {
    let before = fs.faults.data_reads.load(Ordering::Relaxed);
    let mut buf = vec![0u8; len as usize];
    s.open_export(vol).unwrap().read(off, &mut buf).unwrap();
    (fs.faults.data_reads.load(Ordering::Relaxed) - before, buf)
}

/// The reads a range took, after checking it holds `byte` throughout.
fn reads_of_run(fs: &MemFs, s: &Store, off: u64, len: u64, byte: u8) -> u64 {
    let (reads, data) = counted_read(fs, s, "v", off, len);
    assert!(data.iter().all(|b| *b == byte), "{len} bytes at {off} are not all {byte}");
    reads
}

#[test]
fn two_interleaved_sequential_writers_are_each_read_back_in_one_read() {
    let dir = tempfile::tempdir().unwrap();
    let fs = MemFs::default();
    let open = || Store::open_with(config(dir.path()), Arc::new(fs.clone())).unwrap();
    let s = open();
    s.create_volume("v", 8 * MIB, 65536).unwrap().unwrap();
    let e = s.open_export("v").unwrap();
    // 256 KiB requests of two streams, taking turns (a copy tool, a WAL
    // next to table files)
    for i in 0..4 {
        e.write(i * 256 * KIB, &[1; 256 * KIB as usize]).unwrap();
        e.write(4 * MIB + i * 256 * KIB, &[2; 256 * KIB as usize]).unwrap();
    }
    assert_eq!(reads_of_run(&fs, &s, 0, MIB, 1), 1);
    assert_eq!(reads_of_run(&fs, &s, 4 * MIB, MIB, 2), 1);
    drop(e);
    s.close().unwrap();
    drop(s);

    // after a restart both streams go on, the data in runs again
    let s = open();
    let e = s.open_export("v").unwrap();
    e.write(MIB, &[3; MIB as usize]).unwrap();
    e.write(5 * MIB, &[4; MIB as usize]).unwrap();
    assert_eq!(reads_of_run(&fs, &s, MIB, MIB, 3), 1);
    assert_eq!(reads_of_run(&fs, &s, 5 * MIB, MIB, 4), 1);
    assert_eq!(reads_of_run(&fs, &s, 0, MIB, 1), 1);
    drop(e);
    s.close().unwrap();
}

/// Runs end after 1 MiB, so one long sequential pass still spreads the
/// volume over every data file (random writes into it later do not all
/// queue on one file's lock), and a 2 MiB group reads in two.
#[test]
fn one_long_stream_spreads_over_every_lane_in_1_mib_runs() {
    let dir = tempfile::tempdir().unwrap();
    let fs = MemFs::default();
    let s = Store::open_with(config(dir.path()), Arc::new(fs.clone())).unwrap();
    s.create_volume("v", 16 * MIB, 65536).unwrap().unwrap();
    let e = s.open_export("v").unwrap();
    for i in 0..16 {
        e.write(i * MIB, &[i as u8 + 1; MIB as usize]).unwrap();
    }
    assert_eq!(fs.data_files_in_use(), 8);
    let (reads, data) = counted_read(&fs, &s, "v", 0, 16 * MIB);
    assert_eq!(reads, 16);
    for (i, mib) in data.chunks(MIB as usize).enumerate() {
        assert!(mib.iter().all(|b| *b == i as u8 + 1), "MiB {i}");
    }
    drop(e);
    s.close().unwrap();
}
