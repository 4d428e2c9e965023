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
//!    mode by the cost formulas of [`bitplane::encode_block`] and stores the block size (a
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
//!    ([`Placement::Staging`]) per chunk, so that the copy of chunk c overlaps the write
//!    pass of chunk c+1 ([`DynDevice::copy_concurrent`]); or straight into mapped pinned
//!    memory ([`Placement::HostMapped`]), so that encoding and the transfer overlap.
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

use std::time::Instant;

use vuma_core::{
    AccessMode, Arg, Backend, DynBuffer, DynDevice, Error, HostLaunch, Kernel, LaunchConfig,
    Placement, Result, Scalar,
};

use crate::bitplane::{self, GROUP, HEADER, MAGIC};
use crate::chunk::{self, ChunkImage, ChunkLayout, CompressOptions};
use crate::kernels::{Entry, PageKind, ENTRY_BYTES};
use crate::page::{self, ElemWidth, MAX_DEVICE_PAGE_SIZE};
use crate::planner::{DeviceCodec, PageDecision, PlanSummary};
use crate::residency::PinnedCompressed;

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

/// CUDA C source of the two encoder kernels (see the module docs).
pub const CUDA_SOURCE: &str = r#"
typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;

#define HE_REC 64u
#define HE_STAT 9u
#define HE_JOB 48u
#define HE_F_JOB 1u
#define HE_F_SIZE 2u
#define HE_OSTAGE 4128u
#define HE_NT 256u
#define HE_ALL 0xffffffffu

struct HePlan { u32 mode; u32 sub; u32 k; u32 d; u32 size; u32 value; u32 nz; };

__device__ __forceinline__ void he_flag(u32* status, u32 f, u32 page) {
    atomicOr(&status[0], f);
    atomicMin(&status[1], page);
}

__device__ __forceinline__ u32 he_rd32(const u8* p) {
    return (u32)p[0] | ((u32)p[1] << 8) | ((u32)p[2] << 16) | ((u32)p[3] << 24);
}

__device__ __forceinline__ u64 he_rd64(const u8* p) {
    return (u64)he_rd32(p) | ((u64)he_rd32(p + 4) << 32);
}

__device__ __forceinline__ void he_wr32(u8* p, u32 v) {
    p[0] = (u8)v; p[1] = (u8)(v >> 8); p[2] = (u8)(v >> 16); p[3] = (u8)(v >> 24);
}

__device__ __forceinline__ bool he_geom_ok(u32 ps, u32 w) {
    return (w == 1u || w == 2u || w == 4u) && ps >= 1024u && ps <= 65536u && (ps & 1023u) == 0u;
}

// The kernels need exactly HE_NT threads in one dimension (thread t owns bytes 16t..16t+16
// of its group and plane words t).
__device__ __forceinline__ bool he_block_ok() {
    return blockDim.x == HE_NT && blockDim.y == 1u && blockDim.z == 1u;
}

// Statistics slots (groups of a full page × width) per page, HE_STAT words each.
__device__ __forceinline__ u32 he_slots(u32 ps, u32 w) { return ((ps / w + 1023u) >> 10) * w; }

__device__ __forceinline__ u32 he_bits(u32 d) { return d <= 1u ? 0u : 32u - __clz(d - 1u); }

// Sum over the warp (all 32 lanes active).
__device__ __forceinline__ u32 he_wsum(u32 x) {
#if __CUDA_ARCH__ >= 800
    return __reduce_add_sync(HE_ALL, x);
#else
#pragma unroll
    for (u32 o = 16u; o > 0u; o >>= 1) x += __shfl_xor_sync(HE_ALL, x, o);
    return x;
#endif
}

// The cheapest mode of a block of m bytes with `distinct` values present, the lowest of
// them `low0` and the lowest non-zero one `low1` (0 when none), and `zeros` zero bytes: the
// cost formulas of the host encoder, ties broken the same way (pack, sparse, raw).
__device__ __forceinline__ HePlan he_plan(u32 distinct, u32 low0, u32 low1, u32 zeros, u32 m) {
    HePlan b;
    b.mode = 1u; b.sub = 0u; b.k = 0u; b.d = 0u; b.value = 0u; b.nz = m - zeros;
    if (distinct <= 1u) { b.mode = 0u; b.size = 2u; b.value = low0; return b; }
    u32 raw = 1u + m;
    u32 kp = he_bits(distinct);
    bool pk = kp >= 1u && kp <= 7u;
    u32 pack = pk ? 3u + distinct + ((m * kp + 7u) >> 3) : 0u;
    u32 nz = m - zeros;
    u32 nzd = distinct - (zeros > 0u ? 1u : 0u);
    bool sp = zeros > 0u && nz > 0u;
    u32 sub = 1u, ks = 0u, subsz = 0u;
    if (sp) {
        if (nzd == 1u) { sub = 0u; subsz = 2u; }
        else {
            ks = he_bits(nzd);
            u32 r = 1u + nz;
            if (ks >= 1u && ks <= 7u && 3u + nzd + ((nz * ks + 7u) >> 3) < r) {
                sub = 2u; subsz = 3u + nzd + ((nz * ks + 7u) >> 3);
            } else { sub = 1u; subsz = r; }
        }
    }
    u32 sparse = sp ? 3u + ((m + 7u) >> 3) + subsz : 0u;
    u32 best = raw;
    if (pk && pack < best) best = pack;
    if (sp && sparse < best) best = sparse;
    if (pk && pack == best) { b.mode = 2u; b.k = kp; b.d = distinct; b.size = pack; }
    else if (sp && sparse == best) {
        b.mode = 3u; b.sub = sub; b.k = ks; b.d = nzd; b.size = sparse; b.value = low1;
    } else { b.mode = 1u; b.size = raw; }
    return b;
}

// Bytes 16c..16c+16 of a group of nb bytes at gp, zero past nb.
__device__ __forceinline__ uint4 he_chunk(const u8* gp, u32 nb, u32 c) {
    u32 o = c * 16u;
    if ((((u64)gp) & 15ull) == 0ull && o + 16u <= nb) return *(const uint4*)(gp + o);
    u32 x[4] = {0u, 0u, 0u, 0u};
#pragma unroll
    for (u32 j = 0; j < 16u; ++j) if (o + j < nb) x[j >> 2] |= (u32)gp[o + j] << (8u * (j & 3u));
    return make_uint4(x[0], x[1], x[2], x[3]);
}

