//! The intent log (ARCHITECTURE "Intent log"): a FLUSH that follows writes
//! which changed the block map costs one device flush, as on a raw file,
//! instead of the data files' `fdatasync` followed by sled's batch and fsync.
//!
//! Between two commits every written range is noted here. Such a FLUSH reads
//! the noted ranges' bytes back through the block map, appends them to
//! `DIR/intent.log` as records tagged with the log's epoch and `fdatasync`s
//! that one file. The next commit makes the same writes durable the usual
//! way and writes `epoch + 1` into sled in its last batch, which retires the
//! records. At open, the records of the durable epoch are written again
//! through the normal write path and committed (`Engine::replay_intent`).
//! ZFS's intent log does the same for synchronous writes between two
//! transaction groups.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

use crate::data::{DataFile, DataFileFactory};
use crate::error::StoreError;
use crate::keys::NodeId;
use crate::node::NodeState;

/// The log's largest size unless configured. A commit empties it, and the
/// background thread commits early once it is half full; between two
/// commits (five seconds) it holds what the FLUSHes logged, padded to 4 KiB
/// each: PostgreSQL's commits logged 12-24 MB/s in pgbench here, and 64 MiB
/// made the server commit every two seconds (BENCHMARKS.md, session 6). An
/// epoch that outgrows it falls back to commits until the next one. The
/// file grows as FLUSHes need it.
pub const DEFAULT_INTENT_LOG_BYTES: u64 = 1 << 30;
/// The log's file in the data directory.
pub(crate) const LOG_FILE: &str = "intent.log";
/// The file grows in steps of this many bytes, as FLUSHes need it.
const GROW: u64 = 16 << 20;
/// Bytes one FLUSH logs at most; past that a commit's `fdatasync` of the
/// data files is the cheaper way to make them durable.
const FLUSH_MAX: u64 = 8 << 20;
/// The bytes `CBIL` at the start of every record.
const MAGIC: u32 = u32::from_le_bytes(*b"CBIL");
/// `magic u32 | crc32c u32 | epoch u64 | kind u32 | 0u32 | node u64 |
/// offset u64 | len u64`, little-endian, then the payload (`len` bytes, none
/// for `Zeroes`); the CRC covers everything after itself, payload included.
pub(crate) const HEADER: usize = 48;
/// Each FLUSH's records are padded to whole blocks, so the next FLUSH never
/// rewrites a block that holds acknowledged records (a torn write of it
/// could otherwise take them along).
const BLOCK: usize = 4096;

/// What a record says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `len` bytes follow, written at `offset`.
    Data = 1,
    /// The range read as zeroes: replayed as WRITE_ZEROES, which keeps it
    /// unallocated where it can.
    Zeroes = 2,
    /// Fills a FLUSH's records up to a block boundary; skipped.
    Padding = 3,
}

impl Kind {
    fn from_u32(v: u32) -> Option<Kind> {
        match v {
            1 => Some(Kind::Data),
            2 => Some(Kind::Zeroes),
            3 => Some(Kind::Padding),
            _ => None,
        }
    }

    fn payload(self, len: u64) -> u64 {
        if self == Kind::Zeroes { 0 } else { len }
    }
}

/// One logged write of `len` bytes at `offset` of node `node`'s head.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) kind: Kind,
    pub(crate) node: NodeId,
    pub(crate) offset: u64,
    pub(crate) len: u64,
    /// The bytes, for `Data`.
    pub(crate) data: Vec<u8>,
}

