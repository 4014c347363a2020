//! Acceptance 4: `nbd-client -l` lists the exports, and the kernel client's
//! way of talking works: client flags 0x3, GO with no info requests (and
//! EXPORT_NAME for old clients), simple replies only, FLUSH and FUA.

mod common;

use std::process::Command;

use common::{SYSTEM_PYTHON, TestServer, require_python_nbd, require_tool, run_ok};

#[test]
fn nbd_client_lists_exports() -> anyhow::Result<()> {
    if !require_tool("nbd-client") {
        return Ok(());
    }
    let server = TestServer::start()?;
    server.cli_ok(&["volume", "create", "listed", "--size", "8M"])?;
    let out = run_ok(Command::new("nbd-client").args([
        "-l",
        "127.0.0.1",
        &server.nbd.port().to_string(),
    ]))?;
    assert!(out.lines().any(|l| l.starts_with("default")), "{out}");
    assert!(out.lines().any(|l| l.starts_with("listed")), "{out}");
    Ok(())
}

/// python3-libnbd with structured replies off talks like the kernel: simple
/// replies, FLUSH, FUA writes.
#[test]
fn libnbd_without_structured_replies_reads_writes_flushes() -> anyhow::Result<()> {
    if !require_python_nbd() {
        return Ok(());
    }
    let server = TestServer::start()?;
    let script = format!(
        r#"
import nbd
h = nbd.NBD()
h.set_request_structured_replies(False)
h.connect_uri("{uri}")
# Let the server, not libnbd, judge the out-of-range read below.
h.set_strict_mode(0)
assert not h.get_structured_replies_negotiated()
assert h.can_flush() and h.can_fua() and h.can_multi_conn()
h.pwrite(b"\x5a" * 65536, 1 << 20, nbd.CMD_FLAG_FUA)
h.pwrite(b"\xa5" * 4096, 3 << 20)
h.flush()
assert h.pread(65536, 1 << 20) == b"\x5a" * 65536
assert h.pread(4096, 3 << 20) == b"\xa5" * 4096
assert h.pread(4096, 5 << 20) == bytes(4096)
try:
    h.pread(4096, h.get_size())
    raise SystemExit("read past the end succeeded")
except nbd.Error as e:
    assert e.errnum == 22, e  # EINVAL from the server
h.shutdown()
print("ok")
"#,
        uri = server.uri("default")
    );
    let out = run_ok(Command::new(SYSTEM_PYTHON).arg("-c").arg(script))?;
    assert_eq!(out.trim(), "ok");
    Ok(())
}
