//! `clonebd-engine-bench`: benchmarks of the copy-on-write engine (issue 3,
//! acceptance items 5 and 6), driving `clonebd-store` directly, no NBD:
//!
//! - `latency`: snapshot and clone latency on volumes with 1 GiB and 32 GiB written;
//! - `depth`: random 4 KiB read IOPS through clone depth 0, 1 and 8;
//! - `metadata`: sled's on-disk size after 8 GiB of sequential writes and
//!   1 GiB of random 4 KiB writes (64 KiB chunks), and the data files' allocation.
//!
//! Each run works in a fresh directory under `--dir` (default `/var/tmp`, a
//! real disk) and deletes it at the end unless `--keep`.

use std::fmt::Write as _;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use clap::{Parser, Subcommand};
use clonebd_benches::report::histogram;
use clonebd_benches::workload::parse_size;
use hdrhistogram::Histogram;
use serde::Serialize;
use store::{Export, Refusal, SnapshotKind, Store, StoreConfig, StoreError};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const TIB: u64 = 1 << 40;

const PAGE_CACHE_NOTE: &str = "note: reads are served from the page cache (the data was just \
written and fits in RAM); that isolates the engine's own overhead (block-map lookups through \
the clone chain, locks, copies), which is the question here, not the disk's speed.";

/// Benchmarks of the clonebd copy-on-write engine (the store API, no NBD).
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Parent of the data directory (use a real disk, not tmpfs).
    #[arg(long, global = true, default_value = "/var/tmp")]
    dir: PathBuf,
    /// Keep the data directory afterwards.
    #[arg(long, global = true)]
    keep: bool,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Snapshot and clone latency versus the amount of data written.
    Latency {
        /// Data written before measuring, one store per size (e.g. 1G,32G).
        #[arg(long, value_delimiter = ',', value_parser = parse_size, default_value = "1G,32G")]
        written: Vec<u64>,
        /// Snapshot + clone pairs measured per size.
        #[arg(long, default_value_t = 200)]
        samples: usize,
        /// Unmeasured pairs first.
        #[arg(long, default_value_t = 3)]
        warmup: usize,
        /// Chunk size of the volume.
        #[arg(long, value_parser = parse_size, default_value = "64k")]
        chunk_size: u64,
    },
    /// Random 4 KiB read IOPS through clone chains.
    Depth {
        /// Clone depths measured (0: the volume itself).
        #[arg(long, value_delimiter = ',', default_value = "0,1,8")]
        depths: Vec<usize>,
        /// Seconds measured per depth and round.
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        /// Unmeasured seconds before each measurement.
        #[arg(long, default_value_t = 1.0)]
        warmup: f64,
        /// Reader threads.
        #[arg(long, default_value_t = 2)]
        threads: usize,
        /// Passes over all depths (interleaved, to spread drift and noise).
        #[arg(long, default_value_t = 1)]
        rounds: usize,
        /// Volume size, written fully before the clones are made.
        #[arg(long, value_parser = parse_size, default_value = "4G")]
        size: u64,
        /// Scattered 4 KiB writes per clone level (each copies up one chunk).
        #[arg(long, default_value_t = 64)]
        level_writes: u64,
        /// Chunk size of the volume.
        #[arg(long, value_parser = parse_size, default_value = "64k")]
        chunk_size: u64,
    },
    /// sled's size after sequential and random writes.
    Metadata {
        /// Sequentially written (1 MiB writes) on one volume.
        #[arg(long, value_parser = parse_size, default_value = "8G")]
        sequential: u64,
        /// Written as random 4 KiB writes (distinct blocks, random order) on another volume.
        #[arg(long, value_parser = parse_size, default_value = "1G")]
        random: u64,
        /// Size of the random-write volume (default: the amount written, so
        /// every block is written once).
        #[arg(long, value_parser = parse_size)]
        random_span: Option<u64>,
        /// Chunk size of both volumes.
        #[arg(long, value_parser = parse_size, default_value = "64k")]
        chunk_size: u64,
    },
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let env = Env::probe(&a.dir)?;
    if !a.json {
        println!("{}", env.line());
    }
    match a.cmd {
        Cmd::Latency { ref written, samples, warmup, chunk_size } => {
            let r = latency(&a, written, samples, warmup, chunk(chunk_size)?)?;
            emit(&a, &env, &r, LatencyReport::table)
        }
        Cmd::Depth {
            ref depths,
            seconds,
            warmup,
            threads,
            rounds,
            size,
            level_writes,
            chunk_size,
        } => {
            let p = DepthParams {
                depths: depths.clone(),
                seconds,
                warmup,
                threads: threads.max(1),
                rounds: rounds.max(1),
                size,
                level_writes,
                chunk_size: chunk(chunk_size)?,
            };
            let r = depth(&a, &p)?;
            emit(&a, &env, &r, DepthReport::table)
        }
        Cmd::Metadata { sequential, random, random_span, chunk_size } => {
            let r = metadata(&a, sequential, random, random_span, chunk(chunk_size)?)?;
            emit(&a, &env, &r, MetadataReport::table)
        }
    }
}

