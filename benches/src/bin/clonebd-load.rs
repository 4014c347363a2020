//! `clonebd-load`: drives any NBD export with a pipelined workload and prints
//! IOPS, MB/s and latency percentiles (or `--json`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::{Bytes, BytesMut};
use clap::Parser;
use clonebd_benches::report::{Report, histogram};
use clonebd_benches::verify::{check_block, fill_block};
use clonebd_benches::workload::{Pattern, Workload, parse_size};
use clonebd_client::{ConnectOptions, NbdClient};
use rand::{Rng, SeedableRng};

/// Load generator for NBD exports (any server).
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Server address.
    #[arg(long, default_value = "127.0.0.1:10809")]
    addr: SocketAddr,
    /// Export name.
    #[arg(long, default_value = "default")]
    export: String,
    /// seqread, seqwrite, randread, randwrite or randrw.
    #[arg(long, default_value = "randread")]
    pattern: Pattern,
    /// Bytes per request (e.g. 4k, 1M).
    #[arg(long, default_value = "4k", value_parser = parse_size)]
    bs: u64,
    /// Requests in flight per connection.
    #[arg(long, default_value_t = 32)]
    qd: u32,
    /// Connections.
    #[arg(long, default_value_t = 1)]
    connections: u32,
    /// Seconds to run.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Percent reads for randrw.
    #[arg(long, default_value_t = 70)]
    rwmix_read: u32,
    /// Write self-verifying blocks and check every block read.
    #[arg(long)]
    verify: bool,
    /// Start of the range used.
    #[arg(long, default_value = "0", value_parser = parse_size)]
    offset: u64,
    /// Length of the range used (0: to the end).
    #[arg(long, default_value = "0", value_parser = parse_size)]
    length: u64,
    /// Simple replies only (the Linux kernel's way).
    #[arg(long)]
    simple: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let w = Workload {
        pattern: a.pattern,
        block_size: u32::try_from(a.bs).context("block size must fit 32 bits")?,
        queue_depth: a.qd,
        connections: a.connections,
        seconds: a.duration,
        read_percent: a.rwmix_read.min(100),
        verify: a.verify,
        offset: a.offset,
        length: a.length,
    };
    let opts = if a.simple {
        ConnectOptions::simple(&a.export)
    } else {
        ConnectOptions::modern(&a.export)
    };
    let mut clients = Vec::new();
    for _ in 0..w.connections {
        clients.push(Arc::new(NbdClient::connect(a.addr, opts.clone()).await?));
    }
    let (first, blocks) = w.range(clients[0].size()).map_err(anyhow::Error::msg)?;
    let errors = Arc::new(AtomicU64::new(0));
    let seq = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs_f64(w.seconds);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (ci, client) in clients.iter().enumerate() {
        for qi in 0..w.queue_depth {
            let (client, w, errors, seq) = (client.clone(), w.clone(), errors.clone(), seq.clone());
            // Sequential streams split the range so they don't overlap.
            let streams = u64::from(w.connections * w.queue_depth);
            let stream = ci as u64 * u64::from(w.queue_depth) + u64::from(qi);
            tasks.push(tokio::spawn(async move {
                let mut h = histogram();
                let mut rng = rand::rngs::StdRng::from_os_rng();
                let bs = u64::from(w.block_size);
                let mut next = stream * (blocks / streams.max(1));
                let mut buf = BytesMut::zeroed(w.block_size as usize);
                while Instant::now() < deadline {
                    let block = if w.pattern.random() {
                        rng.random_range(0..blocks)
                    } else {
                        next = (next + 1) % blocks;
                        next
                    };
                    let offset = first + block * bs;
                    let read = w.is_read(rng.random_range(0..100));
                    let t = Instant::now();
                    let result = if read {
                        client.read(offset, w.block_size).await.map(|data| {
                            if w.verify && check_block(&data, offset).is_err() {
                                errors.fetch_add(1, Ordering::Relaxed);
                            }
                        })
                    } else {
                        if w.verify {
                            fill_block(&mut buf, offset, seq.fetch_add(1, Ordering::Relaxed));
                        }
                        client.write(offset, Bytes::copy_from_slice(&buf), false).await
                    };
                    result?;
                    h.saturating_record(u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX));
                }
                anyhow::Ok(h)
            }));
        }
    }
    let mut total = histogram();
    for t in tasks {
        total.add(t.await??).context("merging histograms")?;
    }
    let secs = start.elapsed().as_secs_f64();
    let name = format!("{:?}", w.pattern).to_lowercase();
    let report = Report::new(&w, &name, &total, secs, errors.load(Ordering::Relaxed));
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{}", report.table());
    }
    if report.verify_errors > 0 {
        bail!("{} blocks failed verification", report.verify_errors);
    }
    Ok(())
}
