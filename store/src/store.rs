//! `Store`: the public facade. Owns the background thread (periodic commit
//! and throttled GC) and answers listings from the catalog in memory.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::data::{DataFileFactory, FsDataFiles};
use crate::engine::{Engine, StoreConfig};
use crate::error::{Refusal, StoreError};
use crate::export::Export;
use crate::gc::GC_STEP_GROUPS;
use crate::info::{
    ByteRange, ExportSummary, GcReport, GcStatus, Promoted, SnapshotInfo, StoreStats, VolumeInfo,
    human, utc_name,
};
use crate::record::{Life, SnapshotKind};

struct Handle {
    engine: Arc<Engine>,
    background: Mutex<Option<JoinHandle<()>>>,
}

impl Handle {
    fn stop(&self, final_commit: bool) -> Result<(), StoreError> {
        let Some(thread) = self.background.lock().take() else { return Ok(()) };
        let result = if final_commit { self.engine.commit() } else { Ok(()) };
        self.engine.closed.store(true, Ordering::Release);
        self.engine.wake_background();
        if thread.join().is_err() {
            tracing::error!("store background thread panicked");
        }
        result
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        if let Err(e) = self.stop(true) {
            tracing::error!(error = %e, "final commit failed");
        }
    }
}

/// The copy-on-write storage engine. Cheap to clone; every method blocks.
#[derive(Clone)]
pub struct Store {
    handle: Arc<Handle>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("dir", &self.handle.engine.config.dir).finish()
    }
}

fn background(engine: Arc<Engine>) {
    let mut last_commit = Instant::now();
    loop {
        let gc_work = !engine.catalog.lock().gc.is_empty();
        let wait = if gc_work {
            engine.config.gc_pause.min(engine.config.commit_interval)
        } else {
            engine.config.commit_interval
        };
        let kicked = {
            let mut kick = engine.wake.0.lock();
            if !*kick {
                engine.wake.1.wait_for(&mut kick, wait.max(Duration::from_millis(1)));
            }
            std::mem::take(&mut *kick)
        };
        if engine.closed.load(Ordering::Acquire) {
            return;
        }
        if (kicked || last_commit.elapsed() >= engine.config.commit_interval)
            && engine.committer.poisoned().is_none()
            && engine.metadata_pending()
        {
            last_commit = Instant::now();
            if let Err(e) = engine.commit() {
                tracing::error!(error = %e, "background commit failed");
            }
        }
        if gc_work && let Some(_gc) = engine.gc_lock.try_lock() {
            match engine.gc_step(GC_STEP_GROUPS) {
                Ok(Some(r)) if r.chunks_freed > 0 => {
                    tracing::debug!(chunks = r.chunks_freed, "gc step");
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "gc step failed"),
            }
        }
    }
}

impl Store {
    /// Opens (creating if missing) the store in `config.dir` and starts its
    /// background thread.
    pub fn open(config: StoreConfig) -> Result<Store, StoreError> {
        Store::open_with(config, Arc::new(FsDataFiles))
    }

    /// Like `open`, with data files from `factory` (fault injection).
    pub fn open_with(
        config: StoreConfig,
        factory: Arc<dyn DataFileFactory>,
    ) -> Result<Store, StoreError> {
        let engine = Arc::new(Engine::open(config, factory)?);
        let bg = engine.clone();
        let thread = std::thread::Builder::new()
            .name("clonebd-store".into())
            .spawn(move || background(bg))
            .map_err(|e| StoreError::io("background thread", e))?;
        Ok(Store { handle: Arc::new(Handle { engine, background: Mutex::new(Some(thread)) }) })
    }

    #[cfg(test)]
    pub(crate) fn engine_for_test(&self) -> &Arc<Engine> {
        &self.handle.engine
    }

    fn engine(&self) -> &Arc<Engine> {
        &self.handle.engine
    }

    /// Final commit, then stops the background thread. Idempotent.
    pub fn close(&self) -> Result<(), StoreError> {
        self.handle.stop(true)
    }

    /// Stops without the final commit, as a crash would (tests).
    #[doc(hidden)]
    pub fn abandon(&self) {
        let _ = self.handle.stop(false);
    }

