//! `clonebd-server`: flags → `Config`, logging, signals, then `Server::run`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use clonebd_server::{
    Config, DEFAULT_ADMIN_ADDR, DEFAULT_DATA_DIR, DEFAULT_NBD_ADDR, FileConfig, Server,
};

/// clonebd's NBD server: thin copy-on-write volumes, read-only snapshot
/// exports (NAME@SNAP) and writable clones, with an HTTP admin API.
///
/// On a fresh data directory it creates a 10 GiB volume `default`, so
/// `nbdinfo nbd://127.0.0.1/default` works right after the first start.
/// The admin API token is written to DATA/admin.token (mode 0600).
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
struct Args {
    /// Directory holding all state: block map (sled), chunk files, admin token.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_DATA_DIR)]
    data: PathBuf,
    /// NBD listen address (10809 is the IANA NBD port).
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_NBD_ADDR)]
    listen: SocketAddr,
    /// Admin API and /metrics listen address.
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_ADMIN_ADDR)]
    admin: SocketAddr,
    /// Allow the admin API on a non-loopback address over plain HTTP (the
    /// bearer token then crosses the network in clear text).
    #[arg(long)]
    admin_insecure_plain_http: bool,
    /// Maximum open NBD connections.
    #[arg(long, value_name = "N", default_value_t = Config::default().max_connections)]
    max_connections: usize,
    /// Seconds a client has to finish the NBD handshake.
    #[arg(long, value_name = "SECS", default_value_t = Config::default().handshake_timeout.as_secs())]
    handshake_timeout: u64,
    /// Threads running block IO for NBD requests.
    #[arg(long, value_name = "N", default_value_t = Config::default().io_threads)]
    io_threads: usize,
    /// Microseconds a connection whose client waits for each reply (queue
    /// depth 1) polls for its next request before it sleeps: on a VM an
    /// idle vCPU halts and waking it costs tens of µs per request. 100
    /// doubles such a client's IOPS on a VM with a spare vCPU, for about
    /// half a core while it is busy; where the server shares its CPUs with
    /// a busy database it costs more than it gives. Polling yields between
    /// tries and stops when the client is slower than this or the CPU has
    /// other work. 0 (the default) never polls.
    #[arg(long, value_name = "US", default_value_t = Config::default().poll.as_micros() as u64)]
    poll_us: u64,
    /// Block-map cache in MiB (sled; RSS is about 1.5-2x this).
    #[arg(long, value_name = "MIB", default_value_t = Config::default().sled_cache >> 20)]
    cache_mib: u64,
    /// Seconds between background commits of block-map changes. A client's
    /// FLUSH or FUA commits at once; this bounds how much unflushed work a
    /// crash can undo, and how often writes that change the map (first
    /// writes into clones and into never-written ranges) fdatasync the data.
    #[arg(long, value_name = "SECS", default_value_t = Config::default().commit_interval.as_secs())]
    commit_interval: u64,
    /// Largest size of the intent log in MiB (`DATA/intent.log`, grown as
    /// needed). A FLUSH after writes that changed the block map (first
    /// writes after a snapshot, into a clone, into never-written ranges)
    /// appends the written bytes there with one fdatasync instead of
    /// committing the map to sled (a second one). 0 turns it off.
    #[arg(long, value_name = "MIB", default_value_t = Config::default().intent_log_bytes >> 20)]
    intent_log_mib: u64,
    /// TOML config file; today it holds the snapshot policy, `[schedule]`
    /// and `[schedule.volumes.NAME]` (see docs/ARCHITECTURE.md "Snapshot schedule").
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Do not take or prune snapshots on the hourly timer (the schedule API
    /// and `clonebd schedule tick` still work).
    #[arg(long)]
    no_schedule: bool,
    /// Test-only hooks: let `POST /v1/schedule/tick` run at a given time.
    /// Never on a production server.
    #[arg(long)]
    enable_test_hooks: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let file = match &args.config {
        Some(path) => FileConfig::load(path).map_err(anyhow::Error::from)?,
        None => FileConfig::default(),
    };
    let config = Config {
        data_dir: args.data,
        listen: args.listen,
        admin: args.admin,
        admin_insecure_plain_http: args.admin_insecure_plain_http,
        max_connections: args.max_connections,
        handshake_timeout: Duration::from_secs(args.handshake_timeout),
        io_threads: args.io_threads,
        poll: Duration::from_micros(args.poll_us),
        sled_cache: args.cache_mib << 20,
        commit_interval: Duration::from_secs(args.commit_interval),
        intent_log_bytes: args.intent_log_mib << 20,
        schedule: file.schedule,
        schedule_timer: !args.no_schedule,
        enable_test_hooks: args.enable_test_hooks,
        ..Config::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("clonebd-rt")
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        let server = Server::bind(config.clone()).await.map_err(anyhow::Error::from)?;
        // One line on stdout that scripts and tests wait for.
        println!(
            "clonebd-server ready: nbd={} admin={} data={}",
            server.nbd_addr(),
            server.admin_addr(),
            config.data_dir.display()
        );
        server.run(shutdown_signal()).await.map_err(anyhow::Error::from)
    })
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}
