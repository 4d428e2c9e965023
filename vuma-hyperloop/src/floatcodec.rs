//! The entropy-coded float codec: exponents coded with a length-limited canonical Huffman
//! code (table-driven decode), signs and mantissas stored as they are, exact zeros elided;
//! built so that one GPU warp decodes one page in parallel (32 independent lane streams).
//! This module is the host reference encoder and decoder.
//!
//! Trained weights spend their redundancy in the exponent: its entropy is ~2.7 bits of 8,
//! while signs and mantissas are close to random. Coding only the exponent field reaches
//! the entropy limit of "exponent coded, the rest raw" (1.50× for bf16, 1.20× for fp32 on
//! real weights) within the Huffman overhead; ReLU activations (half exact zeros) gain from
//! zero elision: a zero costs its exponent code (~1 bit) and no mantissa bytes.
//!
//! # Element split
//! An element of width `w` is a *symbol* (its exponent byte) and `w − 1` *sm* bytes (sign
//! and mantissa):
//! ```text
//! w = 4 (f32):  sym = x >> 23 & 0xFF   sm = (x >> 31) << 23 | x & 0x7F_FFFF   (3 bytes LE)
//! w = 2 (bf16): sym = x >> 7 & 0xFF    sm = (x >> 15) << 7 | x & 0x7F         (1 byte)
//! w = 1:        sym = x                (no sm: an order-0 entropy coder for bytes)
//! ```
//!
//! # Format (one page, integers little-endian)
//! ```text
//! u8 magic 0xF1 | u8 width w | u8 mode | u8 lanes | u32 raw_len | u32 nsm     (12 bytes)
//! mode RAW (0):  lanes = 0, nsm = 0, then raw_len bytes as they are
//! mode HUFF (1, | 2 with zero elision):  lanes = 32 · G (G = 1, 2 or 4 groups), then
//!   lengths  128 bytes: code length (0..=12, 0 = absent) of symbol s in nibble s
//!            (low nibble first)
//!   ends     u16 × lanes: end of lane l's stream, relative to the start of the streams
//!            (lane l starts where lane l − 1 ends; lane 0 at 0)
//!   starts   u32 × (G − 1): the sm rank at which group g = 1, 2, … starts
//!   tail     raw_len % w bytes, as they are
//!   streams  the lane streams
//!   sm       nsm × (w − 1) bytes: the sm bytes of the coded elements, in element order
//! ```
//! With `n = raw_len / w` elements, the page is cut into `G` groups of consecutive
//! elements, each [`group_span`] elements (a multiple of 32) but the last; group `g` has
//! lanes `32g … 32g + 31`, and its element `j` (counted from the group's first) belongs to
//! lane `32g + j % 32` and is symbol `j / 32` of that lane's stream. One warp decodes one
//! group, so a page of `G` groups is decoded by `G` warps sharing one decode table; a
//! group's sm bytes start at its rank in `starts` (group 0 at 0). Codes are canonical
//! (ordered by length, then symbol) and written LSB first, bit-reversed, so a decoder peeks
//! 12 bits and looks up one 4096-entry table. With zero elision (mode 3) an element whose
//! symbol is 0 is the value 0 (all bits zero) and has no sm bytes: `nsm` counts the
//! elements with a non-zero symbol, and element `i`'s sm bytes are at its rank among them.
//! The encoder elides zeros only when every element with exponent 0 is exactly +0 (no
//! subnormals, no −0). The encoder uses [`lanes_for`] lanes, and codes only pages of at
//! most [`MAX_HUFF_PAGE`] bytes (a GPU decoder's page; the lane ends are 16-bit): larger
//! pages are stored raw.
//!
//! Every lane decodes on its own: a warp decodes 32 elements of its group per step,
//! consecutive lanes on consecutive elements (coalesced writes); ranks for zero elision
//! come from a warp ballot per step, counted from the group's start.
//!
//! # Validation
//! Corrupt or truncated input is an [`Error::Corrupt`], never a panic or an out-of-bounds
//! read: the header must match the page (width, length), the code lengths must not
//! over-subscribe the code space (Σ 2^−len ≤ 1) and the code must have a symbol, the lane
//! ends must be non-decreasing and the page's size must be exactly the header, tail, streams
//! and sm bytes; every decoded code must be one of the code's (an incomplete code's holes
//! are corrupt), each lane must use exactly its stream's bytes (`⌈bits/8⌉ = len`); without
//! zero elision group `g` must start at rank `g · span` (its first element), with it each
//! group's count of non-zero symbols must equal the next group's start less its own (`nsm`
//! for the last group).

