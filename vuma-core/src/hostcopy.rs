//! The memory manager's plain host copy of a buffer: page-aligned host memory taken
//! fallibly, page-locked (pinned) for the devices that can DMA from it while the manager's
//! pinned budget allows, and filled with several threads.
//!
//! Pinned host copies are what make uploads and write-backs run at the link's speed: a
//! device copies straight between them and its memory, with no staging through a bounce
//! buffer (on the H200, pageable uploads top out near 40 GB/s on host copies, pinned ones
//! at the link's 55 GB/s). Page-locked memory is a system resource, so the manager pins
//! only within [`PinConfig`](crate::PinConfig)'s budget (a share of RAM) and only buffers
//! large enough for it to matter; beyond it host copies stay pageable and the statistics
//! say how much is pinned.
//!
//! Pinning is slow (about 40 µs per MiB: a system call and page-table work) and so is
//! faulting fresh pages in, so a pinned copy that is dropped does not unpin: its block goes
//! back to the manager's [`HostPool`], and the next host copy of the same size class takes
//! it (no fault, no registration). A block unpins itself before its memory is freed.
//!
//! A copy can also be streamed ([`copy_streamed`]): while several threads fill it, one
//! more sends each range already filled (a new buffer's first upload overlapping its fill).

use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use crate::device::DynDevice;
use crate::error::{Error, Result};
use crate::hostpool::{Block, HostPool, ALIGN};

/// Fills below this size run on the calling thread (waking workers costs more).
const PARALLEL_MIN: usize = 1 << 20;

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

/// At most this many threads fill one host copy. With eight, fills of fresh bytes into
/// pinned memory ran at 23.5 GB/s (64 MiB) and 32.4 GB/s (1 GiB) on a 16-vCPU H200 host,
/// below the link's 55 GB/s, so a first upload waited for its fill: every core may help.
const MAX_FILL_THREADS: usize = 16;

/// Threads for a fill of `len` bytes: one per [`PARALLEL_MIN`] bytes, within the cores
/// and [`MAX_FILL_THREADS`].
fn fill_threads(len: usize) -> usize {
    (len / PARALLEL_MIN).clamp(1, crate::host::cores().min(MAX_FILL_THREADS))
}

/// Runs `f(offset, piece)` over pieces of `dst`, on scoped threads when it is large (the
/// calling thread works too, and takes every piece left when a thread cannot start).
/// Scoped threads rather than a shared pool: a fill may run under the manager's lock, and
/// a pool's worker waiting for it could pick up a task that takes that lock.
fn for_pieces<T: Send>(dst: &mut [T], f: impl Fn(usize, &mut [T]) + Sync) {
    let threads = fill_threads(dst.len());
    if threads <= 1 {
        f(0, dst);
        return;
    }
    let piece = dst.len().div_ceil(threads).next_multiple_of(ALIGN);
    let pieces: Vec<Mutex<Option<&mut [T]>>> =
        dst.chunks_mut(piece).map(|p| Mutex::new(Some(p))).collect();
    let next = AtomicUsize::new(0);
    let work = || loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some(slot) = pieces.get(i) else { break };
        let p = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(p) = p {
            f(i * piece, p);
        }
    };
    std::thread::scope(|s| {
        for _ in 1..threads {
            let spawned = std::thread::Builder::new()
                .name("vuma-fill".into())
                .spawn_scoped(s, work);
            if spawned.is_err() {
                break;
            }
        }
        work();
    });
}

/// Initialises `dst` as `init` says (zeros, or a copy of the bytes), with several threads
/// when it is large. `fresh`: the memory was never initialised (`Overwritten` zeroes it).
fn fill(dst: &mut [MaybeUninit<u8>], init: Init<'_>, fresh: bool) {
    match init {
        Init::Overwritten if !fresh => {}
        Init::Zero | Init::Overwritten => for_pieces(dst, |_, d| d.fill(MaybeUninit::new(0))),
        Init::Bytes(src) => {
            assert_eq!(src.len(), dst.len(), "a copy fills the whole host copy");
            for_pieces(dst, |off, d| {
                let s = &src[off..off + d.len()];
                crate::ntcopy::copy_uninit(d, s);
            });
        }
    }
}

