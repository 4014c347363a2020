//! THE model test: random sequences of write, trim, zero, resize, snapshot,
//! clone, promote, rollback, flatten, delete, GC and restart, checked after
//! every step against a `Vec<u8>` per volume and a frozen copy per snapshot.

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::sample::Index;

use super::{check_invariants, config, read_all};
use crate::{Refusal, SnapshotKind, Store};

const SIZE: usize = 192 * 1024;

#[derive(Clone, Debug)]
enum Op {
    Write { vol: Index, off: Index, len: usize, byte: u8 },
    Zero { vol: Index, off: Index, len: usize },
    Trim { vol: Index, off: Index, len: usize },
    Resize { vol: Index, sectors: u64 },
    Snapshot { vol: Index },
    DeleteSnapshot { snap: Index },
    Clone { snap: Index },
    CloneHead { vol: Index },
    Promote { vol: Index },
    Rollback { snap: Index },
    Flatten { vol: Index },
    DeleteVolume { vol: Index },
    Create { chunk: u32 },
    Gc,
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    let idx = any::<Index>;
    prop_oneof![
        8 => (idx(), idx(), 1usize..40_000, 1u8..=255).prop_map(|(vol, off, len, byte)| Op::Write { vol, off, len, byte }),
        2 => (idx(), idx(), 1usize..40_000).prop_map(|(vol, off, len)| Op::Zero { vol, off, len }),
        2 => (idx(), idx(), 1usize..40_000).prop_map(|(vol, off, len)| Op::Trim { vol, off, len }),
        1 => (idx(), 1u64..(2 * SIZE as u64 / 512)).prop_map(|(vol, sectors)| Op::Resize { vol, sectors }),
        3 => idx().prop_map(|vol| Op::Snapshot { vol }),
        2 => idx().prop_map(|snap| Op::DeleteSnapshot { snap }),
        2 => idx().prop_map(|snap| Op::Clone { snap }),
        1 => idx().prop_map(|vol| Op::CloneHead { vol }),
        1 => idx().prop_map(|vol| Op::Promote { vol }),
        2 => idx().prop_map(|snap| Op::Rollback { snap }),
        1 => idx().prop_map(|vol| Op::Flatten { vol }),
        1 => idx().prop_map(|vol| Op::DeleteVolume { vol }),
        1 => prop::sample::select(vec![4096u32, 8192, 16384]).prop_map(|chunk| Op::Create { chunk }),
        1 => Just(Op::Gc),
        1 => Just(Op::Restart),
    ]
}

#[derive(Clone, Debug)]
struct Snap {
    name: String,
    data: Vec<u8>,
}

#[derive(Clone, Debug)]
struct Vol {
    /// Model identity of the lineage node (survives renames).
    node: u64,
    chunk: u32,
    data: Vec<u8>,
    snaps: Vec<Snap>,
    /// (origin node, snapshot name)
    origin: Option<(u64, String)>,
}

#[derive(Default)]
struct Model {
    vols: BTreeMap<String, Vol>,
    /// Nodes of deleted volumes kept for their clones: node → (snapshot
    /// names, origin). They still depend on their own origin.
    hidden: BTreeMap<u64, (Vec<String>, Option<(u64, String)>)>,
    next: u64,
}

impl Model {
    fn pick(&self, i: &Index) -> Option<String> {
        if self.vols.is_empty() {
            return None;
        }
        self.vols.keys().nth(i.index(self.vols.len())).cloned()
    }

    fn all_snaps(&self) -> Vec<(String, String)> {
        self.vols
            .iter()
            .flat_map(|(v, vol)| vol.snaps.iter().map(move |s| (v.clone(), s.name.clone())))
            .collect()
    }

    fn pick_snap(&self, i: &Index) -> Option<(String, String)> {
        let all = self.all_snaps();
        if all.is_empty() { None } else { Some(all[i.index(all.len())].clone()) }
    }

    fn has_clones(&self, node: u64, snap: &str) -> bool {
        let is =
            |o: &Option<(u64, String)>| o.as_ref().is_some_and(|(n, s)| *n == node && s == snap);
        self.vols.values().any(|v| is(&v.origin)) || self.hidden.values().any(|(_, o)| is(o))
    }

    fn node_is_volume(&self, node: u64) -> bool {
        self.vols.values().any(|v| v.node == node)
    }

    /// A clone stopped needing its origin (deleted or flattened).
    fn release(&mut self, origin: Option<(u64, String)>) {
        let Some((n, s)) = origin else { return };
        if self.has_clones(n, &s) {
            return;
        }
        let Some((snaps, _)) = self.hidden.get_mut(&n) else { return };
        snaps.retain(|x| *x != s);
        if snaps.is_empty() {
            let (_, up) = self.hidden.remove(&n).unwrap();
            self.release(up);
        }
    }
}

