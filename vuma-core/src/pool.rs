//! A sub-allocator written once for every backend, over [`RawStorage`].
//!
//! Allocations up to `max_class` bytes are rounded up to a size class (powers of two with
//! four steps each: at most 25% internal waste) and served from per-class free lists, or
//! carved from the current block with a bump pointer; larger ones get a dedicated block,
//! kept in a small cache when freed so the next one of similar size costs no driver call.
//! Every operation is O(1) except block allocation; statistics are O(1) to read.
//!
//! Freed ranges are reused only by allocations of the same class; [`Pool::trim`] returns
//! wholly free blocks to the storage.

use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::{Error, Result};
use crate::storage::RawStorage;

/// Knobs of a [`Pool`].
#[derive(Debug, Clone, PartialEq)]
pub struct PoolConfig {
    /// Size of the blocks small allocations are carved from (default 64 MiB).
    pub block_size: u64,
    /// Largest size served from blocks; larger allocations get a dedicated block
    /// (default: a quarter of `block_size`).
    pub max_class: u64,
    /// Freed dedicated blocks kept for reuse (default 8).
    pub cached_dedicated: usize,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            block_size: 64 << 20,
            max_class: 16 << 20,
            cached_dedicated: 8,
        }
    }
}

/// O(1) statistics of a pool.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Bytes handed out (requested sizes).
    pub bytes_in_use: u64,
    /// Peak of `bytes_in_use`.
    pub peak_bytes_in_use: u64,
    /// Bytes held from the storage (blocks, dedicated blocks and the cache).
    pub bytes_reserved: u64,
    /// Live allocations.
    pub live_allocations: u64,
    /// Allocations served since creation.
    pub total_allocations: u64,
    /// Blocks requested from the storage since creation.
    pub storage_allocations: u64,
    /// Bytes in free lists and bump space (reusable without a storage call).
    pub bytes_free: u64,
}

impl PoolStats {
    /// Share of reserved memory not in use: `1 - in_use / reserved` (0 when nothing is
    /// reserved). Counts rounding waste, free lists and cached blocks.
    pub fn fragmentation(&self) -> f64 {
        if self.bytes_reserved == 0 {
            0.0
        } else {
            1.0 - self.bytes_in_use as f64 / self.bytes_reserved as f64
        }
    }
}

const MIN_CLASS_SHIFT: u32 = 8; // 256 B

/// Size class index and rounded size of `size` (size > 0).
fn class_of(size: u64) -> (usize, u64) {
    let s = size.max(1 << MIN_CLASS_SHIFT);
    let p = 63 - (s - 1).leading_zeros().min(63); // floor(log2(s-1))
    let p = if s.is_power_of_two() {
        s.trailing_zeros()
    } else {
        p + 1
    };
    // Classes between 2^(p-1) and 2^p in four steps.
    let lo = 1u64 << (p - 1);
    let step = lo / 4;
    let k = (s - lo).div_ceil(step.max(1)).min(4);
    let rounded = if step == 0 { 1 << p } else { lo + k * step };
    let idx = ((p - MIN_CLASS_SHIFT) * 4 + k as u32) as usize;
    (idx, rounded)
}

struct BlockSlot<B> {
    block: Arc<B>,
    live: u64,
    size: u64,
}

struct Inner<S: RawStorage> {
    blocks: Vec<Option<BlockSlot<S::Block>>>,
    free_lists: Vec<Vec<(usize, u64)>>,
    bump: Option<(usize, u64)>,
    cache: Vec<Arc<S::Block>>,
    cache_sizes: Vec<u64>,
    stats: PoolStats,
}

struct Shared<S: RawStorage> {
    storage: S,
    config: PoolConfig,
    inner: Mutex<Inner<S>>,
}

/// A pool of sub-allocations over one [`RawStorage`].
pub struct Pool<S: RawStorage> {
    shared: Arc<Shared<S>>,
}

impl<S: RawStorage> Clone for Pool<S> {
    fn clone(&self) -> Self {
        Pool {
            shared: self.shared.clone(),
        }
    }
}

impl<S: RawStorage> std::fmt::Debug for Pool<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("config", &self.shared.config)
            .field("stats", &self.stats())
            .finish()
    }
}

enum Origin {
    Class { class: usize, block: usize },
    Dedicated,
}

/// One allocation from a [`Pool`]: `len` bytes at `offset` inside `block`. Returned to the
/// pool when dropped.
pub struct PoolAlloc<S: RawStorage> {
    block: Arc<S::Block>,
    offset: u64,
    len: u64,
    rounded: u64,
    origin: Origin,
    pool: Arc<Shared<S>>,
}

