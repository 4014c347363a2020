//! Plain data returned by the catalog API, and the naming rules.

use crate::record::SnapshotKind;

/// The default chunk size (64 KiB).
pub const DEFAULT_CHUNK_SIZE: u32 = 64 * 1024;
/// The smallest chunk size.
pub const MIN_CHUNK_SIZE: u32 = 4096;
/// The largest chunk size.
pub const MAX_CHUNK_SIZE: u32 = 1 << 20;
/// The largest volume size.
pub const MAX_VOLUME_SIZE: u64 = 1 << 63;

/// A volume (or clone).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeInfo {
    /// Its name.
    pub name: String,
    /// Bytes.
    pub size: u64,
    /// The copy-on-write unit.
    pub chunk_size: u32,
    /// `V@S` for a clone.
    pub origin: Option<String>,
    /// Chunks this volume's own entries allocated × chunk size.
    pub written_bytes: u64,
    /// Its snapshots.
    pub snapshot_count: usize,
    /// Creation time.
    pub created_unix: i64,
}

/// A snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// The volume's name.
    pub volume: String,
    /// The snapshot's name (the part after `@`).
    pub name: String,
    /// Creation time.
    pub created_unix: i64,
    /// Manual or scheduled.
    pub kind: SnapshotKind,
    /// Held snapshots cannot be deleted.
    pub held: bool,
    /// Clones made from it.
    pub clones: Vec<String>,
    /// Bytes of chunks the volume allocated between the previous snapshot and this one.
    pub written_since_previous: u64,
}

/// One export for NBD `LIST` and `INFO`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportSummary {
    /// `NAME` or `NAME@SNAP`.
    pub name: String,
    /// For people, e.g. "volume pg, 10 GiB".
    pub description: String,
    /// Bytes.
    pub size: u64,
    /// Snapshots are read-only.
    pub read_only: bool,
    /// The preferred block size.
    pub chunk_size: u32,
}

/// Counters and gauges for metrics, since the store was opened.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// First writes into chunks shared with a snapshot or an origin.
    pub copy_ups: u64,
    /// Bytes those copy-ups (and flatten) copied besides the written ones.
    pub copy_up_bytes: u64,
    /// Commits that made something durable (FLUSH, FUA, background).
    pub commits: u64,
    /// Of those, commits that also wrote the block map (or allocator or
    /// catalog) to sled, paying its flush and fsync.
    pub map_commits: u64,
    /// FLUSHes and FUA writes made durable by the intent log (one fdatasync
    /// of its file) instead of a commit.
    pub intent_flushes: u64,
    /// Chunks allocated, copy-ups included.
    pub chunks_allocated: u64,
    /// Chunks freed by GC.
    pub gc_chunks_freed: u64,
    /// Bytes freed by GC.
    pub gc_bytes_freed: u64,
    /// Nodes waiting for (more) GC.
    pub gc_pending_nodes: usize,
    /// Chunks in the free lists, ready for reuse.
    pub free_chunks: usize,
    /// sled's size on disk.
    pub sled_bytes: u64,
}

/// A byte range.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct ByteRange {
    /// Start.
    pub offset: u64,
    /// Length.
    pub length: u64,
}

/// What `promote` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Promoted {
    /// The name the clone now has (its origin's).
    pub volume: String,
    /// The name the old volume is kept under.
    pub rollback_name: String,
}

/// What one `gc_now` freed.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Chunks freed.
    pub chunks_freed: u64,
    /// Their bytes.
    pub bytes_freed: u64,
}

/// GC progress.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct GcStatus {
    /// Nodes waiting for (more) GC.
    pub pending_nodes: usize,
    /// Chunks freed since open.
    pub chunks_freed_total: u64,
    /// Bytes freed since open.
    pub bytes_freed_total: u64,
}

/// `[A-Za-z0-9][A-Za-z0-9._:-]{0,127}`.
pub(crate) fn valid_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && b[0].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || b"._:-".contains(c))
}

pub(crate) fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// `2026-11-24T13:05:12Z`.
pub(crate) fn utc_name(unix: i64) -> String {
    let t =
        time::OffsetDateTime::from_unix_timestamp(unix).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    t.format(&fmt).unwrap_or_else(|_| unix.to_string())
}

/// "10 GiB", "1.5 MiB", "512 B".
pub(crate) fn human(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut unit = 0;
    let mut v = bytes as f64;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if v.fract() == 0.0 {
        format!("{v} {}", UNITS[unit])
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid_name("pg-main"));
        assert!(valid_name("2026-11-24T13:05:12Z"));
        assert!(!valid_name("-x"));
        assert!(!valid_name("a@b"));
        assert!(!valid_name(""));
        assert!(!valid_name(&"a".repeat(129)));
        assert!(valid_name(&"a".repeat(128)));
        assert_eq!(utc_name(0), "1970-01-01T00:00:00Z");
        assert_eq!(human(10 << 30), "10 GiB");
        assert_eq!(human(1536), "1.5 KiB");
    }
}
