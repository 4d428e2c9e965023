//! The pinned staging ring: a few pinned host chunks, allocated once per device, through
//! which pageable user memory reaches device memory. Each chunk is owned by one worker
//! thread for the duration of a transfer; host `memcpy` into one chunk overlaps the DMA of
//! the others (pipelined), and every chunk's last DMA is tracked by its own event so a chunk
//! is never overwritten while a copy from it is in flight.

use std::thread;

use cudarc::driver::sys;
use vuma_core::Result;

use crate::error::check;

/// Granularity at which an upload chunk is staged and sent.
pub(crate) const SUB_PIECE: usize = 2 << 20;

/// One pinned chunk and the event recorded after the last copy that used it.
#[derive(Debug)]
pub(crate) struct Slot {
    pub host: *mut u8,
    pub event: sys::CUevent,
    /// One event per [`SUB_PIECE`] of the slot: downloads wait for each piece separately.
    pub sub_events: Vec<sys::CUevent>,
}

// SAFETY: a `Slot` is plain handles: the pinned pointer is only dereferenced by the one
// thread that holds `&mut Slot` (the ring is behind a mutex), and CUDA events may be used
// from any thread.
unsafe impl Send for Slot {}

/// The ring (behind the device's mutex).
#[derive(Debug)]
pub(crate) struct Ring {
    pub slots: Vec<Slot>,
    pub slot_bytes: usize,
    /// Recorded on the compute stream before a transfer (copy streams wait on it).
    pub ev_start: sys::CUevent,
    /// Recorded on a copy stream after a transfer (the compute stream waits on it).
    pub ev_done: sys::CUevent,
}

/// A CUDA context handle that may cross threads (the driver allows binding one context to
/// several threads).
#[derive(Debug, Clone, Copy)]
pub(crate) struct SendCtx(pub sys::CUcontext);
// SAFETY: contexts are process-wide driver objects, usable from any thread.
unsafe impl Send for SendCtx {}
// SAFETY: see `Send`.
unsafe impl Sync for SendCtx {}

impl SendCtx {
    /// The handle (a method, so closures capture the whole `Send` wrapper).
    pub fn get(self) -> sys::CUcontext {
        self.0
    }
}

/// A stream handle that may cross threads (streams accept work from any thread).
#[derive(Debug, Clone, Copy)]
pub(crate) struct SendStream(pub sys::CUstream);
// SAFETY: CUDA streams are thread-safe driver objects.
unsafe impl Send for SendStream {}
// SAFETY: see `Send`.
unsafe impl Sync for SendStream {}

impl SendStream {
    /// The handle (a method, so closures capture the whole `Send` wrapper).
    pub fn get(self) -> sys::CUstream {
        self.0
    }
}

/// Makes `ctx` current on the calling thread if it is not already.
pub(crate) fn bind(ctx: sys::CUcontext) -> Result<()> {
    let mut cur: sys::CUcontext = std::ptr::null_mut();
    // SAFETY: valid out-pointer.
    check("cuCtxGetCurrent", unsafe { sys::cuCtxGetCurrent(&mut cur) })?;
    if cur != ctx {
        // SAFETY: `ctx` is a retained primary context that outlives the caller's use.
        check("cuCtxSetCurrent", unsafe { sys::cuCtxSetCurrent(ctx) })?;
    }
    Ok(())
}

/// Copies `src` into `dst` with up to `threads` threads (one for small copies).
pub(crate) fn par_copy(dst: &mut [u8], src: &[u8], threads: usize) {
    const MIN_PER_THREAD: usize = 2 << 20;
    let n = dst.len().min(src.len());
    let t = threads.clamp(1, (n / MIN_PER_THREAD).max(1));
    if t == 1 {
        dst[..n].copy_from_slice(&src[..n]);
        return;
    }
    let per = n.div_ceil(t);
    thread::scope(|s| {
        let mut pieces = dst[..n].chunks_mut(per).zip(src[..n].chunks(per));
        let first = pieces.next();
        for (d, sr) in pieces {
            s.spawn(move || d.copy_from_slice(sr));
        }
        if let Some((d, sr)) = first {
            d.copy_from_slice(sr);
        }
    });
}

