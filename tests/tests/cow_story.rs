//! Issue 3, acceptance 2: the copy-on-write story through the real binary,
//! the real CLI and real clients. Write, snapshot, clone, write to both,
//! promote, rollback, delete — and after each step every export is compared
//! byte for byte with an in-memory model.

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use bytes::Bytes;
use clonebd_client::{ConnectOptions, NbdClient};
use common::{TestServer, pattern, require_tool, run_ok};

const SIZE: usize = 8 << 20;

/// Every export we expect, and its whole content.
struct Model {
    exports: BTreeMap<String, Vec<u8>>,
}

impl Model {
    fn write(&mut self, export: &str, offset: usize, data: &[u8]) {
        let img = self.exports.get_mut(export).expect("modelled export");
        img[offset..offset + data.len()].copy_from_slice(data);
    }

    fn copy(&mut self, from: &str, to: &str) {
        let img = self.exports[from].clone();
        self.exports.insert(to.to_string(), img);
    }
}

async fn write(
    server: &TestServer,
    export: &str,
    offset: usize,
    data: &[u8],
) -> anyhow::Result<()> {
    let c = NbdClient::connect(server.nbd, ConnectOptions::modern(export)).await?;
    c.write(offset as u64, Bytes::copy_from_slice(data), false).await?;
    c.flush().await?;
    c.disconnect().await?;
    Ok(())
}

async fn check_all(server: &TestServer, model: &Model) -> anyhow::Result<()> {
    for (name, expected) in &model.exports {
        // Alternate the kernel's way and the modern way of reading.
        for opts in [ConnectOptions::modern(name.as_str()), ConnectOptions::simple(name.as_str())] {
            let c = NbdClient::connect(server.nbd, opts).await?;
            assert_eq!(c.size(), SIZE as u64, "{name}");
            let mut got = Vec::with_capacity(SIZE);
            for off in (0..SIZE).step_by(1 << 20) {
                got.extend_from_slice(&c.read(off as u64, 1 << 20).await?);
            }
            if got != *expected {
                let first = got.iter().zip(expected).position(|(a, b)| a != b).unwrap_or(0);
                panic!("export {name} differs from the model at byte {first}");
            }
            c.disconnect().await?;
        }
    }
    Ok(())
}

fn snapshot_exports(server: &TestServer) -> anyhow::Result<Vec<String>> {
    let out = server.cli_ok(&["export", "list", "--json"])?;
    let json: serde_json::Value = serde_json::from_str(&out)?;
    Ok(json
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["name"].as_str().map(String::from))
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_clone_promote_rollback_delete_story() -> anyhow::Result<()> {
    let server = TestServer::start()?;
    server.cli_ok(&["volume", "create", "pg", "--size", "8M"])?;
    let mut m = Model { exports: BTreeMap::new() };
    m.exports.insert("pg".into(), vec![0; SIZE]);

    // Data in the origin, unaligned so chunks are shared partially.
    let a = pattern(1, 3 << 20);
    write(&server, "pg", 100_000, &a).await?;
    m.write("pg", 100_000, &a);

    // Snapshot: a read-only export that appears at once.
    let out = server.cli_ok(&["snapshot", "create", "pg", "--name", "s1"])?;
    assert_eq!(out.trim(), "pg@s1");
    m.copy("pg", "pg@s1");
    assert!(snapshot_exports(&server)?.contains(&"pg@s1".to_string()));

    // Clone it, then write to both: 4 KiB into shared chunks and whole chunks.
    server.cli_ok(&["clone", "create", "pg@s1", "test1"])?;
    m.copy("pg@s1", "test1");
    let b = pattern(2, 4096);
    write(&server, "pg", 200_000, &b).await?;
    m.write("pg", 200_000, &b);
    let c = pattern(3, 1 << 20);
    write(&server, "test1", 2 << 20, &c).await?;
    m.write("test1", 2 << 20, &c);
    let d = pattern(4, 777);
    write(&server, "test1", 7 << 20, &d).await?;
    m.write("test1", 7 << 20, &d);
    check_all(&server, &m).await?;

    // The snapshot rejects writes (EPERM).
    let ro = NbdClient::connect(server.nbd, ConnectOptions::modern("pg@s1")).await?;
    let err = ro.write(0, Bytes::from_static(&[1; 512]), false).await.unwrap_err();
    assert_eq!(err.errno(), Some(1));

    // A clone of the clone, and a snapshot of the live volume without a name.
    server.cli_ok(&["clone", "create", "test1", "test2"])?;
    m.copy("test1", "test2");
    let e = pattern(5, 65536);
    write(&server, "test2", 0, &e).await?;
    m.write("test2", 0, &e);
    check_all(&server, &m).await?;

    // Deleting the snapshot that clones depend on is refused, naming them.
    let refused = server.cli(&["snapshot", "delete", "pg@s1"])?;
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("test1"), "{refused:?}");

    // Promote: test1 becomes pg; the old pg is kept under the printed name.
    let out = server.cli_ok(&["promote", "test1"])?;
    let rollback = out
        .split_whitespace()
        .find(|w| w.starts_with("pg-pre-promote-"))
        .expect("promote prints the rollback name")
        .to_string();
    let old_pg = m.exports.remove("pg").unwrap();
    let promoted = m.exports.remove("test1").unwrap();
    m.exports.insert("pg".into(), promoted);
    m.exports.insert(rollback.clone(), old_pg);
    // Snapshots stay with the data they froze: pg@s1 now lives on as ROLLBACK@s1.
    let s1 = m.exports.remove("pg@s1").unwrap();
    let s1_name = format!("{rollback}@s1");
    m.exports.insert(s1_name.clone(), s1);
    let names = snapshot_exports(&server)?;
    assert!(names.contains(&s1_name), "{names:?}");
    check_all(&server, &m).await?;

    // Rollback: snapshot pg, write, roll back; the write is gone.
    server.cli_ok(&["snapshot", "create", "pg", "--name", "before"])?;
    m.copy("pg", "pg@before");
    let f = pattern(6, 300_000);
    write(&server, "pg", 4 << 20, &f).await?;
    server.cli_ok(&["rollback", "pg@before"])?;
    check_all(&server, &m).await?;

    // A rollback past a newer snapshot is refused, naming it.
    server.cli_ok(&["snapshot", "create", "pg", "--name", "after"])?;
    m.copy("pg", "pg@after");
    let refused = server.cli(&["rollback", "pg@before"])?;
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("after"), "{refused:?}");

    // Delete: the clone of the clone, a snapshot, the rollback volume.
    server.cli_ok(&["volume", "delete", "test2"])?;
    m.exports.remove("test2");
    server.cli_ok(&["snapshot", "delete", "pg@after"])?;
    m.exports.remove("pg@after");
    server.cli_ok(&["volume", "delete", &rollback])?;
    m.exports.remove(&rollback);
    // The promoted pg still needs what it shares with the old origin.
    m.exports.remove(&s1_name);
    server.cli_ok(&["gc"])?;
    check_all(&server, &m).await?;

    let names = snapshot_exports(&server)?;
    for gone in ["test2", "pg@after", rollback.as_str()] {
        assert!(!names.iter().any(|n| n == gone), "{gone} still exported: {names:?}");
    }
    Ok(())
}

