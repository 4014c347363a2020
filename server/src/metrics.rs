//! Every metric's name, help and registration, and the handles the request
//! path uses. Labels are `export` and `op` only: bounded cardinality.

use std::collections::HashSet;
use std::sync::Arc;

use parking_lot::Mutex;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Request latency buckets: 25 µs doubling to ~0.8 s (the crate's defaults
/// start at 5 ms, useless for block IO).
fn latency_buckets() -> Vec<f64> {
    // invariant: constant, valid arguments.
    prometheus::exponential_buckets(25e-6, 2.0, 16).expect("valid buckets")
}

/// The server's metrics.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    bytes: IntCounterVec,
    errors: IntCounterVec,
    latency: HistogramVec,
    connections: IntGaugeVec,
    inflight: IntGaugeVec,
    read_misses: IntCounterVec,
    pub(crate) store_gauges: StoreGauges,
    schedule: ScheduleMetrics,
    /// Exports that have per-export series; those of deleted exports are
    /// dropped at the next scrape, so hourly snapshots do not grow the
    /// output forever.
    exports_seen: Mutex<HashSet<String>>,
}

/// The scheduler's counters (no labels: they sum over volumes).
#[derive(Clone)]
pub struct ScheduleMetrics {
    /// Scheduled snapshots taken.
    pub taken: IntCounter,
    /// Scheduled snapshots pruned by retention.
    pub pruned: IntCounter,
    /// Takes and prunes the store refused or failed.
    pub failures: IntCounter,
    /// Unix time of the last run of the policy.
    pub last_run: IntGauge,
}

/// Series refreshed from the store at scrape time. The counters mirror the
/// store's own since-open counters (the store lives as long as the process).
pub(crate) struct StoreGauges {
    pub(crate) copy_ups: IntCounter,
    pub(crate) copy_up_bytes: IntCounter,
    pub(crate) commits: IntCounter,
    pub(crate) map_commits: IntCounter,
    pub(crate) intent_flushes: IntCounter,
    pub(crate) chunks_allocated: IntCounter,
    pub(crate) chunks_freed: IntCounter,
    pub(crate) bytes_freed: IntCounter,
    pub(crate) gc_pending: IntGauge,
    pub(crate) free_chunks: IntGauge,
    pub(crate) sled_bytes: IntGauge,
    pub(crate) volume_size: IntGaugeVec,
    pub(crate) volume_written: IntGaugeVec,
    pub(crate) snapshots: IntGaugeVec,
    pub(crate) newest_snapshot_age: IntGaugeVec,
}

/// The request kinds we label by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// NBD_CMD_READ
    Read,
    /// NBD_CMD_WRITE
    Write,
    /// NBD_CMD_FLUSH
    Flush,
    /// NBD_CMD_TRIM
    Trim,
    /// NBD_CMD_WRITE_ZEROES
    WriteZeroes,
    /// NBD_CMD_BLOCK_STATUS
    BlockStatus,
    /// NBD_CMD_CACHE
    Cache,
    /// Anything else (answered EINVAL)
    Other,
}

impl Op {
    /// From the wire command type.
    pub fn from_kind(kind: u16) -> Self {
        match kind {
            proto::cmd::READ => Op::Read,
            proto::cmd::WRITE => Op::Write,
            proto::cmd::FLUSH => Op::Flush,
            proto::cmd::TRIM => Op::Trim,
            proto::cmd::WRITE_ZEROES => Op::WriteZeroes,
            proto::cmd::BLOCK_STATUS => Op::BlockStatus,
            proto::cmd::CACHE => Op::Cache,
            _ => Op::Other,
        }
    }

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Op::Read => "read",
            Op::Write => "write",
            Op::Flush => "flush",
            Op::Trim => "trim",
            Op::WriteZeroes => "write_zeroes",
            Op::BlockStatus => "block_status",
            Op::Cache => "cache",
            Op::Other => "other",
        }
    }

    const ALL: [Op; 8] = [
        Op::Read,
        Op::Write,
        Op::Flush,
        Op::Trim,
        Op::WriteZeroes,
        Op::BlockStatus,
        Op::Cache,
        Op::Other,
    ];
}