/// Fills `dst` with `v` with up to `threads` threads.
pub(crate) fn par_fill(dst: &mut [u8], v: u8, threads: usize) {
    const MIN_PER_THREAD: usize = 2 << 20;
    let t = threads.clamp(1, (dst.len() / MIN_PER_THREAD).max(1));
    let per = dst.len().div_ceil(t).max(1);
    thread::scope(|s| {
        for d in dst.chunks_mut(per) {
            s.spawn(move || d.fill(v));
        }
    });
}

impl Ring {
    /// Host→device: copies pageable `src` to device address `dst` through the ring on
    /// `stream`. Returns once every byte of `src` has been copied into pinned memory (the
    /// DMAs may still be in flight; the slots' events guard their reuse).
    pub fn upload(&mut self, ctx: SendCtx, stream: SendStream, dst: u64, src: &[u8]) -> Result<()> {
        let sb = self.slot_bytes;
        let chunks: Vec<(u64, &[u8])> = src
            .chunks(sb)
            .enumerate()
            .map(|(i, c)| (dst + (i * sb) as u64, c))
            .collect();
        let workers = chunks.len().min(self.slots.len()).max(1);
        let mut plans: Vec<Vec<(u64, &[u8])>> = vec![Vec::new(); workers];
        for (i, c) in chunks.into_iter().enumerate() {
            plans[i % workers].push(c);
        }
        let work = |slot: &mut Slot, plan: Vec<(u64, &[u8])>| -> Result<()> {
            bind(ctx.get())?;
            for (d, c) in plan {
                // SAFETY: the event belongs to this slot (never recorded: returns at once).
                check("cuEventSynchronize", unsafe {
                    sys::cuEventSynchronize(slot.event)
                })?;
                // The chunk goes out in sub-pieces, each sent as soon as it is staged, so
                // the link starts working after the first piece rather than the whole chunk.
                for (k, piece) in c.chunks(SUB_PIECE).enumerate() {
                    let at = k * SUB_PIECE;
                    // SAFETY: `at + piece.len() <= c.len() <= slot_bytes`; no DMA reads the
                    // slot any more (event waited above) and this thread has exclusive
                    // `&mut` to it.
                    let pinned =
                        unsafe { std::slice::from_raw_parts_mut(slot.host.add(at), piece.len()) };
                    pinned.copy_from_slice(piece);
                    // SAFETY: `d + at .. + len` lies inside the destination buffer (checked
                    // by the caller); the source is pinned memory that stays valid until the
                    // slot's event, recorded after this copy, has completed.
                    check("cuMemcpyHtoDAsync", unsafe {
                        sys::cuMemcpyHtoDAsync_v2(
                            d + at as u64,
                            pinned.as_ptr() as *const _,
                            piece.len(),
                            stream.get(),
                        )
                    })?;
                }
                // SAFETY: valid event and stream.
                check("cuEventRecord", unsafe {
                    sys::cuEventRecord(slot.event, stream.get())
                })?;
            }
            Ok(())
        };
        run_workers(&mut self.slots, plans, &work)
    }