use vuma_core::{Codec, Error, Result};

use crate::codecs::corrupt;
use crate::page::ElemWidth;

/// Magic byte of a float-codec page.
pub const MAGIC: u8 = 0xF1;
/// Lanes of one group (one warp).
pub const LANES: usize = 32;
/// Most groups per page (the warps of the decoder's thread block).
pub const MAX_GROUPS: usize = 4;
/// Fewest elements per group when a page has more than one group: below it, a warp's
/// share of the page is too small to pay for its part of the header (eight steps of 32).
pub const MIN_GROUP_ELEMS: usize = 256;
/// Longest code, bits: a decode is one lookup in a `1 << MAX_CODE_LEN` table.
pub const MAX_CODE_LEN: u32 = 12;
/// Entries of the decode table.
pub const TABLE_SIZE: usize = 1 << MAX_CODE_LEN;
/// Mode: stored as it is.
pub const MODE_RAW: u8 = 0;
/// Mode: exponent symbols Huffman-coded.
pub const MODE_HUFF: u8 = 1;
/// Mode flag: exact zeros elided (with [`MODE_HUFF`]).
pub const FLAG_ZERO: u8 = 2;
/// Bytes of the fixed header.
pub const FIXED_HEADER: usize = 12;
/// Largest page the Huffman form codes (its lane streams then end below 64 KiB).
pub const MAX_HUFF_PAGE: usize = 64 << 10;
/// Bytes of the code-length table.
pub const LENGTHS_BYTES: usize = 128;
/// Bytes of a one-group Huffman page's header (fixed header, lengths, lane ends), before
/// the tail; [`huff_header`] for any lane count.
pub const HUFF_HEADER: usize = FIXED_HEADER + LENGTHS_BYTES + 2 * LANES;

/// Bytes of a Huffman page's header with `lanes` lanes (fixed header, lengths, lane ends,
/// group starts), before the tail.
pub const fn huff_header(lanes: usize) -> usize {
    FIXED_HEADER + LENGTHS_BYTES + 2 * lanes + 4 * (lanes / LANES - 1)
}

/// The lanes the encoder gives a page of `n` elements: one group per
/// [`MIN_GROUP_ELEMS`] elements, at most [`MAX_GROUPS`], and a power of two.
pub fn lanes_for(n: usize) -> usize {
    let g = (n / MIN_GROUP_ELEMS).clamp(1, MAX_GROUPS);
    LANES
        * if g >= 4 {
            4
        } else if g >= 2 {
            2
        } else {
            1
        }
}

/// Elements per group of a page of `n` elements in `groups` groups (every group but the
/// last has exactly this many): `⌈n / groups⌉` rounded up to a multiple of 32.
pub fn group_span(n: usize, groups: usize) -> usize {
    n.div_ceil(groups.max(1)).next_multiple_of(LANES)
}

/// The element range of group `g` of a page of `n` elements in `groups` groups.
pub fn group_range(n: usize, groups: usize, g: usize) -> std::ops::Range<usize> {
    let span = group_span(n, groups);
    (g * span).min(n)..((g + 1) * span).min(n)
}

const NAME: &str = "float";

fn bad(reason: impl Into<String>) -> Error {
    corrupt(NAME, reason)
}

/// The entropy-coded float codec for elements of one width (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FloatCodec {
    width: ElemWidth,
}

impl FloatCodec {
    /// The codec for elements of `width`.
    pub fn new(width: ElemWidth) -> Self {
        FloatCodec { width }
    }
    /// The element width.
    pub fn width(&self) -> ElemWidth {
        self.width
    }
}

