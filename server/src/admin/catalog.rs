//! `Catalog`: what the admin API needs from the store, in wire types. The
//! implementation for `store::Store` is the only admin code that sees store
//! types, and `refusal_error` is the one place a store refusal becomes an
//! HTTP status. Handlers are tested against an in-memory fake.

use axum::http::StatusCode;
use store::{Refusal, SnapshotInfo, SnapshotKind, StoreError, VolumeInfo};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::error::ApiError;
use super::types::{
    DiffDto, ExportDto, GcDto, PromoteDto, RangeDto, SnapshotDto, SnapshotKindDto, VolumeDto,
};
use crate::error_chain::error_chain;

/// The store as the admin API sees it. Every method blocks: call it from
/// `spawn_blocking`, never on a runtime worker.
pub trait Catalog: Send + Sync + 'static {
    /// All volumes and clones, in name order.
    fn volumes(&self) -> Result<Vec<VolumeDto>, ApiError>;
    /// One volume or clone.
    fn volume(&self, name: &str) -> Result<VolumeDto, ApiError>;
    /// A new thin volume; `chunk_size` defaults to the store's.
    fn create_volume(
        &self,
        name: &str,
        size: u64,
        chunk_size: Option<u32>,
    ) -> Result<VolumeDto, ApiError>;
    /// Grows or shrinks a volume.
    fn resize_volume(&self, name: &str, size: u64) -> Result<VolumeDto, ApiError>;
    /// Deletes a volume or clone.
    fn delete_volume(&self, name: &str) -> Result<(), ApiError>;
    /// A manual snapshot; the store names it from the time if `snapshot` is `None`.
    fn create_snapshot(
        &self,
        volume: &str,
        snapshot: Option<&str>,
    ) -> Result<SnapshotDto, ApiError>;
    /// Snapshots of one volume, or of all.
    fn snapshots(&self, volume: Option<&str>) -> Result<Vec<SnapshotDto>, ApiError>;
    /// Deletes a snapshot nothing depends on.
    fn delete_snapshot(&self, volume: &str, snapshot: &str) -> Result<(), ApiError>;
    /// Holds (keeps from retention) or releases a snapshot.
    fn set_snapshot_hold(
        &self,
        volume: &str,
        snapshot: &str,
        held: bool,
    ) -> Result<SnapshotDto, ApiError>;
    /// A writable clone of `NAME@SNAP`, or of `NAME` through a new snapshot.
    fn create_clone(&self, source: &str, name: &str) -> Result<VolumeDto, ApiError>;
    /// Makes a clone the volume it was cloned from.
    fn promote(&self, clone: &str) -> Result<PromoteDto, ApiError>;
    /// Rolls a volume back to one of its snapshots.
    fn rollback(&self, volume: &str, snapshot: &str) -> Result<(), ApiError>;
    /// Copies a clone's shared chunks so it no longer depends on its origin.
    fn flatten(&self, name: &str) -> Result<VolumeDto, ApiError>;
    /// Byte ranges that differ between `from` and `to`.
    fn diff(&self, from: &str, to: &str) -> Result<DiffDto, ApiError>;
    /// Every export a client can open now.
    fn exports(&self) -> Result<Vec<ExportDto>, ApiError>;
    /// Runs garbage collection to completion now.
    fn gc(&self) -> Result<GcDto, ApiError>;
}

impl Catalog for store::Store {
    fn volumes(&self) -> Result<Vec<VolumeDto>, ApiError> {
        Ok(store::Store::volumes(self).into_iter().map(volume_dto).collect())
    }

    fn volume(&self, name: &str) -> Result<VolumeDto, ApiError> {
        store::Store::volume(self, name)
            .map(volume_dto)
            .ok_or_else(|| ApiError::not_found(format!("volume {name} not found")))
    }

    fn create_volume(
        &self,
        name: &str,
        size: u64,
        chunk_size: Option<u32>,
    ) -> Result<VolumeDto, ApiError> {
        let chunk_size = chunk_size.unwrap_or(store::DEFAULT_CHUNK_SIZE);
        settle(store::Store::create_volume(self, name, size, chunk_size)).map(volume_dto)
    }

    fn resize_volume(&self, name: &str, size: u64) -> Result<VolumeDto, ApiError> {
        settle(store::Store::resize_volume(self, name, size)).map(volume_dto)
    }

