//! Handler tests: the real router over an in-memory `Catalog`, driven with
//! `tower::ServiceExt::oneshot` (no sockets, no disk).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::catalog::diff_dto;
use super::types::{
    DiffDto, ExportDto, GcDto, PromoteDto, RangeDto, SnapshotDto, SnapshotKindDto, VolumeDto,
};
use super::{AdminState, ApiError, Catalog, router};

mod schedules;

const TOKEN: &str = "test-token";
const CREATED: &str = "2026-11-24T13:05:12Z";

/// A catalog that keeps volumes and snapshots in maps and refuses what the
/// store would refuse, with the statuses `catalog::refusal_error` gives.
#[derive(Default)]
struct FakeCatalog {
    state: Mutex<Fake>,
}

#[derive(Default)]
struct Fake {
    volumes: BTreeMap<String, VolumeDto>,
    snapshots: BTreeMap<(String, String), SnapshotDto>,
}

impl Fake {
    fn volume(&self, name: &str) -> Result<&VolumeDto, ApiError> {
        self.volumes
            .get(name)
            .ok_or_else(|| ApiError::not_found(format!("volume {name} not found")))
    }

    fn snapshot_mut(&mut self, volume: &str, snap: &str) -> Result<&mut SnapshotDto, ApiError> {
        self.snapshots
            .get_mut(&(volume.to_owned(), snap.to_owned()))
            .ok_or_else(|| ApiError::not_found(format!("snapshot {volume}@{snap} not found")))
    }

    fn add_volume(
        &mut self,
        name: &str,
        size: u64,
        chunk: u32,
        origin: Option<String>,
    ) -> Result<VolumeDto, ApiError> {
        if name == "boom" {
            return Err(ApiError::internal("i/o error on volume boom"));
        }
        if name.is_empty() || name.contains('@') {
            return Err(ApiError::bad_request(format!("invalid name {name:?}")));
        }
        if self.volumes.contains_key(name) {
            return Err(ApiError::conflict(format!("name {name} is taken")));
        }
        let dto = VolumeDto {
            name: name.to_owned(),
            size,
            chunk_size: chunk,
            origin,
            written_bytes: 0,
            snapshot_count: 0,
            created: CREATED.to_owned(),
        };
        self.volumes.insert(name.to_owned(), dto.clone());
        Ok(dto)
    }

    fn add_snapshot(&mut self, volume: &str, snap: Option<&str>) -> Result<SnapshotDto, ApiError> {
        let count = self.volume(volume)?.snapshot_count;
        let name = snap.map_or_else(|| format!("s{}", count + 1), str::to_owned);
        let key = (volume.to_owned(), name.clone());
        if self.snapshots.contains_key(&key) {
            return Err(ApiError::conflict(format!("snapshot {volume}@{name} exists")));
        }
        let dto = SnapshotDto {
            export: format!("{volume}@{name}"),
            volume: volume.to_owned(),
            name,
            created: CREATED.to_owned(),
            kind: SnapshotKindDto::Manual,
            held: false,
            clones: vec![],
            written_since_previous: 0,
        };
        self.snapshots.insert(key, dto.clone());
        if let Some(v) = self.volumes.get_mut(volume) {
            v.snapshot_count += 1;
        }
        Ok(dto)
    }
}

impl Catalog for FakeCatalog {
    fn volumes(&self) -> Result<Vec<VolumeDto>, ApiError> {
        Ok(self.state.lock().unwrap().volumes.values().cloned().collect())
    }

    fn volume(&self, name: &str) -> Result<VolumeDto, ApiError> {
        self.state.lock().unwrap().volume(name).cloned()
    }

    fn create_volume(
        &self,
        name: &str,
        size: u64,
        chunk_size: Option<u32>,
    ) -> Result<VolumeDto, ApiError> {
        if size == 0 {
            return Err(ApiError::bad_request("invalid size 0"));
        }
        self.state.lock().unwrap().add_volume(name, size, chunk_size.unwrap_or(65536), None)
    }

