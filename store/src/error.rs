//! Store errors: `StoreError` (a small `Copy` kind plus a cause) for failures,
//! and `Refusal` for outcomes a caller expects (taken names, dependents).

use std::fmt;

/// What went wrong, small enough to branch on (the NBD layer maps it to an errno).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The request reaches beyond the export's size.
    OutOfRange,
    /// A write to a read-only export (a snapshot).
    ReadOnly,
    /// The file system is full.
    NoSpace,
    /// An I/O error from a data file or the metadata store.
    Io,
    /// Metadata on disk failed validation.
    Corrupt,
    /// The export's volume or snapshot was deleted, or the store was closed.
    Gone,
    /// A read from memory only (`Fetch::Cached`) needed the disk.
    NotCached,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::OutOfRange => "out of range",
            ErrorKind::ReadOnly => "read-only export",
            ErrorKind::NoSpace => "no space left",
            ErrorKind::Io => "i/o error",
            ErrorKind::Corrupt => "corrupt metadata",
            ErrorKind::Gone => "export gone",
            ErrorKind::NotCached => "not in memory",
        })
    }
}

/// A store failure: a kind to branch on, what it concerns, and an optional cause.
#[derive(Debug, thiserror::Error)]
#[error("{kind}: {context}")]
pub struct StoreError {
    kind: ErrorKind,
    context: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl StoreError {
    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub(crate) fn new(kind: ErrorKind, context: impl Into<String>) -> Self {
        StoreError { kind, context: context.into(), source: None }
    }

    pub(crate) fn io(context: impl Into<String>, err: std::io::Error) -> Self {
        let kind = if err.raw_os_error() == Some(libc::ENOSPC) {
            ErrorKind::NoSpace
        } else {
            ErrorKind::Io
        };
        StoreError { kind, context: context.into(), source: Some(Box::new(err)) }
    }

    pub(crate) fn meta(err: sled_error::Error) -> Self {
        StoreError { kind: ErrorKind::Io, context: "metadata store".into(), source: Some(err.0) }
    }

    pub(crate) fn corrupt(context: impl Into<String>) -> Self {
        StoreError::new(ErrorKind::Corrupt, context)
    }
}

/// A metadata-store error without naming sled outside `meta.rs`.
pub(crate) mod sled_error {
    /// A boxed metadata-store error.
    #[derive(Debug)]
    pub(crate) struct Error(pub(crate) Box<dyn std::error::Error + Send + Sync>);
}

/// An expected refusal of a catalog operation (not an I/O failure).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The name is already used by a volume (or snapshot of that volume).
    #[error("name {0} is already taken")]
    NameTaken(String),
    /// No volume, clone or export of that name.
    #[error("{0} not found")]
    NotFound(String),
    /// The name breaks the naming rule `[A-Za-z0-9][A-Za-z0-9._:-]{{0,127}}`.
    #[error("invalid name {0:?}: use 1-128 of A-Z a-z 0-9 . _ : - starting with a letter or digit")]
    InvalidName(String),
    /// The size is zero, not a multiple of 512 or above 2^63.
    #[error("invalid size: {0}")]
    InvalidSize(String),
    /// The chunk size is not a power of two from 4 KiB to 1 MiB.
    #[error("invalid chunk size {0}: use a power of two from 4096 to 1048576")]
    InvalidChunkSize(u32),
    /// Something depends on the object to delete.
    #[error("{what} has dependent clones: {}", dependents.join(", "))]
    HasDependents {
        /// The object, e.g. `snapshot pg@s1`.
        what: String,
        /// The names of its dependents.
        dependents: Vec<String>,
    },
    /// Rollback is refused while newer snapshots exist.
    #[error("volume {volume} has snapshots newer than the rollback target: {}", snapshots.join(", "))]
    NewerSnapshots {
        /// The volume.
        volume: String,
        /// The newer snapshots' names.
        snapshots: Vec<String>,
    },
    /// Promote or flatten of a volume that is not a clone.
    #[error("{0} is not a clone")]
    NotAClone(String),
    /// No snapshot of that name.
    #[error("snapshot {0} not found")]
    SnapshotNotFound(String),
    /// The snapshot is held; release the hold first.
    #[error("snapshot {0} is held")]
    SnapshotHeld(String),
    /// Promote of a clone whose origin volume was deleted.
    #[error("the origin volume of clone {0} was deleted; there is nothing to swap with")]
    OriginGone(String),
    /// Flatten of a clone that has snapshots (they still read through its origin).
    #[error("clone {clone} has snapshots that read through its origin: {}", snapshots.join(", "))]
    CloneHasSnapshots {
        /// The clone.
        clone: String,
        /// Its snapshots.
        snapshots: Vec<String>,
    },
    /// Diff between snapshots of different volumes, or with `from` newer than `to`.
    #[error("cannot diff {from} against {to}: {reason}")]
    InvalidDiff {
        /// The `from` argument.
        from: String,
        /// The `to` argument.
        to: String,
        /// Why.
        reason: String,
    },
}
