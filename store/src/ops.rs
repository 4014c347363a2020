//! Catalog operations (ARCHITECTURE "Catalog"): each takes the catalog lock,
//! then the node's `op` lock exclusively where the data path must pause,
//! changes memory, queues its catalog keys and commits them together with
//! every pending write (so a snapshot contains every acknowledged write).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::catalog::{Catalog, NodeEntry, SnapEntry};
use crate::engine::Engine;
use crate::entry::GroupEntry;
use crate::error::{Refusal, StoreError};
use crate::info::{
    MAX_CHUNK_SIZE, MAX_VOLUME_SIZE, MIN_CHUNK_SIZE, Promoted, SnapshotInfo, VolumeInfo, now_unix,
    utc_name, valid_name,
};
use crate::keys::{NEXT_NODE, NodeId, decode_map_key, map_key, snap_key};
use crate::meta::KeyOp;
use crate::node::NodeState;
use crate::pending::{OwnedDelta, PENDING_SOFT_LIMIT};
use crate::record::{Life, SnapRec, SnapshotKind, Trunc};

pub(crate) type Outcome<T> = Result<Result<T, Refusal>, StoreError>;

macro_rules! refuse {
    ($r:expr) => {
        return Ok(Err($r))
    };
}

fn check_size(size: u64) -> Result<(), Refusal> {
    if size == 0 || !size.is_multiple_of(512) || size > MAX_VOLUME_SIZE {
        return Err(Refusal::InvalidSize(format!(
            "{size} bytes: a volume size must be a positive multiple of 512 of at most 2^63"
        )));
    }
    Ok(())
}

fn next_id(cat: &mut Catalog) -> (NodeId, KeyOp) {
    let id = NodeId(cat.next_node);
    cat.next_node += 1;
    (id, KeyOp::Put(NEXT_NODE.to_vec(), cat.next_node.to_be_bytes().to_vec()))
}

impl Engine {
    pub(crate) fn volume_id(cat: &Catalog, name: &str) -> Result<NodeId, Refusal> {
        cat.names.get(name).copied().ok_or_else(|| Refusal::NotFound(name.to_string()))
    }

    /// The live volume `name`: its node id and state.
    pub(crate) fn volume_node(
        cat: &Catalog,
        name: &str,
    ) -> Result<(NodeId, Arc<NodeState>), Refusal> {
        let id = Self::volume_id(cat, name)?;
        let state = cat.nodes.get(&id).map(|n| n.state.clone());
        state.map(|s| (id, s)).ok_or_else(|| Refusal::NotFound(name.to_string()))
    }

    pub(crate) fn volume_info(cat: &Catalog, id: NodeId) -> Option<VolumeInfo> {
        let n = cat.nodes.get(&id)?;
        let s = &n.state;
        Some(VolumeInfo {
            name: n.name.clone(),
            size: s.size(),
            chunk_size: s.chunk_size,
            origin: cat.origin(id),
            written_bytes: s.owned_total() * u64::from(s.chunk_size),
            snapshot_count: cat.snaps_of(id).count(),
            created_unix: s.created,
        })
    }

    pub(crate) fn snapshot_info(cat: &Catalog, id: NodeId, epoch: u64) -> Option<SnapshotInfo> {
        let n = cat.nodes.get(&id)?;
        let s = cat.snaps.get(&(id, epoch))?;
        let prev = cat.snaps_of(id).take_while(|(e, _)| *e < epoch).last().map_or(0, |(e, _)| e);
        Some(SnapshotInfo {
            volume: n.name.clone(),
            name: s.rec.name.clone(),
            created_unix: s.rec.created,
            kind: s.rec.kind,
            held: s.rec.held,
            clones: cat.clones_of(id, epoch).into_iter().map(|c| cat.display_name(c)).collect(),
            written_since_previous: n.state.owned_between(prev, epoch)
                * u64::from(n.state.chunk_size),
        })
    }

