//! Group commit (ARCHITECTURE "Commit"): one sync answers every caller that
//! arrived while the previous one ran. A failed commit poisons the store:
//! after a failed fdatasync nothing about the page cache can be trusted.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use parking_lot::{Condvar, Mutex};

use crate::data::Fetch;
use crate::engine::Engine;
use crate::error::{ErrorKind, StoreError};
use crate::intent::{Batch, Kind};
use crate::keys::{INTENT_EPOCH, free_key, hwm_key, map_key, owned_key};
use crate::meta::KeyOp;
use crate::node::HEAD;
use crate::pending::CLASSES;
use crate::record::Life;

/// Keys per sled batch (research/crates.md §1: 64-1000).
pub(crate) const MAX_BATCH: usize = 1000;

#[derive(Default)]
struct State {
    started: u64,
    done: u64,
    /// The last run that was a commit, not an intent-log flush.
    full_done: u64,
    /// Callers waiting for a commit (catalog operations, the background
    /// thread, close): while there are any, every run is one.
    full_waiting: usize,
    running: bool,
    poisoned: Option<(ErrorKind, String)>,
    durable_hwm: [u64; CLASSES],
}

#[derive(Default)]
pub(crate) struct Committer {
    state: Mutex<State>,
    cv: Condvar,
}

impl Committer {
    pub(crate) fn poisoned(&self) -> Option<StoreError> {
        self.state
            .lock()
            .poisoned
            .as_ref()
            .map(|(k, m)| StoreError::new(*k, format!("an earlier commit failed: {m}")))
    }
}

impl Engine {
    /// Makes every write acknowledged before this call durable, and every
    /// catalog change made before it, with a commit.
    pub(crate) fn commit(&self) -> Result<(), StoreError> {
        self.sync(true)
    }

    /// A client's FLUSH: makes every write acknowledged before this call
    /// durable, through the intent log where that saves a device flush.
    pub(crate) fn flush(&self) -> Result<(), StoreError> {
        self.sync(false)
    }

    fn sync(&self, full: bool) -> Result<(), StoreError> {
        let c = &self.committer;
        let mut st = c.state.lock();
        // a run already going may have taken the pending map before our
        // writes: we need one that starts after now
        let target = st.started + 1;
        if full {
            st.full_waiting += 1;
        }
        let result = loop {
            if let Some((k, m)) = &st.poisoned {
                break Err(StoreError::new(*k, format!("an earlier commit failed: {m}")));
            }
            if (if full { st.full_done } else { st.done }) >= target {
                break Ok(());
            }
            if st.running {
                c.cv.wait(&mut st);
                continue;
            }
            st.running = true;
            st.started += 1;
            let generation = st.started;
            let durable_hwm = st.durable_hwm;
            let must_commit = st.full_waiting > 0;
            drop(st);
            let result = if must_commit {
                self.run_commit(durable_hwm).map(|hwm| (hwm, true))
            } else {
                self.run_flush(durable_hwm)
            };
            st = c.state.lock();
            st.running = false;
            st.done = generation;
            match result {
                Ok((hwm, committed)) => {
                    st.durable_hwm = hwm;
                    if committed {
                        st.full_done = generation;
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "commit failed; the store is read-only until restart");
                    st.poisoned = Some((e.kind(), e.to_string()));
                }
            }
            c.cv.notify_all();
        };
        if full {
            st.full_waiting -= 1;
        }
        result
    }

    /// A FLUSH's run: the intent log when the pending map holds changes and
    /// the noted writes fit, else a commit (which costs one device flush
    /// when the map has no changes). Returns the durable high-water marks
    /// and whether it committed.
    fn run_flush(&self, durable_hwm: [u64; CLASSES]) -> Result<([u64; CLASSES], bool), StoreError> {
        if self.log_flush(durable_hwm)? {
            return Ok((durable_hwm, false));
        }
        self.run_commit(durable_hwm).map(|hwm| (hwm, true))
    }

