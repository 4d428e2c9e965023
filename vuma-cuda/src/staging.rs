//! Host↔device bytes: the pinned staging ring (pinned at open; the pipelined transfers
//! themselves are `ring`'s), one DMA straight from or into host ranges the caller pinned
//! (`pin_host`), batched uploads of many small pieces, and CPU copies of host-resident
//! buffers. Every copy-stream transfer is ordered after the compute stream's work and
//! before its later work.

use std::ffi::c_void;

use cudarc::driver::sys;
use vuma_core::{Placement, Result};

use crate::buffer::CudaBuffer;
use crate::error::{check, guard};
use crate::options::ring_layout;
use crate::ring::{par_copy, par_fill, Ring, SendCtx, SendStream, Slot, SUB_PIECE};
use crate::shared::{lock, Inner};
use crate::submit::new_event;

impl Inner {
    /// Creates the ring's events and pins its slots (the layout of
    /// [`ring_layout`]`(threads)`); `Drop` frees them.
    pub(crate) fn pin_ring(&mut self, threads: usize) -> Result<()> {
        let ring = self.ring.get_mut().unwrap_or_else(|e| e.into_inner());
        ring.ev_start = new_event()?;
        ring.ev_done = new_event()?;
        let (slots, slot_bytes) = ring_layout(threads);
        ring.slot_bytes = slot_bytes;
        for _ in 0..slots {
            let event = new_event()?;
            ring.slots.push(Slot {
                host: std::ptr::null_mut(),
                event,
                sub_events: Vec::new(),
            });
            for _ in 0..slot_bytes.div_ceil(SUB_PIECE) {
                let e = new_event()?;
                if let Some(s) = ring.slots.last_mut() {
                    s.sub_events.push(e);
                }
            }
            let mut p: *mut c_void = std::ptr::null_mut();
            // SAFETY: valid out-pointer; PORTABLE pinned memory, not write-combined (the
            // CPU reads it back on downloads). Freed in `Inner::drop`.
            check("cuMemHostAlloc", unsafe {
                sys::cuMemHostAlloc(&mut p, slot_bytes, sys::CU_MEMHOSTALLOC_PORTABLE)
            })?;
            if let Some(s) = ring.slots.last_mut() {
                s.host = p as *mut u8;
            }
        }
        Ok(())
    }

    /// The staging ring's layout: (chunk slots, bytes per slot).
    pub(crate) fn ring_geometry(&self) -> (usize, usize) {
        let r = lock(&self.ring);
        (r.slots.len(), r.slot_bytes)
    }

    /// Whether `ptr..ptr + len` lies inside one range pinned through `pin_host`.
    fn is_pinned(&self, ptr: usize, len: usize) -> bool {
        lock(&self.pinned)
            .range(..=ptr)
            .next_back()
            .is_some_and(|(&start, &n)| ptr.saturating_add(len) <= start.saturating_add(n))
    }

    /// One DMA between pinned host memory and device memory on `stream`, ordered after the
    /// compute stream's work and before its later work; returns when it is done.
    fn pinned_copy(&self, to_device: bool, dptr: u64, host: *mut c_void, len: usize) -> Result<()> {
        let stream = if to_device { self.h2d } else { self.d2h };
        let ring = lock(&self.ring);
        self.bind()?;
        self.join(ring.ev_start, self.compute, stream)?;
        // SAFETY: `host..host + len` is pinned host memory the caller holds for the call,
        // `dptr..dptr + len` a checked range of a live allocation of this context; the
        // stream is synchronised before returning, so neither is used afterwards.
        let r = check(
            if to_device {
                "cuMemcpyHtoDAsync_v2"
            } else {
                "cuMemcpyDtoHAsync_v2"
            },
            unsafe {
                if to_device {
                    sys::cuMemcpyHtoDAsync_v2(dptr, host, len, stream)
                } else {
                    sys::cuMemcpyDtoHAsync_v2(host, dptr, len, stream)
                }
            },
        )
        .and_then(|()| {
            // SAFETY: valid stream of this context.
            let r = unsafe { sys::cuStreamSynchronize(stream) };
            check("cuStreamSynchronize", r)
        });
        let joined = self.join(ring.ev_done, stream, self.compute);
        self.settle(stream, r.and(joined))
    }

