//! Pages and their complexity: cutting a buffer into pages, all-zero detection, and a cheap
//! per-page estimate of what each codec would achieve (sampled byte entropy, zero runs and
//! byte-plane statistics for typed data).
//!
//! The estimate reads a small sample of each page, so that planning costs a fraction of the
//! transfer it plans: 1/32 of it in short runs spread over the page for the byte statistics
//! (the LZ-family and zstd estimates), and a few whole 1024-element groups (4 KiB by
//! default, spread over the page) which the bitplane encoder actually encodes: the bitplane
//! estimate is what the codec achieves on that sample, scaled to the page, not a formula.
//! The float codec's estimate ([`crate::floatcodec`]) is exact for the sampled groups too:
//! the length-limited Huffman code of their exponent histogram. Only the all-zero test reads
//! a whole page, and it stops at the first non-zero word.

use std::ops::Range;

use vuma_core::{Error, Result};

/// Default page size: 64 KiB.
pub const DEFAULT_PAGE_SIZE: usize = 64 << 10;
/// Page size of host-packed data that may use the float codec on a device behind a link:
/// `hl_float` decodes a page with one warp per group (four groups from 1,024 elements), and
/// a chunk must hold enough warps to fill the GPU. On an H200, 32 MiB chunks of real bf16
/// weights decoded at 192 GB/s with 16 KiB pages, 182 GB/s with 32 KiB and 193 GB/s with
/// 64 KiB (2,048 warps: enough, and longer groups pay for the table better), which also
/// store the most (1.488× against 1.444× and 1.474×): the default page size. With one
/// warp per page, 64 KiB pages had decoded at 55 GB/s (512 warps).
pub const FLOAT_PAGE_SIZE: usize = 64 << 10;
/// Largest page the device decoders accept (one CUDA block row covers 64 KiB).
pub const MAX_DEVICE_PAGE_SIZE: usize = 64 << 10;

/// Element width hint for typed data: the bitplane codec splits elements into this many
/// byte planes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ElemWidth {
    /// Bytes (or unknown): one plane.
    #[default]
    U8,
    /// 16-bit elements (bf16, f16, u16): two planes.
    Bf16,
    /// 32-bit elements (f32, u32): four planes.
    F32,
}

impl ElemWidth {
    /// Bytes per element.
    pub fn bytes(self) -> usize {
        match self {
            ElemWidth::U8 => 1,
            ElemWidth::Bf16 => 2,
            ElemWidth::F32 => 4,
        }
    }
    /// The width of `bytes`-byte elements.
    pub fn from_bytes(bytes: usize) -> Result<Self> {
        match bytes {
            1 => Ok(ElemWidth::U8),
            2 => Ok(ElemWidth::Bf16),
            4 => Ok(ElemWidth::F32),
            n => Err(Error::invalid(format!(
                "element width {n} unsupported (1, 2 or 4 bytes)"
            ))),
        }
    }
}

/// Checks a page size: a multiple of 1 KiB between 1 KiB and `max`.
pub fn check_page_size(page_size: usize, max: usize) -> Result<()> {
    if page_size == 0 || !page_size.is_multiple_of(1024) || page_size > max {
        return Err(Error::invalid(format!(
            "page size {page_size} must be a non-zero multiple of 1024 of at most {max} bytes"
        )));
    }
    Ok(())
}

/// The byte ranges of the pages of a `len`-byte buffer (the last page may be shorter).
pub fn pages(len: usize, page_size: usize) -> impl Iterator<Item = Range<usize>> {
    let ps = page_size.max(1);
    (0..len.div_ceil(ps)).map(move |i| i * ps..((i + 1) * ps).min(len))
}

/// Whether every byte of `bytes` is zero: word-wise, stops at the first non-zero word.
pub fn is_zero(bytes: &[u8]) -> bool {
    let mut chunks = bytes.chunks_exact(64);
    for c in &mut chunks {
        // Eight words OR-ed together per step: the compiler vectorises this.
        let mut acc = 0u64;
        for w in c.chunks_exact(8) {
            acc |= u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
        }
        if acc != 0 {
            return false;
        }
    }
    chunks.remainder().iter().all(|&b| b == 0)
}

/// How much of a page the estimator reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleConfig {
    /// Number of sampled runs per page.
    pub runs: usize,
    /// Bytes per run (rounded down to the element width).
    pub run_len: usize,
    /// Bytes of whole 1024-element groups the bitplane and float estimates encode (at least
    /// one group per page).
    pub group_bytes: usize,
}

impl Default for SampleConfig {
    /// 8 runs of 256 bytes: 2 KiB of a 64 KiB page (1/32); 4 KiB of groups.
    fn default() -> Self {
        SampleConfig {
            runs: 8,
            run_len: 256,
            group_bytes: 4 << 10,
        }
    }
}