    fn resize_volume(&self, name: &str, size: u64) -> Result<VolumeDto, ApiError> {
        let mut fake = self.state.lock().unwrap();
        fake.volume(name)?;
        let v = fake.volumes.get_mut(name).unwrap();
        v.size = size;
        Ok(v.clone())
    }

    fn delete_volume(&self, name: &str) -> Result<(), ApiError> {
        let mut fake = self.state.lock().unwrap();
        fake.volume(name)?;
        fake.volumes.remove(name);
        fake.snapshots.retain(|(v, _), _| v != name);
        Ok(())
    }

    fn create_snapshot(
        &self,
        volume: &str,
        snapshot: Option<&str>,
    ) -> Result<SnapshotDto, ApiError> {
        self.state.lock().unwrap().add_snapshot(volume, snapshot)
    }

    fn snapshots(&self, volume: Option<&str>) -> Result<Vec<SnapshotDto>, ApiError> {
        let fake = self.state.lock().unwrap();
        if let Some(v) = volume {
            fake.volume(v)?;
        }
        Ok(fake
            .snapshots
            .values()
            .filter(|s| volume.is_none_or(|v| s.volume == v))
            .cloned()
            .collect())
    }

    fn delete_snapshot(&self, volume: &str, snapshot: &str) -> Result<(), ApiError> {
        let mut fake = self.state.lock().unwrap();
        let snap = fake.snapshot_mut(volume, snapshot)?;
        if !snap.clones.is_empty() {
            return Err(ApiError::conflict(format!(
                "snapshot {volume}@{snapshot} has clones: {}",
                snap.clones.join(", ")
            )));
        }
        fake.snapshots.remove(&(volume.to_owned(), snapshot.to_owned()));
        Ok(())
    }

    fn set_snapshot_hold(
        &self,
        volume: &str,
        snapshot: &str,
        held: bool,
    ) -> Result<SnapshotDto, ApiError> {
        let mut fake = self.state.lock().unwrap();
        let snap = fake.snapshot_mut(volume, snapshot)?;
        snap.held = held;
        Ok(snap.clone())
    }

    fn create_clone(&self, source: &str, name: &str) -> Result<VolumeDto, ApiError> {
        let mut fake = self.state.lock().unwrap();
        let (volume, snap) = match source.split_once('@') {
            Some((v, s)) => (v.to_owned(), s.to_owned()),
            None => (source.to_owned(), fake.add_snapshot(source, None)?.name),
        };
        let chunk = fake.volume(&volume)?.chunk_size;
        let size = fake.volume(&volume)?.size;
        fake.snapshot_mut(&volume, &snap)?;
        let clone = fake.add_volume(name, size, chunk, Some(format!("{volume}@{snap}")))?;
        fake.snapshot_mut(&volume, &snap)?.clones.push(name.to_owned());
        Ok(clone)
    }

    fn promote(&self, clone: &str) -> Result<PromoteDto, ApiError> {
        let fake = self.state.lock().unwrap();
        let origin = fake.volume(clone)?.origin.clone();
        let Some((volume, _)) = origin.as_deref().and_then(|o| o.split_once('@')) else {
            return Err(ApiError::conflict(format!("{clone} is not a clone")));
        };
        Ok(PromoteDto {
            volume: volume.to_owned(),
            rollback_name: format!("{volume}-pre-promote-20261124T130512Z"),
        })
    }

    fn rollback(&self, volume: &str, snapshot: &str) -> Result<(), ApiError> {
        self.state.lock().unwrap().snapshot_mut(volume, snapshot).map(drop)
    }

    fn flatten(&self, name: &str) -> Result<VolumeDto, ApiError> {
        let mut fake = self.state.lock().unwrap();
        fake.volume(name)?;
        let v = fake.volumes.get_mut(name).unwrap();
        v.origin = None;
        Ok(v.clone())
    }

    fn diff(&self, from: &str, _to: &str) -> Result<DiffDto, ApiError> {
        if !from.contains('@') {
            return Err(ApiError::bad_request("from must be a snapshot"));
        }
        Ok(diff_dto([
            RangeDto { offset: 0, length: 65536 },
            RangeDto { offset: 1 << 30, length: 131072 },
        ]))
    }

