//! One handler per admin route: decode the request, run the catalog call on
//! the blocking pool, pick the success status. Errors are `ApiError`s.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use time::format_description::well_known::Rfc3339;
use tracing::{error, info};

use super::catalog::Catalog;
use super::error::ApiError;
use super::extract::{JsonBody, PathArgs, QueryArgs};
use super::routes::AdminState;
use super::schedules::Schedules;
use super::types::{
    CreateCloneRequest, CreateSnapshotRequest, CreateVolumeRequest, DiffDto, DiffQuery, ExportDto,
    GcDto, PromoteDto, ResizeVolumeRequest, RollbackRequest, ScheduleDto, SetScheduleRequest,
    SnapshotDto, SnapshotQuery, TickDto, TickRequest, VolumeDto,
};

type ApiResult<T> = Result<T, ApiError>;
type Created<T> = (StatusCode, Json<T>);

/// Runs a catalog call on tokio's blocking pool: the store blocks on disk and
/// on sled, which must never happen on a runtime worker.
async fn blocking<T: Send + 'static>(
    state: &AdminState,
    call: impl FnOnce(&dyn Catalog) -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    let catalog = state.catalog.clone();
    tokio::task::spawn_blocking(move || call(&*catalog)).await.unwrap_or_else(|e| {
        error!(error = %e, "admin store call panicked or was cancelled");
        Err(ApiError::internal("internal error in the admin task"))
    })
}

pub(crate) async fn healthz() -> &'static str {
    "ok"
}

pub(crate) async fn list_volumes(
    State(state): State<AdminState>,
) -> ApiResult<Json<Vec<VolumeDto>>> {
    blocking(&state, |c| c.volumes()).await.map(Json)
}

pub(crate) async fn create_volume(
    State(state): State<AdminState>,
    JsonBody(req): JsonBody<CreateVolumeRequest>,
) -> ApiResult<Created<VolumeDto>> {
    let volume =
        blocking(&state, move |c| c.create_volume(&req.name, req.size, req.chunk_size)).await?;
    info!(volume = %volume.name, size = volume.size, chunk_size = volume.chunk_size, "volume created");
    Ok((StatusCode::CREATED, Json(volume)))
}

pub(crate) async fn get_volume(
    State(state): State<AdminState>,
    PathArgs(name): PathArgs<String>,
) -> ApiResult<Json<VolumeDto>> {
    blocking(&state, move |c| c.volume(&name)).await.map(Json)
}

pub(crate) async fn resize_volume(
    State(state): State<AdminState>,
    PathArgs(name): PathArgs<String>,
    JsonBody(req): JsonBody<ResizeVolumeRequest>,
) -> ApiResult<Json<VolumeDto>> {
    let volume = blocking(&state, move |c| c.resize_volume(&name, req.size)).await?;
    info!(volume = %volume.name, size = volume.size, "volume resized");
    Ok(Json(volume))
}