macro_rules! register {
    ($reg:expr, $m:expr) => {{
        let m = $m;
        // invariant: each name is registered once, at startup.
        $reg.register(Box::new(m.clone())).expect("metric registers once");
        m
    }};
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Arc<Self> {
        let registry =
            Registry::new_custom(Some("clonebd".into()), None).unwrap_or_else(|_| Registry::new());
        let ev = &["export", "op"];
        let requests = register!(
            registry,
            IntCounterVec::new(Opts::new("requests_total", "NBD requests completed"), ev)
                .expect("opts")
        );
        let bytes = register!(
            registry,
            IntCounterVec::new(
                Opts::new("request_bytes_total", "Bytes read or written by NBD requests"),
                ev
            )
            .expect("opts")
        );
        let errors = register!(
            registry,
            IntCounterVec::new(
                Opts::new("request_errors_total", "NBD requests answered with an error"),
                ev
            )
            .expect("opts")
        );
        let latency = register!(
            registry,
            HistogramVec::new(
                HistogramOpts::new(
                    "request_duration_seconds",
                    "NBD request latency, decode to reply queued"
                )
                .buckets(latency_buckets()),
                ev
            )
            .expect("opts")
        );
        let connections = register!(
            registry,
            IntGaugeVec::new(Opts::new("connections", "Open NBD connections"), &["export"])
                .expect("opts")
        );
        let inflight = register!(
            registry,
            IntGaugeVec::new(Opts::new("inflight_requests", "NBD requests in flight"), &["export"])
                .expect("opts")
        );
        let read_misses = register!(
            registry,
            IntCounterVec::new(
                Opts::new(
                    "read_cache_misses_total",
                    "Large READs (256 KiB or more) that found some of their data out of the page \
                     cache, so were not answered from memory at once but read again where waiting \
                     for the disk holds nothing else up (the IO pool, for a batch)"
                ),
                &["export"]
            )
            .expect("opts")
        );
        let g =
            |name: &str, help: &str| register!(registry, IntGauge::new(name, help).expect("opts"));
        let gv = |name: &str, help: &str| {
            register!(registry, IntGaugeVec::new(Opts::new(name, help), &["export"]).expect("opts"))
        };
        let c = |name: &str, help: &str| {
            register!(registry, IntCounter::new(name, help).expect("opts"))
        };
        let store_gauges = StoreGauges {
            copy_ups: c(
                "copy_ups_total",
                "Chunks copied up (first writes into chunks shared with a snapshot or origin)",
            ),
            copy_up_bytes: c(
                "copy_up_bytes_total",
                "Bytes copy-ups and flatten copied from a snapshot or origin besides the written ones \
                 (a 4 KiB first write into a clone copies none: it makes a partial chunk)",
            ),
            commits: c(
                "commits_total",
                "Commits that made writes durable (a client's FLUSH or FUA, or the background commit)",
            ),
            map_commits: c(
                "map_commits_total",
                "Commits that also wrote block-map changes to sled (a second fsync after the data \
                 files'); FLUSHes after overwrites in place need none",
            ),
            intent_flushes: c(
                "intent_log_flushes_total",
                "FLUSHes and FUA writes made durable by appending to the intent log (one fdatasync) \
                 instead of a commit that writes block-map changes to sled",
            ),
            chunks_allocated: c("chunks_allocated_total", "Chunks allocated, copy-ups included"),
            chunks_freed: c("gc_chunks_freed_total", "Chunks freed by GC"),
            bytes_freed: c("gc_bytes_freed_total", "Bytes freed by GC"),
            gc_pending: g("gc_pending_nodes", "Volumes, clones and origins waiting for GC"),
            free_chunks: g("free_chunks", "Freed chunks waiting in the free lists for reuse"),
            sled_bytes: g("sled_size_on_disk_bytes", "Size of the block map database on disk"),
            volume_size: gv("volume_size_bytes", "Logical size of each volume"),
            volume_written: gv("volume_written_bytes", "Bytes of chunks each volume wrote itself"),
            snapshots: gv("snapshots", "Snapshots of each volume"),
            newest_snapshot_age: gv(
                "newest_snapshot_age_seconds",
                "Age of each volume's newest snapshot",
            ),
        };
        let schedule = ScheduleMetrics {
            taken: c("schedule_snapshots_taken_total", "Scheduled snapshots taken"),
            pruned: c(
                "schedule_snapshots_pruned_total",
                "Scheduled snapshots deleted by retention",
            ),
            failures: c("schedule_failures_total", "Scheduled takes and prunes refused or failed"),
            last_run: g(
                "schedule_last_run_timestamp_seconds",
                "Unix time the snapshot policy last ran",
            ),
        };
        let build = register!(
            registry,
            IntGaugeVec::new(Opts::new("build_info", "Build information"), &["version"])
                .expect("opts")
        );
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        let process = prometheus::process_collector::ProcessCollector::for_self();
        let _ = registry.register(Box::new(process));
        Arc::new(Self {
            registry,
            requests,
            bytes,
            errors,
            latency,
            connections,
            inflight,
            read_misses,
            store_gauges,
            schedule,
            exports_seen: Mutex::new(HashSet::new()),
        })
    }

    /// The scheduler's handles.
    pub fn schedule(&self) -> ScheduleMetrics {
        self.schedule.clone()
    }

    /// Handles for one connection's export, resolved once so the request
    /// path does no label hashing.
    pub fn for_export(&self, export: &str) -> ExportMetrics {
        self.exports_seen.lock().insert(export.to_owned());
        let per_op = Op::ALL.map(|op| OpMetrics {
            requests: self.requests.with_label_values(&[export, op.label()]),
            bytes: self.bytes.with_label_values(&[export, op.label()]),
            errors: self.errors.with_label_values(&[export, op.label()]),
            latency: self.latency.with_label_values(&[export, op.label()]),
        });
        ExportMetrics {
            per_op,
            connections: self.connections.with_label_values(&[export]),
            inflight: self.inflight.with_label_values(&[export]),
            read_misses: self.read_misses.with_label_values(&[export]),
        }
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        let families = self.registry.gather();
        // Encoding to a Vec cannot fail for valid families.
        let _ = TextEncoder::new().encode(&families, &mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    /// Refreshes the space and snapshot gauges from the store's catalog
    /// (cheap: no map scan) just before a scrape.
    pub fn refresh_from_store(&self, store: &store::Store, now_unix: i64) {
        let g = &self.store_gauges;
        g.volume_size.reset();
        g.volume_written.reset();
        g.snapshots.reset();
        g.newest_snapshot_age.reset();
        for v in store.volumes() {
            g.volume_size.with_label_values(&[&v.name]).set(clamp(v.size));
            g.volume_written.with_label_values(&[&v.name]).set(clamp(v.written_bytes));
            g.snapshots
                .with_label_values(&[&v.name])
                .set(i64::try_from(v.snapshot_count).unwrap_or(i64::MAX));
        }
        for s in store.snapshots(None) {
            // Oldest first: the last one seen per volume is the newest.
            g.newest_snapshot_age.with_label_values(&[&s.volume]).set(now_unix - s.created_unix);
        }
        let live: HashSet<String> = store.exports().into_iter().map(|e| e.name).collect();
        let gone: Vec<String> = {
            let mut seen = self.exports_seen.lock();
            let gone = seen.iter().filter(|e| !live.contains(*e)).cloned().collect();
            seen.retain(|e| live.contains(e));
            gone
        };
        for export in gone {
            self.forget_export(&export);
        }
        let stats = store.stats();
        catch_up(&g.copy_ups, stats.copy_ups);
        catch_up(&g.copy_up_bytes, stats.copy_up_bytes);
        catch_up(&g.commits, stats.commits);
        catch_up(&g.map_commits, stats.map_commits);
        catch_up(&g.intent_flushes, stats.intent_flushes);
        catch_up(&g.chunks_allocated, stats.chunks_allocated);
        catch_up(&g.chunks_freed, stats.gc_chunks_freed);
        catch_up(&g.bytes_freed, stats.gc_bytes_freed);
        g.gc_pending.set(i64::try_from(stats.gc_pending_nodes).unwrap_or(i64::MAX));
        g.free_chunks.set(i64::try_from(stats.free_chunks).unwrap_or(i64::MAX));
        g.sled_bytes.set(clamp(stats.sled_bytes));
    }

    /// Drops the series of a deleted export.
    pub fn forget_export(&self, export: &str) {
        for op in Op::ALL {
            let labels = [export, op.label()];
            let _ = self.requests.remove_label_values(&labels);
            let _ = self.bytes.remove_label_values(&labels);
            let _ = self.errors.remove_label_values(&labels);
            let _ = self.latency.remove_label_values(&labels);
        }
        let _ = self.connections.remove_label_values(&[export]);
        let _ = self.inflight.remove_label_values(&[export]);
        let _ = self.read_misses.remove_label_values(&[export]);
    }
}

/// Moves a counter up to a total kept elsewhere (never down).
fn catch_up(counter: &IntCounter, total: u64) {
    let current = counter.get();
    if total > current {
        counter.inc_by(total - current);
    }
}

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// One op's handles.
#[derive(Clone)]
pub struct OpMetrics {
    requests: IntCounter,
    bytes: IntCounter,
    errors: IntCounter,
    latency: prometheus::Histogram,
}

/// One export's handles, shared by a connection's request tasks.
#[derive(Clone)]
pub struct ExportMetrics {
    per_op: [OpMetrics; 8],
    /// Open connections to this export.
    pub connections: IntGauge,
    /// Requests in flight on this export.
    pub inflight: IntGauge,
    /// Large READs whose data was not all in the page cache.
    pub read_misses: IntCounter,
}

impl ExportMetrics {
    /// Records one finished request.
    pub fn record(&self, op: Op, bytes: u64, ok: bool, seconds: f64) {
        let m = &self.per_op[op as usize];
        m.requests.inc();
        m.bytes.inc_by(bytes);
        if !ok {
            m.errors.inc();
        }
        m.latency.observe(seconds);
    }
}