fn range(len: usize, off: &Index, want: usize) -> (usize, usize) {
    let off = off.index(len);
    (off, want.min(len - off))
}

fn run(ops: Vec<Op>, chunk: u32) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(config(dir.path())).unwrap();
    let mut m = Model::default();
    let mut names = 0u32;
    store.create_volume("v0", SIZE as u64, chunk).unwrap().unwrap();
    m.vols.insert(
        "v0".into(),
        Vol { node: 0, chunk, data: vec![0; SIZE], snaps: vec![], origin: None },
    );
    m.next = 1;
    for op in ops {
        match &op {
            Op::Write { vol, off, len, byte } => {
                let Some(v) = m.pick(vol) else { continue };
                let model = m.vols.get_mut(&v).unwrap();
                let (o, l) = range(model.data.len(), off, *len);
                let data = vec![*byte; l];
                store.open_export(&v).unwrap().write(o as u64, &data).unwrap();
                model.data[o..o + l].copy_from_slice(&data);
            }
            Op::Zero { vol, off, len } => {
                let Some(v) = m.pick(vol) else { continue };
                let model = m.vols.get_mut(&v).unwrap();
                let (o, l) = range(model.data.len(), off, *len);
                store.open_export(&v).unwrap().write_zeroes(o as u64, l as u64, true).unwrap();
                model.data[o..o + l].fill(0);
            }
            Op::Trim { vol, off, len } => {
                let Some(v) = m.pick(vol) else { continue };
                let model = m.vols.get_mut(&v).unwrap();
                let (o, l) = range(model.data.len(), off, *len);
                store.open_export(&v).unwrap().trim(o as u64, l as u64).unwrap();
                let cs = model.chunk as usize;
                let (first, end) = (o.div_ceil(cs) * cs, (o + l) / cs * cs);
                if first < end {
                    model.data[first..end].fill(0);
                }
            }
            Op::Resize { vol, sectors } => {
                let Some(v) = m.pick(vol) else { continue };
                let size = *sectors as usize * 512;
                store.resize_volume(&v, size as u64).unwrap().unwrap();
                m.vols.get_mut(&v).unwrap().data.resize(size, 0);
            }
            Op::Snapshot { vol } => {
                let Some(v) = m.pick(vol) else { continue };
                names += 1;
                let name = format!("s{names}");
                store.create_snapshot(&v, Some(&name), SnapshotKind::Manual).unwrap().unwrap();
                let model = m.vols.get_mut(&v).unwrap();
                let data = model.data.clone();
                model.snaps.push(Snap { name, data });
            }
            Op::DeleteSnapshot { snap } => {
                let Some((v, s)) = m.pick_snap(snap) else { continue };
                let node = m.vols[&v].node;
                let r = store.delete_snapshot(&v, &s).unwrap();
                if m.has_clones(node, &s) {
                    prop_assert!(matches!(r, Err(Refusal::HasDependents { .. })), "{r:?}");
                } else {
                    prop_assert!(r.is_ok(), "{r:?}");
                    m.vols.get_mut(&v).unwrap().snaps.retain(|x| x.name != s);
                }
            }
            Op::Clone { snap } | Op::CloneHead { vol: snap } => {
                if m.vols.len() >= 6 {
                    continue;
                }
                let (source, origin) = match &op {
                    Op::Clone { .. } => {
                        let Some((v, s)) = m.pick_snap(snap) else { continue };
                        (format!("{v}@{s}"), (v, s))
                    }
                    _ => {
                        let Some(v) = m.pick(snap) else { continue };
                        (v.clone(), (v, String::new()))
                    }
                };
                names += 1;
                let new = format!("c{names}");
                store.create_clone(&source, &new).unwrap().unwrap();
                let (ov, mut os) = origin;
                if os.is_empty() {
                    // the implicit snapshot is the newest one
                    let info = store.snapshots(Some(&ov));
                    os = info.last().unwrap().name.clone();
                    let model = m.vols.get_mut(&ov).unwrap();
                    let data = model.data.clone();
                    model.snaps.push(Snap { name: os.clone(), data });
                }
                let o = &m.vols[&ov];
                let data = o.snaps.iter().find(|x| x.name == os).unwrap().data.clone();
                let vol = Vol {
                    node: m.next,
                    chunk: o.chunk,
                    data,
                    snaps: vec![],
                    origin: Some((o.node, os)),
                };
                m.next += 1;
                m.vols.insert(new, vol);
            }
            Op::Promote { vol } => {
                let Some(v) = m.pick(vol) else { continue };
                let r = store.promote(&v).unwrap();
                let origin = m.vols[&v].origin.clone();
                match origin {
                    None => prop_assert!(matches!(r, Err(Refusal::NotAClone(_))), "{r:?}"),
                    Some((n, _)) if !m.node_is_volume(n) => {
                        prop_assert!(matches!(r, Err(Refusal::OriginGone(_))), "{r:?}")
                    }
                    Some((n, _)) => {
                        let p = r.map_err(|e| TestCaseError::fail(e.to_string()))?;
                        let old = m.vols.iter().find(|(_, x)| x.node == n).unwrap().0.clone();
                        prop_assert_eq!(&p.volume, &old);
                        let old_vol = m.vols.remove(&old).unwrap();
                        let clone = m.vols.remove(&v).unwrap();
                        m.vols.insert(p.rollback_name, old_vol);
                        m.vols.insert(old, clone);
                    }
                }
            }
            Op::Rollback { snap } => {
                let Some((v, s)) = m.pick_snap(snap) else { continue };
                let r = store.rollback(&v, &s).unwrap();
                let model = m.vols.get_mut(&v).unwrap();
                let pos = model.snaps.iter().position(|x| x.name == s).unwrap();
                if pos + 1 < model.snaps.len() {
                    prop_assert!(matches!(r, Err(Refusal::NewerSnapshots { .. })), "{r:?}");
                } else {
                    prop_assert!(r.is_ok(), "{r:?}");
                    model.data = model.snaps[pos].data.clone();
                }
            }
            Op::Flatten { vol } => {
                let Some(v) = m.pick(vol) else { continue };
                let r = store.flatten(&v).unwrap();
                let model = &m.vols[&v];
                if model.origin.is_none() {
                    prop_assert!(matches!(r, Err(Refusal::NotAClone(_))), "{r:?}");
                } else if !model.snaps.is_empty() {
                    prop_assert!(matches!(r, Err(Refusal::CloneHasSnapshots { .. })), "{r:?}");
                } else {
                    prop_assert!(r.is_ok(), "{r:?}");
                    let origin = m.vols.get_mut(&v).unwrap().origin.take();
                    m.release(origin);
                }
            }
            Op::DeleteVolume { vol } => {
                let Some(v) = m.pick(vol) else { continue };
                store.delete_volume(&v).unwrap().unwrap();
                let model = m.vols.remove(&v).unwrap();
                let kept: Vec<String> = model
                    .snaps
                    .iter()
                    .filter(|s| m.has_clones(model.node, &s.name))
                    .map(|s| s.name.clone())
                    .collect();
                if kept.is_empty() {
                    m.release(model.origin);
                } else {
                    m.hidden.insert(model.node, (kept, model.origin));
                }
            }
            Op::Create { chunk } => {
                if m.vols.len() >= 6 {
                    continue;
                }
                names += 1;
                let name = format!("n{names}");
                store.create_volume(&name, SIZE as u64 / 2, *chunk).unwrap().unwrap();
                let vol = Vol {
                    node: m.next,
                    chunk: *chunk,
                    data: vec![0; SIZE / 2],
                    snaps: vec![],
                    origin: None,
                };
                m.next += 1;
                m.vols.insert(name, vol);
            }
            Op::Gc => {
                store.gc_now().unwrap();
                check_invariants(&store);
            }
            Op::Restart => {
                store.close().unwrap();
                drop(store);
                store = Store::open(config(dir.path())).unwrap();
            }
        }
        let names_now: Vec<String> = store.volumes().into_iter().map(|v| v.name).collect();
        prop_assert_eq!(names_now, m.vols.keys().cloned().collect::<Vec<_>>(), "after {:?}", op);
        for (name, vol) in &m.vols {
            prop_assert!(
                read_all(&store, name) == vol.data,
                "volume {} differs after {:?}",
                name,
                op
            );
            for s in &vol.snaps {
                let full = format!("{name}@{}", s.name);
                prop_assert!(read_all(&store, &full) == s.data, "{} differs after {:?}", full, op);
            }
        }
    }
    store.gc_now().unwrap();
    check_invariants(&store);
    // deleting everything returns every chunk
    for name in m.vols.keys() {
        store.delete_volume(name).unwrap().unwrap();
    }
    store.gc_now().unwrap();
    check_invariants(&store);
    prop_assert_eq!(store.engine_for_test().catalog.lock().nodes.len(), 0);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: super::cases(128), ..ProptestConfig::default() })]

    #[test]
    // 16 KiB chunks have four 4 KiB sub-blocks: clones of them make
    // partial chunks (first writes copy only what they touch).
    fn store_matches_model(
        ops in prop::collection::vec(op(), 1..48),
        chunk in prop::sample::select(vec![4096u32, 16384]),
    ) {
        run(ops, chunk)?;
    }
}
