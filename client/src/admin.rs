//! A blocking client for the clonebd admin API (HTTP/JSON, bearer token),
//! used by the `clonebd` CLI and by end-to-end tests. Its DTOs mirror the
//! server's `admin::types`; the golden tests on both sides pin the same JSON.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use ureq::http::{Method, Request, Response, StatusCode, header};

mod schedule;

pub use schedule::{PolicyDto, ScheduleDto, SchedulePatch, TickDto, TickFailureDto, VolumeTickDto};

/// The admin API's default address.
pub const DEFAULT_ADMIN_URL: &str = "http://127.0.0.1:10810";

/// How long to wait for a TCP connection to the admin API.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Bytes read at most from one response (a diff of a big volume is the largest).
const MAX_RESPONSE_BYTES: u64 = 256 << 20;

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
    /// Bytes this volume wrote itself.
    pub written_bytes: u64,
    /// Number of snapshots of this volume.
    pub snapshot_count: usize,
    /// Creation time, RFC 3339 UTC.
    pub created: String,
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
    /// `manual` or `scheduled` (kept as text so a newer server's kinds still parse).
    pub kind: String,
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

/// One NBD export.
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

#[derive(Deserialize)]
struct ErrorBody {
    error: String,
}

/// A failed admin call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    /// The server answered 401: no token, or the wrong one.
    #[error("unauthorized: missing or wrong admin token")]
    Unauthorized,
    /// The server refused or failed the request; `message` is its one-line error.
    #[error("{message}")]
    Api {
        /// HTTP status code.
        status: u16,
        /// The server's `error` string.
        message: String,
    },
    /// The request did not complete: no connection, timeout, or an unreadable answer.
    #[error("request to the admin api at {url} failed")]
    Transport {
        /// The URL called.
        url: String,
        /// What went wrong.
        #[source]
        source: Box<ureq::Error>,
    },
}

impl AdminError {
    /// The HTTP status, if the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            AdminError::Unauthorized => Some(401),
            AdminError::Api { status, .. } => Some(*status),
            AdminError::Transport { .. } => None,
        }
    }
}

/// A blocking admin API client. Cheap to clone; connections are pooled.
#[derive(Clone)]
pub struct AdminClient {
    base_url: String,
    token: Option<String>,
    agent: ureq::Agent,
}

impl std::fmt::Debug for AdminClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminClient")
            .field("base_url", &self.base_url)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

impl AdminClient {
    /// A client for the API at `base_url` (e.g. `http://127.0.0.1:10810`),
    /// sending `token` as a bearer token when given.
    pub fn new(base_url: impl Into<String>, token: Option<String>) -> Self {
        let mut base_url = base_url.into();
        while base_url.ends_with('/') {
            base_url.pop();
        }
        let config = ureq::Agent::config_builder()
            // Error statuses carry the server's message in the body: read it.
            .http_status_as_error(false)
            // The admin API is reached directly, usually on loopback; an
            // http_proxy meant for the internet must not capture it.
            .proxy(None)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .build();
        Self { base_url, token, agent: config.into() }
    }

    /// The base URL calls go to.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// `GET /healthz`: succeeds if the server answers.
    pub fn health(&self) -> Result<(), AdminError> {
        self.call_unit(Method::GET, "/healthz".into(), None)
    }

    /// All volumes and clones.
    pub fn volumes(&self) -> Result<Vec<VolumeDto>, AdminError> {
        self.call(Method::GET, "/v1/volumes".into(), None)
    }

    /// One volume or clone.
    pub fn volume(&self, name: &str) -> Result<VolumeDto, AdminError> {
        self.call(Method::GET, format!("/v1/volumes/{}", encode(name)), None)
    }

    /// Creates a thin volume; `chunk_size` defaults to the server's (64 KiB).
    pub fn create_volume(
        &self,
        name: &str,
        size: u64,
        chunk_size: Option<u32>,
    ) -> Result<VolumeDto, AdminError> {
        let mut body = serde_json::json!({ "name": name, "size": size });
        if let Some(chunk_size) = chunk_size {
            body["chunk_size"] = chunk_size.into();
        }
        self.call(Method::POST, "/v1/volumes".into(), Some(body))
    }