impl<S: RawStorage> std::fmt::Debug for PoolAlloc<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolAlloc")
            .field("offset", &self.offset)
            .field("len", &self.len)
            .finish()
    }
}

impl<S: RawStorage> PoolAlloc<S> {
    /// The block holding the bytes.
    pub fn block(&self) -> &S::Block {
        &self.block
    }
    /// Offset of the allocation in its block (aligned to the storage's alignment).
    pub fn offset(&self) -> u64 {
        self.offset
    }
    /// Requested size in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }
    /// Whether the allocation is empty (never: zero sizes are refused).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl<S: RawStorage> Drop for PoolAlloc<S> {
    fn drop(&mut self) {
        let mut g = self.pool.lock();
        g.stats.bytes_in_use -= self.len;
        g.stats.live_allocations -= 1;
        match self.origin {
            Origin::Class { class, block } => {
                g.free_lists[class].push((block, self.offset));
                g.stats.bytes_free += self.rounded;
                if let Some(Some(slot)) = g.blocks.get_mut(block) {
                    slot.live -= 1;
                }
            }
            Origin::Dedicated => {
                if g.cache.len() < self.pool.config.cached_dedicated {
                    g.cache.push(self.block.clone());
                    g.cache_sizes.push(self.rounded);
                    g.stats.bytes_free += self.rounded;
                } else {
                    g.stats.bytes_reserved -= self.rounded;
                    // The last reference to the block is dropped with `self`, outside
                    // the lock would be better, but blocks are plain handles.
                }
            }
        }
    }
}

impl<S: RawStorage> Shared<S> {
    fn lock(&self) -> MutexGuard<'_, Inner<S>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<S: RawStorage> Pool<S> {
    /// A pool over `storage`.
    pub fn new(storage: S, config: PoolConfig) -> Self {
        let classes = ((64 - MIN_CLASS_SHIFT) * 4 + 5) as usize;
        Pool {
            shared: Arc::new(Shared {
                storage,
                config,
                inner: Mutex::new(Inner {
                    blocks: Vec::new(),
                    free_lists: (0..classes).map(|_| Vec::new()).collect(),
                    bump: None,
                    cache: Vec::new(),
                    cache_sizes: Vec::new(),
                    stats: PoolStats::default(),
                }),
            }),
        }
    }

    /// The storage underneath.
    pub fn storage(&self) -> &S {
        &self.shared.storage
    }

    /// Current statistics (O(1)).
    pub fn stats(&self) -> PoolStats {
        self.shared.lock().stats
    }

    /// Allocates `size` bytes.
    pub fn alloc(&self, size: u64) -> Result<PoolAlloc<S>> {
        if size == 0 {
            return Err(Error::ZeroSize { what: "allocation" });
        }
        let align = self.shared.storage.alignment().max(1);
        let cfg = &self.shared.config;
        if size > cfg.max_class {
            return self.alloc_dedicated(size, align);
        }
        let (class, rounded) = class_of(size);
        let rounded = rounded.div_ceil(align) * align;
        let mut g = self.shared.lock();
        let (block, offset) = if let Some((b, o)) = g.free_lists[class].pop() {
            g.stats.bytes_free -= rounded;
            (b, o)
        } else {
            let fits = matches!(g.bump, Some((b, used)) if used + rounded <= g.blocks[b].as_ref().map_or(0, |s| s.size));
            if !fits {
                if let Some((b, used)) = g.bump.take() {
                    // The tail of the old block is lost to bump allocation until trim.
                    let size = g.blocks[b].as_ref().map_or(0, |s| s.size);
                    g.stats.bytes_free -= size - used;
                }
                let bs = cfg.block_size.max(rounded);
                drop(g);
                let blk = self.shared.storage.alloc_block(bs)?;
                g = self.shared.lock();
                g.stats.storage_allocations += 1;
                g.stats.bytes_reserved += bs;
                g.stats.bytes_free += bs;
                let idx = match g.blocks.iter().position(Option::is_none) {
                    Some(i) => i,
                    None => {
                        g.blocks.push(None);
                        g.blocks.len() - 1
                    }
                };
                g.blocks[idx] = Some(BlockSlot {
                    block: Arc::new(blk),
                    live: 0,
                    size: bs,
                });
                g.bump = Some((idx, 0));
            }
            let (b, used) = g.bump.expect("bump block set above");
            g.bump = Some((b, used + rounded));
            g.stats.bytes_free -= rounded;
            (b, used)
        };
        let slot = g.blocks[block].as_mut().expect("live block");
        slot.live += 1;
        let blk = slot.block.clone();
        g.stats.bytes_in_use += size;
        g.stats.peak_bytes_in_use = g.stats.peak_bytes_in_use.max(g.stats.bytes_in_use);
        g.stats.live_allocations += 1;
        g.stats.total_allocations += 1;
        Ok(PoolAlloc {
            block: blk,
            offset,
            len: size,
            rounded,
            origin: Origin::Class { class, block },
            pool: self.shared.clone(),
        })
    }

