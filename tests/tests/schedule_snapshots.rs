//! Issue 4, acceptance 2: scheduled snapshots through the running server.
//! The clock is not waited for: the server runs with `--enable-test-hooks
//! --no-schedule` and `clonebd schedule tick --now TIME` runs the policy at a
//! fake time. Snapshots appear in `nbdinfo --list` with their description,
//! read back what the volume held at that moment (qemu-io `read -P`), and
//! pruned ones disappear, closing the connections open to them.

mod common;

use std::process::Command;

use clonebd_client::{ConnectOptions, NbdClient};
use common::{TestServer, require_tool, run_ok};
use serde_json::Value;

fn qemu_io(uri: &str, read_only: bool, commands: &[&str]) -> anyhow::Result<String> {
    let mut cmd = Command::new("qemu-io");
    cmd.args(["-f", "raw"]);
    if read_only {
        cmd.arg("-r");
    }
    for c in commands {
        cmd.args(["-c", c]);
    }
    run_ok(cmd.arg(uri))
}

fn tick(server: &TestServer, now: &str) -> anyhow::Result<Value> {
    Ok(serde_json::from_str(&server.cli_ok(&["schedule", "tick", "--now", now, "--json"])?)?)
}

fn volume_tick<'a>(report: &'a Value, volume: &str) -> &'a Value {
    report["volumes"]
        .as_array()
        .and_then(|v| v.iter().find(|t| t["volume"] == volume))
        .unwrap_or_else(|| panic!("{volume} missing from {report}"))
}

/// `nbdinfo --list --json`: export name → description.
fn listed(server: &TestServer) -> anyhow::Result<Vec<(String, String)>> {
    let out = run_ok(Command::new("nbdinfo").args(["--list", "--json", &server.uri("")]))?;
    let json: Value = serde_json::from_str(&out)?;
    Ok(json["exports"]
        .as_array()
        .expect("exports")
        .iter()
        .map(|e| {
            let name = e["export-name"].as_str().unwrap_or_default().to_owned();
            (name, e["description"].as_str().unwrap_or_default().to_owned())
        })
        .collect())
}

fn description<'a>(list: &'a [(String, String)], export: &str) -> Option<&'a str> {
    list.iter().find(|(n, _)| n == export).map(|(_, d)| d.as_str())
}