// Size pass, one group of m elements of W bytes at gp: the presence mask and zero count of
// each plane (stored in the page's statistics sst at slots j0..j0+W) and the block sizes
// (records rp[j0..j0+W], added up per page in sum).
template <u32 W>
__device__ __forceinline__ void he_size_group(const u8* gp, u32 m, u32 page, u32 j0, u32* rp, u32* sst,
                                              u32* sum, u8* pres, u32* szw) {
    u32 t = threadIdx.x, lane = t & 31u, wp = t >> 5;
    u32 nb = m * W;
    bool mine = t * 16u < nb;
    uint4 v = make_uint4(0u, 0u, 0u, 0u);
    if (mine) v = he_chunk(gp, nb, t);
    for (u32 i = t; i < W * 64u; i += HE_NT) ((u32*)pres)[i] = 0u;
    __syncthreads();
    // pres[p*256 + v] = 1: value v occurs in plane p (byte j of a chunk is in plane j % W).
    u32 zc[W];
#pragma unroll
    for (u32 p = 0; p < W; ++p) zc[p] = 0u;
    if (mine) {
        u32 nv = min(nb - t * 16u, 16u);
        u32 x[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
        for (u32 j = 0; j < 16u; ++j) {
            if (j < nv) {
                u32 b = (x[j >> 2] >> (8u * (j & 3u))) & 255u;
                pres[(j % W) * 256u + b] = 1u;
                zc[j % W] += b == 0u ? 1u : 0u;
            }
        }
    }
#pragma unroll
    for (u32 p = 0; p < W; ++p) {
        u32 z = he_wsum(zc[p]);
        if (lane == 0u) szw[wp * 4u + p] = z;
    }
    __syncthreads();
    // Warp p: plane p's mask (8 ballots), zero count, plan; lanes 0..8 store the statistics.
    if (wp < W) {
        u32 p = wp;
        u32 st = 0u, distinct = 0u, low0 = 256u, low1 = 256u;
#pragma unroll
        for (u32 q = 0; q < 8u; ++q) {
            u32 mq = __ballot_sync(HE_ALL, pres[p * 256u + q * 32u + lane] != 0u);
            if (lane == q) st = mq;
            distinct += __popc(mq);
            if (low0 == 256u && mq != 0u) low0 = q * 32u + (u32)(__ffs(mq) - 1);
            u32 m1 = q == 0u ? mq & ~1u : mq;
            if (low1 == 256u && m1 != 0u) low1 = q * 32u + (u32)(__ffs(m1) - 1);
        }
        u32 z = he_wsum(lane < HE_NT / 32u ? szw[lane * 4u + p] : 0u);
        if (lane == 8u) st = z;
        HePlan b = he_plan(distinct, low0 & 255u, low1 & 255u, z, m);
        u32 j = j0 + p;
        if (lane < HE_STAT) sst[j * HE_STAT + lane] = st;
        if (lane == 0u) {
            rp[j] = b.size;
            atomicAdd(&sum[2u * page], b.size);
            if (z != m) atomicOr(&sum[2u * page + 1u], 1u);
        }
    }
}

extern "C" __global__ void __launch_bounds__(256) hl_enc_size(const u8* src, u64 src_len, u32* rec, u32* stats,
                                                              u32* sum, u32 npages, u32 ps, u32 w) {
    __shared__ __align__(16) u8 pres[1024];
    __shared__ u32 szw[32];
    u32 page = blockIdx.x;
    if (page >= npages || !he_geom_ok(ps, w) || !he_block_ok()) return;
    u64 start = (u64)page * ps;
    if (start >= src_len) return;
    u64 left = src_len - start;
    u32 plen = left < (u64)ps ? (u32)left : ps;
    const u8* s = src + start;
    u32 n = plen / w, groups = (n + 1023u) / 1024u, tail = plen % w;
    if (blockIdx.y == 0u && threadIdx.x < tail && s[n * w + threadIdx.x] != 0u) atomicOr(&sum[2u * page + 1u], 1u);
    u32* rp = rec + (u64)page * HE_REC;
    u32* sst = stats + (u64)page * he_slots(ps, w) * HE_STAT;
    for (u32 g = blockIdx.y; g < groups; g += gridDim.y) {
        u32 e0 = g * 1024u;
        u32 m = min(n - e0, 1024u);
        const u8* gp = s + (u64)e0 * w;
        if (w == 4u) he_size_group<4>(gp, m, page, g * 4u, rp, sst, sum, pres, szw);
        else if (w == 2u) he_size_group<2>(gp, m, page, g * 2u, rp, sst, sum, pres, szw);
        else he_size_group<1>(gp, m, page, g, rp, sst, sum, pres, szw);
        if (g + gridDim.y < groups) __syncthreads();
    }
}

// Shared memory of the write pass.
struct HeWs {
    __align__(16) u8 pl[4096];       // the group's planes, pl[p*1024 + i]
    __align__(16) u8 ost[HE_OSTAGE]; // the group's blocks, from ost + (destination & 15)
    __align__(16) u8 nzv[4096];      // per plane, its non-zero bytes in order (sparse, sub 2)
    __align__(16) u8 sidx[1024];     // per plane, each value's dictionary index
    __align__(16) u32 smk[32];       // per plane, the presence mask
    __align__(16) u32 spre[32];      // per plane, the dictionary entries below each mask word
    __align__(16) u32 swt[32];       // per plane and warp, the warp's non-zero bytes
    __align__(16) uint2 spl[4];      // per plane, its packed plan (size 0: bad statistics)
    u32 sga[2];                      // the group's offset in the page and its length
};

// Writes dictionary entry rank(v) = v for the value v = threadIdx.x when present (mask mk,
// entries below each word pre; bit 0 dropped when skip) and sidx[v] = rank(v).
__device__ __forceinline__ void he_dict(const u32* mk, const u32* pre, bool skip, u8* sidx, u8* dst) {
    u32 v = threadIdx.x, q = v >> 5;
    u32 dw = mk[q];
    if (skip && q == 0u) dw &= ~1u;
    u32 rk = pre[q] + __popc(dw & ((1u << (v & 31u)) - 1u));
    sidx[v] = (u8)rk;
    if ((dw >> (v & 31u)) & 1u) dst[rk] = (u8)v;
}

// Packs `count` k-bit indices sidx[vals[i]] LSB first into dst: thread c (threadIdx.x
// rotated by rot) packs values 8c..8c+8 into bytes kc..kc+k. vals: 4-byte aligned, 1024 bytes.
__device__ __forceinline__ void he_pack(const u8* vals, u32 count, const u8* sidx, u32 k, u8* dst, u32 rot) {
    u32 c = (threadIdx.x + rot) & (HE_NT - 1u);
    if (c * 8u >= count) return;
    const u32* v4 = (const u32*)vals;
    u32 lo = v4[2u * c], hi = v4[2u * c + 1u];
    u64 acc = 0;
#pragma unroll
    for (u32 j = 0; j < 8u; ++j) {
        u32 x = ((j < 4u ? lo : hi) >> (8u * (j & 3u))) & 255u;
        if (c * 8u + j < count) acc |= (u64)sidx[x] << (j * k);
    }
    u32 nb = (count * k + 7u) >> 3, ob = c * k;
    for (u32 b = 0; b < k; ++b) if (ob + b < nb) dst[ob + b] = (u8)(acc >> (8u * b));
}

__device__ __forceinline__ uint2 he_plan_pack(HePlan b, bool ok) {
    return make_uint2(b.mode | (b.sub << 2) | (b.k << 4) | (b.value << 8) | (b.d << 16),
                      (ok ? b.size : 0u) | (b.nz << 16));
}

// Write pass, group g (m elements of W bytes at gp) of a bitplane page whose bytes start at
// po: plans each plane from the size pass's statistics (slots g*W.. of sst), checks them
// against the records r and the data, builds the group's blocks in shared memory and
// stores them at their offset in the page.
__device__ __forceinline__ void he_write_group(u32 W, const u8* gp, u32 m, u32 g, const u32* r, const u32* sst,
                                               u8* po, u32 hdr_end, u32* status, u32 page, HeWs& ws) {
    u32 t = threadIdx.x, lane = t & 31u, wp = t >> 5;
    u32 nb = m * W;
    // Warp p < W plans plane p; the plan is marked bad (size 0) unless zeros <= m and its
    // size is the record's.
    if (wp < W) {
        u32 p = wp, j = g * W + p;
        // Lane q < 8: mask word q; lane 8: the zero count.
        u32 st = lane < HE_STAT ? sst[j * HE_STAT + lane] : 0u;
        u32 z = __shfl_sync(HE_ALL, st, 8u);
        u32 mw = lane < 8u ? st : 0u;
        u32 m1 = lane == 0u ? mw & ~1u : mw;
        u32 distinct = he_wsum(__popc(mw));
        u32 f0 = __ballot_sync(HE_ALL, mw != 0u), f1 = __ballot_sync(HE_ALL, m1 != 0u);
        u32 q0 = f0 != 0u ? (u32)(__ffs(f0) - 1) : 0u, q1 = f1 != 0u ? (u32)(__ffs(f1) - 1) : 0u;
        u32 w0 = __shfl_sync(HE_ALL, mw, q0), w1 = __shfl_sync(HE_ALL, m1, q1);
        u32 low0 = w0 != 0u ? q0 * 32u + (u32)(__ffs(w0) - 1) : 0u;
        u32 low1 = w1 != 0u ? q1 * 32u + (u32)(__ffs(w1) - 1) : 0u;
        bool ok = z <= m;
        HePlan b = he_plan(distinct, low0, low1, ok ? z : m, m);
        ok = ok && b.size == r[j];
        // Dictionary entries below each word (bit 0 not an entry of a sparse block).
        u32 c = __popc(b.mode == 3u ? m1 : mw), inc = c;
#pragma unroll
        for (u32 sh = 1u; sh < 8u; sh <<= 1) {
            u32 y = __shfl_up_sync(HE_ALL, inc, sh);
            if (lane >= sh) inc += y;
        }
        if (lane < 8u) { ws.smk[p * 8u + lane] = st; ws.spre[p * 8u + lane] = inc - c; }
        if (lane == 0u) ws.spl[p] = he_plan_pack(b, ok);
    }
    // The last warp: where the group's blocks go in the page, and their length.
    if (wp == HE_NT / 32u - 1u) {
        u32 a = 0;
        for (u32 q = lane; q < g * W; q += 32u) a += r[q];
        u32 l = lane < W ? r[g * W + lane] : 0u;
        a = he_wsum(a);
        l = he_wsum(l);
        if (lane == 0u) { ws.sga[0] = hdr_end + a; ws.sga[1] = l; }
    }
    uint4 v = make_uint4(0u, 0u, 0u, 0u);
    if (t * 16u < nb) v = he_chunk(gp, nb, t);
    // Stage: thread t's 16 bytes as plane words (4 consecutive elements of one plane each).
    if (t * 16u < nb) {
        u32* pl = (u32*)ws.pl;
        if (W == 4u) {
            u32 lo01 = __byte_perm(v.x, v.y, 0x5140u), hi01 = __byte_perm(v.x, v.y, 0x7362u);
            u32 lo23 = __byte_perm(v.z, v.w, 0x5140u), hi23 = __byte_perm(v.z, v.w, 0x7362u);
            pl[t] = __byte_perm(lo01, lo23, 0x5410u);
            pl[256u + t] = __byte_perm(lo01, lo23, 0x7632u);
            pl[512u + t] = __byte_perm(hi01, hi23, 0x5410u);
            pl[768u + t] = __byte_perm(hi01, hi23, 0x7632u);
        } else if (W == 2u) {
            ((uint2*)pl)[t] = make_uint2(__byte_perm(v.x, v.y, 0x6420u), __byte_perm(v.z, v.w, 0x6420u));
            ((uint2*)(pl + 256u))[t] = make_uint2(__byte_perm(v.x, v.y, 0x7531u), __byte_perm(v.z, v.w, 0x7531u));
        } else {
            ((uint4*)pl)[t] = v;
        }
    }
    __syncthreads();
    bool good = true;
    for (u32 p = 0; p < W; ++p) good = good && (ws.spl[p].y & 0xffffu) != 0u;
    if (!good) { if (t == 0u) he_flag(status, HE_F_SIZE, page); return; }
    u32 ga = ws.sga[0], glen = ws.sga[1];
    u32 mis = (u32)(((u64)(po + ga)) & 15ull);
    u32 bm = (m + 7u) >> 3;
    // Thread t: elements 4t..4t+4 of each plane (nvb of them in the group).
    u32 e = 4u * t;
    u32 nvb = m > e ? min(m - e, 4u) : 0u;
    u32 keep = nvb >= 4u ? HE_ALL : (1u << (8u * nvb)) - 1u;
    u32 lt = (1u << lane) - 1u;
    // Per plane p, byte p: the non-zero bytes of the lanes below in this warp (at most 124).
    u32 prs = 0;
    u32 bad = 0, any2 = 0;
    // Phase 1: non-zero counts, headers, raw bytes, bitmaps, dictionaries.
    u32 off = mis;
#pragma unroll 1
    for (u32 p = 0; p < W; ++p) {
        uint2 pk = ws.spl[p];
        u32 mode = pk.x & 3u, sub = (pk.x >> 2) & 3u, k = (pk.x >> 4) & 15u;
        u32 value = (pk.x >> 8) & 255u, d = pk.x >> 16;
        u32 size = pk.y & 0xffffu, nz = pk.y >> 16;
        u8* o = ws.ost + off;
        u32 x = ((const u32*)ws.pl)[p * 256u + t] & keep;
        u32 f0 = (x & 0xffu) != 0u, f1 = (x & 0xff00u) != 0u, f2 = (x & 0xff0000u) != 0u, f3 = (x >> 24) != 0u;
        u32 nib = f0 | (f1 << 1) | (f2 << 2) | (f3 << 3);
        u32 b0 = __ballot_sync(HE_ALL, f0), b1 = __ballot_sync(HE_ALL, f1);
        u32 b2 = __ballot_sync(HE_ALL, f2), b3 = __ballot_sync(HE_ALL, f3);
        prs |= (__popc(b0 & lt) + __popc(b1 & lt) + __popc(b2 & lt) + __popc(b3 & lt)) << (8u * p);
        if (lane == 0u) ws.swt[p * 8u + wp] = __popc(b0) + __popc(b1) + __popc(b2) + __popc(b3);
        // Every byte of the plane must be in its mask.
#pragma unroll
        for (u32 q = 0; q < 4u; ++q) {
            u32 c = (x >> (8u * q)) & 255u;
            if (q < nvb) bad |= ((ws.smk[p * 8u + (c >> 5)] >> (c & 31u)) & 1u) ^ 1u;
        }
        if (mode == 0u) {
            if (t == 0u) { o[0] = 0u; o[1] = (u8)value; }
        } else if (mode == 1u) {
            if (t == 0u) o[0] = 1u;
#pragma unroll
            for (u32 q = 0; q < 4u; ++q) if (q < nvb) o[1u + e + q] = (u8)(x >> (8u * q));
        } else if (mode == 2u) {
            if (t == 0u) { o[0] = 2u; o[1] = (u8)k; o[2] = (u8)(d - 1u); }
            he_dict(ws.smk + p * 8u, ws.spre + p * 8u, false, ws.sidx + p * 256u, o + 3u);
        } else {
            if (t == 0u) { o[0] = 3u; o[1u + bm] = (u8)(nz & 255u); o[2u + bm] = (u8)(nz >> 8); o[3u + bm] = (u8)sub; }
            u32 hi = __shfl_down_sync(HE_ALL, nib, 1u);
            if ((t & 1u) == 0u && (t >> 1) < bm) o[1u + (t >> 1)] = (u8)(nib | (hi << 4));
            u8* rr = o + 4u + bm;
            if (sub == 0u) { if (t == 0u) rr[0] = (u8)value; }
            else if (sub == 2u) {
                if (t == 0u) { rr[0] = (u8)k; rr[1] = (u8)(d - 1u); }
                he_dict(ws.smk + p * 8u, ws.spre + p * 8u, true, ws.sidx + p * 256u, rr + 2u);
                any2 = 1u;
            }
        }
        off += size;
    }
    __syncthreads();
    // Phase 2: the zero count against the data, packed planes, ranked non-zero bytes.
    off = mis;
#pragma unroll 1
    for (u32 p = 0; p < W; ++p) {
        uint2 pk = ws.spl[p];
        u32 mode = pk.x & 3u, sub = (pk.x >> 2) & 3u, k = (pk.x >> 4) & 15u, d = pk.x >> 16;
        u32 size = pk.y & 0xffffu, nz = pk.y >> 16;
        u8* o = ws.ost + off;
        u32 tot = 0, below = 0;
#pragma unroll
        for (u32 q = 0; q < 8u; ++q) { u32 c = ws.swt[p * 8u + q]; tot += c; below += q < wp ? c : 0u; }
        bad |= tot != nz ? 1u : 0u;
        if (mode == 2u) {
            he_pack(ws.pl + p * 1024u, m, ws.sidx + p * 256u, k, o + 3u + d, p * 128u);
        } else if (mode == 3u && sub != 0u) {
            u8* rr = o + 4u + bm;
            u32 x = ((const u32*)ws.pl)[p * 256u + t] & keep;
            u32 rk = below + ((prs >> (8u * p)) & 255u);
#pragma unroll
            for (u32 q = 0; q < 4u; ++q) {
                u32 c = (x >> (8u * q)) & 255u;
                if (c != 0u) {
                    if (sub == 1u) { if (rk < nz) rr[rk] = (u8)c; }
                    else if (rk < 1024u) ws.nzv[p * 1024u + rk] = (u8)c;
                    ++rk;
                }
            }
        }
        off += size;
    }
    // Phase 3: packed non-zero bytes.
    if (any2 != 0u) {
        __syncthreads();
        off = mis;
#pragma unroll 1
        for (u32 p = 0; p < W; ++p) {
            uint2 pk = ws.spl[p];
            u32 mode = pk.x & 3u, sub = (pk.x >> 2) & 3u, k = (pk.x >> 4) & 15u, d = pk.x >> 16;
            u32 size = pk.y & 0xffffu, nz = pk.y >> 16;
            if (mode == 3u && sub == 2u)
                he_pack(ws.nzv + p * 1024u, nz, ws.sidx + p * 256u, k, ws.ost + off + 6u + bm + d, p * 128u);
            off += size;
        }
    }
    if (__syncthreads_or(bad) != 0) { if (t == 0u) he_flag(status, HE_F_SIZE, page); return; }
    u8* dp = po + ga;
    u32 first = (16u - mis) & 15u;
    if (first > glen) first = glen;
    u32 nvec = (glen - first) >> 4;
    for (u32 i = t; i < first; i += HE_NT) dp[i] = ws.ost[mis + i];
    uint4* vd = (uint4*)(dp + first);
    const uint4* vs = (const uint4*)(ws.ost + mis + first);
    for (u32 i = t; i < nvec; i += HE_NT) vd[i] = vs[i];
    for (u32 i = first + (nvec << 4) + t; i < glen; i += HE_NT) dp[i] = ws.ost[mis + i];
}

extern "C" __global__ void __launch_bounds__(256) hl_enc_write(const u8* src, u64 src_len, const u32* rec,
                                                               const u32* stats, const u8* jobs, u8* out,
                                                               u64 out_len, u32* status, u32 npages, u32 ps,
                                                               u32 w, u32 page0) {
    __shared__ __align__(16) HeWs ws;
    u32 page = page0 + blockIdx.x;
    if (page < page0 || page >= npages) return;
    bool lead = blockIdx.y == 0u && threadIdx.x == 0u;
    if (!he_block_ok()) { if (lead) he_flag(status, HE_F_JOB, page); return; }
    const u8* jb = jobs + (u64)page * HE_JOB;
    u64 coff = he_rd64(jb);
    u32 idx = he_rd32(jb + 8);
    const u8* en = jb + 16;
    u64 soff = he_rd64(en);
    u32 slen = he_rd32(en + 8);
    u32 dlen = he_rd32(en + 12);
    u64 doff = he_rd64(en + 16);
    u32 kind = en[24];
    u32 ew = en[25];
    u64 start = (u64)page * ps;
    bool ok = he_geom_ok(ps, w) && start < src_len && doff == start && ew == w
        && (u64)dlen == (src_len - start < (u64)ps ? src_len - start : (u64)ps)
        && coff <= out_len && (u64)idx * 32ull + 32ull <= out_len - coff
        && soff <= out_len - coff && (soff & 15ull) == 0ull
        && ((soff + slen + 15ull) & ~15ull) <= out_len - coff
        && (kind == 0u ? slen == 0u : (kind == 1u || kind == 4u) ? slen == dlen : kind == 2u);
    if (!ok) { if (lead) he_flag(status, HE_F_JOB, page); return; }
    u8* o = out + coff;
    const u8* s = src + start;
    u8* po = o + soff;
    u32 n = dlen / w, groups = (n + 1023u) / 1024u, tail = dlen % w;
    u32 entries = groups * w + 1u;
    u32 hdr_end = 8u + 4u * entries + tail;
    const u32* r = rec + (u64)page * HE_REC;
    if (kind == 2u) {
        u64 tot = 0;
        bool sane = true;
        for (u32 j = 0; j + 1u < entries; ++j) { u32 x = r[j]; if (x < 2u || x > 1025u) sane = false; tot += x; }
        if (!sane || (u64)hdr_end + tot != (u64)slen) { if (lead) he_flag(status, HE_F_SIZE, page); return; }
    }
    if (blockIdx.y == 0u) {
        if (threadIdx.x < 32u) o[(u64)idx * 32ull + threadIdx.x] = en[threadIdx.x];
        u64 pend = soff + slen;
        u32 pad = (u32)(((pend + 15ull) & ~15ull) - pend);
        if (threadIdx.x < pad) o[pend + threadIdx.x] = 0u;
    }
    if (kind == 0u) return;
    if (kind != 2u) {
        for (u32 a = blockIdx.y * 1024u; a < dlen; a += gridDim.y * 1024u) {
            u32 e = min(a + 1024u, dlen);
            u8* d = po + a;
            const u8* x = s + a;
            u32 cnt = e - a;
            if (((((u64)d) | ((u64)x)) & 15ull) == 0ull && (cnt & 15u) == 0u) {
                uint4* d16 = (uint4*)d;
                const uint4* x16 = (const uint4*)x;
                for (u32 i = threadIdx.x; i < (cnt >> 4); i += blockDim.x) d16[i] = x16[i];
            } else {
                for (u32 i = threadIdx.x; i < cnt; i += blockDim.x) d[i] = x[i];
            }
        }
        return;
    }
    if (blockIdx.y == 0u) {
        if (threadIdx.x == 0u) {
            po[0] = 0xB1u; po[1] = (u8)w; po[2] = (u8)(groups & 255u); po[3] = (u8)(groups >> 8);
            he_wr32(po + 4, dlen);
        }
        // Warp 0: offset table entry j = hdr_end + the sizes of blocks 0..j (lane l: 2l, 2l+1).
        if (threadIdx.x < 32u) {
            u32 l = threadIdx.x, q0 = 2u * l, nsz = entries - 1u;
            u32 s0 = q0 < nsz ? r[q0] : 0u, s1 = q0 + 1u < nsz ? r[q0 + 1u] : 0u;
            u32 inc = s0 + s1;
#pragma unroll
            for (u32 sh = 1u; sh < 32u; sh <<= 1) {
                u32 y = __shfl_up_sync(HE_ALL, inc, sh);
                if (l >= sh) inc += y;
            }
            u32 a = hdr_end + inc - s0 - s1;
            if (q0 < nsz) he_wr32(po + 8u + 4u * q0, a);
            if (q0 + 1u < nsz) he_wr32(po + 12u + 4u * q0, a + s0);
            if (l == 31u) he_wr32(po + 8u + 4u * nsz, hdr_end + inc);
        }
        if (threadIdx.x < tail) po[8u + 4u * entries + threadIdx.x] = s[n * w + threadIdx.x];
    }
    const u32* sst = stats + (u64)page * he_slots(ps, w) * HE_STAT;
    for (u32 g = blockIdx.y; g < groups; g += gridDim.y) {
        u32 e0 = g * 1024u;
        u32 m = min(n - e0, 1024u);
        he_write_group(w, s + (u64)e0 * w, m, g, r, sst, po, hdr_end, status, page, ws);
        if (g + gridDim.y < groups) __syncthreads();
    }
}
"#;

// ---- host mirror of the device block encoder --------------------------------------------

/// The mode of one block, as `he_plan` picks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Plan {
    mode: u8,
    sub: u8,
    k: u32,
    d: usize,
    size: usize,
    value: u8,
    nz: usize,
}

