//! The bitplane codec: a lossless codec for typed tensor data whose decoder is massively
//! parallel (one CUDA thread block per group of 1024 elements, one thread per byte), with
//! this host reference encoder and decoder; the CUDA decoder is in [`crate::kernels`].
//!
//! # Format (one page, all integers little-endian)
//! ```text
//! header   u8 magic 0xB1 | u8 width w (1, 2, 4) | u16 groups G | u32 raw_len
//! offsets  u32 × (G·w + 1): start of block (g, p) at index g·w + p, relative to the page;
//!          the last entry is the end of the page's data (= its compressed length)
//! tail     raw_len % w bytes, stored as they are
//! blocks   G·w blocks; block (g, p) holds byte p of the elements of group g
//! ```
//! Elements are `w` bytes; group `g` covers elements `g·1024 .. min(n, (g+1)·1024)`
//! (`n = raw_len / w`), so every block codes `m ≤ 1024` bytes. A block is the cheapest of:
//! ```text
//! 0 CONST   value                                   (m equal bytes)
//! 1 RAW     m bytes
//! 2 PACK    k (1..=7) | d-1 | dict[d] | ⌈m·k/8⌉ bytes of k-bit indices, LSB first
//! 3 SPARSE  bitmap ⌈m/8⌉ (bit i: byte i ≠ 0) | u16 nz | the nz non-zero bytes coded as
//!           0 CONST value | 1 RAW nz bytes | 2 PACK k | d-1 | dict | ⌈nz·k/8⌉ bytes
//! ```
//! The high byte of an f32 or bf16 (sign and exponent) has few distinct values, so it packs
//! into 3–5 bits; ReLU activations (half zeros) take the sparse form in every plane. Every
//! block decodes on its own: the device decoder needs no sequential pass.
//!
//! # Validation
//! The decoders (host and device) check exactly the same conditions, so that they agree on
//! which inputs are corrupt: the header matches the page (width, length, group count), every
//! block lies between the end of the header and the end of the data, every block's size is
//! exactly what its mode says, dictionary indices are below the dictionary size, and a
//! bitmap's population count equals its `nz` (bits past `m` must be zero).
//!
//! # Device encoder
//! Eviction compresses on the GPU with the same layout ([`crate::encode`]): one thread block
//! per group builds each plane's presence mask and zero count in shared memory, picks the
//! mode by the same cost formulas as [`encode_block`] and records the block sizes; the host
//! lays the pages out from the sizes, and a second pass writes every block at its final
//! offset. The output is byte-identical to this encoder's.

use vuma_core::{Codec, Error, Result};

use crate::codecs::corrupt;
use crate::page::{bits_for, ElemWidth};

/// Magic byte of a bitplane page.
pub const MAGIC: u8 = 0xB1;
/// Elements per group (bytes per block).
pub const GROUP: usize = 1024;
/// Header bytes before the offset table.
pub const HEADER: usize = 8;

const NAME: &str = "bitplane";

const MODE_CONST: u8 = 0;
const MODE_RAW: u8 = 1;
const MODE_PACK: u8 = 2;
const MODE_SPARSE: u8 = 3;

/// The bitplane codec for elements of one width (see the module docs for the format).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bitplane {
    width: ElemWidth,
}

impl Bitplane {
    /// The codec for elements of `width`.
    pub fn new(width: ElemWidth) -> Self {
        Bitplane { width }
    }
    /// The element width.
    pub fn width(&self) -> ElemWidth {
        self.width
    }
}

impl Codec for Bitplane {
    fn name(&self) -> &'static str {
        NAME
    }
    fn max_compressed_len(&self, len: usize) -> usize {
        let w = self.width.bytes();
        let g = (len / w).div_ceil(GROUP);
        HEADER + 4 * (g * w + 1) + len + g * w
    }
    fn compress(&self, src: &[u8], dst: &mut Vec<u8>) -> Result<usize> {
        encode_page(src, self.width, dst)
    }
    fn decompress(&self, src: &[u8], dst: &mut [u8]) -> Result<()> {
        decode_page(src, self.width, dst)
    }
}

