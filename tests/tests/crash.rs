//! Issue 3, acceptance 3: `kill -9` at random moments — during writes,
//! FLUSH, FUA, snapshot, clone, promote and GC — then restart and check
//! that every acknowledged-durable write is there and that no block holds
//! bytes its volume never wrote (never another volume's, never a freed
//! chunk's). Bounded: a fixed number of cycles with a seeded RNG.
// Test buffers are a few MiB at most: their lengths always fit the wire's u32.
#![allow(clippy::cast_possible_truncation)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use clonebd_client::{ConnectOptions, NbdClient};
use common::TestServer;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const BLOCK: usize = 4096;
const BLOCKS: usize = 2048; // 8 MiB exports
const CYCLES: usize = 20;

/// A block's content names who wrote it: (lineage id, block index, seq).
fn block_bytes(lineage: u32, index: u32, seq: u64) -> Vec<u8> {
    let mut b = common::pattern(seq ^ (u64::from(lineage) << 40) ^ (u64::from(index) << 20), BLOCK);
    b[..4].copy_from_slice(&lineage.to_le_bytes());
    b[4..8].copy_from_slice(&index.to_le_bytes());
    b[8..16].copy_from_slice(&seq.to_le_bytes());
    b
}

/// (lineage, seq) of a block's content; None for zeroes. Panics on bytes
/// that no write of this test produced.
fn decode(b: &[u8], index: u32, what: &str) -> Option<(u32, u64)> {
    if b.iter().all(|x| *x == 0) {
        return None;
    }
    let lineage = u32::from_le_bytes(b[..4].try_into().unwrap());
    let idx = u32::from_le_bytes(b[4..8].try_into().unwrap());
    let seq = u64::from_le_bytes(b[8..16].try_into().unwrap());
    assert_eq!(idx, index, "{what}: block {index} holds block {idx}'s bytes");
    assert!(
        b == block_bytes(lineage, idx, seq).as_slice(),
        "{what}: block {index} is torn or foreign"
    );
    Some((lineage, seq))
}

/// What a block may hold after a crash: the durable value or anything
/// written after it.
#[derive(Clone, Default)]
struct Cell {
    durable: Option<(u32, u64)>,
    later: Vec<(u32, u64)>,
}

type Image = Vec<Cell>;

struct Model {
    /// Live volumes (name → image); clone images start as copies.
    volumes: BTreeMap<String, Image>,
    /// Snapshots: exact content (a snapshot commits first).
    snapshots: BTreeMap<String, Vec<Option<(u32, u64)>>>,
}

impl Model {
    fn flush_all(&mut self) {
        for img in self.volumes.values_mut() {
            for c in img.iter_mut() {
                if let Some(last) = c.later.pop() {
                    c.durable = Some(last);
                }
                c.later.clear();
            }
        }
    }

    /// After a snapshot/clone/promote the store committed: everything
    /// acknowledged is durable.
    fn exact(&self, vol: &str) -> Vec<Option<(u32, u64)>> {
        self.volumes[vol].iter().map(|c| c.later.last().copied().or(c.durable)).collect()
    }
}

async fn verify(server: &TestServer, model: &mut Model, cycle: usize) -> anyhow::Result<()> {
    for (name, img) in model.volumes.iter_mut() {
        let c = NbdClient::connect(server.nbd, ConnectOptions::modern(name.as_str())).await?;
        let data = c.read(0, (BLOCKS * BLOCK) as u32).await?;
        for (i, cell) in img.iter_mut().enumerate() {
            let what = format!("cycle {cycle} volume {name}");
            let got = decode(&data[i * BLOCK..][..BLOCK], i as u32, &what);
            let ok = got == cell.durable || got.is_some_and(|g| cell.later.contains(&g));
            assert!(
                ok,
                "{what}: block {i} holds {got:?}, durable {:?}, later {:?}",
                cell.durable, cell.later
            );
            // What survived is now the durable value.
            cell.durable = got;
            cell.later.clear();
        }
        c.disconnect().await?;
    }
    for (name, exact) in &model.snapshots {
        let c = NbdClient::connect(server.nbd, ConnectOptions::modern(name.as_str())).await?;
        let data = c.read(0, (BLOCKS * BLOCK) as u32).await?;
        for (i, want) in exact.iter().enumerate() {
            let got = decode(&data[i * BLOCK..][..BLOCK], i as u32, name);
            assert_eq!(got, *want, "cycle {cycle} snapshot {name}: block {i}");
        }
        c.disconnect().await?;
    }
    Ok(())
}

fn volume_names(server: &TestServer) -> anyhow::Result<BTreeSet<String>> {
    let out = server.cli_ok(&["volume", "list", "--json"])?;
    let json: serde_json::Value = serde_json::from_str(&out)?;
    Ok(json
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["name"].as_str().map(String::from))
        .collect())
}