    /// Grows or shrinks a volume.
    pub fn resize_volume(&self, name: &str, size: u64) -> Result<VolumeDto, AdminError> {
        let body = serde_json::json!({ "size": size });
        self.call(Method::PATCH, format!("/v1/volumes/{}", encode(name)), Some(body))
    }

    /// Deletes a volume or clone.
    pub fn delete_volume(&self, name: &str) -> Result<(), AdminError> {
        self.call_unit(Method::DELETE, format!("/v1/volumes/{}", encode(name)), None)
    }

    /// Takes a manual snapshot; the server names it from the time if `name` is `None`.
    pub fn create_snapshot(
        &self,
        volume: &str,
        name: Option<&str>,
    ) -> Result<SnapshotDto, AdminError> {
        let body = serde_json::json!({ "name": name });
        self.call(Method::POST, format!("/v1/volumes/{}/snapshots", encode(volume)), Some(body))
    }

    /// Snapshots of one volume, or of all volumes.
    pub fn snapshots(&self, volume: Option<&str>) -> Result<Vec<SnapshotDto>, AdminError> {
        let path = match volume {
            Some(v) => format!("/v1/snapshots?volume={}", encode(v)),
            None => "/v1/snapshots".into(),
        };
        self.call(Method::GET, path, None)
    }

    /// Deletes a snapshot.
    pub fn delete_snapshot(&self, volume: &str, snapshot: &str) -> Result<(), AdminError> {
        self.call_unit(Method::DELETE, snapshot_path(volume, snapshot, ""), None)
    }

    /// Holds a snapshot (retention never deletes it).
    pub fn hold_snapshot(&self, volume: &str, snapshot: &str) -> Result<SnapshotDto, AdminError> {
        self.call(Method::POST, snapshot_path(volume, snapshot, "/hold"), None)
    }

    /// Releases a held snapshot.
    pub fn release_snapshot(
        &self,
        volume: &str,
        snapshot: &str,
    ) -> Result<SnapshotDto, AdminError> {
        self.call(Method::POST, snapshot_path(volume, snapshot, "/release"), None)
    }

    /// Clones `NAME@SNAP`, or `NAME` (through a new snapshot), as `name`.
    pub fn create_clone(&self, source: &str, name: &str) -> Result<VolumeDto, AdminError> {
        let body = serde_json::json!({ "source": source, "name": name });
        self.call(Method::POST, "/v1/clones".into(), Some(body))
    }

    /// Promotes a clone to be the volume it was cloned from.
    pub fn promote(&self, clone: &str) -> Result<PromoteDto, AdminError> {
        self.call(Method::POST, format!("/v1/volumes/{}/promote", encode(clone)), None)
    }

    /// Rolls `volume` back to its snapshot `snapshot`.
    pub fn rollback(&self, volume: &str, snapshot: &str) -> Result<(), AdminError> {
        let body = serde_json::json!({ "snapshot": snapshot });
        self.call_unit(Method::POST, format!("/v1/volumes/{}/rollback", encode(volume)), Some(body))
    }

    /// Makes a clone independent of its origin.
    pub fn flatten(&self, name: &str) -> Result<VolumeDto, AdminError> {
        self.call(Method::POST, format!("/v1/volumes/{}/flatten", encode(name)), None)
    }

    /// Changed ranges from `from` (`NAME@SNAP`) to `to` (`NAME@SNAP` or `NAME`).
    pub fn diff(&self, from: &str, to: &str) -> Result<DiffDto, AdminError> {
        self.call(Method::GET, format!("/v1/diff?from={}&to={}", encode(from), encode(to)), None)
    }

    /// Every export a client can open now.
    pub fn exports(&self) -> Result<Vec<ExportDto>, AdminError> {
        self.call(Method::GET, "/v1/exports".into(), None)
    }

