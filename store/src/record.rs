//! Catalog records (values of the `N` and `S` keys, see `keys.rs`).
//!
//! NodeRec (big-endian):
//!
//! ```text
//! u8  version = 1
//! u8  life            0 volume, 1 hidden origin (no head; kept for clones), 2 dead (GC removes it)
//! u32 chunk_size
//! u64 size            bytes
//! u64 head            head epoch
//! u64 parent_node     0: a root node
//! u64 parent_epoch
//! i64 created_unix
//! u8  name_len, name  volume name (empty unless life = 0)
//! u8  label_len, label  the last volume name, shown in origins of clones
//! u16 n_trunc, n × (u64 epoch, u64 size)   shrinks: entries born ≤ epoch read as
//!                     zeroes at chunks ≥ ceil(size / chunk_size) for readers after it
//! ```
//!
//! SnapRec (big-endian):
//!
//! ```text
//! u8  version = 1
//! u8  kind            0 manual, 1 scheduled
//! u8  held            0/1
//! i64 created_unix
//! u64 size            the volume's size when it was taken
//! u8  name_len, name
//! ```

use crate::keys::NodeId;

/// Whether a snapshot was taken by hand or by the schedule.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum SnapshotKind {
    /// Taken by an operator.
    Manual,
    /// Taken by the snapshot schedule.
    Scheduled,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Life {
    Volume,
    Hidden,
    Dead,
}

/// A shrink: entries born at or before `epoch` are cut at `size`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) struct Trunc {
    pub(crate) epoch: u64,
    pub(crate) size: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NodeRec {
    pub(crate) life: Life,
    pub(crate) chunk_size: u32,
    pub(crate) size: u64,
    pub(crate) head: u64,
    pub(crate) parent: Option<(NodeId, u64)>,
    pub(crate) created: i64,
    pub(crate) name: String,
    pub(crate) label: String,
    pub(crate) truncs: Vec<Trunc>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SnapRec {
    pub(crate) kind: SnapshotKind,
    pub(crate) held: bool,
    pub(crate) created: i64,
    pub(crate) size: u64,
    pub(crate) name: String,
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }
    fn str(&mut self) -> Option<String> {
        let n = self.u8()?;
        String::from_utf8(self.take(usize::from(n))?.to_vec()).ok()
    }
}

fn put_str(v: &mut Vec<u8>, s: &str) {
    // invariant: names are validated to at most 128 bytes; labels are names
    let n = u8::try_from(s.len()).unwrap_or(u8::MAX);
    v.push(n);
    v.extend_from_slice(&s.as_bytes()[..usize::from(n)]);
}

impl NodeRec {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut v = vec![1u8];
        v.push(match self.life {
            Life::Volume => 0,
            Life::Hidden => 1,
            Life::Dead => 2,
        });
        v.extend_from_slice(&self.chunk_size.to_be_bytes());
        v.extend_from_slice(&self.size.to_be_bytes());
        v.extend_from_slice(&self.head.to_be_bytes());
        let (pn, pe) = self.parent.map_or((0, 0), |(n, e)| (n.0, e));
        v.extend_from_slice(&pn.to_be_bytes());
        v.extend_from_slice(&pe.to_be_bytes());
        v.extend_from_slice(&self.created.to_be_bytes());
        put_str(&mut v, &self.name);
        put_str(&mut v, &self.label);
        let n = u16::try_from(self.truncs.len()).unwrap_or(u16::MAX);
        v.extend_from_slice(&n.to_be_bytes());
        for t in self.truncs.iter().take(usize::from(n)) {
            v.extend_from_slice(&t.epoch.to_be_bytes());
            v.extend_from_slice(&t.size.to_be_bytes());
        }
        v
    }

    pub(crate) fn decode(v: &[u8]) -> Option<NodeRec> {
        let mut r = Reader(v);
        if r.u8()? != 1 {
            return None;
        }
        let life = match r.u8()? {
            0 => Life::Volume,
            1 => Life::Hidden,
            2 => Life::Dead,
            _ => return None,
        };
        let chunk_size = r.u32()?;
        let size = r.u64()?;
        let head = r.u64()?;
        let (pn, pe) = (r.u64()?, r.u64()?);
        let created = r.u64()? as i64;
        let name = r.str()?;
        let label = r.str()?;
        let n = r.u16()?;
        let mut truncs = Vec::with_capacity(usize::from(n));
        for _ in 0..n {
            truncs.push(Trunc { epoch: r.u64()?, size: r.u64()? });
        }
        if !r.0.is_empty() || !chunk_size.is_power_of_two() || head == 0 {
            return None;
        }
        let parent = (pn != 0).then_some((NodeId(pn), pe));
        Some(NodeRec { life, chunk_size, size, head, parent, created, name, label, truncs })
    }
}