/// Presence mask (bit v: value v occurs) and zero count of a plane.
fn mask_of(x: &[u8]) -> ([u32; 8], usize) {
    let mut mk = [0u32; 8];
    let mut z = 0;
    for &v in x {
        mk[usize::from(v >> 5)] |= 1 << (v & 31);
        z += usize::from(v == 0);
    }
    (mk, z)
}

fn low(mk: &[u32; 8], skip_zero: bool) -> u8 {
    for (q, &w) in mk.iter().enumerate() {
        let x = if q == 0 && skip_zero { w & !1 } else { w };
        if x != 0 {
            return (q * 32 + x.trailing_zeros() as usize) as u8;
        }
    }
    0
}

fn rank(mk: &[u32; 8], v: usize, skip_zero: bool) -> usize {
    let word = |q: usize| {
        if q == 0 && skip_zero {
            mk[q] & !1
        } else {
            mk[q]
        }
    };
    let below: u32 = (0..v >> 5).map(|q| word(q).count_ones()).sum();
    (below + (word(v >> 5) & ((1u32 << (v & 31)) - 1)).count_ones()) as usize
}

fn bits(d: usize) -> u32 {
    page::bits_for(d)
}

/// `he_plan`: the mode of a block of `m` bytes (see the CUDA source).
fn plan(mk: &[u32; 8], zeros: usize, m: usize) -> Plan {
    let mut b = Plan {
        mode: 1,
        sub: 0,
        k: 0,
        d: 0,
        size: 0,
        value: 0,
        nz: m - zeros,
    };
    let distinct: usize = mk.iter().map(|w| w.count_ones() as usize).sum();
    if distinct <= 1 {
        b.mode = 0;
        b.size = 2;
        b.value = low(mk, false);
        return b;
    }
    let raw = 1 + m;
    let kp = bits(distinct);
    let pk = (1..=7).contains(&kp);
    let pack = if pk {
        3 + distinct + (m * kp as usize).div_ceil(8)
    } else {
        0
    };
    let nz = m - zeros;
    let nzd = distinct - usize::from(zeros > 0);
    let sp = zeros > 0 && nz > 0;
    let (mut sub, mut ks, mut subsz) = (1u8, 0u32, 0usize);
    if sp {
        if nzd == 1 {
            sub = 0;
            subsz = 2;
        } else {
            ks = bits(nzd);
            let r = 1 + nz;
            let p = 3 + nzd + (nz * ks as usize).div_ceil(8);
            if (1..=7).contains(&ks) && p < r {
                sub = 2;
                subsz = p;
            } else {
                sub = 1;
                subsz = r;
            }
        }
    }
    let sparse = if sp { 3 + m.div_ceil(8) + subsz } else { 0 };
    let mut best = raw;
    if pk && pack < best {
        best = pack;
    }
    if sp && sparse < best {
        best = sparse;
    }
    if pk && pack == best {
        b.mode = 2;
        b.k = kp;
        b.d = distinct;
        b.size = pack;
    } else if sp && sparse == best {
        b.mode = 3;
        b.sub = sub;
        b.k = ks;
        b.d = nzd;
        b.size = sparse;
        b.value = low(mk, true);
    } else {
        b.mode = 1;
        b.size = raw;
    }
    b
}

/// `he_pack`: values `8c..8c + 8` into bytes `k*c..k*c + k`, as device thread `c` does.
fn pack(vals: &[u8], sidx: &[u8; 256], k: u32, dst: &mut [u8]) {
    let ku = k as usize;
    let nb = (vals.len() * ku).div_ceil(8);
    for (c, v8) in vals.chunks(8).enumerate() {
        let acc = v8.iter().enumerate().fold(0u64, |a, (j, &v)| {
            a | u64::from(sidx[usize::from(v)]) << (j as u32 * k)
        });
        for b in 0..ku {
            if c * ku + b < nb {
                dst[c * ku + b] = (acc >> (8 * b)) as u8;
            }
        }
    }
}