    /// Runs garbage collection now.
    pub fn gc(&self) -> Result<GcDto, AdminError> {
        self.call(Method::POST, "/v1/gc".into(), None)
    }

    /// Every volume's snapshot schedule.
    pub fn schedules(&self) -> Result<Vec<ScheduleDto>, AdminError> {
        self.call(Method::GET, "/v1/schedules".into(), None)
    }

    /// One volume's snapshot schedule.
    pub fn schedule(&self, volume: &str) -> Result<ScheduleDto, AdminError> {
        self.call(Method::GET, schedule_path(volume), None)
    }

    /// Changes the fields `patch` sets in a volume's policy.
    pub fn set_schedule(
        &self,
        volume: &str,
        patch: &SchedulePatch,
    ) -> Result<ScheduleDto, AdminError> {
        let body = serde_json::to_value(patch).unwrap_or_default();
        self.call(Method::PUT, schedule_path(volume), Some(body))
    }

    /// Drops what the API set: the config file and defaults apply again.
    pub fn reset_schedule(&self, volume: &str) -> Result<ScheduleDto, AdminError> {
        self.call(Method::DELETE, schedule_path(volume), None)
    }

    /// Runs the snapshot policy for every volume now, or at `now` (RFC 3339;
    /// only a server started with `--enable-test-hooks` accepts it).
    pub fn tick(&self, now: Option<&str>) -> Result<TickDto, AdminError> {
        let body = serde_json::json!({ "now": now });
        self.call(Method::POST, "/v1/schedule/tick".into(), Some(body))
    }

    fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: String,
        body: Option<serde_json::Value>,
    ) -> Result<T, AdminError> {
        let url = format!("{}{path}", self.base_url);
        let mut response = self.send(method, &url, body)?;
        response
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE_BYTES)
            .read_json()
            .map_err(|e| AdminError::Transport { url, source: Box::new(e) })
    }

    fn call_unit(
        &self,
        method: Method,
        path: String,
        body: Option<serde_json::Value>,
    ) -> Result<(), AdminError> {
        let url = format!("{}{path}", self.base_url);
        self.send(method, &url, body).map(drop)
    }

    /// Sends one request; a non-2xx answer becomes an `AdminError`.
    fn send(
        &self,
        method: Method,
        url: &str,
        body: Option<serde_json::Value>,
    ) -> Result<Response<ureq::Body>, AdminError> {
        let transport =
            |e: ureq::Error| AdminError::Transport { url: url.to_owned(), source: Box::new(e) };
        let mut request = Request::builder().method(method).uri(url);
        if let Some(token) = &self.token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let response = match body {
            Some(json) => {
                let request = request
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(json.to_string())
                    .map_err(|e| transport(e.into()))?;
                self.agent.run(request)
            }
            None => self.agent.run(request.body(()).map_err(|e| transport(e.into()))?),
        }
        .map_err(transport)?;
        check_status(response)
    }
}

fn check_status(mut response: Response<ureq::Body>) -> Result<Response<ureq::Body>, AdminError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    if status == StatusCode::UNAUTHORIZED {
        return Err(AdminError::Unauthorized);
    }
    // `{"error": "..."}` from our server; anything else (a proxy, an old
    // server) gets the status line so the user still sees what happened.
    let text =
        response.body_mut().with_config().limit(64 << 10).read_to_string().unwrap_or_default();
    let message = match serde_json::from_str::<ErrorBody>(&text) {
        Ok(body) => body.error,
        Err(_) => {
            let reason = status.canonical_reason().unwrap_or("error");
            format!("admin api answered {} {reason}", status.as_u16())
        }
    };
    Err(AdminError::Api { status: status.as_u16(), message })
}

fn schedule_path(volume: &str) -> String {
    format!("/v1/volumes/{}/schedule", encode(volume))
}

fn snapshot_path(volume: &str, snapshot: &str, suffix: &str) -> String {
    format!("/v1/volumes/{}/snapshots/{}{suffix}", encode(volume), encode(snapshot))
}