    /// Logs the ranges written since the last commit or log flush; false
    /// when a commit must do it instead.
    fn log_flush(&self, durable_hwm: [u64; CLASSES]) -> Result<bool, StoreError> {
        let map_changes =
            !self.pending.layers.read().active.is_empty() || self.alloc.hwms() != durable_hwm;
        if !map_changes && !self.intent.logged() {
            return Ok(false); // a commit syncs the data files and nothing else
        }
        // A catalog operation changes the catalog in memory before its
        // commit (a shrink zeroes the tail first); bytes read back then would
        // be logged against the catalog still on disk. They hold this lock
        // until their commit is done, and their commit waits for this run.
        let Some(catalog) = self.catalog.try_lock() else { return Ok(false) };
        let Some(spans) = self.intent.take_dirty() else { return Ok(false) };
        let mut batch = Batch::new(self.intent.epoch());
        for (node, runs) in spans {
            for (offset, len) in runs {
                let len = usize::try_from(len).unwrap_or(usize::MAX);
                let read = batch.add(node.id, offset, len, |buf| {
                    self.read_node(&node, HEAD, offset, buf, None, Fetch::Wait)
                });
                if let Err(e) = read {
                    // a commit covers every write without reading any back
                    tracing::warn!(error = %e, "intent log read-back failed; committing instead");
                    return Ok(false);
                }
            }
        }
        // Safe to let catalog operations in now: their commit waits for this
        // run, so these records are durable (or the store poisoned) before
        // it, and its catalog keys retire them in the same batch.
        drop(catalog);
        let records = batch.finish();
        if records.is_empty() {
            return Ok(true); // nothing written since the last log flush
        }
        if let Err(e) = self.intent.grow_for(records.len() as u64) {
            tracing::warn!(error = %e, "growing the intent log failed; committing instead");
            return Ok(false);
        }
        let tail = self.intent.append(&records)?;
        self.write_stats.intent_flushes.fetch_add(1, Ordering::Relaxed);
        if tail > self.intent.capacity() / 2 {
            self.wake_background();
        }
        Ok(true)
    }

    /// At open: writes the records of the durable epoch again through the
    /// write path, then commits, which retires them. It commits even when
    /// there were none: the next records then carry an epoch never used
    /// before, so leftovers of a FLUSH torn by the crash (records after one
    /// that failed its CRC) can never line up behind new ones and replay.
    pub(crate) fn replay_intent(&self) -> Result<(), StoreError> {
        if !self.intent.is_open() {
            return Ok(());
        }
        let mut bytes = 0u64;
        let records = self.intent.for_each_record(|r| {
            let node = self.catalog.lock().nodes.get(&r.node).map(|n| n.state.clone());
            let node = node.filter(|n| {
                n.life() == Life::Volume
                    && r.offset.checked_add(r.len).is_some_and(|e| e <= n.size())
            });
            let Some(node) = node else {
                return Err(StoreError::corrupt(format!(
                    "intent log record for {} bytes at {} of node {}, which is not a volume \
                     that large",
                    r.len, r.offset, r.node.0
                )));
            };
            bytes += r.len;
            match r.kind {
                Kind::Zeroes => self.zero_node(&node, r.offset, r.len, true),
                _ => self.write_node(&node, r.offset, &r.data),
            }
        })?;
        self.intent.mark_logged();
        self.commit()?;
        if records > 0 {
            tracing::info!(records, bytes, "intent log replayed");
        }
        Ok(())
    }