/// `he_emit`: writes block `b` of plane `x` into `o[..b.size]`. The mask `mk` holds every
/// value of `x` and `x` has `m - b.nz` zero bytes (the write pass checks both).
fn emit(x: &[u8], mk: &[u32; 8], b: &Plan, o: &mut [u8]) {
    let m = x.len();
    let mut sidx = [0u8; 256];
    match b.mode {
        0 => {
            o[0] = 0;
            o[1] = b.value;
        }
        1 => {
            o[0] = 1;
            o[1..1 + m].copy_from_slice(x);
        }
        2 => {
            for (v, s) in sidx.iter_mut().enumerate() {
                *s = rank(mk, v, false) as u8;
            }
            o[0] = 2;
            o[1] = b.k as u8;
            o[2] = (b.d - 1) as u8;
            for v in 0..256 {
                if (mk[v >> 5] >> (v & 31)) & 1 != 0 {
                    o[3 + usize::from(sidx[v])] = v as u8;
                }
            }
            pack(x, &sidx, b.k, &mut o[3 + b.d..]);
        }
        _ => {
            let bm = m.div_ceil(8);
            o[0] = 3;
            o[1 + bm] = (b.nz & 255) as u8;
            o[2 + bm] = (b.nz >> 8) as u8;
            o[3 + bm] = b.sub;
            for (q, by) in o[1..1 + bm].iter_mut().enumerate() {
                *by = x[q * 8..(q * 8 + 8).min(m)]
                    .iter()
                    .enumerate()
                    .fold(0u8, |a, (j, &v)| a | (u8::from(v != 0) << j));
            }
            let r = &mut o[4 + bm..];
            if b.sub == 0 {
                r[0] = b.value;
                return;
            }
            // The non-zero bytes in order (the device ranks them by warp prefix sums).
            let mut nzv = [0u8; GROUP];
            for (c, &xi) in x.iter().filter(|&&xi| xi != 0).enumerate() {
                if c < b.nz.min(GROUP) {
                    nzv[c] = xi;
                }
            }
            if b.sub == 1 {
                r[..b.nz].copy_from_slice(&nzv[..b.nz]);
                return;
            }
            for (v, s) in sidx.iter_mut().enumerate() {
                *s = rank(mk, v, true) as u8;
            }
            r[0] = b.k as u8;
            r[1] = (b.d - 1) as u8;
            for v in 1..256 {
                if (mk[v >> 5] >> (v & 31)) & 1 != 0 {
                    r[2 + usize::from(sidx[v])] = v as u8;
                }
            }
            pack(&nzv[..b.nz], &sidx, b.k, &mut r[2 + b.d..]);
        }
    }
}

/// Encodes one block of at most 1024 bytes the way the device does (presence mask, mode by
/// [`bitplane::encode_block`]'s cost formulas, one output byte per thread); appends it to
/// `dst`. Byte-identical to [`bitplane::encode_block`] (the tests check it).
pub fn encode_block_as_device(data: &[u8], dst: &mut Vec<u8>) {
    let (mk, z) = mask_of(data);
    let b = plan(&mk, z, data.len());
    let at = dst.len();
    dst.resize(at + b.size, 0);
    emit(data, &mk, &b, &mut dst[at..]);
}

// ---- host variants of the kernels ---------------------------------------------------------

fn geom_ok(ps: u32, w: u32) -> bool {
    matches!(w, 1 | 2 | 4) && (1024..=65536).contains(&ps) && ps.is_multiple_of(1024)
}

fn rd32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn rd64(b: &[u8], at: usize) -> u64 {
    u64::from(rd32(b, at)) | (u64::from(rd32(b, at + 4)) << 32)
}

fn wr32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// Statistics slots of a page of `ps` bytes of `w`-byte elements (`he_slots`).
fn slots_of(ps: usize, w: usize) -> usize {
    ps.div_ceil(w * GROUP) * w
}

/// The planes of group `g` (elements `e0..e0+m` of `w` bytes at `s`).
fn group_planes(s: &[u8], e0: usize, m: usize, w: usize, pl: &mut [[u8; GROUP]; 4]) {
    for (j, &v) in s[e0 * w..(e0 + m) * w].iter().enumerate() {
        pl[j % w][j / w] = v;
    }
}

fn host_enc_size(l: &mut HostLaunch<'_>) -> Result<()> {
    let [Scalar::U64(src_len), Scalar::U32(npages), Scalar::U32(ps), Scalar::U32(w)] =
        l.scalars[..]
    else {
        return Err(Error::invalid(
            "hl_enc_size takes (src, src_len: u64, records, stats, summary, npages: u32, page_size: u32, width: u32)",
        ));
    };
    let [src, rec, stats, sum] = &mut l.buffers[..] else {
        return Err(Error::invalid(
            "hl_enc_size takes four buffers: src, records, stats, summary",
        ));
    };
    let np = npages as usize;
    if src_len > src.len() as u64 || rec.len() < np * REC * 4 || sum.len() < np * 8 {
        return Err(Error::invalid(
            "hl_enc_size: src_len exceeds src, or records/summary too small for npages",
        ));
    }
    if !geom_ok(ps, w) || l.config.block != BLOCK {
        return Ok(()); // as on the device: a bad geometry writes nothing
    }
    let (ps, w) = (ps as usize, w as usize);
    let slots = slots_of(ps, w);
    if stats.len() < np * slots * STAT * 4 {
        return Err(Error::invalid("hl_enc_size: stats too small for npages"));
    }
    let src = &src[..src_len as usize];
    let mut pl = [[0u8; GROUP]; 4];
    for page in 0..np {
        let start = page * ps;
        if start >= src.len() {
            break;
        }
        let s = &src[start..(start + ps).min(src.len())];
        let n = s.len() / w;
        let groups = n.div_ceil(GROUP);
        let mut tot = rd32(sum, 8 * page);
        let mut nzf = rd32(sum, 8 * page + 4);
        if s[n * w..].iter().any(|&b| b != 0) {
            nzf |= 1;
        }
        for g in 0..groups {
            let e0 = g * GROUP;
            let m = (n - e0).min(GROUP);
            group_planes(s, e0, m, w, &mut pl);
            for (p, x) in pl.iter().enumerate().take(w) {
                let (mk, z) = mask_of(&x[..m]);
                let b = plan(&mk, z, m);
                let at = 4 * STAT * (page * slots + g * w + p);
                for (q, &word) in mk.iter().enumerate() {
                    wr32(stats, at + 4 * q, word);
                }
                wr32(stats, at + 32, z as u32);
                wr32(rec, 4 * (page * REC + g * w + p), b.size as u32);
                tot = tot.wrapping_add(b.size as u32);
                if z != m {
                    nzf |= 1;
                }
            }
        }
        wr32(sum, 8 * page, tot);
        wr32(sum, 8 * page + 4, nzf);
    }
    Ok(())
}

fn flag(status: &mut [u8], f: u32, page: usize) {
    let old = rd32(status, 0);
    wr32(status, 0, old | f);
    let first = rd32(status, 4);
    wr32(status, 4, first.min(page as u32));
}

fn host_enc_write(l: &mut HostLaunch<'_>) -> Result<()> {
    let [Scalar::U64(src_len), Scalar::U64(out_len), Scalar::U32(npages), Scalar::U32(ps), Scalar::U32(w), Scalar::U32(page0)] =
        l.scalars[..]
    else {
        return Err(Error::invalid(
            "hl_enc_write takes (src, src_len: u64, records, stats, jobs, out, out_len: u64, status, npages: u32, page_size: u32, width: u32, page0: u32)",
        ));
    };
    let [src, rec, stats, jobs, out, status] = &mut l.buffers[..] else {
        return Err(Error::invalid(
            "hl_enc_write takes six buffers: src, records, stats, jobs, out, status",
        ));
    };
    let np = npages as usize;
    if src_len > src.len() as u64
        || out_len > out.len() as u64
        || rec.len() < np * REC * 4
        || jobs.len() < np * JOB_BYTES
        || status.len() < 8
    {
        return Err(Error::invalid(
            "hl_enc_write: src_len/out_len exceed their buffers, records/jobs too small for npages, or status < 8 bytes",
        ));
    }
    let slots = if geom_ok(ps, w) {
        slots_of(ps as usize, w as usize)
    } else {
        0
    };
    if stats.len() < np * slots * STAT * 4 {
        return Err(Error::invalid("hl_enc_write: stats too small for npages"));
    }
    let src = &src[..src_len as usize];
    let out = &mut out[..out_len as usize];
    let (ps64, w64) = (u64::from(ps), u64::from(w));
    // Pages page0..npages, one block row each on the device (the grid covers the rest).
    let last = np.min(page0 as usize + l.config.grid[0] as usize);
    let pages = (page0 as usize).min(last)..last;
    if l.config.block != BLOCK {
        for page in pages {
            flag(status, FLAG_JOB, page);
        }
        return Ok(());
    }
    for page in pages {
        let jb = &jobs[page * JOB_BYTES..(page + 1) * JOB_BYTES];
        let coff = rd64(jb, 0);
        let idx = u64::from(rd32(jb, 8));
        let en = &jb[16..16 + ENTRY_BYTES];
        let e = Entry::read(en, 0);
        let (soff, slen, dlen, kind) = (e.src_off, u64::from(e.src_len), e.dst_len, e.kind);
        let start = page as u64 * ps64;
        let ok = geom_ok(ps, w)
            && start < src_len
            && e.dst_off == start
            && u64::from(e.width) == w64
            && u64::from(dlen) == (src_len - start).min(ps64)
            && coff <= out_len
            && idx * 32 + 32 <= out_len - coff
            && soff <= out_len - coff
            && soff % 16 == 0
            && (soff + slen).next_multiple_of(16) <= out_len - coff
            && match kind {
                0 => slen == 0,
                1 | 4 => slen == u64::from(dlen),
                2 => true,
                _ => false,
            };
        if !ok {
            flag(status, FLAG_JOB, page);
            continue;
        }
        let (w, dlen) = (w as usize, dlen as usize);
        let n = dlen / w;
        let groups = n.div_ceil(GROUP);
        let tail = dlen % w;
        let entries = groups * w + 1;
        let hdr_end = HEADER + 4 * entries + tail;
        let r: Vec<u32> = (0..REC).map(|j| rd32(rec, 4 * (page * REC + j))).collect();
        if kind == 2 {
            let sizes = &r[..entries - 1];
            let tot: u64 = sizes.iter().map(|&x| u64::from(x)).sum();
            if sizes.iter().any(|&x| !(2..=1025).contains(&x)) || hdr_end as u64 + tot != slen {
                flag(status, FLAG_SIZE, page);
                continue;
            }
        }
        let o = &mut out[coff as usize..];
        let at = idx as usize * 32;
        o[at..at + 32].copy_from_slice(en);
        let pend = (soff + slen) as usize;
        o[pend..pend.next_multiple_of(16)].fill(0);
        let s = &src[start as usize..start as usize + dlen];
        let po = &mut o[soff as usize..pend];
        match kind {
            0 => continue,
            1 | 4 => {
                po.copy_from_slice(s);
                continue;
            }
            _ => {}
        }
        po[0] = MAGIC;
        po[1] = w as u8;
        po[2..4].copy_from_slice(&(groups as u16).to_le_bytes());
        po[4..8].copy_from_slice(&(dlen as u32).to_le_bytes());
        // Entry j: the end of the header plus the sizes of the blocks before j.
        let mut a = hdr_end as u32;
        for (j, &size) in r.iter().enumerate().take(entries - 1) {
            wr32(po, HEADER + 4 * j, a);
            a += size;
        }
        wr32(po, HEADER + 4 * (entries - 1), a);
        po[HEADER + 4 * entries..hdr_end].copy_from_slice(&s[n * w..]);
        let mut pl = [[0u8; GROUP]; 4];
        let mut ost = [0u8; 4 * (GROUP + 1)];
        for g in 0..groups {
            let e0 = g * GROUP;
            let m = (n - e0).min(GROUP);
            group_planes(s, e0, m, w, &mut pl);
            let ga = hdr_end + r[..g * w].iter().map(|&x| x as usize).sum::<usize>();
            let glen: usize = r[g * w..g * w + w].iter().map(|&x| x as usize).sum();
            let mut at = 0;
            let mut same = true;
            for (p, x) in pl.iter().enumerate().take(w) {
                let x = &x[..m];
                let st = 4 * STAT * (page * slots + g * w + p);
                let mk: [u32; 8] = std::array::from_fn(|q| rd32(stats, st + 4 * q));
                let z = rd32(stats, st + 32) as usize;
                // The statistics must be those of the data (zero count, every byte in the
                // mask) and give the record's size.
                let b = (z <= m).then(|| plan(&mk, z, m));
                let fits = |b: &Plan| {
                    b.size == r[g * w + p] as usize
                        && x.iter().filter(|&&v| v == 0).count() == z
                        && x.iter()
                            .all(|&v| (mk[usize::from(v >> 5)] >> (v & 31)) & 1 != 0)
                };
                let Some(b) = b.filter(fits) else {
                    same = false;
                    break;
                };
                emit(x, &mk, &b, &mut ost[at..at + b.size]);
                at += b.size;
            }
            if !same {
                flag(status, FLAG_SIZE, page);
                continue;
            }
            po[ga..ga + glen].copy_from_slice(&ost[..glen]);
        }
    }
    Ok(())
}

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
            .with_host(host_enc_size),
        write: Kernel::new("hl_enc_write")
            .with_cuda_source(CUDA_SOURCE, "hl_enc_write")
            .with_spirv(crate::kernels::enc_write_spirv(), "hl_enc_write")
            .with_host(host_enc_write),
    })
}

