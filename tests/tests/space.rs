//! Issue 3, acceptance 4: deleting a clone that wrote 1 GiB returns about
//! 1 GiB to the file system once GC finishes, measured as the data
//! directory's allocated size (st_blocks), as `du` would.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use bytes::Bytes;
use clonebd_client::{ConnectOptions, NbdClient};
use common::{TestServer, pattern};

/// Bytes the file system has allocated below `dir`.
fn allocated(dir: &Path) -> anyhow::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() { allocated(&entry.path())? } else { meta.blocks() * 512 };
    }
    Ok(total)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_clone_that_wrote_1_gib_returns_1_gib() -> anyhow::Result<()> {
    let server = TestServer::start()?;
    server.cli_ok(&["volume", "create", "origin", "--size", "2G"])?;
    server.cli_ok(&["snapshot", "create", "origin", "--name", "base"])?;
    server.cli_ok(&["clone", "create", "origin@base", "scratch"])?;
    let c = NbdClient::connect(server.nbd, ConnectOptions::modern("scratch")).await?;
    let block = Bytes::from(pattern(9, 4 << 20));
    for i in 0..256u64 {
        c.write(i * (4 << 20), block.clone(), false).await?;
    }
    c.flush().await?;
    c.disconnect().await?;
    let before = allocated(server.data_dir())?;
    server.cli_ok(&["volume", "delete", "scratch"])?;
    server.cli_ok(&["gc"])?;
    let after = allocated(server.data_dir())?;
    let returned = before.saturating_sub(after);
    eprintln!("allocated before {before} after {after}: returned {returned} bytes");
    // About 1 GiB: all of the clone's chunks, give or take sled's own files.
    assert!(returned >= (1 << 30) * 95 / 100, "only {returned} bytes returned");
    Ok(())
}
