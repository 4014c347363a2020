//! Issue 4, acceptance 3: `clonebd diff` between two snapshots (and a
//! snapshot and the live volume) lists exactly the chunks written between
//! them, checked against a model of the writes; and it is fast over a volume
//! with 1 GiB written (the time is printed: run with `--nocapture`).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{TestServer, require_tool, run_ok};
use serde_json::Value;

const CHUNK: u64 = 64 << 10;

/// Deterministic writes: (offset, length), some chunk-aligned, some not.
fn writes(seed: u64, count: usize, size: u64) -> Vec<(u64, u64)> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..count)
        .map(|i| {
            let (off, len) = if i % 3 == 0 {
                // unaligned: any byte offset, 1 byte to 200 KiB
                (next() % (size - (256 << 10)), 1 + next() % (200 << 10))
            } else {
                // whole chunks
                ((next() % (size / CHUNK - 8)) * CHUNK, (1 + next() % 4) * CHUNK)
            };
            (off, len)
        })
        .collect()
}

/// The chunks the writes touched, as merged byte ranges.
fn model(writes: &[(u64, u64)], size: u64) -> Vec<(u64, u64)> {
    let mut chunks: Vec<u64> =
        writes.iter().flat_map(|&(off, len)| (off / CHUNK)..(off + len).div_ceil(CHUNK)).collect();
    chunks.sort_unstable();
    chunks.dedup();
    let mut out: Vec<(u64, u64)> = Vec::new();
    for c in chunks {
        let (start, end) = (c * CHUNK, ((c + 1) * CHUNK).min(size));
        match out.last_mut() {
            Some((o, l)) if *o + *l == start => *l = end - *o,
            _ => out.push((start, end - start)),
        }
    }
    out
}

fn apply(uri: &str, writes: &[(u64, u64)], pattern: u8) -> anyhow::Result<()> {
    let mut cmd = Command::new("qemu-io");
    cmd.args(["-f", "raw"]);
    for (i, (off, len)) in writes.iter().enumerate() {
        let byte = (u64::from(pattern) + i as u64) % 255 + 1;
        cmd.args(["-c", &format!("write -P {byte} {off} {len}")]);
    }
    run_ok(cmd.arg(uri))?;
    Ok(())
}

fn diff(server: &TestServer, from: &str, to: &str) -> anyhow::Result<(Vec<(u64, u64)>, u64)> {
    let json: Value = serde_json::from_str(&server.cli_ok(&["diff", from, to, "--json"])?)?;
    let ranges = json["ranges"]
        .as_array()
        .expect("ranges")
        .iter()
        .map(|r| (r["offset"].as_u64().unwrap(), r["length"].as_u64().unwrap()))
        .collect();
    Ok((ranges, json["total_bytes"].as_u64().expect("total")))
}

#[test]
fn diff_lists_exactly_the_chunks_written_between_snapshots() -> anyhow::Result<()> {
    if !require_tool("qemu-io") {
        return Ok(());
    }
    let server = TestServer::start_with(&["--no-schedule"])?;
    let size: u64 = 64 << 20;
    server.cli_ok(&["volume", "create", "pg", "--size", "64M"])?;
    let uri = server.uri("pg");
    // Data before the first snapshot is in neither diff.
    apply(&uri, &writes(1, 20, size), 0x10)?;
    server.cli_ok(&["snapshot", "create", "pg", "--name", "a"])?;
    let first = writes(2, 60, size);
    apply(&uri, &first, 0x40)?;
    server.cli_ok(&["snapshot", "create", "pg", "--name", "b"])?;
    let second = writes(3, 40, size);
    apply(&uri, &second, 0x80)?;

    let (ranges, total) = diff(&server, "pg@a", "pg@b")?;
    let want = model(&first, size);
    assert_eq!(ranges, want);
    assert_eq!(total, want.iter().map(|r| r.1).sum::<u64>());

    let (ranges, _) = diff(&server, "pg@b", "pg")?;
    assert_eq!(ranges, model(&second, size), "snapshot against the live volume");
    let both: Vec<(u64, u64)> = first.iter().chain(&second).copied().collect();
    assert_eq!(diff(&server, "pg@a", "pg")?.0, model(&both, size));

    // No writes: an empty diff. The table ends with the total.
    server.cli_ok(&["snapshot", "create", "pg", "--name", "c"])?;
    assert_eq!(diff(&server, "pg@c", "pg")?, (vec![], 0));
    let text = server.cli_ok(&["diff", "pg@a", "pg@b"])?;
    assert!(text.starts_with("OFFSET"), "{text}");
    assert!(text.trim_end().ends_with("changed"), "{text}");
    assert!(text.contains(&format!("total: {} ranges", want.len())), "{text}");

    // Wrong order, other volume, missing snapshot: one clear line each.
    for (from, to, needle) in
        [("pg@b", "pg@a", "older"), ("pg@a", "default", "same volume"), ("pg@zz", "pg", "zz")]
    {
        let out = server.cli(&["diff", from, to])?;
        assert!(!out.status.success(), "{from} {to}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{from} {to}: {err}");
    }
    Ok(())
}

#[test]
fn diff_over_a_gibibyte_written_is_fast() -> anyhow::Result<()> {
    if !require_tool("qemu-io") {
        return Ok(());
    }
    let server = TestServer::start_with(&["--no-schedule"])?;
    server.cli_ok(&["volume", "create", "big", "--size", "2G"])?;
    server.cli_ok(&["snapshot", "create", "big", "--name", "empty"])?;
    // 1 GiB of non-zero data in 32 MiB requests.
    let started = Instant::now();
    let mut cmd = Command::new("qemu-io");
    cmd.args(["-f", "raw"]);
    for i in 0..32u64 {
        cmd.args(["-c", &format!("write -P {} {} 32M", 1 + i, i << 25)]);
    }
    run_ok(cmd.arg(server.uri("big")))?;
    let wrote = started.elapsed();
    server.cli_ok(&["snapshot", "create", "big", "--name", "full"])?;
    let scattered: Vec<(u64, u64)> = (0..10).map(|i| (i * 97 * CHUNK, CHUNK)).collect();
    apply(&server.uri("big"), &scattered, 0x55)?;
    server.cli_ok(&["snapshot", "create", "big", "--name", "later"])?;

    let timed = |from: &str, to: &str| -> anyhow::Result<(Vec<(u64, u64)>, Duration)> {
        let t = Instant::now();
        let (ranges, _) = diff(&server, from, to)?;
        Ok((ranges, t.elapsed()))
    };
    let (all, t_all) = timed("big@empty", "big@full")?;
    assert_eq!(all, vec![(0, 1 << 30)]);
    let (few, t_few) = timed("big@full", "big@later")?;
    assert_eq!(few, model(&scattered, 2 << 30));
    let (live, t_live) = timed("big@empty", "big")?;
    assert_eq!(live, vec![(0, 1 << 30)]);
    let report = format!(
        "diff over a volume with 1 GiB written (16384 chunks of 64 KiB; wrote it in {wrote:.2?}): \
         1 GiB changed {t_all:.2?}, 10 chunks changed {t_few:.2?}, snapshot vs live {t_live:.2?} \
         (wall time of the `clonebd diff --json` process)"
    );
    println!("{report}");
    for t in [t_all, t_few, t_live] {
        assert!(t < Duration::from_secs(10), "{report}");
    }
    Ok(())
}