impl Codec for FloatCodec {
    fn name(&self) -> &'static str {
        NAME
    }
    fn max_compressed_len(&self, len: usize) -> usize {
        FIXED_HEADER + len
    }
    fn compress(&self, src: &[u8], dst: &mut Vec<u8>) -> Result<usize> {
        encode_page(src, self.width, dst)
    }
    fn decompress(&self, src: &[u8], dst: &mut [u8]) -> Result<()> {
        decode_page(src, self.width, dst)
    }
}

/// The symbol (exponent byte) of element `i` of `src` (`w`-byte elements).
#[inline]
fn symbol(src: &[u8], i: usize, w: usize) -> u8 {
    match w {
        1 => src[i],
        2 => {
            let x = u16::from_le_bytes([src[2 * i], src[2 * i + 1]]);
            (x >> 7) as u8
        }
        _ => {
            let b = &src[4 * i..4 * i + 4];
            let x = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            (x >> 23) as u8
        }
    }
}

/// Appends the sm bytes of element `i` of `src` to `out`.
#[inline]
fn push_sm(src: &[u8], i: usize, w: usize, out: &mut Vec<u8>) {
    match w {
        1 => {}
        2 => {
            let x = u16::from_le_bytes([src[2 * i], src[2 * i + 1]]);
            out.push((((x >> 15) << 7) | (x & 0x7F)) as u8);
        }
        _ => {
            let b = &src[4 * i..4 * i + 4];
            let x = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            let sm = ((x >> 31) << 23) | (x & 0x7F_FFFF);
            out.extend_from_slice(&sm.to_le_bytes()[..3]);
        }
    }
}

/// Writes element (`sym`, `sm`) to `out` (`w` bytes).
#[inline]
fn put_elem(out: &mut [u8], sym: u8, sm: &[u8], w: usize) {
    match w {
        1 => out[0] = sym,
        2 => {
            let s = u16::from(sm[0]);
            let x = ((s >> 7) << 15) | (u16::from(sym) << 7) | (s & 0x7F);
            out.copy_from_slice(&x.to_le_bytes());
        }
        _ => {
            let s = u32::from_le_bytes([sm[0], sm[1], sm[2], 0]);
            let x = ((s >> 23) << 31) | (u32::from(sym) << 23) | (s & 0x7F_FFFF);
            out.copy_from_slice(&x.to_le_bytes());
        }
    }
}

/// Histogram of the symbols of `src`'s elements, and whether zero elision is valid (every
/// element with symbol 0 is all zero bits).
pub fn histogram(src: &[u8], w: usize) -> ([u32; 256], bool) {
    let n = src.len() / w;
    let mut hist = [0u32; 256];
    let mut elide = true;
    for (i, e) in src[..n * w].chunks_exact(w).enumerate() {
        let s = symbol(src, i, w);
        hist[s as usize] += 1;
        if s == 0 && e.iter().any(|&b| b != 0) {
            elide = false;
        }
    }
    (hist, elide && w > 1)
}

/// Huffman code lengths of `hist`, at most [`MAX_CODE_LEN`] bits (counts are flattened
/// until the longest code fits). A single symbol gets length 1; absent symbols 0.
pub fn code_lengths(hist: &[u32; 256]) -> [u8; 256] {
    let mut lens = [0u8; 256];
    let present: Vec<usize> = (0..256).filter(|&s| hist[s] > 0).collect();
    match present.len() {
        0 => return lens,
        1 => {
            lens[present[0]] = 1;
            return lens;
        }
        _ => {}
    }
    let mut shift = 0u32;
    loop {
        let counts: Vec<u64> = present
            .iter()
            .map(|&s| (u64::from(hist[s]) >> shift).max(1))
            .collect();
        let depths = huffman_depths(&counts);
        if depths.iter().all(|&d| d <= MAX_CODE_LEN) {
            for (&s, &d) in present.iter().zip(&depths) {
                lens[s] = d as u8;
            }
            return lens;
        }
        shift += 1;
    }
}

