//! The device encoder of the bitplane codec: eviction compresses on the device and sends
//! fewer bytes back across the link.
//!
//! [`DeviceEncoder::evict`] turns `len` bytes of a device buffer into chunk images in
//! pinned host memory, ready for [`Uploader::upload_pinned`](crate::Uploader) to send back
//! up. The images are **byte-identical** to those of
//! [`CompressedBuffer::compress`](crate::CompressedBuffer::compress) with every non-zero page
//! forced to the bitplane codec: all-zero pages become zero pages (nothing sent), pages the
//! codec does not shrink stay raw (long runs of them are copied straight to the destination
//! on upload), the others are bitplane pages.
//!
//! Three steps, two kernels ([`CUDA_SOURCE`], each with a host-function variant of identical
//! semantics that runs on [`vuma_core::HostDevice`], and a SPIR-V variant for Vulkan; see
//! below). Both take 256 threads per block (one block per group of 1024 elements, grid
//! (pages, groups)); another block shape writes nothing (size pass) or flags every page
//! (write pass).
//! 1. `hl_enc_size(src, src_len, records, stats, summary, npages, page_size, width)`: each
//!    thread loads 16 bytes of the group and marks the values it sees per byte plane in
//!    shared memory and counts its zero bytes; one warp per plane turns the marks into the
//!    plane's 256-bit presence mask (8 ballots), adds up its zero count, picks the block's
//!    mode by the cost formulas of [`bitplane::encode_block`](crate::bitplane::encode_block) and stores the block size (a
//!    record of [`REC`] words per page) and the mask and zero count ([`STAT`] words per
//!    block, [`stats_bytes`]); per page it adds up the sizes and whether any byte is
//!    non-zero (8 bytes).
//! 2. the host reads those 8 bytes per page (one small copy), decides each page's kind and
//!    lays the chunk images out exactly as the host encoder does (the same function), and
//!    uploads one 48-byte job per page: where its page-table entry and its bytes go.
//! 3. `hl_enc_write(src, src_len, records, stats, jobs, out, out_len, status, npages,
//!    page_size, width, page0)`, same grid: one warp per plane plans its block again from
//!    the stored mask and zero count (the size must be the record's) while each thread
//!    stages 16 bytes of the group as plane words (a byte transpose); then every thread
//!    handles 4 consecutive bytes of each plane: headers, raw bytes, sparse bitmaps and
//!    dictionaries, then (after one barrier) packed indices and the non-zero bytes at
//!    their ranks (warp ballots and per-warp counts), then the packed non-zero bytes. The
//!    statistics are checked against the data (each plane's zero count, every byte in its
//!    mask). The group's blocks (contiguous in the page) are built in shared memory and
//!    stored with 16-byte vector stores; block 0 of a page writes its entry, header,
//!    offset table, tail and the zero padding to the next 16-byte boundary; raw pages are
//!    copied. The images land in one buffer at the offsets of the upload's layout: in
//!    device memory, one launch and one concurrent copy into pinned staging memory
//!    ([`Placement::Staging`](vuma_core::Placement::Staging)) per chunk, so that the copy of chunk c overlaps the write
//!    pass of chunk c+1 ([`DynDevice::copy_concurrent`](vuma_core::DynDevice::copy_concurrent)); or straight into mapped pinned
//!    memory ([`Placement::HostMapped`](vuma_core::Placement::HostMapped)), so that encoding and the transfer overlap.
//!
//! Every write of `hl_enc_write` is checked against the output buffer and the page's slot;
//! a job, record or statistic that does not fit sets a flag in a status word (`[flags,
//! first bad page]`) instead, and [`DeviceEncoder::evict`] turns it into a typed error.
//!
//! **Vulkan.** Both kernels also have a SPIR-V variant (WGSL in
//! `shaders/hl_enc_common.wgsl` + `hl_enc_size.wgsl` / `hl_enc_write.wgsl`, compiled by naga
//! in `build.rs`: [`crate::kernels::enc_size_spirv`], [`crate::kernels::enc_write_spirv`])
//! with the same arguments, grid ([`encode_grid`]), outputs and flags, and no subgroup
//! operations (the workgroup size is the shaders' 256 invocations). The size pass marks each plane's values in workgroup-atomic presence masks
//! and adds up zero counts with workgroup atomics. The write pass stages the group's planes
//! in workgroup memory (invocation t: elements 4t..4t+4 of each plane), checks the
//! statistics against the records and the data before it writes anything, and assembles
//! the group's blocks in a zeroed workgroup buffer by OR-ing every byte, bitmap nibble and
//! packed index into place as a bit stream (ranks of non-zero bytes from per-invocation
//! counts and their prefix sums); one invocation per output word then stores them. The
//! output is bound as atomic words: whole words inside the page are stored, words shared
//! with another group, page or the entry (ranges need not be word-aligned) are written
//! with `atomicAnd`/`atomicOr` on the owned bytes only, which commute, so there is no race
//! and no byte outside the page's checked slot is written. Storage buffers are read in
//! whole words: on Vulkan [`DeviceEncoder`] binds the source range rounded up to whole
//! words (and at an offset that is a multiple of 256), or encodes a copy when the buffer
//! does not allow that. Each binding must fit `maxStorageBufferRange` (128 MiB on
//! lavapipe), so the source and the output of one eviction are limited to that.
//!
//! **Files.** This module holds the constants, the kernels and their launch geometry;
//! `encode.cu` the CUDA C of both kernels; `encode/block.rs` the host mirror of the block
//! encoder, `encode/host.rs` the host variants of the kernels; the [`DeviceEncoder`] by
//! stage: `encode/encoder.rs` (the encoder, its scratch and [`DeviceEncoder::evict`]),
//! `encode/size.rs` (step 1), `encode/jobs.rs` (step 2: layout and job table),
//! `encode/write.rs` (step 3: the write pass) and `encode/download.rs` (the images into
//! pinned memory, [`Evicted`]).