/// The complexity estimate of one page.
#[derive(Debug, Clone, PartialEq)]
pub struct PageEstimate {
    /// The page is all zeros (exact, not sampled).
    pub zero: bool,
    /// Bytes the estimator read (whole-page zero scan included).
    pub bytes_inspected: usize,
    /// Order-0 byte entropy of the sample, bits per byte (0..=8).
    pub entropy_bits: f64,
    /// Fraction of sampled bytes lying in 8-byte words of equal bytes.
    pub run_fraction: f64,
    /// Estimated ratio (raw / compressed) of each codec; 1.0 or less means "not worth it".
    pub lz4: f64,
    /// Estimated zstd ratio.
    pub zstd: f64,
    /// Estimated snappy ratio.
    pub snappy: f64,
    /// Estimated bitplane ratio (for the width hint given).
    pub bitplane: f64,
    /// Estimated float-codec ratio ([`crate::floatcodec`], for the width hint given).
    pub float: f64,
}

impl PageEstimate {
    /// The estimated ratio of the codec named `name` (`lz4`, `zstd`, `snappy`, `bitplane`).
    pub fn ratio_of(&self, name: &str) -> Option<f64> {
        match name {
            "lz4" => Some(self.lz4),
            "zstd" => Some(self.zstd),
            "snappy" => Some(self.snappy),
            "bitplane" => Some(self.bitplane),
            "float" => Some(self.float),
            "raw" => Some(1.0),
            _ => None,
        }
    }
}

fn entropy(hist: &[u32; 256], total: u32) -> f64 {
    if total == 0 {
        return 0.0;
    }
    let t = f64::from(total);
    hist.iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / t;
            -p * p.log2()
        })
        .sum()
}

/// Estimates `page` (element width `width`) from a sample.
pub fn estimate(page: &[u8], width: ElemWidth, cfg: &SampleConfig) -> PageEstimate {
    let zero_scan = zero_prefix_len(page);
    if zero_scan == page.len() {
        let r = page.len().max(1) as f64 / 16.0;
        return PageEstimate {
            zero: true,
            bytes_inspected: page.len(),
            entropy_bits: 0.0,
            run_fraction: 1.0,
            lz4: r,
            zstd: r,
            snappy: r,
            bitplane: r,
            float: r,
        };
    }
    let w = width.bytes();
    let run_len = (cfg.run_len / 8).max(1) * 8;
    let runs = cfg.runs.max(1);
    let mut plane_hist = [[0u32; 256]; 4];
    let mut total = 0u32;
    let mut in_runs = 0u32;
    let stride = if page.len() > run_len * runs {
        ((page.len() - run_len) / (runs - 1).max(1)) / 8 * 8
    } else {
        run_len
    };
    let mut inspected = zero_scan.min(page.len());
    let mut start = 0usize;
    for _ in 0..runs {
        if start >= page.len() {
            break;
        }
        let s = &page[start..(start + run_len).min(page.len())];
        inspected += s.len();
        // Runs: 8-byte words whose bytes are all equal (cheap, aligned to the sample).
        for c in s.chunks_exact(8) {
            let v = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            if v == (v & 0xFF).wrapping_mul(0x0101_0101_0101_0101) {
                in_runs += 8;
            }
        }
        match w {
            1 => s.iter().for_each(|&b| plane_hist[0][b as usize] += 1),
            2 => s.chunks_exact(2).for_each(|c| {
                plane_hist[0][c[0] as usize] += 1;
                plane_hist[1][c[1] as usize] += 1;
            }),
            _ => s.chunks_exact(4).for_each(|c| {
                plane_hist[0][c[0] as usize] += 1;
                plane_hist[1][c[1] as usize] += 1;
                plane_hist[2][c[2] as usize] += 1;
                plane_hist[3][c[3] as usize] += 1;
            }),
        }
        total += (s.len() / w * w) as u32;
        start += stride.max(8);
    }
    let mut hist = [0u32; 256];
    for ph in &plane_hist[..w] {
        for (h, c) in hist.iter_mut().zip(ph) {
            *h += c;
        }
    }
    let h = entropy(&hist, total);
    let run_fraction = if total == 0 {
        0.0
    } else {
        f64::from(in_runs) / f64::from(total)
    };
    // LZ-family codecs (no entropy stage) mostly win on runs; literals cost ~1 byte each,
    // plus ~1/255 of token overhead.
    let lz_cost = (1.0 - 0.95 * run_fraction).max(0.02) + 0.004;
    let lz4 = 1.0 / lz_cost;
    let snappy = 1.0 / (lz_cost + 0.002);
    // zstd: entropy-coded literals, and the runs on top.
    let z_cost = ((h / 8.0) * (1.0 - 0.9 * run_fraction)).max(0.01) + 0.01;
    let zstd = 1.0 / z_cost.min(1.0 + 1e-3);
    let groups = sample_groups(page, width, cfg.group_bytes);
    PageEstimate {
        zero: false,
        bytes_inspected: inspected + groups.inspected,
        entropy_bits: h,
        run_fraction,
        lz4,
        zstd,
        snappy,
        bitplane: groups.bitplane,
        float: groups.float,
    }
}

