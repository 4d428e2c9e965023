//! Integrity of chunk images: a 64-bit checksum per chunk, and a coverage check of the page
//! tables (every destination byte written exactly once), both verified on the host before
//! any page is decoded.
//!
//! The decoders check every range they read or write, so a corrupt image can never make
//! them touch memory outside the chunk or the destination; but a page table that is
//! well-formed and *wrong* (a page sent to another page's place, a page left out) decodes
//! without complaint into wrong bytes. Two checks close that gap:
//!
//! - **Coverage.** The page table of chunk `k` must describe exactly pages `f..f + npages`
//!   of the buffer (`f` = pages of the chunks before it), in order: entry `i` writes
//!   `[(f + i) * page_size, +min(page_size, len - dst_off))`, nothing else; kernel pages lie
//!   inside the head; the direct runs are exactly the runs of consecutive direct pages; the
//!   chunk's kernel flags name exactly the kinds of its kernel pages; the chunks together
//!   hold `ceil(len / page_size)` pages. Cheap: 32 bytes read per page.
//! - **Checksum.** [`checksum`] of the whole image, computed when the image is made
//!   ([`crate::CompressedBuffer`], [`crate::encode::Evicted::to_compressed`]) and compared
//!   before an upload from host memory, when an image is pinned or placed on a device, and
//!   before a host decode (so data recovered after a device is lost is verified too).
//!
//! Images written by the device encoder stay in pinned memory and are uploaded from there
//! without a host pass (reading them would cost as much as the transfer): their tables are
//! made on the host and the decoders' own checks cover them; when they are read back to
//! the host (unpacking, recovery) they get the coverage check.

use vuma_core::{Error, Result};

use crate::chunk::{ChunkImage, DirectRun};
use crate::kernels::{Entry, PageKind, ENTRY_BYTES};

const P1: u64 = 0x9E37_79B1_85EB_CA87;
const P2: u64 = 0xC2B2_AE3D_27D4_EB4F;
const P3: u64 = 0x1656_67B1_9E37_79F9;
const P4: u64 = 0x85EB_CA77_C2B2_AE63;
const P5: u64 = 0x27D4_EB2F_1656_67C5;

#[inline]
fn round(acc: u64, w: u64) -> u64 {
    acc.wrapping_add(w.wrapping_mul(P2))
        .rotate_left(31)
        .wrapping_mul(P1)
}

#[inline]
fn merge(h: u64, acc: u64) -> u64 {
    (h ^ round(0, acc)).wrapping_mul(P1).wrapping_add(P4)
}

#[inline]
fn word(b: &[u8]) -> u64 {
    u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

/// A 64-bit checksum of `bytes` (the XXH64 construction, seed 0): four independent lanes
/// over 32-byte stripes, so it runs at memory speed. Detects any change of up to 64 bits
/// in a stripe and, like any 64-bit hash, all but a 2^-64 share of other changes.
pub fn checksum(bytes: &[u8]) -> u64 {
    let len = bytes.len() as u64;
    let mut stripes = bytes.chunks_exact(32);
    let mut h = if bytes.len() >= 32 {
        let mut v = [P1.wrapping_add(P2), P2, 0, 0u64.wrapping_sub(P1)];
        for s in &mut stripes {
            v[0] = round(v[0], word(&s[0..]));
            v[1] = round(v[1], word(&s[8..]));
            v[2] = round(v[2], word(&s[16..]));
            v[3] = round(v[3], word(&s[24..]));
        }
        let mut h = v[0]
            .rotate_left(1)
            .wrapping_add(v[1].rotate_left(7))
            .wrapping_add(v[2].rotate_left(12))
            .wrapping_add(v[3].rotate_left(18));
        for a in v {
            h = merge(h, a);
        }
        h
    } else {
        P5
    };
    h = h.wrapping_add(len);
    let rest = stripes.remainder();
    let mut words = rest.chunks_exact(8);
    for w in &mut words {
        h = (h ^ round(0, word(w)))
            .rotate_left(27)
            .wrapping_mul(P1)
            .wrapping_add(P4);
    }
    let mut tail = words.remainder();
    if tail.len() >= 4 {
        let x = u64::from(u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]));
        h = (h ^ x.wrapping_mul(P1))
            .rotate_left(23)
            .wrapping_mul(P2)
            .wrapping_add(P3);
        tail = &tail[4..];
    }
    for &b in tail {
        h = (h ^ u64::from(b).wrapping_mul(P5))
            .rotate_left(11)
            .wrapping_mul(P1);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(P2);
    h ^= h >> 29;
    h = h.wrapping_mul(P3);
    h ^ (h >> 32)
}

impl ChunkImage {
    /// Records the checksum of the image as it is now (after building or deliberately
    /// changing it).
    pub fn seal(&mut self) {
        self.checksum = checksum(&self.image);
    }
}

fn corrupt(chunk: usize, why: String) -> Error {
    Error::Corrupt {
        codec: "hyperloop chunk",
        reason: format!("chunk {chunk}: {why}"),
    }
}

/// What a buffer's chunks must describe: `len` bytes in pages of `page_size`.
#[derive(Debug, Clone, Copy)]
pub struct Geometry {
    /// Bytes of the buffer.
    pub len: u64,
    /// Page size.
    pub page_size: u64,
}

/// Checks chunk `k`'s checksum against its image.
pub fn check_checksum(k: usize, c: &ChunkImage) -> Result<()> {
    let found = checksum(&c.image);
    if found != c.checksum {
        return Err(corrupt(
            k,
            format!(
                "checksum {found:#018x} of its {}-byte image, {:#018x} recorded when it was made \
                 (the image changed since: memory corruption or a bad copy; the buffer cannot \
                 be decoded from it)",
                c.image.len(),
                c.checksum
            ),
        ));
    }
    Ok(())
}