/// Copies `src` into `dst` (equal lengths), with several threads when it is large.
pub(crate) fn copy_parallel(dst: &mut [u8], src: &[u8]) {
    assert_eq!(src.len(), dst.len(), "equal lengths");
    for_pieces(dst, |off, d| {
        crate::ntcopy::copy(d, &src[off..off + d.len()])
    });
}

/// The unit of a streamed copy ([`copy_streamed`]): what one thread fills before the sink
/// may send it. Small, because the sink cannot start before the first unit is filled by
/// one thread (256 KiB: some 25 µs at a thread's copy rate, 2% of the transfer of 64 MiB
/// at 55 GB/s); large enough that claiming units and signalling their completion (an
/// atomic add, a lock) costs nothing next to copying them. The sink still sends large
/// ranges: each call takes everything filled since the last one.
pub(crate) const STREAM_UNIT: usize = 256 << 10;

/// The base of a buffer that several threads of [`copy_streamed`] reach: fill threads
/// write disjoint units of it, the sink reads units once they are complete.
#[derive(Clone, Copy)]
struct StreamBase(*mut u8);

impl StreamBase {
    /// The address `off` bytes in (a method, so that closures capture the whole newtype).
    fn at(self, off: usize) -> *mut u8 {
        self.0.wrapping_add(off)
    }
}

// SAFETY: the pointer is only dereferenced as `copy_streamed` allows: each unit is written
// by the one thread that claimed it, and read only after it is marked complete (the
// progress lock orders the write before the read); the buffer outlives the threads (they
// are scoped).
unsafe impl Send for StreamBase {}
// SAFETY: as for `Send`: shared use goes through the same claims and completion marks.
unsafe impl Sync for StreamBase {}

/// Which units of a streamed copy are complete; the sink waits on it.
struct Progress {
    done: Mutex<Vec<bool>>,
    ready: Condvar,
}

impl Progress {
    fn mark(&self, unit: usize) {
        self.done.lock().unwrap_or_else(|e| e.into_inner())[unit] = true;
        self.ready.notify_one();
    }

    /// Waits until unit `from` is complete; returns the end of the run of complete units
    /// that starts there.
    fn wait_run(&self, from: usize) -> usize {
        let mut done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        while !done[from] {
            done = self.ready.wait(done).unwrap_or_else(|e| e.into_inner());
        }
        let run = done[from..].iter().take_while(|&&d| d).count();
        from + run
    }
}

