//! Setup the engine benches share: a volume written in full and committed,
//! so every chunk is allocated and its pages are in the page cache.

use store::{DEFAULT_CHUNK_SIZE, Export, Store, StoreConfig};
use tempfile::TempDir;

/// A store in a temporary directory on a real disk (/var/tmp, not tmpfs)
/// holding volume `v` of `size` bytes, fully written with 1 MiB writes.
/// Keep the `TempDir` alive as long as the store.
pub(crate) fn filled_volume(prefix: &str, size: u64) -> (TempDir, Store, Export) {
    let tmp = tempfile::Builder::new().prefix(prefix).tempdir_in("/var/tmp").expect("temp dir");
    let store = Store::open(StoreConfig::new(tmp.path())).expect("open store");
    store.create_volume("v", size, DEFAULT_CHUNK_SIZE).expect("create").expect("refused");
    let export = store.open_export("v").expect("export v");
    let fill = vec![0x5au8; 1 << 20];
    for off in (0..size).step_by(fill.len()) {
        export.write(off, &fill).expect("fill");
    }
    export.commit().expect("commit");
    (tmp, store, export)
}