    fn delete_volume(&self, name: &str) -> Result<(), ApiError> {
        settle(store::Store::delete_volume(self, name))
    }

    fn create_snapshot(
        &self,
        volume: &str,
        snapshot: Option<&str>,
    ) -> Result<SnapshotDto, ApiError> {
        settle(store::Store::create_snapshot(self, volume, snapshot, SnapshotKind::Manual))
            .map(snapshot_dto)
    }

    fn snapshots(&self, volume: Option<&str>) -> Result<Vec<SnapshotDto>, ApiError> {
        let list = store::Store::snapshots(self, volume);
        // An empty list for a name that is not a volume is a typo, not "no snapshots".
        if let Some(name) = volume
            && list.is_empty()
            && store::Store::volume(self, name).is_none()
        {
            return Err(ApiError::not_found(format!("volume {name} not found")));
        }
        Ok(list.into_iter().map(snapshot_dto).collect())
    }

    fn delete_snapshot(&self, volume: &str, snapshot: &str) -> Result<(), ApiError> {
        settle(store::Store::delete_snapshot(self, volume, snapshot))
    }

    fn set_snapshot_hold(
        &self,
        volume: &str,
        snapshot: &str,
        held: bool,
    ) -> Result<SnapshotDto, ApiError> {
        settle(store::Store::set_snapshot_hold(self, volume, snapshot, held)).map(snapshot_dto)
    }

    fn create_clone(&self, source: &str, name: &str) -> Result<VolumeDto, ApiError> {
        settle(store::Store::create_clone(self, source, name)).map(volume_dto)
    }

    fn promote(&self, clone: &str) -> Result<PromoteDto, ApiError> {
        let promoted = settle(store::Store::promote(self, clone))?;
        Ok(PromoteDto { volume: promoted.volume, rollback_name: promoted.rollback_name })
    }

    fn rollback(&self, volume: &str, snapshot: &str) -> Result<(), ApiError> {
        settle(store::Store::rollback(self, volume, snapshot))
    }

    fn flatten(&self, name: &str) -> Result<VolumeDto, ApiError> {
        settle(store::Store::flatten(self, name)).map(volume_dto)
    }

    fn diff(&self, from: &str, to: &str) -> Result<DiffDto, ApiError> {
        let ranges = settle(store::Store::diff(self, from, to))?;
        Ok(diff_dto(ranges.into_iter().map(|r| RangeDto { offset: r.offset, length: r.length })))
    }

    fn exports(&self) -> Result<Vec<ExportDto>, ApiError> {
        Ok(store::Store::exports(self)
            .into_iter()
            .map(|e| ExportDto {
                name: e.name,
                description: e.description,
                size: e.size,
                read_only: e.read_only,
            })
            .collect())
    }

    fn gc(&self) -> Result<GcDto, ApiError> {
        let report = store::Store::gc_now(self).map_err(|e| store_error(&e))?;
        Ok(GcDto { chunks_freed: report.chunks_freed, bytes_freed: report.bytes_freed })
    }
}

/// Builds a diff answer; the total saturates rather than wraps.
pub(crate) fn diff_dto(ranges: impl IntoIterator<Item = RangeDto>) -> DiffDto {
    let ranges: Vec<RangeDto> = ranges.into_iter().collect();
    let total_bytes = ranges.iter().fold(0u64, |sum, r| sum.saturating_add(r.length));
    DiffDto { ranges, total_bytes }
}

fn settle<T>(result: Result<Result<T, Refusal>, StoreError>) -> Result<T, ApiError> {
    match result {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(refusal)) => Err(refusal_error(&refusal)),
        Err(err) => Err(store_error(&err)),
    }
}

