//! A persistent pool of `memcpy` threads for the staging paths.
//!
//! `std::thread::scope` spawns (and joins) its threads on every call, which costs tens of
//! microseconds per thread: too much when a 256 MiB transfer is cut into a few dozen chunks.
//! The pool keeps `threads - 1` workers alive; [`CopyPool::copy`] hands one piece of the copy
//! to each worker, copies the first piece on the calling thread and returns when every piece
//! is done. Workers spin briefly after a job (transfers come as bursts of chunks) and then
//! sleep on a condition variable, so an idle pool burns no CPU.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Smallest piece handed to a thread: below it, waking a thread costs more than it saves.
const MIN_PIECE: usize = 256 << 10;
/// How long a worker spins for the next job before sleeping.
const SPIN: Duration = Duration::from_micros(300);

/// One piece of a copy: raw addresses, valid until the owning `copy` call returns.
#[derive(Clone, Copy)]
struct Piece {
    dst: *mut u8,
    src: *const u8,
    len: usize,
    stream: bool,
}

// SAFETY: a `Piece` is only dereferenced by a worker while the `copy` call that created it
// is blocked waiting for it; the caller's borrows (`&mut [u8]`, `&[u8]`) outlive that call
// and the pieces are disjoint, so moving the addresses to another thread is sound.
unsafe impl Send for Piece {}

struct State {
    /// Job per worker for the current generation (`None`: nothing for this worker).
    jobs: Vec<Option<Piece>>,
    shutdown: bool,
}

struct Inner {
    state: Mutex<State>,
    work: Condvar,
    done: Condvar,
    /// Bumped (under `state`) whenever jobs are posted.
    generation: AtomicU64,
    /// Pieces of the current generation not finished yet.
    remaining: AtomicUsize,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A persistent pool of copy threads (see the module documentation).
pub(crate) struct CopyPool {
    inner: Arc<Inner>,
    threads: usize,
    workers: Vec<JoinHandle<()>>,
    /// Serialises callers (one copy at a time uses the workers).
    caller: Mutex<()>,
}

impl std::fmt::Debug for CopyPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CopyPool")
            .field("threads", &self.threads)
            .finish_non_exhaustive()
    }
}

impl CopyPool {
    /// A pool copying with `threads` threads in all (the caller's included). Workers that
    /// cannot be spawned are simply not used.
    pub(crate) fn new(threads: usize) -> Self {
        let want = threads.max(1) - 1;
        let inner = Arc::new(Inner {
            state: Mutex::new(State {
                jobs: vec![None; want],
                shutdown: false,
            }),
            work: Condvar::new(),
            done: Condvar::new(),
            generation: AtomicU64::new(0),
            remaining: AtomicUsize::new(0),
        });
        let mut workers = Vec::with_capacity(want);
        for i in 0..want {
            let inner2 = inner.clone();
            match std::thread::Builder::new()
                .name(format!("vuma-vk-copy{i}"))
                .spawn(move || worker(&inner2, i))
            {
                Ok(h) => workers.push(h),
                Err(_) => break,
            }
        }
        CopyPool {
            threads: workers.len() + 1,
            inner,
            workers,
            caller: Mutex::new(()),
        }
    }

    /// Copies `src` into `dst` (same length) with the pool's threads. `stream`: write
    /// `dst` with non-temporal stores (see [`copy_piece`]).
    pub(crate) fn copy(&self, dst: &mut [u8], src: &[u8], stream: bool) {
        assert_eq!(dst.len(), src.len(), "CopyPool::copy: length mismatch");
        let len = src.len();
        let parts = self.threads.min(len / MIN_PIECE).max(1);
        if parts == 1 {
            copy_piece(dst, src, stream);
            return;
        }
        let _one = self.caller.lock().unwrap_or_else(|p| p.into_inner());
        // Pieces of equal size rounded to 4 KiB (page-friendly), the last one shorter.
        let piece = len.div_ceil(parts).next_multiple_of(4096);
        let d = dst.as_mut_ptr();
        let s = src.as_ptr();
        let mut posted = 0usize;
        {
            let mut st = self.inner.lock();
            for (w, slot) in st.jobs.iter_mut().enumerate() {
                let start = (w + 1) * piece;
                *slot = (start < len).then(|| {
                    posted += 1;
                    // SAFETY: `start < len`, so both offsets stay inside the slices.
                    unsafe {
                        Piece {
                            dst: d.add(start),
                            src: s.add(start),
                            len: piece.min(len - start),
                            stream,
                        }
                    }
                });
            }
            self.inner.remaining.store(posted, Ordering::Release);
            self.inner.generation.fetch_add(1, Ordering::AcqRel);
        }
        self.inner.work.notify_all();
        let first = piece.min(len);
        copy_piece(&mut dst[..first], &src[..first], stream);
        // Wait for the workers: spin a little (the pieces are equal), then sleep.
        let t = Instant::now();
        while self.inner.remaining.load(Ordering::Acquire) != 0 {
            if t.elapsed() > SPIN {
                let mut st = self.inner.lock();
                while self.inner.remaining.load(Ordering::Acquire) != 0 {
                    st = self.inner.done.wait(st).unwrap_or_else(|p| p.into_inner());
                }
                break;
            }
            std::hint::spin_loop();
        }
    }
}

