//! The memory manager's pool of pinned host blocks, reused across host copies.
//!
//! Making a new pinned host copy costs a page fault per page and a registration with every
//! device (about 40 µs per MiB on CUDA): far slower than the upload it is for. So a pinned
//! copy that is dropped does not unpin: its block comes back here, and the next host copy
//! of the same size class and for the same devices takes it. What torch's caching host
//! allocator does for `pin_memory()`, written once for every backend: it pins through
//! [`DynDevice::pin_host`] and [`DynDevice::unpin_host`] like any host copy.
//!
//! Size classes: a request is rounded up to a multiple of an eighth of its power of two
//! (at least 64 KiB), so a block is reused by every size that rounds to it and wastes less
//! than an eighth of what it holds (nothing for sizes that are powers of two, or multiples
//! of an eighth of one, as tensors mostly are).
//!
//! Budget: pooled blocks stay pinned, so they stay counted in the pinned budget
//! ([`PinConfig::budget`]). The pool keeps at most [`PinConfig::pool_bytes`] (the oldest
//! blocks are unpinned and freed beyond it), gives blocks up when a new pinned copy would
//! not fit in the budget otherwise, and is emptied when the manager is dropped. A block
//! is reusable only for exactly the devices it is pinned for; blocks pinned for a device
//! that is lost are unpinned and freed at once, and later copies are not pinned for it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use std::alloc::Layout;
use std::mem::MaybeUninit;
use std::ptr::NonNull;

use crate::device::DynDevice;
use crate::error::{Error, Result};

/// Alignment of host copies: a page, so that pinning and host-memory import (Vulkan needs
/// `minImportedHostPointerAlignment`, 4 KiB on common drivers) take whole pages.
pub(crate) const ALIGN: usize = 4096;

/// When host copies are pinned.
#[derive(Debug, Clone, PartialEq)]
pub struct PinConfig {
    /// Whether to pin at all.
    pub enabled: bool,
    /// Host copies smaller than this stay pageable (pinning costs about 40 µs per MiB, a
    /// system call and page-table work; small copies gain little).
    pub min_bytes: u64,
    /// At most this many bytes pinned at once, pooled blocks included; `None`: half the
    /// machine's RAM.
    pub budget: Option<u64>,
    /// At most this many bytes of pinned blocks kept for reuse after their host copies
    /// were dropped (they stay pinned and count against `budget`); beyond it blocks are
    /// unpinned and freed. `None`: a quarter of the budget. `Some(0)`: no pool.
    pub pool_bytes: Option<u64>,
}

impl Default for PinConfig {
    fn default() -> Self {
        PinConfig {
            enabled: true,
            min_bytes: 1 << 20,
            budget: None,
            pool_bytes: None,
        }
    }
}

impl PinConfig {
    /// The budget in bytes.
    pub fn budget_bytes(&self) -> u64 {
        if !self.enabled {
            return 0;
        }
        self.budget
            .unwrap_or_else(|| crate::host::physical_memory().map_or(0, |m| m / 2))
    }

    /// The pool's cap in bytes (never above the budget).
    pub fn pool_cap(&self) -> u64 {
        let budget = self.budget_bytes();
        self.pool_bytes.unwrap_or(budget / 4).min(budget)
    }
}

/// Page-aligned host memory, pinned for some devices. Unpins and frees itself on drop.
pub(crate) struct Block {
    pub(crate) ptr: NonNull<u8>,
    cap: usize,
    /// Devices that pinned it.
    pub(crate) pins: Vec<Arc<dyn DynDevice>>,
    /// Devices asked to pin it, whatever they answered (a device that cannot pin host
    /// memory answers no every time): the device set it is reused for.
    offered: Vec<Arc<dyn DynDevice>>,
}

// SAFETY: a `Block` owns its allocation uniquely (like a `Box<[u8]>`); the devices it
// holds are `Send + Sync`; it hands out its memory only through `HostCopy`, which follows
// the borrow rules.
unsafe impl Send for Block {}
// SAFETY: `&Block` gives access to nothing but its address and length.
unsafe impl Sync for Block {}

