//! Issue 6: the upgrade rehearsal, end to end, with a real PostgreSQL.
//!
//! Runs `examples/upgrade-rehearsal/rehearse.sh` with the binaries built for
//! the tests and small pgbench scales: a clonebd volume attached through
//! nbdfuse + a loop device, ext4, PostgreSQL and pgbench on it; a clone taken
//! under load recovers; a migration with a bad step is rehearsed on the clone,
//! the bad step is found from the step snapshots and rolled back; the cutover
//! promotes the migrated clone and every row is there; the cutover is rolled
//! back. The script installs what it lacks (apt-get) and cleans up after
//! itself; this test asserts its exit status, its key lines, and that no
//! mount or loop device is left behind. Nothing timed is asserted.
//!
//! It needs root and /dev/fuse: without them it skips on a developer's
//! machine and fails in CI (`CI=true`).

mod common;

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use common::{cli_bin, in_ci, scratch_dir, server_bin};

/// Key lines the script prints when each part of the story worked.
const EXPECTED: &[&str] = &[
    "CLONE RECOVERED: PostgreSQL replayed its WAL on the clone",
    "CLONE CONSISTENT: sum(abalance) = sum(bbalance) = sum(tbalance) = sum(history.delta)",
    "VALIDATION FAILED:",
    "BAD CHANGE LANDED IN STEP 3 (03_flag_overdrawn.sql)",
    "ROLLED BACK pg-rehearsal TO pg-rehearsal@step-2",
    "VALIDATION PASSED:",
    "ROWS MATCH:",
    "CHECKSUMS MATCH:",
    "ROLLBACK POINT: pg-main-pre-promote-",
    "ROLLBACK OK:",
    "TIMING clone creation ratio",
    "TIMING promote:",
    "TIMING pgbench on live during cloning:",
    "REHEARSAL PASSED",
];

fn skip_or_fail(why: &str) -> bool {
    if in_ci() {
        panic!("upgrade rehearsal cannot run: {why} (CI=true: the CI machine must provide it)");
    }
    eprintln!("SKIP: upgrade rehearsal: {why}");
    false
}

/// Root (mount, losetup, fsfreeze) and FUSE (nbdfuse) are the two things the
/// script cannot install for itself.
fn preconditions() -> bool {
    let root = std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|ids| ids.split_whitespace().nth(1))
            == Some("0")
    });
    if !root {
        return skip_or_fail("not root");
    }
    if !Path::new("/dev/fuse").exists() {
        return skip_or_fail("/dev/fuse is missing");
    }
    if Command::new("bash").arg("--version").output().is_err() {
        return skip_or_fail("no bash");
    }
    true
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/upgrade-rehearsal/rehearse.sh")
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

/// Sends `signal` to the script's whole process group.
fn signal_group(pgid: u32, signal: &str) {
    let _ = Command::new("kill").args([signal, "--", &format!("-{pgid}")]).status();
}

/// Lines of /proc/mounts and `losetup -l` that mention `dir`.
fn leftovers(dir: &Path) -> Vec<String> {
    let needle = dir.to_string_lossy().into_owned();
    let mut out: Vec<String> = std::fs::read_to_string("/proc/mounts")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(&needle))
        .map(str::to_string)
        .collect();
    if let Ok(o) = Command::new("losetup").arg("-l").output() {
        out.extend(
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| l.contains(&needle))
                .map(str::to_string),
        );
    }
    out
}

#[test]
fn upgrade_rehearsal_end_to_end() -> Result<()> {
    if !preconditions() {
        return Ok(());
    }
    let timeout = Duration::from_secs(env_or("REHEARSAL_TEST_TIMEOUT_SECS", "1200").parse()?);
    let tmp = tempfile::Builder::new().prefix("clonebd-rehearsal").tempdir_in(scratch_dir())?;
    let work = tmp.path().join("work");

    let mut child = Command::new("bash")
        .arg(script())
        .arg("--workdir")
        .arg(&work)
        .env("CLONEBD_SERVER", server_bin())
        .env("CLONEBD_CLI", cli_bin())
        // small and bounded: ~150 MiB rehearsed, ~600 MiB for the second
        // clone timing, short pgbench runs
        .env("REHEARSAL_SCALES", env_or("REHEARSAL_SCALES", "10 40"))
        .env("REHEARSAL_PGBENCH_SECONDS", env_or("REHEARSAL_PGBENCH_SECONDS", "6"))
        .env("REHEARSAL_CLONE_SAMPLES", env_or("REHEARSAL_CLONE_SAMPLES", "5"))
        .env("REHEARSAL_LIVE_RATE", env_or("REHEARSAL_LIVE_RATE", "20"))
        .env("REHEARSAL_SERVER_LIFETIME", (timeout.as_secs() + 120).to_string())
        .env_remove("REHEARSAL_KEEP")
        .env_remove("REHEARSAL_WORKDIR")
        .env_remove("CLONEBD_TOKEN")
        .env_remove("CLONEBD_ADMIN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // its own process group, so a timeout can stop the script and its
        // foreground children together (the script's trap then cleans up)
        .process_group(0)
        .spawn()
        .context("running rehearse.sh")?;
    let pgid = child.id();

    // Both streams into one transcript, echoed as they come (visible with
    // --nocapture), and kept for the assertions.
    let (tx, rx) = mpsc::channel::<String>();
    let mut readers = Vec::new();
    for stream in [
        Box::new(child.stdout.take().context("stdout")?) as Box<dyn Read + Send>,
        Box::new(child.stderr.take().context("stderr")?),
    ] {
        let tx = tx.clone();
        readers.push(std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        }));
    }
    drop(tx);

    let deadline = Instant::now() + timeout;
    let mut transcript = String::new();
    let mut timed_out = false;
    let status = loop {
        while let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            eprintln!("{line}");
            transcript.push_str(&line);
            transcript.push('\n');
        }
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline && !timed_out {
            timed_out = true;
            eprintln!("rehearse.sh still running after {timeout:?}: SIGTERM to its process group");
            signal_group(pgid, "-TERM");
            // the trap stops PostgreSQL, unmounts, detaches, stops clonebd
            let grace = Instant::now() + Duration::from_secs(180);
            while child.try_wait()?.is_none() && Instant::now() < grace {
                std::thread::sleep(Duration::from_millis(200));
            }
            if child.try_wait()?.is_none() {
                signal_group(pgid, "-KILL");
            }
        }
    };
    for r in readers {
        let _ = r.join();
    }
    for line in rx.try_iter() {
        transcript.push_str(&line);
        transcript.push('\n');
    }

    let left = leftovers(&work);
    if timed_out {
        bail!("rehearse.sh did not finish within {timeout:?}\n{transcript}");
    }
    if !status.success() {
        bail!("rehearse.sh failed ({status})\n{transcript}");
    }
    let missing: Vec<&str> = EXPECTED.iter().copied().filter(|e| !transcript.contains(e)).collect();
    assert!(missing.is_empty(), "rehearse.sh passed but did not print {missing:?}\n{transcript}");
    assert!(left.is_empty(), "rehearse.sh left mounts or loop devices behind: {left:?}");
    assert!(!work.exists(), "rehearse.sh left its work directory {} behind", work.display());
    Ok(())
}