/// Percent-encodes everything but RFC 3986 unreserved characters, so a name
/// is safe as a path segment or a query value.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Splits an export name `NAME@SNAP` into `(NAME, SNAP)`; `None` for a plain
/// `NAME` or when either side is empty.
///
/// ```
/// use clonebd_client::admin::split_snapshot;
/// assert_eq!(split_snapshot("pg@2026-11-24T13:00Z"), Some(("pg", "2026-11-24T13:00Z")));
/// assert_eq!(split_snapshot("pg"), None);
/// ```
pub fn split_snapshot(export: &str) -> Option<(&str, &str)> {
    let (volume, snapshot) = export.split_once('@')?;
    (!volume.is_empty() && !snapshot.is_empty()).then_some((volume, snapshot))
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    use std::thread::JoinHandle;

    use super::*;

    /// The same JSON is pinned in the server's `admin::types` tests.
    const VOLUME_JSON: &str = r#"{"name":"pg","size":10737418240,"chunk_size":65536,"origin":"base@s1","written_bytes":131072,"snapshot_count":2,"created":"2026-11-24T13:05:12Z"}"#;
    const SNAPSHOT_JSON: &str = r#"{"export":"pg@2026-11-24T13:00Z","volume":"pg","name":"2026-11-24T13:00Z","created":"2026-11-24T13:00:00Z","kind":"scheduled","held":true,"clones":["test1"],"written_since_previous":65536}"#;

    /// Answers one request with `status` and `body`, and hands back the raw
    /// request (head and body) it received.
    fn answer_once(status: &str, body: &str) -> (String, JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (status, body) = (status.to_owned(), body.to_owned());
        let handle = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream);
            let mut head = String::new();
            let mut length = 0;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
                head.push_str(&line);
                if line == "\r\n" || line.is_empty() {
                    break;
                }
            }
            let mut request_body = vec![0; length];
            reader.read_exact(&mut request_body).unwrap();
            let response = format!(
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            reader.get_mut().write_all(response.as_bytes()).unwrap();
            head + &String::from_utf8(request_body).unwrap()
        });
        (url, handle)
    }

    #[test]
    fn golden_json_deserializes() {
        let volume: VolumeDto = serde_json::from_str(VOLUME_JSON).unwrap();
        assert_eq!(volume.size, 10 << 30);
        assert_eq!(volume.origin.as_deref(), Some("base@s1"));
        assert_eq!(serde_json::to_string(&volume).unwrap(), VOLUME_JSON);
        let snapshot: SnapshotDto = serde_json::from_str(SNAPSHOT_JSON).unwrap();
        assert_eq!(snapshot.kind, "scheduled");
        assert_eq!(snapshot.clones, ["test1"]);
        assert_eq!(serde_json::to_string(&snapshot).unwrap(), SNAPSHOT_JSON);
    }

    #[test]
    fn unknown_fields_from_a_newer_server_are_ignored() {
        let json = VOLUME_JSON.replace("\"name\"", "\"future\":1,\"name\"");
        assert!(serde_json::from_str::<VolumeDto>(&json).is_ok());
    }

    #[test]
    fn create_volume_sends_json_and_the_token() {
        let (url, server) = answer_once("201 Created", VOLUME_JSON);
        let client = AdminClient::new(format!("{url}/"), Some("s3cret".into()));
        let volume = client.create_volume("pg", 10 << 30, Some(65536)).unwrap();
        assert_eq!(volume.name, "pg");
        let request = server.join().unwrap();
        assert!(request.starts_with("POST /v1/volumes HTTP/1.1\r\n"), "{request}");
        assert!(
            request.to_ascii_lowercase().contains("authorization: bearer s3cret\r\n"),
            "{request}"
        );
        let body: serde_json::Value =
            serde_json::from_str(request.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"name": "pg", "size": 10u64 << 30, "chunk_size": 65536})
        );
    }

    #[test]
    fn names_are_percent_encoded() {
        let (url, server) = answer_once("204 No Content", "");
        AdminClient::new(url, None).delete_snapshot("pg", "2026-11-24T13:00Z").unwrap();
        let request = server.join().unwrap();
        assert!(
            request.starts_with("DELETE /v1/volumes/pg/snapshots/2026-11-24T13%3A00Z HTTP/1.1"),
            "{request}"
        );
        assert!(!request.to_ascii_lowercase().contains("authorization"), "{request}");

        let (url, server) = answer_once("200 OK", r#"{"ranges":[],"total_bytes":0}"#);
        AdminClient::new(url, None).diff("pg@a b", "pg").unwrap();
        assert!(server.join().unwrap().starts_with("GET /v1/diff?from=pg%40a%20b&to=pg HTTP/1.1"));
    }

    #[test]
    fn set_schedule_sends_only_the_fields_given() {
        let schedule = r#"{"volume":"pg","policy":{"enabled":true,"hourly":48,"daily":7,"weekly":4,"monthly":0},"source":"api","next_tick":"2026-11-24T14:00:00Z","last_snapshot":"pg@2026-11-24T13:00Z","scheduled_snapshots":30}"#;
        let (url, server) = answer_once("200 OK", schedule);
        let patch = SchedulePatch { hourly: Some(48), ..SchedulePatch::default() };
        let got = AdminClient::new(url, None).set_schedule("pg", &patch).unwrap();
        assert_eq!(got.policy.hourly, 48);
        assert_eq!(serde_json::to_string(&got).unwrap(), schedule);
        let request = server.join().unwrap();
        assert!(request.starts_with("PUT /v1/volumes/pg/schedule HTTP/1.1"), "{request}");
        assert!(request.ends_with(r#"{"hourly":48}"#), "{request}");
    }

    #[test]
    fn unauthorized_is_its_own_error() {
        let (url, server) = answer_once("401 Unauthorized", r#"{"error":"missing bearer token"}"#);
        let err = AdminClient::new(url, None).volumes().unwrap_err();
        assert!(matches!(err, AdminError::Unauthorized), "{err:?}");
        assert_eq!(err.status(), Some(401));
        server.join().unwrap();
    }

    #[test]
    fn api_errors_carry_the_server_message() {
        let (url, server) =
            answer_once("409 Conflict", r#"{"error":"snapshot pg@s1 has dependent clones: t1"}"#);
        let err = AdminClient::new(url, Some("t".into())).delete_snapshot("pg", "s1").unwrap_err();
        assert_eq!(err.status(), Some(409));
        assert_eq!(err.to_string(), "snapshot pg@s1 has dependent clones: t1");
        server.join().unwrap();
    }

    #[test]
    fn non_json_errors_show_the_status() {
        let (url, server) = answer_once("502 Bad Gateway", "<html>oops</html>");
        let err = AdminClient::new(url, None).gc().unwrap_err();
        assert_eq!(err.to_string(), "admin api answered 502 Bad Gateway");
        server.join().unwrap();
    }

    #[test]
    fn unreadable_success_body_is_a_transport_error() {
        let (url, server) = answer_once("200 OK", "not json");
        let err = AdminClient::new(url, None).volumes().unwrap_err();
        assert!(matches!(err, AdminError::Transport { .. }), "{err:?}");
        server.join().unwrap();
    }

    #[test]
    fn connection_refused_is_a_transport_error() {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let err = AdminClient::new(format!("http://127.0.0.1:{port}"), None).volumes().unwrap_err();
        assert!(matches!(err, AdminError::Transport { .. }), "{err:?}");
        assert_eq!(err.status(), None);
        assert!(err.to_string().contains(&format!("127.0.0.1:{port}")), "{err}");
    }

    #[test]
    fn debug_hides_the_token() {
        let client = AdminClient::new(DEFAULT_ADMIN_URL, Some("s3cret".into()));
        assert!(!format!("{client:?}").contains("s3cret"));
    }

    #[test]
    fn split_snapshot_needs_both_sides() {
        assert_eq!(split_snapshot("a@b"), Some(("a", "b")));
        assert_eq!(split_snapshot("a@"), None);
        assert_eq!(split_snapshot("@b"), None);
        assert_eq!(split_snapshot("a"), None);
    }
}