impl SnapRec {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut v = vec![1u8, u8::from(self.kind == SnapshotKind::Scheduled), u8::from(self.held)];
        v.extend_from_slice(&self.created.to_be_bytes());
        v.extend_from_slice(&self.size.to_be_bytes());
        put_str(&mut v, &self.name);
        v
    }

    pub(crate) fn decode(v: &[u8]) -> Option<SnapRec> {
        let mut r = Reader(v);
        if r.u8()? != 1 {
            return None;
        }
        let kind = match r.u8()? {
            0 => SnapshotKind::Manual,
            1 => SnapshotKind::Scheduled,
            _ => return None,
        };
        let held = match r.u8()? {
            0 => false,
            1 => true,
            _ => return None,
        };
        let created = r.u64()? as i64;
        let size = r.u64()?;
        let name = r.str()?;
        r.0.is_empty().then_some(SnapRec { kind, held, created, size, name })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_record_golden() {
        let rec = NodeRec {
            life: Life::Volume,
            chunk_size: 65536,
            size: 0x1000,
            head: 3,
            parent: Some((NodeId(2), 1)),
            created: 5,
            name: "pg".into(),
            label: "pg".into(),
            truncs: vec![Trunc { epoch: 2, size: 512 }],
        };
        #[rustfmt::skip]
        let want = vec![
            1,                          // version
            0,                          // life: volume
            0, 1, 0, 0,                 // chunk size 65536
            0, 0, 0, 0, 0, 0, 0x10, 0,  // size 4096
            0, 0, 0, 0, 0, 0, 0, 3,     // head epoch 3
            0, 0, 0, 0, 0, 0, 0, 2,     // parent node 2
            0, 0, 0, 0, 0, 0, 0, 1,     // parent epoch 1
            0, 0, 0, 0, 0, 0, 0, 5,     // created
            2, b'p', b'g',              // name
            2, b'p', b'g',              // label
            0, 1,                       // one shrink
            0, 0, 0, 0, 0, 0, 0, 2,     //   at epoch 2
            0, 0, 0, 0, 0, 0, 2, 0,     //   to 512 bytes
        ];
        assert_eq!(rec.encode(), want);
        assert_eq!(NodeRec::decode(&want), Some(rec));
        assert_eq!(NodeRec::decode(&want[..want.len() - 1]), None);
    }

    #[test]
    fn snap_record_golden() {
        let rec = SnapRec {
            kind: SnapshotKind::Scheduled,
            held: true,
            created: 7,
            size: 512,
            name: "s1".into(),
        };
        #[rustfmt::skip]
        let want = vec![
            1,                          // version
            1,                          // kind: scheduled
            1,                          // held
            0, 0, 0, 0, 0, 0, 0, 7,     // created
            0, 0, 0, 0, 0, 0, 2, 0,     // size 512
            2, b's', b'1',              // name
        ];
        assert_eq!(rec.encode(), want);
        assert_eq!(SnapRec::decode(&want), Some(rec));
        assert_eq!(SnapRec::decode(&[1, 2, 0]), None);
    }
}
