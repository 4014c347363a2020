//! The metadata store: the only module that imports sled (0.34.7).
//!
//! One sled `Db`, one tree (the default one) with prefixed big-endian keys
//! (`keys.rs`), so a batch is atomic across the block map and the catalog.
//! `durable_flush` adds the fsync that sled's own flush lacks.

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;

use crate::error::{StoreError, sled_error};

/// A key and its value.
pub(crate) type Pair = (Vec<u8>, Vec<u8>);

/// One key change of a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum KeyOp {
    Put(Vec<u8>, Vec<u8>),
    Del(Vec<u8>),
}

/// What the engine needs from an ordered, batch-atomic key-value store.
pub(crate) trait MetaStore: Send + Sync {
    /// The value of `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Up to `limit` pairs with keys in `[lo, hi)`, ascending.
    fn scan(&self, lo: &[u8], hi: &[u8], limit: usize) -> Result<Vec<Pair>, StoreError>;
    /// Applies `ops` atomically (visible at once, durable after `durable_flush`).
    fn apply(&self, ops: &[KeyOp]) -> Result<(), StoreError>;
    /// Makes every applied batch durable: sled flush, then fsync of its files.
    fn durable_flush(&self) -> Result<(), StoreError>;
    /// sled's own estimate of its disk use.
    fn size_on_disk(&self) -> u64;
}

fn meta_err(e: sled::Error) -> StoreError {
    StoreError::meta(sled_error::Error(Box::new(e)))
}

/// The sled implementation.
pub(crate) struct SledMeta {
    db: sled::Db,
    dir: PathBuf,
    db_file: Mutex<Option<File>>,
    synced: Mutex<HashSet<PathBuf>>,
}

impl SledMeta {
    pub(crate) fn open(dir: &Path, cache_capacity: u64) -> Result<SledMeta, StoreError> {
        let config = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_capacity)
            // our commits flush; sled's timer would only add writes
            .flush_every_ms(None);
        // sled's background threads may hold the file lock for a moment
        // after the previous `Db` in this process was dropped
        let mut tries = 0;
        let db = loop {
            match config.open() {
                Ok(db) => break db,
                Err(sled::Error::Io(e))
                    if tries < 250 && e.to_string().contains("could not acquire lock") =>
                {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => return Err(meta_err(e)),
            }
        };
        if db.was_recovered() {
            tracing::info!(dir = %dir.display(), "metadata store recovered");
        }
        Ok(SledMeta {
            db,
            dir: dir.to_path_buf(),
            db_file: Mutex::new(None),
            synced: Mutex::new(HashSet::new()),
        })
    }

    fn fsync_files(&self) -> Result<(), StoreError> {
        let io = |e| StoreError::io(format!("fsync of {}", self.dir.display()), e);
        let mut db_file = self.db_file.lock();
        if db_file.is_none() {
            *db_file = Some(File::open(self.dir.join("db")).map_err(io)?);
        }
        if let Some(f) = db_file.as_ref() {
            f.sync_all().map_err(io)?;
        }
        // sled writes `conf`, `snap.*` (renamed into place) and `blobs/*` besides
        // `db`; sync each new one once, then the directory that names it.
        let mut synced = self.synced.lock();
        let mut new_names = false;
        let mut dirs = vec![self.dir.clone()];
        let blobs = self.dir.join("blobs");
        if blobs.is_dir() {
            dirs.push(blobs);
        }
        for d in &dirs {
            for ent in std::fs::read_dir(d).map_err(io)? {
                let path = ent.map_err(io)?.path();
                if path.is_file()
                    && path.file_name() != Some("db".as_ref())
                    && !synced.contains(&path)
                {
                    File::open(&path).and_then(|f| f.sync_all()).map_err(io)?;
                    synced.insert(path);
                    new_names = true;
                }
            }
        }
        if new_names {
            for d in &dirs {
                File::open(d).and_then(|f| f.sync_all()).map_err(io)?;
            }
        }
        Ok(())
    }
}

impl MetaStore for SledMeta {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get(key).map_err(meta_err)?.map(|v| v.to_vec()))
    }

    fn scan(&self, lo: &[u8], hi: &[u8], limit: usize) -> Result<Vec<Pair>, StoreError> {
        let mut out = Vec::new();
        for r in self.db.range(lo..hi).take(limit) {
            let (k, v) = r.map_err(meta_err)?;
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    fn apply(&self, ops: &[KeyOp]) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for op in ops {
            match op {
                KeyOp::Put(k, v) => batch.insert(k.as_slice(), v.as_slice()),
                KeyOp::Del(k) => batch.remove(k.as_slice()),
            }
        }
        self.db.apply_batch(batch).map_err(meta_err)
    }

    fn durable_flush(&self) -> Result<(), StoreError> {
        self.db.flush().map_err(meta_err)?;
        self.fsync_files()
    }

    fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }
}