/// Bytes of the statistics buffer of `npages` pages of `page_size` bytes of `width`-byte
/// elements: [`STAT`] words per block of a full page (groups × width), page after page.
pub fn stats_bytes(npages: usize, page_size: usize, width: ElemWidth) -> u64 {
    (npages * slots_of(page_size, width.bytes()) * STAT * 4) as u64
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

/// Checks the page size, element width and chunk size of an eviction; returns the page size.
fn check_geometry(opts: &CompressOptions) -> Result<usize> {
    let ps = opts.plan.page_size;
    page::check_page_size(ps, MAX_DEVICE_PAGE_SIZE)?;
    if !ps.is_multiple_of(opts.plan.width.bytes()) {
        return Err(Error::invalid(
            "page size must be a multiple of the element width",
        ));
    }
    if opts.chunk_bytes < ps {
        return Err(Error::invalid(format!(
            "chunk_bytes {} is smaller than the page size {ps}",
            opts.chunk_bytes
        )));
    }
    Ok(ps)
}

/// The host step of an eviction (step 2 of the module docs): the chunk layout and the job
/// table of the write pass.
#[doc(hidden)]
#[derive(Debug, Clone)]
pub struct JobTable {
    pub(crate) layouts: Vec<ChunkLayout>,
    /// Offset of each chunk image in the output buffer.
    pub offsets: Vec<u64>,
    /// Bytes of the output buffer (at least 1).
    pub total: u64,
    /// [`JOB_BYTES`] per page: `u64 chunk_off | u32 index | u32 0 | entry (32)`.
    pub jobs: Vec<u8>,
    /// Exact totals of the layout.
    pub summary: PlanSummary,
}

impl JobTable {
    /// Pages of each chunk, in order.
    pub fn pages_per_chunk(&self) -> Vec<usize> {
        self.layouts.iter().map(|l| l.entries.len()).collect()
    }
}

/// Decides each page's kind from the size pass's 8 bytes per page (`sums`: the total block
/// size and the non-zero flag, as the device wrote them, so untrusted) and lays the chunk
/// images of a `len`-byte buffer out exactly as the host encoder does, then writes one job
/// per page. `Error::Kernel` when a page's sizes are implausible, `InvalidArgument` when
/// `sums` is not 8 bytes per page or the geometry of `opts` is refused. Public (hidden) for
/// the fuzz target of the encoder's tables.
#[doc(hidden)]
pub fn job_table(sums: &[u8], len: u64, opts: &CompressOptions) -> Result<JobTable> {
    let ps = check_geometry(opts)?;
    let w = opts.plan.width.bytes();
    let data_len = usize::try_from(len).map_err(|_| Error::invalid("length exceeds usize"))?;
    let np = data_len.div_ceil(ps);
    if sums.len() != 8 * np {
        return Err(Error::invalid(format!(
            "{} bytes of page sums for {np} pages",
            sums.len()
        )));
    }
    let mut kinds = Vec::with_capacity(np);
    for p in 0..np {
        let plen = (data_len - p * ps).min(ps);
        let groups = bitplane::groups_of(plen, w);
        let tot = rd32(sums, 8 * p) as usize;
        let nzf = rd32(sums, 8 * p + 4);
        if nzf > 1 || tot < 2 * groups * w || tot > (GROUP + 1) * groups * w {
            return Err(Error::Kernel {
                kernel: "hl_enc_size".into(),
                reason: format!("page {p}: implausible sizes (total {tot}, flag {nzf})"),
            });
        }
        let bp_len = HEADER + 4 * (groups * w + 1) + plen % w + tot;
        kinds.push(if nzf == 0 {
            (PageKind::Zero, 0)
        } else if bp_len >= plen {
            (PageKind::Raw, plen)
        } else {
            (PageKind::Bitplane, bp_len)
        });
    }
    let mut summary = PlanSummary {
        bytes_inspected: len,
        ..PlanSummary::default()
    };
    let layouts = chunk::layout(&kinds, data_len, opts, &mut summary);
    let (offsets, total) = chunk::chunk_offsets(layouts.iter().map(|l| l.image_len as u64));
    let mut jobs = vec![0u8; np * JOB_BYTES];
    let mut p = 0;
    for (l, &off) in layouts.iter().zip(&offsets) {
        for (i, e) in l.entries.iter().enumerate() {
            let j = &mut jobs[p * JOB_BYTES..(p + 1) * JOB_BYTES];
            j[0..8].copy_from_slice(&off.to_le_bytes());
            j[8..12].copy_from_slice(&(i as u32).to_le_bytes());
            j[16..48].copy_from_slice(&e.to_bytes());
            p += 1;
        }
    }
    Ok(JobTable {
        layouts,
        offsets,
        total,
        jobs,
        summary,
    })
}

// ---- the encoder ----------------------------------------------------------------------------

/// A buffer evicted by [`DeviceEncoder::evict`]: its chunk images in pinned host memory,
/// ready to upload (see [`Evicted::pinned`]).
#[derive(Debug)]
pub struct Evicted {
    pinned: PinnedCompressed,
    layouts: Vec<ChunkLayout>,
    summary: PlanSummary,
    page_size: usize,
    encode_time_s: f64,
    device_encode_s: f64,
    phases_s: [f64; 3],
}

impl Evicted {
    /// The chunk images, to upload with [`Uploader::upload_pinned`](crate::Uploader).
    pub fn pinned(&self) -> &PinnedCompressed {
        &self.pinned
    }
    /// Exact totals (bytes sent, page counts), as [`CompressedBuffer::summary`](crate::CompressedBuffer::summary).
    pub fn summary(&self) -> &PlanSummary {
        &self.summary
    }
    /// Bytes of the chunk images (what crossed the link on eviction, tables included).
    pub fn stored_bytes(&self) -> u64 {
        self.layouts.iter().map(|l| l.image_len as u64).sum()
    }
    /// Wall time of the eviction (encode and download, synchronised), seconds.
    pub fn encode_time_s(&self) -> f64 {
        self.encode_time_s
    }
    /// Wall time of the device part of the eviction (size pass, layout, write pass and the
    /// download, synchronised), seconds: for a [`Placement::Staging`] home the per-chunk
    /// downloads overlap the write pass of the next chunk; for a mapped home the write pass
    /// is the download. Equals [`encode_time_s`](Self::encode_time_s) up to bookkeeping.
    pub fn device_encode_time_s(&self) -> f64 {
        self.device_encode_s
    }
    /// Where the time of the eviction went, seconds since its start: `[size pass and its
    /// readback, host layout and job upload, write pass and download]`.
    pub fn phase_times_s(&self) -> [f64; 3] {
        self.phases_s
    }
    /// Copies the chunk images out of pinned memory into a [`CompressedBuffer`](crate::CompressedBuffer)
    /// (pageable, e.g. to keep in a store); `dev` is the device the eviction ran on. Works
    /// after that device is lost too (the pinned memory is read directly), and checks that
    /// the page tables cover the buffer.
    pub fn to_compressed(&self, dev: &dyn DynDevice) -> Result<crate::CompressedBuffer> {
        let (offs, _) = chunk::chunk_offsets(self.layouts.iter().map(|l| l.image_len as u64));
        let mut chunks: Vec<ChunkImage> = Vec::with_capacity(self.layouts.len());
        for (l, off) in self.layouts.iter().zip(offs) {
            let mut image = vec![0u8; l.image_len];
            let buf = self.pinned.buffer();
            match dev.read(buf, off, &mut image) {
                // The images were complete when the eviction returned and live in host
                // memory: a lost device does not take them with it.
                Err(Error::DeviceLost { .. }) => dev.read_host_resident(buf, off, &mut image)?,
                r => r?,
            }
            let mut c = l.meta.clone();
            c.image = image;
            c.seal();
            chunks.push(c);
        }
        let cb = crate::CompressedBuffer::from_parts(
            self.pinned.len(),
            self.page_size,
            self.pinned.width(),
            chunks,
            self.summary.clone(),
            self.encode_time_s,
        );
        // The tables were written by the device: check they cover the buffer before
        // anything is decoded from them.
        cb.verify()?;
        Ok(cb)
    }
    /// Gives the pinned buffer back (see [`DeviceEncoder::recycle`]).
    pub fn into_buffer(self) -> Box<dyn DynBuffer> {
        self.pinned.into_buffer()
    }
}

/// Compresses device buffers on the device and downloads the compressed bytes (eviction),
/// with reusable scratch buffers (see the module docs).
pub struct DeviceEncoder<'d> {
    dev: &'d dyn DynDevice,
    records: Option<Box<dyn DynBuffer>>,
    stats: Option<Box<dyn DynBuffer>>,
    sums: Option<Box<dyn DynBuffer>>,
    jobs: Option<Box<dyn DynBuffer>>,
    status: Option<Box<dyn DynBuffer>>,
    scratch: Option<Box<dyn DynBuffer>>,
    spare: Vec<(Placement, Box<dyn DynBuffer>)>,
}

impl std::fmt::Debug for DeviceEncoder<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceEncoder")
            .field("device", &self.dev.info().name)
            .field("spare_buffers", &self.spare.len())
            .finish()
    }
}

/// Returns `slot`'s buffer, (re)allocated in device memory when it is missing or smaller
/// than `size`.
fn grow<'a>(
    dev: &dyn DynDevice,
    slot: &'a mut Option<Box<dyn DynBuffer>>,
    size: u64,
) -> Result<&'a dyn DynBuffer> {
    let size = size.max(1);
    if slot.as_ref().is_none_or(|b| b.len() < size) {
        *slot = None;
        *slot = Some(dev.alloc(size, Placement::DeviceLocal)?);
    }
    slot.as_deref()
        .ok_or_else(|| Error::invalid("scratch buffer missing"))
}

fn whole(b: &dyn DynBuffer, access: AccessMode) -> Arg<'_, dyn DynBuffer> {
    Arg::Buffer {
        buffer: b,
        offset: 0,
        len: b.len(),
        access,
    }
}

/// The buffers of a [`DeviceEncoder`] (device scratch and spare pinned outputs), kept
/// between encoders so that a caller evicting often (the memory manager's transfer path)
/// does not allocate device and pinned memory per eviction. Belongs to one device.
#[derive(Default)]
pub struct EncoderScratch {
    device: Option<vuma_core::DeviceId>,
    slots: [Option<Box<dyn DynBuffer>>; 6],
    spare: Vec<(Placement, Box<dyn DynBuffer>)>,
}

impl std::fmt::Debug for EncoderScratch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncoderScratch")
            .field("device", &self.device)
            .field("spare_buffers", &self.spare.len())
            .finish()
    }
}

impl EncoderScratch {
    /// Keeps `buf` (pinned memory of `home`, e.g. from [`Evicted::into_buffer`]) for a later
    /// eviction, keeping at most `max_spare` spare buffers (the smallest go first).
    pub fn keep_spare(&mut self, home: Placement, buf: Box<dyn DynBuffer>, max_spare: usize) {
        if self.device.is_some_and(|d| d != buf.device()) {
            return;
        }
        self.spare.push((home, buf));
        self.spare.sort_by_key(|(_, b)| std::cmp::Reverse(b.len()));
        self.spare.truncate(max_spare);
    }
}

impl<'d> DeviceEncoder<'d> {
    /// An encoder for `dev` (scratch buffers are allocated at first use and reused).
    pub fn new(dev: &'d dyn DynDevice) -> Self {
        DeviceEncoder {
            dev,
            records: None,
            stats: None,
            sums: None,
            jobs: None,
            status: None,
            scratch: None,
            spare: Vec::new(),
        }
    }

