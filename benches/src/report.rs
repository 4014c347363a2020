//! Latency and throughput summary of a run, for people and for `--json`.

use hdrhistogram::Histogram;
use serde::Serialize;

/// A new latency histogram in nanoseconds (1 ns to 60 s, 3 digits).
pub fn histogram() -> Histogram<u64> {
    // invariant: constant, valid bounds.
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds")
}

/// What a run measured.
#[derive(Debug, Serialize)]
pub struct Report {
    /// Pattern name.
    pub pattern: String,
    /// Bytes per request.
    pub block_size: u32,
    /// Requests in flight per connection.
    pub queue_depth: u32,
    /// Connections.
    pub connections: u32,
    /// Seconds measured.
    pub seconds: f64,
    /// Requests completed.
    pub requests: u64,
    /// Requests per second.
    pub iops: f64,
    /// Megabytes (10^6) per second.
    pub mb_per_s: f64,
    /// Latency percentiles in microseconds.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Worst.
    pub max_us: f64,
    /// Blocks that failed verification.
    pub verify_errors: u64,
}

impl Report {
    /// Summarises a merged histogram.
    pub fn new(
        w: &crate::workload::Workload,
        pattern: &str,
        h: &Histogram<u64>,
        seconds: f64,
        verify_errors: u64,
    ) -> Self {
        let n = h.len();
        let us = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        Self {
            pattern: pattern.to_string(),
            block_size: w.block_size,
            queue_depth: w.queue_depth,
            connections: w.connections,
            seconds,
            requests: n,
            iops: n as f64 / seconds,
            mb_per_s: n as f64 * f64::from(w.block_size) / seconds / 1e6,
            p50_us: us(0.5),
            p90_us: us(0.9),
            p99_us: us(0.99),
            p999_us: us(0.999),
            max_us: h.max() as f64 / 1000.0,
            verify_errors,
        }
    }

    /// The human table.
    pub fn table(&self) -> String {
        format!(
            "{} bs={} qd={} conns={} time={:.1}s\n  IOPS {:.0}  MB/s {:.1}  requests {}\n  latency us: p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}\n  verify errors {}",
            self.pattern,
            self.block_size,
            self.queue_depth,
            self.connections,
            self.seconds,
            self.iops,
            self.mb_per_s,
            self.requests,
            self.p50_us,
            self.p90_us,
            self.p99_us,
            self.p999_us,
            self.max_us,
            self.verify_errors
        )
    }
}