/// Depths of the leaves of a Huffman tree over `counts` (at least two leaves), by the
/// two-queue method.
fn huffman_depths(counts: &[u64]) -> Vec<u32> {
    let n = counts.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| (counts[i], i));
    // Nodes 0..n are leaves (in `order`), n.. internal; parent links give depths.
    let mut weight: Vec<u64> = order.iter().map(|&i| counts[i]).collect();
    let mut parent = vec![usize::MAX; 2 * n - 1];
    let (mut leaf, mut inner) = (0usize, n);
    let pick = |weight: &Vec<u64>, leaf: &mut usize, inner: &mut usize, end: usize| {
        if *leaf < n && (*inner >= end || weight[*leaf] <= weight[*inner]) {
            *leaf += 1;
            *leaf - 1
        } else {
            *inner += 1;
            *inner - 1
        }
    };
    for _ in 0..n - 1 {
        let end = weight.len();
        let a = pick(&weight, &mut leaf, &mut inner, end);
        let b = pick(&weight, &mut leaf, &mut inner, end);
        let id = weight.len();
        weight.push(weight[a] + weight[b]);
        parent[a] = id;
        parent[b] = id;
    }
    // Depth of a node = depth of its parent + 1; internal nodes come after their children.
    let mut depth = vec![0u32; 2 * n - 1];
    for v in (0..2 * n - 2).rev() {
        depth[v] = depth[parent[v]] + 1;
    }
    let mut out = vec![0u32; n];
    for (pos, &i) in order.iter().enumerate() {
        out[i] = depth[pos];
    }
    out
}

/// Canonical codes of `lens` (ordered by length, then symbol), bit-reversed for LSB-first
/// output. `None` when the lengths over-subscribe the code space or exceed
/// [`MAX_CODE_LEN`].
pub fn canonical_codes(lens: &[u8; 256]) -> Option<[u16; 256]> {
    let mut count = [0u32; MAX_CODE_LEN as usize + 1];
    for &l in lens {
        if u32::from(l) > MAX_CODE_LEN {
            return None;
        }
        count[l as usize] += 1;
    }
    count[0] = 0;
    let kraft: u32 = (1..=MAX_CODE_LEN as usize)
        .map(|l| count[l] << (MAX_CODE_LEN as usize - l))
        .sum();
    if kraft > TABLE_SIZE as u32 {
        return None;
    }
    let mut next = [0u32; MAX_CODE_LEN as usize + 2];
    let mut code = 0u32;
    for l in 1..=MAX_CODE_LEN as usize {
        code = (code + count[l - 1]) << 1;
        next[l] = code;
    }
    let mut codes = [0u16; 256];
    for s in 0..256 {
        let l = lens[s] as usize;
        if l > 0 {
            let c = next[l];
            next[l] += 1;
            codes[s] = (c.reverse_bits() >> (32 - l)) as u16;
        }
    }
    Some(codes)
}

/// The decode table of `lens`: entry `t` (12 peeked bits) is `sym | len << 8`, 0 for a
/// hole of an incomplete code. Corrupt when the lengths over-subscribe the code space or
/// no symbol has a code.
pub fn decode_table(lens: &[u8; 256]) -> Result<Vec<u16>> {
    let codes = canonical_codes(lens).ok_or_else(|| bad("code lengths over-subscribed"))?;
    if lens.iter().all(|&l| l == 0) {
        return Err(bad("code without symbols"));
    }
    let mut table = vec![0u16; TABLE_SIZE];
    for s in 0..256 {
        let l = u32::from(lens[s]);
        if l == 0 {
            continue;
        }
        let v = s as u16 | (l as u16) << 8;
        let mut t = usize::from(codes[s]);
        while t < TABLE_SIZE {
            table[t] = v;
            t += 1 << l;
        }
    }
    Ok(table)
}

/// Elements of lane `l` (of 32) in a group of `n` elements.
pub fn lane_len(n: usize, l: usize) -> usize {
    if l >= n {
        0
    } else {
        (n - l).div_ceil(LANES)
    }
}

/// Exact bytes of the Huffman form of a page of `n` elements of width `w` (tail
/// `tail` bytes) with histogram `hist` coded by `lens`, in the lanes [`lanes_for`] gives,
/// assuming the symbols are spread evenly over the lanes (exact for the lane streams up to
/// one byte per lane).
pub fn huff_size_estimate(
    hist: &[u32; 256],
    lens: &[u8; 256],
    w: usize,
    tail: usize,
    elide: bool,
) -> f64 {
    let bits: f64 = (0..256)
        .map(|s| f64::from(hist[s]) * f64::from(lens[s]))
        .sum();
    let n: f64 = hist.iter().map(|&c| f64::from(c)).sum();
    let nsm = if elide { n - f64::from(hist[0]) } else { n };
    let lanes = lanes_for(n as usize);
    (huff_header(lanes) + tail) as f64 + bits / 8.0 + lanes as f64 * 0.5 + nsm * (w - 1) as f64
}

