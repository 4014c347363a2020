//! Large READs and WRITEs take the server's own buffers (recycled reply
//! buffers, payloads read straight from the socket): a recycled buffer never
//! leaks bytes of an earlier reply, and pipelined large and small writes
//! all land whole, with simple and with structured replies.
// Test buffers are a few MiB at most: their lengths always fit the wire's u32.
#![allow(clippy::cast_possible_truncation)]

mod common;

use bytes::Bytes;
use clonebd_client::{ConnectOptions, NbdClient};
use common::{TestServer, pattern};

const MIB: u64 = 1 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recycled_buffers_never_leak_and_pipelined_writes_land() -> anyhow::Result<()> {
    let server = TestServer::start()?;
    for (round, opts) in [ConnectOptions::modern("default"), ConnectOptions::simple("default")]
        .into_iter()
        .enumerate()
    {
        let c = NbdClient::connect(server.nbd, opts).await?;
        let base = round as u64 * 64 * MIB;
        // pipelined: large writes (socket-direct payloads) between small ones
        let big: Vec<Vec<u8>> =
            (0..6).map(|i| pattern(round as u64 * 10 + i, MIB as usize)).collect();
        let small = pattern(99, 4096);
        let c = std::sync::Arc::new(c);
        let mut writes = tokio::task::JoinSet::new();
        for (i, d) in big.iter().enumerate() {
            let (c, d, small) = (c.clone(), Bytes::from(d.clone()), Bytes::from(small.clone()));
            writes.spawn(async move {
                c.write(base + 2 * i as u64 * MIB, d, false).await?;
                c.write(base + (2 * i as u64 + 1) * MIB, small, false).await
            });
        }
        while let Some(r) = writes.join_next().await {
            r??;
        }
        let Ok(c) = std::sync::Arc::try_unwrap(c) else { anyhow::bail!("client still shared") };
        for (i, d) in big.iter().enumerate() {
            let at = base + 2 * i as u64 * MIB;
            assert!(c.read(at, MIB as u32).await? == d[..], "big write {i} of round {round}");
            // the next MiB: 4 KiB written, the rest never written. Its reply
            // buffer is likely the one that just carried a pattern.
            let next = c.read(at + MIB, MIB as u32).await?;
            assert!(next[..4096] == small[..], "small write {i}");
            assert!(next[4096..].iter().all(|&b| b == 0), "stale bytes after small write {i}");
        }
        // a range never written at all, read right after pattern reads
        let _ = c.read(base, MIB as u32).await?;
        let empty = c.read(base + 40 * MIB, 2 * MIB as u32).await?;
        assert!(empty.iter().all(|&b| b == 0), "never-written range of round {round}");
        c.disconnect().await?;
    }
    Ok(())
}
