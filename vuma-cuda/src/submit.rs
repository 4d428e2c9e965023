//! Streams, events and synchronisation: the compute stream every operation is ordered on,
//! the side stream of concurrent copies and their [`Fence`]s, the joins that order one
//! stream after another, stream-ordered copies and fills, and `synchronize`.

use std::sync::Arc;

use cudarc::driver::sys;
use vuma_core::{Error, Fence, Result};

use crate::error::check;
use crate::shared::{lock, Inner};

/// The payload of a CUDA [`Fence`]: an event recorded after a side copy. Destroying an
/// event whose work is still pending is allowed (the driver releases it on completion).
struct CudaFence {
    inner: Arc<Inner>,
    event: sys::CUevent,
}

// SAFETY: CUDA events are driver objects usable from any thread.
unsafe impl Send for CudaFence {}
// SAFETY: see `Send`; `wait_for` only passes the handle to the driver.
unsafe impl Sync for CudaFence {}

impl Drop for CudaFence {
    fn drop(&mut self) {
        if self.inner.bind().is_ok() {
            // SAFETY: the event was created in this context by `copy_concurrent` and is
            // destroyed once; pending work on it completes normally.
            unsafe { sys::cuEventDestroy_v2(self.event) };
        }
    }
}

pub(crate) fn new_event() -> Result<sys::CUevent> {
    let mut e: sys::CUevent = std::ptr::null_mut();
    // SAFETY: valid out-pointer; DISABLE_TIMING makes record/wait cheapest.
    check("cuEventCreate", unsafe {
        sys::cuEventCreate(&mut e, sys::CUevent_flags::CU_EVENT_DISABLE_TIMING as u32)
    })?;
    Ok(e)
}

fn new_stream() -> Result<sys::CUstream> {
    let mut s: sys::CUstream = std::ptr::null_mut();
    // SAFETY: valid out-pointer; a non-blocking stream does not sync with the NULL stream.
    check("cuStreamCreate", unsafe {
        sys::cuStreamCreate(&mut s, sys::CUstream_flags::CU_STREAM_NON_BLOCKING as u32)
    })?;
    Ok(s)
}

impl Inner {
    /// Creates the compute, copy and side streams and the side stream's events (the context
    /// must be bound); `Drop` destroys them.
    pub(crate) fn create_streams(&mut self) -> Result<()> {
        self.compute = new_stream()?;
        self.h2d = new_stream()?;
        self.d2h = new_stream()?;
        self.side = new_stream()?;
        let side = self.side_state.get_mut().unwrap_or_else(|e| e.into_inner());
        side.ev_start = new_event()?;
        side.ev_join = new_event()?;
        Ok(())
    }

    pub(crate) fn sync_compute(&self) -> Result<()> {
        self.bind()?;
        self.join_side()?;
        // SAFETY: valid stream of this context.
        check("cuStreamSynchronize", unsafe {
            sys::cuStreamSynchronize(self.compute)
        })
    }

    /// On failure, waits for `stream` so that no copy is left in flight on a stream the
    /// compute stream was not joined with (a buffer dropped next would be freed under it).
    pub(crate) fn settle(&self, stream: sys::CUstream, r: Result<()>) -> Result<()> {
        if r.is_err() {
            // SAFETY: valid stream of this context; the result is secondary to `r`.
            unsafe { sys::cuStreamSynchronize(stream) };
        }
        r
    }

    /// Makes the compute stream wait for every side copy issued so far (no-op when none
    /// is pending). The context must be bound.
    pub(crate) fn join_side(&self) -> Result<()> {
        let mut side = lock(&self.side_state);
        if !side.pending {
            return Ok(());
        }
        self.join(side.ev_join, self.side, self.compute)?;
        side.pending = false;
        Ok(())
    }

    /// Makes `to` wait for everything issued on `from` so far, through `event`.
    pub(crate) fn join(
        &self,
        event: sys::CUevent,
        from: sys::CUstream,
        to: sys::CUstream,
    ) -> Result<()> {
        // SAFETY: valid event and streams of this context.
        check("cuEventRecord", unsafe { sys::cuEventRecord(event, from) })?;
        // SAFETY: as above; flags must be 0.
        check("cuStreamWaitEvent", unsafe {
            sys::cuStreamWaitEvent(to, event, 0)
        })
    }