pub(crate) async fn delete_volume(
    State(state): State<AdminState>,
    PathArgs(name): PathArgs<String>,
) -> ApiResult<StatusCode> {
    let deleted = name.clone();
    blocking(&state, move |c| c.delete_volume(&name)).await?;
    info!(volume = %deleted, "volume deleted");
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn create_snapshot(
    State(state): State<AdminState>,
    PathArgs(volume): PathArgs<String>,
    JsonBody(req): JsonBody<CreateSnapshotRequest>,
) -> ApiResult<Created<SnapshotDto>> {
    let snapshot =
        blocking(&state, move |c| c.create_snapshot(&volume, req.name.as_deref())).await?;
    info!(snapshot = %snapshot.export, "snapshot created");
    Ok((StatusCode::CREATED, Json(snapshot)))
}

pub(crate) async fn list_snapshots(
    State(state): State<AdminState>,
    QueryArgs(query): QueryArgs<SnapshotQuery>,
) -> ApiResult<Json<Vec<SnapshotDto>>> {
    blocking(&state, move |c| c.snapshots(query.volume.as_deref())).await.map(Json)
}

pub(crate) async fn delete_snapshot(
    State(state): State<AdminState>,
    PathArgs((volume, snap)): PathArgs<(String, String)>,
) -> ApiResult<StatusCode> {
    let export = format!("{volume}@{snap}");
    blocking(&state, move |c| c.delete_snapshot(&volume, &snap)).await?;
    info!(snapshot = %export, "snapshot deleted");
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn hold_snapshot(
    State(state): State<AdminState>,
    PathArgs((volume, snap)): PathArgs<(String, String)>,
) -> ApiResult<Json<SnapshotDto>> {
    set_hold(&state, volume, snap, true).await
}

pub(crate) async fn release_snapshot(
    State(state): State<AdminState>,
    PathArgs((volume, snap)): PathArgs<(String, String)>,
) -> ApiResult<Json<SnapshotDto>> {
    set_hold(&state, volume, snap, false).await
}

async fn set_hold(
    state: &AdminState,
    volume: String,
    snap: String,
    held: bool,
) -> ApiResult<Json<SnapshotDto>> {
    let snapshot = blocking(state, move |c| c.set_snapshot_hold(&volume, &snap, held)).await?;
    info!(snapshot = %snapshot.export, held, "snapshot hold changed");
    Ok(Json(snapshot))
}

pub(crate) async fn create_clone(
    State(state): State<AdminState>,
    JsonBody(req): JsonBody<CreateCloneRequest>,
) -> ApiResult<Created<VolumeDto>> {
    let clone = blocking(&state, move |c| c.create_clone(&req.source, &req.name)).await?;
    info!(clone = %clone.name, origin = ?clone.origin, "clone created");
    Ok((StatusCode::CREATED, Json(clone)))
}

pub(crate) async fn promote(
    State(state): State<AdminState>,
    PathArgs(clone): PathArgs<String>,
) -> ApiResult<Json<PromoteDto>> {
    let promoted_from = clone.clone();
    let promoted = blocking(&state, move |c| c.promote(&clone)).await?;
    info!(
        clone = %promoted_from,
        volume = %promoted.volume,
        rollback = %promoted.rollback_name,
        "clone promoted"
    );
    Ok(Json(promoted))
}

pub(crate) async fn rollback(
    State(state): State<AdminState>,
    PathArgs(volume): PathArgs<String>,
    JsonBody(req): JsonBody<RollbackRequest>,
) -> ApiResult<StatusCode> {
    let export = format!("{volume}@{}", req.snapshot);
    blocking(&state, move |c| c.rollback(&volume, &req.snapshot)).await?;
    info!(snapshot = %export, "volume rolled back");
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn flatten(
    State(state): State<AdminState>,
    PathArgs(name): PathArgs<String>,
) -> ApiResult<Json<VolumeDto>> {
    let volume = blocking(&state, move |c| c.flatten(&name)).await?;
    info!(volume = %volume.name, "clone flattened");
    Ok(Json(volume))
}

pub(crate) async fn diff(
    State(state): State<AdminState>,
    QueryArgs(query): QueryArgs<DiffQuery>,
) -> ApiResult<Json<DiffDto>> {
    blocking(&state, move |c| c.diff(&query.from, &query.to)).await.map(Json)
}

pub(crate) async fn list_exports(
    State(state): State<AdminState>,
) -> ApiResult<Json<Vec<ExportDto>>> {
    blocking(&state, |c| c.exports()).await.map(Json)
}

pub(crate) async fn gc(State(state): State<AdminState>) -> ApiResult<Json<GcDto>> {
    let report = blocking(&state, |c| c.gc()).await?;
    info!(chunks_freed = report.chunks_freed, bytes_freed = report.bytes_freed, "gc pass done");
    Ok(Json(report))
}

/// Runs a scheduler call on the blocking pool (it reads the store); 503 when
/// the server runs without a scheduler.
async fn scheduling<T: Send + 'static>(
    state: &AdminState,
    call: impl FnOnce(&dyn Schedules) -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    let Some(schedules) = state.schedules.clone() else {
        return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "no snapshot scheduler"));
    };
    tokio::task::spawn_blocking(move || call(&*schedules)).await.unwrap_or_else(|e| {
        error!(error = %e, "admin schedule call panicked or was cancelled");
        Err(ApiError::internal("internal error in the admin task"))
    })
}

fn now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

pub(crate) async fn list_schedules(
    State(state): State<AdminState>,
) -> ApiResult<Json<Vec<ScheduleDto>>> {
    scheduling(&state, |s| Ok(s.list(now()))).await.map(Json)
}

pub(crate) async fn get_schedule(
    State(state): State<AdminState>,
    PathArgs(volume): PathArgs<String>,
) -> ApiResult<Json<ScheduleDto>> {
    scheduling(&state, move |s| s.get(&volume, now())).await.map(Json)
}

pub(crate) async fn set_schedule(
    State(state): State<AdminState>,
    PathArgs(volume): PathArgs<String>,
    JsonBody(req): JsonBody<SetScheduleRequest>,
) -> ApiResult<Json<ScheduleDto>> {
    scheduling(&state, move |s| s.set(&volume, req, now())).await.map(Json)
}

pub(crate) async fn reset_schedule(
    State(state): State<AdminState>,
    PathArgs(volume): PathArgs<String>,
) -> ApiResult<Json<ScheduleDto>> {
    scheduling(&state, move |s| s.reset(&volume, now())).await.map(Json)
}

/// Runs the policy for every volume now, or at the given `now` when the
/// server allows test hooks (so tests need not wait for the hour).
pub(crate) async fn tick_schedule(
    State(state): State<AdminState>,
    JsonBody(req): JsonBody<TickRequest>,
) -> ApiResult<Json<TickDto>> {
    let at = match req.now {
        None => now(),
        Some(_) if !state.test_hooks => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "a tick at a given time needs a server started with --enable-test-hooks",
            ));
        }
        Some(text) => time::OffsetDateTime::parse(&text, &Rfc3339)
            .map_err(|e| ApiError::bad_request(format!("invalid time {text:?}: {e}")))?,
    };
    let report = scheduling(&state, move |s| Ok(s.tick(at))).await?;
    let taken = report.volumes.iter().filter(|v| v.taken.is_some()).count();
    let pruned: usize = report.volumes.iter().map(|v| v.pruned.len()).sum();
    info!(now = %report.now, taken, pruned, "schedule tick requested");
    Ok(Json(report))
}