/// The one place a store refusal becomes an HTTP status. The message is the
/// store's own, which names the clones or snapshots that stand in the way.
// `{ .. }` matches unit, tuple and struct variants alike, so this match does
// not break when the store adds a field to a variant.
#[allow(clippy::unneeded_struct_pattern)]
pub(crate) fn refusal_error(refusal: &Refusal) -> ApiError {
    let status = match refusal {
        Refusal::NotFound { .. } | Refusal::SnapshotNotFound { .. } => StatusCode::NOT_FOUND,
        Refusal::InvalidName { .. }
        | Refusal::InvalidSize { .. }
        | Refusal::InvalidChunkSize { .. }
        | Refusal::InvalidDiff { .. } => StatusCode::BAD_REQUEST,
        Refusal::NameTaken { .. }
        | Refusal::HasDependents { .. }
        | Refusal::NewerSnapshots { .. }
        | Refusal::NotAClone { .. }
        | Refusal::SnapshotHeld { .. }
        | Refusal::OriginGone { .. }
        | Refusal::CloneHasSnapshots { .. } => StatusCode::CONFLICT,
        // A refusal is about the state of the catalog, not a server fault.
        _ => StatusCode::CONFLICT,
    };
    ApiError::new(status, refusal.to_string())
}

/// A store failure is a server fault: the whole chain goes to the log, the
/// client gets the top line.
fn store_error(err: &StoreError) -> ApiError {
    let chain = error_chain(err);
    tracing::error!(error = %chain, "admin request failed in the store");
    ApiError::internal(err.to_string())
}

fn volume_dto(v: VolumeInfo) -> VolumeDto {
    VolumeDto {
        name: v.name,
        size: v.size,
        chunk_size: v.chunk_size,
        origin: v.origin,
        written_bytes: v.written_bytes,
        snapshot_count: v.snapshot_count,
        created: rfc3339(v.created_unix),
    }
}

fn snapshot_dto(s: SnapshotInfo) -> SnapshotDto {
    SnapshotDto {
        export: format!("{}@{}", s.volume, s.name),
        kind: match s.kind {
            SnapshotKind::Manual => SnapshotKindDto::Manual,
            SnapshotKind::Scheduled => SnapshotKindDto::Scheduled,
        },
        volume: s.volume,
        name: s.name,
        created: rfc3339(s.created_unix),
        held: s.held,
        clones: s.clones,
        written_since_previous: s.written_since_previous,
    }
}

/// RFC 3339 in UTC, e.g. `2026-11-24T13:05:12Z`; a time out of range is
/// shown as its raw Unix seconds rather than failing the whole listing.
pub(crate) fn rfc3339(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| unix.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_525_512), "2026-11-24T13:05:12Z");
        assert_eq!(rfc3339(i64::MAX), i64::MAX.to_string());
    }

    #[test]
    fn refusals_map_to_statuses() {
        let cases = [
            (Refusal::NameTaken("pg".into()), StatusCode::CONFLICT),
            (Refusal::NotFound("pg".into()), StatusCode::NOT_FOUND),
            (Refusal::SnapshotNotFound("pg@s1".into()), StatusCode::NOT_FOUND),
            (Refusal::InvalidName("a b".into()), StatusCode::BAD_REQUEST),
            (Refusal::InvalidSize("0".into()), StatusCode::BAD_REQUEST),
            (Refusal::InvalidChunkSize(3), StatusCode::BAD_REQUEST),
            (
                Refusal::HasDependents {
                    what: "snapshot pg@s1".into(),
                    dependents: vec!["t".into()],
                },
                StatusCode::CONFLICT,
            ),
            (
                Refusal::NewerSnapshots { volume: "pg".into(), snapshots: vec!["s2".into()] },
                StatusCode::CONFLICT,
            ),
            (Refusal::NotAClone("pg".into()), StatusCode::CONFLICT),
            (Refusal::SnapshotHeld("pg@s1".into()), StatusCode::CONFLICT),
        ];
        for (refusal, status) in cases {
            let err = refusal_error(&refusal);
            assert_eq!(err.status(), status, "{refusal}");
            assert_eq!(err.message(), refusal.to_string());
        }
        let deps = Refusal::HasDependents {
            what: "snapshot pg@s1".into(),
            dependents: vec!["a".into(), "b".into()],
        };
        assert_eq!(refusal_error(&deps).message(), "snapshot pg@s1 has dependent clones: a, b");
    }

    #[test]
    fn diff_total_adds_lengths() {
        let dto = diff_dto([
            RangeDto { offset: 0, length: 4096 },
            RangeDto { offset: 1 << 20, length: 65536 },
        ]);
        assert_eq!(dto.total_bytes, 69632);
        assert_eq!(dto.ranges.len(), 2);
    }
}