#[test]
fn scheduled_snapshots_read_back_their_hour_and_vanish_when_pruned() -> anyhow::Result<()> {
    if !require_tool("nbdinfo") || !require_tool("qemu-io") {
        return Ok(());
    }
    let conf = tempfile::tempdir()?;
    let conf_path = conf.path().join("clonebd.toml");
    // Two hourlies for pg; the rest of the volumes keep the defaults.
    std::fs::write(&conf_path, "[schedule.volumes.pg]\nhourly = 2\ndaily = 0\nweekly = 0\n")?;
    let conf_arg = conf_path.to_string_lossy().into_owned();
    let server =
        TestServer::start_with(&["--enable-test-hooks", "--no-schedule", "--config", &conf_arg])?;
    server.cli_ok(&["volume", "create", "pg", "--size", "16M"])?;
    let show: Value = serde_json::from_str(&server.cli_ok(&["schedule", "show", "pg", "--json"])?)?;
    assert_eq!(show[0]["source"], "config-volume", "{show}");
    assert_eq!(show[0]["policy"]["hourly"], 2);
    assert_eq!(show[0]["next_tick"], Value::Null, "--no-schedule: no timer");

    let pg = server.uri("pg");
    qemu_io(&pg, false, &["write -P 0x11 0 1M"])?;
    let r = tick(&server, "2030-01-01T05:00:10Z")?;
    assert_eq!(volume_tick(&r, "pg")["taken"], "pg@2030-01-01T05:00Z", "{r}");
    assert_eq!(volume_tick(&r, "default")["taken"], "default@2030-01-01T05:00Z", "{r}");
    // Within the same hour nothing more is taken.
    let again = tick(&server, "2030-01-01T05:40:00Z")?;
    assert_eq!(volume_tick(&again, "pg")["taken"], Value::Null, "{again}");

    qemu_io(&pg, false, &["write -P 0x22 0 512k", "write -P 0x33 2M 64k"])?;
    let r = tick(&server, "2030-01-01T06:00:03Z")?;
    assert_eq!(volume_tick(&r, "pg")["taken"], "pg@2030-01-01T06:00Z", "{r}");
    qemu_io(&pg, false, &["write -P 0x44 0 64k"])?;

    // Listed with a description: volume, time, kind, hold.
    let list = listed(&server)?;
    for snap in ["pg@2030-01-01T05:00Z", "pg@2030-01-01T06:00Z"] {
        let d = description(&list, snap).unwrap_or_else(|| panic!("{snap} not listed: {list:?}"));
        assert!(d.contains("snapshot of pg") && d.contains("scheduled"), "{snap}: {d}");
        assert!(d.contains("taken 20"), "{snap}: {d}");
    }
    // Each reads back what pg held at its hour; the volume has moved on.
    qemu_io(&server.uri("pg@2030-01-01T05:00Z"), true, &["read -P 0x11 0 1M", "read -P 0 1M 1M"])?;
    qemu_io(
        &server.uri("pg@2030-01-01T06:00Z"),
        true,
        &["read -P 0x22 0 512k", "read -P 0x11 512k 512k", "read -P 0x33 2M 64k"],
    )?;
    qemu_io(&pg, true, &["read -P 0x44 0 64k", "read -P 0x22 64k 448k"])?;

    // A hold shows in the description and keeps 05:00 through pruning.
    server.cli_ok(&["snapshot", "hold", "pg@2030-01-01T05:00Z"])?;
    let list = listed(&server)?;
    let held = description(&list, "pg@2030-01-01T05:00Z").unwrap_or_default();
    assert!(held.contains("held"), "{held}");
    let snaps: Value =
        serde_json::from_str(&server.cli_ok(&["snapshot", "list", "pg", "--json"])?)?;
    let kinds: Vec<&str> =
        snaps.as_array().unwrap().iter().filter_map(|s| s["kind"].as_str()).collect();
    assert_eq!(kinds, ["scheduled", "scheduled"], "{snaps}");

    // A client stays connected to 06:00, which the next ticks prune.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let client = rt
        .block_on(NbdClient::connect(server.nbd, ConnectOptions::modern("pg@2030-01-01T06:00Z")))?;
    let bytes = rt.block_on(client.read(2 << 20, 4096))?;
    assert!(bytes.iter().all(|&b| b == 0x33));

    let r7 = tick(&server, "2030-01-01T07:00:01Z")?;
    assert_eq!(volume_tick(&r7, "pg")["pruned"], serde_json::json!([]), "05:00 is held: {r7}");
    let r8 = tick(&server, "2030-01-01T08:00:01Z")?;
    let pg8 = volume_tick(&r8, "pg");
    assert_eq!(pg8["taken"], "pg@2030-01-01T08:00Z");
    assert_eq!(pg8["pruned"], serde_json::json!(["pg@2030-01-01T06:00Z"]), "{r8}");
    assert_eq!(volume_tick(&r8, "default")["pruned"], serde_json::json!([]), "default keeps 24");

    let list = listed(&server)?;
    assert!(description(&list, "pg@2030-01-01T06:00Z").is_none(), "pruned export still listed");
    for kept in ["pg@2030-01-01T05:00Z", "pg@2030-01-01T07:00Z", "pg@2030-01-01T08:00Z"] {
        assert!(description(&list, kept).is_some(), "{kept} missing: {list:?}");
    }
    // The open connection ends: its next request is not served, and the
    // connection is closed rather than left hanging.
    let after = rt.block_on(async {
        tokio::time::timeout(std::time::Duration::from_secs(10), client.read(0, 4096)).await
    });
    match after {
        Ok(Err(_)) => {}
        Ok(Ok(data)) => panic!("read {} bytes from a pruned snapshot", data.len()),
        Err(_) => panic!("a request to a pruned snapshot hung"),
    }
    let closed = rt.block_on(async {
        tokio::time::timeout(std::time::Duration::from_secs(10), client.read(0, 4096)).await
    });
    assert!(matches!(closed, Ok(Err(_))), "the connection to a pruned snapshot stayed open");
    // New connections to it are refused; the server is fine.
    let gone = Command::new("qemu-io")
        .args(["-f", "raw", "-r", "-c", "read 0 512"])
        .arg(server.uri("pg@2030-01-01T06:00Z"))
        .output()?;
    assert!(!gone.status.success(), "a pruned export opened");
    qemu_io(&server.uri("pg@2030-01-01T08:00Z"), true, &["read -P 0x44 0 64k"])?;

    // Released, the held one goes at the next tick.
    server.cli_ok(&["snapshot", "release", "pg@2030-01-01T05:00Z"])?;
    let r = tick(&server, "2030-01-01T08:30:00Z")?;
    assert_eq!(volume_tick(&r, "pg")["pruned"], serde_json::json!(["pg@2030-01-01T05:00Z"]), "{r}");
    assert!(description(&listed(&server)?, "pg@2030-01-01T05:00Z").is_none());
    Ok(())
}