    /// Creates a thin volume.
    pub fn create_volume(
        &self,
        name: &str,
        size: u64,
        chunk_size: u32,
    ) -> Result<Result<VolumeInfo, Refusal>, StoreError> {
        self.engine().create_volume(name, size, chunk_size)
    }

    /// Grows or shrinks a volume; data past a smaller size is dropped.
    pub fn resize_volume(
        &self,
        name: &str,
        size: u64,
    ) -> Result<Result<VolumeInfo, Refusal>, StoreError> {
        self.engine().resize_volume(name, size)
    }

    /// Deletes a volume and its snapshots. Snapshots with clones stay behind
    /// in a hidden origin node until their clones are gone; the name is free at once.
    pub fn delete_volume(&self, name: &str) -> Result<Result<(), Refusal>, StoreError> {
        self.engine().delete_volume(name)
    }

    /// Every volume, by name.
    pub fn volumes(&self) -> Vec<VolumeInfo> {
        let cat = self.engine().catalog.lock();
        cat.names.values().filter_map(|&id| Engine::volume_info(&cat, id)).collect()
    }

    /// One volume.
    pub fn volume(&self, name: &str) -> Option<VolumeInfo> {
        let cat = self.engine().catalog.lock();
        cat.names.get(name).and_then(|&id| Engine::volume_info(&cat, id))
    }

    /// Takes a snapshot (default name: the UTC time, `-2`, `-3`... if taken).
    pub fn create_snapshot(
        &self,
        volume: &str,
        snap: Option<&str>,
        kind: SnapshotKind,
    ) -> Result<Result<SnapshotInfo, Refusal>, StoreError> {
        self.engine().create_snapshot(volume, snap, kind)
    }

    /// Deletes a snapshot; refused while it has clones or is held.
    pub fn delete_snapshot(
        &self,
        volume: &str,
        snap: &str,
    ) -> Result<Result<(), Refusal>, StoreError> {
        self.engine().delete_snapshot(volume, snap)
    }

    /// Snapshots of one volume or of all, oldest first.
    pub fn snapshots(&self, volume: Option<&str>) -> Vec<SnapshotInfo> {
        let cat = self.engine().catalog.lock();
        let mut out: Vec<SnapshotInfo> = Vec::new();
        for (name, &id) in &cat.names {
            if volume.is_some_and(|v| v != name) {
                continue;
            }
            for (e, _) in cat.snaps_of(id) {
                out.extend(Engine::snapshot_info(&cat, id, e));
            }
        }
        out.sort_by_key(|s| s.created_unix);
        out
    }

    /// Sets or clears a snapshot's hold.
    pub fn set_snapshot_hold(
        &self,
        volume: &str,
        snap: &str,
        held: bool,
    ) -> Result<Result<SnapshotInfo, Refusal>, StoreError> {
        self.engine().set_snapshot_hold(volume, snap, held)
    }

    /// Clones `NAME@SNAP`, or `NAME` (snapshotting it first). O(1).
    pub fn create_clone(
        &self,
        source: &str,
        new_name: &str,
    ) -> Result<Result<VolumeInfo, Refusal>, StoreError> {
        self.engine().create_clone(source, new_name)
    }

    /// The clone takes its origin volume's name; the old volume is kept as
    /// `NAME-pre-promote-<time>`.
    pub fn promote(&self, clone: &str) -> Result<Result<Promoted, Refusal>, StoreError> {
        self.engine().promote(clone)
    }

    /// Rolls a volume back to a snapshot; refused while newer snapshots exist.
    pub fn rollback(&self, volume: &str, snap: &str) -> Result<Result<(), Refusal>, StoreError> {
        self.engine().rollback(volume, snap)
    }

    /// Copies a clone's inherited data into it and cuts the lineage.
    pub fn flatten(&self, name: &str) -> Result<Result<VolumeInfo, Refusal>, StoreError> {
        self.engine().flatten(name)
    }

    /// Changed byte ranges between `V@A` and `V@B` (or `V`), chunk granular.
    pub fn diff(
        &self,
        from: &str,
        to: &str,
    ) -> Result<Result<Vec<ByteRange>, Refusal>, StoreError> {
        self.engine().diff(from, to)
    }

