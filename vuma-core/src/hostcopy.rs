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
//!
//! A copy can be lent to devices that share host memory ([`HostCopy::lend`]): their
//! kernels then use its bytes in place, through one [`HostRegion`] per lease. While it is
//! lent, every access to the bytes ([`HostCopy::bytes`], [`HostCopy::bytes_mut`]) holds the
//! locks of all its regions, and the copy takes every region back before its memory is
//! freed or reused.

use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use crate::device::DynDevice;
use crate::error::{Error, Result};
use crate::hostpool::{Block, HostPool, ALIGN};
use crate::region::{region_order, HostRegion, RegionGuard};

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
    /// The regions its bytes are lent as (one per lease in place), in locking order.
    lent: Vec<Arc<HostRegion>>,
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
            lent: Vec::new(),
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
            lent: Vec::new(),
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
            lent: Vec::new(),
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

    /// The locks of every region the copy is lent as (none when it is not lent), taken in
    /// the order devices take them ([`region_order`]).
    fn lock_lent(&self) -> Vec<RegionGuard<'_>> {
        self.lent.iter().map(|r| r.lock_open()).collect()
    }

    /// The bytes, to read (holding the lent regions' locks while the copy is lent).
    pub(crate) fn bytes(&self) -> HostBytes<'_> {
        HostBytes {
            ptr: self.block().ptr.as_ptr(),
            len: self.len,
            _locks: self.lock_lent(),
            _borrow: std::marker::PhantomData,
        }
    }

    /// The bytes, to write (holding the lent regions' locks while the copy is lent).
    pub(crate) fn bytes_mut(&mut self) -> HostBytesMut<'_> {
        HostBytesMut {
            ptr: self.block().ptr.as_ptr(),
            len: self.len,
            _locks: self.lock_lent(),
            _borrow: std::marker::PhantomData,
        }
    }

    /// The address of the first byte (for an upload that reads the copy outside the
    /// manager's lock; only while it is not lent).
    pub(crate) fn as_ptr(&self) -> *const u8 {
        self.block().ptr.as_ptr()
    }

    /// Lends the bytes to a device that shares host memory, for one lease: a new region
    /// over them, lent until [`take_back`](Self::take_back) or the copy is dropped.
    pub(crate) fn lend(&mut self) -> Arc<HostRegion> {
        let ptr = self.block().ptr;
        // SAFETY: the block holds `len` initialised bytes and never moves; it is freed or
        // reused only when the copy is dropped, and `Drop` takes every region back first.
        // While a region is lent, the copy reaches the bytes only through `bytes` and
        // `bytes_mut`, which hold the locks of all its regions, or through `as_ptr`, which
        // the manager uses only on copies that are not lent.
        let r = Arc::new(unsafe { HostRegion::new(ptr, self.len) });
        self.lent.push(r.clone());
        self.lent.sort_by_key(|r| region_order(r));
        r
    }

    /// Whether the bytes are lent now.
    pub(crate) fn is_lent(&self) -> bool {
        !self.lent.is_empty()
    }

    /// Takes back `region` if it is one of this copy's (waiting for an operation that
    /// uses it now): handles to it refuse access from then on. Whether it was.
    pub(crate) fn take_back(&mut self, region: &Arc<HostRegion>) -> bool {
        match self.lent.iter().position(|r| Arc::ptr_eq(r, region)) {
            Some(i) => {
                self.lent.remove(i).close();
                true
            }
            None => false,
        }
    }

    /// Takes back every region (see [`take_back`](Self::take_back)).
    pub(crate) fn take_back_all(&mut self) {
        for r in self.lent.drain(..) {
            r.close();
        }
    }
}

/// The bytes of a host copy, readable; holds the lent regions' locks when it is lent.
pub(crate) struct HostBytes<'a> {
    ptr: *const u8,
    len: usize,
    _locks: Vec<RegionGuard<'a>>,
    _borrow: std::marker::PhantomData<&'a [u8]>,
}

impl std::ops::Deref for HostBytes<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: the block holds at least `len` bytes, all initialised by the constructor
        // (`fill`, or a reused block's earlier content), and outlives `'a` (the copy is
        // borrowed for it); the manager mutates them only through `&mut HostCopy`, which
        // the borrow excludes, and devices only under a lent region's lock, which this
        // holds for every region while the copy is lent (dangling but aligned and valid
        // for a zero-length slice when `len` is 0).
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

/// The bytes of a host copy, writable; holds the lent regions' locks when it is lent.
pub(crate) struct HostBytesMut<'a> {
    ptr: *mut u8,
    len: usize,
    _locks: Vec<RegionGuard<'a>>,
    _borrow: std::marker::PhantomData<&'a mut [u8]>,
}

impl std::ops::Deref for HostBytesMut<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: as in `HostBytes::deref`; the copy is borrowed mutably for `'a`.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl std::ops::DerefMut for HostBytesMut<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `HostBytes::deref`; the copy is borrowed mutably for `'a` and
        // `&mut self` makes this borrow of the bytes unique (devices are kept out by the
        // lent regions' locks, held while the copy is lent).
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl Drop for HostCopy {
    fn drop(&mut self) {
        // No device may reach the memory once it is freed or reused.
        self.take_back_all();
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
        assert!(h.bytes().iter().all(|&b| b == 0));
        assert_eq!(h.as_ptr() as usize % ALIGN, 0);
        h.bytes_mut()[9_999] = 7;
        assert_eq!(h.bytes()[9_999], 7);
        assert!(HostCopy::pageable(0, Init::Zero)
            .unwrap()
            .bytes()
            .is_empty());
    }

    #[test]
    fn lent_bytes_are_shared_under_the_lock_and_taken_back() {
        let mut h = HostCopy::pageable(4096, Init::Zero).unwrap();
        let r = h.lend();
        let r2 = h.lend();
        assert!(!Arc::ptr_eq(&r, &r2), "one region per lease");
        assert!(h.is_lent());
        r.lock().unwrap().bytes_mut()[10] = 3;
        assert_eq!(h.bytes()[10], 3, "what the device wrote is the copy's");
        h.bytes_mut()[11] = 4;
        assert_eq!(r2.lock().unwrap().bytes()[11], 4);
        assert!(h.take_back(&r));
        assert!(!h.take_back(&r), "once");
        assert!(r.lock().is_err(), "taken back");
        assert!(
            h.is_lent() && r2.lock().is_ok(),
            "the other lease's region stays"
        );
        assert!(h.take_back(&r2));
        assert!(!h.is_lent());
        let r = h.lend();
        drop(h);
        assert!(
            r.lock().is_err(),
            "a dropped copy takes its regions back first"
        );
    }

    #[test]
    fn large_fills_are_exact() {
        let n = 5 * PARALLEL_MIN + 12_345;
        let h = HostCopy::pageable(n as u64, Init::Zero).unwrap();
        assert!(h.bytes().iter().all(|&b| b == 0));
        let src: Vec<u8> = (0..n).map(|i| (i * 31 % 251) as u8).collect();
        let h = HostCopy::pageable(n as u64, Init::Bytes(&src)).unwrap();
        assert_eq!(&h.bytes()[..], &src[..]);
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
