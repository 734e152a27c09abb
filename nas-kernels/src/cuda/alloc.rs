//! The caching allocator: blocks freed by [`CudaBuf`](super::CudaBuf)s go to a free list per
//! size class and are handed out again, so steady-state training allocates nothing from the
//! driver.
//!
//! Size classes (real devices): 512 bytes and below share one class; above that a request
//! is rounded up to one of four steps per power of two (`2^k`, `1.25 * 2^k`, `1.5 * 2^k`,
//! `1.75 * 2^k`), wasting at most 25%. The emulated device rounds to 16 bytes only, so its
//! guard pages sit right after each buffer and catch reads past the end.

use std::collections::HashMap;

/// Counters of a device's allocator.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AllocStats {
    /// Blocks allocated from the driver (`cuMemAlloc`) so far.
    pub device_allocs: u64,
    /// Requests served from the free lists.
    pub reuses: u64,
    /// Bytes of blocks held by live buffers.
    pub live_bytes: usize,
    /// Bytes of free blocks cached for reuse.
    pub cached_bytes: usize,
}

pub(crate) struct Pool {
    free: HashMap<usize, Vec<u64>>,
    stats: AllocStats,
    exact: bool,
}

/// The size class of a request of `bytes` bytes (see the module docs).
pub(crate) fn size_class(bytes: usize) -> usize {
    if bytes <= 512 {
        return 512;
    }
    let k = usize::BITS - 1 - bytes.leading_zeros(); // 2^k <= bytes
    let quarter = (1usize << k) / 4;
    let class = bytes.div_ceil(quarter) * quarter;
    class.div_ceil(512) * 512
}

impl Pool {
    pub fn new(exact: bool) -> Pool {
        Pool {
            free: HashMap::new(),
            stats: AllocStats::default(),
            exact,
        }
    }
    pub fn class(&self, bytes: usize) -> usize {
        if self.exact {
            bytes.div_ceil(16) * 16
        } else {
            size_class(bytes)
        }
    }
    pub fn take(&mut self, class: usize) -> Option<u64> {
        let p = self.free.get_mut(&class)?.pop()?;
        self.stats.reuses += 1;
        self.stats.cached_bytes -= class;
        self.stats.live_bytes += class;
        Some(p)
    }
    pub fn note_malloc(&mut self, class: usize) {
        self.stats.device_allocs += 1;
        self.stats.live_bytes += class;
    }
    pub fn put(&mut self, ptr: u64, class: usize) {
        self.free.entry(class).or_default().push(ptr);
        self.stats.live_bytes -= class;
        self.stats.cached_bytes += class;
    }
    pub fn drain(&mut self) -> Vec<(u64, usize)> {
        self.stats.cached_bytes = 0;
        self.free
            .drain()
            .flat_map(|(c, v)| v.into_iter().map(move |p| (p, c)))
            .collect()
    }
    pub fn stats(&self) -> AllocStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_classes_cover_requests_with_bounded_waste() {
        let mut prev = 0;
        // increasing sizes (the classes must not decrease), then the class boundaries
        let boundaries = [512, 513, 1024, 1025, 1 << 20, (1 << 20) + 1];
        for bytes in (1..200_000).step_by(97).chain(boundaries) {
            if bytes == boundaries[0] {
                prev = 0;
            }
            let c = size_class(bytes);
            assert!(c >= bytes, "{bytes} -> {c}");
            assert!(c.is_multiple_of(512));
            assert!(
                bytes <= 512 || c as f64 <= bytes as f64 * 1.25 + 512.0,
                "{bytes} -> {c}"
            );
            assert!(c >= prev, "monotone");
            prev = c;
        }
        assert_eq!(size_class(1), 512);
        assert_eq!(size_class(4096), 4096);
        assert_eq!(size_class(4097), 5120);
    }

    #[test]
    fn freed_blocks_are_reused_by_class() {
        let mut p = Pool::new(false);
        let c = p.class(1000);
        assert!(p.take(c).is_none());
        p.note_malloc(c);
        p.put(7, c);
        assert_eq!(p.take(p.class(1010)), Some(7), "same class, same block");
        let s = p.stats();
        assert_eq!(
            (s.device_allocs, s.reuses, s.live_bytes, s.cached_bytes),
            (1, 1, c, 0)
        );
    }
}