    /// `write` of `src` (not empty) into `dst` at `offset` (a checked range): a CPU copy
    /// into host-resident memory, one DMA from a pinned range, else through the ring.
    pub(crate) fn upload(&self, dst: &CudaBuffer, offset: u64, src: &[u8]) -> Result<()> {
        if dst.placement != Placement::DeviceLocal {
            self.sync_compute()?;
            // SAFETY: range checked; no device work is in flight on the buffer
            // (synchronised) and VUMA hands out no references to its bytes.
            let d =
                unsafe { std::slice::from_raw_parts_mut(dst.host.add(offset as usize), src.len()) };
            par_copy(d, src, self.threads);
            return Ok(());
        }
        if self.is_pinned(src.as_ptr() as usize, src.len()) {
            return self.pinned_copy(
                true,
                dst.dptr + offset,
                src.as_ptr() as *mut c_void,
                src.len(),
            );
        }
        let mut ring = lock(&self.ring);
        self.bind()?;
        self.join(ring.ev_start, self.compute, self.h2d)?;
        let r = ring.upload(
            SendCtx(self.ctx),
            SendStream(self.h2d),
            dst.dptr + offset,
            src,
        );
        let joined = self.join(ring.ev_done, self.h2d, self.compute);
        self.settle(self.h2d, r.and(joined))
    }

    /// `read` of `src` at `offset` (a checked range) into `dst` (not empty): a CPU copy out
    /// of host-resident memory, one DMA into a pinned range, else through the ring.
    pub(crate) fn download(&self, src: &CudaBuffer, offset: u64, dst: &mut [u8]) -> Result<()> {
        if src.placement != Placement::DeviceLocal {
            self.sync_compute()?;
            // SAFETY: range checked; device work on the buffer has completed.
            let s = unsafe { std::slice::from_raw_parts(src.host.add(offset as usize), dst.len()) };
            par_copy(dst, s, self.threads);
            return Ok(());
        }
        if self.is_pinned(dst.as_ptr() as usize, dst.len()) {
            return self.pinned_copy(
                false,
                src.dptr + offset,
                dst.as_mut_ptr() as *mut c_void,
                dst.len(),
            );
        }
        let mut ring = lock(&self.ring);
        self.bind()?;
        self.join(ring.ev_start, self.compute, self.d2h)?;
        let r = ring.download(
            SendCtx(self.ctx),
            SendStream(self.d2h),
            src.dptr + offset,
            dst,
        );
        self.settle(self.d2h, r)
    }

    /// `write_batch` of `pieces` (checked, none empty, at least one) into `dst`: CPU
    /// copies into host-resident memory, else packed into the ring's slots.
    pub(crate) fn upload_batch(&self, dst: &CudaBuffer, pieces: &[(u64, &[u8])]) -> Result<()> {
        if dst.placement != Placement::DeviceLocal {
            self.sync_compute()?;
            for &(off, bytes) in pieces {
                // SAFETY: range checked; no device work touches the buffer (synchronised);
                // `bytes` is a distinct host slice.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        bytes.as_ptr(),
                        dst.host.add(off as usize),
                        bytes.len(),
                    )
                };
            }
            return Ok(());
        }
        let mut ring = lock(&self.ring);
        self.bind()?;
        self.join(ring.ev_start, self.compute, self.h2d)?;
        let result = batch_upload(self, &mut ring, dst.dptr, pieces);
        let joined = self.join(ring.ev_done, self.h2d, self.compute);
        self.settle(self.h2d, result.and(joined))
    }

    /// `fill` of host-resident `dst` at `offset` (a checked range, not empty) by the CPU.
    pub(crate) fn fill_host(
        &self,
        dst: &CudaBuffer,
        offset: u64,
        len: u64,
        value: u8,
    ) -> Result<()> {
        self.sync_compute()?;
        // SAFETY: range checked; device work on the buffer has completed.
        let d =
            unsafe { std::slice::from_raw_parts_mut(dst.host.add(offset as usize), len as usize) };
        par_fill(d, value, self.threads);
        Ok(())
    }

    /// `read_host_resident` of host-resident `src` at `offset` (a checked range) by the CPU,
    /// whatever state the context is in.
    pub(crate) fn read_host(&self, src: &CudaBuffer, offset: u64, dst: &mut [u8]) {
        // SAFETY: range checked; staging and mapped buffers are host allocations of at least
        // `len` bytes that stay mapped until the buffer is dropped, whatever state the
        // context is in (the contract of `read_host_resident` says a range the device still
        // writes reads as whatever is there).
        let s = unsafe { std::slice::from_raw_parts(src.host.add(offset as usize), dst.len()) };
        par_copy(dst, s, self.threads);
    }

    /// Page-locks `ptr..ptr + len` (not empty) and records it for one-DMA transfers.
    ///
    /// # Safety
    /// The caller keeps `ptr..ptr + len` allocated and in place until [`Inner::unpin_host`]
    /// (the contract of [`Device::pin_host`](vuma_core::Device::pin_host)).
    pub(crate) unsafe fn pin_host(&self, ptr: *mut u8, len: usize) -> Result<()> {
        self.bind()?;
        // SAFETY: the caller keeps `ptr..ptr + len` allocated and in place until
        // `unpin_host`; registration only page-locks it and maps it for the device.
        check("cuMemHostRegister_v2", unsafe {
            sys::cuMemHostRegister_v2(ptr as *mut c_void, len, 0)
        })?;
        lock(&self.pinned).insert(ptr as usize, len);
        Ok(())
    }

    /// Unregisters a range pinned by [`Inner::pin_host`] (nothing for another pointer).
    ///
    /// # Safety
    /// No operation of this device uses the range any more (the contract of
    /// [`Device::unpin_host`](vuma_core::Device::unpin_host)).
    pub(crate) unsafe fn unpin_host(&self, ptr: *mut u8) -> Result<()> {
        if lock(&self.pinned).remove(&(ptr as usize)).is_none() {
            return Ok(());
        }
        self.bind()?;
        // SAFETY: `ptr` was registered by `pin_host` on this context and no operation of
        // this device uses it any more (the caller's contract).
        check("cuMemHostUnregister", unsafe {
            sys::cuMemHostUnregister(ptr as *mut c_void)
        })
    }
}

