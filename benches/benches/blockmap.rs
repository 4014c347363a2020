//! Block-map lookup: `Export::read` of 4 KiB at random offsets of a small,
//! fully allocated volume, after a warm-up pass (page cache and sled cache
//! hot), so the time is the map lookup plus a 4 KiB pread.
//! `cargo bench -p clonebd-benches --bench blockmap`

mod common;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const VOLUME: u64 = 64 << 20;
const BLOCK: usize = 4096;

/// xorshift64*: cheap, deterministic offsets.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

fn bench_blockmap(c: &mut Criterion) {
    let (_tmp, store, export) = common::filled_volume("clonebd-bench-blockmap", VOLUME);

    let blocks = VOLUME / BLOCK as u64;
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let mut buf = vec![0u8; BLOCK];
    for _ in 0..2 * blocks {
        export.read((rng.next() % blocks) * BLOCK as u64, &mut buf).expect("warm-up read");
    }

    let mut group = c.benchmark_group("blockmap");
    group.throughput(Throughput::Bytes(BLOCK as u64));
    group.bench_function("read4k_allocated_random", |b| {
        b.iter(|| {
            let off = (rng.next() % blocks) * BLOCK as u64;
            export.read(off, &mut buf).expect("read");
            std::hint::black_box(&buf);
        });
    });
    group.bench_function("read4k_allocated_same_chunk", |b| {
        b.iter(|| {
            export.read(std::hint::black_box(0), &mut buf).expect("read");
            std::hint::black_box(&buf);
        });
    });
    group.finish();
    drop(export);
    store.close().expect("close");
}

criterion_group!(benches, bench_blockmap);
criterion_main!(benches);
