//! Issue 4, acceptance 4: `/metrics` after a known workload shows the counts
//! that workload produced, and the output parses as Prometheus text. Also:
//! every metric the Grafana dashboard (docs/grafana/clonebd.json) queries
//! exists in a live scrape.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::io::{Read, Write};
use std::process::Command;

use anyhow::{Context, bail};
use bytes::Bytes;
use clonebd_client::{ConnectOptions, NbdClient};
use common::{TestServer, require_tool, run_ok};
use prometheus_parse::{LineInfo, Scrape, Value};

/// A raw `GET /metrics` (HTTP/1.0, so the body is not chunked).
fn scrape_text(server: &TestServer) -> anyhow::Result<String> {
    let mut s = std::net::TcpStream::connect(server.admin)?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: clonebd\r\n\r\n")?;
    let mut response = String::new();
    s.read_to_string(&mut response)?;
    let (head, body) = response.split_once("\r\n\r\n").context("no header end")?;
    if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
        bail!("GET /metrics: {head}");
    }
    assert!(
        head.to_ascii_lowercase().contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    Ok(body.to_owned())
}

/// Parsed samples, after a strict pass: every line is a comment, a TYPE or
/// HELP line, or a sample whose value is a number; every sample's family has
/// a TYPE; labels are only `export` and `op` (plus `le` on buckets and
/// `version` on build_info).
struct Metrics {
    scrape: Scrape,
    names: BTreeSet<String>,
}

fn parse(text: &str) -> anyhow::Result<Metrics> {
    let mut typed = BTreeSet::new();
    let mut names = BTreeSet::new();
    for line in text.lines() {
        match LineInfo::parse(line) {
            LineInfo::Empty | LineInfo::Doc { .. } => {}
            LineInfo::Type { metric_name, metric_alias, .. } => {
                typed.insert(metric_alias.unwrap_or(metric_name));
            }
            LineInfo::Sample { metric_name, value, timestamp, .. } => {
                value.parse::<f64>().with_context(|| format!("value of {line:?}"))?;
                anyhow::ensure!(timestamp.is_none(), "unexpected timestamp: {line:?}");
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| metric_name.strip_suffix(s).filter(|f| typed.contains(*f)))
                    .unwrap_or(metric_name);
                anyhow::ensure!(typed.contains(family), "no TYPE before {line:?}");
                names.insert(metric_name.to_owned());
            }
            LineInfo::Ignored if line.starts_with('#') => {}
            LineInfo::Ignored => bail!("not Prometheus text format: {line:?}"),
        }
    }
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))?;
    for s in &scrape.samples {
        for key in s.labels.keys() {
            let ok = matches!(key.as_str(), "export" | "op")
                || (key == "version" && s.metric == "clonebd_build_info");
            anyhow::ensure!(ok, "label {key} on {}", s.metric);
        }
    }
    Ok(Metrics { scrape, names })
}

impl Metrics {
    /// A counter or gauge; 0 when the series is absent.
    fn get(&self, metric: &str, labels: &[(&str, &str)]) -> f64 {
        self.find(metric, labels)
            .map(|v| match v {
                Value::Counter(x) | Value::Gauge(x) | Value::Untyped(x) => *x,
                other => panic!("{metric} is {other:?}"),
            })
            .unwrap_or(0.0)
    }

    fn find(&self, metric: &str, labels: &[(&str, &str)]) -> Option<&Value> {
        self.scrape
            .samples
            .iter()
            .find(|s| {
                s.metric == metric
                    && s.labels.len() == labels.len()
                    && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
            })
            .map(|s| &s.value)
    }

    fn has_export(&self, export: &str) -> bool {
        self.scrape.samples.iter().any(|s| s.labels.get("export") == Some(export))
    }
}

fn scrape(server: &TestServer) -> anyhow::Result<Metrics> {
    parse(&scrape_text(server)?)
}