/// Groups of a page of `raw_len` bytes with `w`-byte elements.
pub fn groups_of(raw_len: usize, w: usize) -> usize {
    (raw_len / w).div_ceil(GROUP)
}

/// Appends the bitplane encoding of `src` to `dst`; returns the bytes appended.
pub fn encode_page(src: &[u8], width: ElemWidth, dst: &mut Vec<u8>) -> Result<usize> {
    let w = width.bytes();
    let raw_len =
        u32::try_from(src.len()).map_err(|_| Error::invalid("bitplane pages are at most 4 GiB"))?;
    let n = src.len() / w;
    let groups = n.div_ceil(GROUP);
    let g16 = u16::try_from(groups).map_err(|_| {
        Error::invalid(format!(
            "bitplane page of {} bytes has more than 65535 groups",
            src.len()
        ))
    })?;
    let start = dst.len();
    dst.push(MAGIC);
    dst.push(w as u8);
    dst.extend_from_slice(&g16.to_le_bytes());
    dst.extend_from_slice(&raw_len.to_le_bytes());
    let table = dst.len();
    dst.resize(table + 4 * (groups * w + 1), 0);
    dst.extend_from_slice(&src[n * w..]);
    let mut plane = [0u8; GROUP];
    for g in 0..groups {
        let e0 = g * GROUP;
        let m = (n - e0).min(GROUP);
        for p in 0..w {
            for (i, b) in plane[..m].iter_mut().enumerate() {
                *b = src[(e0 + i) * w + p];
            }
            let off = (dst.len() - start) as u32;
            let at = table + 4 * (g * w + p);
            dst[at..at + 4].copy_from_slice(&off.to_le_bytes());
            encode_block(&plane[..m], dst);
        }
    }
    let end = (dst.len() - start) as u32;
    let at = table + 4 * groups * w;
    dst[at..at + 4].copy_from_slice(&end.to_le_bytes());
    Ok(dst.len() - start)
}

struct Dict {
    values: Vec<u8>,
    index: [u8; 256],
}

fn dict_of(hist: &[u32; 256], skip_zero: bool) -> Dict {
    let mut values = Vec::new();
    let mut index = [0u8; 256];
    for (v, &c) in hist.iter().enumerate() {
        if c > 0 && !(skip_zero && v == 0) {
            index[v] = values.len() as u8;
            values.push(v as u8);
        }
    }
    Dict { values, index }
}

fn pack_cost(count: usize, distinct: usize) -> Option<usize> {
    let k = bits_for(distinct) as usize;
    (1..=7)
        .contains(&k)
        .then(|| 2 + distinct + (count * k).div_ceil(8))
}

fn push_packed(values: impl Iterator<Item = u8>, dict: &Dict, k: u32, dst: &mut Vec<u8>) {
    dst.push(k as u8);
    dst.push((dict.values.len() - 1) as u8);
    dst.extend_from_slice(&dict.values);
    let mut acc = 0u32;
    let mut bits = 0u32;
    for v in values {
        acc |= u32::from(dict.index[v as usize]) << bits;
        bits += k;
        while bits >= 8 {
            dst.push(acc as u8);
            acc >>= 8;
            bits -= 8;
        }
    }
    if bits > 0 {
        dst.push(acc as u8);
    }
}

