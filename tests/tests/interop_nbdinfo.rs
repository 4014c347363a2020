//! Acceptance 1: nbdinfo lists exports with sizes and descriptions, reports
//! block sizes, multi-conn, structured replies and base:allocation, and its
//! `--map` matches what was written and trimmed.

mod common;

use std::process::Command;

use common::{TestServer, require_tool, run_ok};

#[test]
fn nbdinfo_lists_every_volume_with_size_and_description() -> anyhow::Result<()> {
    if !require_tool("nbdinfo") {
        return Ok(());
    }
    let server = TestServer::start()?;
    server.cli_ok(&["volume", "create", "pg-main", "--size", "64M"])?;
    let out = run_ok(Command::new("nbdinfo").args(["--list", "--json", &server.uri("")]))?;
    let json: serde_json::Value = serde_json::from_str(&out)?;
    let exports = json["exports"].as_array().expect("exports array");
    let find = |name: &str| exports.iter().find(|e| e["export-name"] == name).cloned();
    let default = find("default").expect("default export listed");
    assert_eq!(default["export-size"], 10u64 << 30);
    assert!(default["description"].as_str().is_some_and(|d| !d.is_empty()));
    let pg = find("pg-main").expect("new volume listed without a restart");
    assert_eq!(pg["export-size"], 64u64 << 20);
    Ok(())
}

#[test]
fn nbdinfo_reports_block_sizes_multi_conn_structured_and_allocation() -> anyhow::Result<()> {
    if !require_tool("nbdinfo") {
        return Ok(());
    }
    let server = TestServer::start()?;
    let out = run_ok(Command::new("nbdinfo").args(["--json", &server.uri("default")]))?;
    let json: serde_json::Value = serde_json::from_str(&out)?;
    assert_eq!(json["protocol"], "newstyle-fixed");
    assert_eq!(json["TLS"], false);
    assert_eq!(json["structured"], true, "{json}");
    let e = &json["exports"][0];
    assert_eq!(e["can_multi_conn"], true, "{e}");
    assert_eq!(e["is_read_only"], false);
    assert_eq!(e["can_flush"], true);
    assert_eq!(e["can_fua"], true);
    assert_eq!(e["can_trim"], true);
    assert_eq!(e["can_zero"], true);
    assert_eq!(e["block_size_minimum"], 1);
    assert_eq!(e["block_size_preferred"], 65536);
    assert_eq!(e["block_size_maximum"], 32u64 << 20);
    let contexts = e["contexts"].as_array().expect("contexts");
    assert!(contexts.iter().any(|c| c == "base:allocation"), "{contexts:?}");
    Ok(())
}

#[test]
fn nbdinfo_map_matches_writes_and_trims() -> anyhow::Result<()> {
    if !require_tool("nbdinfo") || !require_tool("qemu-io") {
        return Ok(());
    }
    let server = TestServer::start()?;
    server.cli_ok(&["volume", "create", "m", "--size", "16M"])?;
    let uri = server.uri("m");
    // Write 1 MiB at 2 MiB and 512 KiB at 8 MiB, then trim the first half of
    // the 1 MiB region: chunk (64 KiB) aligned, so the map is exact.
    run_ok(Command::new("qemu-io").args([
        "-f",
        "raw",
        "-c",
        "write -P 0x11 2M 1M",
        "-c",
        "write -P 0x22 8M 512k",
        "-c",
        "discard 2M 512k",
        &uri,
    ]))?;
    let out = run_ok(Command::new("nbdinfo").args(["--map", "--json", &uri]))?;
    let map: serde_json::Value = serde_json::from_str(&out)?;
    let mut data = Vec::new();
    for e in map.as_array().expect("map array") {
        let (offset, length, ty) = (
            e["offset"].as_u64().unwrap(),
            e["length"].as_u64().unwrap(),
            e["type"].as_u64().unwrap(),
        );
        if ty & 1 == 0 {
            data.push((offset, length));
        }
    }
    let mib = 1u64 << 20;
    assert_eq!(data, vec![(2 * mib + mib / 2, mib / 2), (8 * mib, mib / 2)], "{map}");
    Ok(())
}
