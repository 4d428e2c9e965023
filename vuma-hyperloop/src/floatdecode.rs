//! The float codec's device decoder `hl_float`: CUDA C (`src/floatcodec.cu`, embedded as
//! [`CUDA_SOURCE`]), SPIR-V for Vulkan (`shaders/common.wgsl` + `shaders/hl_float.wgsl`,
//! compiled by naga in `build.rs`: [`float_spirv`]) and a host-function variant with
//! identical semantics (the reference, and what runs on [`vuma_core::HostDevice`]), over the
//! chunk format of [`crate::kernels`] (page table of 32-byte entries, then the pages' data).
//!
//! Float pages carry the page kind [`KIND_FLOAT`] (5, [`PageKind::Float`]). Compressed
//! residency ([`crate::residency`]) plans them ([`DeviceCodec::Float`](crate::DeviceCodec)
//! on devices whose backend this kernel has a variant for: CUDA, Vulkan and the host
//! device), marks chunks holding them (`ChunkImage::has_float`) and launches this kernel next
//! to the other decoders, with bit 5 set in every launch's `kinds`; the other decoders leave
//! kind-5 pages to it. A chunk of float pages alone can also be built by [`float_chunk`] and
//! decoded by launching [`float_decoder`] by itself (the kernel tests do).
//!
//! Launch: `(chunk, chunk_len: u64, dst, dst_len: u64, status, npages: u32, kinds: u32)`
//! like every Hyperloop decoder (Vulkan: buffers and push constants as in
//! `shaders/common.wgsl`, the destination bound in whole words), grid [`float_grid`] (one
//! block of four warps per page, one warp per group of the page: a page of 1,024 elements or
//! more is decoded by four warps sharing its decode table; on Vulkan one workgroup of 128
//! invocations per page, 32 per group). A page of kind 5 is decoded when bit 5 of `kinds` is
//! set; `Direct` pages are skipped; pages of kinds 0–3 whose bit is set are left to their
//! kernels; any other kind (or kind 5 without its bit) is flagged [`FLAG_KIND`]. A bad
//! entry (out of range, width not 1, 2 or 4) is flagged
//! [`FLAG_TABLE`], a corrupt page [`FLAG_FLOAT`]; the status
//! words are `[flags, lowest flagged page]` as for the other decoders. Host and device flag
//! exactly the same pages.
//!
//! The CUDA variant follows the host decoder's checks line by line; its tests are
//! `tests/cuda_float.rs` (the kernel alone) and `tests/cuda.rs` (float pages through the
//! full [`Uploader`](crate::Uploader)). On an H200 it decoded bit-exactly and flagged
//! exactly what the host flags (compute-sanitizer memcheck, racecheck and synccheck clean).
//!
//! The Vulkan variant makes the same checks in the same places (see the shader's header):
//! the groups of a page share one decode table in workgroup memory (two 16-bit entries a
//! word, 8 KiB), built from code-length counts taken with workgroup atomics; with zero
//! elision a group's sm ranks come from a ballot per step through workgroup atomics (no
//! subgroup operations); every write goes through the masked word stores of
//! `common.wgsl`, so no byte outside a page's destination changes. Its tests are
//! `tests/vulkan_float.rs` (the kernel alone on 1-, 2- and 4-group pages with odd lengths,
//! corrupt chunks, and float pages through the full `Uploader`); on lavapipe it decodes
//! bit-exactly and flags exactly what the host flags, with no validation errors. It is
//! compiled without naga's zero-initialisation of workgroup memory (`build.rs`; the shader
//! writes every workgroup word before reading it): that polyfill stores every word of the
//! workgroup variables from one invocation, which llvmpipe compiles word by word. Cold
//! compiles on lavapipe (`MESA_SHADER_CACHE_DISABLE=true`, 2 cores): this shader 40 s with
//! the polyfill, 0.5 s without; the earlier WGSL version (commit a281399, 16 KiB table,
//! reverted for its 117 s compile, over `vuma-vulkan`'s 120 s wait) also 0.5 s without it.

use std::sync::{Arc, OnceLock};

use vuma_core::{Backend, Error, HostLaunch, Kernel, LaunchConfig, Result};

use crate::kernels::{self, Entry, PageKind, ENTRY_BYTES, FLAG_KIND, FLAG_TABLE};
use crate::page::ElemWidth;

/// CUDA C source of `hl_float` (`src/floatcodec.cu`).
pub const CUDA_SOURCE: &str = include_str!("floatcodec.cu");

/// Page kind of a float-codec page in a chunk's page table ([`PageKind::Float`]).
pub const KIND_FLOAT: u8 = PageKind::Float as u8;

/// Status flag: a float-codec page is corrupt.
pub const FLAG_FLOAT: u32 = 16;

/// Warps per thread block of `hl_float`: one block per page, one warp per group of the
/// page ([`MAX_GROUPS`](crate::floatcodec::MAX_GROUPS) at most), sharing the page's decode
/// table.
pub const WARPS_PER_BLOCK: u32 = crate::floatcodec::MAX_GROUPS as u32;

/// The `kinds` mask bit of float pages.
pub const fn float_kind_bit() -> u32 {
    1 << KIND_FLOAT
}