/// Appends the cheapest encoding of one block (`m = data.len() ≤ 1024` bytes).
pub fn encode_block(data: &[u8], dst: &mut Vec<u8>) {
    let m = data.len();
    let mut hist = [0u32; 256];
    for &b in data {
        hist[b as usize] += 1;
    }
    let distinct = hist.iter().filter(|&&c| c > 0).count();
    if distinct <= 1 {
        dst.push(MODE_CONST);
        dst.push(data.first().copied().unwrap_or(0));
        return;
    }
    let raw = 1 + m;
    let pack = pack_cost(m, distinct).map(|c| 1 + c);
    let nz = m - hist[0] as usize;
    let nz_distinct = distinct - usize::from(hist[0] > 0);
    let sparse = (hist[0] > 0 && nz > 0).then(|| {
        let sub = if nz_distinct == 1 {
            2
        } else {
            let r = 1 + nz;
            pack_cost(nz, nz_distinct).map_or(r, |p| r.min(1 + p))
        };
        1 + m.div_ceil(8) + 2 + sub
    });
    let best = [Some(raw), pack, sparse]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(raw);
    if pack == Some(best) {
        dst.push(MODE_PACK);
        let dict = dict_of(&hist, false);
        push_packed(data.iter().copied(), &dict, bits_for(distinct), dst);
    } else if sparse == Some(best) {
        dst.push(MODE_SPARSE);
        let mut bitmap = vec![0u8; m.div_ceil(8)];
        for (i, &b) in data.iter().enumerate() {
            if b != 0 {
                bitmap[i / 8] |= 1 << (i % 8);
            }
        }
        dst.extend_from_slice(&bitmap);
        dst.extend_from_slice(&(nz as u16).to_le_bytes());
        let nonzero = data.iter().copied().filter(|&b| b != 0);
        if nz_distinct == 1 {
            dst.push(MODE_CONST);
            dst.push(data.iter().copied().find(|&b| b != 0).unwrap_or(0));
        } else if pack_cost(nz, nz_distinct).is_some_and(|p| 1 + p < 1 + nz) {
            dst.push(MODE_PACK);
            let dict = dict_of(&hist, true);
            push_packed(nonzero, &dict, bits_for(nz_distinct), dst);
        } else {
            dst.push(MODE_RAW);
            dst.extend(nonzero);
        }
    } else {
        dst.push(MODE_RAW);
        dst.extend_from_slice(data);
    }
}

fn bad(reason: impl Into<String>) -> Error {
    corrupt(NAME, reason)
}

fn rd_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Reads value `i` of a packed stream (`k` bits each, LSB first); the caller checked that the
/// stream holds `⌈count·k/8⌉` bytes and `i < count`.
fn unpack(packed: &[u8], i: usize, k: usize) -> usize {
    let bit = i * k;
    let byte = bit / 8;
    let sh = bit % 8;
    let mut v = usize::from(packed[byte]) >> sh;
    if sh + k > 8 {
        v |= usize::from(packed[byte + 1]) << (8 - sh);
    }
    v & ((1 << k) - 1)
}

/// Checks a PACK sub-stream `r` (starting at `k`) coding `count` values; returns (k, dict, packed).
fn check_pack(r: &[u8], count: usize) -> Result<(usize, &[u8], &[u8])> {
    if r.len() < 2 {
        return Err(bad("truncated pack header"));
    }
    let k = usize::from(r[0]);
    let d = usize::from(r[1]) + 1;
    if !(1..=7).contains(&k) || d > (1 << k) {
        return Err(bad(format!("bad pack parameters k={k} d={d}")));
    }
    if r.len() != 2 + d + (count * k).div_ceil(8) {
        return Err(bad("pack stream size mismatch"));
    }
    Ok((k, &r[2..2 + d], &r[2 + d..]))
}