    /// Steps 1-5 of ARCHITECTURE "Commit"; returns the high-water marks now durable.
    fn run_commit(&self, durable_hwm: [u64; CLASSES]) -> Result<[u64; CLASSES], StoreError> {
        // before the swap: a write noted after this may have landed after
        // step 1's fdatasync, and is noted again for the intent log
        self.intent.reset_dirty();
        let retiring = self.intent.retiring();
        let generation = {
            let mut layers = self.pending.layers.write();
            let g = Arc::new(std::mem::take(&mut layers.active));
            layers.committing = Some(g.clone());
            g
        };
        // read after the swap: covers every chunk the generation refers to
        let hwm = self.alloc.hwms();
        if generation.is_empty()
            && hwm == durable_hwm
            && !self.data.any_dirty()
            && retiring.is_none()
        {
            self.pending.layers.write().committing = None;
            return Ok(hwm);
        }
        self.write_stats.commits.fetch_add(1, Ordering::Relaxed);
        // 1. data first, so no durable entry ever points at unsynced data
        self.data.sync_dirty()?;

        // 2. allocator state, then entries (a group's versions never split
        //    across batches), then frees and counters, catalog keys last.
        //    A crash between batches can leak chunks but never share one.
        let mut batch: Vec<KeyOp> = Vec::new();
        let mut applied = false;
        let mut apply = |batch: &mut Vec<KeyOp>| -> Result<(), StoreError> {
            self.meta.apply(batch)?;
            applied = true;
            batch.clear();
            Ok(())
        };
        for (class, &h) in hwm.iter().enumerate() {
            if h != durable_hwm[class] {
                let class = u8::try_from(class).unwrap_or(0);
                batch.push(KeyOp::Put(hwm_key(class).to_vec(), h.to_be_bytes().to_vec()));
            }
        }
        for &(class, id) in &generation.taken {
            batch.push(KeyOp::Del(free_key(class, id).to_vec()));
        }
        let mut last_group = None;
        for (&(n, g, b), v) in &generation.entries {
            if batch.len() >= MAX_BATCH && last_group != Some((n, g)) {
                apply(&mut batch)?;
            }
            let k = map_key(n, g, b).to_vec();
            batch.push(match v {
                Some(e) => KeyOp::Put(k, e.encode()),
                None => KeyOp::Del(k),
            });
            last_group = Some((n, g));
        }
        for &(class, id) in &generation.freed {
            if batch.len() >= MAX_BATCH {
                apply(&mut batch)?;
            }
            batch.push(KeyOp::Put(free_key(class, id).to_vec(), Vec::new()));
        }
        for (&(n, b), &v) in &generation.owned {
            if batch.len() >= MAX_BATCH {
                apply(&mut batch)?;
            }
            let k = owned_key(n, b).to_vec();
            batch.push(if v == 0 {
                KeyOp::Del(k)
            } else {
                KeyOp::Put(k, v.to_be_bytes().to_vec())
            });
        }
        if !batch.is_empty() && batch.len() + generation.extras.len() > MAX_BATCH {
            apply(&mut batch)?;
        }
        batch.extend(generation.extras.iter().cloned());
        // the intent log's records are retired with the last batch
        if let Some(epoch) = retiring {
            batch.push(KeyOp::Put(INTENT_EPOCH.to_vec(), epoch.to_be_bytes().to_vec()));
        }
        if !batch.is_empty() {
            apply(&mut batch)?;
        }
        // 3-4. sled flush (sync_file_range) + fsync of sled's files, when
        //    this commit wrote to sled. A FLUSH after overwrites in place
        //    changes nothing there, and an fsync of an unchanged file still
        //    costs a device cache flush on ext4: skipping it leaves one
        //    flush per FLUSH, as a raw file has.
        if applied {
            self.meta.durable_flush()?;
            self.write_stats.map_commits.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(epoch) = retiring {
            self.intent.retire(epoch);
        }

        // 5. the freed chunks' last references are durably gone
        self.pending.layers.write().committing = None;
        self.data.punch_all(&generation.freed);
        self.alloc.release(&generation.freed);
        self.alloc.release(&generation.requeue);
        Ok(hwm)
    }
}

impl Engine {
    /// Whether a commit would have metadata to write. The background commit
    /// runs only then: it exists to bound the pending map, and overwrites in
    /// place (no metadata) become durable at the client's FLUSH or FUA, as
    /// NBD promises. Syncing them on the timer anyway forced writeback of
    /// every dirty page under sequential writes (BENCHMARKS.md).
    pub(crate) fn metadata_pending(&self) -> bool {
        let durable = self.committer.state.lock().durable_hwm;
        !self.pending.layers.read().active.is_empty() || self.alloc.hwms() != durable
    }

    /// Refuses new writes once a commit failed.
    pub(crate) fn commit_poison_check(&self) -> Result<(), StoreError> {
        match self.committer.poisoned() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}
