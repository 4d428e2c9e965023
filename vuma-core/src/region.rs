//! [`HostRegion`]: a host copy of the memory manager lent to a device that shares host
//! memory, so that its kernels use the bytes in place (no device allocation, no copy).
//!
//! The manager lends a buffer's host copy as one region per lease that uses it in place
//! ([`Device::alias_host`](crate::Device::alias_host) wraps the region as a buffer of the
//! device), and takes the region back when that lease is released. Every access to the
//! bytes while they are lent — the device's operations on an alias (launches, reads,
//! writes, through any clone of the buffer handle) and the manager's own (host reads,
//! uploads to other devices), which take the locks of all the copy's regions — holds the
//! region's lock, so none overlaps another: a host function gets its `&mut [u8]` to them
//! alone. Once taken back, the region refuses every access: a handle to it that outlives
//! its lease (a cloned buffer) can neither read memory that was freed or reused nor write
//! the host copy behind the manager's back.

use std::ptr::NonNull;
use std::sync::{Mutex, MutexGuard};

use crate::error::{Error, Result};

/// Host memory lent to a device for in-place use (see the module documentation). Made by
/// the memory manager only.
pub struct HostRegion {
    ptr: NonNull<u8>,
    len: usize,
    /// Whether the bytes are still lent; held for the time of every access to them.
    open: Mutex<bool>,
}

// SAFETY: the region only hands out its bytes under `open`'s lock, and only while open
// (while the lender keeps them allocated and touches them only under the same lock); the
// pointer itself is an address.
unsafe impl Send for HostRegion {}
// SAFETY: as for `Send`: shared references reach the bytes only through the lock.
unsafe impl Sync for HostRegion {}

impl std::fmt::Debug for HostRegion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostRegion")
            .field("len", &self.len)
            .field("open", &self.is_open())
            .finish()
    }
}

impl HostRegion {
    /// Lends `len` bytes at `ptr`.
    ///
    /// # Safety
    /// Until [`close`](Self::close) returns, `ptr..ptr + len` must stay allocated (neither
    /// freed nor moved) and valid for reads and writes, and the lender must touch those
    /// bytes only while it holds this region's lock ([`lock`](Self::lock)).
    pub(crate) unsafe fn new(ptr: NonNull<u8>, len: usize) -> Self {
        HostRegion {
            ptr,
            len,
            open: Mutex::new(true),
        }
    }

    fn state(&self) -> MutexGuard<'_, bool> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it is empty (never: buffers are not).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The address of its first byte. Only an address: the bytes may be reached only
    /// through a [`RegionGuard`], and only while it lives.
    pub fn addr(&self) -> usize {
        self.ptr.as_ptr() as usize
    }

    /// Whether the bytes are still lent (an answer that may change right after).
    pub fn is_open(&self) -> bool {
        *self.state()
    }

    /// Locks the bytes for one operation (waiting for the one that holds them now). An
    /// [`Error::InvalidArgument`] once the region was taken back: its leases ended.
    pub fn lock(&self) -> Result<RegionGuard<'_>> {
        let guard = self.state();
        if !*guard {
            return Err(Error::invalid(
                "host memory lent to a device in place was taken back: its lease ended",
            ));
        }
        Ok(RegionGuard {
            region: self,
            _open: guard,
        })
    }

    /// Takes the bytes back (waiting for the operation that holds them now): every later
    /// [`lock`](Self::lock) fails. Idempotent.
    pub(crate) fn close(&self) {
        *self.state() = false;
    }

    /// The bytes, locked, for the lender (a region it still lends is open).
    pub(crate) fn lock_open(&self) -> RegionGuard<'_> {
        let guard = self.state();
        debug_assert!(*guard, "the lender touches only regions it still lends");
        RegionGuard {
            region: self,
            _open: guard,
        }
    }
}

/// The bytes of an open [`HostRegion`], locked: nobody else touches them while it lives.
pub struct RegionGuard<'a> {
    region: &'a HostRegion,
    _open: MutexGuard<'a, bool>,
}

impl std::fmt::Debug for RegionGuard<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegionGuard")
            .field("len", &self.region.len)
            .finish()
    }
}

impl RegionGuard<'_> {
    /// The first byte: valid for reads and writes of [`len`](Self::len) bytes while the
    /// guard lives (and only then).
    pub fn as_ptr(&self) -> *mut u8 {
        self.region.ptr.as_ptr()
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.region.len
    }

    /// Whether it is empty (never: buffers are not).
    pub fn is_empty(&self) -> bool {
        self.region.len == 0
    }

    /// The bytes, read only.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: the region is open (checked when the guard was made, and `close` waits
        // for the guard), so the lender keeps the bytes allocated and leaves them alone
        // while the lock is held; the slice borrows the guard, so it dies before the lock
        // is released, and `&self` rules out a `bytes_mut` borrow alive at the same time.
        unsafe { std::slice::from_raw_parts(self.region.ptr.as_ptr(), self.region.len) }
    }

    /// The bytes, writable.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`, and `&mut self` makes this the only borrow of them.
        unsafe { std::slice::from_raw_parts_mut(self.region.ptr.as_ptr(), self.region.len) }
    }
}

/// The order in which the regions of host memory are locked, by devices and by the
/// manager alike (so that nobody waits in a cycle): by the address of their bytes, then by
/// the address of the region.
pub(crate) fn region_order(r: &HostRegion) -> (usize, usize) {
    (r.addr(), r as *const HostRegion as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_region_refuses_access() {
        let mut mem = vec![1u8; 64];
        let ptr = NonNull::new(mem.as_mut_ptr()).unwrap();
        // SAFETY: `mem` outlives the region's use below and is touched only through it.
        let r = unsafe { HostRegion::new(ptr, mem.len()) };
        {
            let mut g = r.lock().unwrap();
            g.bytes_mut()[3] = 9;
            assert_eq!(g.bytes()[3], 9);
            assert_eq!(g.len(), 64);
        }
        assert!(r.is_open());
        r.close();
        r.close();
        assert!(!r.is_open());
        assert!(matches!(r.lock(), Err(Error::InvalidArgument(_))));
        assert_eq!(mem[3], 9);
    }
}