    fn alloc_dedicated(&self, size: u64, align: u64) -> Result<PoolAlloc<S>> {
        let rounded = size.div_ceil(align).saturating_mul(align);
        let mut g = self.shared.lock();
        // Reuse a cached block that fits without wasting more than a quarter.
        let hit = g
            .cache_sizes
            .iter()
            .position(|&s| s >= size && s - size <= s / 4);
        let (block, rounded) = match hit {
            Some(i) => {
                let s = g.cache_sizes.swap_remove(i);
                g.stats.bytes_free -= s;
                (g.cache.swap_remove(i), s)
            }
            None => {
                drop(g);
                let blk = match self.shared.storage.alloc_block(rounded) {
                    Ok(b) => b,
                    Err(e) if e.is_transient() => {
                        // Give the cache back to the storage and retry once.
                        self.trim();
                        self.shared.storage.alloc_block(rounded)?
                    }
                    Err(e) => return Err(e),
                };
                g = self.shared.lock();
                g.stats.storage_allocations += 1;
                g.stats.bytes_reserved += rounded;
                (Arc::new(blk), rounded)
            }
        };
        g.stats.bytes_in_use += size;
        g.stats.peak_bytes_in_use = g.stats.peak_bytes_in_use.max(g.stats.bytes_in_use);
        g.stats.live_allocations += 1;
        g.stats.total_allocations += 1;
        Ok(PoolAlloc {
            block,
            offset: 0,
            len: size,
            rounded,
            origin: Origin::Dedicated,
            pool: self.shared.clone(),
        })
    }

    /// Returns cached dedicated blocks and wholly free blocks to the storage.
    pub fn trim(&self) {
        let mut released = Vec::new();
        let align = self.shared.storage.alignment().max(1);
        {
            let mut g = self.shared.lock();
            let g = &mut *g;
            for (b, s) in g.cache.drain(..).zip(g.cache_sizes.drain(..)) {
                g.stats.bytes_reserved -= s;
                g.stats.bytes_free -= s;
                released.push(b);
            }
            let bump_block = g.bump.map(|(b, _)| b);
            let mut empty = Vec::new();
            for (i, slot) in g.blocks.iter().enumerate() {
                if let Some(s) = slot {
                    if s.live == 0 && Some(i) != bump_block {
                        empty.push(i);
                    }
                }
            }
            for &i in &empty {
                // Drop this block's ranges from every free list.
                let mut freed = 0;
                for fl in g.free_lists.iter_mut() {
                    let before = fl.len();
                    fl.retain(|&(b, _)| b != i);
                    freed += before - fl.len();
                }
                let _ = freed;
                let s = g.blocks[i].take().expect("empty block");
                g.stats.bytes_reserved -= s.size;
                released.push(s.block);
            }
            // Recompute free bytes exactly after removals.
            let mut free = 0;
            for (c, fl) in g.free_lists.iter().enumerate() {
                if !fl.is_empty() {
                    free += fl.len() as u64 * class_size(c).div_ceil(align) * align;
                }
            }
            if let Some((b, used)) = g.bump {
                free += g.blocks[b].as_ref().map_or(0, |s| s.size) - used;
            }
            free += g.cache_sizes.iter().sum::<u64>();
            g.stats.bytes_free = free;
        }
        for b in released {
            if let Ok(b) = Arc::try_unwrap(b) {
                self.shared.storage.free_block(b);
            }
        }
    }
}

