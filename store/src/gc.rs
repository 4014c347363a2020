//! Garbage collection (ARCHITECTURE "Garbage collection"): walks the groups
//! of nodes marked after a snapshot, volume or clone delete; deletes entries
//! no reader sees, hands ownership of still-referenced chunks to the first
//! surviving entry that references them, frees the rest. Resumable (the
//! cursor is the `G` key) and bounded per step.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::engine::Engine;
use crate::entry::{GroupEntry, SLOTS, Slot};
use crate::error::StoreError;
use crate::info::{GcReport, GcStatus};
use crate::keys::{gc_key, node_key, owned_key};
use crate::meta::KeyOp;
use crate::node::{HEAD, NodeState};
use crate::pending::OwnedDelta;
use crate::record::Life;

/// Groups per background step.
pub(crate) const GC_STEP_GROUPS: usize = 64;

impl Engine {
    pub(crate) fn gc_status(&self) -> GcStatus {
        GcStatus {
            pending_nodes: self.catalog.lock().gc.len(),
            chunks_freed_total: self.gc_stats.chunks_freed.load(Ordering::Relaxed),
            bytes_freed_total: self.gc_stats.bytes_freed.load(Ordering::Relaxed),
        }
    }

    /// Runs GC to completion, then commits so the space is returned.
    pub(crate) fn gc_now(&self) -> Result<GcReport, StoreError> {
        self.check_open()?;
        let _gc = self.gc_lock.lock();
        let mut report = GcReport::default();
        while let Some(r) = self.gc_step(1024)? {
            report.chunks_freed += r.chunks_freed;
            report.bytes_freed += r.bytes_freed;
        }
        self.commit()?;
        Ok(report)
    }

    /// One bounded step on the first marked node; `None` when there is no work.
    /// The caller holds `gc_lock`.
    pub(crate) fn gc_step(&self, max_groups: usize) -> Result<Option<GcReport>, StoreError> {
        let first = self.catalog.lock().gc.iter().next().map(|(id, m)| (*id, *m));
        let Some((id, mark)) = first else { return Ok(None) };
        if mark.resume == 0 {
            // entries still in the pending map reach sled, where we scan
            self.commit()?;
        }
        let mut cat = self.catalog.lock();
        if cat.gc.get(&id).map(|m| m.generation) != Some(mark.generation) {
            return Ok(Some(GcReport::default())); // marked again: start over
        }
        let Some(n) = cat.nodes.get(&id) else {
            cat.gc.remove(&id);
            self.pending.push_extras(vec![KeyOp::Del(gc_key(id).to_vec())]);
            return Ok(Some(GcReport::default()));
        };
        let node = n.state.clone();
        // the readers must not change until the step is done: snapshot,
        // clone and rollback need the op lock exclusively. Taken under the
        // catalog lock, like every catalog operation does.
        let op = node.op.read();
        let mut readers: Vec<u64> = cat.snaps_of(id).map(|(e, _)| e).collect();
        if node.life() == Life::Volume {
            readers.push(HEAD);
        }
        for n in cat.nodes.values().filter(|n| n.state.life() != Life::Dead) {
            if let Some((p, e)) = n.state.parent.read().as_ref()
                && p.id == id
            {
                readers.push(*e);
            }
        }
        drop(cat);
        let mut report = GcReport::default();
        let groups = self.groups_from(id, mark.resume, max_groups)?;
        for &g in &groups {
            let n = self.gc_group(&node, g, &readers)?;
            report.chunks_freed += n;
            report.bytes_freed += n * u64::from(node.chunk_size);
        }
        drop(op);
        self.gc_stats.chunks_freed.fetch_add(report.chunks_freed, Ordering::Relaxed);
        self.gc_stats.bytes_freed.fetch_add(report.bytes_freed, Ordering::Relaxed);
        let mut cat = self.catalog.lock();
        if cat.gc.get(&id).map(|m| m.generation) != Some(mark.generation) {
            return Ok(Some(report)); // marked again meanwhile: start over
        }
        let mut ops = Vec::new();
        match groups.last() {
            Some(&last) if groups.len() >= max_groups => {
                let resume = last + 1;
                cat.gc.insert(id, crate::catalog::GcMark { resume, ..mark });
                ops.push(KeyOp::Put(gc_key(id).to_vec(), resume.to_be_bytes().to_vec()));
            }
            _ => {
                cat.gc.remove(&id);
                ops.push(KeyOp::Del(gc_key(id).to_vec()));
                if node.life() == Life::Dead {
                    cat.nodes.remove(&id);
                    ops.push(KeyOp::Del(node_key(id).to_vec()));
                    for (&b, _) in node.owned.lock().iter() {
                        ops.push(KeyOp::Del(owned_key(id, b).to_vec()));
                    }
                }
            }
        }
        self.pending.push_extras(ops);
        Ok(Some(report))
    }

    /// Collects one group; returns the number of chunks freed.
    fn gc_group(
        &self,
        node: &Arc<NodeState>,
        group: u64,
        readers: &[u64],
    ) -> Result<u64, StoreError> {
        let _g = self.write_stripe(node.id, group);
        let versions = self.all_versions(node.id, group)?;
        let mut visible = vec![false; versions.len()];
        for &r in readers {
            if let Some(i) = versions.iter().rposition(|(b, _)| *b <= r) {
                visible[i] = true;
            }
        }
        if visible.iter().all(|v| *v) {
            return Ok(0);
        }
        let mut new: Vec<GroupEntry> = versions.iter().map(|(_, e)| e.clone()).collect();
        let mut changed = vec![false; versions.len()];
        let mut freed = Vec::new();
        let mut deltas: BTreeMap<u64, i64> = BTreeMap::new();
        for slot in 0..SLOTS {
            for (i, (birth, e)) in versions.iter().enumerate() {
                let Slot::Chunk { id, owned: true, .. } = e.slot(slot) else { continue };
                if visible[i] {
                    continue;
                }
                // the entries copied forward from this one form a run
                let mut heir = None;
                for (j, (_, later)) in versions.iter().enumerate().skip(i + 1) {
                    match later.slot(slot) {
                        // a partial chunk's heir keeps its mask (the same
                        // id is the same chunk: masks change only in place,
                        // in the owning head entry)
                        Slot::Chunk { id: same, mask, .. } if same == id => {
                            if visible[j] {
                                heir = Some((j, mask));
                                break;
                            }
                        }
                        _ => break,
                    }
                }
                *deltas.entry(*birth).or_default() -= 1;
                match heir {
                    Some((j, mask)) => {
                        new[j].set(slot, Slot::Chunk { id, owned: true, mask });
                        changed[j] = true;
                        *deltas.entry(versions[j].0).or_default() += 1;
                    }
                    None => freed.push((node.class, id)),
                }
            }
        }
        let mut entries = Vec::new();
        for (i, (birth, _)) in versions.iter().enumerate() {
            if !visible[i] {
                entries.push(((node.id, group, *birth), None));
            } else if changed[i] {
                entries.push(((node.id, group, *birth), Some(new[i].clone())));
            }
        }
        let deltas: Vec<OwnedDelta<'_>> = deltas
            .into_iter()
            .filter(|(_, d)| *d != 0)
            .map(|(birth, delta)| OwnedDelta { counters: &node.owned, node: node.id, birth, delta })
            .collect();
        self.pending.record(entries, &[], &freed, &deltas);
        Ok(freed.len() as u64)
    }
}
