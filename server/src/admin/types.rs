//! The admin API's wire types (JSON DTOs). They are separate from the store's
//! types so that the HTTP contract changes only on purpose; `catalog.rs` converts.
//! The `clonebd` CLI keeps its own copy in `clonebd_client::admin`; the golden
//! tests on both sides pin the same JSON.

use serde::{Deserialize, Serialize};

/// A volume or clone (read-write export `NAME`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeDto {
    /// Export name.
    pub name: String,
    /// Logical size in bytes.
    pub size: u64,
    /// Copy-on-write unit in bytes.
    pub chunk_size: u32,
    /// `NAME@SNAP` this clone was made from; `None` for a plain volume.
    pub origin: Option<String>,
    /// Bytes this volume wrote itself (not shared with its origin).
    pub written_bytes: u64,
    /// Number of snapshots of this volume.
    pub snapshot_count: usize,
    /// Creation time, RFC 3339 UTC.
    pub created: String,
}

/// How a snapshot came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SnapshotKindDto {
    /// Taken through the API or CLI.
    Manual,
    /// Taken by the schedule.
    Scheduled,
}

/// A snapshot (read-only export `VOLUME@NAME`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotDto {
    /// Export name, `VOLUME@NAME`.
    pub export: String,
    /// The volume it belongs to.
    pub volume: String,
    /// Snapshot name.
    pub name: String,
    /// Creation time, RFC 3339 UTC.
    pub created: String,
    /// Manual or scheduled.
    pub kind: SnapshotKindDto,
    /// Held snapshots are never pruned by retention.
    pub held: bool,
    /// Clones made from this snapshot.
    pub clones: Vec<String>,
    /// Bytes the volume wrote between the previous snapshot and this one.
    pub written_since_previous: u64,
}

/// Answer to a promote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromoteDto {
    /// The name the clone now has.
    pub volume: String,
    /// The name under which the previous volume is kept (the rollback point).
    pub rollback_name: String,
}

/// One changed byte range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeDto {
    /// Start, in bytes.
    pub offset: u64,
    /// Length, in bytes.
    pub length: u64,
}

/// Changed ranges between two snapshots (or a snapshot and a volume).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiffDto {
    /// Changed ranges, in offset order.
    pub ranges: Vec<RangeDto>,
    /// Sum of the ranges' lengths.
    pub total_bytes: u64,
}

/// One NBD export, as `NBD_OPT_LIST` would show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportDto {
    /// Export name (`NAME` or `NAME@SNAP`).
    pub name: String,
    /// Human description.
    pub description: String,
    /// Size in bytes.
    pub size: u64,
    /// Snapshots are read-only.
    pub read_only: bool,
}

/// What one garbage-collection pass freed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcDto {
    /// Chunks returned to the free list.
    pub chunks_freed: u64,
    /// Bytes those chunks held.
    pub bytes_freed: u64,
}

/// A retention policy: take a snapshot every hour (if enabled) and keep the
/// newest of each of the last N hours and the first of the last N days,
/// ISO weeks and months.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyDto {
    /// Snapshots are taken (pruning runs either way).
    pub enabled: bool,
    /// Hourly snapshots kept.
    pub hourly: u32,
    /// Daily snapshots kept.
    pub daily: u32,
    /// Weekly snapshots kept.
    pub weekly: u32,
    /// Monthly snapshots kept.
    pub monthly: u32,
}

/// One volume's snapshot schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleDto {
    /// The volume.
    pub volume: String,
    /// Its effective policy.
    pub policy: PolicyDto,
    /// Where it comes from: `default`, `config`, `config-volume` or `api`.
    pub source: String,
    /// When the timer runs next, RFC 3339 UTC; `null` when the timer is off.
    pub next_tick: Option<String>,
    /// The newest scheduled snapshot, `VOLUME@SLOT`.
    pub last_snapshot: Option<String>,
    /// How many scheduled snapshots the volume has.
    pub scheduled_snapshots: usize,
}

/// `PUT /v1/volumes/{name}/schedule`: the fields given replace those set
/// through the API before; the others keep their value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetScheduleRequest {
    /// Take snapshots.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Hourly snapshots kept.
    #[serde(default)]
    pub hourly: Option<u32>,
    /// Daily snapshots kept.
    #[serde(default)]
    pub daily: Option<u32>,
    /// Weekly snapshots kept.
    #[serde(default)]
    pub weekly: Option<u32>,
    /// Monthly snapshots kept.
    #[serde(default)]
    pub monthly: Option<u32>,
}

