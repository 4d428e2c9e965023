//! Copies into host copies with non-temporal (streaming) stores.
//!
//! A host copy is filled once and then read by a device's DMA engine or, much later, by the
//! host: nothing reads it from the cache soon. An ordinary copy still reads every
//! destination line into the cache before writing it (a read for ownership) and evicts
//! useful lines on the way; non-temporal stores write whole lines to memory through the
//! write-combining buffers instead, which takes a third of the memory traffic off a copy
//! (two streams, the source read and the destination write, instead of three). When the
//! fill shares the memory bus with a DMA reading the filled part (a first upload) or with
//! other fill threads, that third is the difference.
//!
//! Streaming stores are weakly ordered: [`copy`] ends with a store fence, so whatever the
//! caller does next (marking the range complete, handing it to a device) is ordered after
//! every byte.
//!
//! On x86-64 the stores are SSE2's (part of the architecture's baseline, so there is no
//! feature to detect); elsewhere, under Miri, and for copies under [`STREAM_MIN`] bytes it
//! is an ordinary copy.

/// Copies below this size are ordinary copies: their lines fit the cache, and a fence per
/// copy would cost more than the traffic it saves.
#[cfg_attr(any(miri, not(target_arch = "x86_64")), allow(dead_code))]
pub(crate) const STREAM_MIN: usize = 64 << 10;

use std::mem::MaybeUninit;

/// Copies `src` into `dst` (equal lengths), with streaming stores where the platform has
/// them and the copy is at least [`STREAM_MIN`] bytes. Every byte is visible to other
/// threads and to devices once it returns.
pub(crate) fn copy(dst: &mut [u8], src: &[u8]) {
    // SAFETY: `MaybeUninit<u8>` has the layout of `u8`; `copy_uninit` only writes
    // initialised bytes (copies of `src`) through the view, so `dst` stays initialised.
    let dst = unsafe { &mut *(dst as *mut [u8] as *mut [MaybeUninit<u8>]) };
    copy_uninit(dst, src);
}

/// [`copy`] into memory that may be uninitialised: every byte of `dst` is initialised
/// (a copy of `src`) when it returns.
pub(crate) fn copy_uninit(dst: &mut [MaybeUninit<u8>], src: &[u8]) {
    assert_eq!(dst.len(), src.len(), "equal lengths");
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    if dst.len() >= STREAM_MIN {
        x86::copy_streaming(dst, src);
        return;
    }
    plain(dst, src);
}

/// An ordinary copy of `src` into `dst` (equal lengths).
fn plain(dst: &mut [MaybeUninit<u8>], src: &[u8]) {
    debug_assert_eq!(dst.len(), src.len());
    // SAFETY: both ranges hold `src.len()` bytes; `dst` is borrowed mutably, so it cannot
    // overlap `src`.
    unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst.as_mut_ptr().cast(), src.len()) }
}

#[cfg(all(target_arch = "x86_64", not(miri)))]
mod x86 {
    use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_sfence, _mm_stream_si128};
    use std::mem::MaybeUninit;

    /// A cache line: the unit of the loop (four 16-byte stores fill one write-combining
    /// buffer).
    const LINE: usize = 64;

    /// Copies `src` into `dst` (equal lengths): the unaligned head and the tail plainly,
    /// the 64-byte-aligned body of `dst` with streaming stores, then a store fence.
    pub(super) fn copy_streaming(dst: &mut [MaybeUninit<u8>], src: &[u8]) {
        debug_assert_eq!(dst.len(), src.len());
        let head = dst.as_ptr().align_offset(LINE).min(dst.len());
        let body = (dst.len() - head) / LINE * LINE;
        let (d_head, d_rest) = dst.split_at_mut(head);
        let (s_head, s_rest) = src.split_at(head);
        super::plain(d_head, s_head);
        let (d_body, d_tail) = d_rest.split_at_mut(body);
        let (s_body, s_tail) = s_rest.split_at(body);
        for (d, s) in d_body.chunks_exact_mut(LINE).zip(s_body.chunks_exact(LINE)) {
            let d = d.as_mut_ptr().cast::<__m128i>();
            let s = s.as_ptr().cast::<__m128i>();
            // SAFETY: `s` and `d` each point at 64 bytes inside their slices (chunks of
            // exactly `LINE` bytes), so the four 16-byte accesses at 0..4 are in bounds; the
            // loads are unaligned loads; `d` is 64-byte aligned (the body starts at the
            // first aligned byte of `dst` and advances by whole lines), as the streaming
            // stores require 16; SSE2 is part of the x86-64 baseline.
            unsafe {
                let a = _mm_loadu_si128(s);
                let b = _mm_loadu_si128(s.add(1));
                let c = _mm_loadu_si128(s.add(2));
                let e = _mm_loadu_si128(s.add(3));
                _mm_stream_si128(d, a);
                _mm_stream_si128(d.add(1), b);
                _mm_stream_si128(d.add(2), c);
                _mm_stream_si128(d.add(3), e);
            }
        }
        // SAFETY: a store fence has no operands; it orders the streaming stores above
        // before every later store (the caller's completion mark), as weakly ordered
        // stores need.
        unsafe { _mm_sfence() };
        super::plain(d_tail, s_tail);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_every_byte_at_every_alignment() {
        let src: Vec<u8> = (0..STREAM_MIN * 2 + 200)
            .map(|i| (i * 7 + 3) as u8)
            .collect();
        for (d_off, s_off, len) in [
            (0, 0, STREAM_MIN),
            (1, 0, STREAM_MIN + 63),
            (17, 5, STREAM_MIN + 1),
            (63, 33, STREAM_MIN * 2),
            (3, 9, 100),
            (0, 0, 0),
        ] {
            let mut dst = vec![0xAAu8; STREAM_MIN * 2 + 300];
            copy(&mut dst[d_off..d_off + len], &src[s_off..s_off + len]);
            assert_eq!(
                &dst[d_off..d_off + len],
                &src[s_off..s_off + len],
                "{d_off} {s_off} {len}"
            );
            assert!(dst[..d_off].iter().all(|&b| b == 0xAA), "before");
            assert!(dst[d_off + len..].iter().all(|&b| b == 0xAA), "after");
        }
    }
}