    pub(crate) fn create_volume(
        &self,
        name: &str,
        size: u64,
        chunk_size: u32,
    ) -> Outcome<VolumeInfo> {
        self.check_open()?;
        if !valid_name(name) {
            refuse!(Refusal::InvalidName(name.to_string()));
        }
        if let Err(r) = check_size(size) {
            refuse!(r);
        }
        if !chunk_size.is_power_of_two() || !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&chunk_size)
        {
            refuse!(Refusal::InvalidChunkSize(chunk_size));
        }
        let mut cat = self.catalog.lock();
        if cat.names.contains_key(name) {
            refuse!(Refusal::NameTaken(name.to_string()));
        }
        let (id, next) = next_id(&mut cat);
        let state = Arc::new(NodeState::new(id, chunk_size, now_unix(), 1, size));
        cat.nodes.insert(id, NodeEntry { state, name: name.into(), label: name.into() });
        cat.names.insert(name.to_string(), id);
        let mut ops = cat.node_put(id);
        ops.push(next);
        self.pending.push_extras(ops);
        self.commit()?;
        Ok(Self::volume_info(&cat, id).ok_or_else(|| Refusal::NotFound(name.into())))
    }

    pub(crate) fn resize_volume(&self, name: &str, size: u64) -> Outcome<VolumeInfo> {
        self.check_open()?;
        if let Err(r) = check_size(size) {
            refuse!(r);
        }
        let cat = self.catalog.lock();
        let (id, state) = match Self::volume_node(&cat, name) {
            Ok(found) => found,
            Err(r) => refuse!(r),
        };
        let _w = state.op.write();
        let old = state.size();
        if size < old {
            let cs = u64::from(state.chunk_size);
            if !size.is_multiple_of(cs) {
                let end = old.min(size.next_multiple_of(cs));
                self.zero_node(&state, size, end - size, true)?;
            }
            // entries born up to now read as zeroes past the new size
            let h = state.head();
            state.truncs.write().push(Trunc { epoch: h, size });
            state.head.store(h + 1, Ordering::Release);
        }
        state.size.store(size, Ordering::Release);
        self.pending.push_extras(cat.node_put(id));
        self.commit()?;
        Ok(Self::volume_info(&cat, id).ok_or_else(|| Refusal::NotFound(name.into())))
    }

    /// Deletes a volume and its snapshots; a snapshot with clones keeps the
    /// node as a hidden origin (its name is free at once).
    pub(crate) fn delete_volume(&self, name: &str) -> Outcome<()> {
        self.check_open()?;
        let mut cat = self.catalog.lock();
        let (id, state) = match Self::volume_node(&cat, name) {
            Ok(found) => found,
            Err(r) => refuse!(r),
        };
        let _w = state.op.write();
        let mut ops = Vec::new();
        let epochs: Vec<u64> = cat.snaps_of(id).map(|(e, _)| e).collect();
        let mut keep = false;
        for e in epochs {
            if cat.clones_of(id, e).is_empty() {
                Self::drop_snapshot(&mut cat, id, e, &mut ops);
            } else {
                // kept for its clones, but no longer an export
                if let Some(s) = cat.snaps.get(&(id, e)) {
                    s.alive.store(false, Ordering::Release);
                }
                keep = true;
            }
        }
        cat.names.remove(name);
        if let Some(n) = cat.nodes.get_mut(&id) {
            n.name.clear();
        }
        state.set_life(if keep { Life::Hidden } else { Life::Dead });
        ops.extend(cat.node_put(id));
        ops.push(cat.mark_gc(id));
        if !keep {
            Self::release_origin(&mut cat, id, &mut ops);
        }
        self.pending.push_extras(ops);
        self.commit()?;
        self.wake_background();
        self.lineage.clear();
        Ok(Ok(()))
    }

    fn drop_snapshot(cat: &mut Catalog, id: NodeId, epoch: u64, ops: &mut Vec<KeyOp>) {
        if let Some(s) = cat.snaps.remove(&(id, epoch)) {
            s.alive.store(false, Ordering::Release);
        }
        ops.push(KeyOp::Del(snap_key(id, epoch).to_vec()));
    }

    /// `id` (now dead) no longer needs its origin.
    pub(crate) fn release_origin(cat: &mut Catalog, id: NodeId, ops: &mut Vec<KeyOp>) {
        let parent = cat.nodes.get(&id).and_then(|n| n.state.parent.read().clone());
        if let Some((p, e)) = parent {
            Self::release_snapshot(cat, p, e, ops);
        }
    }

    /// Snapshot `(p, e)` lost a clone: a hidden origin's snapshot without
    /// clones goes, and a hidden node without snapshots dies (upwards).
    pub(crate) fn release_snapshot(
        cat: &mut Catalog,
        p: Arc<NodeState>,
        e: u64,
        ops: &mut Vec<KeyOp>,
    ) {
        let (mut p, mut e) = (p, e);
        loop {
            if p.life() != Life::Hidden || !cat.clones_of(p.id, e).is_empty() {
                return;
            }
            Self::drop_snapshot(cat, p.id, e, ops);
            ops.push(cat.mark_gc(p.id));
            if cat.snaps_of(p.id).next().is_some() {
                return;
            }
            p.set_life(Life::Dead);
            ops.extend(cat.node_put(p.id));
            let next = p.parent.read().clone();
            match next {
                Some((pp, pe)) => (p, e) = (pp, pe),
                None => return,
            }
        }
    }

    /// Takes a snapshot with the catalog lock held; returns its epoch.
    fn snapshot_locked(
        &self,
        cat: &mut Catalog,
        id: NodeId,
        name: String,
        kind: SnapshotKind,
        created: i64,
    ) -> Result<u64, StoreError> {
        let Some(state) = cat.nodes.get(&id).map(|n| n.state.clone()) else {
            return Err(StoreError::corrupt("snapshot of a missing node"));
        };
        let _w = state.op.write();
        let epoch = state.head();
        state.head.store(epoch + 1, Ordering::Release);
        let rec = SnapRec { kind, held: false, created, size: state.size(), name };
        let alive = Arc::new(AtomicBool::new(true));
        cat.snaps.insert((id, epoch), SnapEntry { rec, alive });
        let mut ops = cat.snap_put(id, epoch);
        ops.extend(cat.node_put(id));
        self.pending.push_extras(ops);
        // commits the writes acknowledged before it, and the snapshot
        self.commit()?;
        Ok(epoch)
    }

    fn default_snap_name(cat: &Catalog, id: NodeId, created: i64) -> String {
        let base = utc_name(created);
        let mut name = base.clone();
        let mut n = 2;
        while cat.snap_by_name(id, &name).is_some() {
            name = format!("{base}-{n}");
            n += 1;
        }
        name
    }

    pub(crate) fn create_snapshot(
        &self,
        volume: &str,
        snap: Option<&str>,
        kind: SnapshotKind,
    ) -> Outcome<SnapshotInfo> {
        self.check_open()?;
        let mut cat = self.catalog.lock();
        let id = match Self::volume_id(&cat, volume) {
            Ok(id) => id,
            Err(r) => refuse!(r),
        };
        let created = now_unix();
        let name = match snap {
            Some(s) if !valid_name(s) => refuse!(Refusal::InvalidName(s.into())),
            Some(s) if cat.snap_by_name(id, s).is_some() => {
                refuse!(Refusal::NameTaken(format!("{volume}@{s}")))
            }
            Some(s) => s.to_string(),
            None => Self::default_snap_name(&cat, id, created),
        };
        let epoch = self.snapshot_locked(&mut cat, id, name, kind, created)?;
        Ok(Self::snapshot_info(&cat, id, epoch).ok_or_else(|| Refusal::NotFound(volume.into())))
    }

    fn find_snapshot(cat: &Catalog, volume: &str, snap: &str) -> Result<(NodeId, u64), Refusal> {
        let id = Self::volume_id(cat, volume)?;
        match cat.snap_by_name(id, snap) {
            Some((e, _)) => Ok((id, e)),
            None => Err(Refusal::SnapshotNotFound(format!("{volume}@{snap}"))),
        }
    }

    pub(crate) fn delete_snapshot(&self, volume: &str, snap: &str) -> Outcome<()> {
        self.check_open()?;
        let mut cat = self.catalog.lock();
        let (id, epoch) = match Self::find_snapshot(&cat, volume, snap) {
            Ok(x) => x,
            Err(r) => refuse!(r),
        };
        if cat.snaps.get(&(id, epoch)).is_some_and(|s| s.rec.held) {
            refuse!(Refusal::SnapshotHeld(format!("{volume}@{snap}")));
        }
        let clones = cat.clones_of(id, epoch);
        if !clones.is_empty() {
            refuse!(Refusal::HasDependents {
                what: format!("snapshot {volume}@{snap}"),
                dependents: clones.into_iter().map(|c| cat.display_name(c)).collect(),
            });
        }
        let Some(state) = cat.nodes.get(&id).map(|n| n.state.clone()) else {
            refuse!(Refusal::NotFound(volume.into()))
        };
        let _w = state.op.write();
        let mut ops = Vec::new();
        Self::drop_snapshot(&mut cat, id, epoch, &mut ops);
        ops.push(cat.mark_gc(id));
        self.pending.push_extras(ops);
        self.commit()?;
        self.wake_background();
        self.lineage.clear();
        Ok(Ok(()))
    }

    pub(crate) fn set_snapshot_hold(
        &self,
        volume: &str,
        snap: &str,
        held: bool,
    ) -> Outcome<SnapshotInfo> {
        self.check_open()?;
        let mut cat = self.catalog.lock();
        let (id, epoch) = match Self::find_snapshot(&cat, volume, snap) {
            Ok(x) => x,
            Err(r) => refuse!(r),
        };
        if let Some(s) = cat.snaps.get_mut(&(id, epoch)) {
            s.rec.held = held;
        }
        self.pending.push_extras(cat.snap_put(id, epoch));
        self.commit()?;
        Ok(Self::snapshot_info(&cat, id, epoch).ok_or_else(|| Refusal::NotFound(volume.into())))
    }

    pub(crate) fn create_clone(&self, source: &str, new_name: &str) -> Outcome<VolumeInfo> {
        self.check_open()?;
        if !valid_name(new_name) {
            refuse!(Refusal::InvalidName(new_name.into()));
        }
        let mut cat = self.catalog.lock();
        if cat.names.contains_key(new_name) {
            refuse!(Refusal::NameTaken(new_name.into()));
        }
        let (vol, snap) = match source.split_once('@') {
            Some((v, s)) => (v, Some(s)),
            None => (source, None),
        };
        let pid = match Self::volume_id(&cat, vol) {
            Ok(id) => id,
            Err(r) => refuse!(r),
        };
        let epoch = match snap {
            Some(s) => match cat.snap_by_name(pid, s) {
                Some((e, _)) => e,
                None => refuse!(Refusal::SnapshotNotFound(source.into())),
            },
            None => {
                let created = now_unix();
                let name = Self::default_snap_name(&cat, pid, created);
                self.snapshot_locked(&mut cat, pid, name, SnapshotKind::Manual, created)?
            }
        };
        let Some(parent) = cat.nodes.get(&pid).map(|n| n.state.clone()) else {
            refuse!(Refusal::NotFound(vol.into()))
        };
        let size = cat.snaps.get(&(pid, epoch)).map_or(parent.size(), |s| s.rec.size);
        let (id, next) = next_id(&mut cat);
        let state = Arc::new(NodeState::new(id, parent.chunk_size, now_unix(), 1, size));
        *state.parent.write() = Some((parent, epoch));
        cat.nodes.insert(id, NodeEntry { state, name: new_name.into(), label: new_name.into() });
        cat.names.insert(new_name.to_string(), id);
        let mut ops = cat.node_put(id);
        ops.push(next);
        self.pending.push_extras(ops);
        self.commit()?;
        Ok(Self::volume_info(&cat, id).ok_or_else(|| Refusal::NotFound(new_name.into())))
    }

    pub(crate) fn promote(&self, clone: &str) -> Outcome<Promoted> {
        self.check_open()?;
        let mut cat = self.catalog.lock();
        let cid = match Self::volume_id(&cat, clone) {
            Ok(id) => id,
            Err(r) => refuse!(r),
        };
        let parent = cat.nodes.get(&cid).and_then(|n| n.state.parent.read().clone());
        let Some((p, _)) = parent else { refuse!(Refusal::NotAClone(clone.into())) };
        if p.life() != Life::Volume {
            refuse!(Refusal::OriginGone(clone.into()));
        }
        let vname = cat.nodes.get(&p.id).map(|n| n.name.clone()).unwrap_or_default();
        let stamp = utc_name(now_unix()).replace([':', '-'], "");
        let base = format!("{vname}-pre-promote-{stamp}");
        let mut rollback = base.clone();
        let mut n = 2;
        while cat.names.contains_key(&rollback) {
            rollback = format!("{base}-{n}");
            n += 1;
        }
        if !valid_name(&rollback) {
            refuse!(Refusal::InvalidName(rollback));
        }
        cat.names.remove(clone);
        cat.names.insert(vname.clone(), cid);
        cat.names.insert(rollback.clone(), p.id);
        for (id, name) in [(cid, &vname), (p.id, &rollback)] {
            if let Some(n) = cat.nodes.get_mut(&id) {
                n.name = name.clone();
                n.label = name.clone();
            }
        }
        let mut ops = cat.node_put(cid);
        ops.extend(cat.node_put(p.id));
        self.pending.push_extras(ops);
        self.commit()?;
        Ok(Ok(Promoted { volume: vname, rollback_name: rollback }))
    }

    /// Deletes the head's entries born after the snapshot (nothing else can
    /// see them: newer snapshots must be deleted first) in bounded batches.
    pub(crate) fn rollback(&self, volume: &str, snap: &str) -> Outcome<()> {
        self.check_open()?;
        let cat = self.catalog.lock();
        let (id, epoch) = match Self::find_snapshot(&cat, volume, snap) {
            Ok(x) => x,
            Err(r) => refuse!(r),
        };
        let newer: Vec<String> =
            cat.snaps_of(id).filter(|(e, _)| *e > epoch).map(|(_, s)| s.rec.name.clone()).collect();
        if !newer.is_empty() {
            refuse!(Refusal::NewerSnapshots { volume: volume.into(), snapshots: newer });
        }
        let Some(state) = cat.nodes.get(&id).map(|n| n.state.clone()) else {
            refuse!(Refusal::NotFound(volume.into()))
        };
        let snap_size = cat.snaps.get(&(id, epoch)).map_or(state.size(), |s| s.rec.size);
        let _w = state.op.write();
        // every pending entry of this node into sled, so one scan sees all
        self.commit()?;
        let hi = map_key(NodeId(id.0 + 1), 0, 0);
        let mut from = map_key(id, 0, 0).to_vec();
        loop {
            let page = self.meta.scan(&from, &hi, 1000)?;
            for (k, v) in &page {
                let (_, g, b) = decode_map_key(k).ok_or_else(|| StoreError::corrupt("map key"))?;
                if b <= epoch {
                    continue;
                }
                let e = GroupEntry::decode(v).ok_or_else(|| StoreError::corrupt("map entry"))?;
                let freed: Vec<_> = e.owned_chunks().map(|(_, c)| (state.class, c)).collect();
                let delta = OwnedDelta {
                    counters: &state.owned,
                    node: id,
                    birth: b,
                    delta: -(freed.len() as i64),
                };
                self.pending.record(vec![((id, g, b), None)], &[], &freed, &[delta]);
            }
            if self.pending.len() > PENDING_SOFT_LIMIT {
                self.commit()?;
            }
            match page.last() {
                Some((k, _)) if page.len() == 1000 => {
                    from = k.clone();
                    from.push(0);
                }
                _ => break,
            }
        }
        state.size.store(snap_size, Ordering::Release);
        state.truncs.write().retain(|t| t.epoch < epoch);
        self.pending.push_extras(cat.node_put(id));
        self.commit()?;
        self.lineage.clear();
        Ok(Ok(()))
    }
}
