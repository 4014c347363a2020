//! Acceptance 3 and 5: nbdcopy with 4 connections moves 1 GiB in and out
//! byte-identical; fio's nbd engine verifies random IO with crc32c.

mod common;

use std::process::Command;

use common::{TestServer, pattern, require_tool, run_ok, scratch_dir};

#[test]
fn nbdcopy_four_connections_round_trips_one_gib() -> anyhow::Result<()> {
    if !require_tool("nbdcopy") {
        return Ok(());
    }
    let server = TestServer::start()?;
    server.cli_ok(&["volume", "create", "big", "--size", "1G"])?;
    let dir = tempfile::tempdir_in(scratch_dir())?;
    let src = dir.path().join("src.raw");
    let back = dir.path().join("back.raw");
    std::fs::write(&src, pattern(42, 1 << 30))?;
    run_ok(
        Command::new("nbdcopy")
            .args(["--connections", "4", "--flush"])
            .arg(&src)
            .arg(server.uri("big")),
    )?;
    run_ok(Command::new("nbdcopy").args(["--connections", "4"]).arg(server.uri("big")).arg(&back))?;
    let same = run_ok(Command::new("cmp").arg(&src).arg(&back));
    assert!(same.is_ok(), "copies differ: {same:?}");
    Ok(())
}

#[test]
fn fio_random_rw_with_crc32c_verify() -> anyhow::Result<()> {
    if !require_tool("fio") {
        return Ok(());
    }
    let server = TestServer::start()?;
    server.cli_ok(&["volume", "create", "fio", "--size", "256M"])?;
    // Each job verifies its own region (offset_increment) so four
    // connections never overwrite each other's blocks.
    let out = run_ok(Command::new("fio").args([
        "--name=verify",
        "--ioengine=nbd",
        &format!("--uri={}", server.uri("fio")),
        "--rw=randrw",
        "--bs=4k",
        "--iodepth=32",
        "--numjobs=4",
        "--size=64M",
        "--offset_increment=64M",
        "--verify=crc32c",
        "--verify_fatal=1",
        "--do_verify=1",
        "--verify_state_save=0",
        "--group_reporting",
        "--output-format=json",
    ]))?;
    let json: serde_json::Value = serde_json::from_str(out.trim_start_matches(|c| c != '{'))?;
    let job = &json["jobs"][0];
    assert_eq!(job["error"], 0, "{job}");
    assert!(job["write"]["io_bytes"].as_u64().unwrap_or(0) > 0);
    assert!(job["read"]["io_bytes"].as_u64().unwrap_or(0) > 0);
    Ok(())
}