impl std::fmt::Debug for Block {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Block")
            .field("cap", &self.cap)
            .field("pins", &self.pins.len())
            .finish()
    }
}

impl Block {
    /// `cap` bytes (not initialised), or the transient [`Error::OutOfMemory`] (never an
    /// abort).
    pub(crate) fn alloc(cap: usize) -> Result<Block> {
        let oom = || Error::OutOfMemory {
            device: "host".into(),
            requested: cap as u64,
        };
        if cap == 0 {
            return Ok(Block {
                ptr: NonNull::dangling(),
                cap: 0,
                pins: Vec::new(),
                offered: Vec::new(),
            });
        }
        let layout = Layout::from_size_align(cap, ALIGN).map_err(|_| oom())?;
        // SAFETY: `layout` has a non-zero size.
        let p = unsafe { std::alloc::alloc(layout) };
        let ptr = NonNull::new(p).ok_or_else(oom)?;
        Ok(Block {
            ptr,
            cap,
            pins: Vec::new(),
            offered: Vec::new(),
        })
    }

    /// Its size in bytes.
    pub(crate) fn cap(&self) -> usize {
        self.cap
    }

    /// Pins the memory for each device of `devices` that can use it; returns whether any
    /// did. Failures are logged and leave it pageable for that device (it works either way).
    pub(crate) fn pin(&mut self, devices: &[Arc<dyn DynDevice>]) -> bool {
        for d in devices {
            if self.cap == 0 || self.offered.iter().any(|p| same_device(p, d)) {
                continue;
            }
            self.offered.push(d.clone());
            // SAFETY: the allocation lives until `drop`, which unpins first; it never moves.
            match unsafe { d.pin_host(self.ptr.as_ptr(), self.cap) } {
                Ok(true) => self.pins.push(d.clone()),
                Ok(false) => {}
                Err(e) => tracing::warn!(
                    device = %d.info().name,
                    bytes = self.cap,
                    error = %e,
                    "pinning a host copy failed; it stays pageable"
                ),
            }
        }
        !self.pins.is_empty()
    }

    /// Whether it was pinned for exactly the devices of `devices` (in any order): each of
    /// them was asked, and those that can pinned it. (Comparing with the devices that
    /// pinned it would never match a set with a device that cannot pin: a manager with a
    /// CUDA and a Vulkan device would then miss the pool on every host copy.)
    pub(crate) fn pinned_for(&self, devices: &[Arc<dyn DynDevice>]) -> bool {
        !self.pins.is_empty()
            && self.offered.len() == devices.len()
            && devices
                .iter()
                .all(|d| self.offered.iter().any(|p| same_device(p, d)))
    }

    /// Whether `device` was asked to pin it.
    pub(crate) fn offered_to(&self, device: &Arc<dyn DynDevice>) -> bool {
        self.offered.iter().any(|p| same_device(p, device))
    }

    /// The first `len` bytes, to be initialised.
    pub(crate) fn uninit(&mut self, len: usize) -> &mut [MaybeUninit<u8>] {
        assert!(len <= self.cap, "within the block");
        // SAFETY: `ptr` points to `cap >= len` bytes owned by `self` (dangling but aligned
        // when `len` is 0); `MaybeUninit` makes no claim about their content, and
        // `&mut self` makes the access unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr().cast(), len) }
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        for d in self.pins.drain(..) {
            // SAFETY: device operations on the range are synchronous (`write`/`read` return
            // when done with host memory), so nothing uses it any more.
            if let Err(e) = unsafe { d.unpin_host(self.ptr.as_ptr()) } {
                tracing::warn!(device = %d.info().name, error = %e, "unpinning a host copy failed");
            }
        }
        if self.cap > 0 {
            // SAFETY: allocated in `alloc` with exactly this layout (which was valid then).
            unsafe {
                std::alloc::dealloc(
                    self.ptr.as_ptr(),
                    Layout::from_size_align_unchecked(self.cap, ALIGN),
                )
            };
        }
    }
}

