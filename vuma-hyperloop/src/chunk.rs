//! Chunk images and their layout: a chunk is a run of consecutive pages that crosses the
//! link as one buffer copy — a page table and the pages the device kernels decode (the
//! *head*), then the raw pages copied straight to the destination ([`DirectRun`]).
//!
//! Data flows one way: the host encoder ([`crate::residency`]) and the device encoder
//! ([`crate::encode`]) lay their pages out here (one layout function, one placement of
//! images in a buffer), so their images are byte-identical; [`crate::integrity`] checks and seals the images; the
//! uploader ([`crate::residency::Uploader`]) sends them. This module depends on none of
//! them.

use crate::kernels::{Entry, PageKind, ENTRY_BYTES};
use crate::page::ElemWidth;
use crate::planner::{self, CostModel, DeviceCodec, PageDecision, PlanConfig, PlanSummary};

/// Alignment of each page's data inside a chunk image.
const PAGE_ALIGN: usize = 16;
/// Alignment of chunk images inside a pinned staging buffer.
const CHUNK_ALIGN: u64 = 256;

/// How a [`CompressedBuffer`](crate::CompressedBuffer) is built.
#[derive(Debug, Clone, PartialEq)]
pub struct CompressOptions {
    /// The planner's settings (page size, width hint, codecs allowed, threads).
    pub plan: PlanConfig,
    /// The cost model.
    pub model: CostModel,
    /// Uncompressed bytes per chunk (one copy + one decode launch each; default 32 MiB).
    pub chunk_bytes: usize,
    /// Force one decision for every non-zero page (benchmarks of a single codec).
    pub force: Option<PageDecision>,
    /// Runs of consecutive raw pages at least this long (default 1 MiB) are copied straight
    /// to the destination; shorter ones travel in the chunk and a kernel places them (one
    /// copy per 64 KiB page would crawl at 17 GB/s on the H100).
    pub direct_min_bytes: usize,
}

impl Default for CompressOptions {
    fn default() -> Self {
        CompressOptions {
            plan: PlanConfig::default(),
            model: CostModel::default(),
            chunk_bytes: 32 << 20,
            force: None,
            direct_min_bytes: 1 << 20,
        }
    }
}

impl CompressOptions {
    /// Defaults with element width `width`.
    pub fn with_width(width: ElemWidth) -> Self {
        let mut o = CompressOptions::default();
        o.plan.width = width;
        o
    }

    /// Defaults with element width `width` and the cost model of the device of `info`
    /// ([`CostModel::for_device`]: its link, its copy concurrency, and the float codec
    /// where the device decodes it). What to compress host bytes with for one device, e.g.
    /// the host copy of a read-mostly buffer that will be uploaded many times. Typed data
    /// for a device behind a link that decodes the float codec gets pages of
    /// [`FLOAT_PAGE_SIZE`](crate::page::FLOAT_PAGE_SIZE), which its decoder needs to run at
    /// the rate the cost model assumes.
    pub fn for_device(info: &vuma_core::DeviceInfo, width: ElemWidth) -> Self {
        let mut o = CompressOptions::with_width(width);
        o.model = CostModel::for_device(info);
        o.limit_pages_for_float(info);
        o
    }

    /// Pages of at most [`FLOAT_PAGE_SIZE`](crate::page::FLOAT_PAGE_SIZE) when the float
    /// codec may code this data for the device of `info` (typed data, a device behind a
    /// link, a model with the float decoder): see [`for_device`](Self::for_device).
    pub(crate) fn limit_pages_for_float(&mut self, info: &vuma_core::DeviceInfo) {
        if self.model.float_decoder && self.plan.width != ElemWidth::U8 && !info.unified_memory {
            self.plan.page_size = self.plan.page_size.min(crate::page::FLOAT_PAGE_SIZE);
        }
    }
}

/// A run of consecutive raw pages, copied straight to the destination (no kernel).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirectRun {
    /// Offset of the run's bytes in the chunk image.
    pub src: u64,
    /// Offset in the destination.
    pub dst: u64,
    /// Bytes.
    pub len: u64,
}

/// One ready-to-send chunk: page table + packed page data (the *head*, which the device
/// kernels decode), then the raw pages (sent by direct copies, see [`DirectRun`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkImage {
    /// The bytes that cross the link.
    pub image: Vec<u8>,
    /// Bytes of `image` the kernels read (table and coded pages).
    pub head_len: usize,
    /// Pages in the chunk.
    pub npages: u32,
    /// Pages the kernels handle (all but raw ones); 0: no kernel runs, no head is copied.
    pub kernel_pages: u32,
    /// Runs of raw pages.
    pub runs: Vec<DirectRun>,
    /// Whether any page is zero or raw in the head (`hl_fill_copy` runs).
    pub has_fill: bool,
    /// Whether any page is bitplane-coded.
    pub has_bitplane: bool,
    /// Whether any page is LZ4-coded.
    pub has_lz4: bool,
    /// Whether any page is float-coded (`hl_float` runs).
    pub has_float: bool,
    /// [`integrity::checksum`](crate::integrity::checksum) of `image`, recorded when it was
    /// made and verified before it is decoded or pinned (see [`crate::integrity`]);
    /// [`ChunkImage::seal`] recomputes it.
    pub checksum: u64,
}

/// Where the pages of one chunk go: the chunk's metadata (its `image` still empty), the
/// length of its image and the page-table entry of each of its pages, in page order.
#[derive(Debug, Clone)]
pub(crate) struct ChunkLayout {
    /// Metadata; `image` is empty.
    pub(crate) meta: ChunkImage,
    /// Bytes of the chunk image (a multiple of 16).
    pub(crate) image_len: usize,
    /// One entry per page of the chunk.
    pub(crate) entries: Vec<Entry>,
}

