//! The API layer of the schedule: per-volume patches set through the admin
//! API, kept in `DATA/schedules.json`. Small, rarely written, so it is a
//! JSON file written whole and atomically (temporary file, fsync, rename,
//! fsync of the directory), not sled keys.
//!
//! ```json
//! {"version": 1, "volumes": {"pg": {"hourly": 48, "daily": 14}}}
//! ```

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::config::PolicyPatch;

/// The file's name inside the data directory.
pub const SCHEDULES_FILE: &str = "schedules.json";

/// The file format's version; a newer one is refused rather than misread.
const VERSION: u32 = 1;

/// The largest file read: bounds what a corrupt or foreign file costs.
const MAX_FILE_BYTES: u64 = 16 << 20;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFormat {
    version: u32,
    volumes: BTreeMap<String, PolicyPatch>,
}

/// `schedules.json` could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SavedError {
    /// Reading, writing or renaming failed.
    #[error("cannot access {path}")]
    Io {
        /// the file
        path: PathBuf,
        /// the cause
        #[source]
        source: io::Error,
    },
    /// The file is not what this version writes.
    #[error("{path} is not a valid schedules file")]
    Format {
        /// the file
        path: PathBuf,
        /// the cause
        #[source]
        source: serde_json::Error,
    },
    /// A newer server wrote it.
    #[error("{path} has version {found}; this server reads version {VERSION}")]
    Version {
        /// the file
        path: PathBuf,
        /// the version found
        found: u32,
    },
    /// Larger than any file this server writes.
    #[error("{path} is larger than {MAX_FILE_BYTES} bytes")]
    TooLarge {
        /// the file
        path: PathBuf,
    },
}

/// The API layer, in memory and on disk.
#[derive(Debug)]
pub struct SavedPolicies {
    path: PathBuf,
    volumes: BTreeMap<String, PolicyPatch>,
}

impl SavedPolicies {
    /// Reads `dir/schedules.json`; a missing file is an empty layer.
    pub fn load(dir: &Path) -> Result<Self, SavedError> {
        let path = dir.join(SCHEDULES_FILE);
        let io_err = |source| SavedError::Io { path: path.clone(), source };
        let volumes = match std::fs::metadata(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(io_err(e)),
            Ok(meta) if meta.len() > MAX_FILE_BYTES => {
                return Err(SavedError::TooLarge { path });
            }
            Ok(_) => {
                let bytes = std::fs::read(&path).map_err(io_err)?;
                let file: FileFormat = serde_json::from_slice(&bytes)
                    .map_err(|source| SavedError::Format { path: path.clone(), source })?;
                if file.version != VERSION {
                    return Err(SavedError::Version { path, found: file.version });
                }
                file.volumes
            }
        };
        Ok(Self { path, volumes })
    }

    /// The patch set for `volume`, if any.
    pub fn get(&self, volume: &str) -> Option<&PolicyPatch> {
        self.volumes.get(volume)
    }

    /// Replaces `volume`'s patch (`None` removes it) and writes the file.
    /// On a write failure the memory is left as it was.
    pub fn put(&mut self, volume: &str, patch: Option<PolicyPatch>) -> Result<(), SavedError> {
        let mut next = self.volumes.clone();
        match patch.filter(|p| !p.is_empty()) {
            Some(p) => next.insert(volume.to_owned(), p),
            None => next.remove(volume),
        };
        write_atomically(&self.path, &FileFormat { version: VERSION, volumes: next.clone() })?;
        self.volumes = next;
        Ok(())
    }
}

fn write_atomically(path: &Path, content: &FileFormat) -> Result<(), SavedError> {
    let io_err = |source| SavedError::Io { path: path.to_owned(), source };
    // invariant: serializing a map of plain structs cannot fail.
    let mut bytes = serde_json::to_vec_pretty(content).expect("schedules serialize");
    bytes.push(b'\n');
    let tmp = path.with_extension("json.tmp");
    let mut file = std::fs::File::create(&tmp).map_err(io_err)?;
    file.write_all(&bytes).map_err(io_err)?;
    file.sync_all().map_err(io_err)?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(io_err)?;
    // The rename is durable only once the directory is synced.
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io_err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_a_reload_and_removes_empty_patches() {
        let dir = tempfile::tempdir().unwrap();
        let mut saved = SavedPolicies::load(dir.path()).unwrap();
        assert!(saved.get("pg").is_none());
        let patch = PolicyPatch { hourly: Some(48), ..PolicyPatch::default() };
        saved.put("pg", Some(patch)).unwrap();
        saved.put("other", Some(PolicyPatch::default())).unwrap();
        let text = std::fs::read_to_string(dir.path().join(SCHEDULES_FILE)).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json, serde_json::json!({"version": 1, "volumes": {"pg": {"hourly": 48}}}));
        assert!(!dir.path().join("schedules.json.tmp").exists());

        let mut again = SavedPolicies::load(dir.path()).unwrap();
        assert_eq!(again.get("pg"), Some(&patch));
        again.put("pg", None).unwrap();
        assert!(SavedPolicies::load(dir.path()).unwrap().get("pg").is_none());
    }

    #[test]
    fn a_corrupt_or_newer_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SCHEDULES_FILE);
        std::fs::write(&path, "{not json").unwrap();
        assert!(matches!(SavedPolicies::load(dir.path()), Err(SavedError::Format { .. })));
        std::fs::write(&path, r#"{"version": 2, "volumes": {}}"#).unwrap();
        assert!(matches!(
            SavedPolicies::load(dir.path()),
            Err(SavedError::Version { found: 2, .. })
        ));
        std::fs::write(&path, r#"{"version": 1, "volumes": {"pg": {"hourli": 1}}}"#).unwrap();
        assert!(matches!(SavedPolicies::load(dir.path()), Err(SavedError::Format { .. })));
    }
}
