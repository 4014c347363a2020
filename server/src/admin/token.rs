//! The admin bearer token: created once as `DATA/admin.token` (mode 0600,
//! 32 random bytes in hex) and reused on later starts, plus the middleware
//! that checks it on every `/v1` request in constant time.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;

/// File name of the token inside the data directory.
pub const TOKEN_FILE: &str = "admin.token";

/// Random bytes in a new token (hex-encoded, so 64 characters).
const TOKEN_BYTES: usize = 32;

/// Reads `data_dir/admin.token`, or creates it (mode 0600) with a fresh random
/// token if it does not exist yet. Surrounding whitespace is ignored, so an
/// operator may write their own token with `echo`.
pub fn load_or_create_token(data_dir: &Path) -> io::Result<String> {
    let path = data_dir.join(TOKEN_FILE);
    match read_token(&path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        other => return other,
    }
    std::fs::create_dir_all(data_dir)?;
    let token = new_token();
    match OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path) {
        Ok(mut file) => {
            file.write_all(token.as_bytes())?;
            file.write_all(b"\n")?;
            file.sync_all()?;
            Ok(token)
        }
        // Another process created it between our read and our create: use theirs.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => read_token(&path),
        Err(e) => Err(e),
    }
}

fn read_token(path: &Path) -> io::Result<String> {
    let text = std::fs::read_to_string(path)?;
    let token = text.trim();
    if token.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("admin token file {} is empty", path.display()),
        ));
    }
    Ok(token.to_owned())
}

fn new_token() -> String {
    let bytes: [u8; TOKEN_BYTES] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares in time that depends only on the lengths, so a wrong guess does
/// not reveal how many leading bytes were right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| std::hint::black_box(acc | (x ^ y)));
    diff == 0
}

/// Middleware: lets the request through only with `Authorization: Bearer <token>`.
pub(crate) async fn require_token(
    State(token): State<Arc<str>>,
    request: Request,
    next: Next,
) -> Response {
    match check(request.headers().get(header::AUTHORIZATION), &token) {
        Ok(()) => next.run(request).await,
        Err(err) => {
            let mut response = err.into_response();
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            response
        }
    }
}

fn check(header: Option<&HeaderValue>, expected: &str) -> Result<(), ApiError> {
    let Some(value) = header else {
        return Err(ApiError::unauthorized("missing bearer token"));
    };
    let value = value.as_bytes();
    // RFC 6750: the scheme name is case-insensitive.
    let presented = match value.split_at_checked(7) {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case(b"bearer ") => rest.trim_ascii(),
        _ => return Err(ApiError::unauthorized("missing bearer token")),
    };
    if expected.is_empty() || !constant_time_eq(presented, expected.as_bytes()) {
        return Err(ApiError::unauthorized("invalid bearer token"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn token_is_created_once_with_mode_0600_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create_token(dir.path()).unwrap();
        assert_eq!(first.len(), 2 * TOKEN_BYTES);
        assert!(first.bytes().all(|b| b.is_ascii_hexdigit()));
        let mode = std::fs::metadata(dir.path().join(TOKEN_FILE)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(load_or_create_token(dir.path()).unwrap(), first);
    }

    #[test]
    fn operator_written_token_is_trimmed_and_empty_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(TOKEN_FILE), "  secret\n").unwrap();
        assert_eq!(load_or_create_token(dir.path()).unwrap(), "secret");
        std::fs::write(dir.path().join(TOKEN_FILE), "\n").unwrap();
        let err = load_or_create_token(dir.path()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn check_accepts_only_the_right_bearer() {
        let ok = HeaderValue::from_static("Bearer abc");
        assert_eq!(check(Some(&ok), "abc"), Ok(()));
        let lower = HeaderValue::from_static("bearer abc");
        assert_eq!(check(Some(&lower), "abc"), Ok(()));
        let missing = check(None, "abc").unwrap_err();
        assert_eq!(missing.message(), "missing bearer token");
        let basic = HeaderValue::from_static("Basic abc");
        assert_eq!(check(Some(&basic), "abc").unwrap_err().message(), "missing bearer token");
        for wrong in ["Bearer abd", "Bearer ab", "Bearer abcd", "Bearer "] {
            let value = HeaderValue::from_static(wrong);
            assert_eq!(check(Some(&value), "abc").unwrap_err().message(), "invalid bearer token");
        }
        assert!(check(Some(&HeaderValue::from_static("Bearer ")), "").is_err());
    }

    #[test]
    fn constant_time_eq_compares_bytes() {
        assert!(constant_time_eq(b"", b""));
        assert!(constant_time_eq(b"xyz", b"xyz"));
        assert!(!constant_time_eq(b"xyz", b"xyw"));
        assert!(!constant_time_eq(b"xyz", b"xy"));
    }
}