/// Writes a record's header into `out[..HEADER]`; its payload is already in
/// `out[HEADER..]`.
fn seal(out: &mut [u8], epoch: u64, kind: Kind, node: NodeId, offset: u64, len: u64) {
    out[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    out[8..16].copy_from_slice(&epoch.to_le_bytes());
    out[16..20].copy_from_slice(&(kind as u32).to_le_bytes());
    out[20..24].fill(0);
    out[24..32].copy_from_slice(&node.0.to_le_bytes());
    out[32..40].copy_from_slice(&offset.to_le_bytes());
    out[40..48].copy_from_slice(&len.to_le_bytes());
    let crc = crc32c::crc32c(&out[8..]);
    out[4..8].copy_from_slice(&crc.to_le_bytes());
}

/// One FLUSH's records, built in one buffer.
pub(crate) struct Batch {
    epoch: u64,
    buf: Vec<u8>,
}

impl Batch {
    pub(crate) fn new(epoch: u64) -> Batch {
        Batch { epoch, buf: Vec::new() }
    }

    /// Adds a record for `len` bytes at `offset` of `node`, filled by `fill`
    /// (a range that reads as zeroes becomes a `Zeroes` record).
    pub(crate) fn add(
        &mut self,
        node: NodeId,
        offset: u64,
        len: usize,
        fill: impl FnOnce(&mut [u8]) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let at = self.buf.len();
        self.buf.resize(at + HEADER + len, 0);
        fill(&mut self.buf[at + HEADER..])?;
        let mut kind = Kind::Data;
        if self.buf[at + HEADER..].iter().all(|b| *b == 0) {
            self.buf.truncate(at + HEADER);
            kind = Kind::Zeroes;
        }
        seal(&mut self.buf[at..], self.epoch, kind, node, offset, len as u64);
        Ok(())
    }

    /// The records, padded to whole blocks; empty if there are none.
    pub(crate) fn finish(mut self) -> Vec<u8> {
        let at = self.buf.len();
        let mut gap = at.next_multiple_of(BLOCK) - at;
        if at > 0 && gap > 0 {
            if gap < HEADER {
                gap += BLOCK;
            }
            self.buf.resize(at + gap, 0);
            let pad = (gap - HEADER) as u64;
            seal(&mut self.buf[at..], self.epoch, Kind::Padding, NodeId(0), 0, pad);
        }
        self.buf
    }
}

fn le(b: &[u8]) -> u64 {
    b.try_into().map(u64::from_le_bytes).unwrap_or(0)
}

/// A header's `(kind, node, offset, len)` if it opens a record of `epoch`
/// whose payload is at most `max` bytes; the CRC is checked once the
/// payload is read.
fn open_header(h: &[u8; HEADER], epoch: u64, max: u64) -> Option<(Kind, NodeId, u64, u64)> {
    let magic = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
    let kind = Kind::from_u32(u32::from_le_bytes([h[16], h[17], h[18], h[19]]))?;
    let len = le(&h[40..48]);
    (magic == MAGIC && le(&h[8..16]) == epoch && kind.payload(len) <= max)
        .then(|| (kind, NodeId(le(&h[24..32])), le(&h[32..40]), len))
}

fn crc_ok(h: &[u8; HEADER], payload: &[u8]) -> bool {
    let want = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
    crc32c::crc32c_append(crc32c::crc32c(&h[8..]), payload) == want
}

/// Written ranges per node since the last commit or log flush.
#[derive(Default)]
struct Dirty {
    nodes: HashMap<NodeId, (Arc<NodeState>, BTreeMap<u64, u64>)>,
    bytes: u64,
}

/// Adds `[lo, hi)` to a set of disjoint, non-touching ranges (start → end);
/// returns the bytes it newly covers.
fn insert_range(set: &mut BTreeMap<u64, u64>, mut lo: u64, mut hi: u64) -> u64 {
    let mut had = 0;
    if let Some((&s, &e)) = set.range(..=lo).next_back()
        && e >= lo
    {
        set.remove(&s);
        had += e - s;
        lo = s;
        hi = hi.max(e);
    }
    while let Some((&s, &e)) = set.range(lo..=hi).next() {
        set.remove(&s);
        had += e - s;
        hi = hi.max(e);
    }
    set.insert(lo, hi);
    (hi - lo) - had
}

struct LogFile {
    file: Arc<dyn DataFile>,
    epoch: u64,
    /// Where the next record goes.
    tail: u64,
    /// The file's length: blocks below it were written before.
    filled: u64,
    /// Records of `epoch` were made durable: the next commit must retire them.
    logged: bool,
}

/// Ranges to log: each node with its runs `(offset, len)`.
pub(crate) type Spans = Vec<(Arc<NodeState>, Vec<(u64, u64)>)>;

pub(crate) struct IntentLog {
    capacity: u64,
    dirty: Mutex<Dirty>,
    /// More was written since the last commit than the log holds: this
    /// epoch commits instead. Changed under the `dirty` lock; read without
    /// it so writes skip the lock once it is set.
    overflow: AtomicBool,
    log: Mutex<Option<LogFile>>,
}

impl IntentLog {
    /// `capacity` 0 disables the log (every FLUSH commits).
    pub(crate) fn new(capacity: u64) -> IntentLog {
        IntentLog {
            capacity,
            dirty: Mutex::default(),
            overflow: AtomicBool::new(capacity == 0),
            log: Mutex::new(None),
        }
    }

    /// Opens (creating) `path` at `epoch`, the one sled holds.
    pub(crate) fn open(
        &self,
        factory: &dyn DataFileFactory,
        path: &Path,
        epoch: u64,
    ) -> Result<(), StoreError> {
        let io = |e| StoreError::io(format!("intent log {}", path.display()), e);
        // an existing log is opened even when turned off: its records replay
        let file = match factory.open(path, false).map_err(io)? {
            Some(f) => f,
            None if self.capacity == 0 => return Ok(()),
            None => {
                let f = factory
                    .open(path, true)
                    .map_err(io)?
                    .ok_or_else(|| io(io::Error::from(io::ErrorKind::NotFound)))?;
                if let Some(dir) = path.parent() {
                    factory.sync_dir(dir).map_err(io)?;
                }
                f
            }
        };
        let filled = file.file_len().map_err(io)?;
        let file = Arc::from(file);
        *self.log.lock() = Some(LogFile { file, epoch, tail: 0, filled, logged: false });
        Ok(())
    }

    /// Reads the records of the current epoch in order, up to the first one
    /// that is torn, of an older epoch or never written, calling `apply`.
    pub(crate) fn for_each_record(
        &self,
        mut apply: impl FnMut(Record) -> Result<(), StoreError>,
    ) -> Result<u64, StoreError> {
        // not under the lock: `apply` writes, and a write may commit
        let Some((file, epoch)) = self.log.lock().as_ref().map(|l| (l.file.clone(), l.epoch))
        else {
            return Ok(0);
        };
        let io = |e| StoreError::io("read of the intent log", e);
        // the file, not the configured size: that may have shrunk since
        let end = file.file_len().map_err(io)?;
        let mut pos = 0u64;
        let mut n = 0;
        while pos + HEADER as u64 <= end {
            let mut h = [0u8; HEADER];
            file.read_at(&mut h, pos).map_err(io)?;
            // no real record is longer than one FLUSH's bytes or a padding
            // block: a torn header's stale length must not size an allocation
            let max = (end - pos - HEADER as u64).min(FLUSH_MAX + BLOCK as u64);
            let Some((kind, node, offset, len)) = open_header(&h, epoch, max) else {
                break;
            };
            let payload = kind.payload(len);
            let mut data = vec![0u8; usize::try_from(payload).unwrap_or(0)];
            file.read_at(&mut data, pos + HEADER as u64).map_err(io)?;
            if !crc_ok(&h, &data) {
                break;
            }
            pos += HEADER as u64 + payload;
            if kind != Kind::Padding {
                n += 1;
                apply(Record { kind, node, offset, len, data })?;
            }
        }
        Ok(n)
    }

    /// After the replay: a log turned off (`capacity` 0) closes its file,
    /// kept open only for that.
    pub(crate) fn finish_open(&self) {
        if self.capacity == 0 {
            *self.log.lock() = None;
        }
    }

    /// Notes a completed write (or zeroing) of `[offset, offset + len)`.
    pub(crate) fn note(&self, node: &Arc<NodeState>, offset: u64, len: u64) {
        if len == 0 || self.overflow.load(Ordering::Acquire) {
            return;
        }
        let mut d = self.dirty.lock();
        if self.overflow.load(Ordering::Acquire) {
            return;
        }
        let (_, set) = d.nodes.entry(node.id).or_insert_with(|| (node.clone(), BTreeMap::new()));
        let added = insert_range(set, offset, offset.saturating_add(len));
        d.bytes += added;
        if d.bytes > self.capacity {
            *d = Dirty::default();
            self.overflow.store(true, Ordering::Release);
        }
    }

    /// A commit starts: what was noted so far is its to make durable.
    /// Called before the pending map is swapped, so a write noted after
    /// this is noted again for the next epoch (its data may be newer than
    /// the commit's fdatasync).
    pub(crate) fn reset_dirty(&self) {
        if self.capacity == 0 {
            return;
        }
        let mut d = self.dirty.lock();
        *d = Dirty::default();
        self.overflow.store(false, Ordering::Release);
    }

    /// Whether records of the current epoch are durable.
    pub(crate) fn logged(&self) -> bool {
        self.retiring().is_some()
    }

    /// The epoch the next commit must write to sled to retire the records,
    /// if there are any.
    pub(crate) fn retiring(&self) -> Option<u64> {
        self.log.lock().as_ref().filter(|l| l.logged).map(|l| l.epoch + 1)
    }

    /// After a commit that wrote `retiring()` durably.
    pub(crate) fn retire(&self, epoch: u64) {
        if let Some(l) = self.log.lock().as_mut() {
            l.epoch = epoch;
            l.tail = 0;
            l.logged = false;
        }
    }

    /// Replayed records must be retired by the commit that follows.
    pub(crate) fn mark_logged(&self) {
        if let Some(l) = self.log.lock().as_mut() {
            l.logged = true;
        }
    }

    /// Takes the noted ranges if this FLUSH can log them: not overflowed,
    /// at most `FLUSH_MAX` bytes, and room left in the log.
    pub(crate) fn take_dirty(&self) -> Option<Spans> {
        let tail = self.log.lock().as_ref()?.tail;
        let mut d = self.dirty.lock();
        let runs = d.nodes.values().map(|(_, s)| s.len() as u64).sum::<u64>();
        // headers, and the padding after them
        let framing = (runs + 1) * HEADER as u64 + 2 * BLOCK as u64;
        if self.overflow.load(Ordering::Acquire)
            || d.bytes > FLUSH_MAX
            || tail + d.bytes + framing > self.capacity
        {
            return None;
        }
        let taken = std::mem::take(&mut *d);
        Some(
            taken
                .nodes
                .into_values()
                .map(|(node, set)| (node, set.into_iter().map(|(lo, hi)| (lo, hi - lo)).collect()))
                .collect(),
        )
    }

    /// Appends sealed records and makes them durable; returns the tail, to
    /// let the caller ask for an early commit when the log fills up.
    pub(crate) fn append(&self, records: &[u8]) -> Result<u64, StoreError> {
        let mut guard = self.log.lock();
        let Some(log) = guard.as_mut() else { return Ok(0) };
        let io = |e| StoreError::io("write of the intent log", e);
        log.file.write_at(records, log.tail).map_err(io)?;
        log.file.sync_data().map_err(|e| StoreError::io("fdatasync of the intent log", e))?;
        log.tail += records.len() as u64;
        log.logged = true;
        Ok(log.tail)
    }

    /// Makes the file long enough for `len` more bytes at the tail. It grows
    /// in steps written with zeroes: appending past its end would make every
    /// fdatasync commit the new size to ext4's journal (a second device
    /// flush); this way one in GROW bytes does, and later laps overwrite
    /// allocated blocks. Nothing acknowledged is touched (zeroes go past the
    /// tail), so a failure here (a full disk) only means this FLUSH commits.
    pub(crate) fn grow_for(&self, len: u64) -> io::Result<()> {
        let mut guard = self.log.lock();
        let Some(log) = guard.as_mut() else { return Ok(()) };
        let end = log.tail + len;
        if end <= log.filled {
            return Ok(());
        }
        let to = end.next_multiple_of(GROW).min(self.capacity).max(end);
        let zeros = vec![0u8; 1 << 20];
        let mut at = end.max(log.filled);
        while at < to {
            let n = (to - at).min(zeros.len() as u64);
            log.file.write_at(&zeros[..usize::try_from(n).unwrap_or(0)], at)?;
            at += n;
        }
        log.filled = to;
        Ok(())
    }

    /// Whether a log file is open (it exists, or the log is turned on).
    pub(crate) fn is_open(&self) -> bool {
        self.log.lock().is_some()
    }

    pub(crate) fn epoch(&self) -> u64 {
        self.log.lock().as_ref().map_or(0, |l| l.epoch)
    }

    pub(crate) fn capacity(&self) -> u64 {
        self.capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(epoch: u64, node: u64, offset: u64, data: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; HEADER];
        out.extend_from_slice(data);
        seal(&mut out, epoch, Kind::Data, NodeId(node), offset, data.len() as u64);
        out
    }

    fn header(r: &[u8]) -> [u8; HEADER] {
        r[..HEADER].try_into().unwrap()
    }

    #[test]
    fn record_layout_golden() {
        let r = record(7, 3, 0x1000, b"ab");
        let mut want = Vec::new();
        want.extend_from_slice(b"CBIL");
        want.extend_from_slice(&crc32c::crc32c(&r[8..]).to_le_bytes());
        want.extend_from_slice(&7u64.to_le_bytes());
        want.extend_from_slice(&1u32.to_le_bytes());
        want.extend_from_slice(&0u32.to_le_bytes());
        for v in [3u64, 0x1000, 2] {
            want.extend_from_slice(&v.to_le_bytes());
        }
        want.extend_from_slice(b"ab");
        assert_eq!(r, want);
    }

    #[test]
    fn headers_of_other_epochs_torn_or_too_long_are_refused() {
        let r = record(7, 3, 4096, &[9u8; 100]);
        let h = header(&r);
        assert_eq!(open_header(&h, 7, 100), Some((Kind::Data, NodeId(3), 4096, 100)));
        assert!(crc_ok(&h, &r[HEADER..]));
        assert_eq!(open_header(&h, 8, 100), None, "another epoch");
        assert_eq!(open_header(&h, 7, 99), None, "longer than the log");
        let mut torn = r[HEADER..].to_vec();
        torn[50] ^= 1;
        assert!(!crc_ok(&h, &torn), "a flipped data bit");
        let mut bad = h;
        bad[30] ^= 1;
        assert!(!crc_ok(&bad, &r[HEADER..]), "a flipped header bit");
        assert_eq!(open_header(&[0u8; HEADER], 0, 100), None, "zeroes");
        let mut unknown = h;
        unknown[16] = 9;
        assert_eq!(open_header(&unknown, 7, 100), None, "a kind this version does not know");
    }

    #[test]
    fn a_batch_is_whole_blocks_with_zero_ranges_as_zero_records() {
        let mut b = Batch::new(5);
        b.add(NodeId(2), 8192, 100, |d| {
            d.fill(7);
            Ok(())
        })
        .unwrap();
        b.add(NodeId(2), 1 << 20, 65536, |_| Ok(())).unwrap();
        let buf = b.finish();
        assert_eq!(buf.len(), BLOCK, "one block: two headers, 100 bytes, padding");
        let mut pos = 0;
        let mut seen = Vec::new();
        while pos < buf.len() {
            let h = header(&buf[pos..]);
            let (kind, node, offset, len) = open_header(&h, 5, u64::MAX).unwrap();
            let payload = usize::try_from(kind.payload(len)).unwrap();
            assert!(crc_ok(&h, &buf[pos + HEADER..pos + HEADER + payload]));
            seen.push((kind, node.0, offset, len));
            pos += HEADER + payload;
        }
        assert_eq!(pos, BLOCK);
        let pad = (BLOCK - 3 * HEADER - 100) as u64;
        assert_eq!(
            seen,
            [
                (Kind::Data, 2, 8192, 100),
                (Kind::Zeroes, 2, 1 << 20, 65536),
                (Kind::Padding, 0, 0, pad)
            ]
        );
        // a gap too small for a padding header takes one more block
        let mut b = Batch::new(5);
        b.add(NodeId(1), 0, BLOCK - HEADER - 10, |d| {
            d.fill(1);
            Ok(())
        })
        .unwrap();
        assert_eq!(b.finish().len(), 2 * BLOCK);
        assert!(Batch::new(5).finish().is_empty());
    }

    #[test]
    fn ranges_merge_and_count_new_bytes_once() {
        let mut s = BTreeMap::new();
        assert_eq!(insert_range(&mut s, 100, 200), 100);
        assert_eq!(insert_range(&mut s, 150, 250), 50);
        assert_eq!(insert_range(&mut s, 300, 400), 100);
        assert_eq!(insert_range(&mut s, 250, 300), 50, "touching runs join");
        assert_eq!(s, BTreeMap::from([(100, 400)]));
        assert_eq!(insert_range(&mut s, 0, 1000), 700);
        assert_eq!(insert_range(&mut s, 10, 20), 0);
        assert_eq!(s, BTreeMap::from([(0, 1000)]));
    }

    #[test]
    fn range_sets_match_a_byte_model() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        for _ in 0..200 {
            let mut s = BTreeMap::new();
            let mut model = [false; 256];
            for _ in 0..20 {
                let lo = rng.random_range(0..250usize);
                let hi = rng.random_range(lo + 1..=256);
                let new = model[lo..hi].iter().filter(|b| !**b).count() as u64;
                model[lo..hi].fill(true);
                assert_eq!(insert_range(&mut s, lo as u64, hi as u64), new);
            }
            let mut covered = [false; 256];
            let mut last_end = None;
            for (&lo, &hi) in &s {
                assert!(last_end.is_none_or(|e| e < lo), "runs disjoint and apart");
                covered[usize::try_from(lo).unwrap()..usize::try_from(hi).unwrap()].fill(true);
                last_end = Some(hi);
            }
            assert_eq!(covered, model);
        }
    }
}