/// Decodes one block of `m` bytes from exactly `b` into `out[..m]`.
pub fn decode_block(b: &[u8], m: usize, out: &mut [u8]) -> Result<()> {
    let out = &mut out[..m];
    let Some(&mode) = b.first() else {
        return Err(bad("empty block"));
    };
    match mode {
        MODE_CONST => {
            if b.len() != 2 {
                return Err(bad("const block size mismatch"));
            }
            out.fill(b[1]);
        }
        MODE_RAW => {
            if b.len() != 1 + m {
                return Err(bad("raw block size mismatch"));
            }
            out.copy_from_slice(&b[1..]);
        }
        MODE_PACK => {
            let (k, dict, packed) = check_pack(&b[1..], m)?;
            for (i, o) in out.iter_mut().enumerate() {
                let ix = unpack(packed, i, k);
                *o = *dict
                    .get(ix)
                    .ok_or_else(|| bad("dictionary index out of range"))?;
            }
        }
        MODE_SPARSE => {
            let bm = m.div_ceil(8);
            if b.len() < 1 + bm + 3 {
                return Err(bad("truncated sparse block"));
            }
            let bitmap = &b[1..1 + bm];
            if !m.is_multiple_of(8) && bitmap[bm - 1] >> (m % 8) != 0 {
                return Err(bad("bitmap bits past the block"));
            }
            let nz = usize::from(u16::from_le_bytes([b[1 + bm], b[2 + bm]]));
            let pop: usize = bitmap.iter().map(|x| x.count_ones() as usize).sum();
            if pop != nz || nz == 0 {
                return Err(bad("bitmap count mismatch"));
            }
            let sub = b[3 + bm];
            let r = &b[4 + bm..];
            let pack = match sub {
                MODE_CONST if r.len() != 1 => return Err(bad("sparse const size mismatch")),
                MODE_RAW if r.len() != nz => return Err(bad("sparse raw size mismatch")),
                MODE_PACK => Some(check_pack(r, nz)?),
                MODE_CONST | MODE_RAW => None,
                s => return Err(bad(format!("unknown sparse sub-mode {s}"))),
            };
            let mut rank = 0usize;
            for (i, o) in out.iter_mut().enumerate() {
                if bitmap[i / 8] >> (i % 8) & 1 != 0 {
                    *o = match (sub, pack) {
                        (MODE_CONST, _) => r[0],
                        (_, Some((k, dict, packed))) => *dict
                            .get(unpack(packed, rank, k))
                            .ok_or_else(|| bad("dictionary index out of range"))?,
                        _ => r[rank],
                    };
                    rank += 1;
                } else {
                    *o = 0;
                }
            }
        }
        mode => return Err(bad(format!("unknown block mode {mode}"))),
    }
    Ok(())
}

/// Decodes one bitplane page `src` (elements of `width`) into `dst`, which must be exactly
/// the page's original length. Same checks as the device decoder.
pub fn decode_page(src: &[u8], width: ElemWidth, dst: &mut [u8]) -> Result<()> {
    let w = width.bytes();
    if src.len() < HEADER {
        return Err(bad("truncated header"));
    }
    if src[0] != MAGIC || usize::from(src[1]) != w {
        return Err(bad("bad magic or width"));
    }
    let groups = usize::from(u16::from_le_bytes([src[2], src[3]]));
    let raw_len = rd_u32(src, 4) as usize;
    if raw_len != dst.len() {
        return Err(bad(format!(
            "page holds {raw_len} bytes, expected {}",
            dst.len()
        )));
    }
    let n = raw_len / w;
    if groups != groups_of(raw_len, w) {
        return Err(bad("group count mismatch"));
    }
    let entries = groups * w + 1;
    let tail = raw_len % w;
    let hdr_end = HEADER + 4 * entries + tail;
    if hdr_end > src.len() {
        return Err(bad("truncated offset table"));
    }
    if rd_u32(src, HEADER + 4 * (entries - 1)) as usize != src.len() {
        return Err(bad("end offset mismatch"));
    }
    dst[n * w..].copy_from_slice(&src[hdr_end - tail..hdr_end]);
    let mut planes = [[0u8; GROUP]; 4];
    for g in 0..groups {
        let e0 = g * GROUP;
        let m = (n - e0).min(GROUP);
        for (p, plane) in planes.iter_mut().enumerate().take(w) {
            let j = g * w + p;
            let a = rd_u32(src, HEADER + 4 * j) as usize;
            let b = rd_u32(src, HEADER + 4 * (j + 1)) as usize;
            if a < hdr_end || a > b || b > src.len() {
                return Err(bad("block offset out of range"));
            }
            decode_block(&src[a..b], m, plane)?;
        }
        let out = &mut dst[e0 * w..(e0 + m) * w];
        match w {
            1 => out.copy_from_slice(&planes[0][..m]),
            2 => {
                for (i, o) in out.chunks_exact_mut(2).enumerate() {
                    o[0] = planes[0][i];
                    o[1] = planes[1][i];
                }
            }
            _ => {
                for (i, o) in out.chunks_exact_mut(4).enumerate() {
                    o[0] = planes[0][i];
                    o[1] = planes[1][i];
                    o[2] = planes[2][i];
                    o[3] = planes[3][i];
                }
            }
        }
    }
    Ok(())
}
