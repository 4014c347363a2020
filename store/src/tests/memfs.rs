//! An in-memory `DataFileFactory` that remembers what was synced, so a test
//! can "crash" (unsynced pages revert, or tear page by page) and inject EIO.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::data::{DataFile, DataFileFactory};

#[derive(Default)]
pub(crate) struct Faults {
    pub(crate) fail_writes: AtomicBool,
    pub(crate) fail_sync: AtomicBool,
    /// Writes that would lengthen `intent.log` fail (a full disk).
    pub(crate) fail_log_growth: AtomicBool,
    /// Reads of data files so far (the intent log's are not counted).
    pub(crate) data_reads: AtomicU64,
    /// Data files are out of the page cache: reads from memory only refuse.
    pub(crate) evicted: AtomicBool,
}

#[derive(Default)]
struct FileState {
    current: Vec<u8>,
    synced: Vec<u8>,
}

struct MemFile {
    state: Mutex<FileState>,
    faults: Arc<Faults>,
    is_log: bool,
}

fn eio() -> io::Error {
    io::Error::from_raw_os_error(libc::EIO)
}

impl DataFile for Arc<MemFile> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        if !self.is_log {
            self.faults.data_reads.fetch_add(1, Ordering::Relaxed);
        }
        let s = self.state.lock();
        let off = usize::try_from(offset).unwrap();
        for (i, b) in buf.iter_mut().enumerate() {
            *b = s.current.get(off + i).copied().unwrap_or(0);
        }
        Ok(())
    }

    fn read_cached(&self, buf: &mut [u8], offset: u64) -> io::Result<bool> {
        if !self.is_log && self.faults.evicted.load(Ordering::Relaxed) {
            return Ok(false);
        }
        self.read_at(buf, offset).map(|()| true)
    }

    fn write_at(&self, data: &[u8], offset: u64) -> io::Result<()> {
        if self.faults.fail_writes.load(Ordering::Relaxed) {
            return Err(eio());
        }
        let mut s = self.state.lock();
        let off = usize::try_from(offset).unwrap();
        if self.is_log
            && s.current.len() < off + data.len()
            && self.faults.fail_log_growth.load(Ordering::Relaxed)
        {
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        if s.current.len() < off + data.len() {
            s.current.resize(off + data.len(), 0);
        }
        s.current[off..off + data.len()].copy_from_slice(data);
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        if self.faults.fail_sync.load(Ordering::Relaxed) {
            return Err(eio());
        }
        let mut s = self.state.lock();
        s.synced = s.current.clone();
        Ok(())
    }

    fn file_len(&self) -> io::Result<u64> {
        Ok(self.state.lock().current.len() as u64)
    }

    fn punch_hole(&self, offset: u64, len: u64) -> io::Result<()> {
        let mut guard = self.state.lock();
        let s = &mut *guard;
        let (off, len) = (usize::try_from(offset).unwrap(), usize::try_from(len).unwrap());
        for v in [&mut s.current, &mut s.synced] {
            let end = (off + len).min(v.len());
            if off < end {
                v[off..end].fill(0);
            }
        }
        Ok(())
    }
}

#[derive(Default, Clone)]
pub(crate) struct MemFs {
    files: Arc<Mutex<HashMap<PathBuf, Arc<MemFile>>>>,
    pub(crate) faults: Arc<Faults>,
}

impl DataFileFactory for MemFs {
    fn open(&self, path: &Path, create: bool) -> io::Result<Option<Box<dyn DataFile>>> {
        let mut files = self.files.lock();
        if let Some(f) = files.get(path) {
            return Ok(Some(Box::new(f.clone())));
        }
        if !create {
            return Ok(None);
        }
        let f = Arc::new(MemFile {
            state: Mutex::new(FileState::default()),
            faults: self.faults.clone(),
            is_log: path.file_name() == Some(crate::intent::LOG_FILE.as_ref()),
        });
        files.insert(path.to_path_buf(), f.clone());
        Ok(Some(Box::new(f)))
    }

    fn sync_dir(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }
}

impl MemFs {
    /// Data files (not the intent log) holding at least one byte.
    pub(crate) fn data_files_in_use(&self) -> usize {
        let files = self.files.lock();
        files.values().filter(|f| !f.is_log && !f.state.lock().current.is_empty()).count()
    }

    /// Loses unsynced data: each unsynced 4 KiB page keeps its new content
    /// or reverts, as `keep(page_index)` decides (torn writes).
    pub(crate) fn crash(&self, mut keep: impl FnMut(usize) -> bool) {
        for f in self.files.lock().values() {
            let mut s = f.state.lock();
            let len = s.current.len().max(s.synced.len());
            let mut out = s.synced.clone();
            out.resize(len, 0);
            let mut cur = s.current.clone();
            cur.resize(len, 0);
            for (p, (o, c)) in out.chunks_mut(4096).zip(cur.chunks(4096)).enumerate() {
                if o != c && keep(p) {
                    o.copy_from_slice(c);
                }
            }
            s.current = out.clone();
            s.synced = out;
        }
    }
}
