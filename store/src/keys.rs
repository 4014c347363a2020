//! Key encodings of the single sled tree (big-endian so scans come out in
//! order). Values live in `entry.rs` (map entries) and `record.rs` (catalog).
//!
//! Every key starts with a one-byte prefix:
//!
//! ```text
//! 'M' node_be8 group_be8 birth_be8   block-map entry (entry.rs GroupEntry)
//! 'N' node_be8                       node record (record.rs NodeRec)
//! 'S' node_be8 epoch_be8             snapshot record (record.rs SnapRec)
//! 'C' node_be8 birth_be8             chunks owned by entries of that birth: u64 BE
//! 'F' class_u8 chunk_be8             free chunk (empty value)
//! 'A' class_u8                       allocator high-water mark: u64 BE
//! 'G' node_be8                       node waiting for GC: resume group u64 BE
//! 'X' "next_node"                    next node id: u64 BE
//! 'X' "layout"                       data-file lanes: u64 BE (absent: 1, stores made before striping)
//! 'X' "intent_epoch"                 the intent log's epoch: u64 BE (absent: 0)
//! ```

/// A block-map namespace (lineage); see ARCHITECTURE "Nouns".
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct NodeId(pub(crate) u64);

/// A chunk in the data files of one chunk-size class; 0 is never used.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct ChunkId(pub(crate) u64);

pub(crate) const MAP: u8 = b'M';
pub(crate) const NODE: u8 = b'N';
pub(crate) const SNAP: u8 = b'S';
pub(crate) const OWNED: u8 = b'C';
pub(crate) const FREE: u8 = b'F';
pub(crate) const HWM: u8 = b'A';
pub(crate) const GC: u8 = b'G';
pub(crate) const NEXT_NODE: &[u8] = b"Xnext_node";
pub(crate) const LAYOUT: &[u8] = b"Xlayout";
pub(crate) const INTENT_EPOCH: &[u8] = b"Xintent_epoch";

fn key<const N: usize>(prefix: u8, parts: &[u64]) -> [u8; N] {
    let mut k = [0u8; N];
    k[0] = prefix;
    for (i, p) in parts.iter().enumerate() {
        k[1 + 8 * i..9 + 8 * i].copy_from_slice(&p.to_be_bytes());
    }
    k
}

pub(crate) fn map_key(node: NodeId, group: u64, birth: u64) -> [u8; 25] {
    key(MAP, &[node.0, group, birth])
}

pub(crate) fn node_key(node: NodeId) -> [u8; 9] {
    key(NODE, &[node.0])
}

pub(crate) fn snap_key(node: NodeId, epoch: u64) -> [u8; 17] {
    key(SNAP, &[node.0, epoch])
}

pub(crate) fn owned_key(node: NodeId, birth: u64) -> [u8; 17] {
    key(OWNED, &[node.0, birth])
}

pub(crate) fn gc_key(node: NodeId) -> [u8; 9] {
    key(GC, &[node.0])
}

pub(crate) fn free_key(class: u8, chunk: ChunkId) -> [u8; 10] {
    let mut k = [0u8; 10];
    k[0] = FREE;
    k[1] = class;
    k[2..].copy_from_slice(&chunk.0.to_be_bytes());
    k
}

pub(crate) fn hwm_key(class: u8) -> [u8; 2] {
    [HWM, class]
}

fn be(b: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(b.try_into().ok()?))
}

/// `(node, group, birth)` of a map key; `None` if it is not one.
pub(crate) fn decode_map_key(k: &[u8]) -> Option<(NodeId, u64, u64)> {
    if k.len() != 25 || k[0] != MAP {
        return None;
    }
    Some((NodeId(be(&k[1..9])?), be(&k[9..17])?, be(&k[17..25])?))
}

/// The two u64 fields after the prefix of a 17-byte key (`S`, `C`).
pub(crate) fn decode_pair_key(prefix: u8, k: &[u8]) -> Option<(NodeId, u64)> {
    if k.len() != 17 || k[0] != prefix {
        return None;
    }
    Some((NodeId(be(&k[1..9])?), be(&k[9..17])?))
}

/// The node of a 9-byte key (`N`, `G`).
pub(crate) fn decode_node_key(prefix: u8, k: &[u8]) -> Option<NodeId> {
    if k.len() != 9 || k[0] != prefix {
        return None;
    }
    Some(NodeId(be(&k[1..9])?))
}

pub(crate) fn decode_free_key(k: &[u8]) -> Option<(u8, ChunkId)> {
    if k.len() != 10 || k[0] != FREE {
        return None;
    }
    Some((k[1], ChunkId(be(&k[2..10])?)))
}

/// A u64 value (counters, high-water marks).
pub(crate) fn decode_u64(v: &[u8]) -> Option<u64> {
    be(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_key_golden() {
        let k = map_key(NodeId(1), 0x0203, 7);
        #[rustfmt::skip]
        let want = [
            b'M',
            0, 0, 0, 0, 0, 0, 0, 1,       // node 1
            0, 0, 0, 0, 0, 0, 0x02, 0x03, // group 0x203
            0, 0, 0, 0, 0, 0, 0, 7,       // birth epoch 7
        ];
        assert_eq!(k, want);
        assert_eq!(decode_map_key(&k), Some((NodeId(1), 0x203, 7)));
        assert_eq!(decode_map_key(&k[..24]), None);
    }

    #[test]
    fn catalog_keys_golden() {
        assert_eq!(node_key(NodeId(0x0102)), [b'N', 0, 0, 0, 0, 0, 0, 1, 2]);
        assert_eq!(snap_key(NodeId(3), 9), [b'S', 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 9]);
        assert_eq!(owned_key(NodeId(3), 2), [b'C', 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 2]);
        assert_eq!(free_key(4, ChunkId(5)), [b'F', 4, 0, 0, 0, 0, 0, 0, 0, 5]);
        assert_eq!(hwm_key(4), [b'A', 4]);
        assert_eq!(gc_key(NodeId(6)), [b'G', 0, 0, 0, 0, 0, 0, 0, 6]);
        assert_eq!(decode_pair_key(SNAP, &snap_key(NodeId(3), 9)), Some((NodeId(3), 9)));
        assert_eq!(decode_node_key(NODE, &node_key(NodeId(0x102))), Some(NodeId(0x102)));
        assert_eq!(decode_free_key(&free_key(4, ChunkId(5))), Some((4, ChunkId(5))));
    }

    #[test]
    fn map_keys_sort_by_node_group_birth() {
        let a = map_key(NodeId(1), 2, 300);
        let b = map_key(NodeId(1), 3, 1);
        let c = map_key(NodeId(2), 0, 0);
        assert!(a < b && b < c);
    }
}