#[test]
fn schedule_set_show_reset_through_the_cli() -> anyhow::Result<()> {
    let server = TestServer::start_with(&["--no-schedule"])?;
    server.cli_ok(&["volume", "create", "pg", "--size", "16M"])?;
    let out = server.cli_ok(&["schedule", "set", "pg", "--hourly", "48", "--monthly", "3"])?;
    assert!(out.contains("48/7/4/3") && out.contains("api"), "{out}");
    // Persisted across a restart (DATA/schedules.json).
    let mut server = server;
    server.stop()?;
    server.restart()?;
    let show: Value = serde_json::from_str(&server.cli_ok(&["schedule", "show", "--json"])?)?;
    let pg = show.as_array().unwrap().iter().find(|s| s["volume"] == "pg").cloned().unwrap();
    assert_eq!(pg["policy"]["hourly"], 48);
    assert_eq!(pg["source"], "api");
    let table = server.cli_ok(&["schedule", "show"])?;
    assert!(table.lines().any(|l| l.starts_with("default ") && l.contains("24/7/4/0")), "{table}");

    let bad = server.cli(&[
        "schedule",
        "set",
        "pg",
        "--hourly",
        "0",
        "--daily",
        "0",
        "--weekly",
        "0",
        "--monthly",
        "0",
    ])?;
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("at least one"));
    let none = server.cli(&["schedule", "set", "pg"])?;
    assert!(!none.status.success());
    let ghost = server.cli(&["schedule", "show", "ghost"])?;
    assert!(String::from_utf8_lossy(&ghost.stderr).contains("ghost"));

    let out = server.cli_ok(&["schedule", "reset", "pg"])?;
    assert!(out.contains("default"), "{out}");
    // A fake time needs the test hooks.
    let refused = server.cli(&["schedule", "tick", "--now", "2030-01-01T00:00:00Z"])?;
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--enable-test-hooks"));
    Ok(())
}

#[test]
fn the_timer_takes_the_current_hour_at_start_and_only_once() -> anyhow::Result<()> {
    let mut server = TestServer::start_scheduled(&[])?;
    let scheduled = |server: &TestServer| -> anyhow::Result<Vec<String>> {
        let list: Value =
            serde_json::from_str(&server.cli_ok(&["snapshot", "list", "default", "--json"])?)?;
        Ok(list
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["kind"] == "scheduled")
            .map(|s| s["name"].as_str().unwrap().to_owned())
            .collect())
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while scheduled(&server)?.is_empty() {
        assert!(std::time::Instant::now() < deadline, "no snapshot at start");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let first = scheduled(&server)?;
    assert_eq!(first.len(), 1, "{first:?}");
    assert!(first[0].len() == 17 && first[0].ends_with(":00Z"), "{first:?}");
    // A restart within the hour takes nothing more (unless the hour turned meanwhile).
    server.stop()?;
    server.restart()?;
    std::thread::sleep(std::time::Duration::from_millis(500));
    let after = scheduled(&server)?;
    assert!(after.len() == 1 || (after.len() == 2 && after[1] > after[0]), "{after:?}");
    Ok(())
}
