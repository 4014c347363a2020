//! Acceptance 7: data written and flushed survives a restart; data written
//! with FUA survives `kill -9`.
// Test buffers are a few MiB at most: their lengths always fit the wire's u32.
#![allow(clippy::cast_possible_truncation)]

mod common;

use bytes::Bytes;
use clonebd_client::{ConnectOptions, NbdClient};
use common::{TestServer, pattern};

async fn connect(server: &TestServer, export: &str) -> anyhow::Result<NbdClient> {
    Ok(NbdClient::connect(server.nbd, ConnectOptions::modern(export)).await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushed_writes_survive_a_restart() -> anyhow::Result<()> {
    let mut server = TestServer::start()?;
    let data = pattern(1, 3 << 20);
    {
        let c = connect(&server, "default").await?;
        c.write(12345, Bytes::from(data.clone()), false).await?;
        c.flush().await?;
        c.disconnect().await?;
    }
    server.stop()?;
    server.restart()?;
    let c = connect(&server, "default").await?;
    assert!(c.read(12345, data.len() as u32).await? == data);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_flushes_unflushed_writes() -> anyhow::Result<()> {
    let mut server = TestServer::start()?;
    let data = pattern(2, 1 << 20);
    {
        let c = connect(&server, "default").await?;
        c.write(1 << 30, Bytes::from(data.clone()), false).await?;
        c.disconnect().await?;
    }
    server.stop()?;
    server.restart()?;
    let c = connect(&server, "default").await?;
    assert!(c.read(1 << 30, data.len() as u32).await? == data);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fua_writes_survive_kill_9() -> anyhow::Result<()> {
    let mut server = TestServer::start()?;
    let mut expected = Vec::new();
    {
        let c = connect(&server, "default").await?;
        for i in 0..32u64 {
            // Unaligned, some in the same chunk, some in fresh chunks.
            let off = i * 200_000 + (i % 3) * 4096 + 7;
            let data = pattern(100 + i, 9000);
            c.write(off, Bytes::from(data.clone()), true).await?;
            expected.push((off, data));
        }
        // No FLUSH, no DISC: kill -9 right after the FUA replies.
        server.kill9()?;
    }
    server.restart()?;
    let c = connect(&server, "default").await?;
    for (off, data) in expected {
        assert!(c.read(off, data.len() as u32).await? == data, "FUA write at {off} lost");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushed_writes_survive_kill_9_across_volumes() -> anyhow::Result<()> {
    let mut server = TestServer::start()?;
    server.cli_ok(&["volume", "create", "second", "--size", "1G", "--chunk-size", "4K"])?;
    let a = pattern(5, 700_000);
    let b = pattern(6, 300_000);
    {
        let ca = connect(&server, "default").await?;
        let cb = connect(&server, "second").await?;
        ca.write(5 << 20, Bytes::from(a.clone()), false).await?;
        cb.write(3 << 20, Bytes::from(b.clone()), false).await?;
        // One FLUSH on one connection covers both (CAN_MULTI_CONN).
        ca.flush().await?;
        server.kill9()?;
    }
    server.restart()?;
    let ca = connect(&server, "default").await?;
    let cb = connect(&server, "second").await?;
    assert!(ca.read(5 << 20, a.len() as u32).await? == a);
    assert!(cb.read(3 << 20, b.len() as u32).await? == b);
    Ok(())
}

/// `--commit-interval` decides when map changes nobody flushed become
/// durable: with a long interval a `kill -9` undoes an unflushed write into
/// a never-written range (NBD allows losing unflushed writes; the range
/// reads as zeroes again, never as anything else) even seconds later, and
/// with one second the background commit has made it durable by then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_interval_bounds_what_kill_9_undoes() -> anyhow::Result<()> {
    let data = pattern(9, 200_000);
    let at = 7 << 20;
    for (interval, wait, survives) in [("3600", 3, false), ("1", 5, true)] {
        let mut server = TestServer::start_with(&["--commit-interval", interval])?;
        {
            let c = connect(&server, "default").await?;
            c.write(at, Bytes::from(data.clone()), false).await?;
            // The server answered the write: it is in the page cache and
            // the pending map, and only a commit makes the map durable.
            tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
            server.kill9()?;
        }
        server.restart()?;
        let c = connect(&server, "default").await?;
        let back = c.read(at, data.len() as u32).await?;
        if survives {
            assert!(
                back == data,
                "interval {interval}: the background commit did not keep the write"
            );
        } else {
            assert!(back.iter().all(|&b| b == 0), "interval {interval}: neither old nor new data");
        }
    }
    Ok(())
}