fn qemu_io(uri: &str, commands: &[String]) -> anyhow::Result<()> {
    let mut cmd = Command::new("qemu-io");
    cmd.args(["-f", "raw"]);
    for c in commands {
        cmd.args(["-c", c]);
    }
    run_ok(cmd.arg(uri))?;
    Ok(())
}

#[test]
fn metrics_show_the_counts_of_a_known_workload() -> anyhow::Result<()> {
    if !require_tool("qemu-io") {
        return Ok(());
    }
    let server = TestServer::start_with(&["--no-schedule"])?;
    server.cli_ok(&["volume", "create", "m", "--size", "16M"])?;
    let before = scrape(&server)?;
    assert!(!before.has_export("m@s1"));

    // 7 writes of a whole chunk each into fresh chunks, then 5 reads of 4 KiB.
    let (n, m) = (7u64, 5u64);
    let writes: Vec<String> =
        (0..n).map(|i| format!("write -P {} {} 64k", i + 1, i << 16)).collect();
    qemu_io(&server.uri("m"), &writes)?;
    let reads: Vec<String> = (0..m).map(|i| format!("read -P {} {} 4k", i + 1, i << 16)).collect();
    qemu_io(&server.uri("m"), &reads)?;

    let after = scrape(&server)?;
    let m_op = |op| [("export", "m"), ("op", op)];
    assert_eq!(after.get("clonebd_requests_total", &m_op("write")), n as f64);
    assert_eq!(after.get("clonebd_requests_total", &m_op("read")), m as f64);
    assert_eq!(after.get("clonebd_request_bytes_total", &m_op("write")), (n * 65536) as f64);
    assert_eq!(after.get("clonebd_request_bytes_total", &m_op("read")), (m * 4096) as f64);
    assert_eq!(after.get("clonebd_request_errors_total", &m_op("write")), 0.0);
    assert_eq!(after.get("clonebd_request_duration_seconds_count", &m_op("write")), n as f64);
    match after.find("clonebd_request_duration_seconds", &m_op("read")) {
        Some(Value::Histogram(buckets)) => {
            assert!(
                buckets.first().is_some_and(|b| (b.less_than - 25e-6).abs() < 1e-9),
                "{buckets:?}"
            );
            let inf = buckets.iter().find(|b| b.less_than.is_infinite()).expect("+Inf bucket");
            assert_eq!(inf.count, m as f64);
        }
        other => panic!("latency histogram: {other:?}"),
    }
    let delta = |a: &Metrics, b: &Metrics, name: &str| b.get(name, &[]) - a.get(name, &[]);
    assert_eq!(delta(&before, &after, "clonebd_chunks_allocated_total"), n as f64);
    assert_eq!(
        delta(&before, &after, "clonebd_copy_ups_total"),
        0.0,
        "fresh chunks are not copy-ups"
    );
    assert_eq!(after.get("clonebd_volume_size_bytes", &[("export", "m")]), (16 << 20) as f64);
    assert!(after.get("clonebd_volume_written_bytes", &[("export", "m")]) >= (n * 65536) as f64);
    assert_eq!(after.get("clonebd_connections", &[("export", "m")]), 0.0);
    assert_eq!(after.get("clonebd_inflight_requests", &[("export", "m")]), 0.0);

    // A snapshot, then 3 small writes into chunks it shares: 3 copy-ups.
    server.cli_ok(&["snapshot", "create", "m", "--name", "s1"])?;
    let cow: Vec<String> =
        (0..3u64).map(|i| format!("write -P 0xee {} 4k", (i << 16) + 8192)).collect();
    qemu_io(&server.uri("m"), &cow)?;
    // A client on the snapshot export: one read, one write refused (EPERM).
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let client = rt.block_on(NbdClient::connect(server.nbd, ConnectOptions::modern("m@s1")))?;
    rt.block_on(client.read(0, 4096))?;
    assert!(rt.block_on(client.write(0, Bytes::from_static(&[1; 512]), false)).is_err());

    let snap = scrape(&server)?;
    assert_eq!(delta(&after, &snap, "clonebd_copy_ups_total"), 3.0);
    // over the volume's own snapshot a copy-up is whole: 60 KiB copied each
    assert_eq!(delta(&after, &snap, "clonebd_copy_up_bytes_total"), 3.0 * 61440.0);
    assert_eq!(delta(&after, &snap, "clonebd_chunks_allocated_total"), 3.0);
    assert_eq!(snap.get("clonebd_requests_total", &m_op("write")), (n + 3) as f64);
    let s_op = |op| [("export", "m@s1"), ("op", op)];
    assert_eq!(snap.get("clonebd_requests_total", &s_op("read")), 1.0);
    assert_eq!(snap.get("clonebd_request_errors_total", &s_op("write")), 1.0);
    assert_eq!(snap.get("clonebd_request_errors_total", &s_op("read")), 0.0);
    assert_eq!(snap.get("clonebd_connections", &[("export", "m@s1")]), 1.0);
    assert_eq!(snap.get("clonebd_snapshots", &[("export", "m")]), 1.0);
    let age = snap.get("clonebd_newest_snapshot_age_seconds", &[("export", "m")]);
    assert!((0.0..600.0).contains(&age), "{age}");
    assert!(snap.get("clonebd_sled_size_on_disk_bytes", &[]) > 0.0);
    assert_eq!(snap.get("clonebd_build_info", &[("version", env!("CARGO_PKG_VERSION"))]), 1.0);
    rt.block_on(client.disconnect())?;

    // Deleting the snapshot frees the 3 chunks only it held; its series go.
    server.cli_ok(&["snapshot", "delete", "m@s1"])?;
    server.cli_ok(&["gc"])?;
    let gc = scrape(&server)?;
    assert_eq!(delta(&snap, &gc, "clonebd_gc_chunks_freed_total"), 3.0);
    assert_eq!(delta(&snap, &gc, "clonebd_gc_bytes_freed_total"), 3.0 * 65536.0);
    assert_eq!(gc.get("clonebd_gc_pending_nodes", &[]), 0.0);
    assert!(!gc.has_export("m@s1"), "series of a deleted export are dropped");
    assert_eq!(gc.get("clonebd_snapshots", &[("export", "m")]), 0.0);

    // A tick of the schedule (real time) takes one snapshot per volume.
    server.cli_ok(&["schedule", "tick"])?;
    let tick = scrape(&server)?;
    assert_eq!(tick.get("clonebd_schedule_snapshots_taken_total", &[]), 2.0, "default and m");
    assert!(tick.get("clonebd_schedule_last_run_timestamp_seconds", &[]) > 1.7e9);

    // A clone's first writes into its origin's data copy only the 4 KiB
    // sub-blocks they touch (partial chunks): aligned ones copy nothing, an
    // unaligned one merges the rest of its sub-block. Then a write into a
    // sub-block a partial chunk lacks, and one into one it holds.
    server.cli_ok(&["snapshot", "create", "m", "--name", "s2"])?;
    server.cli_ok(&["clone", "create", "m@s2", "mc"])?;
    let before_clone = scrape(&server)?;
    let mc = rt.block_on(NbdClient::connect(server.nbd, ConnectOptions::modern("mc")))?;
    let origin = rt.block_on(NbdClient::connect(server.nbd, ConnectOptions::modern("m@s2")))?;
    let span = 4 * 65536;
    let mut want = rt.block_on(origin.read(0, span))?.to_vec();
    let first = [
        (0usize, 4096usize),
        (65536 + 8192, 4096),
        (2 * 65536 + 61440, 4096),
        (3 * 65536 + 100, 1000),
    ];
    let later = [(8192usize, 4096usize), (65536 + 8192 + 512, 512)];
    for ((off, len), byte) in first.iter().chain(later.iter()).zip(0xa0u8..) {
        rt.block_on(mc.write(*off as u64, Bytes::from(vec![byte; *len]), false))?;
        want[*off..off + len].fill(byte);
    }
    let cow = scrape(&server)?;
    assert_eq!(delta(&before_clone, &cow, "clonebd_copy_ups_total"), 4.0, "one per chunk");
    assert_eq!(delta(&before_clone, &cow, "clonebd_chunks_allocated_total"), 4.0);
    assert_eq!(
        delta(&before_clone, &cow, "clonebd_copy_up_bytes_total"),
        3096.0,
        "only the unaligned write's sub-block is merged"
    );
    assert_eq!(rt.block_on(mc.read(0, span))?.as_ref(), want.as_slice());
    rt.block_on(mc.disconnect())?;
    rt.block_on(origin.disconnect())?;
    // flatten completes the 4 partial chunks from the origin (all but the
    // 5 sub-blocks they hold) and copies the origin's 3 other chunks whole
    server.cli_ok(&["flatten", "mc"])?;
    let flat = scrape(&server)?;
    assert_eq!(
        delta(&cow, &flat, "clonebd_copy_up_bytes_total"),
        (4 * 65536 - 5 * 4096 + 3 * 65536) as f64
    );
    server.cli_ok(&["snapshot", "delete", "m@s2"])?;
    let mc = rt.block_on(NbdClient::connect(server.nbd, ConnectOptions::modern("mc")))?;
    assert_eq!(rt.block_on(mc.read(0, span))?.as_ref(), want.as_slice());
    rt.block_on(mc.disconnect())?;
    Ok(())
}

