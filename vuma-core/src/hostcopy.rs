//! The memory manager's plain host copy of a buffer: page-aligned host memory taken
//! fallibly, page-locked (pinned) for the devices that can DMA from it while the manager's
//! pinned budget allows, and filled with several threads.
//!
//! Pinned host copies are what make uploads and write-backs run at the link's speed: a
//! device copies straight between them and its memory, with no staging through a bounce
//! buffer (on the H200, pageable uploads top out near 40 GB/s on host copies, pinned ones
//! at the link's 55 GB/s). Page-locked memory is a system resource, so the manager pins
//! only within [`PinConfig`]'s budget (a share of RAM) and only buffers large enough for
//! it to matter; beyond it host copies stay pageable and the statistics say how much is
//! pinned.
//!
//! Pinning is slow (about 40 µs per MiB: a system call and page-table work) and so is
//! faulting fresh pages in, so a pinned copy that is dropped does not unpin: its block goes
//! back to the manager's [`HostPool`](crate::hostpool::HostPool), and the next host copy of
//! the same size class takes it (no fault, no registration). A block unpins itself before
//! its memory is freed.

use std::alloc::Layout;
use std::mem::MaybeUninit;
use std::ptr::NonNull;
use std::sync::Arc;

use rayon::prelude::*;

use crate::device::DynDevice;
use crate::error::{Error, Result};
use crate::hostpool::HostPool;

/// Alignment of host copies: a page, so that pinning and host-memory import (Vulkan needs
/// `minImportedHostPointerAlignment`, 4 KiB on common drivers) take whole pages.
const ALIGN: usize = 4096;

/// Fills below this size run on the calling thread (waking workers costs more).
const PARALLEL_MIN: usize = 1 << 20;

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

/// How a new host copy's bytes start out.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Init<'a> {
    /// All zeros (a buffer never written, or written in part).
    Zero,
    /// A copy of these bytes (exactly the copy's length).
    Bytes(&'a [u8]),
    /// Anything: the caller overwrites every byte (a download). Fresh memory is zeroed
    /// all the same (it must be initialised before it is seen as bytes); a reused block
    /// keeps its old bytes.
    Overwritten,
}