struct BitWriter<'a> {
    out: &'a mut Vec<u8>,
    acc: u64,
    bits: u32,
}

impl BitWriter<'_> {
    #[inline]
    fn put(&mut self, code: u16, len: u32) {
        self.acc |= u64::from(code) << self.bits;
        self.bits += len;
        while self.bits >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.bits -= 8;
        }
    }
    fn flush(&mut self) {
        if self.bits > 0 {
            self.out.push(self.acc as u8);
        }
        self.acc = 0;
        self.bits = 0;
    }
}

fn push_raw(src: &[u8], w: usize, raw_len: u32, dst: &mut Vec<u8>, start: usize) -> usize {
    dst.truncate(start);
    dst.extend_from_slice(&[MAGIC, w as u8, MODE_RAW, 0]);
    dst.extend_from_slice(&raw_len.to_le_bytes());
    dst.extend_from_slice(&0u32.to_le_bytes());
    dst.extend_from_slice(src);
    dst.len() - start
}

/// Appends the encoding of `src` (elements of `width`) to `dst`; returns the bytes
/// appended. Pages the code does not shrink are stored raw (12 bytes of header).
pub fn encode_page(src: &[u8], width: ElemWidth, dst: &mut Vec<u8>) -> Result<usize> {
    let w = width.bytes();
    let raw_len = u32::try_from(src.len())
        .map_err(|_| Error::invalid("float-codec pages are at most 4 GiB"))?;
    let start = dst.len();
    let n = src.len() / w;
    if n == 0 {
        return Ok(push_raw(src, w, raw_len, dst, start));
    }
    if src.len() > MAX_HUFF_PAGE {
        return Ok(push_raw(src, w, raw_len, dst, start));
    }
    let (hist, elide) = histogram(src, w);
    let lens = code_lengths(&hist);
    let tail = src.len() % w;
    let est = huff_size_estimate(&hist, &lens, w, tail, elide);
    if est >= (FIXED_HEADER + src.len()) as f64 {
        return Ok(push_raw(src, w, raw_len, dst, start));
    }
    let codes = canonical_codes(&lens).ok_or_else(|| Error::invalid("internal: bad code"))?;
    let nsm = if elide { n - hist[0] as usize } else { n };
    let mode = MODE_HUFF | if elide { FLAG_ZERO } else { 0 };
    let lanes = lanes_for(n);
    let groups = lanes / LANES;
    dst.extend_from_slice(&[MAGIC, w as u8, mode, lanes as u8]);
    dst.extend_from_slice(&raw_len.to_le_bytes());
    dst.extend_from_slice(&(nsm as u32).to_le_bytes());
    for pair in lens.chunks_exact(2) {
        dst.push(pair[0] | pair[1] << 4);
    }
    let ends_at = dst.len();
    dst.resize(ends_at + 2 * lanes, 0);
    // Group starts: the sm rank of each group's first element (all elements before it
    // when nothing is elided).
    let coded = |i: usize| !elide || symbol(src, i, w) != 0;
    let mut rank = 0usize;
    for g in 0..groups {
        let r = group_range(n, groups, g);
        if g > 0 {
            dst.extend_from_slice(&(rank as u32).to_le_bytes());
        }
        rank += r.filter(|&i| coded(i)).count();
    }
    dst.extend_from_slice(&src[n * w..]);
    let streams = dst.len();
    for g in 0..groups {
        let r = group_range(n, groups, g);
        for l in 0..LANES {
            let mut bw = BitWriter {
                out: dst,
                acc: 0,
                bits: 0,
            };
            for i in (r.start + l..r.end).step_by(LANES) {
                let s = usize::from(symbol(src, i, w));
                bw.put(codes[s], u32::from(lens[s]));
            }
            bw.flush();
            let Ok(end) = u16::try_from(dst.len() - streams) else {
                return Ok(push_raw(src, w, raw_len, dst, start));
            };
            let at = ends_at + 2 * (g * LANES + l);
            dst[at..at + 2].copy_from_slice(&end.to_le_bytes());
        }
    }
    dst.reserve(nsm * (w - 1));
    for i in 0..n {
        if coded(i) {
            push_sm(src, i, w, dst);
        }
    }
    if dst.len() - start >= FIXED_HEADER + src.len() {
        return Ok(push_raw(src, w, raw_len, dst, start));
    }
    Ok(dst.len() - start)
}