/// Metric names an expression uses: identifiers that start with `clonebd_`.
fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let boundary = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        if boundary && expr[i..].starts_with("clonebd_") {
            let end = expr[i..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .map_or(expr.len(), |n| i + n);
            out.push(expr[i..end].to_owned());
            i = end;
        } else {
            i += 1;
        }
    }
    out
}

#[test]
fn the_grafana_dashboard_queries_only_metrics_the_server_exports() -> anyhow::Result<()> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/grafana/clonebd.json");
    let dashboard: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path)?)?;
    assert_eq!(dashboard["title"], "clonebd");
    let panels = dashboard["panels"].as_array().context("panels")?;
    let mut ids = BTreeSet::new();
    let mut used: HashMap<String, String> = HashMap::new();
    for p in panels {
        assert!(ids.insert(p["id"].as_u64().context("panel id")?), "duplicate id: {p}");
        assert!(p["gridPos"]["w"].as_u64().is_some(), "{p}");
        if p["type"] == "row" {
            continue;
        }
        let targets =
            p["targets"].as_array().with_context(|| format!("targets of {}", p["title"]))?;
        assert!(!targets.is_empty(), "{}", p["title"]);
        for t in targets {
            let expr = t["expr"].as_str().context("expr")?;
            for name in metric_names(expr) {
                used.insert(name, p["title"].as_str().unwrap_or_default().to_owned());
            }
        }
    }
    assert!(used.len() >= 15, "{used:?}");

    // A live server after a little of everything: IO, a snapshot, a tick.
    let server = TestServer::start_with(&["--no-schedule"])?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let client = rt.block_on(NbdClient::connect(server.nbd, ConnectOptions::modern("default")))?;
    rt.block_on(client.write(0, Bytes::from_static(&[7; 4096]), false))?;
    rt.block_on(client.read(0, 4096))?;
    server.cli_ok(&["snapshot", "create", "default", "--name", "s"])?;
    server.cli_ok(&["schedule", "tick"])?;
    let live = scrape(&server)?;
    rt.block_on(client.disconnect())?;
    let missing: Vec<String> = used
        .iter()
        .filter(|(name, _)| !live.names.contains(*name))
        .map(|(name, panel)| format!("{name} (panel {panel:?})"))
        .collect();
    assert!(missing.is_empty(), "the dashboard queries metrics /metrics lacks: {missing:?}");
    Ok(())
}