/// Rounded size of class `c` (the inverse of [`class_of`]; classes start at index 4).
fn class_size(c: usize) -> u64 {
    let c = c.max(4) as u32 - 1;
    let p = c / 4 + MIN_CLASS_SHIFT;
    let k = u64::from(c % 4) + 1;
    let lo = 1u64 << (p - 1);
    lo + k * (lo / 4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[derive(Default)]
    struct Fake {
        allocs: AtomicU64,
        frees: AtomicU64,
    }
    impl RawStorage for Arc<Fake> {
        type Block = u64;
        fn alloc_block(&self, size: u64) -> Result<u64> {
            if size > 1 << 40 {
                return Err(Error::TooLarge {
                    device: "fake".into(),
                    requested: size,
                    max: 1 << 40,
                });
            }
            self.allocs.fetch_add(1, Ordering::Relaxed);
            Ok(size)
        }
        fn free_block(&self, _b: u64) {
            self.frees.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn classes_round_up_by_at_most_a_quarter() {
        for s in [
            1u64,
            255,
            256,
            257,
            1000,
            4096,
            5000,
            65537,
            1 << 20,
            (1 << 20) + 1,
        ] {
            let (_, r) = class_of(s);
            assert!(r >= s, "{s} -> {r}");
            assert!(r <= (s.max(256) * 5).div_ceil(4) + 1, "{s} -> {r}");
        }
        for c in 4..200 {
            let s = class_size(c);
            assert_eq!(class_of(s), (c, s), "class {c} of size {s}");
        }
    }

    #[test]
    fn reuses_freed_ranges_and_keeps_stats() {
        let fake = Arc::new(Fake::default());
        let pool = Pool::new(fake.clone(), PoolConfig::default());
        let a = pool.alloc(1000).unwrap();
        let b = pool.alloc(1000).unwrap();
        assert_ne!(a.offset(), b.offset());
        assert_eq!(a.offset() % 256, 0);
        assert_eq!(pool.stats().bytes_in_use, 2000);
        let off = a.offset();
        drop(a);
        let c = pool.alloc(900).unwrap();
        assert_eq!(c.offset(), off, "freed range of the same class is reused");
        assert_eq!(fake.allocs.load(Ordering::Relaxed), 1);
        drop((b, c));
        let s = pool.stats();
        assert_eq!(s.bytes_in_use, 0);
        assert_eq!(s.peak_bytes_in_use, 2000);
        assert_eq!(s.live_allocations, 0);
        assert_eq!(s.total_allocations, 3);
    }

    #[test]
    fn dedicated_blocks_are_cached_and_trimmed() {
        let fake = Arc::new(Fake::default());
        let pool = Pool::new(fake.clone(), PoolConfig::default());
        let a = pool.alloc(100 << 20).unwrap();
        drop(a);
        let _b = pool.alloc(90 << 20).unwrap();
        assert_eq!(
            fake.allocs.load(Ordering::Relaxed),
            1,
            "cached block reused"
        );
        drop(_b);
        pool.trim();
        assert_eq!(pool.stats().bytes_reserved, 0);
        assert_eq!(fake.frees.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn zero_and_absurd_sizes_are_errors() {
        let pool = Pool::new(Arc::new(Fake::default()), PoolConfig::default());
        assert!(matches!(pool.alloc(0), Err(Error::ZeroSize { .. })));
        assert!(matches!(pool.alloc(u64::MAX), Err(Error::TooLarge { .. })));
        assert_eq!(pool.stats().bytes_in_use, 0);
    }

    #[test]
    fn trim_releases_empty_blocks() {
        let fake = Arc::new(Fake::default());
        let cfg = PoolConfig {
            block_size: 1 << 20,
            max_class: 256 << 10,
            cached_dedicated: 0,
        };
        let pool = Pool::new(fake.clone(), cfg);
        let v: Vec<_> = (0..20).map(|_| pool.alloc(200 << 10).unwrap()).collect();
        let blocks = fake.allocs.load(Ordering::Relaxed);
        assert!(blocks >= 4);
        drop(v);
        pool.trim();
        assert_eq!(
            fake.frees.load(Ordering::Relaxed),
            blocks - 1,
            "all but the bump block"
        );
        let s = pool.stats();
        assert_eq!(s.bytes_reserved, 1 << 20);
        let _again = pool.alloc(200 << 10).unwrap();
    }

    proptest::proptest! {
        #[test]
        fn live_allocations_never_overlap(ops in proptest::collection::vec((1u64..300_000, proptest::bool::ANY), 1..200)) {
            let cfg = PoolConfig { block_size: 1 << 20, max_class: 128 << 10, cached_dedicated: 2 };
            let pool = Pool::new(Arc::new(Fake::default()), cfg);
            let mut live: Vec<PoolAlloc<Arc<Fake>>> = Vec::new();
            let mut want = 0u64;
            for (size, free) in ops {
                if free && !live.is_empty() {
                    let a = live.swap_remove(size as usize % live.len());
                    want -= a.len();
                } else {
                    let a = pool.alloc(size).unwrap();
                    want += size;
                    live.push(a);
                }
                proptest::prop_assert_eq!(pool.stats().bytes_in_use, want);
            }
            for (i, a) in live.iter().enumerate() {
                for b in &live[i + 1..] {
                    let same = Arc::ptr_eq(&a.block, &b.block);
                    proptest::prop_assert!(!(same && a.offset < b.offset + b.len && b.offset < a.offset + a.len));
                }
            }
        }
    }
}
