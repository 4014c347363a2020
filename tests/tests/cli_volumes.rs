//! Acceptance 8: volume create/list/resize/delete through the real CLI
//! against the running server, with the error cases.

mod common;

use std::process::Command;

use common::{TestServer, cli_bin};

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn volume_lifecycle_through_the_cli() -> anyhow::Result<()> {
    let server = TestServer::start()?;
    let out =
        server.cli_ok(&["volume", "create", "vol0", "--size", "1G", "--chunk-size", "128K"])?;
    assert!(out.contains("vol0"), "{out}");

    let list = server.cli_ok(&["volume", "list", "--json"])?;
    let json: serde_json::Value = serde_json::from_str(&list)?;
    let vol = json
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "vol0")
        .cloned()
        .expect("vol0 listed");
    assert_eq!(vol["size"], 1u64 << 30);
    assert_eq!(vol["chunk_size"], 128 * 1024);
    assert_eq!(vol["written_bytes"], 0);

    let table = server.cli_ok(&["volume", "list"])?;
    assert!(table.lines().any(|l| l.starts_with("vol0")), "{table}");
    assert!(table.lines().any(|l| l.starts_with("default")), "{table}");

    server.cli_ok(&["volume", "resize", "vol0", "--size", "2G"])?;
    let list: serde_json::Value =
        serde_json::from_str(&server.cli_ok(&["volume", "list", "--json"])?)?;
    let vol = list.as_array().unwrap().iter().find(|v| v["name"] == "vol0").cloned().unwrap();
    assert_eq!(vol["size"], 2u64 << 30);

    server.cli_ok(&["volume", "delete", "vol0"])?;
    let list: serde_json::Value =
        serde_json::from_str(&server.cli_ok(&["volume", "list", "--json"])?)?;
    assert!(list.as_array().unwrap().iter().all(|v| v["name"] != "vol0"));
    Ok(())
}

#[test]
fn cli_errors_are_one_clear_line_and_nonzero() -> anyhow::Result<()> {
    let server = TestServer::start()?;
    server.cli_ok(&["volume", "create", "taken", "--size", "1M"])?;

    let dup = server.cli(&["volume", "create", "taken", "--size", "1M"])?;
    assert!(!dup.status.success());
    assert!(stderr(&dup).contains("taken"), "{}", stderr(&dup));
    assert_eq!(stderr(&dup).trim().lines().count(), 1, "{}", stderr(&dup));

    let bad = server.cli(&["volume", "create", "x", "--size", "12Q"])?;
    assert!(!bad.status.success());
    assert!(stderr(&bad).to_lowercase().contains("size"), "{}", stderr(&bad));

    let zero = server.cli(&["volume", "create", "x", "--size", "0"])?;
    assert!(!zero.status.success(), "a zero-sized volume must be refused");

    let missing = server.cli(&["volume", "delete", "ghost"])?;
    assert!(!missing.status.success());
    assert!(stderr(&missing).contains("ghost"), "{}", stderr(&missing));

    let resize = server.cli(&["volume", "resize", "ghost", "--size", "1G"])?;
    assert!(!resize.status.success());
    Ok(())
}

#[test]
fn missing_or_wrong_token_is_unauthorized() -> anyhow::Result<()> {
    let server = TestServer::start()?;
    let out = Command::new(cli_bin())
        .args(["--token-file", "/nonexistent/token", "volume", "list"])
        .env("CLONEBD_ADMIN", server.admin_url())
        .env_remove("CLONEBD_TOKEN")
        .current_dir(std::env::temp_dir())
        .output()?;
    assert!(!out.status.success());
    let wrong = Command::new(cli_bin())
        .args(["volume", "list"])
        .env("CLONEBD_ADMIN", server.admin_url())
        .env("CLONEBD_TOKEN", "not-the-token")
        .output()?;
    assert!(!wrong.status.success());
    assert!(stderr(&wrong).contains("unauthorized"), "{}", stderr(&wrong));
    // And the raw API says 401.
    let status = raw_status(&server, None)?;
    assert_eq!(status, 401);
    let status = raw_status(&server, Some(&server.token()?))?;
    assert_eq!(status, 200);
    Ok(())
}

#[test]
fn token_file_is_private() -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let server = TestServer::start()?;
    let meta = std::fs::metadata(server.data_dir().join("admin.token"))?;
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    // --token-file works as the third way to pass it.
    let out = Command::new(cli_bin())
        .args(["--token-file"])
        .arg(server.data_dir().join("admin.token"))
        .args(["volume", "list"])
        .env("CLONEBD_ADMIN", server.admin_url())
        .env_remove("CLONEBD_TOKEN")
        .output()?;
    assert!(out.status.success(), "{}", stderr(&out));
    Ok(())
}

fn raw_status(server: &TestServer, token: Option<&str>) -> anyhow::Result<u16> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(server.admin)?;
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    write!(s, "GET /v1/volumes HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n")?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    Ok(resp.split_whitespace().nth(1).unwrap_or("0").parse()?)
}

#[test]
fn non_loopback_admin_is_refused_without_the_explicit_flag() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let out = Command::new(common::server_bin())
        .arg("--data")
        .arg(dir.path())
        .args(["--listen", "127.0.0.1:0", "--admin", "0.0.0.0:0"])
        .output()?;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--admin-insecure-plain-http"), "{}", stderr(&out));
    Ok(())
}
