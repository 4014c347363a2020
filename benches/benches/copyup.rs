//! Copy-up: the first 4 KiB write into a chunk shared with a snapshot. A
//! volume of many allocated chunks is snapshotted; each iteration writes
//! into the next still-shared chunk. When every chunk has been copied up, a
//! new snapshot shares them all again and the previous one is deleted
//! (untimed, with a commit).
//! `cargo bench -p clonebd-benches --bench copyup`

use std::time::{Duration, Instant};

mod common;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use store::{DEFAULT_CHUNK_SIZE, SnapshotKind};

const VOLUME: u64 = 256 << 20;
const BLOCK: usize = 4096;

fn bench_copyup(c: &mut Criterion) {
    let (_tmp, store, export) = common::filled_volume("clonebd-bench-copyup", VOLUME);

    let chunk = u64::from(DEFAULT_CHUNK_SIZE);
    let chunks = VOLUME / chunk;
    // A stride coprime with the chunk count visits every chunk once per
    // round, in an order that is not sequential.
    let stride = 7919 % chunks;
    let data = vec![0xc3u8; BLOCK];
    let mut round = 0u64;
    let mut visited = chunks; // forces a snapshot before the first write
    let mut next = 0u64;
    let mut writes = 0u64;
    let before = store.stats().copy_ups;

    let mut group = c.benchmark_group("copyup");
    group.throughput(Throughput::Bytes(BLOCK as u64));
    group.bench_function("write4k_first_into_shared_chunk", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                if visited == chunks {
                    export.commit().expect("commit");
                    // Drop the previous round's snapshot (GC frees the old
                    // chunk versions) so the disk use stays at ~2x the volume.
                    if round > 0 {
                        store
                            .delete_snapshot("v", &format!("s{}", round - 1))
                            .expect("delete snapshot")
                            .expect("refused");
                    }
                    store
                        .create_snapshot("v", Some(&format!("s{round}")), SnapshotKind::Manual)
                        .expect("snapshot")
                        .expect("refused");
                    round += 1;
                    visited = 0;
                }
                // a different 4 KiB block of the chunk each round
                let off = next * chunk + (round % (chunk / BLOCK as u64)) * BLOCK as u64;
                let t = Instant::now();
                export.write(off, &data).expect("write");
                spent += t.elapsed();
                writes += 1;
                next = (next + stride) % chunks;
                visited += 1;
            }
            spent
        });
    });
    group.finish();
    let copy_ups = store.stats().copy_ups - before;
    eprintln!("copyup: {writes} writes, {copy_ups} copy-ups, {round} snapshot rounds");
    assert_eq!(copy_ups, writes, "every measured write must be a copy-up");
    drop(export);
    store.close().expect("close");
}

criterion_group!(benches, bench_copyup);
criterion_main!(benches);