    /// Copies `len` bytes from address `src` to address `dst` on the compute stream. Both
    /// ranges must be checked ranges of live allocations of this context.
    pub(crate) fn copy_ordered(&self, src: u64, dst: u64, len: u64) -> Result<()> {
        self.bind()?;
        // SAFETY: both ranges are in bounds of live allocations of this context (unified
        // addressing lets the driver infer host or device for each address); the copy is
        // ordered on the compute stream after every earlier operation.
        check("cuMemcpyAsync", unsafe {
            sys::cuMemcpyAsync(dst, src, len as usize, self.compute)
        })
    }

    /// Sets `len` bytes of device memory at `dptr` (a checked range of a live allocation)
    /// to `value` on the compute stream.
    pub(crate) fn fill_ordered(&self, dptr: u64, len: u64, value: u8) -> Result<()> {
        self.bind()?;
        // SAFETY: the range is inside the allocation; ordered on the compute stream.
        check("cuMemsetD8Async", unsafe {
            sys::cuMemsetD8Async(dptr, value, len as usize, self.compute)
        })
    }

    /// Copies `len` bytes from address `src` to address `dst` on the side stream, after
    /// everything issued on the compute stream so far; the fence is signalled when the
    /// copy is done. Both ranges must be checked ranges of live allocations of this
    /// context, whose buffers join the side stream before they are freed.
    pub(crate) fn copy_concurrent(self: &Arc<Self>, src: u64, dst: u64, len: u64) -> Result<Fence> {
        self.bind()?;
        let event = new_event()?;
        let fence = Fence::new(CudaFence {
            inner: self.clone(),
            event,
        });
        let mut side = lock(&self.side_state);
        // Ordered after everything issued on the compute stream so far (which also makes
        // stream-ordered allocations of `src` and `dst` visible to the side stream).
        self.join(side.ev_start, self.compute, self.side)?;
        // SAFETY: both ranges are in bounds of live allocations of this context; the
        // buffers cannot be freed before the side stream is joined (`CudaBuffer::drop`
        // joins it first).
        let r = check("cuMemcpyAsync", unsafe {
            sys::cuMemcpyAsync(dst, src, len as usize, self.side)
        });
        side.pending = true;
        r?;
        // SAFETY: valid event and stream of this context.
        check("cuEventRecord", unsafe {
            sys::cuEventRecord(event, self.side)
        })?;
        Ok(fence)
    }

    /// Makes the compute stream wait for `fence` (a fence of this device, else
    /// `WrongDevice`).
    pub(crate) fn wait_for(self: &Arc<Self>, fence: &Fence) -> Result<()> {
        if fence.is_done() {
            return Ok(());
        }
        let f = fence
            .payload::<CudaFence>()
            .filter(|f| Arc::ptr_eq(&f.inner, self))
            .ok_or_else(|| Error::WrongDevice {
                expected: self.name.clone(),
                found: "a fence of another device".into(),
            })?;
        self.bind()?;
        // SAFETY: valid event (kept alive by `fence`) and stream of this context; flags 0.
        check("cuStreamWaitEvent", unsafe {
            sys::cuStreamWaitEvent(self.compute, f.event, 0)
        })
    }

    /// Waits for all work of the device, then returns the first error deferred from `Drop`.
    pub(crate) fn synchronize(&self) -> Result<()> {
        self.bind()?;
        // Every copy-stream transfer is joined into the compute stream (uploads) or waited
        // for before returning (downloads), side copies are joined here, so the compute
        // stream's completion covers all.
        self.join_side()?;
        // SAFETY: valid stream of this context.
        let r = check("cuStreamSynchronize", unsafe {
            sys::cuStreamSynchronize(self.compute)
        });
        let mut deferred = lock(&self.deferred);
        if let Err(e) = r {
            deferred.clear();
            return Err(e);
        }
        if deferred.is_empty() {
            Ok(())
        } else {
            Err(deferred.remove(0))
        }
    }
}
