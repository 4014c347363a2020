//! `Export`: the data-path handle the NBD server holds per connection. It
//! keeps the node it opened; promote and rename do not retarget it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::data::Fetch;
use crate::engine::Engine;
use crate::error::{ErrorKind, StoreError};
use crate::node::{HEAD, NodeState};
use crate::record::Life;

/// A run of the block-status answer.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Extent {
    /// Bytes.
    pub length: u64,
    /// Backed by a chunk.
    pub allocated: bool,
    /// Reads as zeroes.
    pub zero: bool,
}

struct SnapView {
    epoch: u64,
    size: u64,
    alive: Arc<AtomicBool>,
}

struct Inner {
    engine: Arc<Engine>,
    node: Arc<NodeState>,
    snap: Option<SnapView>,
    name: String,
}

/// An open export: a volume's head (read-write) or a snapshot (read-only).
#[derive(Clone)]
pub struct Export {
    inner: Arc<Inner>,
}

impl Export {
    pub(crate) fn head(engine: Arc<Engine>, node: Arc<NodeState>, name: String) -> Export {
        Export { inner: Arc::new(Inner { engine, node, snap: None, name }) }
    }

    pub(crate) fn snapshot(
        engine: Arc<Engine>,
        node: Arc<NodeState>,
        name: String,
        epoch: u64,
        size: u64,
        alive: Arc<AtomicBool>,
    ) -> Export {
        let snap = Some(SnapView { epoch, size, alive });
        Export { inner: Arc::new(Inner { engine, node, snap, name }) }
    }

    /// The name it was opened by (`NAME` or `NAME@SNAP`).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The current size in bytes.
    pub fn size(&self) -> u64 {
        match &self.inner.snap {
            Some(s) => s.size,
            None => self.inner.node.size(),
        }
    }

    /// Snapshots are read-only.
    pub fn read_only(&self) -> bool {
        self.inner.snap.is_some()
    }

    /// The copy-on-write unit (the preferred block size).
    pub fn chunk_size(&self) -> u32 {
        self.inner.node.chunk_size
    }

    /// False once the volume or snapshot was deleted.
    pub fn is_live(&self) -> bool {
        match &self.inner.snap {
            Some(s) => s.alive.load(Ordering::Acquire),
            None => self.inner.node.life() == Life::Volume,
        }
    }

    fn bound(&self) -> u64 {
        self.inner.snap.as_ref().map_or(HEAD, |s| s.epoch)
    }

    fn check(&self, offset: u64, len: u64, write: bool) -> Result<(), StoreError> {
        self.inner.engine.check_open()?;
        if !self.is_live() {
            return Err(StoreError::new(
                ErrorKind::Gone,
                format!("export {} was deleted", self.name()),
            ));
        }
        if write && self.read_only() {
            return Err(StoreError::new(ErrorKind::ReadOnly, format!("export {}", self.name())));
        }
        if offset.checked_add(len).is_none_or(|end| end > self.size()) {
            return Err(StoreError::new(
                ErrorKind::OutOfRange,
                format!("{len} bytes at {offset} beyond size {} of {}", self.size(), self.name()),
            ));
        }
        Ok(())
    }

    /// Reads `buf.len()` bytes at `offset` (any alignment).
    pub fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), StoreError> {
        let i = &self.inner;
        let _op = i.node.op.read();
        self.check(offset, buf.len() as u64, false)?;
        i.engine.read_node(&i.node, self.bound(), offset, buf, None, Fetch::Wait)
    }

    /// `read` and `block_status` in one pass: fills `buf` (zero runs without
    /// touching data files) and returns the allocation runs of the range,
    /// with one block-map resolve per group.
    pub fn read_sparse(&self, offset: u64, buf: &mut [u8]) -> Result<Vec<Extent>, StoreError> {
        let i = &self.inner;
        let _op = i.node.op.read();
        self.check(offset, buf.len() as u64, false)?;
        let mut extents = Vec::new();
        i.engine.read_node(&i.node, self.bound(), offset, buf, Some(&mut extents), Fetch::Wait)?;
        Ok(extents)
    }

    /// `read_sparse` from memory only: `Ok(None)` as soon as some of the
    /// range's data would have to come from the disk (`buf` is then partly
    /// filled and the caller reads again with `read_sparse`, where waiting
    /// holds nothing else up). Only data reads are kept from waiting: the
    /// locks and block-map lookups are those of `read_sparse`.
    pub fn read_sparse_cached(
        &self,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<Option<Vec<Extent>>, StoreError> {
        let i = &self.inner;
        let _op = i.node.op.read();
        self.check(offset, buf.len() as u64, false)?;
        let mut extents = Vec::new();
        match i.engine.read_node(
            &i.node,
            self.bound(),
            offset,
            buf,
            Some(&mut extents),
            Fetch::Cached,
        ) {
            Ok(()) => Ok(Some(extents)),
            Err(e) if e.kind() == ErrorKind::NotCached => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes `data` at `offset` (any alignment).
    pub fn write(&self, offset: u64, data: &[u8]) -> Result<(), StoreError> {
        let i = &self.inner;
        let _op = i.node.op.read();
        self.check(offset, data.len() as u64, true)?;
        i.engine.commit_poison_check()?;
        i.engine.write_node(&i.node, offset, data)?;
        i.engine.intent.note(&i.node, offset, data.len() as u64);
        Ok(())
    }

    /// Whole chunks become zero slots (owned chunks are freed); partial
    /// chunks get zero bytes (nothing happens where they already read zero).
    /// `may_unmap` changes nothing: a zero slot is both unmapped and zero.
    pub fn write_zeroes(&self, offset: u64, len: u64, may_unmap: bool) -> Result<(), StoreError> {
        let _ = may_unmap;
        let i = &self.inner;
        let _op = i.node.op.read();
        self.check(offset, len, true)?;
        i.engine.commit_poison_check()?;
        i.engine.zero_node(&i.node, offset, len, true)?;
        i.engine.intent.note(&i.node, offset, len);
        Ok(())
    }

    /// Whole chunks in the range become zero slots; the partial chunks at its
    /// ends are always left as they are (trim is advisory).
    pub fn trim(&self, offset: u64, len: u64) -> Result<(), StoreError> {
        let i = &self.inner;
        let _op = i.node.op.read();
        self.check(offset, len, true)?;
        i.engine.commit_poison_check()?;
        i.engine.zero_node(&i.node, offset, len, false)?;
        i.engine.intent.note(&i.node, offset, len);
        Ok(())
    }

    /// FLUSH: every write acknowledged before this call becomes durable
    /// (group commit, through the intent log where that is cheaper).
    pub fn commit(&self) -> Result<(), StoreError> {
        self.inner.engine.check_open()?;
        self.inner.engine.flush()
    }

    /// Allocation runs covering `[offset, offset + len)` exactly, merged.
    pub fn block_status(&self, offset: u64, len: u64) -> Result<Vec<Extent>, StoreError> {
        let i = &self.inner;
        let _op = i.node.op.read();
        self.check(offset, len, false)?;
        i.engine.status_node(&i.node, self.bound(), offset, len)
    }
}

impl std::fmt::Debug for Export {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Export").field("name", &self.inner.name).finish_non_exhaustive()
    }
}
