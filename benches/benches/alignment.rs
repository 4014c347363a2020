//! The copy behind `store::IoBuf`: `pread` of cached file data into a
//! buffer at a page boundary, 16 bytes past one (where glibc puts a large
//! `Vec`) and 64 bytes past one (where an `IoBuf` may start). On the AMD
//! EPYC of BENCHMARKS.md ("Aligned buffers") the middle one is 4-5 times
//! slower; other CPUs may not care.
//! `cargo bench -p clonebd-benches --bench alignment`

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use store::{IO_ALIGN, IoBuf};

/// Small enough to stay in the page cache, large enough to leave the CPU caches.
const FILE: usize = 64 << 20;
const PAGE: usize = 4096;

fn bench_alignment(c: &mut Criterion) {
    let tmp = tempfile::Builder::new().prefix("clonebd-bench-align").tempfile().expect("tempfile");
    let mut f: File = tmp.reopen().expect("reopen");
    let block: Vec<u8> = (0..1u32 << 20).map(|i| (i % 251) as u8).collect();
    for _ in 0..FILE / block.len() {
        f.write_all(&block).expect("fill");
    }
    let mut group = c.benchmark_group("pread_into");
    for len in [4096usize, 64 << 10, 1 << 20] {
        group.throughput(Throughput::Bytes(len as u64));
        // One buffer, used from a page boundary plus `skew`: the copy's
        // source (page-cache pages) starts on a page, so the skew is the
        // distance between source and destination modulo 4 KiB.
        let mut buf = IoBuf::zeroed(len + 2 * PAGE);
        let page = (PAGE - buf.as_ptr() as usize % PAGE) % PAGE;
        for (name, skew) in [("page", 0), ("page_plus_16", 16), ("page_plus_64", IO_ALIGN)] {
            let at = page + skew;
            let mut off = 0u64;
            group.bench_function(format!("{name}/{len}"), |b| {
                b.iter(|| {
                    f.read_exact_at(&mut buf[at..at + len], off).expect("pread");
                    off = (off + len as u64) % FILE as u64;
                });
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench_alignment);
criterion_main!(benches);