    /// An encoder for `dev` reusing `scratch` (from [`into_scratch`](Self::into_scratch));
    /// scratch of another device is dropped.
    pub fn with_scratch(dev: &'d dyn DynDevice, scratch: EncoderScratch) -> Self {
        let mut e = DeviceEncoder::new(dev);
        if scratch.device.is_none_or(|d| d == dev.info().id) {
            let [records, stats, sums, jobs, status, buf] = scratch.slots;
            e.records = records;
            e.stats = stats;
            e.sums = sums;
            e.jobs = jobs;
            e.status = status;
            e.scratch = buf;
            e.spare = scratch.spare;
        }
        e
    }

    /// Gives the buffers back for a later [`with_scratch`](Self::with_scratch).
    pub fn into_scratch(self) -> EncoderScratch {
        EncoderScratch {
            device: Some(self.dev.info().id),
            slots: [
                self.records,
                self.stats,
                self.sums,
                self.jobs,
                self.status,
                self.scratch,
            ],
            spare: self.spare,
        }
    }

    /// Keeps an evicted buffer's pinned memory for the next eviction to the same home.
    pub fn recycle(&mut self, e: Evicted) {
        let home = if e.pinned.is_mapped() {
            Placement::HostMapped
        } else {
            Placement::Staging
        };
        self.spare.push((home, e.into_buffer()));
    }

    fn output(&mut self, home: Placement, size: u64) -> Result<Box<dyn DynBuffer>> {
        if let Some(i) = self
            .spare
            .iter()
            .position(|(p, b)| *p == home && b.len() >= size)
        {
            return Ok(self.spare.swap_remove(i).1);
        }
        self.dev.alloc(size, home)
    }

    /// Compresses `src[0..len]` (elements of `opts.plan.width`, pages of
    /// `opts.plan.page_size`, chunks of `opts.chunk_bytes`) on the device and downloads the
    /// chunk images into pinned host memory: [`Placement::Staging`] (encode into device
    /// memory, then one copy) or [`Placement::HostMapped`] (the kernel writes across the
    /// link). The images equal those of [`CompressedBuffer::compress`](crate::CompressedBuffer::compress)
    /// with `force` = bitplane; `opts.force` must be `None` or the bitplane codec.
    pub fn evict(
        &mut self,
        src: &dyn DynBuffer,
        len: u64,
        opts: &CompressOptions,
        home: Placement,
    ) -> Result<Evicted> {
        self.evict_range(src, 0, len, opts, home)
    }

