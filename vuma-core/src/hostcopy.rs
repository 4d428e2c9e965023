//! The memory manager's plain host copy of a buffer: zeroed, page-aligned host memory taken
//! fallibly, page-locked (pinned) for the devices that can DMA from it while the manager's
//! pinned budget allows.
//!
//! Pinned host copies are what make uploads and write-backs run at the link's speed: a
//! device copies straight between them and its memory, with no staging through a bounce
//! buffer (on the H200, pageable uploads top out near 40 GB/s on host copies, pinned ones
//! at the link's 55 GB/s). Page-locked memory is a system resource, so the manager pins
//! only within [`PinConfig`]'s budget (a share of RAM) and only buffers large enough for
//! it to matter; beyond it host copies stay pageable and the statistics say how much is
//! pinned. A host copy unpins itself before its memory is freed.

use std::alloc::Layout;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::device::DynDevice;
use crate::error::{Error, Result};

/// Alignment of host copies: a page, so that pinning and host-memory import (Vulkan needs
/// `minImportedHostPointerAlignment`, 4 KiB on common drivers) take whole pages.
const ALIGN: usize = 4096;

/// When host copies are pinned.
#[derive(Debug, Clone, PartialEq)]
pub struct PinConfig {
    /// Whether to pin at all.
    pub enabled: bool,
    /// Host copies smaller than this stay pageable (pinning costs about 40 µs per MiB, a
    /// system call and page-table work; small copies gain little).
    pub min_bytes: u64,
    /// At most this many bytes pinned at once; `None`: half the machine's RAM.
    pub budget: Option<u64>,
}

impl Default for PinConfig {
    fn default() -> Self {
        PinConfig {
            enabled: true,
            min_bytes: 1 << 20,
            budget: None,
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
}

/// Zeroed, page-aligned host memory, optionally pinned for some devices.
pub(crate) struct HostCopy {
    ptr: NonNull<u8>,
    len: usize,
    /// Devices that pinned it (unpinned on drop).
    pins: Vec<Arc<dyn DynDevice>>,
    /// The manager's count of pinned bytes, given `len` back on drop.
    counted: Option<Arc<AtomicU64>>,
}

// SAFETY: a `HostCopy` owns its allocation uniquely (like a `Box<[u8]>`); the devices it
// holds are `Send + Sync`; shared access only reads through `&[u8]`.
unsafe impl Send for HostCopy {}
// SAFETY: as above: `&HostCopy` gives only `&[u8]`.
unsafe impl Sync for HostCopy {}

impl HostCopy {
    /// `size` zero bytes, or the transient [`Error::OutOfMemory`] (never an abort).
    pub fn zeroed(size: u64) -> Result<Self> {
        let oom = || Error::OutOfMemory {
            device: "host".into(),
            requested: size,
        };
        let len = usize::try_from(size).map_err(|_| oom())?;
        if len == 0 {
            return Ok(HostCopy {
                ptr: NonNull::dangling(),
                len: 0,
                pins: Vec::new(),
                counted: None,
            });
        }
        let layout = Layout::from_size_align(len, ALIGN).map_err(|_| oom())?;
        // SAFETY: `layout` has a non-zero size.
        let p = unsafe { std::alloc::alloc_zeroed(layout) };
        let ptr = NonNull::new(p).ok_or_else(oom)?;
        Ok(HostCopy {
            ptr,
            len,
            pins: Vec::new(),
            counted: None,
        })
    }

    /// Pins the memory for each device of `devices` that can use it; returns whether any
    /// did. Failures are logged and leave the copy pageable (it works either way).
    pub fn pin(&mut self, devices: &[Arc<dyn DynDevice>]) -> bool {
        for d in devices {
            if self.len == 0 || self.pins.iter().any(|p| Arc::ptr_eq(p, d)) {
                continue;
            }
            // SAFETY: the allocation lives until `drop`, which unpins first; it never moves.
            match unsafe { d.pin_host(self.ptr.as_ptr(), self.len) } {
                Ok(true) => self.pins.push(d.clone()),
                Ok(false) => {}
                Err(e) => tracing::warn!(
                    device = %d.info().name,
                    bytes = self.len,
                    error = %e,
                    "pinning a host copy failed; it stays pageable"
                ),
            }
        }
        !self.pins.is_empty()
    }

    /// Makes the copy give its length back to `counter` when dropped (the manager adds it
    /// when pinning succeeds).
    pub fn count_pinned(&mut self, counter: Arc<AtomicU64>) {
        self.counted = Some(counter);
    }

    /// Whether some device pinned it.
    pub fn is_pinned(&self) -> bool {
        !self.pins.is_empty()
    }
}

impl std::ops::Deref for HostCopy {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `ptr` points to `len` initialised bytes owned by `self` (dangling but
        // aligned and valid for a zero-length slice when `len` is 0).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl std::ops::DerefMut for HostCopy {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`, and `&mut self` makes the access unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for HostCopy {
    fn drop(&mut self) {
        if let Some(c) = self.counted.take() {
            c.fetch_sub(self.len as u64, Ordering::SeqCst);
        }
        for d in self.pins.drain(..) {
            // SAFETY: device operations on the range are synchronous (`write`/`read` return
            // when done with host memory), so nothing uses it any more.
            if let Err(e) = unsafe { d.unpin_host(self.ptr.as_ptr()) } {
                tracing::warn!(device = %d.info().name, error = %e, "unpinning a host copy failed");
            }
        }
        if self.len > 0 {
            // SAFETY: allocated in `zeroed` with exactly this layout (which was valid then).
            unsafe {
                std::alloc::dealloc(
                    self.ptr.as_ptr(),
                    Layout::from_size_align_unchecked(self.len, ALIGN),
                )
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeroed_aligned_and_writable() {
        let mut h = HostCopy::zeroed(10_000).unwrap();
        assert!(h.iter().all(|&b| b == 0));
        assert_eq!(h.as_ptr() as usize % ALIGN, 0);
        h[9_999] = 7;
        assert_eq!(h[9_999], 7);
        assert!(HostCopy::zeroed(0).unwrap().is_empty());
    }

    #[test]
    fn absurd_sizes_are_out_of_memory_not_aborts() {
        let e = HostCopy::zeroed(u64::MAX).err().expect("an error");
        assert!(e.is_transient(), "{e}");
    }

    #[test]
    fn host_devices_do_not_pin() {
        let d: Arc<dyn DynDevice> = Arc::new(crate::host::HostDevice::new());
        let mut h = HostCopy::zeroed(1 << 20).unwrap();
        assert!(!h.pin(&[d]));
        assert!(!h.is_pinned());
    }
}