    fn exports(&self) -> Result<Vec<ExportDto>, ApiError> {
        let fake = self.state.lock().unwrap();
        let volumes = fake.volumes.values().map(|v| ExportDto {
            name: v.name.clone(),
            description: "volume".into(),
            size: v.size,
            read_only: false,
        });
        let snaps = fake.snapshots.values().map(|s| ExportDto {
            name: s.export.clone(),
            description: "snapshot".into(),
            size: fake.volumes[&s.volume].size,
            read_only: true,
        });
        Ok(volumes.chain(snaps).collect())
    }

    fn gc(&self) -> Result<GcDto, ApiError> {
        Ok(GcDto { chunks_freed: 3, bytes_freed: 3 * 65536 })
    }
}

fn app() -> Router {
    router(AdminState::with_catalog(Arc::new(FakeCatalog::default()), TOKEN.into()))
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    text: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("{e}: {:?}", self.text))
    }

    fn error(&self) -> String {
        self.json()["error"].as_str().expect("error body").to_owned()
    }
}

async fn send(
    app: &Router,
    method: &str,
    uri: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Reply {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let body = match body {
        Some(v) => Body::from(v.to_string()),
        None => Body::empty(),
    };
    let response = app.clone().oneshot(request.body(body).unwrap()).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    Reply { status, headers, text: String::from_utf8(bytes.to_vec()).unwrap() }
}

async fn call(app: &Router, method: &str, uri: &str, body: Option<Value>) -> Reply {
    send(app, method, uri, Some(TOKEN), body).await
}

#[tokio::test]
async fn healthz_needs_no_token() {
    let reply = send(&app(), "GET", "/healthz", None, None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.text, "ok");
}

#[tokio::test]
async fn v1_requires_the_bearer_token() {
    let app = app();
    let missing = send(&app, "GET", "/v1/volumes", None, None).await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
    assert_eq!(missing.json(), json!({"error": "missing bearer token"}));
    assert_eq!(missing.headers[header::WWW_AUTHENTICATE], "Bearer");

    let wrong = send(&app, "GET", "/v1/volumes", Some("nope"), None).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.error(), "invalid bearer token");

    // Mutations too, and before the body is looked at.
    let post = send(&app, "POST", "/v1/gc", None, None).await;
    assert_eq!(post.status, StatusCode::UNAUTHORIZED);
    let create =
        send(&app, "POST", "/v1/volumes", Some("nope"), Some(json!({"name": "a", "size": 1})))
            .await;
    assert_eq!(create.status, StatusCode::UNAUTHORIZED);
    assert_eq!(call(&app, "GET", "/v1/volumes", None).await.json(), json!([]));
}