/// An admin operation whose outcome a kill may leave undecided.
enum Pending {
    Clone { name: String, image: Image },
    Promote { clone: String },
    Snapshot { name: String, exact: Vec<Option<(u32, u64)>> },
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_moments_loses_nothing_durable() -> anyhow::Result<()> {
    let seed: u64 = std::env::var("CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut server = TestServer::start()?;
    server.cli_ok(&["volume", "create", "vol", "--size", "8M", "--chunk-size", "16K"])?;
    let mut model = Model { volumes: BTreeMap::new(), snapshots: BTreeMap::new() };
    model.volumes.insert("vol".into(), vec![Cell::default(); BLOCKS]);
    let mut lineages: BTreeMap<String, u32> = BTreeMap::from([("vol".to_string(), 1)]);
    let mut seq = 0u64;
    let mut clones = 0;
    let mut snapshots_taken = 0;
    // Clones of the current `vol`: promoting one makes it `vol`. (A clone of
    // an older `vol` would take the rollback volume's name instead.)
    let mut promotable: BTreeSet<String> = BTreeSet::new();
    // [writes, flushes, clones, snapshots, promotes, gcs, kills during an admin op]
    let mut counts = [0usize; 7];

    for cycle in 0..CYCLES {
        let pid = server.pid().expect("server running");
        let kill_after = Duration::from_millis(rng.random_range(20..400));
        let killer = tokio::spawn(async move {
            tokio::time::sleep(kill_after).await;
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        });
        let mut pending: Option<Pending> = None;
        // Work until the kill makes something fail.
        'work: loop {
            let names: Vec<String> = model.volumes.keys().cloned().collect();
            let roll = rng.random_range(0..100);
            if roll < 80 {
                let vol = &names[rng.random_range(0..names.len())];
                let Ok(c) =
                    NbdClient::connect(server.nbd, ConnectOptions::modern(vol.as_str())).await
                else {
                    break 'work;
                };
                for _ in 0..rng.random_range(1..40) {
                    let i = rng.random_range(0..BLOCKS);
                    seq += 1;
                    let lineage = lineages[vol];
                    let fua = rng.random_bool(0.2);
                    // Written or not, it may be there after the crash.
                    model.volumes.get_mut(vol).unwrap()[i].later.push((lineage, seq));
                    let data = Bytes::from(block_bytes(lineage, i as u32, seq));
                    if c.write((i * BLOCK) as u64, data, fua).await.is_err() {
                        break 'work;
                    }
                    counts[0] += 1;
                    if fua {
                        let cell = &mut model.volumes.get_mut(vol).unwrap()[i];
                        cell.durable = Some((lineage, seq));
                        cell.later.clear();
                    }
                    if rng.random_bool(0.05) {
                        if c.flush().await.is_err() {
                            break 'work;
                        }
                        model.flush_all();
                        counts[1] += 1;
                    }
                }
            } else if roll < 87 {
                clones += 1;
                let name = format!("c{clones}");
                let image: Image = model
                    .exact("vol")
                    .into_iter()
                    .map(|d| Cell { durable: d, later: vec![] })
                    .collect();
                pending = Some(Pending::Clone { name: name.clone(), image });
                eprintln!("cycle {cycle}: clone vol -> {name} (seq {seq})");
                if !cli_ok(&server, &["clone", "create", "vol", &name]) {
                    break 'work;
                }
                model.flush_all();
                counts[2] += 1;
                if let Some(Pending::Clone { name, image }) = pending.take() {
                    lineages.insert(name.clone(), 100 + clones);
                    model.volumes.insert(name.clone(), image);
                    promotable.insert(name);
                }
            } else if roll < 92 {
                // Unique across volumes: after a promote, two volumes could
                // otherwise hold snapshots of the same name.
                snapshots_taken += 1;
                let name = format!("s{cycle}-{snapshots_taken}");
                pending = Some(Pending::Snapshot {
                    name: format!("vol@{name}"),
                    exact: model.exact("vol"),
                });
                eprintln!(
                    "cycle {cycle}: snapshot vol@{name} (vol is lineage {})",
                    lineages["vol"]
                );
                if !cli_ok(&server, &["snapshot", "create", "vol", "--name", &name]) {
                    break 'work;
                }
                model.flush_all();
                counts[3] += 1;
                if let Some(Pending::Snapshot { name, exact }) = pending.take() {
                    model.snapshots.insert(name, exact);
                }
            } else if roll < 96 {
                let Some(clone) = promotable.iter().next().cloned() else { continue };
                pending = Some(Pending::Promote { clone: clone.clone() });
                eprintln!("cycle {cycle}: promote {clone}");
                let out = server.cli(&["promote", &clone]).ok().filter(|o| o.status.success());
                let Some(out) = out else { break 'work };
                pending = None;
                model.flush_all();
                let stdout = String::from_utf8_lossy(&out.stdout);
                let rollback = stdout
                    .split_whitespace()
                    .find(|w| w.starts_with("vol-pre-promote-"))
                    .expect("promote prints the rollback name")
                    .to_string();
                promote_in_model(&mut model, &mut lineages, &clone, rollback);
                promotable.clear();
                counts[4] += 1;
            } else if cli_ok(&server, &["gc"]) {
                counts[5] += 1;
            } else {
                counts[6] += 1;
                break 'work;
            }
        }
        let _ = killer.await;
        server.kill9()?;
        server.restart()?;
        // Resolve what the kill left undecided, from what the server says.
        counts[6] += usize::from(pending.is_some());
        eprintln!(
            "cycle {cycle}: killed; pending: {}",
            match &pending {
                Some(Pending::Clone { name, .. }) => format!("clone {name}"),
                Some(Pending::Promote { clone }) => format!("promote {clone}"),
                Some(Pending::Snapshot { name, .. }) => format!("snapshot {name}"),
                None => "nothing".into(),
            }
        );
        let names = volume_names(&server)?;
        match pending.take() {
            Some(Pending::Clone { name, image }) if names.contains(&name) => {
                lineages.insert(name.clone(), 100 + clones);
                model.volumes.insert(name.clone(), image);
                model.flush_all();
                promotable.insert(name);
            }
            Some(Pending::Snapshot { name, exact }) => {
                let exports = server.cli_ok(&["export", "list", "--json"])?;
                if exports.contains(&format!("\"{name}\"")) {
                    model.snapshots.insert(name, exact);
                    model.flush_all();
                }
            }
            Some(Pending::Promote { clone }) if !names.contains(&clone) => {
                model.flush_all();
                let rollback = names
                    .iter()
                    .find(|n| n.starts_with("vol-pre-promote-") && !model.volumes.contains_key(*n))
                    .cloned()
                    .expect("rollback volume listed");
                promote_in_model(&mut model, &mut lineages, &clone, rollback);
                promotable.clear();
            }
            _ => {}
        }
        refresh_snapshot_names(&server, &mut model)?;
        verify(&server, &mut model, cycle).await?;
    }
    eprintln!(
        "seed {seed:#x}: {} writes, {} flushes, {} clones, {} snapshots, {} promotes, {} gc runs, \
         {} kills during an admin op; {} volumes and {} snapshots verified at the end",
        counts[0],
        counts[1],
        counts[2],
        counts[3],
        counts[4],
        counts[5],
        counts[6],
        model.volumes.len(),
        model.snapshots.len()
    );
    Ok(())
}

/// Runs the CLI; false if it failed or could not run (the server died).
fn cli_ok(server: &TestServer, args: &[&str]) -> bool {
    server.cli(args).is_ok_and(|o| o.status.success())
}

/// After `promote CLONE`: the clone's data is now `vol`, the old `vol` lives
/// on under the rollback name the server printed.
fn promote_in_model(
    model: &mut Model,
    lineages: &mut BTreeMap<String, u32>,
    clone: &str,
    rollback: String,
) {
    let old = model.volumes.remove("vol").unwrap();
    let new = model.volumes.remove(clone).unwrap();
    let (old_l, new_l) = (lineages["vol"], lineages[clone]);
    model.volumes.insert("vol".into(), new);
    model.volumes.insert(rollback.clone(), old);
    lineages.insert("vol".into(), new_l);
    eprintln!("promoted {clone} (lineage {new_l}) to vol; old vol (lineage {old_l}) is {rollback}");
    lineages.insert(rollback, old_l);
    lineages.remove(clone);
}

/// Snapshot names move when their volume is renamed by a promote: follow
/// the server's list, keeping each snapshot's content.
fn refresh_snapshot_names(server: &TestServer, model: &mut Model) -> anyhow::Result<()> {
    let out = server.cli_ok(&["snapshot", "list", "--json"])?;
    let json: serde_json::Value = serde_json::from_str(&out)?;
    let listed: Vec<(String, String)> = json
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| Some((s["export"].as_str()?.to_string(), s["name"].as_str()?.to_string())))
        .collect();
    let old = std::mem::take(&mut model.snapshots);
    for (name, exact) in old {
        let snap = name.split('@').nth(1).unwrap_or_default().to_string();
        if let Some((export, _)) = listed.iter().find(|(_, s)| *s == snap) {
            model.snapshots.insert(export.clone(), exact);
        }
    }
    Ok(())
}