/// `clonebd_commits_total` counts every commit a FLUSH caused;
/// `clonebd_map_commits_total` only those that had block-map changes to
/// write (and so a second fsync): FLUSHes after overwrites in place have none.
/// (Without the intent log, which would take the FLUSHes after map changes.)
#[test]
fn commit_counters_tell_map_commits_from_data_only_ones() -> anyhow::Result<()> {
    // no background commit between the scrapes
    let server = TestServer::start_with(&["--commit-interval", "3600", "--intent-log-mib", "0"])?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let client = rt.block_on(NbdClient::connect(server.nbd, ConnectOptions::modern("default")))?;
    let counts = || -> anyhow::Result<(f64, f64)> {
        let m = scrape(&server)?;
        Ok((m.get("clonebd_commits_total", &[]), m.get("clonebd_map_commits_total", &[])))
    };
    let (c0, m0) = counts()?;
    rt.block_on(client.write(1 << 20, Bytes::from(vec![1u8; 100_000]), false))?;
    rt.block_on(client.flush())?;
    assert_eq!(counts()?, (c0 + 1.0, m0 + 1.0), "first writes allocate chunks");
    for i in 0..2u64 {
        rt.block_on(client.write((1 << 20) + i * 4096, Bytes::from(vec![2u8; 4096]), false))?;
        rt.block_on(client.flush())?;
    }
    assert_eq!(counts()?, (c0 + 3.0, m0 + 1.0), "overwrites in place need no map commit");
    rt.block_on(client.flush())?;
    assert_eq!(counts()?, (c0 + 3.0, m0 + 1.0), "nothing to commit");
    rt.block_on(client.disconnect())?;
    Ok(())
}