/// Checks that chunk `k`, whose first page is `first`, covers exactly its pages of `g` and
/// nothing else (see the module docs). Returns its page count.
pub fn check_coverage(k: usize, c: &ChunkImage, first: u64, g: Geometry) -> Result<u64> {
    let n = u64::from(c.npages);
    let table = n * ENTRY_BYTES as u64;
    if table > c.image.len() as u64 {
        return Err(corrupt(
            k,
            format!(
                "a page table of {n} pages ({table} bytes) does not fit its {}-byte image",
                c.image.len()
            ),
        ));
    }
    if c.head_len > c.image.len() || (c.kernel_pages > 0 && (c.head_len as u64) < table) {
        return Err(corrupt(
            k,
            format!(
                "head of {} bytes for a {table}-byte table in a {}-byte image",
                c.head_len,
                c.image.len()
            ),
        ));
    }
    let mut runs: Vec<DirectRun> = Vec::new();
    let (mut kernel_pages, mut fill, mut bitplane, mut lz4, mut float) =
        (0u32, false, false, false, false);
    for i in 0..c.npages as usize {
        let e = Entry::read(&c.image, i);
        let p = first + i as u64;
        let dst_off = p.saturating_mul(g.page_size);
        if dst_off >= g.len {
            return Err(corrupt(
                k,
                format!("page {p} starts past the {}-byte buffer", g.len),
            ));
        }
        let dst_len = (g.len - dst_off).min(g.page_size);
        if e.dst_off != dst_off || u64::from(e.dst_len) != dst_len {
            return Err(corrupt(
                k,
                format!(
                    "entry {i} writes {}..+{}, page {p} is {dst_off}..+{dst_len}",
                    e.dst_off, e.dst_len
                ),
            ));
        }
        let src_end = e.src_off.checked_add(u64::from(e.src_len));
        match e.kind {
            x if x == PageKind::Direct as u8 => {
                if u64::from(e.src_len) != dst_len
                    || src_end.is_none_or(|end| end > c.image.len() as u64)
                {
                    return Err(corrupt(
                        k,
                        format!(
                            "direct page {p}: bytes {}..+{} do not fit",
                            e.src_off, e.src_len
                        ),
                    ));
                }
                match runs.last_mut() {
                    Some(r) if r.src + r.len == e.src_off && r.dst + r.len == dst_off => {
                        r.len += dst_len;
                    }
                    _ => runs.push(DirectRun {
                        src: e.src_off,
                        dst: dst_off,
                        len: dst_len,
                    }),
                }
            }
            x if x <= PageKind::Lz4 as u8 || x == PageKind::Float as u8 => {
                if src_end.is_none_or(|end| end > c.head_len as u64) || e.src_off < table {
                    return Err(corrupt(
                        k,
                        format!(
                            "page {p}: bytes {}..+{} outside the head (table {table}, head {})",
                            e.src_off, e.src_len, c.head_len
                        ),
                    ));
                }
                kernel_pages += 1;
                fill |= x == PageKind::Zero as u8 || x == PageKind::Raw as u8;
                bitplane |= x == PageKind::Bitplane as u8;
                lz4 |= x == PageKind::Lz4 as u8;
                float |= x == PageKind::Float as u8;
            }
            x => return Err(corrupt(k, format!("page {p}: unknown page kind {x}"))),
        }
    }
    if runs != c.runs {
        return Err(corrupt(
            k,
            format!(
                "direct runs {:?} do not match the direct pages of its table {:?}",
                c.runs, runs
            ),
        ));
    }
    let found = (fill, bitplane, lz4, float);
    let said = (c.has_fill, c.has_bitplane, c.has_lz4, c.has_float);
    if kernel_pages != c.kernel_pages || found != said {
        return Err(corrupt(
            k,
            format!(
                "its table has {kernel_pages} kernel pages (fill, bitplane, lz4, float: \
                 {found:?}); its header says {} ({said:?})",
                c.kernel_pages
            ),
        ));
    }
    Ok(n)
}

/// Checks every chunk of a buffer: checksums (when `sums`) and coverage of `g`.
pub fn check_chunks(chunks: &[ChunkImage], g: Geometry, sums: bool) -> Result<()> {
    if g.page_size == 0 {
        return Err(Error::invalid("page size 0"));
    }
    let mut first = 0u64;
    for (k, c) in chunks.iter().enumerate() {
        if sums {
            check_checksum(k, c)?;
        }
        first += check_coverage(k, c, first, g)?;
    }
    let want = g.len.div_ceil(g.page_size);
    if first != want {
        return Err(Error::Corrupt {
            codec: "hyperloop chunk",
            reason: format!(
                "the chunks hold {first} pages, the {}-byte buffer has {want}",
                g.len
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_matches_xxh64_reference_values() {
        // Reference values of XXH64 with seed 0.
        assert_eq!(checksum(b""), 0xEF46_DB37_51D8_E999);
        assert_eq!(checksum(b"a"), 0xD24E_C4F1_A98C_6E5B);
        assert_eq!(checksum(b"abc"), 0x44BC_2CF5_AD77_0999);
        let long: Vec<u8> = (0..1000u32).map(|i| (i * 7 + 3) as u8).collect();
        let a = checksum(&long);
        let mut flipped = long.clone();
        flipped[999] ^= 1;
        assert_ne!(a, checksum(&flipped));
        flipped[999] ^= 1;
        flipped[0] ^= 0x80;
        assert_ne!(a, checksum(&flipped));
    }
}
