//! Chunk data files: chunk id → (segment file, offset). One directory per
//! chunk-size class (`DIR/chunks/64k/000001.dat`, 16 GiB per segment), opened
//! lazily. IO goes through the small `DataFile` trait so tests can inject
//! faults; this module knows nothing of the block map.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::RwLock;

use crate::error::{ErrorKind, StoreError};
use crate::keys::ChunkId;

/// How a read may get its data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fetch {
    /// From the disk if need be.
    Wait,
    /// Only from the page cache; `ErrorKind::NotCached` where that is not
    /// enough (the caller reads again where waiting is fine).
    Cached,
}

/// Bytes per segment file.
pub(crate) const SEGMENT_BYTES: u64 = 16 << 30;
/// Files a class's chunks are striped over (chunk `id` goes to lane
/// `(id - 1) % LANES`). ext4 serialises buffered writes to one file on its
/// inode lock: with every chunk in one file, 20 clones copying up spent a
/// quarter of the server's CPU spinning on it, and 4 KiB random writes at
/// QD32 reached 43-48k IOPS; striped over 8 files, 78k (BENCHMARKS.md).
pub(crate) const LANES: u64 = 8;

/// One data file.
pub trait DataFile: Send + Sync {
    /// Fills `buf` from `offset`; bytes past the end of the file read as zeroes.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// `read_at` from memory only: `Ok(false)`, with `buf` partly filled,
    /// when some of the range would have to come from the disk. Files that
    /// cannot tell read and say `true`.
    fn read_cached(&self, buf: &mut [u8], offset: u64) -> io::Result<bool> {
        self.read_at(buf, offset).map(|()| true)
    }
    /// Writes all of `data` at `offset`.
    fn write_at(&self, data: &[u8], offset: u64) -> io::Result<()>;
    /// `fdatasync`.
    fn sync_data(&self) -> io::Result<()>;
    /// The file's length in bytes.
    fn file_len(&self) -> io::Result<u64>;
    /// Returns the range's space to the file system; reads of it return zeroes.
    fn punch_hole(&self, offset: u64, len: u64) -> io::Result<()> {
        let _ = (offset, len);
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }
}