fn chunk(c: u64) -> anyhow::Result<u32> {
    u32::try_from(c).context("chunk size must fit 32 bits")
}

fn emit<R: Serialize>(
    a: &Args,
    env: &Env,
    r: &R,
    table: impl Fn(&R) -> String,
) -> anyhow::Result<()> {
    if a.json {
        #[derive(Serialize)]
        struct Out<'a, R> {
            env: &'a Env,
            result: &'a R,
        }
        println!("{}", serde_json::to_string_pretty(&Out { env, result: r })?);
    } else {
        print!("{}", table(r));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Environment, data directory, helpers

/// Where and under what load the run happened.
#[derive(Serialize, Debug)]
struct Env {
    dir: String,
    fs_type: String,
    cpus: usize,
    loadavg_start: String,
    started_unix: u64,
}

impl Env {
    fn probe(dir: &Path) -> anyhow::Result<Env> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let dir = dir.canonicalize()?;
        Ok(Env {
            fs_type: fs_type(&dir),
            dir: dir.display().to_string(),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            loadavg_start: loadavg(),
            started_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        })
    }

    fn line(&self) -> String {
        let warn = if self.fs_type == "tmpfs" { "  WARNING: tmpfs is not a real disk" } else { "" };
        format!(
            "data dir {} ({}), {} CPUs, load average at start {}{warn}",
            self.dir, self.fs_type, self.cpus, self.loadavg_start
        )
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// The file system type of the longest mount point containing `dir`.
fn fs_type(dir: &Path) -> String {
    let Ok(mounts) = std::fs::read_to_string("/proc/mounts") else { return "?".into() };
    let mut best: Option<(usize, String)> = None;
    for line in mounts.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 3 || !dir.starts_with(f[1]) {
            continue;
        }
        if best.as_ref().is_none_or(|(len, _)| f[1].len() > *len) {
            best = Some((f[1].len(), f[2].to_string()));
        }
    }
    best.map_or_else(|| "?".into(), |(_, t)| t)
}

/// A fresh data directory, removed on drop unless kept.
struct DataDir {
    path: PathBuf,
    keep: bool,
}

impl DataDir {
    fn new(a: &Args, what: &str) -> anyhow::Result<DataDir> {
        let path = a.dir.join(format!("clonebd-engine-bench-{}-{what}", std::process::id()));
        if path.exists() {
            std::fs::remove_dir_all(&path)?;
        }
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(DataDir { path, keep: a.keep })
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        if self.keep {
            eprintln!("kept {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Catalog results: an I/O failure or a refusal both end the benchmark.
fn ok<T>(r: Result<Result<T, Refusal>, StoreError>) -> anyhow::Result<T> {
    r.map_err(anyhow::Error::from)?.map_err(|e| anyhow!(e))
}

fn open_export(s: &Store, name: &str) -> anyhow::Result<Export> {
    s.open_export(name).ok_or_else(|| anyhow!("export {name} not found"))
}

/// xorshift64*: cheap pseudo-random numbers and data.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for w in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            w.copy_from_slice(&v[..w.len()]);
        }
    }
}

fn ns(t: Instant) -> u64 {
    u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Writes `[0, len)` sequentially in 1 MiB writes of pseudo-random data, then
/// commits. Returns the seconds taken.
fn fill_sequential(e: &Export, len: u64, seed: u64) -> anyhow::Result<f64> {
    let mut rng = Rng::new(seed);
    let mut block = vec![0u8; 1 << 20];
    let t = Instant::now();
    let mut off = 0;
    while off < len {
        let n = (len - off).min(MIB);
        let buf = &mut block[..usize::try_from(n)?];
        rng.fill(buf);
        e.write(off, buf)?;
        off += n;
    }
    e.commit()?;
    Ok(t.elapsed().as_secs_f64())
}

/// Bytes allocated on disk (st_blocks) and apparent bytes under `p`.
fn du(p: &Path) -> (u64, u64) {
    let mut alloc = 0;
    let mut apparent = 0;
    let mut stack = vec![p.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for ent in rd.flatten() {
            let Ok(m) = ent.metadata() else { continue };
            if m.is_dir() {
                stack.push(ent.path());
            } else {
                alloc += m.blocks() * 512;
                apparent += m.len();
            }
        }
    }
    (alloc, apparent)
}

/// Latency summary in milliseconds.
#[derive(Serialize, Debug, Clone, Copy)]
struct Lat {
    n: u64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    mean_ms: f64,
}

impl Lat {
    fn of(h: &Histogram<u64>) -> Lat {
        let ms = |v: u64| v as f64 / 1e6;
        Lat {
            n: h.len(),
            p50_ms: ms(h.value_at_quantile(0.5)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
            mean_ms: h.mean() / 1e6,
        }
    }
}

fn human(b: u64) -> String {
    human_f(b as f64)
}

fn human_f(b: f64) -> String {
    if b >= GIB as f64 {
        format!("{:.2} GiB", b / GIB as f64)
    } else if b >= MIB as f64 {
        format!("{:.1} MiB", b / MIB as f64)
    } else {
        format!("{:.1} KiB", b / 1024.0)
    }
}

fn met(ok: bool) -> &'static str {
    if ok { "MET" } else { "NOT MET" }
}

// ---------------------------------------------------------------------------
// latency

#[derive(Serialize, Debug)]
struct LatencyRow {
    written_bytes: u64,
    fill_seconds: f64,
    fill_mb_per_s: f64,
    sled_bytes: u64,
    /// `create_snapshot(V, name)`.
    snapshot: Lat,
    /// `create_clone(V@S, C)` of the snapshot just taken.
    clone_of_snapshot: Lat,
    /// `create_clone(V, C)`: snapshot first (implicitly), then clone.
    clone_of_volume: Lat,
}

#[derive(Serialize, Debug)]
struct LatencyReport {
    samples: usize,
    warmup: usize,
    chunk_size: u32,
    rows: Vec<LatencyRow>,
    /// Largest / smallest written size, p50 and p99, per operation.
    ratios: Vec<(String, f64, f64)>,
    target_p99_ms: f64,
    target_ratio: f64,
    p99_met: bool,
    ratio_met: bool,
}

fn latency(
    a: &Args,
    written: &[u64],
    samples: usize,
    warmup: usize,
    chunk_size: u32,
) -> anyhow::Result<LatencyReport> {
    if written.is_empty() {
        bail!("--written needs at least one size");
    }
    let mut rows = Vec::new();
    for (i, &w) in written.iter().enumerate() {
        let dir = DataDir::new(a, &format!("latency{i}"))?;
        let s = Store::open(StoreConfig::new(&dir.path))?;
        ok(s.create_volume("v", w.max(MIB), chunk_size))?;
        let e = open_export(&s, "v")?;
        if !a.json {
            eprintln!("latency: filling {} ...", human(w));
        }
        let fill = fill_sequential(&e, w, 0x5eed_0000 + i as u64)?;
        drop(e);
        let (mut hs, mut hc, mut hv) = (histogram(), histogram(), histogram());
        for k in 0..warmup + samples {
            let snap = format!("s{k}");
            let t = Instant::now();
            ok(s.create_snapshot("v", Some(&snap), SnapshotKind::Manual))?;
            let d_snap = ns(t);
            let t = Instant::now();
            ok(s.create_clone(&format!("v@{snap}"), &format!("c{k}")))?;
            let d_clone = ns(t);
            let t = Instant::now();
            ok(s.create_clone("v", &format!("l{k}")))?;
            let d_vol = ns(t);
            if k >= warmup {
                hs.saturating_record(d_snap);
                hc.saturating_record(d_clone);
                hv.saturating_record(d_vol);
            }
        }
        rows.push(LatencyRow {
            written_bytes: w,
            fill_seconds: fill,
            fill_mb_per_s: w as f64 / fill / 1e6,
            sled_bytes: s.sled_size_on_disk(),
            snapshot: Lat::of(&hs),
            clone_of_snapshot: Lat::of(&hc),
            clone_of_volume: Lat::of(&hv),
        });
        s.close()?;
    }
    let (lo, hi) = (&rows[0], &rows[rows.len() - 1]);
    let ratio = |f: fn(&LatencyRow) -> Lat| {
        let (l, h) = (f(lo), f(hi));
        (h.p50_ms / l.p50_ms, h.p99_ms / l.p99_ms)
    };
    let mut ratios = Vec::new();
    for (name, f) in [
        ("snapshot", (|r| r.snapshot) as fn(&LatencyRow) -> Lat),
        ("clone of snapshot", |r| r.clone_of_snapshot),
        ("clone of volume", |r| r.clone_of_volume),
    ] {
        let (p50, p99) = ratio(f);
        ratios.push((name.to_string(), p50, p99));
    }
    let p99_met = rows.iter().all(|r| {
        r.snapshot.p99_ms < 5.0
            && r.clone_of_snapshot.p99_ms < 5.0
            && r.clone_of_volume.p99_ms < 5.0
    });
    let ratio_met = ratios.iter().all(|r| r.1 <= 1.5);
    Ok(LatencyReport {
        samples,
        warmup,
        chunk_size,
        rows,
        ratios,
        target_p99_ms: 5.0,
        target_ratio: 1.5,
        p99_met,
        ratio_met,
    })
}

impl LatencyReport {
    fn table(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "snapshot / clone latency, {} samples each ({} warm-up), chunk {} KiB, one store per size",
            self.samples,
            self.warmup,
            self.chunk_size / 1024
        );
        let _ = writeln!(
            o,
            "| written | operation | p50 ms | p99 ms | max ms | mean ms | fill MB/s | sled |"
        );
        let _ = writeln!(o, "|---|---|---:|---:|---:|---:|---:|---:|");
        for r in &self.rows {
            for (name, l) in [
                ("snapshot create", r.snapshot),
                ("clone of V@S", r.clone_of_snapshot),
                ("clone of V (implicit snapshot)", r.clone_of_volume),
            ] {
                let _ = writeln!(
                    o,
                    "| {} | {name} | {:.3} | {:.3} | {:.3} | {:.3} | {:.0} | {} |",
                    human(r.written_bytes),
                    l.p50_ms,
                    l.p99_ms,
                    l.max_ms,
                    l.mean_ms,
                    r.fill_mb_per_s,
                    human(r.sled_bytes)
                );
            }
        }
        let (lo, hi) = (&self.rows[0], &self.rows[self.rows.len() - 1]);
        let _ = writeln!(
            o,
            "\nratio {} / {} written (target p50 ratio <= {}):",
            human(hi.written_bytes),
            human(lo.written_bytes),
            self.target_ratio
        );
        for (name, p50, p99) in &self.ratios {
            let _ = writeln!(o, "  {name:<18} p50 {p50:.2}x  p99 {p99:.2}x");
        }
        let _ = writeln!(
            o,
            "target p99 < {} ms: {}; target ratio <= {}: {}",
            self.target_p99_ms,
            met(self.p99_met),
            self.target_ratio,
            met(self.ratio_met)
        );
        o
    }
}

// ---------------------------------------------------------------------------
// depth

struct DepthParams {
    depths: Vec<usize>,
    seconds: f64,
    warmup: f64,
    threads: usize,
    rounds: usize,
    size: u64,
    level_writes: u64,
    chunk_size: u32,
}

#[derive(Serialize, Debug)]
struct DepthRow {
    depth: usize,
    export: String,
    seconds: f64,
    reads: u64,
    iops: f64,
    /// IOPS of each round.
    round_iops: Vec<f64>,
    p50_us: f64,
    p99_us: f64,
    max_us: f64,
}

#[derive(Serialize, Debug)]
struct DepthReport {
    size: u64,
    chunk_size: u32,
    threads: usize,
    seconds_per_round: f64,
    rounds: usize,
    level_writes: u64,
    fill_seconds: f64,
    rows: Vec<DepthRow>,
    /// IOPS of the deepest / the shallowest depth measured.
    ratio: f64,
    target_ratio: f64,
    met: bool,
    page_cache_note: &'static str,
}

fn depth(a: &Args, p: &DepthParams) -> anyhow::Result<DepthReport> {
    if p.depths.is_empty() {
        bail!("--depths needs at least one depth");
    }
    let max = p.depths.iter().copied().max().unwrap_or(0);
    let dir = DataDir::new(a, "depth")?;
    let s = Store::open(StoreConfig::new(&dir.path))?;
    ok(s.create_volume("d0", p.size, p.chunk_size))?;
    if !a.json {
        eprintln!("depth: filling {} ...", human(p.size));
    }
    let fill = fill_sequential(&open_export(&s, "d0")?, p.size, 0xdee9)?;
    let mut rng = Rng::new(0xc10e);
    let mut block = vec![0u8; 4096];
    let blocks = p.size / 4096;
    for level in 1..=max {
        let prev = format!("d{}", level - 1);
        ok(s.create_snapshot(&prev, Some("base"), SnapshotKind::Manual))?;
        let name = format!("d{level}");
        ok(s.create_clone(&format!("{prev}@base"), &name))?;
        let e = open_export(&s, &name)?;
        for _ in 0..p.level_writes {
            rng.fill(&mut block);
            e.write(rng.below(blocks) * 4096, &block)?;
        }
        e.commit()?;
    }
    let mut hists: Vec<Histogram<u64>> = p.depths.iter().map(|_| histogram()).collect();
    let mut secs = vec![0f64; p.depths.len()];
    let mut rounds: Vec<Vec<f64>> = vec![Vec::new(); p.depths.len()];
    for round in 0..p.rounds {
        for (i, &d) in p.depths.iter().enumerate() {
            let e = open_export(&s, &format!("d{d}"))?;
            if !a.json {
                eprintln!("depth: round {} depth {d} ...", round + 1);
            }
            read_for(&e, p.threads, p.warmup, round as u64 * 1000 + i as u64)?;
            let (h, t) = read_for(&e, p.threads, p.seconds, round as u64 * 1000 + 500 + i as u64)?;
            rounds[i].push(h.len() as f64 / t);
            hists[i].add(&h).context("merging histograms")?;
            secs[i] += t;
        }
    }
    let rows: Vec<DepthRow> = p
        .depths
        .iter()
        .enumerate()
        .map(|(i, &d)| {
            let h = &hists[i];
            let us = |v: u64| v as f64 / 1e3;
            DepthRow {
                depth: d,
                export: format!("d{d}"),
                seconds: secs[i],
                reads: h.len(),
                iops: h.len() as f64 / secs[i],
                round_iops: rounds[i].clone(),
                p50_us: us(h.value_at_quantile(0.5)),
                p99_us: us(h.value_at_quantile(0.99)),
                max_us: us(h.max()),
            }
        })
        .collect();
    s.close()?;
    let shallow = rows.iter().min_by_key(|r| r.depth).map_or(1.0, |r| r.iops);
    let deep = rows.iter().max_by_key(|r| r.depth).map_or(1.0, |r| r.iops);
    let ratio = deep / shallow;
    Ok(DepthReport {
        size: p.size,
        chunk_size: p.chunk_size,
        threads: p.threads,
        seconds_per_round: p.seconds,
        rounds: p.rounds,
        level_writes: p.level_writes,
        fill_seconds: fill,
        rows,
        ratio,
        target_ratio: 0.9,
        met: ratio >= 0.9,
        page_cache_note: PAGE_CACHE_NOTE,
    })
}

/// Random 4 KiB reads over the whole export from `threads` threads for
/// `seconds`; the merged latency histogram and the seconds actually taken.
fn read_for(
    e: &Export,
    threads: usize,
    seconds: f64,
    seed: u64,
) -> anyhow::Result<(Histogram<u64>, f64)> {
    let blocks = e.size() / 4096;
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(seconds);
    let parts = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let e = e.clone();
                sc.spawn(move || -> anyhow::Result<Histogram<u64>> {
                    let mut h = histogram();
                    let mut rng = Rng::new((seed + 1) * 0x9E37_79B9 + t as u64);
                    let mut buf = vec![0u8; 4096];
                    loop {
                        let t0 = Instant::now();
                        if t0 >= deadline {
                            break;
                        }
                        e.read(rng.below(blocks) * 4096, &mut buf)?;
                        h.saturating_record(ns(t0));
                    }
                    Ok(h)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().map_err(|_| anyhow!("reader thread panicked"))?)
            .collect::<anyhow::Result<Vec<_>>>()
    })?;
    let took = start.elapsed().as_secs_f64();
    let mut total = histogram();
    for h in &parts {
        total.add(h).context("merging histograms")?;
    }
    Ok((total, took))
}

impl DepthReport {
    fn table(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "random 4 KiB reads at the deepest clone: {} volume written fully, chunk {} KiB, \
             {} scattered 4 KiB writes per clone level, {} threads, {} x {:.0} s per depth",
            human(self.size),
            self.chunk_size / 1024,
            self.level_writes,
            self.threads,
            self.rounds,
            self.seconds_per_round
        );
        let _ = writeln!(o, "| depth | IOPS | per round | p50 us | p99 us | max us |");
        let _ = writeln!(o, "|---:|---:|---|---:|---:|---:|");
        for r in &self.rows {
            let per: Vec<String> = r.round_iops.iter().map(|v| format!("{v:.0}")).collect();
            let _ = writeln!(
                o,
                "| {} | {:.0} | {} | {:.1} | {:.1} | {:.1} |",
                r.depth,
                r.iops,
                per.join(", "),
                r.p50_us,
                r.p99_us,
                r.max_us
            );
        }
        let _ = writeln!(
            o,
            "deepest / shallowest IOPS = {:.3} (target >= {}): {}",
            self.ratio,
            self.target_ratio,
            met(self.met)
        );
        let _ = writeln!(o, "{}", self.page_cache_note);
        o
    }
}

