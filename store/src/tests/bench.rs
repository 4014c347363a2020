//! A micro-benchmark of the data path (not run by default):
//! `cargo test --release -p clonebd-store bench_data_path -- --ignored --nocapture`.
//! Optional env: `BENCH_READS` (default 1M), `BENCH_MIB` (default 256).

use std::time::Instant;

use crate::{SnapshotKind, Store};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// This thread's CPU time in ns (less disturbed by a busy machine than wall
/// time), from `/proc/thread-self/schedstat`.
fn cpu_ns() -> u64 {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    s.split_whitespace().next().and_then(|v| v.parse().ok()).unwrap_or(0)
}

struct Timer(Instant, u64);

fn timer() -> Timer {
    Timer(Instant::now(), cpu_ns())
}

fn report(what: &str, n: u64, t: Timer) {
    let ns = t.0.elapsed().as_nanos() as f64 / n as f64;
    let cpu = (cpu_ns() - t.1) as f64 / n as f64;
    println!("bench {what:<28} {n:>8} ops {ns:>9.0} ns/op wall {cpu:>9.0} ns/op cpu");
}

#[test]
#[ignore = "benchmark"]
fn bench_data_path() {
    let tmp = tempfile::Builder::new().prefix("clonebd-bench").tempdir_in("/var/tmp").unwrap();
    let store = Store::open(super::config(tmp.path())).unwrap();
    let mib = env("BENCH_MIB", 256);
    let size = mib << 20;
    let reads = env("BENCH_READS", 1_000_000);
    store.create_volume("v", size, 65536).unwrap().unwrap();
    let e = store.open_export("v").unwrap();
    let block = vec![0x5au8; 1 << 20];
    let t = timer();
    for i in 0..mib {
        e.write(i << 20, &block).unwrap();
    }
    e.commit().unwrap();
    report("fill 1 MiB writes", mib, t);
    let blocks = size / 4096;
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let mut buf = vec![0u8; 4096];
    // warm up (page cache, caches)
    for _ in 0..blocks {
        e.read((rng.next() % blocks) * 4096, &mut buf).unwrap();
    }
    let t = timer();
    for _ in 0..reads {
        e.read((rng.next() % blocks) * 4096, &mut buf).unwrap();
    }
    report("random 4k read", reads, t);
    let t = timer();
    for _ in 0..reads {
        let off = (rng.next() % blocks) * 4096;
        let st = e.block_status(off, 4096).unwrap();
        assert!(st[0].allocated);
        e.read(off, &mut buf).unwrap();
    }
    report("random 4k status+read", reads, t);
    let t = timer();
    for _ in 0..reads {
        let off = (rng.next() % blocks) * 4096;
        let st = e.read_sparse(off, &mut buf).unwrap();
        assert!(st[0].allocated);
    }
    report("random 4k read_sparse", reads, t);
    let mut big = vec![0u8; 128 << 10];
    let n = reads / 8;
    let t = timer();
    for _ in 0..n {
        e.read((rng.next() % (size / (128 << 10))) * (128 << 10), &mut big).unwrap();
    }
    report("random 128k read", n, t);
    let writes = reads / 4;
    let t = timer();
    for _ in 0..writes {
        e.write((rng.next() % blocks) * 4096, &buf).unwrap();
    }
    report("random 4k overwrite", writes, t);
    if std::env::var("BENCH_DEBUG").is_ok() {
        let st = store.stats();
        println!("allocated {} copy-ups {}", st.chunks_allocated, st.copy_ups);
    }
    e.commit().unwrap();
    // copy-up: every chunk once per round after a snapshot
    let chunks = size / 65536;
    let mut total = 0;
    let mut elapsed = std::time::Duration::ZERO;
    let mut cpu = 0;
    for round in 0..4 {
        store
            .create_snapshot("v", Some(&format!("s{round}")), SnapshotKind::Manual)
            .unwrap()
            .unwrap();
        let mut order: Vec<u64> = (0..chunks).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, (rng.next() % (i as u64 + 1)) as usize);
        }
        let t = timer();
        for c in order {
            e.write(c * 65536 + (rng.next() % 16) * 4096, &buf).unwrap();
        }
        elapsed += t.0.elapsed();
        cpu += cpu_ns() - t.1;
        total += chunks;
        e.commit().unwrap();
    }
    println!(
        "bench {:<28} {total:>8} ops {:>9.0} ns/op wall {:>9.0} ns/op cpu",
        "4k copy-up write",
        elapsed.as_nanos() as f64 / total as f64,
        cpu as f64 / total as f64
    );
    let s = store.open_export("v@s0").unwrap();
    let t = timer();
    for _ in 0..reads {
        s.read((rng.next() % blocks) * 4096, &mut buf).unwrap();
    }
    report("random 4k snapshot read", reads, t);
    let t = timer();
    for _ in 0..reads {
        e.read((rng.next() % blocks) * 4096, &mut buf).unwrap();
    }
    report("random 4k head read (5 vers)", reads, t);
    store.close().unwrap();
}