    /// [`evict`](Self::evict) of `src[offset..offset + len]` (a pool sub-allocation).
    pub fn evict_range(
        &mut self,
        src: &dyn DynBuffer,
        offset: u64,
        len: u64,
        opts: &CompressOptions,
        home: Placement,
    ) -> Result<Evicted> {
        let t0 = Instant::now();
        if len == 0 {
            return Err(Error::ZeroSize {
                what: "evicted buffer",
            });
        }
        vuma_core::check_range(offset, len, src.len())?;
        if !matches!(home, Placement::Staging | Placement::HostMapped) {
            return Err(Error::invalid(format!(
                "evicted pages go to pinned host memory (staging or mapped), not {}",
                home.as_str()
            )));
        }
        if !self.dev.supports(home) {
            return Err(Error::UnsupportedPlacement {
                device: self.dev.info().name.clone(),
                placement: home,
            });
        }
        match opts.force {
            None | Some(PageDecision::Codec(DeviceCodec::Bitplane)) => {}
            Some(f) => {
                return Err(Error::invalid(format!(
                    "the device encoder codes bitplane pages only, not {}",
                    f.name()
                )))
            }
        }
        let ps = check_geometry(opts)?;
        let width = opts.plan.width;
        let w = width.bytes();
        let data_len = usize::try_from(len).map_err(|_| Error::invalid("length exceeds usize"))?;
        let npages = u32::try_from(data_len.div_ceil(ps))
            .map_err(|_| Error::invalid("more than 2^32 pages"))?;
        let np = npages as usize;
        let dev = self.dev;
        let grid = encode_grid(npages, ps, width);
        let d = encoders();
        // The Vulkan kernels read the source in whole 4-byte words through a binding whose
        // offset is a multiple of minStorageBufferOffsetAlignment (at most 256): bind the
        // range rounded up to whole words when the buffer holds them, else encode a copy.
        let staged;
        let (src, offset, src_bind) = if dev.info().backend == Backend::Vulkan {
            let words = len.next_multiple_of(4);
            if offset.is_multiple_of(256) && src.len() - offset >= words {
                (src, offset, words)
            } else {
                staged = dev.alloc(words, Placement::DeviceLocal)?;
                dev.copy(src, offset, staged.as_ref(), 0, len)?;
                (staged.as_ref(), 0, words)
            }
        } else {
            (src, offset, len)
        };

        // 1. Size pass.
        let sums = grow(dev, &mut self.sums, 8 * np as u64)?;
        dev.fill(sums, 0, 8 * np as u64, 0)?;
        let records = grow(dev, &mut self.records, (np * REC * 4) as u64)?;
        let stats = grow(dev, &mut self.stats, stats_bytes(np, ps, width))?;
        dev.launch(
            &d.size,
            &grid,
            &[
                Arg::Buffer {
                    buffer: src,
                    offset,
                    len: src_bind,
                    access: AccessMode::Read,
                },
                Arg::Scalar(Scalar::U64(len)),
                whole(records, AccessMode::ReadWrite),
                whole(stats, AccessMode::ReadWrite),
                Arg::Buffer {
                    buffer: sums,
                    offset: 0,
                    len: 8 * np as u64,
                    access: AccessMode::ReadWrite,
                },
                Arg::Scalar(Scalar::U32(npages)),
                Arg::Scalar(Scalar::U32(ps as u32)),
                Arg::Scalar(Scalar::U32(w as u32)),
            ],
        )?;
        let mut sum = vec![0u8; 8 * np];
        dev.read(sums, 0, &mut sum)?;
        let size_s = t0.elapsed().as_secs_f64();

        // 2. Kinds and layout, as the host encoder does.
        let JobTable {
            layouts,
            offsets: offs,
            total,
            jobs: job,
            summary,
        } = job_table(&sum, len, opts)?;
        let jobs = grow(dev, &mut self.jobs, job.len() as u64)?;
        dev.write(jobs, 0, &job)?;
        let layout_s = t0.elapsed().as_secs_f64();

        // 3. Write pass, into device memory then one copy, or straight into mapped memory.
        let out = self.output(home, total)?;
        let status = grow(dev, &mut self.status, 8)?;
        let mut init = [0u8; 8];
        init[4..].copy_from_slice(&u32::MAX.to_le_bytes());
        dev.write(status, 0, &init)?;
        let target: &dyn DynBuffer = if home == Placement::HostMapped {
            out.as_ref()
        } else {
            grow(dev, &mut self.scratch, total)?
        };
        let (records, stats, jobs) = (
            self.records
                .as_deref()
                .ok_or_else(|| Error::invalid("records missing"))?,
            self.stats
                .as_deref()
                .ok_or_else(|| Error::invalid("stats missing"))?,
            self.jobs
                .as_deref()
                .ok_or_else(|| Error::invalid("jobs missing"))?,
        );
        // One write launch per chunk (its pages, at their offsets in the sources): to
        // staging, the copy of chunk c's image is concurrent with the write of chunk c+1.
        let write = |p0: usize, pn: usize| -> Result<()> {
            dev.launch(
                &d.write,
                &encode_grid(pn as u32, ps, width),
                &[
                    Arg::Buffer {
                        buffer: src,
                        offset,
                        len: src_bind,
                        access: AccessMode::Read,
                    },
                    Arg::Scalar(Scalar::U64(len)),
                    whole(records, AccessMode::Read),
                    whole(stats, AccessMode::Read),
                    Arg::Buffer {
                        buffer: jobs,
                        offset: 0,
                        len: job.len() as u64,
                        access: AccessMode::Read,
                    },
                    Arg::Buffer {
                        buffer: target,
                        offset: 0,
                        len: total,
                        access: AccessMode::ReadWrite,
                    },
                    Arg::Scalar(Scalar::U64(total)),
                    whole(status, AccessMode::ReadWrite),
                    Arg::Scalar(Scalar::U32(npages)),
                    Arg::Scalar(Scalar::U32(ps as u32)),
                    Arg::Scalar(Scalar::U32(w as u32)),
                    Arg::Scalar(Scalar::U32(p0 as u32)),
                ],
            )
        };
        let mut device_encode_s = 0.0;
        if home == Placement::Staging {
            let mut fences = Vec::with_capacity(layouts.len());
            let mut p0 = 0;
            for (l, &off) in layouts.iter().zip(&offs) {
                let pn = l.entries.len();
                if pn > 0 {
                    write(p0, pn)?;
                    fences.push(dev.copy_concurrent(
                        target,
                        off,
                        out.as_ref(),
                        off,
                        l.image_len as u64,
                    )?);
                }
                p0 += pn;
            }
            if p0 != np {
                return Err(Error::invalid(format!(
                    "chunk layouts cover {p0} pages of {np}"
                )));
            }
            for f in &fences {
                dev.wait_for(f)?;
            }
            dev.synchronize()?;
            device_encode_s = t0.elapsed().as_secs_f64();
        } else {
            write(0, np)?;
        }
        let mut st = [0u8; 8];
        dev.read(status, 0, &mut st)?;
        let flags = rd32(&st, 0);
        if flags != 0 {
            return Err(Error::Kernel {
                kernel: "hl_enc_write".into(),
                reason: format!("encoder status {flags:#x}, first bad page {}", rd32(&st, 4)),
            });
        }
        let pinned =
            PinnedCompressed::from_layout(out, &layouts, len, width, home == Placement::HostMapped);
        let encode_time_s = t0.elapsed().as_secs_f64();
        Ok(Evicted {
            pinned,
            layouts,
            summary,
            page_size: ps,
            encode_time_s,
            device_encode_s: if home == Placement::Staging {
                device_encode_s
            } else {
                encode_time_s
            },
            phases_s: [
                size_s,
                layout_s,
                if home == Placement::Staging {
                    device_encode_s
                } else {
                    encode_time_s
                },
            ],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datasets::{self, Dataset, SplitMix64};
    use crate::residency::{CompressedBuffer, Uploader};
    use vuma_core::HostDevice;

    /// Blocks of many shapes: constant, few values, sparse, dense, every value.
    fn blocks() -> Vec<Vec<u8>> {
        let mut r = SplitMix64::new(9);
        let mut out = Vec::new();
        for m in [
            1usize, 2, 3, 7, 8, 9, 31, 33, 100, 255, 256, 511, 777, 1000, 1023, 1024,
        ] {
            for kind in 0..10 {
                let v: Vec<u8> = (0..m)
                    .map(|i| {
                        let x = r.next_u64();
                        match kind {
                            0 => 0,
                            1 => 0x3F,
                            2 => (x % 2) as u8 * 200,
                            3 => [0u8, 0, 0, 0, 0, 0, 0, 5][(x % 8) as usize],
                            4 => {
                                if x.is_multiple_of(3) {
                                    (x >> 8) as u8 % 5 + 1
                                } else {
                                    0
                                }
                            }
                            5 => {
                                if x.is_multiple_of(2) {
                                    (x >> 8) as u8
                                } else {
                                    0
                                }
                            }
                            6 => (x % 128) as u8,
                            7 => (x >> 16) as u8,
                            8 => (i % 256) as u8,
                            _ => {
                                if x.is_multiple_of(5) {
                                    0
                                } else {
                                    (x % 60) as u8 + 1
                                }
                            }
                        }
                    })
                    .collect();
                out.push(v);
            }
        }
        out
    }

    #[test]
    fn device_block_encoder_matches_the_host_encoder() {
        for b in blocks() {
            let mut a = Vec::new();
            bitplane::encode_block(&b, &mut a);
            let mut d = Vec::new();
            encode_block_as_device(&b, &mut d);
            assert_eq!(
                a,
                d,
                "block of {} bytes starting {:?}",
                b.len(),
                &b[..b.len().min(8)]
            );
        }
    }

    #[test]
    fn device_block_encoder_matches_on_dataset_planes() {
        for ds in Dataset::ALL {
            let data = ds.generate(256 << 10, 3);
            let w = ds.width().bytes();
            let n = data.len() / w;
            for g in 0..n.div_ceil(GROUP) {
                let m = (n - g * GROUP).min(GROUP);
                for p in 0..w {
                    let plane: Vec<u8> = (0..m).map(|i| data[(g * GROUP + i) * w + p]).collect();
                    let (mut a, mut d) = (Vec::new(), Vec::new());
                    bitplane::encode_block(&plane, &mut a);
                    encode_block_as_device(&plane, &mut d);
                    assert_eq!(a, d, "{} group {g} plane {p}", ds.name());
                }
            }
        }
    }

    fn opts(width: ElemWidth, chunk: usize, direct: usize) -> CompressOptions {
        let mut o = CompressOptions::with_width(width);
        o.chunk_bytes = chunk;
        o.direct_min_bytes = direct;
        o
    }

    /// Evicts `data` from a HostDevice buffer to `home`; checks the images against the host
    /// encoder and the upload round trip.
    fn check(
        enc: &mut DeviceEncoder<'_>,
        host: &HostDevice,
        data: &[u8],
        o: &CompressOptions,
        home: Placement,
    ) {
        let src = DynDevice::alloc(host, data.len() as u64 + 5, Placement::DeviceLocal).unwrap();
        DynDevice::fill(host, src.as_ref(), 0, data.len() as u64 + 5, 0xEE).unwrap();
        DynDevice::write(host, src.as_ref(), 0, data).unwrap();
        let ev = enc.evict(src.as_ref(), data.len() as u64, o, home).unwrap();
        let mut forced = o.clone();
        forced.force = Some(PageDecision::Codec(DeviceCodec::Bitplane));
        let want = CompressedBuffer::compress(data, &forced).unwrap();
        let got = ev.to_compressed(host).unwrap();
        assert_eq!(
            got.chunks(),
            want.chunks(),
            "chunk images differ ({home:?})"
        );
        let (a, b) = (got.summary(), want.summary());
        assert_eq!(
            (
                a.pages,
                a.zero_pages,
                a.raw_pages,
                a.bitplane_pages,
                a.bytes_in,
                a.bytes_sent
            ),
            (
                b.pages,
                b.zero_pages,
                b.raw_pages,
                b.bitplane_pages,
                b.bytes_in,
                b.bytes_sent
            )
        );
        assert_eq!(ev.stored_bytes(), want.stored_bytes());
        let dst = DynDevice::alloc(host, data.len() as u64 + 64, Placement::DeviceLocal).unwrap();
        DynDevice::fill(host, dst.as_ref(), 0, data.len() as u64 + 64, 0xCD).unwrap();
        Uploader::new(host)
            .upload_pinned(ev.pinned(), dst.as_ref())
            .unwrap();
        let mut back = vec![0u8; data.len() + 64];
        DynDevice::read(host, dst.as_ref(), 0, &mut back).unwrap();
        assert!(
            back[data.len()..].iter().all(|&b| b == 0xCD),
            "write past the data"
        );
        assert!(back[..data.len()] == *data, "round trip differs");
        enc.recycle(ev);
    }

    #[test]
    fn eviction_is_byte_identical_to_the_host_encoder() {
        let host = HostDevice::new();
        let mut enc = DeviceEncoder::new(&host);
        let mut r = SplitMix64::new(4);
        for ds in Dataset::ALL {
            for extra in [0usize, 1, 3, 4099, 65535] {
                let len = 5 * (64 << 10) + extra;
                let data = ds.generate(len, 2);
                for width in [ElemWidth::U8, ElemWidth::Bf16, ElemWidth::F32] {
                    let direct = if r.next_u64().is_multiple_of(2) {
                        64 << 10
                    } else {
                        1 << 20
                    };
                    let o = opts(width, 128 << 10, direct);
                    for home in [Placement::Staging, Placement::HostMapped] {
                        check(&mut enc, &host, &data, &o, home);
                    }
                }
            }
        }
    }

    #[test]
    fn eviction_of_tiny_and_mixed_buffers() {
        let host = HostDevice::new();
        let mut enc = DeviceEncoder::new(&host);
        for len in [1usize, 2, 3, 5, 1023, 1024, 4097] {
            let data = datasets::random_bytes(len, len as u64);
            check(
                &mut enc,
                &host,
                &data,
                &opts(ElemWidth::F32, 64 << 10, 1 << 20),
                Placement::Staging,
            );
            check(
                &mut enc,
                &host,
                &vec![0u8; len],
                &opts(ElemWidth::Bf16, 64 << 10, 1 << 20),
                Placement::Staging,
            );
        }
        // Zero, ReLU, random and constant pages mixed, small pages.
        let mut data = vec![0u8; 8 << 10];
        data.extend(datasets::relu_f32(12 << 10, 1));
        data.extend(datasets::random_bytes(9 << 10, 2));
        data.extend(vec![7u8; 3 << 10]);
        data.extend(datasets::relu_f32(1 << 10, 3));
        let mut o = opts(ElemWidth::F32, 8 << 10, 4 << 10);
        o.plan.page_size = 2 << 10;
        for home in [Placement::Staging, Placement::HostMapped] {
            check(&mut enc, &host, &data, &o, home);
        }
    }

    #[test]
    fn eviction_rejects_bad_requests() {
        let host = HostDevice::new();
        let mut enc = DeviceEncoder::new(&host);
        let src = DynDevice::alloc(&host, 4096, Placement::DeviceLocal).unwrap();
        let o = CompressOptions::with_width(ElemWidth::F32);
        let st = Placement::Staging;
        assert!(matches!(
            enc.evict(src.as_ref(), 0, &o, st),
            Err(Error::ZeroSize { .. })
        ));
        assert!(matches!(
            enc.evict(src.as_ref(), 4097, &o, st),
            Err(Error::OutOfRange { .. })
        ));
        assert!(matches!(
            enc.evict(src.as_ref(), 4096, &o, Placement::DeviceLocal),
            Err(Error::InvalidArgument(_))
        ));
        let mut bad = o.clone();
        bad.force = Some(PageDecision::Codec(DeviceCodec::Lz4));
        assert!(matches!(
            enc.evict(src.as_ref(), 4096, &bad, st),
            Err(Error::InvalidArgument(_))
        ));
        let mut bad = o.clone();
        bad.plan.page_size = 1000;
        assert!(matches!(
            enc.evict(src.as_ref(), 4096, &bad, st),
            Err(Error::InvalidArgument(_))
        ));
        let mut bad = o.clone();
        bad.chunk_bytes = 1024;
        assert!(matches!(
            enc.evict(src.as_ref(), 4096, &bad, st),
            Err(Error::InvalidArgument(_))
        ));
    }

    /// Runs `hl_enc_write` on the host over 3 pages of a 192 KiB buffer with `jobs`, after
    /// the size pass and the given changes to its records and statistics (word index,
    /// value); returns the status and the output.
    fn write_pass(jobs: &[u8], out_len: u64, rec_tamper: &[(usize, u32)]) -> ([u8; 8], Vec<u8>) {
        write_pass_with(jobs, out_len, rec_tamper, &[], BLOCK)
    }

    fn write_pass_with(
        jobs: &[u8],
        out_len: u64,
        rec_tamper: &[(usize, u32)],
        stat_tamper: &[(usize, u32)],
        block: [u32; 3],
    ) -> ([u8; 8], Vec<u8>) {
        let host = HostDevice::new();
        let data = datasets::relu_f32(3 << 16, 5);
        let np = 3usize;
        let src = DynDevice::alloc(&host, data.len() as u64, Placement::DeviceLocal).unwrap();
        DynDevice::write(&host, src.as_ref(), 0, &data).unwrap();
        let rec = DynDevice::alloc(&host, (np * REC * 4) as u64, Placement::DeviceLocal).unwrap();
        let stats = DynDevice::alloc(
            &host,
            stats_bytes(np, 64 << 10, ElemWidth::F32),
            Placement::DeviceLocal,
        )
        .unwrap();
        let sums = DynDevice::alloc(&host, 8 * np as u64, Placement::DeviceLocal).unwrap();
        DynDevice::fill(&host, sums.as_ref(), 0, 8 * np as u64, 0).unwrap();
        let g = encode_grid(np as u32, 64 << 10, ElemWidth::F32);
        let sc = |v: u32| Arg::Scalar(Scalar::U32(v));
        DynDevice::launch(
            &host,
            &encoders().size,
            &g,
            &[
                whole(src.as_ref(), AccessMode::Read),
                Arg::Scalar(Scalar::U64(data.len() as u64)),
                whole(rec.as_ref(), AccessMode::ReadWrite),
                whole(stats.as_ref(), AccessMode::ReadWrite),
                whole(sums.as_ref(), AccessMode::ReadWrite),
                sc(np as u32),
                sc(64 << 10),
                sc(4),
            ],
        )
        .unwrap();
        for &(at, v) in rec_tamper {
            DynDevice::write(&host, rec.as_ref(), 4 * at as u64, &v.to_le_bytes()).unwrap();
        }
        for &(at, v) in stat_tamper {
            DynDevice::write(&host, stats.as_ref(), 4 * at as u64, &v.to_le_bytes()).unwrap();
        }
        let g = LaunchConfig { block, ..g };
        let jb = DynDevice::alloc(&host, jobs.len() as u64, Placement::DeviceLocal).unwrap();
        DynDevice::write(&host, jb.as_ref(), 0, jobs).unwrap();
        let out = DynDevice::alloc(&host, out_len + 4096, Placement::DeviceLocal).unwrap();
        DynDevice::fill(&host, out.as_ref(), 0, out_len + 4096, 0xAB).unwrap();
        let status = DynDevice::alloc(&host, 8, Placement::DeviceLocal).unwrap();
        let mut init = [0u8; 8];
        init[4..].copy_from_slice(&u32::MAX.to_le_bytes());
        DynDevice::write(&host, status.as_ref(), 0, &init).unwrap();
        DynDevice::launch(
            &host,
            &encoders().write,
            &g,
            &[
                whole(src.as_ref(), AccessMode::Read),
                Arg::Scalar(Scalar::U64(data.len() as u64)),
                whole(rec.as_ref(), AccessMode::Read),
                whole(stats.as_ref(), AccessMode::Read),
                whole(jb.as_ref(), AccessMode::Read),
                Arg::Buffer {
                    buffer: out.as_ref(),
                    offset: 0,
                    len: out_len,
                    access: AccessMode::ReadWrite,
                },
                Arg::Scalar(Scalar::U64(out_len)),
                whole(status.as_ref(), AccessMode::ReadWrite),
                sc(np as u32),
                sc(64 << 10),
                sc(4),
                sc(0),
            ],
        )
        .unwrap();
        let mut st = [0u8; 8];
        DynDevice::read(&host, status.as_ref(), 0, &mut st).unwrap();
        let mut back = vec![0u8; (out_len + 4096) as usize];
        DynDevice::read(&host, out.as_ref(), 0, &mut back).unwrap();
        assert!(
            back[out_len as usize..].iter().all(|&b| b == 0xAB),
            "write past out_len"
        );
        (st, back)
    }

    fn job(chunk_off: u64, index: u32, e: Entry) -> Vec<u8> {
        let mut j = vec![0u8; JOB_BYTES];
        j[0..8].copy_from_slice(&chunk_off.to_le_bytes());
        j[8..12].copy_from_slice(&index.to_le_bytes());
        j[16..48].copy_from_slice(&e.to_bytes());
        j
    }

    fn raw_entry(p: u64, src_off: u64) -> Entry {
        Entry {
            src_off,
            src_len: 64 << 10,
            dst_len: 64 << 10,
            dst_off: p << 16,
            kind: PageKind::Raw as u8,
            width: 4,
        }
    }

    #[test]
    fn write_pass_flags_bad_jobs_and_never_writes_outside() {
        let out_len = 3 * (64 << 10) + 96;
        // A good job set: three raw pages.
        let good: Vec<u8> = (0..3u64)
            .flat_map(|p| job(0, p as u32, raw_entry(p, 96 + (p << 16))))
            .collect();
        let (st, out) = write_pass(&good, out_len, &[]);
        assert_eq!(rd32(&st, 0), 0);
        let data = datasets::relu_f32(3 << 16, 5);
        assert!(out[96..96 + (3 << 16)] == data[..]);
        // Page 1 past the output, page 2 with the wrong destination, page 0 a bad kind.
        let mut bad = good.clone();
        bad[JOB_BYTES..2 * JOB_BYTES].copy_from_slice(&job(0, 1, raw_entry(1, out_len - 16)));
        let mut e = raw_entry(2, 96 + (2 << 16));
        e.dst_off = 0;
        bad[2 * JOB_BYTES..].copy_from_slice(&job(0, 2, e));
        let mut e = raw_entry(0, 96);
        e.kind = 9;
        bad[..JOB_BYTES].copy_from_slice(&job(0, 0, e));
        let (st, _) = write_pass(&bad, out_len, &[]);
        assert_eq!((rd32(&st, 0), rd32(&st, 4)), (FLAG_JOB, 0));
        // A misaligned page and an entry index past the output.
        let mut bad = good.clone();
        bad[..JOB_BYTES].copy_from_slice(&job(0, 0, raw_entry(0, 97)));
        bad[JOB_BYTES..2 * JOB_BYTES].copy_from_slice(&job(out_len, 1, raw_entry(1, 0)));
        let (st, _) = write_pass(&bad, out_len, &[]);
        assert_eq!((rd32(&st, 0), rd32(&st, 4)), (FLAG_JOB, 0));
    }

    #[test]
    fn write_pass_flags_sizes_that_disagree() {
        // Page 0 as a bitplane page whose length the records do not give.
        let e = Entry {
            src_off: 96,
            src_len: 1000,
            dst_len: 64 << 10,
            dst_off: 0,
            kind: PageKind::Bitplane as u8,
            width: 4,
        };
        let mut jobs = job(0, 0, e);
        for p in 1..3u64 {
            jobs.extend(job(
                0,
                p as u32,
                Entry {
                    kind: PageKind::Zero as u8,
                    src_len: 0,
                    ..raw_entry(p, 96 + 1008)
                },
            ));
        }
        let (st, out) = write_pass(&jobs, 4096, &[]);
        assert_eq!((rd32(&st, 0), rd32(&st, 4)), (FLAG_SIZE, 0));
        assert!(
            out[96..1096].iter().all(|&b| b == 0xAB),
            "flagged page written"
        );
        // The right length, but a record that disagrees with the data.
        let data = datasets::relu_f32(64 << 10, 5);
        let mut enc = Vec::new();
        bitplane::encode_page(&data, ElemWidth::F32, &mut enc).unwrap();
        let e = Entry {
            src_len: enc.len() as u32,
            ..e
        };
        let mut jobs = job(0, 0, e);
        for p in 1..3u64 {
            jobs.extend(job(
                0,
                p as u32,
                Entry {
                    kind: PageKind::Zero as u8,
                    src_len: 0,
                    ..raw_entry(p, 96)
                },
            ));
        }
        let (st, out) = write_pass(&jobs, 96 + enc.len() as u64 + 16, &[]);
        assert_eq!(rd32(&st, 0), 0);
        assert!(
            out[96..96 + enc.len()] == enc[..],
            "bitplane page differs from the host encoder"
        );
        // Swap two records: totals agree, per-block sizes do not.
        let (a, b) = (0usize, 3usize);
        let mut s = [0u32; 2];
        for (k, i) in [a, b].into_iter().enumerate() {
            s[k] = rd32(&enc, HEADER + 4 * (i + 1)) - rd32(&enc, HEADER + 4 * i);
        }
        assert_ne!(s[0], s[1], "pick two blocks of different sizes");
        {
            let (st, _) = write_pass(&jobs, 96 + enc.len() as u64 + 16, &[(a, s[1]), (b, s[0])]);
            assert_eq!((rd32(&st, 0), rd32(&st, 4)), (FLAG_SIZE, 0));
        }
    }

    /// The jobs of `write_pass_flags_sizes_that_disagree`'s good case: page 0 a bitplane
    /// page, pages 1 and 2 zero pages; and the host encoder's image of page 0.
    fn bitplane_jobs() -> (Vec<u8>, Vec<u8>) {
        let data = datasets::relu_f32(64 << 10, 5);
        let mut enc = Vec::new();
        bitplane::encode_page(&data, ElemWidth::F32, &mut enc).unwrap();
        let e = Entry {
            src_off: 96,
            src_len: enc.len() as u32,
            dst_len: 64 << 10,
            dst_off: 0,
            kind: PageKind::Bitplane as u8,
            width: 4,
        };
        let mut jobs = job(0, 0, e);
        for p in 1..3u64 {
            jobs.extend(job(
                0,
                p as u32,
                Entry {
                    kind: PageKind::Zero as u8,
                    src_len: 0,
                    ..raw_entry(p, 96)
                },
            ));
        }
        (jobs, enc)
    }

    #[test]
    fn write_pass_checks_the_statistics() {
        let (jobs, enc) = bitplane_jobs();
        let out_len = 96 + enc.len() as u64 + 16;
        let run =
            |stat_tamper: &[(usize, u32)]| write_pass_with(&jobs, out_len, &[], stat_tamper, BLOCK);
        let (st, out) = run(&[]);
        assert_eq!(rd32(&st, 0), 0);
        assert!(out[96..96 + enc.len()] == enc[..]);
        // Plane 0 of group 0 (slot 0): the low mantissa bytes, many distinct values.
        let data = datasets::relu_f32(64 << 10, 5);
        let x: Vec<u8> = (0..GROUP).map(|i| data[4 * i]).collect();
        let (mk, z) = mask_of(&x);
        let size = plan(&mk, z, GROUP).size;
        // A zero count past the group.
        let (st, _) = run(&[(8, GROUP as u32 + 1)]);
        assert_eq!((rd32(&st, 0), rd32(&st, 4)), (FLAG_SIZE, 0));
        // A zero count off by one.
        let (st, _) = run(&[(8, z as u32 + 1)]);
        assert_eq!((rd32(&st, 0), rd32(&st, 4)), (FLAG_SIZE, 0));
        // A value that occurs missing from the mask, the block size unchanged: only the
        // check against the data finds it.
        let v = *x.iter().rfind(|&&v| v != 0).unwrap();
        let mut bad = mk;
        bad[usize::from(v >> 5)] &= !(1 << (v & 31));
        assert_eq!(
            plan(&bad, z, GROUP).size,
            size,
            "pick a value that keeps the size"
        );
        let q = usize::from(v >> 5);
        let (st, out) = run(&[(q, bad[q])]);
        assert_eq!((rd32(&st, 0), rd32(&st, 4)), (FLAG_SIZE, 0));
        // The other groups are still written; group 0 (right after the header) is not.
        let hdr_end = rd32(&enc, HEADER) as usize;
        let g1 = rd32(&enc, HEADER + 4 * 4) as usize;
        assert!(out[96 + hdr_end..96 + g1].iter().all(|&b| b == 0xAB));
        assert!(out[96 + g1..96 + enc.len()] == enc[g1..]);
        // Garbage everywhere in slot 5: never a write outside the page (write_pass checks
        // the guard), always flagged.
        let junk: Vec<(usize, u32)> = (0..STAT)
            .map(|i| (5 * STAT + i, 0x9E37_79B9u32.rotate_left(i as u32)))
            .collect();
        let (st, _) = run(&junk);
        assert_eq!((rd32(&st, 0), rd32(&st, 4)), (FLAG_SIZE, 0));
    }

    #[test]
    fn kernels_refuse_other_block_shapes() {
        let (jobs, enc) = bitplane_jobs();
        let out_len = 96 + enc.len() as u64 + 16;
        for block in [[128, 1, 1], [256, 2, 1], [512, 1, 1]] {
            let (st, out) = write_pass_with(&jobs, out_len, &[], &[], block);
            assert_eq!((rd32(&st, 0), rd32(&st, 4)), (FLAG_JOB, 0));
            assert!(out.iter().all(|&b| b == 0xAB), "{block:?}: wrote");
        }
        // The size pass writes nothing.
        let host = HostDevice::new();
        let data = datasets::relu_f32(1 << 16, 5);
        let src = DynDevice::alloc(&host, data.len() as u64, Placement::DeviceLocal).unwrap();
        DynDevice::write(&host, src.as_ref(), 0, &data).unwrap();
        let rec = DynDevice::alloc(&host, (REC * 4) as u64, Placement::DeviceLocal).unwrap();
        let nst = stats_bytes(1, 64 << 10, ElemWidth::F32);
        let stats = DynDevice::alloc(&host, nst, Placement::DeviceLocal).unwrap();
        let sums = DynDevice::alloc(&host, 8, Placement::DeviceLocal).unwrap();
        for b in [rec.as_ref(), stats.as_ref(), sums.as_ref()] {
            DynDevice::fill(&host, b, 0, b.len(), 0x5A).unwrap();
        }
        let g = LaunchConfig {
            block: [128, 1, 1],
            ..encode_grid(1, 64 << 10, ElemWidth::F32)
        };
        let sc = |v: u32| Arg::Scalar(Scalar::U32(v));
        DynDevice::launch(
            &host,
            &encoders().size,
            &g,
            &[
                whole(src.as_ref(), AccessMode::Read),
                Arg::Scalar(Scalar::U64(data.len() as u64)),
                whole(rec.as_ref(), AccessMode::ReadWrite),
                whole(stats.as_ref(), AccessMode::ReadWrite),
                whole(sums.as_ref(), AccessMode::ReadWrite),
                sc(1),
                sc(64 << 10),
                sc(4),
            ],
        )
        .unwrap();
        for b in [rec.as_ref(), stats.as_ref(), sums.as_ref()] {
            let mut v = vec![0u8; b.len() as usize];
            DynDevice::read(&host, b, 0, &mut v).unwrap();
            assert!(v.iter().all(|&x| x == 0x5A));
        }
    }

    #[test]
    fn size_pass_stores_each_blocks_mask_and_zero_count() {
        let host = HostDevice::new();
        let mut enc = DeviceEncoder::new(&host);
        // Short last page, u8 and bf16 widths: slots of partial groups.
        for (width, len) in [
            (ElemWidth::U8, 9000usize),
            (ElemWidth::Bf16, 70_000),
            (ElemWidth::F32, 5 << 16),
        ] {
            let data = datasets::relu_f32(len, 7);
            let src = DynDevice::alloc(&host, len as u64, Placement::DeviceLocal).unwrap();
            DynDevice::write(&host, src.as_ref(), 0, &data).unwrap();
            let mut o = opts(width, 128 << 10, 1 << 20);
            o.plan.page_size = 4096;
            let ev = enc
                .evict(src.as_ref(), len as u64, &o, Placement::Staging)
                .unwrap();
            enc.recycle(ev);
            let stats = enc.stats.as_deref().unwrap();
            let mut st = vec![0u8; stats.len() as usize];
            DynDevice::read(&host, stats, 0, &mut st).unwrap();
            let w = width.bytes();
            let slots = slots_of(4096, w);
            for (page, s) in data.chunks(4096).enumerate() {
                let n = s.len() / w;
                for g in 0..n.div_ceil(GROUP) {
                    let m = (n - g * GROUP).min(GROUP);
                    for p in 0..w {
                        let x: Vec<u8> = (0..m).map(|i| s[(g * GROUP + i) * w + p]).collect();
                        let (mk, z) = mask_of(&x);
                        let at = 4 * STAT * (page * slots + g * w + p);
                        let got: Vec<u32> = (0..STAT).map(|q| rd32(&st, at + 4 * q)).collect();
                        assert_eq!(
                            got[..8],
                            mk[..],
                            "{width:?} page {page} group {g} plane {p}"
                        );
                        assert_eq!(got[8] as usize, z);
                    }
                }
            }
        }
    }
}
