#![allow(dead_code, unreachable_pub)]
//! Shared helpers for the end-to-end tests: start the real `clonebd-server`
//! binary on ephemeral ports with a fresh data directory, find and run real
//! NBD clients, and run the real `clonebd` CLI.
//!
//! A test whose client tool is missing skips on a developer's machine but
//! fails when `CI=true` (rustls BoGo style), so CI can never pass by skipping.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

pub mod raw;

/// Path of the server binary built for the tests.
pub fn server_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_clonebd-server-e2e"))
}

/// Path of the CLI binary built for the tests.
pub fn cli_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_clonebd-e2e"))
}

/// True when running in CI, where missing tools are failures.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Returns true if `tool` is on PATH. Otherwise panics in CI, or prints a
/// skip notice and returns false on a developer machine.
pub fn require_tool(tool: &str) -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()));
    if !found {
        if in_ci() {
            panic!("required tool `{tool}` is missing (CI=true: install it in .ci/run)");
        }
        eprintln!("SKIP: `{tool}` not installed");
    }
    found
}

/// Debian's python3-libnbd installs into the system interpreter, which may
/// not be the first `python3` on PATH (pyenv shims are, on these machines).
pub const SYSTEM_PYTHON: &str = "/usr/bin/python3";

/// Returns true if the system python3 can import the libnbd bindings (same
/// CI rule as `require_tool`).
pub fn require_python_nbd() -> bool {
    let ok = Command::new(SYSTEM_PYTHON)
        .args(["-c", "import nbd"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        if in_ci() {
            panic!("python3-libnbd is missing (CI=true: install it in .ci/run)");
        }
        eprintln!("SKIP: python3 `nbd` module not installed");
    }
    ok
}

/// A running `clonebd-server` process with its own data directory.
pub struct TestServer {
    child: Option<Child>,
    data: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    /// NBD address.
    pub nbd: SocketAddr,
    /// Admin API address.
    pub admin: SocketAddr,
    extra_args: Vec<String>,
}

impl TestServer {
    /// Starts a server on a fresh data directory, with the hourly snapshot
    /// timer off so tests see only the snapshots they take.
    pub fn start() -> Result<Self> {
        Self::start_with(&[])
    }

    /// Starts a server on a fresh data directory with extra flags (the
    /// snapshot timer stays off).
    pub fn start_with(extra: &[&str]) -> Result<Self> {
        let mut args = vec!["--no-schedule"];
        args.extend(extra.iter().filter(|a| **a != "--no-schedule"));
        Self::start_scheduled(&args)
    }

    /// Starts a server with the snapshot timer as configured by `extra`
    /// (on by default).
    pub fn start_scheduled(extra: &[&str]) -> Result<Self> {
        let tmp = tempfile::Builder::new().prefix("clonebd-e2e").tempdir_in(scratch_dir())?;
        let data = tmp.path().join("data");
        let mut s = Self {
            child: None,
            data,
            _tmp: Some(tmp),
            nbd: "127.0.0.1:0".parse()?,
            admin: "127.0.0.1:0".parse()?,
            extra_args: extra.iter().map(|s| s.to_string()).collect(),
        };
        s.spawn()?;
        Ok(s)
    }

    fn spawn(&mut self) -> Result<()> {
        // Reuse the ports after a restart so URIs stay valid.
        let listen =
            if self.nbd.port() == 0 { "127.0.0.1:0".to_string() } else { self.nbd.to_string() };
        let admin =
            if self.admin.port() == 0 { "127.0.0.1:0".to_string() } else { self.admin.to_string() };
        let mut child = Command::new(server_bin())
            .arg("--data")
            .arg(&self.data)
            .args(["--listen", &listen, "--admin", &admin])
            .args(&self.extra_args)
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("spawning clonebd-server")?;
        let stdout = child.stdout.take().context("server stdout")?;
        let mut line = String::new();
        let mut reader = BufReader::new(stdout);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                let status = child.wait()?;
                bail!("clonebd-server exited before it was ready: {status}");
            }
            if line.starts_with("clonebd-server ready:") {
                break;
            }
            if Instant::now() > deadline {
                bail!("clonebd-server did not become ready");
            }
        }
        for field in line.split_whitespace() {
            if let Some(v) = field.strip_prefix("nbd=") {
                self.nbd = v.parse()?;
            } else if let Some(v) = field.strip_prefix("admin=") {
                self.admin = v.parse()?;
            }
        }
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sink = String::new();
            while reader.read_line(&mut sink).map(|n| n > 0).unwrap_or(false) {
                sink.clear();
            }
        });
        self.child = Some(child);
        Ok(())
    }

    /// `nbd://127.0.0.1:PORT/EXPORT`.
    pub fn uri(&self, export: &str) -> String {
        format!("nbd://{}/{}", self.nbd, export)
    }

    /// Admin base URL.
    pub fn admin_url(&self) -> String {
        format!("http://{}", self.admin)
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// The admin token the server wrote.
    pub fn token(&self) -> Result<String> {
        Ok(std::fs::read_to_string(self.data.join("admin.token"))?.trim().to_string())
    }

    /// Graceful stop (SIGTERM) and wait.
    pub fn stop(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            let pid = child.id().to_string();
            Command::new("kill").args(["-TERM", &pid]).status()?;
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                if let Some(status) = child.try_wait()? {
                    if !status.success() {
                        bail!("server exited with {status} on SIGTERM");
                    }
                    break;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    bail!("server did not stop within 60 s of SIGTERM");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }

    /// `kill -9`: no chance to flush anything.
    pub fn kill9(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Starts the server again on the same data directory and ports.
    pub fn restart(&mut self) -> Result<()> {
        self.spawn()
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Runs the `clonebd` CLI against this server with its token.
    pub fn cli(&self, args: &[&str]) -> Result<Output> {
        Ok(Command::new(cli_bin())
            .args(args)
            .env("CLONEBD_ADMIN", self.admin_url())
            .env("CLONEBD_TOKEN", self.token()?)
            .output()?)
    }

    /// Runs the CLI and fails unless it succeeds; returns stdout.
    pub fn cli_ok(&self, args: &[&str]) -> Result<String> {
        let out = self.cli(args)?;
        if !out.status.success() {
            bail!(
                "clonebd {:?} failed: {}{}",
                args,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8(out.stdout)?)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Where scratch files go: a real disk (not tmpfs), so hole punching and
/// fsync behave as in production.
pub fn scratch_dir() -> PathBuf {
    let p = std::env::var_os("CLONEBD_TEST_TMP")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp"));
    if p.is_dir() { p } else { std::env::temp_dir() }
}

/// Runs a command, failing with its output unless it succeeds; returns stdout.
pub fn run_ok(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}