fn rd_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn rd_u16(b: &[u8], at: usize) -> usize {
    usize::from(u16::from_le_bytes([b[at], b[at + 1]]))
}

/// Decodes the `count` symbols of one lane stream `s` into `syms[0], syms[32], …` (the
/// lane's elements from its first); `l` names the lane in errors.
fn decode_lane(s: &[u8], table: &[u16], count: usize, syms: &mut [u8], l: usize) -> Result<()> {
    let mut acc = 0u64;
    let mut have = 0u32; // valid bits in `acc`
    let mut pos = 0usize; // next byte of `s` to load
    let mut used = 0usize; // bits consumed
    for k in 0..count {
        while have <= 56 {
            // Past the stream's end the bits read as zeros; the final check catches a code
            // that runs past it.
            let b = s.get(pos).copied().unwrap_or(0);
            acc |= u64::from(b) << have;
            have += 8;
            pos += 1;
        }
        let e = table[(acc as usize) & (TABLE_SIZE - 1)];
        let len = u32::from(e >> 8);
        if len == 0 {
            return Err(bad(format!("invalid code in lane {l}")));
        }
        syms[k * LANES] = e as u8;
        acc >>= len;
        have -= len;
        used += len as usize;
        if used > 8 * s.len() {
            return Err(bad(format!("lane {l} runs past its stream")));
        }
    }
    if used.div_ceil(8) != s.len() {
        return Err(bad(format!("lane {l} stream size mismatch")));
    }
    Ok(())
}