/// Lays out pages of known kinds and coded lengths (`pages[p]` = kind and bytes of page
/// `p` of a `data_len`-byte buffer cut in `opts.plan.page_size` pages) into chunk images:
/// the page table, then the pages the kernels handle, then runs of raw pages of at least
/// `opts.direct_min_bytes` (copied straight to the destination), every page at a 16-byte
/// boundary, zero padding between. Adds every page to `summary`. The host encoder and the
/// device encoder ([`crate::encode`]) share it, so their images are byte-identical.
pub(crate) fn layout(
    pages: &[(PageKind, usize)],
    data_len: usize,
    opts: &CompressOptions,
    summary: &mut PlanSummary,
) -> Vec<ChunkLayout> {
    let ps = opts.plan.page_size.max(1);
    let width = opts.plan.width;
    let pages_per_chunk = (opts.chunk_bytes / ps).max(1);
    let mut out = Vec::with_capacity(pages.len().div_ceil(pages_per_chunk));
    for (c, group) in pages.chunks(pages_per_chunk).enumerate() {
        let first = c * pages_per_chunk;
        let mut len = group.len() * ENTRY_BYTES;
        let mut entries = vec![
            Entry {
                src_off: 0,
                src_len: 0,
                dst_len: 0,
                dst_off: 0,
                kind: 0,
                width: 0,
            };
            group.len()
        ];
        let mut ck = ChunkImage {
            image: Vec::new(),
            head_len: 0,
            npages: group.len() as u32,
            kernel_pages: 0,
            has_fill: false,
            has_bitplane: false,
            has_lz4: false,
            has_float: false,
            runs: Vec::new(),
            checksum: 0,
        };
        // Which raw pages lie in a long run of consecutive raw pages.
        let mut is_direct = vec![false; group.len()];
        let mut i = 0;
        while i < group.len() {
            let mut j = i;
            while j < group.len() && group[j].0 == PageKind::Raw {
                j += 1;
            }
            if j > i {
                let bytes: usize = group[i..j].iter().map(|e| e.1).sum();
                if bytes >= opts.direct_min_bytes {
                    is_direct[i..j].fill(true);
                }
                i = j;
            } else {
                i += 1;
            }
        }
        // Pages the kernels decode first (the head, copied to the device), then the raw
        // pages of long runs in page order: each run goes straight to the destination in
        // one copy, never through a kernel.
        for direct in [false, true] {
            if direct {
                len = len.next_multiple_of(PAGE_ALIGN);
                ck.head_len = len;
            }
            for (i, &(kind, bytes)) in group.iter().enumerate() {
                if is_direct[i] != direct {
                    continue;
                }
                let p = first + i;
                let dst_off = (p * ps) as u64;
                let dst_len = (data_len - p * ps).min(ps);
                len = len.next_multiple_of(PAGE_ALIGN);
                let src_off = len as u64;
                let travels = if direct { PageKind::Direct } else { kind };
                entries[i] = Entry {
                    src_off,
                    src_len: bytes as u32,
                    dst_len: dst_len as u32,
                    dst_off,
                    kind: travels as u8,
                    width: width.bytes() as u8,
                };
                len += bytes;
                if direct {
                    match ck.runs.last_mut() {
                        Some(r) if r.src + r.len == src_off && r.dst + r.len == dst_off => {
                            r.len += dst_len as u64;
                        }
                        _ => ck.runs.push(DirectRun {
                            src: src_off,
                            dst: dst_off,
                            len: dst_len as u64,
                        }),
                    }
                } else {
                    ck.kernel_pages += 1;
                }
                let d = match kind {
                    PageKind::Zero => PageDecision::Zero,
                    PageKind::Raw | PageKind::Direct => PageDecision::Raw,
                    PageKind::Bitplane => PageDecision::Codec(DeviceCodec::Bitplane),
                    PageKind::Lz4 => PageDecision::Codec(DeviceCodec::Lz4),
                    PageKind::Float => PageDecision::Codec(DeviceCodec::Float),
                };
                ck.has_fill |= !direct && matches!(kind, PageKind::Zero | PageKind::Raw);
                ck.has_bitplane |= kind == PageKind::Bitplane;
                ck.has_lz4 |= kind == PageKind::Lz4;
                ck.has_float |= kind == PageKind::Float;
                summary.count(d);
                summary.bytes_in += dst_len as u64;
                summary.bytes_sent += bytes as u64;
                let ratio = dst_len as f64 / bytes.max(1) as f64;
                let already = planner::EncodeCost::AlreadyCompressed;
                summary.est_time_s += opts.model.page_time(dst_len, d, ratio, already);
                summary.raw_time_s +=
                    opts.model
                        .page_time(dst_len, PageDecision::Raw, 1.0, already);
            }
        }
        out.push(ChunkLayout {
            meta: ck,
            image_len: len.next_multiple_of(PAGE_ALIGN),
            entries,
        });
    }
    out
}

/// Offsets of chunk images of `lens` bytes placed one after another in one buffer (each at
/// a 256-byte boundary), and the buffer's length (at least 1).
pub(crate) fn chunk_offsets(lens: impl IntoIterator<Item = u64>) -> (Vec<u64>, u64) {
    let mut off = 0u64;
    let offs = lens
        .into_iter()
        .map(|len| {
            let at = off;
            off = (off + len).next_multiple_of(CHUNK_ALIGN);
            at
        })
        .collect();
    (offs, off.max(1))
}