use vuma_core::{Kernel, LaunchConfig};

use crate::bitplane::GROUP;
use crate::page::ElemWidth;

mod block;
mod download;
mod encoder;
mod host;
mod jobs;
mod size;
mod write;

pub use block::encode_block_as_device;
pub use download::Evicted;
pub use encoder::{DeviceEncoder, EncoderScratch};
#[doc(hidden)]
pub use jobs::{job_table, JobTable};

/// Block-size words per page in the records of `hl_enc_size` (groups × width ≤ 64 for pages
/// of at most 64 KiB).
pub const REC: usize = 64;
/// Bytes of one job of `hl_enc_write`: `u64 chunk_off | u32 index | u32 0 | entry (32)`.
pub const JOB_BYTES: usize = 48;
/// Words per block in the statistics of `hl_enc_size` (its presence mask, 8 words, and its
/// zero count), read back by `hl_enc_write`.
pub const STAT: usize = 9;
/// Threads per block of both encoder kernels (other block shapes are refused).
const BLOCK: [u32; 3] = [256, 1, 1];
/// Status flag of `hl_enc_write`: a job is inconsistent or out of range.
pub const FLAG_JOB: u32 = 1;
/// Status flag of `hl_enc_write`: the sizes of a page disagree with its records or job, or
/// its statistics with its records or data.
pub const FLAG_SIZE: u32 = 2;

/// CUDA C source of the two encoder kernels (`src/encode.cu`; see the module docs).
pub const CUDA_SOURCE: &str = include_str!("encode.cu");

/// The two encoder kernels, each with its CUDA, SPIR-V (Vulkan) and host variants.
#[derive(Debug)]
pub struct Encoders {
    /// Size pass (`hl_enc_size`).
    pub size: Kernel,
    /// Write pass (`hl_enc_write`).
    pub write: Kernel,
}

/// The encoders, built once per process.
pub fn encoders() -> &'static Encoders {
    static E: std::sync::OnceLock<Encoders> = std::sync::OnceLock::new();
    E.get_or_init(|| Encoders {
        size: Kernel::new("hl_enc_size")
            .with_cuda_source(CUDA_SOURCE, "hl_enc_size")
            .with_spirv(crate::kernels::enc_size_spirv(), "hl_enc_size")
            .with_host(host::host_enc_size),
        write: Kernel::new("hl_enc_write")
            .with_cuda_source(CUDA_SOURCE, "hl_enc_write")
            .with_spirv(crate::kernels::enc_write_spirv(), "hl_enc_write")
            .with_host(host::host_enc_write),
    })
}

/// Bytes of the statistics buffer of `npages` pages of `page_size` bytes of `width`-byte
/// elements: [`STAT`] words per block of a full page (groups × width), page after page.
pub fn stats_bytes(npages: usize, page_size: usize, width: ElemWidth) -> u64 {
    (npages * host::slots_of(page_size, width.bytes()) * STAT * 4) as u64
}

/// Launch geometry of both encoder kernels for `npages` pages of `page_size` bytes of
/// `width`-byte elements (one block per group of a full page; the kernels stride over more).
pub fn encode_grid(npages: u32, page_size: usize, width: ElemWidth) -> LaunchConfig {
    let gy = (page_size / width.bytes() / GROUP).max(1) as u32;
    LaunchConfig {
        grid: [npages.max(1), gy, 1],
        block: BLOCK,
        shared_mem_bytes: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cuda_constants_are_the_rust_ones() {
        for (name, v) in [
            ("HE_REC", REC as u32),
            ("HE_STAT", STAT as u32),
            ("HE_JOB", JOB_BYTES as u32),
            ("HE_F_JOB", FLAG_JOB),
            ("HE_F_SIZE", FLAG_SIZE),
            ("HE_NT", BLOCK[0]),
        ] {
            let line = format!("#define {name} {v}u\n");
            assert!(
                CUDA_SOURCE.contains(&line),
                "encode.cu lacks `{}`",
                line.trim()
            );
        }
    }
}
