//! The catalog in memory: nodes, volume names, snapshots, GC marks. Every
//! change is also written as catalog keys into the next commit.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use crate::keys::{NodeId, gc_key, node_key, snap_key};
use crate::meta::KeyOp;
use crate::node::NodeState;
use crate::record::{Life, NodeRec, SnapRec};

pub(crate) struct NodeEntry {
    pub(crate) state: Arc<NodeState>,
    /// The volume name (empty unless the node is a volume).
    pub(crate) name: String,
    /// The last volume name, shown in clones' origins.
    pub(crate) label: String,
}

pub(crate) struct SnapEntry {
    pub(crate) rec: SnapRec,
    /// Cleared when the snapshot is deleted (its exports end).
    pub(crate) alive: Arc<AtomicBool>,
}

#[derive(Copy, Clone, Debug)]
pub(crate) struct GcMark {
    pub(crate) resume: u64,
    pub(crate) generation: u64,
}

#[derive(Default)]
pub(crate) struct Catalog {
    pub(crate) nodes: BTreeMap<NodeId, NodeEntry>,
    pub(crate) names: BTreeMap<String, NodeId>,
    pub(crate) snaps: BTreeMap<(NodeId, u64), SnapEntry>,
    pub(crate) next_node: u64,
    pub(crate) gc: BTreeMap<NodeId, GcMark>,
    pub(crate) gc_generation: u64,
}

impl Catalog {
    pub(crate) fn node_rec(&self, id: NodeId) -> Option<NodeRec> {
        let n = self.nodes.get(&id)?;
        let s = &n.state;
        Some(NodeRec {
            life: s.life(),
            chunk_size: s.chunk_size,
            size: s.size(),
            head: s.head(),
            parent: s.parent.read().as_ref().map(|(p, e)| (p.id, *e)),
            created: s.created,
            name: n.name.clone(),
            label: n.label.clone(),
            truncs: s.truncs.read().clone(),
        })
    }

    /// The key op that persists node `id` as it is in memory.
    pub(crate) fn node_put(&self, id: NodeId) -> Vec<KeyOp> {
        match self.node_rec(id) {
            Some(r) => vec![KeyOp::Put(node_key(id).to_vec(), r.encode())],
            None => Vec::new(),
        }
    }

    pub(crate) fn snap_put(&self, id: NodeId, epoch: u64) -> Vec<KeyOp> {
        match self.snaps.get(&(id, epoch)) {
            Some(s) => vec![KeyOp::Put(snap_key(id, epoch).to_vec(), s.rec.encode())],
            None => Vec::new(),
        }
    }

    pub(crate) fn snaps_of(&self, id: NodeId) -> impl Iterator<Item = (u64, &SnapEntry)> {
        self.snaps.range((id, 0)..=(id, u64::MAX)).map(|((_, e), s)| (*e, s))
    }

    pub(crate) fn snap_by_name(&self, id: NodeId, name: &str) -> Option<(u64, &SnapEntry)> {
        self.snaps_of(id).find(|(_, s)| s.rec.name == name)
    }

    /// Live clones (not dead) whose origin is `(id, epoch)`.
    pub(crate) fn clones_of(&self, id: NodeId, epoch: u64) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.state.life() != Life::Dead)
            .filter(|(_, n)| {
                n.state.parent.read().as_ref().is_some_and(|(p, e)| p.id == id && *e == epoch)
            })
            .map(|(k, _)| *k)
            .collect()
    }

    pub(crate) fn display_name(&self, id: NodeId) -> String {
        match self.nodes.get(&id) {
            Some(n) if !n.name.is_empty() => n.name.clone(),
            Some(n) => format!("{} (deleted)", n.label),
            None => format!("node {}", id.0),
        }
    }

    /// Marks a node for GC (from its first group); returns the key op.
    pub(crate) fn mark_gc(&mut self, id: NodeId) -> KeyOp {
        self.gc_generation += 1;
        self.gc.insert(id, GcMark { resume: 0, generation: self.gc_generation });
        KeyOp::Put(gc_key(id).to_vec(), 0u64.to_be_bytes().to_vec())
    }

    /// The origin `V@S` of a clone node.
    pub(crate) fn origin(&self, id: NodeId) -> Option<String> {
        let n = self.nodes.get(&id)?;
        let (p, e) = n.state.parent.read().as_ref().map(|(p, e)| (p.id, *e))?;
        let snap =
            self.snaps.get(&(p, e)).map_or_else(|| format!("epoch{e}"), |s| s.rec.name.clone());
        let pname = self.nodes.get(&p).map_or_else(String::new, |pn| {
            if pn.name.is_empty() { pn.label.clone() } else { pn.name.clone() }
        });
        Some(format!("{pname}@{snap}"))
    }
}