/// Decodes one float-codec page `src` (elements of `width`) into `dst`, which must be
/// exactly the page's original length.
pub fn decode_page(src: &[u8], width: ElemWidth, dst: &mut [u8]) -> Result<()> {
    let w = width.bytes();
    if src.len() < FIXED_HEADER {
        return Err(bad("truncated header"));
    }
    if src[0] != MAGIC || usize::from(src[1]) != w {
        return Err(bad("bad magic or width"));
    }
    let mode = src[2];
    let lanes = usize::from(src[3]);
    let raw_len = rd_u32(src, 4) as usize;
    let nsm = rd_u32(src, 8) as usize;
    if raw_len != dst.len() {
        return Err(bad(format!(
            "page holds {raw_len} bytes, expected {}",
            dst.len()
        )));
    }
    if mode == MODE_RAW {
        if lanes != 0 || nsm != 0 || src.len() - FIXED_HEADER != raw_len {
            return Err(bad("raw page size mismatch"));
        }
        dst.copy_from_slice(&src[FIXED_HEADER..]);
        return Ok(());
    }
    if mode & !FLAG_ZERO != MODE_HUFF {
        return Err(bad(format!("unknown mode {mode}")));
    }
    let elide = mode & FLAG_ZERO != 0;
    let n = raw_len / w;
    let tail = raw_len % w;
    if !matches!(lanes, 32 | 64 | 128) || n == 0 || (elide && w == 1) || raw_len > MAX_HUFF_PAGE {
        return Err(bad("bad lane count, element count, page size or mode"));
    }
    if (!elide && nsm != n) || nsm > n {
        return Err(bad("sm count mismatch"));
    }
    let groups = lanes / LANES;
    let header = huff_header(lanes);
    let streams = header + tail;
    if src.len() < streams {
        return Err(bad("truncated header"));
    }
    let mut lens = [0u8; 256];
    for (i, &b) in src[FIXED_HEADER..FIXED_HEADER + LENGTHS_BYTES]
        .iter()
        .enumerate()
    {
        lens[2 * i] = b & 0xF;
        lens[2 * i + 1] = b >> 4;
    }
    let table = decode_table(&lens)?;
    let ends_at = FIXED_HEADER + LENGTHS_BYTES;
    let starts_at = ends_at + 2 * lanes;
    let mut ends = [0usize; LANES * MAX_GROUPS];
    let mut prev = 0usize;
    for (l, e) in ends[..lanes].iter_mut().enumerate() {
        *e = rd_u16(src, ends_at + 2 * l);
        if *e < prev {
            return Err(bad("lane ends decrease"));
        }
        prev = *e;
    }
    let sm_at = streams + prev;
    let sm_len = nsm * (w - 1);
    if sm_at.checked_add(sm_len) != Some(src.len()) {
        return Err(bad("page size mismatch"));
    }
    // Group g's sm rank starts and ends (the next group's start, `nsm` for the last).
    let start = |g: usize| {
        if g == 0 {
            0
        } else {
            rd_u32(src, starts_at + 4 * (g - 1)) as usize
        }
    };
    let mut syms = vec![0u8; n];
    let mut a = 0usize;
    for g in 0..groups {
        let r = group_range(n, groups, g);
        let gn = r.len();
        for l in 0..LANES {
            let b = ends[g * LANES + l];
            let count = lane_len(gn, l);
            let at = (r.start + l).min(n);
            decode_lane(
                &src[streams + a..streams + b],
                &table,
                count,
                &mut syms[at..],
                g * LANES + l,
            )?;
            a = b;
        }
        let (s0, s1) = (start(g), if g + 1 < groups { start(g + 1) } else { nsm });
        let coded = if elide {
            syms[r.clone()].iter().filter(|&&s| s != 0).count()
        } else {
            gn
        };
        let expected_start = if elide { s0 } else { r.start };
        if s0 != expected_start || s1.checked_sub(s0) != Some(coded) {
            return Err(bad(format!(
                "group {g}: sm ranks do not match its elements"
            )));
        }
    }
    let sm = &src[sm_at..];
    let zero = [0u8; 3];
    let mut rank = 0usize;
    for (&s, out) in syms.iter().zip(dst.chunks_exact_mut(w)) {
        if elide && s == 0 {
            out.fill(0);
            continue;
        }
        let b = if w == 1 {
            &zero[..]
        } else {
            &sm[rank * (w - 1)..(rank + 1) * (w - 1)]
        };
        put_elem(out, s, b, w);
        rank += 1;
    }
    dst[n * w..].copy_from_slice(&src[header..streams]);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huffman_lengths_are_limited_and_complete() {
        // Fibonacci counts force a deep tree without the limit.
        let mut hist = [0u32; 256];
        let (mut a, mut b) = (1u32, 1u32);
        for h in hist.iter_mut().take(30) {
            *h = a;
            (a, b) = (b, a.saturating_add(b));
        }
        let lens = code_lengths(&hist);
        assert!(lens.iter().all(|&l| u32::from(l) <= MAX_CODE_LEN));
        let kraft: u32 = lens
            .iter()
            .filter(|&&l| l > 0)
            .map(|&l| 1u32 << (MAX_CODE_LEN - u32::from(l)))
            .sum();
        assert_eq!(kraft, TABLE_SIZE as u32);
        let t = decode_table(&lens).unwrap();
        assert!(t.iter().all(|&e| e >> 8 != 0));
    }

    #[test]
    fn split_and_join_are_inverse() {
        for x in [0u32, 1, 0x8000_0000, 0x3F80_0000, 0xFFFF_FFFF, 0x7F80_0001] {
            let src = x.to_le_bytes();
            let mut sm = Vec::new();
            push_sm(&src, 0, 4, &mut sm);
            let mut out = [0u8; 4];
            put_elem(&mut out, symbol(&src, 0, 4), &sm, 4);
            assert_eq!(out, src);
        }
        for x in [0u16, 1, 0x8000, 0x3F80, 0xFFFF] {
            let src = x.to_le_bytes();
            let mut sm = Vec::new();
            push_sm(&src, 0, 2, &mut sm);
            let mut out = [0u8; 2];
            put_elem(&mut out, symbol(&src, 0, 2), &sm, 2);
            assert_eq!(out, src);
        }
    }
}