#[tokio::test]
async fn volume_lifecycle() {
    let app = app();
    let created =
        call(&app, "POST", "/v1/volumes", Some(json!({"name": "pg", "size": 10u64 << 30}))).await;
    assert_eq!(created.status, StatusCode::CREATED);
    assert_eq!(
        created.json(),
        json!({"name": "pg", "size": 10u64 << 30, "chunk_size": 65536, "origin": null,
               "written_bytes": 0, "snapshot_count": 0, "created": CREATED})
    );

    let small = json!({"name": "small", "size": 4096, "chunk_size": 4096});
    assert_eq!(call(&app, "POST", "/v1/volumes", Some(small)).await.json()["chunk_size"], 4096);

    let again = call(&app, "POST", "/v1/volumes", Some(json!({"name": "pg", "size": 1}))).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.error(), "name pg is taken");

    let list = call(&app, "GET", "/v1/volumes", None).await.json();
    assert_eq!(list.as_array().unwrap().len(), 2);

    let got = call(&app, "GET", "/v1/volumes/pg", None).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.json()["size"], 10u64 << 30);

    let resized = call(&app, "PATCH", "/v1/volumes/pg", Some(json!({"size": 20u64 << 30}))).await;
    assert_eq!(resized.status, StatusCode::OK);
    assert_eq!(resized.json()["size"], 20u64 << 30);

    let deleted = call(&app, "DELETE", "/v1/volumes/pg", None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert!(deleted.text.is_empty());

    let gone = call(&app, "GET", "/v1/volumes/pg", None).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert_eq!(gone.error(), "volume pg not found");
    assert_eq!(call(&app, "DELETE", "/v1/volumes/pg", None).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bad_requests_get_json_errors() {
    let app = app();
    let cases = [
        ("POST", "/v1/volumes", Some(json!({"size": 1}))),
        ("POST", "/v1/volumes", Some(json!({"name": "a", "size": -1}))),
        ("POST", "/v1/volumes", Some(json!({"name": "a", "size": 1, "chunksize": 4096}))),
        ("POST", "/v1/volumes", Some(json!({"name": "a@b", "size": 1}))),
        ("POST", "/v1/volumes", Some(json!({"name": "a", "size": 0}))),
        ("PATCH", "/v1/volumes/a", None),
        ("GET", "/v1/diff?from=a@1", None),
    ];
    for (method, uri, body) in cases {
        let reply = call(&app, method, uri, body.clone()).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{method} {uri} {body:?}: {}",
            reply.text
        );
        assert!(!reply.error().is_empty());
    }
    let not_json = send(&app, "POST", "/v1/clones", Some(TOKEN), None).await;
    assert_eq!(not_json.status, StatusCode::BAD_REQUEST);
    assert!(not_json.error().contains("missing field `source`"), "{}", not_json.text);

    let mut request = Request::post("/v1/volumes")
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .body(Body::from("{not json"))
        .unwrap();
    request.headers_mut().insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
    let response = app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn unknown_routes_and_methods_get_json_errors() {
    let app = app();
    let reply = call(&app, "GET", "/v1/nothing", None).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.error(), "no such route");
    let reply = call(&app, "PUT", "/v1/volumes", None).await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(reply.error(), "method not allowed");
}

#[tokio::test]
async fn store_failures_are_500_with_one_line() {
    let reply = call(&app(), "POST", "/v1/volumes", Some(json!({"name": "boom", "size": 1}))).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(reply.error(), "i/o error on volume boom");
}

#[tokio::test]
async fn snapshot_lifecycle() {
    let app = app();
    call(&app, "POST", "/v1/volumes", Some(json!({"name": "pg", "size": 1 << 20}))).await;

    // No body at all: the store names the snapshot.
    let auto = call(&app, "POST", "/v1/volumes/pg/snapshots", None).await;
    assert_eq!(auto.status, StatusCode::CREATED, "{}", auto.text);
    assert_eq!(auto.json()["export"], "pg@s1");
    assert_eq!(auto.json()["kind"], "manual");

    let named =
        call(&app, "POST", "/v1/volumes/pg/snapshots", Some(json!({"name": "2026-11-24T13:00Z"})))
            .await;
    assert_eq!(named.status, StatusCode::CREATED);
    assert_eq!(named.json()["export"], "pg@2026-11-24T13:00Z");

    let missing = call(&app, "POST", "/v1/volumes/nope/snapshots", Some(json!({}))).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);

    let all = call(&app, "GET", "/v1/snapshots", None).await.json();
    assert_eq!(all.as_array().unwrap().len(), 2);
    let of_pg = call(&app, "GET", "/v1/snapshots?volume=pg", None).await.json();
    assert_eq!(of_pg.as_array().unwrap().len(), 2);
    assert_eq!(
        call(&app, "GET", "/v1/snapshots?volume=nope", None).await.status,
        StatusCode::NOT_FOUND
    );

    // Percent-encoded path segments reach the catalog decoded.
    let held = call(&app, "POST", "/v1/volumes/pg/snapshots/2026-11-24T13%3A00Z/hold", None).await;
    assert_eq!(held.status, StatusCode::OK, "{}", held.text);
    assert_eq!(held.json()["held"], true);
    let released =
        call(&app, "POST", "/v1/volumes/pg/snapshots/2026-11-24T13:00Z/release", None).await;
    assert_eq!(released.json()["held"], false);

    let deleted = call(&app, "DELETE", "/v1/volumes/pg/snapshots/s1", None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let again = call(&app, "DELETE", "/v1/volumes/pg/snapshots/s1", None).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    assert_eq!(again.error(), "snapshot pg@s1 not found");
}

#[tokio::test]
async fn clone_promote_rollback_flatten() {
    let app = app();
    call(&app, "POST", "/v1/volumes", Some(json!({"name": "pg", "size": 1 << 20}))).await;
    call(&app, "POST", "/v1/volumes/pg/snapshots", Some(json!({"name": "base"}))).await;

    let clone =
        call(&app, "POST", "/v1/clones", Some(json!({"source": "pg@base", "name": "test1"}))).await;
    assert_eq!(clone.status, StatusCode::CREATED, "{}", clone.text);
    assert_eq!(clone.json()["origin"], "pg@base");
    let from_live =
        call(&app, "POST", "/v1/clones", Some(json!({"source": "pg", "name": "test2"}))).await;
    assert_eq!(from_live.json()["origin"], "pg@s2");
    let taken =
        call(&app, "POST", "/v1/clones", Some(json!({"source": "pg@base", "name": "test1"}))).await;
    assert_eq!(taken.status, StatusCode::CONFLICT);

    let blocked = call(&app, "DELETE", "/v1/volumes/pg/snapshots/base", None).await;
    assert_eq!(blocked.status, StatusCode::CONFLICT);
    assert_eq!(blocked.error(), "snapshot pg@base has clones: test1");

    let promoted = call(&app, "POST", "/v1/volumes/test1/promote", None).await;
    assert_eq!(promoted.status, StatusCode::OK);
    assert_eq!(
        promoted.json(),
        json!({"volume": "pg", "rollback_name": "pg-pre-promote-20261124T130512Z"})
    );
    let not_clone = call(&app, "POST", "/v1/volumes/pg/promote", None).await;
    assert_eq!(not_clone.status, StatusCode::CONFLICT);

    let rolled =
        call(&app, "POST", "/v1/volumes/pg/rollback", Some(json!({"snapshot": "base"}))).await;
    assert_eq!(rolled.status, StatusCode::NO_CONTENT, "{}", rolled.text);
    let no_snap =
        call(&app, "POST", "/v1/volumes/pg/rollback", Some(json!({"snapshot": "zzz"}))).await;
    assert_eq!(no_snap.status, StatusCode::NOT_FOUND);

    let flat = call(&app, "POST", "/v1/volumes/test2/flatten", None).await;
    assert_eq!(flat.status, StatusCode::OK);
    assert_eq!(flat.json()["origin"], Value::Null);
}

#[tokio::test]
async fn diff_exports_and_gc() {
    let app = app();
    call(&app, "POST", "/v1/volumes", Some(json!({"name": "pg", "size": 1 << 20}))).await;
    call(&app, "POST", "/v1/volumes/pg/snapshots", None).await;

    let diff = call(&app, "GET", "/v1/diff?from=pg%40s1&to=pg", None).await;
    assert_eq!(diff.status, StatusCode::OK, "{}", diff.text);
    assert_eq!(
        diff.json(),
        json!({"ranges": [{"offset": 0, "length": 65536}, {"offset": 1u64 << 30, "length": 131072}],
               "total_bytes": 196608})
    );

    let exports = call(&app, "GET", "/v1/exports", None).await.json();
    assert_eq!(
        exports,
        json!([{"name": "pg", "description": "volume", "size": 1 << 20, "read_only": false},
               {"name": "pg@s1", "description": "snapshot", "size": 1 << 20, "read_only": true}])
    );

    let gc = call(&app, "POST", "/v1/gc", None).await;
    assert_eq!(gc.json(), json!({"chunks_freed": 3, "bytes_freed": 196608}));
}

#[tokio::test]
async fn serve_stops_on_shutdown() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(super::serve(listener, app(), async move {
        let _ = stopped.await;
    }));
    stop.send(()).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(5), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
