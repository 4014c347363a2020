//! Byte buffers whose first byte sits on a cache-line boundary, for every
//! buffer a file or socket read copies into.
//!
//! The kernel copies a `pread` or `recv` into user memory with `rep movsb`.
//! On this project's benchmark machine (AMD EPYC, FSRM) that copy is 4-5
//! times slower when the destination lies 1-63 bytes past the source modulo
//! 4 KiB. Page-cache pages start on a page, and glibc puts a large `Vec` 16
//! bytes past one (an mmap'd chunk's header): 2.1-2.7 GB/s instead of 12.
//! A destination on a cache line is never 1-63 bytes past a page (or a line).
//! Under 1 MiB sequential reads that copy was most of the server's CPU
//! (BENCHMARKS.md, "Aligned buffers"; `cargo bench -p clonebd-benches
//! --bench alignment`). Copies out of user memory (`pwrite`, `send`) do
//! not care.

use std::ops::{Deref, DerefMut};

/// Alignment of an `IoBuf`'s first byte: one cache line.
pub const IO_ALIGN: usize = 64;

/// A heap buffer of `len` bytes starting on an `IO_ALIGN` boundary. Safe
/// code only: a `Vec` over-allocated by `IO_ALIGN` and used from the first
/// aligned byte (a `Vec`'s heap block never moves while it is not grown).
#[derive(Default)]
pub struct IoBuf {
    vec: Vec<u8>,
    start: usize,
    len: usize,
}

impl IoBuf {
    /// `len` zero bytes.
    pub fn zeroed(len: usize) -> IoBuf {
        let vec = vec![0u8; len + IO_ALIGN];
        // `align_offset` may refuse (usize::MAX); the buffer then works,
        // only slower.
        let start = match vec.as_ptr().align_offset(IO_ALIGN) {
            off if off < IO_ALIGN => off,
            _ => 0,
        };
        IoBuf { vec, start, len }
    }

    /// Bytes the buffer holds without reallocating.
    pub fn capacity(&self) -> usize {
        self.vec.len() - self.start
    }

    /// Makes the buffer `len` bytes long. Within its capacity the bytes are
    /// whatever they were (stale, never uninitialised: callers overwrite
    /// what they use); beyond it the buffer is reallocated zeroed.
    pub fn resize(&mut self, len: usize) {
        if len > self.capacity() {
            *self = IoBuf::zeroed(len);
        } else {
            self.len = len;
        }
    }
}

impl Deref for IoBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.vec[self.start..self.start + self.len]
    }
}

impl DerefMut for IoBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.vec[self.start..self.start + self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_start_on_a_cache_line_and_keep_their_length() {
        for len in [0, 1, 4096, 65536, 1 << 20] {
            let mut b = IoBuf::zeroed(len);
            assert_eq!(b.len(), len);
            assert!(b.iter().all(|&x| x == 0));
            assert_eq!(b.as_ptr() as usize % IO_ALIGN, 0, "len {len}");
            b.fill(7);
            b.resize(len / 2);
            assert_eq!(b.len(), len / 2);
            assert!(b.iter().all(|&x| x == 7));
            assert_eq!(b.as_ptr() as usize % IO_ALIGN, 0);
            b.resize(len + 100);
            assert_eq!(b.len(), len + 100);
            assert_eq!(b.as_ptr() as usize % IO_ALIGN, 0);
        }
    }
}