/// Page-aligned host memory, pinned for some devices. Unpins and frees itself on drop.
pub(crate) struct Block {
    ptr: NonNull<u8>,
    cap: usize,
    /// Devices that pinned it.
    pins: Vec<Arc<dyn DynDevice>>,
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
    fn alloc(cap: usize) -> Result<Block> {
        let oom = || Error::OutOfMemory {
            device: "host".into(),
            requested: cap as u64,
        };
        if cap == 0 {
            return Ok(Block {
                ptr: NonNull::dangling(),
                cap: 0,
                pins: Vec::new(),
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
        })
    }

    /// Its size in bytes.
    pub fn cap(&self) -> usize {
        self.cap
    }

    /// Pins the memory for each device of `devices` that can use it; returns whether any
    /// did. Failures are logged and leave it pageable for that device (it works either way).
    fn pin(&mut self, devices: &[Arc<dyn DynDevice>]) -> bool {
        for d in devices {
            if self.cap == 0 || self.pins.iter().any(|p| same_device(p, d)) {
                continue;
            }
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

    /// Whether it is pinned for exactly the devices of `devices` (in any order).
    pub fn pinned_for(&self, devices: &[Arc<dyn DynDevice>]) -> bool {
        self.pins.len() == devices.len()
            && devices
                .iter()
                .all(|d| self.pins.iter().any(|p| same_device(p, d)))
    }

    /// Whether `device` pinned it.
    pub fn pinned_by(&self, device: &Arc<dyn DynDevice>) -> bool {
        self.pins.iter().any(|p| same_device(p, device))
    }

    /// The first `len` bytes, to be initialised.
    fn uninit(&mut self, len: usize) -> &mut [MaybeUninit<u8>] {
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

/// A piece of a parallel fill: large enough that waking a thread pays, small enough that
/// every core gets some.
fn piece_len(len: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    len.div_ceil(threads * 2)
        .next_multiple_of(ALIGN)
        .max(PARALLEL_MIN / 2)
}

/// Initialises `dst` as `init` says (zeros, or a copy of the bytes), with several threads
/// when it is large. `fresh`: the memory was never initialised (`Overwritten` zeroes it).
fn fill(dst: &mut [MaybeUninit<u8>], init: Init<'_>, fresh: bool) {
    let len = dst.len();
    match init {
        Init::Overwritten if !fresh => {}
        Init::Zero | Init::Overwritten => {
            if len < PARALLEL_MIN {
                dst.fill(MaybeUninit::new(0));
            } else {
                dst.par_chunks_mut(piece_len(len))
                    .for_each(|d| d.fill(MaybeUninit::new(0)));
            }
        }
        Init::Bytes(src) => {
            assert_eq!(src.len(), len, "a copy fills the whole host copy");
            let copy = |(d, s): (&mut [MaybeUninit<u8>], &[u8])| {
                // SAFETY: `d` and `s` have the same length (pieces of equal-length slices
                // cut at the same points); `d` is host-copy memory that `s`, a borrowed
                // user slice, cannot overlap (`d` is borrowed mutably).
                unsafe { std::ptr::copy_nonoverlapping(s.as_ptr(), d.as_mut_ptr().cast(), d.len()) }
            };
            if len < PARALLEL_MIN {
                copy((dst, src));
            } else {
                let p = piece_len(len);
                dst.par_chunks_mut(p).zip(src.par_chunks(p)).for_each(copy);
            }
        }
    }
}

/// Copies `src` into `dst` (equal lengths), with several threads when it is large.
pub(crate) fn copy_parallel(dst: &mut [u8], src: &[u8]) {
    let len = dst.len();
    if len < PARALLEL_MIN {
        dst.copy_from_slice(src);
    } else {
        let p = piece_len(len);
        dst.par_chunks_mut(p)
            .zip(src.par_chunks(p))
            .for_each(|(d, s)| d.copy_from_slice(s));
    }
}

/// Host memory for one buffer: `len` bytes at the start of a block, optionally pinned.
pub(crate) struct HostCopy {
    /// `None` only while being dropped.
    block: Option<Block>,
    len: usize,
    /// Where the block goes when the copy is dropped (pinned blocks counted in the pool's
    /// pinned bytes); `None`: the block unpins and frees itself.
    home: Option<Arc<HostPool>>,
}

impl HostCopy {
    /// `size` bytes initialised as `init` says, pageable, or the transient
    /// [`Error::OutOfMemory`] (never an abort).
    pub(crate) fn pageable(size: u64, init: Init<'_>) -> Result<Self> {
        let len = usize::try_from(size).map_err(|_| Error::OutOfMemory {
            device: "host".into(),
            requested: size,
        })?;
        let mut block = Block::alloc(len)?;
        fill(block.uninit(len), init, true);
        Ok(HostCopy {
            block: Some(block),
            len,
            home: None,
        })
    }

    /// A copy of `len` bytes in a fresh block of `cap` bytes pinned for `devices`; `Err`
    /// hands the (initialised) copy back pageable when no device pinned it.
    pub(crate) fn pinned_fresh(
        len: usize,
        cap: usize,
        init: Init<'_>,
        devices: &[Arc<dyn DynDevice>],
        home: Arc<HostPool>,
    ) -> Result<std::result::Result<Self, Self>> {
        let mut block = Block::alloc(cap)?;
        // Fill first: pinning populated pages costs less than faulting them in under the
        // registration.
        fill(block.uninit(len), init, true);
        let pinned = block.pin(devices);
        let copy = HostCopy {
            block: Some(block),
            len,
            home: pinned.then_some(home),
        };
        Ok(if pinned { Ok(copy) } else { Err(copy) })
    }

    /// A copy of `len` bytes in `block`, a pinned block taken from `home`'s pool.
    pub(crate) fn reuse(mut block: Block, len: usize, init: Init<'_>, home: Arc<HostPool>) -> Self {
        fill(block.uninit(len), init, false);
        HostCopy {
            block: Some(block),
            len,
            home: Some(home),
        }
    }

    fn block(&self) -> &Block {
        self.block
            .as_ref()
            .expect("a host copy has its block until dropped")
    }

    /// Whether some device pinned it.
    pub fn is_pinned(&self) -> bool {
        !self.block().pins.is_empty()
    }
}

impl std::ops::Deref for HostCopy {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: the block holds at least `len` bytes, all initialised by the constructor
        // (`fill`, or a reused block's earlier content), owned by `self` (dangling but
        // aligned and valid for a zero-length slice when `len` is 0).
        unsafe { std::slice::from_raw_parts(self.block().ptr.as_ptr(), self.len) }
    }
}

impl std::ops::DerefMut for HostCopy {
    fn deref_mut(&mut self) -> &mut [u8] {
        let len = self.len;
        let block = self.block.as_mut().expect("live");
        // SAFETY: as in `deref`, and `&mut self` makes the access unique.
        unsafe { std::slice::from_raw_parts_mut(block.ptr.as_ptr(), len) }
    }
}

impl Drop for HostCopy {
    fn drop(&mut self) {
        if let (Some(block), Some(home)) = (self.block.take(), self.home.take()) {
            home.give_back(block);
        }
        // Otherwise the block (if any) unpins and frees itself.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeroed_aligned_and_writable() {
        let mut h = HostCopy::pageable(10_000, Init::Zero).unwrap();
        assert!(h.iter().all(|&b| b == 0));
        assert_eq!(h.as_ptr() as usize % ALIGN, 0);
        h[9_999] = 7;
        assert_eq!(h[9_999], 7);
        assert!(HostCopy::pageable(0, Init::Zero).unwrap().is_empty());
    }

    #[test]
    fn large_fills_are_exact() {
        let n = 5 * PARALLEL_MIN + 12_345;
        let h = HostCopy::pageable(n as u64, Init::Zero).unwrap();
        assert!(h.iter().all(|&b| b == 0));
        let src: Vec<u8> = (0..n).map(|i| (i * 31 % 251) as u8).collect();
        let h = HostCopy::pageable(n as u64, Init::Bytes(&src)).unwrap();
        assert_eq!(&h[..], &src[..]);
        let mut dst = vec![0u8; n];
        copy_parallel(&mut dst, &src);
        assert_eq!(dst, src);
    }

    #[test]
    fn absurd_sizes_are_out_of_memory_not_aborts() {
        let e = HostCopy::pageable(u64::MAX, Init::Zero)
            .err()
            .expect("an error");
        assert!(e.is_transient(), "{e}");
        let e = HostCopy::pageable(isize::MAX as u64 - 10, Init::Zero)
            .err()
            .expect("an error");
        assert!(e.is_transient(), "{e}");
    }

    #[test]
    fn host_devices_do_not_pin() {
        let d: Arc<dyn DynDevice> = Arc::new(crate::host::HostDevice::new());
        let mut b = Block::alloc(1 << 20).unwrap();
        assert!(!b.pin(&[d]));
        assert!(b.pins.is_empty());
    }
}