/// Whether two handles are the same device (by the address of the object, whatever the
/// vtable).
pub(crate) fn same_device(a: &Arc<dyn DynDevice>, b: &Arc<dyn DynDevice>) -> bool {
    std::ptr::addr_eq(Arc::as_ptr(a), Arc::as_ptr(b))
}

/// Smallest rounding step of the size classes.
const MIN_STEP: usize = 64 << 10;

/// The size class of a host copy of `len` bytes: `len` rounded up to a multiple of an
/// eighth of its power of two, at least [`MIN_STEP`]. `None` when that overflows.
pub(crate) fn size_class(len: usize) -> Option<usize> {
    if len == 0 {
        return Some(0);
    }
    let pow = 1usize << (usize::BITS - 1 - len.leading_zeros());
    len.checked_next_multiple_of((pow / 8).max(MIN_STEP))
}

/// Pool statistics: what [`crate::memory::LocationStats`] shows for the host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct HostPoolStats {
    pub pooled_bytes: u64,
    pub hits: u64,
    pub misses: u64,
}

struct Inner {
    /// Blocks kept pinned for reuse, oldest first.
    blocks: Vec<Block>,
    /// Their bytes.
    bytes: u64,
    /// Devices lost: never pinned for again.
    lost: Vec<Arc<dyn DynDevice>>,
}

/// Pinned host blocks kept for reuse, and the count of pinned bytes (see the module
/// documentation).
pub(crate) struct HostPool {
    /// Devices host copies are pinned for (those that do not share host memory).
    devices: Vec<Arc<dyn DynDevice>>,
    budget: u64,
    cap: u64,
    /// Bytes pinned now: pinned host copies and pooled blocks.
    pinned: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for HostPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostPool")
            .field("pinned", &self.pinned_bytes())
            .field("stats", &self.stats())
            .finish()
    }
}