// ---------------------------------------------------------------------------
// metadata

#[derive(Serialize, Debug)]
struct MetaRow {
    case: String,
    volume_size: u64,
    written: u64,
    seconds: f64,
    /// `Store::sled_size_on_disk` of an empty store (one volume, committed).
    sled_empty: u64,
    /// `Store::sled_size_on_disk` after the writes and a commit.
    sled_after: u64,
    /// The sled directory after close: allocated (st_blocks) and apparent bytes.
    sled_dir_alloc_closed: u64,
    sled_dir_apparent_closed: u64,
    /// The chunk files: allocated (st_blocks) and apparent bytes.
    data_alloc: u64,
    data_apparent: u64,
    /// (sled_after - sled_empty) scaled to one TiB written.
    sled_per_tib: f64,
}

#[derive(Serialize, Debug)]
struct MetadataReport {
    chunk_size: u32,
    rows: Vec<MetaRow>,
    target_sled_per_tib: u64,
    met: bool,
}

fn metadata(
    a: &Args,
    sequential: u64,
    random: u64,
    random_span: Option<u64>,
    chunk_size: u32,
) -> anyhow::Result<MetadataReport> {
    let mut rows = Vec::new();
    if sequential > 0 {
        rows.push(meta_case(
            a,
            "sequential 1 MiB writes",
            sequential,
            sequential,
            chunk_size,
            None,
        )?);
    }
    if random > 0 {
        let span = random_span.unwrap_or(random).max(random);
        rows.push(meta_case(a, "random 4 KiB writes", span, random, chunk_size, Some(0x4a4d))?);
    }
    let met = rows.first().is_some_and(|r| sequential > 0 && r.sled_per_tib < GIB as f64);
    Ok(MetadataReport { chunk_size, rows, target_sled_per_tib: GIB, met })
}

