//! Server configuration: documented defaults, validation. Parsing of flags
//! lives in `main.rs`; this type is what the library runs on.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::schedule::{PolicyError, ScheduleConfig};

/// The IANA NBD port on loopback.
pub const DEFAULT_NBD_ADDR: &str = "127.0.0.1:10809";
/// The admin API and `/metrics`, on loopback.
pub const DEFAULT_ADMIN_ADDR: &str = "127.0.0.1:10810";
/// All state lives here unless `--data` says otherwise.
pub const DEFAULT_DATA_DIR: &str = "./clonebd-data";
/// The spec says payloads up to 2^25 bytes must not be treated as abuse.
pub const DEFAULT_MAX_PAYLOAD: u32 = 32 << 20;
/// Bytes of requests and replies one connection may have in flight; must hold
/// at least one maximum payload or a 32 MiB request would wait forever.
pub const DEFAULT_MAX_INFLIGHT_BYTES: u32 = 64 << 20;
/// Requests one connection may have in flight (the kernel's queue depth is 128).
pub const DEFAULT_MAX_INFLIGHT_REQUESTS: u32 = 256;
/// Open NBD connections across all exports.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// A hypervisor may open the socket seconds before it speaks: be generous.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// The volume a fresh data directory starts with.
pub const DEFAULT_VOLUME: &str = "default";
/// Its size: 10 GiB.
pub const DEFAULT_VOLUME_SIZE: u64 = 10 << 30;
/// sled's cache; RSS is about 1.5-2x this (crates.md §1.2).
pub const DEFAULT_SLED_CACHE: u64 = 256 << 20;
/// How long a connection at queue depth 1 polls for its next request before
/// it sleeps (`--poll-us`; `nbd/spin.rs`): not at all unless asked. Polling
/// doubled fio's 4 KiB QD1 IOPS on a 2-vCPU VM but cost pgbench 10-12% of
/// its TPS there, with PostgreSQL on the same two vCPUs (BENCHMARKS.md).
pub(crate) const DEFAULT_POLL: Duration = Duration::ZERO;
/// Background commit interval (`--commit-interval`): the store's own default.
pub const DEFAULT_COMMIT_INTERVAL: Duration = store::DEFAULT_COMMIT_INTERVAL;

/// Everything `run` needs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Data directory: sled database, chunk files, admin token.
    pub data_dir: PathBuf,
    /// NBD listen address.
    pub listen: SocketAddr,
    /// Admin API listen address.
    pub admin: SocketAddr,
    /// The operator accepts a plain-HTTP admin API on a non-loopback address.
    pub admin_insecure_plain_http: bool,
    /// Largest WRITE/READ payload accepted.
    pub max_payload: u32,
    /// In-flight bytes per connection.
    pub max_inflight_bytes: u32,
    /// In-flight requests per connection.
    pub max_inflight_requests: u32,
    /// Open connections.
    pub max_connections: usize,
    /// Time a client has to finish the handshake.
    pub handshake_timeout: Duration,
    /// Threads that run blocking store calls for the NBD path.
    pub io_threads: usize,
    /// How long a connection whose client waits for each reply (queue
    /// depth 1) polls its socket for the next request before it sleeps;
    /// zero never polls.
    pub poll: Duration,
    /// sled cache capacity in bytes.
    pub sled_cache: u64,
    /// Time between background commits of block-map changes (FLUSH and FUA
    /// commit at once regardless).
    pub commit_interval: Duration,
    /// Intent log size in bytes; 0 turns it off (every FLUSH after block-map
    /// changes commits them).
    pub intent_log_bytes: u64,
    /// Snapshot policies from the config file (`[schedule]`).
    pub schedule: ScheduleConfig,
    /// Run the hourly snapshot timer (`--no-schedule` turns it off; the
    /// schedule API and `POST /v1/schedule/tick` still work).
    pub schedule_timer: bool,
    /// Test-only hooks, e.g. a fake `now` for `POST /v1/schedule/tick`.
    pub enable_test_hooks: bool,
}

/// The TOML file given with `--config`. Flags given on the command line win
/// over it where both say something.
///
/// ```toml
/// [schedule]
/// hourly = 48
///
/// [schedule.volumes.scratch]
/// enabled = false
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Snapshot schedule and retention.
    #[serde(default)]
    pub schedule: ScheduleConfig,
}

/// The largest config file read.
const MAX_CONFIG_BYTES: u64 = 1 << 20;

impl FileConfig {
    /// Parses and validates the file's text.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let file: FileConfig = toml::from_str(text).map_err(ConfigError::Toml)?;
        file.schedule.validate()?;
        Ok(file)
    }

    /// Reads, parses and validates `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let io = |source| ConfigError::ReadFile { path: path.display().to_string(), source };
        let len = std::fs::metadata(path).map_err(io)?.len();
        if len > MAX_CONFIG_BYTES {
            return Err(ConfigError::FileTooLarge { path: path.display().to_string(), len });
        }
        let text = std::fs::read_to_string(path).map_err(io)?;
        Self::parse(&text).map_err(|e| match e {
            ConfigError::Toml(source) => {
                ConfigError::ParseFile { path: path.display().to_string(), source }
            }
            other => other,
        })
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            listen: parse_default(DEFAULT_NBD_ADDR),
            admin: parse_default(DEFAULT_ADMIN_ADDR),
            admin_insecure_plain_http: false,
            max_payload: DEFAULT_MAX_PAYLOAD,
            max_inflight_bytes: DEFAULT_MAX_INFLIGHT_BYTES,
            max_inflight_requests: DEFAULT_MAX_INFLIGHT_REQUESTS,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            io_threads: 8,
            poll: DEFAULT_POLL,
            sled_cache: DEFAULT_SLED_CACHE,
            commit_interval: DEFAULT_COMMIT_INTERVAL,
            intent_log_bytes: store::DEFAULT_INTENT_LOG_BYTES,
            schedule: ScheduleConfig::default(),
            schedule_timer: true,
            enable_test_hooks: false,
        }
    }
}

