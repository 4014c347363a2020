//! clonebd's copy-on-write storage engine: thin volumes with O(1) snapshots
//! and clones. Synchronous, no async runtime; every method blocks.
//!
//! ```text
//!   Store (store.rs) ── catalog ops (ops.rs, extra.rs) ── GC (gc.rs)
//!     │                        │
//!   Export (export.rs) ── data path (io.rs) ── block map (node.rs, entry.rs)
//!     │                                             │
//!   data files (data.rs)        pending map + allocator (pending.rs)
//!                                                   │ commit.rs
//!                               metadata store (meta.rs: the only sled user, keys.rs)
//! ```
//!
//! See docs/ARCHITECTURE.md "The storage engine".

mod alloc;
mod cache;
mod catalog;
mod clock;
mod commit;
mod data;
mod engine;
mod entry;
mod error;
mod export;
mod extra;
mod gc;
mod info;
mod intent;
mod io;
mod iobuf;
mod keys;
mod lineage;
mod meta;
mod node;
mod ops;
mod pending;
mod record;
mod store;

#[cfg(test)]
#[allow(clippy::cast_possible_truncation, clippy::type_complexity)]
mod tests;

pub use data::{DataFile, DataFileFactory, Fetch, FsDataFiles};
pub use engine::{DEFAULT_COMMIT_INTERVAL, StoreConfig};
pub use error::{ErrorKind, Refusal, StoreError};
pub use export::{Export, Extent};
pub use info::{
    ByteRange, DEFAULT_CHUNK_SIZE, ExportSummary, GcReport, GcStatus, MAX_CHUNK_SIZE,
    MAX_VOLUME_SIZE, MIN_CHUNK_SIZE, Promoted, SnapshotInfo, StoreStats, VolumeInfo,
};
pub use intent::DEFAULT_INTENT_LOG_BYTES;
pub use iobuf::{IO_ALIGN, IoBuf};
pub use record::SnapshotKind;
pub use store::Store;