/// Copies `src` into `dst`. With `stream` (x86-64), the bulk is written with non-temporal
/// stores: no read-for-ownership of the destination and no cache pollution, which saves a
/// third of the memory traffic when the destination is staging memory a DMA engine reads
/// next (or a large buffer the caller reads later). The body is written in whole, 64-byte
/// aligned lines (one write-combining buffer each), so the same routine suits BAR memory
/// (write-combined VRAM behind PCIe): `dst` is only ever written, never read. With `stream`
/// the stores, the unaligned edges included, are fenced (`sfence`) before return, which
/// drains the write-combining buffers before the caller signals completion or submits.
fn copy_piece(dst: &mut [u8], src: &[u8], stream: bool) {
    #[cfg(target_arch = "x86_64")]
    if stream {
        use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_sfence, _mm_stream_si128};
        let len = dst.len();
        let head = if len >= 4096 {
            dst.as_ptr().align_offset(64).min(len)
        } else {
            len
        };
        let body_end = head + (len - head) / 64 * 64;
        dst[..head].copy_from_slice(&src[..head]);
        let (d, s) = (dst.as_mut_ptr(), src.as_ptr());
        let mut i = head;
        while i < body_end {
            // SAFETY: `i + 64 <= body_end <= len`, both slices have `len` bytes, `d + i`
            // is 64-byte aligned (`head` aligns it, steps are 64) and the loads are
            // unaligned loads; SSE2 is part of the x86-64 baseline.
            unsafe {
                let a = _mm_loadu_si128(s.add(i).cast::<__m128i>());
                let b = _mm_loadu_si128(s.add(i + 16).cast::<__m128i>());
                let c = _mm_loadu_si128(s.add(i + 32).cast::<__m128i>());
                let e = _mm_loadu_si128(s.add(i + 48).cast::<__m128i>());
                _mm_stream_si128(d.add(i).cast::<__m128i>(), a);
                _mm_stream_si128(d.add(i + 16).cast::<__m128i>(), b);
                _mm_stream_si128(d.add(i + 32).cast::<__m128i>(), c);
                _mm_stream_si128(d.add(i + 48).cast::<__m128i>(), e);
            }
            i += 64;
        }
        dst[body_end..].copy_from_slice(&src[body_end..]);
        // SAFETY: a store fence has no preconditions; it orders the streaming (and
        // write-combined) stores before the completion signal or submission that follows.
        unsafe { _mm_sfence() };
        return;
    }
    let _ = stream;
    dst.copy_from_slice(src);
}

fn worker(inner: &Inner, index: usize) {
    let mut seen = 0u64;
    loop {
        let t = Instant::now();
        while inner.generation.load(Ordering::Acquire) == seen && t.elapsed() < SPIN {
            std::hint::spin_loop();
        }
        let job = {
            let mut st = inner.lock();
            while inner.generation.load(Ordering::Acquire) == seen && !st.shutdown {
                st = inner.work.wait(st).unwrap_or_else(|p| p.into_inner());
            }
            if st.shutdown {
                return;
            }
            seen = inner.generation.load(Ordering::Acquire);
            st.jobs[index].take()
        };
        if let Some(p) = job {
            // SAFETY: see `Piece`: the addresses are valid, disjoint from every other
            // piece (and from each other), and the posting caller waits (`remaining`)
            // until this copy is done.
            let (d, x) = unsafe {
                (
                    std::slice::from_raw_parts_mut(p.dst, p.len),
                    std::slice::from_raw_parts(p.src, p.len),
                )
            };
            copy_piece(d, x, p.stream);
            if inner.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
                // Take the lock so the caller cannot miss the wake-up between its check
                // and its wait.
                let _st = inner.lock();
                inner.done.notify_all();
            }
        }
    }
}

impl Drop for CopyPool {
    fn drop(&mut self) {
        self.inner.lock().shutdown = true;
        self.inner.work.notify_all();
        for h in self.workers.drain(..) {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_every_size() {
        let pool = CopyPool::new(4);
        for len in [0usize, 1, 4095, MIN_PIECE, 3 * MIN_PIECE + 17, 5 << 20] {
            let src: Vec<u8> = (0..len).map(|i| (i * 7 % 253) as u8).collect();
            for stream in [false, true, false] {
                let mut dst = vec![0u8; len + 3];
                pool.copy(&mut dst[3..], &src, stream);
                assert!(dst[3..] == src[..], "len {len}");
            }
        }
    }

    #[test]
    fn single_thread_pool() {
        let pool = CopyPool::new(1);
        let src = vec![3u8; 2 << 20];
        let mut dst = vec![0u8; 2 << 20];
        pool.copy(&mut dst, &src, true);
        assert!(dst == src);
    }
}