/// Packs `pieces` into ring slots and sends each slot's pieces with one batched copy.
fn batch_upload(inner: &Inner, ring: &mut Ring, dst: u64, pieces: &[(u64, &[u8])]) -> Result<()> {
    let sb = ring.slot_bytes;
    let parts = pieces.iter().flat_map(|&(off, b)| {
        b.chunks(sb)
            .enumerate()
            .map(move |(i, c)| (off + (i * sb) as u64, c))
    });
    let mut slot = 0usize;
    let mut used = 0usize;
    let (mut dsts, mut srcs, mut sizes): (Vec<u64>, Vec<u64>, Vec<usize>) = Default::default();
    // SAFETY: the slot's event guards its reuse.
    check("cuEventSynchronize", unsafe {
        sys::cuEventSynchronize(ring.slots[0].event)
    })?;
    let flush = |ring: &mut Ring,
                 slot: usize,
                 dsts: &mut Vec<u64>,
                 srcs: &mut Vec<u64>,
                 sizes: &mut Vec<usize>|
     -> Result<()> {
        if dsts.is_empty() {
            return Ok(());
        }
        let mut attrs = sys::CUmemcpyAttributes {
            srcAccessOrder: sys::CUmemcpySrcAccessOrder::CU_MEMCPY_SRC_ACCESS_ORDER_STREAM,
            srcLocHint: sys::CUmemLocation {
                type_: sys::CUmemLocationType::CU_MEM_LOCATION_TYPE_HOST,
                id: 0,
            },
            dstLocHint: sys::CUmemLocation {
                type_: sys::CUmemLocationType::CU_MEM_LOCATION_TYPE_DEVICE,
                id: inner.ordinal as i32,
            },
            flags: 0,
        };
        let mut idx = [0usize];
        let r = guard("cuMemcpyBatchAsync_v2", || {
            // SAFETY: the three arrays hold `len` entries each; every source lies in the
            // pinned slot (valid until the event recorded below completes), every
            // destination inside the checked buffer range; one attribute applies from
            // index 0.
            check("cuMemcpyBatchAsync_v2", unsafe {
                sys::cuMemcpyBatchAsync_v2(
                    dsts.as_mut_ptr(),
                    srcs.as_mut_ptr(),
                    sizes.as_mut_ptr(),
                    dsts.len(),
                    &mut attrs,
                    idx.as_mut_ptr(),
                    1,
                    inner.h2d,
                )
            })
        });
        dsts.clear();
        srcs.clear();
        sizes.clear();
        r?;
        // SAFETY: valid event and stream.
        check("cuEventRecord", unsafe {
            sys::cuEventRecord(ring.slots[slot].event, inner.h2d)
        })
    };
    for (off, c) in parts {
        if used + c.len() > sb {
            flush(ring, slot, &mut dsts, &mut srcs, &mut sizes)?;
            slot = (slot + 1) % ring.slots.len();
            used = 0;
            // SAFETY: waits until no copy reads the next slot any more.
            check("cuEventSynchronize", unsafe {
                sys::cuEventSynchronize(ring.slots[slot].event)
            })?;
        }
        // SAFETY: `used + c.len() <= slot_bytes`; the slot is idle (event waited) and ours
        // (ring lock held).
        let p = unsafe { ring.slots[slot].host.add(used) };
        // SAFETY: `p` has room for `c.len()` bytes, and `c` is a distinct host slice.
        unsafe { std::ptr::copy_nonoverlapping(c.as_ptr(), p, c.len()) };
        dsts.push(dst + off);
        srcs.push(p as u64);
        sizes.push(c.len());
        used += c.len();
    }
    flush(ring, slot, &mut dsts, &mut srcs, &mut sizes)
}
