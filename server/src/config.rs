//! Server configuration: documented defaults, validation. Parsing of flags
//! lives in `main.rs`; this type is what the library runs on.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

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
    /// sled cache capacity in bytes.
    pub sled_cache: u64,
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
            sled_cache: DEFAULT_SLED_CACHE,
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
    fn non_loopback_admin_needs_explicit_flag() {
        let mut c = Config { admin: "0.0.0.0:10810".parse().unwrap(), ..Config::default() };
        assert!(matches!(c.validate(), Err(ConfigError::InsecureAdmin(_))));
        c.admin_insecure_plain_http = true;
        c.validate().unwrap();
    }

    #[test]
    fn inflight_must_hold_one_payload() {
        let c = Config { max_inflight_bytes: 1024, ..Config::default() };
        assert!(matches!(c.validate(), Err(ConfigError::InflightTooSmall { .. })));
    }
}
