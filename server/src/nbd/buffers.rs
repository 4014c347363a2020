//! Recycled payload buffers for large READ replies and WRITE payloads.
//!
//! A fresh 1 MiB buffer costs a memset (or 256 page faults) before a single
//! byte of data lands in it; under 1 MiB sequential reads that was 18% of
//! the server's CPU (BENCHMARKS.md). Buffers here are zeroed once, when
//! first made, and come back when the last `Bytes` pointing into them drops,
//! so a READ's reply and a WRITE's payload reach the socket or the store
//! without any extra pass over the data. Contents of a reused buffer are
//! stale, never uninitialised: callers overwrite the part they hand out.

use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use store::IoBuf;

/// Requests below this size use plain allocations (a memset of a few KiB
/// costs less than the pool's lock).
pub(crate) const POOLED_MIN: usize = 64 * 1024;
/// Largest pooled buffer; larger payloads are allocated per request.
const POOLED_MAX: usize = 4 << 20;
/// Idle bytes the pool keeps, over all sizes.
const IDLE_BYTES: usize = 64 << 20;

/// Buffers by size class (powers of two from `POOLED_MIN` to `POOLED_MAX`).
pub(crate) struct BufPool {
    classes: Vec<Mutex<Vec<IoBuf>>>,
}

fn class_of(len: usize) -> Option<usize> {
    if !(POOLED_MIN..=POOLED_MAX).contains(&len) {
        return None;
    }
    let size = len.next_power_of_two();
    Some((size / POOLED_MIN).trailing_zeros() as usize)
}

fn class_size(class: usize) -> usize {
    POOLED_MIN << class
}

impl BufPool {
    pub(crate) fn new() -> Arc<BufPool> {
        let classes = (0..=class_of(POOLED_MAX).unwrap_or(0)).map(|_| Mutex::default()).collect();
        Arc::new(BufPool { classes })
    }

    /// A buffer of exactly `len` bytes, cache-line aligned (`IoBuf`):
    /// recycled (stale contents) or zeroed.
    pub(crate) fn take(self: &Arc<Self>, len: usize) -> Buf {
        let Some(class) = class_of(len) else {
            return Buf { vec: IoBuf::zeroed(len), home: None };
        };
        let recycled = self.classes[class].lock().unwrap_or_else(PoisonError::into_inner).pop();
        let mut vec = recycled.unwrap_or_else(|| IoBuf::zeroed(class_size(class)));
        vec.resize(len);
        Buf { vec, home: Some((self.clone(), class)) }
    }

    fn give_back(&self, class: usize, vec: IoBuf) {
        let keep = IDLE_BYTES / class_size(class) / self.classes.len();
        let mut free = self.classes[class].lock().unwrap_or_else(PoisonError::into_inner);
        if free.len() < keep.max(2) {
            free.push(vec);
        }
    }

    #[cfg(test)]
    fn idle(&self, class: usize) -> usize {
        self.classes[class].lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

/// A buffer from the pool; returns there when dropped.
pub(crate) struct Buf {
    vec: IoBuf,
    home: Option<(Arc<BufPool>, usize)>,
}

impl Buf {
    /// Shares the buffer as `Bytes`; it returns to the pool when the last
    /// clone or slice is dropped.
    pub(crate) fn freeze(self) -> Bytes {
        Bytes::from_owner(self)
    }
}

impl AsRef<[u8]> for Buf {
    fn as_ref(&self) -> &[u8] {
        &self.vec
    }
}

impl AsMut<[u8]> for Buf {
    fn as_mut(&mut self) -> &mut [u8] {
        &mut self.vec
    }
}

impl Drop for Buf {
    fn drop(&mut self) {
        if let Some((pool, class)) = self.home.take() {
            pool.give_back(class, std::mem::take(&mut self.vec));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_when_the_last_bytes_drop() {
        let pool = BufPool::new();
        let mut b = pool.take(1 << 20);
        b.as_mut().fill(7);
        let bytes = b.freeze();
        let slice = bytes.slice(10..20);
        let class = class_of(1 << 20).unwrap();
        drop(bytes);
        assert_eq!(pool.idle(class), 0);
        drop(slice);
        assert_eq!(pool.idle(class), 1);
        // the recycled buffer is the same size class, contents stale
        let again = pool.take(600 * 1024);
        assert_eq!(again.as_ref().len(), 600 * 1024);
        assert_eq!(pool.idle(class), 0);
    }

    #[test]
    fn small_and_huge_buffers_are_not_pooled() {
        let pool = BufPool::new();
        let small = pool.take(4096);
        assert_eq!(small.as_ref(), &[0u8; 4096][..]);
        drop(small);
        let huge = pool.take(32 << 20);
        assert_eq!(huge.as_ref().len(), 32 << 20);
        drop(huge);
        assert!((0..pool.classes.len()).all(|c| pool.idle(c) == 0));
    }
}