/// Opens data files (a seam for fault injection).
pub trait DataFileFactory: Send + Sync {
    /// Opens `path`; when it does not exist, creates it if `create`, else `Ok(None)`.
    fn open(&self, path: &Path, create: bool) -> io::Result<Option<Box<dyn DataFile>>>;
    /// fsyncs a directory after files were created in it.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// Plain files with `pread`/`pwrite`, `fdatasync` and `fallocate(PUNCH_HOLE)`.
pub struct FsDataFiles;

struct FsFile(File);

impl DataFile for FsFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let mut done = 0;
        while done < buf.len() {
            match self.0.read_at(&mut buf[done..], offset + done as u64) {
                Ok(0) => {
                    buf[done..].fill(0);
                    break;
                }
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// `preadv2(RWF_NOWAIT)`: the kernel copies what the page cache holds
    /// and answers EAGAIN where it would start disk IO (it still starts the
    /// readahead a sequential reader has earned). Every error counts as
    /// "not in memory": a kernel or file system without NOWAIT (EOPNOTSUPP,
    /// ENOSYS, EINVAL) then has every large READ take the blocking path at
    /// the cost of one failed call, and a real IO error is reported by the
    /// blocking read that follows.
    fn read_cached(&self, buf: &mut [u8], offset: u64) -> io::Result<bool> {
        use rustix::io::{Errno, ReadWriteFlags};
        let mut done = 0;
        while done < buf.len() {
            let mut slice = [io::IoSliceMut::new(&mut buf[done..])];
            match rustix::io::preadv2(
                &self.0,
                &mut slice,
                offset + done as u64,
                ReadWriteFlags::NOWAIT,
            ) {
                Ok(0) => {
                    buf[done..].fill(0);
                    break;
                }
                Ok(n) => done += n,
                Err(Errno::INTR) => {}
                Err(_) => return Ok(false),
            }
        }
        Ok(true)
    }

    fn write_at(&self, data: &[u8], offset: u64) -> io::Result<()> {
        self.0.write_all_at(data, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }

    fn file_len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }

    fn punch_hole(&self, offset: u64, len: u64) -> io::Result<()> {
        use rustix::fs::FallocateFlags;
        rustix::fs::fallocate(
            &self.0,
            FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE,
            offset,
            len,
        )
        .map_err(io::Error::from)
    }
}

impl DataFileFactory for FsDataFiles {
    fn open(&self, path: &Path, create: bool) -> io::Result<Option<Box<dyn DataFile>>> {
        match OpenOptions::new().read(true).write(true).create(create).truncate(false).open(path) {
            Ok(f) => Ok(Some(Box::new(FsFile(f)))),
            Err(e) if !create && e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}

/// The chunk-size class of a chunk size (4 KiB → 0 … 1 MiB → 8).
pub(crate) fn class_of(chunk_size: u32) -> u8 {
    // invariant: chunk sizes are validated powers of two from 2^12 to 2^20
    u8::try_from(chunk_size.trailing_zeros().saturating_sub(12)).unwrap_or(0)
}

fn class_dir(class: u8) -> String {
    let size = 4u32 << class;
    if size >= 1024 { format!("{}m", size / 1024) } else { format!("{size}k") }
}

struct Segment {
    file: Box<dyn DataFile>,
    dirty: AtomicBool,
}

/// Every open segment of every class.
pub(crate) struct DataFiles {
    dir: PathBuf,
    factory: Arc<dyn DataFileFactory>,
    /// 1 for stores made before striping (their layout stays), else `LANES`.
    lanes: u64,
    segments: RwLock<HashMap<(u8, u64), Arc<Segment>>>,
}

impl DataFiles {
    pub(crate) fn new(dir: PathBuf, factory: Arc<dyn DataFileFactory>, lanes: u64) -> DataFiles {
        DataFiles { dir, factory, lanes: lanes.max(1), segments: RwLock::new(HashMap::new()) }
    }

    /// The segment file and the offset in it of `chunk`. Segment numbers
    /// interleave the lanes: segments 1..=lanes are the first 16 GiB of
    /// each lane.
    fn locate(&self, class: u8, chunk: ChunkId) -> (u64, u64) {
        let size = 4096u64 << class;
        let lane = (chunk.0 - 1) % self.lanes;
        let pos = (chunk.0 - 1) / self.lanes * size;
        ((pos / SEGMENT_BYTES) * self.lanes + lane + 1, pos % SEGMENT_BYTES)
    }

    /// The chunk stored right after `chunk` in its file, if any.
    pub(crate) fn next_on_disk(&self, class: u8, chunk: ChunkId) -> Option<ChunkId> {
        let next = ChunkId(chunk.0 + self.lanes);
        (self.locate(class, next).0 == self.locate(class, chunk).0).then_some(next)
    }

    fn path(&self, class: u8, seg: u64) -> PathBuf {
        self.dir.join(class_dir(class)).join(format!("{seg:06}.dat"))
    }

    fn segment(
        &self,
        class: u8,
        seg: u64,
        create: bool,
    ) -> Result<Option<Arc<Segment>>, StoreError> {
        if let Some(s) = self.segments.read().get(&(class, seg)) {
            return Ok(Some(s.clone()));
        }
        let mut segs = self.segments.write();
        if let Some(s) = segs.get(&(class, seg)) {
            return Ok(Some(s.clone()));
        }
        let path = self.path(class, seg);
        let io = |e| StoreError::io(format!("data file {}", path.display()), e);
        let parent = path.parent().unwrap_or(&self.dir).to_path_buf();
        let existed = self.factory.open(&path, false).map_err(io)?;
        let file = match existed {
            Some(f) => f,
            None if !create => return Ok(None),
            None => {
                let fresh_dir = !parent.exists();
                if fresh_dir {
                    std::fs::create_dir_all(&parent).map_err(io)?;
                }
                let f = self.factory.open(&path, true).map_err(io)?.ok_or_else(|| {
                    StoreError::io("data file create", io::Error::from(io::ErrorKind::NotFound))
                })?;
                // the new name must survive a crash before any map entry points into it
                self.factory.sync_dir(&parent).map_err(io)?;
                if fresh_dir {
                    self.factory.sync_dir(&self.dir).map_err(io)?;
                    if let Some(top) = self.dir.parent() {
                        self.factory.sync_dir(top).map_err(io)?;
                    }
                }
                f
            }
        };
        let s = Arc::new(Segment { file, dirty: AtomicBool::new(false) });
        segs.insert((class, seg), s.clone());
        Ok(Some(s))
    }

    /// Reads `buf.len()` bytes at `off` inside `chunk` (on into the chunks
    /// that follow it in its segment). With `Fetch::Cached`, fails with
    /// `ErrorKind::NotCached` instead of waiting for the disk.
    pub(crate) fn read(
        &self,
        class: u8,
        chunk: ChunkId,
        off: u64,
        buf: &mut [u8],
        fetch: Fetch,
    ) -> Result<(), StoreError> {
        let (seg, base) = self.locate(class, chunk);
        let Some(s) = self.segment(class, seg, false)? else {
            buf.fill(0);
            return Ok(());
        };
        let io = |e| StoreError::io(format!("read of chunk {}", chunk.0), e);
        match fetch {
            Fetch::Wait => s.file.read_at(buf, base + off).map_err(io),
            Fetch::Cached => match s.file.read_cached(buf, base + off).map_err(io)? {
                true => Ok(()),
                false => Err(StoreError::new(
                    ErrorKind::NotCached,
                    format!("chunk {} is not in memory", chunk.0),
                )),
            },
        }
    }

    /// Writes `data` at `off` inside `chunk` (on into the chunks that follow
    /// it in its segment); the segment is synced by the next commit.
    pub(crate) fn write(
        &self,
        class: u8,
        chunk: ChunkId,
        off: u64,
        data: &[u8],
    ) -> Result<(), StoreError> {
        let (seg, base) = self.locate(class, chunk);
        let Some(s) = self.segment(class, seg, true)? else {
            return Err(StoreError::io("data file", io::Error::from(io::ErrorKind::NotFound)));
        };
        s.file
            .write_at(data, base + off)
            .map_err(|e| StoreError::io(format!("write of chunk {}", chunk.0), e))?;
        // after the write: a commit that starts after our caller's ack syncs it
        s.dirty.store(true, Ordering::Release);
        Ok(())
    }

    /// Commit step 1: fdatasync every segment written since the last call.
    /// The lanes' files are synced at once: each fdatasync waits for its
    /// writeback and a device cache flush, so eight in a row cost eight
    /// round trips where concurrent ones overlap.
    pub(crate) fn sync_dirty(&self) -> Result<(), StoreError> {
        let segs: Vec<_> = self.segments.read().values().cloned().collect();
        let dirty: Vec<Arc<Segment>> =
            segs.into_iter().filter(|s| s.dirty.swap(false, Ordering::AcqRel)).collect();
        let sync = |s: &Segment| {
            s.file.sync_data().inspect_err(|_| s.dirty.store(true, Ordering::Release))
        };
        let result = match dirty.split_first() {
            None => Ok(()),
            Some((first, [])) => sync(first),
            Some((first, rest)) => std::thread::scope(|scope| {
                // a file whose thread cannot be made is synced here, in turn
                let mut result = Ok(());
                let mut others = Vec::new();
                for s in rest {
                    match std::thread::Builder::new().spawn_scoped(scope, move || sync(s)) {
                        Ok(h) => others.push(h),
                        Err(_) => result = result.and(sync(s)),
                    }
                }
                result = result.and(sync(first));
                for h in others {
                    let r =
                        h.join().unwrap_or_else(|_| Err(io::Error::other("sync thread panicked")));
                    result = result.and(r);
                }
                result
            }),
        };
        result.map_err(|e| StoreError::io("fdatasync of a data file", e))
    }

    /// Whether any segment was written since the last sync.
    pub(crate) fn any_dirty(&self) -> bool {
        self.segments.read().values().any(|s| s.dirty.load(Ordering::Acquire))
    }

    /// Returns freed chunks' space to the file system (best effort), one
    /// `fallocate` per run of chunks adjacent in one file: a punch costs
    /// about a millisecond on ext4, so punching 48k chunks of a deleted 3 GiB
    /// snapshot one by one took 45 s, inside a commit.
    pub(crate) fn punch_all(&self, freed: &[(u8, ChunkId)]) {
        // by class, then lane, then id: neighbours on disk end up in a row
        let lanes = self.lanes;
        let mut ids: Vec<(u8, u64, u64)> =
            freed.iter().map(|(c, id)| (*c, (id.0 - 1) % lanes, id.0)).collect();
        ids.sort_unstable();
        let mut i = 0;
        while i < ids.len() {
            let (class, _, first) = ids[i];
            let mut last = ChunkId(first);
            let mut n = 1;
            while let Some(&(c, _, id)) = ids.get(i + n)
                && c == class
                && self.next_on_disk(class, last) == Some(ChunkId(id))
            {
                last = ChunkId(id);
                n += 1;
            }
            self.punch_run(class, ChunkId(first), n as u64);
            i += n;
        }
    }

    fn punch_run(&self, class: u8, first: ChunkId, count: u64) {
        let (seg, base) = self.locate(class, first);
        if let Ok(Some(s)) = self.segment(class, seg, false)
            && let Err(e) = s.file.punch_hole(base, count * (4096u64 << class))
            && e.kind() != io::ErrorKind::Unsupported
        {
            tracing::warn!(chunk = first.0, count, error = %e, "hole punch failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_layout() {
        assert_eq!(class_of(4096), 0);
        assert_eq!(class_of(65536), 4);
        assert_eq!(class_of(1 << 20), 8);
        assert_eq!(class_dir(4), "64k");
        assert_eq!(class_dir(8), "1m");
        let dir = PathBuf::from("/nonexistent");
        let old = DataFiles::new(dir.clone(), Arc::new(FsDataFiles), 1);
        assert_eq!(old.locate(4, ChunkId(1)), (1, 0));
        assert_eq!(old.locate(4, ChunkId(2)), (1, 65536));
        let per_seg = SEGMENT_BYTES / 65536;
        assert_eq!(old.locate(4, ChunkId(per_seg + 1)), (2, 0));
        assert_eq!(old.next_on_disk(4, ChunkId(1)), Some(ChunkId(2)));
        assert_eq!(old.next_on_disk(4, ChunkId(per_seg)), None);
        let striped = DataFiles::new(dir, Arc::new(FsDataFiles), 8);
        assert_eq!(striped.locate(4, ChunkId(1)), (1, 0));
        assert_eq!(striped.locate(4, ChunkId(2)), (2, 0));
        assert_eq!(striped.locate(4, ChunkId(9)), (1, 65536));
        assert_eq!(striped.locate(4, ChunkId(8 * per_seg + 1)), (9, 0));
        assert_eq!(striped.locate(4, ChunkId(8 * per_seg + 8)), (16, 0));
        assert_eq!(striped.next_on_disk(4, ChunkId(3)), Some(ChunkId(11)));
        assert_eq!(striped.next_on_disk(4, ChunkId(8 * (per_seg - 1) + 3)), None);
    }

    #[test]
    fn unwritten_chunks_read_zero_without_files() {
        let dir = tempfile::tempdir().unwrap();
        let files = DataFiles::new(dir.path().join("chunks"), Arc::new(FsDataFiles), LANES);
        let mut buf = [1u8; 16];
        files.read(0, ChunkId(9), 0, &mut buf, Fetch::Wait).unwrap();
        assert_eq!(buf, [0; 16]);
        assert!(!dir.path().join("chunks").exists());
        files.write(0, ChunkId(2), 8, &[7; 8]).unwrap();
        files.read(0, ChunkId(2), 0, &mut buf, Fetch::Wait).unwrap();
        assert_eq!(buf, [0, 0, 0, 0, 0, 0, 0, 0, 7, 7, 7, 7, 7, 7, 7, 7]);
        files.sync_dirty().unwrap();
        files.punch_all(&[(0, ChunkId(2))]);
        files.read(0, ChunkId(2), 0, &mut buf, Fetch::Wait).unwrap();
        assert_eq!(buf, [0; 16]);
    }

    #[test]
    fn punching_runs_frees_exactly_the_listed_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let files = DataFiles::new(dir.path().join("chunks"), Arc::new(FsDataFiles), LANES);
        for id in 1..=8u8 {
            files.write(0, ChunkId(id.into()), 0, &[id; 4096]).unwrap();
        }
        // Out of order, with a gap: runs 2-4 and 6-7.
        files.punch_all(&[
            (0, ChunkId(4)),
            (0, ChunkId(2)),
            (0, ChunkId(7)),
            (0, ChunkId(3)),
            (0, ChunkId(6)),
        ]);
        let mut buf = [0u8; 4096];
        for id in 1..=8u8 {
            files.read(0, ChunkId(id.into()), 0, &mut buf, Fetch::Wait).unwrap();
            let punched = matches!(id, 2 | 3 | 4 | 6 | 7);
            let want = if punched { 0 } else { id };
            assert!(buf.iter().all(|b| *b == want), "chunk {id}");
        }
    }

    /// `Fetch::Cached` is `preadv2(RWF_NOWAIT)`: it reads what is in the
    /// page cache and refuses, rather than waits, once the kernel dropped it.
    #[test]
    fn cached_reads_refuse_data_the_page_cache_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let files = DataFiles::new(dir.path().join("chunks"), Arc::new(FsDataFiles), 1);
        files.write(4, ChunkId(1), 0, &[3; 65536]).unwrap();
        let mut buf = vec![0u8; 65536];
        files.read(4, ChunkId(1), 0, &mut buf, Fetch::Cached).unwrap();
        assert!(buf.iter().all(|b| *b == 3));
        // past the file's end reads zeroes, from memory too
        files.read(4, ChunkId(2), 0, &mut buf, Fetch::Cached).unwrap();
        assert!(buf.iter().all(|b| *b == 0));

        files.sync_dirty().unwrap();
        let path = dir.path().join("chunks").join(class_dir(4)).join("000001.dat");
        let f = File::open(&path).unwrap();
        rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed).unwrap();
        let err = files.read(4, ChunkId(1), 0, &mut buf, Fetch::Cached).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotCached);
        files.read(4, ChunkId(1), 0, &mut buf, Fetch::Wait).unwrap();
        assert!(buf.iter().all(|b| *b == 3));
        // the blocking read brought it back
        buf.fill(0);
        files.read(4, ChunkId(1), 0, &mut buf, Fetch::Cached).unwrap();
        assert!(buf.iter().all(|b| *b == 3));
    }
}