/// A FLUSH after a copy-up goes to the intent log (one fdatasync, no map
/// commit); after `kill -9` the restarted server replays it.
#[test]
fn a_flush_logged_in_the_intent_log_survives_kill_9() -> anyhow::Result<()> {
    let mut server = TestServer::start_with(&["--commit-interval", "3600"])?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let counts = |server: &TestServer| -> anyhow::Result<(f64, f64)> {
        let m = scrape(server)?;
        Ok((
            m.get("clonebd_map_commits_total", &[]),
            m.get("clonebd_intent_log_flushes_total", &[]),
        ))
    };
    let old = common::pattern(1, 200_000);
    let new = common::pattern(2, 12_288);
    let client = rt.block_on(NbdClient::connect(server.nbd, ConnectOptions::modern("default")))?;
    rt.block_on(client.write(1 << 20, Bytes::from(old.clone()), false))?;
    rt.block_on(client.flush())?;
    rt.block_on(client.disconnect())?;
    server.cli_ok(&["snapshot", "create", "default", "--name", "before"])?;
    let (m0, i0) = counts(&server)?;
    let client = rt.block_on(NbdClient::connect(server.nbd, ConnectOptions::modern("default")))?;
    // copy-ups into chunks the snapshot shares, one of them a FUA write
    rt.block_on(client.write((1 << 20) + 70_000, Bytes::from(new.clone()), false))?;
    rt.block_on(client.flush())?;
    rt.block_on(client.write(5 << 20, Bytes::from(new.clone()), true))?;
    assert_eq!(counts(&server)?, (m0, i0 + 2.0), "FLUSH and FUA logged, no map commit");
    server.kill9()?;
    server.restart()?;
    let mut want = vec![0u8; 6 << 20];
    want[1 << 20..(1 << 20) + old.len()].copy_from_slice(&old);
    want[(1 << 20) + 70_000..(1 << 20) + 70_000 + new.len()].copy_from_slice(&new);
    want[5 << 20..(5 << 20) + new.len()].copy_from_slice(&new);
    let client = rt.block_on(NbdClient::connect(server.nbd, ConnectOptions::modern("default")))?;
    let got = rt.block_on(client.read(0, 6 << 20))?;
    assert!(got[..] == want[..], "the logged writes read back after the restart");
    rt.block_on(client.disconnect())?;
    let snap =
        rt.block_on(NbdClient::connect(server.nbd, ConnectOptions::modern("default@before")))?;
    let got = rt.block_on(snap.read(1 << 20, 200_000))?;
    assert!(got[..] == old[..], "the snapshot is unchanged");
    rt.block_on(snap.disconnect())?;
    Ok(())
}