    /// Device→host: copies `dst.len()` bytes from device address `src` into pageable `dst`
    /// through the ring on `stream`; returns when every byte has arrived.
    pub fn download(
        &mut self,
        ctx: SendCtx,
        stream: SendStream,
        src: u64,
        dst: &mut [u8],
    ) -> Result<()> {
        let sb = self.slot_bytes;
        let chunks: Vec<(u64, &mut [u8])> = dst
            .chunks_mut(sb)
            .enumerate()
            .map(|(i, c)| (src + (i * sb) as u64, c))
            .collect();
        let workers = chunks.len().min(self.slots.len()).max(1);
        let mut plans: Vec<Vec<(u64, &mut [u8])>> = (0..workers).map(|_| Vec::new()).collect();
        for (i, c) in chunks.into_iter().enumerate() {
            plans[i % workers].push(c);
        }
        let work = |slot: &mut Slot, plan: Vec<(u64, &mut [u8])>| -> Result<()> {
            bind(ctx.get())?;
            for (s, c) in plan {
                // SAFETY: waits for any earlier copy that still reads this slot.
                check("cuEventSynchronize", unsafe {
                    sys::cuEventSynchronize(slot.event)
                })?;
                // Issue the chunk's DMAs piece by piece, each followed by its own event,
                // then copy each piece out as soon as it has landed.
                let n = c.len();
                for (k, at) in (0..n).step_by(SUB_PIECE).enumerate() {
                    let len = SUB_PIECE.min(n - at);
                    // SAFETY: `s + at .. + len` lies inside the source buffer (checked by the
                    // caller); the slot has room for `at + len <= slot_bytes` bytes and is
                    // exclusively ours.
                    check("cuMemcpyDtoHAsync", unsafe {
                        sys::cuMemcpyDtoHAsync_v2(
                            slot.host.add(at) as *mut _,
                            s + at as u64,
                            len,
                            stream.get(),
                        )
                    })?;
                    // SAFETY: valid event (one per sub-piece) and stream.
                    check("cuEventRecord", unsafe {
                        sys::cuEventRecord(slot.sub_events[k], stream.get())
                    })?;
                }
                for (k, piece) in c.chunks_mut(SUB_PIECE).enumerate() {
                    // SAFETY: valid event, recorded just above.
                    check("cuEventSynchronize", unsafe {
                        sys::cuEventSynchronize(slot.sub_events[k])
                    })?;
                    // SAFETY: the DMA into this piece of the slot has completed (event
                    // above); the slot holds at least `k * SUB_PIECE + piece.len()` bytes.
                    let pinned = unsafe {
                        std::slice::from_raw_parts(slot.host.add(k * SUB_PIECE), piece.len())
                    };
                    piece.copy_from_slice(pinned);
                }
            }
            Ok(())
        };
        run_workers(&mut self.slots, plans, &work)
    }
}

/// Runs `work(slot_i, plan_i)` for each plan, the first on the calling thread and the rest
/// on scoped threads; returns the first error.
fn run_workers<P: Send>(
    slots: &mut [Slot],
    plans: Vec<P>,
    work: &(dyn Fn(&mut Slot, P) -> Result<()> + Sync),
) -> Result<()> {
    let mut plans = plans.into_iter();
    let mut slots = slots.iter_mut();
    let (Some(p0), Some(s0)) = (plans.next(), slots.next()) else {
        return Ok(());
    };
    thread::scope(|s| {
        let handles: Vec<_> = slots
            .zip(plans)
            .map(|(slot, plan)| s.spawn(move || work(slot, plan)))
            .collect();
        let mut result = work(s0, p0);
        for h in handles {
            let r = h.join().unwrap_or_else(|_| {
                Err(vuma_core::Error::Kernel {
                    kernel: "staging ring".into(),
                    reason: "a copy thread panicked".into(),
                })
            });
            if result.is_ok() {
                result = r;
            }
        }
        result
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn par_copy_and_fill_cover_every_byte() {
        for n in [0usize, 1, 3, (2 << 20) + 1, (9 << 20) + 7] {
            let src: Vec<u8> = (0..n).map(|i| (i * 7 + 1) as u8).collect();
            let mut dst = vec![0u8; n];
            par_copy(&mut dst, &src, 4);
            assert!(dst == src, "par_copy {n}");
            par_fill(&mut dst, 0xab, 4);
            assert!(dst.iter().all(|&b| b == 0xab), "par_fill {n}");
        }
    }
}
