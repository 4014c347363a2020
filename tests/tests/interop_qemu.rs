//! Acceptance 2: qemu-io patterns, qemu-img convert round trip, and
//! extended headers as qemu-nbd -L sees them.

mod common;

use std::process::Command;

use common::{TestServer, pattern, require_tool, run_ok, scratch_dir};

#[test]
fn qemu_io_writes_and_verifies_patterns() -> anyhow::Result<()> {
    if !require_tool("qemu-io") {
        return Ok(());
    }
    let server = TestServer::start()?;
    let uri = server.uri("default");
    run_ok(Command::new("qemu-io").args([
        "-f",
        "raw",
        "-c",
        "write -P 0xab 0 64k",
        "-c",
        "write -P 0xcd 1000 3000",
        "-c",
        "write -P 0xef 5G 1M",
        &uri,
    ]))?;
    let out = run_ok(Command::new("qemu-io").args([
        "-f",
        "raw",
        "-c",
        "read -P 0xab 0 1000",
        "-c",
        "read -P 0xcd 1000 3000",
        "-c",
        "read -P 0xab 4000 61536",
        "-c",
        "read -P 0xef 5G 1M",
        "-c",
        "read -P 0 6G 64k",
        &uri,
    ]))?;
    assert!(!out.contains("Pattern verification failed"), "{out}");
    // A failed pattern makes qemu-io print and still exit 0: check both.
    let bad =
        Command::new("qemu-io").args(["-f", "raw", "-c", "read -P 0x99 0 4k", &uri]).output()?;
    assert!(String::from_utf8_lossy(&bad.stdout).contains("Pattern verification failed"));
    Ok(())
}

#[test]
fn qemu_img_convert_round_trips_a_random_image() -> anyhow::Result<()> {
    if !require_tool("qemu-img") {
        return Ok(());
    }
    let server = TestServer::start()?;
    server.cli_ok(&["volume", "create", "img", "--size", "64M"])?;
    let dir = tempfile::tempdir_in(scratch_dir())?;
    let src = dir.path().join("src.raw");
    let back = dir.path().join("back.raw");
    let mut image = pattern(7, 64 << 20);
    image[10 << 20..20 << 20].fill(0); // a zero run: exercises holes / zero detection
    std::fs::write(&src, &image)?;
    run_ok(
        Command::new("qemu-img")
            .args(["convert", "-n", "-f", "raw", "-O", "raw"])
            .arg(&src)
            .arg(server.uri("img")),
    )?;
    run_ok(
        Command::new("qemu-img")
            .args(["convert", "-f", "raw", "-O", "raw"])
            .arg(server.uri("img"))
            .arg(&back),
    )?;
    assert!(std::fs::read(&back)? == image, "image differs after the round trip");
    Ok(())
}

#[test]
fn qemu_nbd_list_shows_64_bit_transactions() -> anyhow::Result<()> {
    if !require_tool("qemu-nbd") {
        return Ok(());
    }
    let server = TestServer::start()?;
    let out = run_ok(Command::new("qemu-nbd").args([
        "-L",
        "-b",
        "127.0.0.1",
        "-p",
        &server.nbd.port().to_string(),
    ]))?;
    assert!(out.contains("export: 'default'"), "{out}");
    assert!(out.contains("transaction size: 64-bit"), "{out}");
    assert!(out.contains("base:allocation"), "{out}");
    Ok(())
}