/// Drops every data file of the server from the page cache (the data must
/// have been flushed: the kernel keeps dirty pages).
fn evict_data_files(dir: &std::path::Path) -> anyhow::Result<usize> {
    let mut evicted = 0;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            evicted += evict_data_files(&path)?;
        } else if path.extension().is_some_and(|e| e == "dat") {
            let f = std::fs::File::open(&path)?;
            rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed)?;
            evicted += 1;
        }
    }
    Ok(evicted)
}

/// Large READs whose data is in the page cache are answered at once on the
/// connection's thread; those whose data the kernel dropped go to the IO
/// pool and are counted in `clonebd_read_cache_misses_total`. Either way,
/// pipelined, every byte is right.
#[test]
fn large_reads_of_evicted_data_are_counted_and_read_right() -> anyhow::Result<()> {
    const MIB: usize = 1 << 20;
    const LEN: u32 = 1 << 20;
    // FLUSH then syncs the data files themselves (with the intent log it
    // may leave them dirty until the next commit, and dirty pages stay)
    let server = TestServer::start_with(&["--intent-log-mib", "0"])?;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let data = std::sync::Arc::new(common::pattern(7, 8 * MIB));
    let client = std::sync::Arc::new(
        rt.block_on(NbdClient::connect(server.nbd, ConnectOptions::modern("default")))?,
    );
    for i in 0..8 {
        let at = i * MIB;
        let piece = Bytes::copy_from_slice(&data[at..at + MIB]);
        rt.block_on(client.write(at as u64, piece, false))?;
    }
    rt.block_on(client.flush())?;
    let misses = || -> anyhow::Result<f64> {
        Ok(scrape(&server)?.get("clonebd_read_cache_misses_total", &[("export", "default")]))
    };
    // eight 1 MiB READs in flight at once (a batch on the server), plus a
    // 4 KiB one that never takes the at-once path
    let read_all = || -> anyhow::Result<()> {
        rt.block_on(async {
            let mut reads = tokio::task::JoinSet::new();
            for i in 0..8 {
                let (c, data) = (client.clone(), data.clone());
                reads.spawn(async move {
                    let at = i * MIB;
                    let got = c.read(at as u64, LEN).await?;
                    anyhow::ensure!(got == data[at..at + MIB], "MiB {i} differs");
                    Ok(())
                });
            }
            let (c, data) = (client.clone(), data.clone());
            reads.spawn(async move {
                let at = 3 * MIB + 4096;
                let got = c.read(at as u64, 4096).await?;
                anyhow::ensure!(got == data[at..at + 4096], "4 KiB read differs");
                Ok(())
            });
            while let Some(r) = reads.join_next().await {
                r??;
            }
            Ok(())
        })
    };
    read_all()?;
    let before = misses()?;
    read_all()?;
    assert_eq!(misses()?, before, "data in memory is no miss");
    assert!(evict_data_files(server.data_dir())? > 0, "no data files under the data dir");
    read_all()?;
    let after = misses()?;
    assert!(after > before, "READs of evicted data were not counted: {before} -> {after}");
    read_all()?;
    assert_eq!(misses()?, after, "the misses brought the data back into memory");
    // a lone READ of evicted data (a client at queue depth 1)
    evict_data_files(server.data_dir())?;
    let got = rt.block_on(client.read(5 * MIB as u64, LEN))?;
    assert!(got == data[5 * MIB..6 * MIB], "lone READ of evicted data differs");
    assert_eq!(misses()?, after + 1.0, "a lone READ of evicted data is one miss");
    let client = std::sync::Arc::try_unwrap(client).map_err(|_| anyhow::anyhow!("shared"))?;
    rt.block_on(client.disconnect())?;
    Ok(())
}