fn meta_case(
    a: &Args,
    case: &str,
    size: u64,
    written: u64,
    chunk_size: u32,
    random_seed: Option<u64>,
) -> anyhow::Result<MetaRow> {
    let dir = DataDir::new(a, if random_seed.is_some() { "meta-random" } else { "meta-seq" })?;
    let s = Store::open(StoreConfig::new(&dir.path))?;
    ok(s.create_volume("m", size, chunk_size))?;
    s.commit()?;
    let sled_empty = s.sled_size_on_disk();
    let e = open_export(&s, "m")?;
    if !a.json {
        eprintln!("metadata: {case}, {} ...", human(written));
    }
    let seconds = match random_seed {
        None => fill_sequential(&e, written, 0x5e9)?,
        Some(seed) => {
            // Distinct 4 KiB blocks in random order: a partial Fisher-Yates shuffle.
            let blocks = size / 4096;
            let n = written / 4096;
            let mut order: Vec<u64> = (0..blocks).collect();
            let mut rng = Rng::new(seed);
            let mut buf = vec![0u8; 4096];
            let t = Instant::now();
            for i in 0..n {
                let j = i + rng.below(blocks - i);
                let (iu, ju) = (usize::try_from(i)?, usize::try_from(j)?);
                order.swap(iu, ju);
                rng.fill(&mut buf);
                e.write(order[iu] * 4096, &buf)?;
            }
            e.commit()?;
            t.elapsed().as_secs_f64()
        }
    };
    let sled_after = s.sled_size_on_disk();
    drop(e);
    s.close()?;
    drop(s);
    let (sled_dir_alloc_closed, sled_dir_apparent_closed) = du(&dir.path.join("sled"));
    let (data_alloc, data_apparent) = du(&dir.path.join("chunks"));
    Ok(MetaRow {
        case: case.to_string(),
        volume_size: size,
        written,
        seconds,
        sled_empty,
        sled_after,
        sled_dir_alloc_closed,
        sled_dir_apparent_closed,
        data_alloc,
        data_apparent,
        sled_per_tib: sled_after.saturating_sub(sled_empty) as f64 * (TIB as f64 / written as f64),
    })
}

impl MetadataReport {
    fn table(&self) -> String {
        let mut o = String::new();
        let _ =
            writeln!(o, "metadata size, chunk {} KiB, one store per case", self.chunk_size / 1024);
        let _ = writeln!(
            o,
            "| case | volume | written | time s | sled empty | sled after | sled dir (closed, alloc / apparent) | data files (alloc / apparent) | sled per TiB written |"
        );
        let _ = writeln!(o, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        for r in &self.rows {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {:.1} | {} | {} | {} / {} | {} / {} | {} |",
                r.case,
                human(r.volume_size),
                human(r.written),
                r.seconds,
                human(r.sled_empty),
                human(r.sled_after),
                human(r.sled_dir_alloc_closed),
                human(r.sled_dir_apparent_closed),
                human(r.data_alloc),
                human(r.data_apparent),
                human_f(r.sled_per_tib)
            );
        }
        let _ = writeln!(
            o,
            "target: sequential writes cost < 1 GiB of sled per TiB: {}",
            met(self.met)
        );
        o
    }
}