/// Estimates from whole sampled groups (see [`sample_groups`]).
struct GroupSample {
    bitplane: f64,
    float: f64,
    inspected: usize,
}

/// Encodes about `budget` bytes of whole 1024-element groups of `page` (at least one,
/// spread over the page) with the bitplane block encoder, and codes their exponents with
/// the float codec's Huffman code; scales both to the page, headers included.
fn sample_groups(page: &[u8], width: ElemWidth, budget: usize) -> GroupSample {
    use crate::bitplane::{self, GROUP};
    use crate::floatcodec;
    let w = width.bytes();
    let n = page.len() / w;
    let tail = page.len() % w;
    let groups = n.div_ceil(GROUP);
    if groups == 0 {
        let r = page.len() as f64 / (page.len() + floatcodec::FIXED_HEADER) as f64;
        return GroupSample {
            bitplane: page.len() as f64 / (page.len() + bitplane::HEADER + 4) as f64,
            float: r,
            inspected: 0,
        };
    }
    let k = (budget / (GROUP * w)).clamp(1, groups);
    let mut plane = [0u8; GROUP];
    let mut block = Vec::with_capacity(GROUP + 8);
    let (mut bp_bytes, mut elems) = (0usize, 0usize);
    let mut hist = [0u32; 256];
    let mut elide = true;
    for j in 0..k {
        let g = j * groups / k;
        let e0 = g * GROUP;
        let m = (n - e0).min(GROUP);
        let span = &page[e0 * w..(e0 + m) * w];
        for p in 0..w {
            for (i, b) in plane[..m].iter_mut().enumerate() {
                *b = span[i * w + p];
            }
            block.clear();
            bitplane::encode_block(&plane[..m], &mut block);
            bp_bytes += block.len();
        }
        let (h, z) = floatcodec::histogram(span, w);
        for (a, b) in hist.iter_mut().zip(h) {
            *a += b;
        }
        elide &= z;
        elems += m;
    }
    let scale = n as f64 / elems as f64;
    let bp = (bitplane::HEADER + 4 * (groups * w + 1) + tail) as f64 + bp_bytes as f64 * scale;
    let lens = floatcodec::code_lengths(&hist);
    let mut scaled = [0u32; 256];
    for (s, &c) in scaled.iter_mut().zip(&hist) {
        *s = (f64::from(c) * scale).round() as u32;
    }
    let fl = floatcodec::huff_size_estimate(&scaled, &lens, w, tail, elide)
        .min((page.len() + floatcodec::FIXED_HEADER) as f64);
    GroupSample {
        bitplane: page.len() as f64 / bp,
        float: page.len() as f64 / fl,
        inspected: elems * w,
    }
}

/// Leading zero bytes of `page`, counted a word at a time (the whole page if all zero).
fn zero_prefix_len(page: &[u8]) -> usize {
    let mut n = 0;
    for c in page.chunks(64) {
        if !is_zero(c) {
            return n;
        }
        n += c.len();
    }
    n
}

/// Bits to index `d` distinct values (0 for one value).
pub(crate) fn bits_for(d: usize) -> u32 {
    if d <= 1 {
        0
    } else {
        usize::BITS - (d - 1).leading_zeros()
    }
}

/// Runs `f` over `items` on `threads` threads (0: all cores), keeping order (pages encoded
/// in parallel).
pub(crate) fn par_map<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    f: impl Fn(usize, &T) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    let n = if threads == 0 {
        vuma_core::host::cores()
    } else {
        threads
    }
    .clamp(1, items.len().max(1));
    if n == 1 {
        // No thread to start for one.
        return items.iter().enumerate().map(|(i, x)| f(i, x)).collect();
    }
    let per = items.len().div_ceil(n).max(1);
    let f = &f;
    std::thread::scope(|s| {
        let hs: Vec<_> = items
            .chunks(per)
            .enumerate()
            .map(|(t, part)| {
                s.spawn(move || {
                    part.iter()
                        .enumerate()
                        .map(|(i, x)| f(t * per + i, x))
                        .collect::<Result<Vec<R>>>()
                })
            })
            .collect();
        let mut out = Vec::with_capacity(items.len());
        for h in hs {
            out.extend(h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))?);
        }
        Ok(out)
    })
}