/// `POST /v1/schedule/tick`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TickRequest {
    /// Run the policy as if it were this time (RFC 3339); only accepted by a
    /// server started with `--enable-test-hooks`.
    #[serde(default)]
    pub now: Option<String>,
}

/// A take or prune the store refused or failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TickFailureDto {
    /// `VOLUME@SLOT`.
    pub snapshot: String,
    /// `take` or `prune`.
    pub action: String,
    /// The store's message.
    pub reason: String,
}

/// What one run of the policy did to one volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeTickDto {
    /// The volume.
    pub volume: String,
    /// The snapshot taken, `VOLUME@SLOT`.
    pub taken: Option<String>,
    /// Snapshots pruned.
    pub pruned: Vec<String>,
    /// Refusals and errors.
    pub failures: Vec<TickFailureDto>,
}

/// What one run of the policy did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TickDto {
    /// The time it ran at, RFC 3339 UTC.
    pub now: String,
    /// Every volume, in name order.
    pub volumes: Vec<VolumeTickDto>,
}

/// Every error body: `{"error": "<one line>"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDto {
    /// One line, lowercase, no final period.
    pub error: String,
}

/// `POST /v1/volumes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateVolumeRequest {
    /// Export name.
    pub name: String,
    /// Logical size in bytes.
    pub size: u64,
    /// Copy-on-write unit in bytes; the store's default (64 KiB) if absent.
    #[serde(default)]
    pub chunk_size: Option<u32>,
}

/// `PATCH /v1/volumes/{name}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResizeVolumeRequest {
    /// New logical size in bytes.
    pub size: u64,
}

/// `POST /v1/volumes/{name}/snapshots`; an empty body is accepted too.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSnapshotRequest {
    /// Snapshot name; the store picks one from the time if absent.
    #[serde(default)]
    pub name: Option<String>,
}

/// `POST /v1/clones`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateCloneRequest {
    /// `NAME@SNAP`, or `NAME` to snapshot first and clone that.
    pub source: String,
    /// Name of the new clone.
    pub name: String,
}

/// `POST /v1/volumes/{name}/rollback`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    /// The snapshot (of this volume) to roll back to.
    pub snapshot: String,
}

/// `GET /v1/snapshots?volume=NAME`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotQuery {
    /// Only this volume's snapshots.
    #[serde(default)]
    pub volume: Option<String>,
}

/// `GET /v1/diff?from=V@A&to=V@B`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiffQuery {
    /// Older side, `NAME@SNAP`.
    pub from: String,
    /// Newer side, `NAME@SNAP` or the live `NAME`.
    pub to: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same JSON is pinned in `clonebd_client::admin`'s tests.
    const VOLUME_JSON: &str = r#"{"name":"pg","size":10737418240,"chunk_size":65536,"origin":"base@s1","written_bytes":131072,"snapshot_count":2,"created":"2026-11-24T13:05:12Z"}"#;
    const SNAPSHOT_JSON: &str = r#"{"export":"pg@2026-11-24T13:00Z","volume":"pg","name":"2026-11-24T13:00Z","created":"2026-11-24T13:00:00Z","kind":"scheduled","held":true,"clones":["test1"],"written_since_previous":65536}"#;

    #[test]
    fn volume_golden_json_round_trips() {
        let dto: VolumeDto = serde_json::from_str(VOLUME_JSON).unwrap();
        assert_eq!(dto.origin.as_deref(), Some("base@s1"));
        assert_eq!(serde_json::to_string(&dto).unwrap(), VOLUME_JSON);
    }

    #[test]
    fn snapshot_golden_json_round_trips() {
        let dto: SnapshotDto = serde_json::from_str(SNAPSHOT_JSON).unwrap();
        assert_eq!(dto.kind, SnapshotKindDto::Scheduled);
        assert_eq!(serde_json::to_string(&dto).unwrap(), SNAPSHOT_JSON);
    }

    #[test]
    fn create_volume_rejects_unknown_fields() {
        let err = serde_json::from_str::<CreateVolumeRequest>(
            r#"{"name":"a","size":1,"chunksize":4096}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown field `chunksize`"), "{err}");
    }
}