#[test]
fn qemu_io_sees_snapshot_and_clone_isolation() -> anyhow::Result<()> {
    if !require_tool("qemu-io") {
        return Ok(());
    }
    let server = TestServer::start()?;
    server.cli_ok(&["volume", "create", "v", "--size", "64M"])?;
    let io = |export: &str, cmds: &[&str]| -> anyhow::Result<String> {
        let mut c = Command::new("qemu-io");
        c.args(["-f", "raw"]);
        if export.contains('@') {
            c.arg("-r");
        }
        for cmd in cmds {
            c.args(["-c", cmd]);
        }
        let out = run_ok(c.arg(server.uri(export)))?;
        assert!(!out.contains("verification failed"), "{export}: {out}");
        Ok(out)
    };
    io("v", &["write -P 0x11 0 1M", "write -P 0x12 10M 64k"])?;
    server.cli_ok(&["snapshot", "create", "v", "--name", "one"])?;
    server.cli_ok(&["clone", "create", "v@one", "c"])?;
    io("v", &["write -P 0x21 4k 4k"])?;
    io("c", &["write -P 0x31 8k 4k"])?;
    io("v@one", &["read -P 0x11 0 1M", "read -P 0x12 10M 64k"])?;
    io("v", &["read -P 0x11 0 4k", "read -P 0x21 4k 4k", "read -P 0x11 8k 4k"])?;
    io("c", &["read -P 0x11 0 8k", "read -P 0x31 8k 4k", "read -P 0x11 12k 1012k"])?;
    // qemu-img copies the snapshot and the clone out: they differ only
    // where the clone wrote.
    if !require_tool("qemu-img") {
        return Ok(());
    }
    let dir = tempfile::tempdir_in(common::scratch_dir())?;
    let (snap, clone) = (dir.path().join("snap.raw"), dir.path().join("clone.raw"));
    for (export, file) in [("v@one", &snap), ("c", &clone)] {
        run_ok(
            Command::new("qemu-img")
                .args(["convert", "-f", "raw", "-O", "raw"])
                .arg(server.uri(export))
                .arg(file),
        )?;
    }
    let (mut a, b) = (std::fs::read(&snap)?, std::fs::read(&clone)?);
    assert_eq!(a.len(), 64 << 20);
    a[8192..12288].fill(0x31);
    assert!(a == b, "clone = snapshot + its own write");
    Ok(())
}

#[test]
fn deleting_a_snapshot_hangs_up_its_idle_connections() -> anyhow::Result<()> {
    let server = TestServer::start()?;
    server.cli_ok(&["snapshot", "create", "default", "--name", "gone-soon"])?;
    let mut idle = common::raw::connect_simple(server.nbd, "default@gone-soon")?;
    idle.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    server.cli_ok(&["snapshot", "delete", "default@gone-soon"])?;
    // The client sends nothing; the server must close by itself.
    let start = std::time::Instant::now();
    assert!(
        common::raw::closed_by_server(&mut idle),
        "idle connection to a deleted snapshot stayed open"
    );
    assert!(start.elapsed() < std::time::Duration::from_secs(9));
    Ok(())
}