fn host_float(l: &mut HostLaunch<'_>) -> Result<()> {
    let a = kernels::host_args(l)?;
    if !kernels::table_ok(&a) {
        if a.npages > 0 {
            kernels::flag(a.status, FLAG_TABLE, 0);
        }
        return Ok(());
    }
    for p in 0..a.npages {
        let e = Entry::read(a.chunk, p);
        if e.kind == PageKind::Direct as u8 {
            continue;
        }
        if e.kind != KIND_FLOAT {
            if !PageKind::is_decoded(e.kind) || (a.kinds >> e.kind) & 1 == 0 {
                kernels::flag(a.status, FLAG_KIND, p);
            }
            continue;
        }
        if (a.kinds >> KIND_FLOAT) & 1 == 0 {
            kernels::flag(a.status, FLAG_KIND, p);
            continue;
        }
        let Ok(width) = ElemWidth::from_bytes(usize::from(e.width)) else {
            kernels::flag(a.status, FLAG_TABLE, p);
            continue;
        };
        if !e.in_bounds(a.chunk.len() as u64, a.dst.len() as u64) {
            kernels::flag(a.status, FLAG_TABLE, p);
            continue;
        }
        let (s, d) = kernels::page_io(a.chunk, a.dst, &e);
        if crate::floatcodec::decode_page(s, width, d).is_err() {
            kernels::flag(a.status, FLAG_FLOAT, p);
        }
    }
    Ok(())
}

/// SPIR-V of `hl_float` (`shaders/common.wgsl` + `shaders/hl_float.wgsl`, compiled by naga
/// in `build.rs`).
pub fn float_spirv() -> Arc<[u32]> {
    include_bytes!(concat!(env!("OUT_DIR"), "/hl_float.spv"))
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// The `hl_float` kernel (CUDA, SPIR-V and host variants), built once per process.
pub fn float_decoder() -> &'static Kernel {
    static K: OnceLock<Kernel> = OnceLock::new();
    K.get_or_init(|| {
        Kernel::new("hl_float")
            .with_cuda_source(CUDA_SOURCE, "hl_float")
            .with_spirv(float_spirv(), "hl_float")
            .with_host(host_float)
    })
}

/// Whether `hl_float` can run on `backend` (it has a variant for it: CUDA, Vulkan and the host
/// device do).
pub fn decodes_on(backend: Backend) -> bool {
    float_decoder().supports(backend)
}

/// The output rate to assume for `hl_float` on `backend` before one is measured, where it
/// differs from [`CostModel`](crate::CostModel)'s default (the CUDA variant's: 193–261 GB/s
/// on an H200). The SPIR-V variant decoded real bf16 weights at 20 GB/s, fp32 at 31 and ReLU
/// activations at 40 on the same H200 (a workgroup barrier per step for its ballots,
/// masked atomic stores for 16-bit elements): below a Gen5 link, so the planner leaves the
/// float codec out there until a faster variant or a measurement says otherwise.
pub fn prior_decode_rate(backend: Backend) -> Option<f64> {
    match backend {
        Backend::Vulkan => Some(20e9),
        _ => None,
    }
}

/// Refuses an upload of chunks holding float pages (`any_float`) to a device whose backend
/// has no `hl_float` variant (every backend has one now; the check asks the kernel, not the
/// backend's name), before anything is copied or launched.
pub(crate) fn check_backend(backend: Backend, any_float: bool) -> Result<()> {
    if any_float && !decodes_on(backend) {
        return Err(Error::NoKernelVariant {
            kernel: float_decoder().name().to_string(),
            backend,
        });
    }
    Ok(())
}

/// Launch geometry of `hl_float` for `npages` pages: one block of
/// [`WARPS_PER_BLOCK`] warps per page (the Vulkan variant's workgroup is 128 invocations, set
/// in the shader; Vulkan uses only `grid`).
pub fn float_grid(npages: u32) -> LaunchConfig {
    LaunchConfig {
        grid: [npages.max(1), 1, 1],
        block: [32 * WARPS_PER_BLOCK, 1, 1],
        shared_mem_bytes: 0,
    }
}

/// A chunk image of float pages: the page table (kind [`KIND_FLOAT`], width `width`), then
/// each encoded page at a 16-byte boundary. `pages[p]` is page `p`'s encoding and the
/// length it decodes to; page `p` lands at the sum of the earlier pages' lengths.
pub fn float_chunk(pages: &[(Vec<u8>, usize)], width: ElemWidth) -> Vec<u8> {
    let mut out = vec![0u8; pages.len() * ENTRY_BYTES];
    let mut dst_off = 0u64;
    for (p, (enc, dst_len)) in pages.iter().enumerate() {
        out.resize(out.len().next_multiple_of(16), 0);
        let e = Entry {
            src_off: out.len() as u64,
            src_len: enc.len() as u32,
            dst_len: *dst_len as u32,
            dst_off,
            kind: KIND_FLOAT,
            width: width.bytes() as u8,
        };
        out[p * ENTRY_BYTES..(p + 1) * ENTRY_BYTES].copy_from_slice(&e.to_bytes());
        out.extend_from_slice(enc);
        dst_off += *dst_len as u64;
    }
    out.resize(out.len().next_multiple_of(16), 0);
    out
}
