//! The errno values the protocol puts on the wire (they are fixed by the spec,
//! not by the host's `errno.h`).

/// An error value in a simple reply or an error chunk.
#[repr(u32)]
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Errno {
    /// `EPERM`: write or trim on a read-only export.
    Perm = 1,
    /// `EIO`: the backend failed.
    Io = 5,
    /// `ENOMEM`: out of memory (the spec says avoid it).
    NoMem = 12,
    /// `EINVAL`: bad command, flag, range or alignment.
    Inval = 22,
    /// `ENOSPC`: write past the end or no space left.
    NoSpc = 28,
    /// `EOVERFLOW`: a `DF` read that cannot be sent in one chunk, or an oversize request.
    Overflow = 75,
    /// `ENOTSUP`: only for `FAST_ZERO` that cannot be fast.
    NotSup = 95,
    /// `ESHUTDOWN`: the server is shutting down.
    Shutdown = 108,
}

impl Errno {
    /// Maps a wire value back to an `Errno`; `None` for values the spec does not name.
    pub fn from_wire(value: u32) -> Option<Errno> {
        Some(match value {
            1 => Errno::Perm,
            5 => Errno::Io,
            12 => Errno::NoMem,
            22 => Errno::Inval,
            28 => Errno::NoSpc,
            75 => Errno::Overflow,
            95 => Errno::NotSup,
            108 => Errno::Shutdown,
            _ => return None,
        })
    }

    /// The wire value.
    pub fn as_u32(self) -> u32 {
        self as u32
    }
}

impl From<Errno> for u32 {
    fn from(e: Errno) -> u32 {
        e as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_value() {
        for e in [
            Errno::Perm,
            Errno::Io,
            Errno::NoMem,
            Errno::Inval,
            Errno::NoSpc,
            Errno::Overflow,
            Errno::NotSup,
            Errno::Shutdown,
        ] {
            assert_eq!(Errno::from_wire(e.as_u32()), Some(e));
        }
        assert_eq!(Errno::from_wire(0), None);
        assert_eq!(Errno::from_wire(2), None);
    }

    #[test]
    fn values_match_spec() {
        assert_eq!(u32::from(Errno::Inval), 22);
        assert_eq!(Errno::Shutdown as u32, 108);
    }
}