    /// Runs GC to completion.
    pub fn gc_now(&self) -> Result<GcReport, StoreError> {
        self.engine().gc_now()
    }

    /// GC progress.
    pub fn gc_status(&self) -> GcStatus {
        self.engine().gc_status()
    }

    /// Opens `NAME` (read-write head) or `NAME@SNAP` (read-only snapshot).
    pub fn open_export(&self, name: &str) -> Option<Export> {
        let engine = self.engine();
        let cat = engine.catalog.lock();
        let (vol, snap) = match name.split_once('@') {
            Some((v, s)) => (v, Some(s)),
            None => (name, None),
        };
        let id = *cat.names.get(vol)?;
        let node = cat.nodes.get(&id)?.state.clone();
        match snap {
            None => Some(Export::head(engine.clone(), node, name.to_string())),
            Some(s) => {
                let (epoch, snap) = cat.snap_by_name(id, s)?;
                Some(Export::snapshot(
                    engine.clone(),
                    node,
                    name.to_string(),
                    epoch,
                    snap.rec.size,
                    snap.alive.clone(),
                ))
            }
        }
    }

    /// Every volume and snapshot as an export.
    pub fn exports(&self) -> Vec<ExportSummary> {
        let cat = self.engine().catalog.lock();
        let mut out = Vec::new();
        for (name, &id) in &cat.names {
            let Some(n) = cat.nodes.get(&id) else { continue };
            if n.state.life() != Life::Volume {
                continue;
            }
            let size = n.state.size();
            let description = match cat.origin(id) {
                Some(o) => format!("clone of {o}, {}", human(size)),
                None => format!("volume {name}, {}", human(size)),
            };
            let chunk_size = n.state.chunk_size;
            out.push(ExportSummary {
                name: name.clone(),
                description,
                size,
                read_only: false,
                chunk_size,
            });
            for (_, s) in cat.snaps_of(id) {
                let kind = match s.rec.kind {
                    SnapshotKind::Manual => "manual",
                    SnapshotKind::Scheduled => "scheduled",
                };
                let held = if s.rec.held { ", held" } else { "" };
                out.push(ExportSummary {
                    name: format!("{name}@{}", s.rec.name),
                    description: format!(
                        "snapshot of {name} taken {}, {kind}{held}",
                        utc_name(s.rec.created)
                    ),
                    size: s.rec.size,
                    read_only: true,
                    chunk_size,
                });
            }
        }
        out
    }

    /// Group commit: every write acknowledged before this call becomes durable.
    pub fn commit(&self) -> Result<(), StoreError> {
        self.engine().check_open()?;
        self.engine().commit()
    }

    /// sled's disk use.
    pub fn sled_size_on_disk(&self) -> u64 {
        self.engine().meta.size_on_disk()
    }

    /// Counters for metrics: copy-ups, allocations, GC progress, sizes.
    pub fn stats(&self) -> StoreStats {
        let engine = self.engine();
        let gc = engine.gc_status();
        StoreStats {
            copy_ups: engine.write_stats.copy_ups.load(Ordering::Relaxed),
            copy_up_bytes: engine.write_stats.copy_up_bytes.load(Ordering::Relaxed),
            commits: engine.write_stats.commits.load(Ordering::Relaxed),
            map_commits: engine.write_stats.map_commits.load(Ordering::Relaxed),
            intent_flushes: engine.write_stats.intent_flushes.load(Ordering::Relaxed),
            chunks_allocated: engine.write_stats.chunks_allocated.load(Ordering::Relaxed),
            gc_chunks_freed: gc.chunks_freed_total,
            gc_bytes_freed: gc.bytes_freed_total,
            gc_pending_nodes: gc.pending_nodes,
            free_chunks: engine.alloc.free_count(),
            sled_bytes: engine.meta.size_on_disk(),
        }
    }

    /// Chunks in the free lists, ready for reuse (diagnostics).
    pub fn free_chunks(&self) -> usize {
        self.engine().alloc.free_count()
    }
}