fn parse_default(s: &str) -> SocketAddr {
    // invariant: the defaults above are valid socket addresses (tested below).
    s.parse().expect("default address parses")
}

/// A configuration that cannot run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Plain HTTP with a bearer token on a reachable address leaks the token.
    #[error(
        "refusing to serve the admin API on non-loopback address {0} over plain HTTP; \
         bind it to 127.0.0.1 or pass --admin-insecure-plain-http to accept the risk"
    )]
    InsecureAdmin(SocketAddr),
    /// A connection could never fit one maximum-size request.
    #[error("max in-flight bytes ({inflight}) must be at least the max payload ({payload})")]
    InflightTooSmall {
        /// configured in-flight bytes
        inflight: u32,
        /// configured max payload
        payload: u32,
    },
    /// A limit that must be positive is zero.
    #[error("{0} must be greater than zero")]
    Zero(&'static str),
    /// The config file could not be read.
    #[error("cannot read config file {path}")]
    ReadFile {
        /// the file
        path: String,
        /// the cause
        #[source]
        source: std::io::Error,
    },
    /// The config file is larger than any sensible one.
    #[error("config file {path} is {len} bytes; the limit is {MAX_CONFIG_BYTES}")]
    FileTooLarge {
        /// the file
        path: String,
        /// its size
        len: u64,
    },
    /// The config file is not valid TOML or has unknown keys.
    #[error("invalid config file {path}")]
    ParseFile {
        /// the file
        path: String,
        /// the parser's message (with line and column)
        #[source]
        source: toml::de::Error,
    },
    /// Config text that is not valid TOML or has unknown keys.
    #[error("invalid config")]
    Toml(#[source] toml::de::Error),
    /// A snapshot policy that cannot be used.
    #[error("invalid [schedule]")]
    Schedule(#[from] PolicyError),
}

impl Config {
    /// Checks the combination of settings before anything binds.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.admin.ip().is_loopback() && !self.admin_insecure_plain_http {
            return Err(ConfigError::InsecureAdmin(self.admin));
        }
        if self.max_inflight_bytes < self.max_payload {
            return Err(ConfigError::InflightTooSmall {
                inflight: self.max_inflight_bytes,
                payload: self.max_payload,
            });
        }
        for (name, v) in [
            ("max payload", self.max_payload as usize),
            ("max in-flight requests", self.max_inflight_requests as usize),
            ("max connections", self.max_connections),
            ("io threads", self.io_threads),
        ] {
            if v == 0 {
                return Err(ConfigError::Zero(name));
            }
        }
        if self.commit_interval.is_zero() {
            return Err(ConfigError::Zero("commit interval"));
        }
        self.schedule.validate()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
        assert_eq!(Config::default().listen.port(), 10809);
        assert_eq!(Config::default().admin.port(), 10810);
    }

    #[test]
    fn a_zero_commit_interval_is_refused() {
        let c = Config { commit_interval: Duration::ZERO, ..Config::default() };
        let e = c.validate().unwrap_err();
        assert!(matches!(e, ConfigError::Zero("commit interval")));
        assert_eq!(e.to_string(), "commit interval must be greater than zero");
    }

    #[test]
    fn non_loopback_admin_needs_explicit_flag() {
        let mut c = Config { admin: "0.0.0.0:10810".parse().unwrap(), ..Config::default() };
        assert!(matches!(c.validate(), Err(ConfigError::InsecureAdmin(_))));
        c.admin_insecure_plain_http = true;
        c.validate().unwrap();
    }

    #[test]
    fn config_file_sets_the_schedule_and_refuses_unknown_keys() {
        let file =
            FileConfig::parse("[schedule]\nhourly = 48\n[schedule.volumes.pg]\ndaily = 14\n")
                .unwrap();
        assert_eq!(file.schedule.hourly, Some(48));
        assert_eq!(file.schedule.volumes["pg"].daily, Some(14));
        assert_eq!(FileConfig::parse("").unwrap(), FileConfig::default());
        let err = FileConfig::parse("listen = \"0.0.0.0:1\"").unwrap_err();
        assert!(matches!(err, ConfigError::Toml(_)), "{err:?}");
        let err = FileConfig::parse("[schedule]\nhourly = 0\ndaily = 0\nweekly = 0").unwrap_err();
        assert!(matches!(err, ConfigError::Schedule(PolicyError::KeepsNothing)), "{err:?}");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clonebd.toml");
        std::fs::write(&path, "[schedule]\nhourli = 1\n").unwrap();
        let err = FileConfig::load(&path).unwrap_err();
        assert!(matches!(err, ConfigError::ParseFile { .. }), "{err:?}");
        let chain = std::error::Error::source(&err).unwrap().to_string();
        assert!(chain.contains("hourli"), "{chain}");
        assert!(matches!(
            FileConfig::load(&dir.path().join("missing.toml")),
            Err(ConfigError::ReadFile { .. })
        ));
    }

    #[test]
    fn inflight_must_hold_one_payload() {
        let c = Config { max_inflight_bytes: 1024, ..Config::default() };
        assert!(matches!(c.validate(), Err(ConfigError::InflightTooSmall { .. })));
    }
}