impl HostPool {
    /// A pool for host copies of a manager over `devices`, under `cfg`.
    pub fn new(cfg: &PinConfig, devices: &[Arc<dyn DynDevice>]) -> Self {
        HostPool {
            devices: devices
                .iter()
                .filter(|d| !d.info().unified_memory)
                .cloned()
                .collect(),
            budget: cfg.budget_bytes(),
            cap: cfg.pool_cap(),
            pinned: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            inner: Mutex::new(Inner {
                blocks: Vec::new(),
                bytes: 0,
                lost: Vec::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The devices a new host copy is pinned for: those that can use it, less the lost.
    pub fn pin_devices(&self) -> Vec<Arc<dyn DynDevice>> {
        if self.devices.is_empty() {
            return Vec::new();
        }
        let inner = self.lock();
        self.devices
            .iter()
            .filter(|d| !inner.lost.iter().any(|l| same_device(l, d)))
            .cloned()
            .collect()
    }

    /// A pooled block of `class` bytes pinned for exactly `devices` (the most recently
    /// returned), counted as a hit; `None` (a miss) when there is none.
    pub fn take(&self, class: usize, devices: &[Arc<dyn DynDevice>]) -> Option<Block> {
        let mut inner = self.lock();
        let found = inner
            .blocks
            .iter()
            .rposition(|b| b.cap() == class && b.pinned_for(devices));
        match found {
            Some(i) => {
                let b = inner.blocks.remove(i);
                inner.bytes -= b.cap() as u64;
                self.hits.fetch_add(1, Ordering::Relaxed);
                Some(b)
            }
            None => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Claims `bytes` of the pinned budget for a new pinned copy, giving pooled blocks up
    /// (oldest first) when that makes room; false when it cannot fit.
    pub fn claim(&self, bytes: u64) -> bool {
        loop {
            let fits = self
                .pinned
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |p| {
                    (p.saturating_add(bytes) <= self.budget).then_some(p + bytes)
                })
                .is_ok();
            if fits {
                return true;
            }
            let oldest = {
                let mut inner = self.lock();
                if inner.blocks.is_empty() {
                    return false;
                }
                let b = inner.blocks.remove(0);
                inner.bytes -= b.cap() as u64;
                b
            };
            self.release(vec![oldest]);
        }
    }

    /// Gives back a claim that was not used (pinning failed).
    pub fn unclaim(&self, bytes: u64) {
        self.pinned.fetch_sub(bytes, Ordering::SeqCst);
    }

    /// Takes back the block of a dropped pinned host copy: kept for reuse within the cap,
    /// else (or when a device it is pinned for was lost) unpinned and freed.
    pub fn give_back(&self, block: Block) {
        let size = block.cap() as u64;
        let mut freed = Vec::new();
        {
            let mut inner = self.lock();
            let stale = inner.lost.iter().any(|l| block.offered_to(l));
            if stale || size > self.cap || size == 0 {
                freed.push(block);
            } else {
                inner.bytes += size;
                inner.blocks.push(block);
                while inner.bytes > self.cap {
                    let b = inner.blocks.remove(0);
                    inner.bytes -= b.cap() as u64;
                    freed.push(b);
                }
            }
        }
        self.release(freed);
    }

    /// Unpins and frees every pooled block pinned for `device`, and pins nothing for it
    /// again.
    pub fn device_lost(&self, device: &Arc<dyn DynDevice>) {
        let freed = {
            let mut inner = self.lock();
            if !inner.lost.iter().any(|l| same_device(l, device)) {
                inner.lost.push(device.clone());
            }
            let (gone, keep): (Vec<Block>, Vec<Block>) = std::mem::take(&mut inner.blocks)
                .into_iter()
                .partition(|b| b.offered_to(device));
            inner.blocks = keep;
            inner.bytes = inner.blocks.iter().map(|b| b.cap() as u64).sum();
            gone
        };
        self.release(freed);
    }

    /// Unpins and frees every pooled block; returns the bytes freed.
    pub fn clear(&self) -> u64 {
        let freed = {
            let mut inner = self.lock();
            inner.bytes = 0;
            std::mem::take(&mut inner.blocks)
        };
        let n = freed.iter().map(|b| b.cap() as u64).sum();
        self.release(freed);
        n
    }

    /// Unpins and frees `blocks` (outside the pool's lock: unpinning is a system call per
    /// block) and takes them off the pinned count.
    fn release(&self, blocks: Vec<Block>) {
        for b in blocks {
            let n = b.cap() as u64;
            drop(b);
            self.pinned.fetch_sub(n, Ordering::SeqCst);
        }
    }

    /// Bytes pinned now (pinned host copies and pooled blocks).
    pub fn pinned_bytes(&self) -> u64 {
        self.pinned.load(Ordering::SeqCst)
    }

    /// Pooled bytes, hits and misses.
    pub fn stats(&self) -> HostPoolStats {
        HostPoolStats {
            pooled_bytes: self.lock().bytes,
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
        }
    }
}

impl Drop for HostPool {
    fn drop(&mut self) {
        self.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_classes_waste_less_than_an_eighth() {
        assert_eq!(size_class(0), Some(0));
        assert_eq!(size_class(1), Some(MIN_STEP));
        for mib in [1usize, 2, 64, 1024] {
            assert_eq!(
                size_class(mib << 20),
                Some(mib << 20),
                "powers of two are exact"
            );
        }
        assert_eq!(size_class(3 << 20), Some(3 << 20));
        assert_eq!(size_class((64 << 20) + 1), Some(72 << 20));
        let mut worst = 0.0f64;
        let mut len = 1usize << 20;
        while len < 1 << 34 {
            let c = size_class(len).unwrap();
            assert!(c >= len && c.is_multiple_of(4096));
            worst = worst.max((c - len) as f64 / c as f64);
            len = len * 9 / 7 + 4093;
        }
        assert!(worst < 0.125, "worst waste {worst}");
        assert_eq!(size_class(usize::MAX), None);
    }
}