/// Copies `src` into `dst` (equal lengths) with several threads, [`STREAM_UNIT`] by unit
/// in order, while `sink` runs on another thread over what is already copied: each call
/// gets the next range `(offset, bytes)` of `dst`, everything completed since the call
/// before it (so a sink slower than the copy gets fewer, larger ranges, and one faster
/// than it waits for the next unit). The copy always completes, whatever the sink does;
/// after the sink's first error it is not called again and that error is returned. When
/// no thread can be started for the sink, it runs once over the whole of `dst` after the
/// copy.
pub(crate) fn copy_streamed<E: Send>(
    dst: &mut [u8],
    src: &[u8],
    mut sink: impl FnMut(usize, &[u8]) -> std::result::Result<(), E> + Send,
) -> std::result::Result<(), E> {
    assert_eq!(src.len(), dst.len(), "equal lengths");
    let len = dst.len();
    if len == 0 {
        return Ok(());
    }
    let units = len.div_ceil(STREAM_UNIT);
    let unit = |u: usize| (u * STREAM_UNIT, STREAM_UNIT.min(len - u * STREAM_UNIT));
    // One core is the sink's (a synchronous DMA keeps its thread busy); the rest fill.
    let threads = fill_threads(len).min(crate::host::cores().saturating_sub(1).max(1));
    let base = StreamBase(dst.as_mut_ptr());
    let next = AtomicUsize::new(0);
    let progress = Progress {
        done: Mutex::new(vec![false; units]),
        ready: Condvar::new(),
    };
    let fill = || loop {
        let u = next.fetch_add(1, Ordering::Relaxed);
        if u >= units {
            break;
        }
        let (off, n) = unit(u);
        // SAFETY: `off + n <= len`; unit `u` was handed to this thread alone (the counter
        // gives each index out once), and nobody reads it before `mark(u)` below.
        let d = unsafe { std::slice::from_raw_parts_mut(base.at(off), n) };
        // Streaming stores, fenced before the unit is marked complete (the sink's DMA
        // reads it next, from memory).
        crate::ntcopy::copy(d, &src[off..off + n]);
        progress.mark(u);
    };
    let send = || {
        let mut from = 0;
        while from < units {
            let to = progress.wait_run(from);
            let (off, _) = unit(from);
            let end = unit(to - 1).0 + unit(to - 1).1;
            // SAFETY: units `from..to` are complete: every byte of `off..end` was written
            // (ordered before this read by the progress lock) and is never written again.
            let bytes = unsafe { std::slice::from_raw_parts(base.at(off), end - off) };
            sink(off, bytes)?;
            from = to;
        }
        Ok(())
    };
    let streamed = std::thread::scope(|s| {
        let sender = std::thread::Builder::new()
            .name("vuma-upload".into())
            .spawn_scoped(s, send)
            .ok();
        for _ in 1..threads {
            let spawned = std::thread::Builder::new()
                .name("vuma-fill".into())
                .spawn_scoped(s, fill);
            if spawned.is_err() {
                break;
            }
        }
        // The calling thread fills too, and takes every unit left when a thread could not
        // start.
        fill();
        sender.map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
    });
    match streamed {
        Some(r) => r,
        None => sink(0, dst),
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
    fn streamed_copies_send_every_byte_once_in_order() {
        let u = STREAM_UNIT;
        for n in [0, 1, u - 1, u, u + 1, 5 * u + 12_345, 3 * PARALLEL_MIN] {
            let src: Vec<u8> = (0..n).map(|i| (i * 7 % 253) as u8).collect();
            let mut dst = vec![0u8; n];
            let mut sent = Vec::new();
            let r: std::result::Result<(), ()> = copy_streamed(&mut dst, &src, |at, bytes| {
                assert_eq!(at, sent.len(), "ranges follow each other");
                assert!(!bytes.is_empty());
                sent.extend_from_slice(bytes);
                Ok(())
            });
            assert!(r.is_ok());
            assert_eq!(dst, src, "{n} bytes copied");
            assert_eq!(sent, src, "{n} bytes sent");
        }
    }

    #[test]
    fn a_failing_sink_stops_sending_but_the_copy_completes() {
        let n = 7 * STREAM_UNIT + 3;
        let src: Vec<u8> = (0..n).map(|i| (i % 251) as u8 | 1).collect();
        let mut dst = vec![0u8; n];
        let mut calls = 0;
        let r = copy_streamed(&mut dst, &src, |_, _| {
            calls += 1;
            Err(calls)
        });
        assert_eq!(r, Err(1), "the first error, and no call after it");
        assert_eq!(calls, 1);
        assert_eq!(dst, src);
    }

    /// Small enough for Miri (the fill and the sender share the buffer through raw
    /// pointers).
    #[test]
    fn streamed_copies_share_the_buffer_soundly() {
        for n in [1, STREAM_UNIT + 1, 3 * STREAM_UNIT] {
            let mut src = vec![0x5a_u8; n];
            src[n - 1] = 1;
            let mut dst = vec![0u8; n];
            let mut sent = 0;
            let r: std::result::Result<(), ()> = copy_streamed(&mut dst, &src, |at, bytes| {
                assert_eq!(at, sent);
                assert!(bytes == &src[at..at + bytes.len()]);
                sent += bytes.len();
                Ok(())
            });
            assert!(r.is_ok());
            assert_eq!(sent, n);
            assert!(dst == src);
        }
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
