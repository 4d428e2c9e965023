//! Hyperloop's device decoders: one CUDA C source ([`CUDA_SOURCE`]) with three kernels, a
//! SPIR-V variant of each for Vulkan (WGSL in `shaders/`, compiled by naga in `build.rs`:
//! [`fill_copy_spirv`], [`bitplane_spirv`], [`lz4_spirv`]), and for each a host-function
//! variant with identical semantics (the reference, and what runs on
//! [`vuma_core::HostDevice`]).
//!
//! A *chunk* is what one batched copy moves: a page table followed by the pages' data.
//! ```text
//! table   npages × 32-byte entries (little-endian):
//!         u64 src_off | u32 src_len | u32 dst_len | u64 dst_off | u8 kind | u8 width | 6 × 0
//! data    the pages' compressed (or raw) bytes at their src_off (relative to the chunk)
//! ```
//! `kind` is [`PageKind`] (`Direct` pages are skipped: the uploader copies runs of raw
//! pages straight to the destination); `dst_off` is relative to the destination argument. Every kernel
//! takes `(chunk, chunk_len: u64, dst, dst_len: u64, status, npages: u32, kinds: u32)`;
//! `status` is two u32 words, `[flags, first bad page]`, initialised to `[0, u32::MAX]` by
//! the caller; `kinds` has bit `k` set for each kind whose kernel is launched on the chunk
//! (every kernel flags pages of a kind outside it, so no page is silently skipped). Float
//! pages ([`PageKind::Float`], kind 5) are decoded by `hl_float` ([`crate::floatdecode`]:
//! CUDA, SPIR-V and host variants);
//! the kernels here leave them to it when bit 5 of `kinds` is set, as they leave each
//! other's pages.
//!
//! - `hl_fill_copy` — grid (npages, y), 256 threads: zero pages are filled (nothing was
//!   sent for them), raw pages copied from the chunk (16-byte vectors);
//! - `hl_bitplane` — grid (npages, y), 256 threads: one block per 1024-element group (groups
//!   strided over y); the group's blocks are first staged into shared memory with 16-byte
//!   loads, then every plane is decoded one thread per byte;
//! - `hl_lz4` — grid (npages), 32 threads: one warp per page; the compressed page is staged
//!   in shared memory (when it fits in 48 KiB) since its token stream is parsed serially.
//!
//! Every read and write is bounds-checked against the chunk, the destination and the page's
//! entry; a bad entry or corrupt page sets a flag in `status` (and the lowest bad page
//! index), never writes outside its page's destination range. Host and device variants
//! flag exactly the same pages with the same flags.
//!
//! The Vulkan variants take the same arguments (buffers bind to set 0 in order, the scalars
//! fill the push constants; the u64s are read as two u32 words) and the same grids (the
//! workgroup sizes are fixed in the shaders: 256, 256 and 32). WGSL has no bytes: buffers are
//! u32 words and the destination is written through atomic words — whole words with
//! `atomicStore`, a word shared with bytes outside the page (the partial word at the end of
//! the data, a misaligned page) with `atomicAnd`/`atomicOr` on the page's bytes only, so no
//! other byte is ever written. Differences in structure, not in results: `hl_bitplane`
//! decodes one 4-byte word of a plane per invocation into workgroup memory (sparse ranks from
//! per-word prefix sums of the bitmap), and `hl_lz4` parses the token stream in invocation 0
//! and broadcasts each sequence, whose literals and match the 32 invocations copy a word each.
//! A `chunk_len` or `dst_len` beyond the bindings' whole words flags every page
//! [`FLAG_TABLE`] (the host variant refuses such a launch); the [`Uploader`] binds the
//! destination up to the next multiple of 4 bytes (through a scratch buffer when the
//! destination itself ends inside that word).
//!
//! [`Uploader`]: crate::residency::Uploader

use std::sync::{Arc, OnceLock};

use vuma_core::{Error, HostLaunch, Kernel, LaunchConfig, Result, Scalar};

use crate::page::ElemWidth;

/// Bytes per page-table entry.
pub const ENTRY_BYTES: usize = 32;
/// Largest page (destination length) an entry may describe.
pub const MAX_PAGE: u32 = 64 << 10;

/// Status flag: a page-table entry is out of range or inconsistent.
pub const FLAG_TABLE: u32 = 1;
/// Status flag: a bitplane page is corrupt.
pub const FLAG_BITPLANE: u32 = 2;
/// Status flag: an LZ4 page is corrupt.
pub const FLAG_LZ4: u32 = 4;
/// Status flag: an entry has an unknown kind.
pub const FLAG_KIND: u32 = 8;

/// How one page travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PageKind {
    /// All zeros: nothing sent, the device fills.
    Zero = 0,
    /// Sent as it is.
    Raw = 1,
    /// Bitplane codec.
    Bitplane = 2,
    /// LZ4 block format.
    Lz4 = 3,
    /// Raw, delivered by a direct copy of a run of raw pages: the kernels skip it.
    Direct = 4,
    /// The entropy-coded float codec ([`crate::floatcodec`]), decoded by `hl_float`
    /// ([`crate::floatdecode`]).
    Float = 5,
}

impl PageKind {
    /// Whether `kind` is a kind some decoder handles (zero, raw, bitplane, LZ4, float): the
    /// kernels leave a known kind whose bit is set in `kinds` to its own kernel, and flag
    /// any other kind [`FLAG_KIND`].
    pub fn is_decoded(kind: u8) -> bool {
        kind <= PageKind::Lz4 as u8 || kind == PageKind::Float as u8
    }
}

/// One page-table entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// Offset of the page's data in the chunk.
    pub src_off: u64,
    /// Bytes of the page's data.
    pub src_len: u32,
    /// Bytes the page decodes to.
    pub dst_len: u32,
    /// Offset of the page in the destination.
    pub dst_off: u64,
    /// Kind byte ([`PageKind`] as u8; other values are rejected by the kernels).
    pub kind: u8,
    /// Element width in bytes (bitplane pages).
    pub width: u8,
}

impl Entry {
    /// Serialises the entry into 32 bytes.
    pub fn to_bytes(&self) -> [u8; ENTRY_BYTES] {
        let mut b = [0u8; ENTRY_BYTES];
        b[0..8].copy_from_slice(&self.src_off.to_le_bytes());
        b[8..12].copy_from_slice(&self.src_len.to_le_bytes());
        b[12..16].copy_from_slice(&self.dst_len.to_le_bytes());
        b[16..24].copy_from_slice(&self.dst_off.to_le_bytes());
        b[24] = self.kind;
        b[25] = self.width;
        b
    }
    /// Parses entry `i` of a chunk's table (the caller checked the table is in the chunk).
    pub fn read(chunk: &[u8], i: usize) -> Entry {
        let b = &chunk[i * ENTRY_BYTES..(i + 1) * ENTRY_BYTES];
        let u64_at = |a: usize| {
            u64::from_le_bytes([
                b[a],
                b[a + 1],
                b[a + 2],
                b[a + 3],
                b[a + 4],
                b[a + 5],
                b[a + 6],
                b[a + 7],
            ])
        };
        let u32_at = |a: usize| u32::from_le_bytes([b[a], b[a + 1], b[a + 2], b[a + 3]]);
        Entry {
            src_off: u64_at(0),
            src_len: u32_at(8),
            dst_len: u32_at(12),
            dst_off: u64_at(16),
            kind: b[24],
            width: b[25],
        }
    }
    /// The bounds checks every kernel applies before touching a page.
    pub fn in_bounds(&self, chunk_len: u64, dst_len: u64) -> bool {
        self.src_off <= chunk_len
            && u64::from(self.src_len) <= chunk_len - self.src_off
            && self.dst_off <= dst_len
            && u64::from(self.dst_len) <= dst_len - self.dst_off
            && self.dst_len >= 1
            && self.dst_len <= MAX_PAGE
    }
}

/// CUDA C source of the three decoders (see the module docs).
pub const CUDA_SOURCE: &str = r#"
typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;

#define HL_ZERO 0u
#define HL_RAW 1u
#define HL_BITPLANE 2u
#define HL_LZ4 3u
#define HL_DIRECT 4u
#define HL_FLOAT 5u
#define HL_F_TABLE 1u
#define HL_F_BITPLANE 2u
#define HL_F_LZ4 4u
#define HL_F_KIND 8u
#define HL_MAX_PAGE 65536u

struct HlEntry { u64 src_off; u32 src_len; u32 dst_len; u64 dst_off; u32 kind; u32 width; };

__device__ __forceinline__ void hl_flag(u32* status, u32 f, u32 page) {
    atomicOr(&status[0], f);
    atomicMin(&status[1], page);
}

__device__ __forceinline__ HlEntry hl_entry(const u8* chunk, u32 page) {
    const u64* q = (const u64*)(chunk + (u64)page * 32ull);
    HlEntry e;
    e.src_off = q[0];
    u64 w1 = q[1];
    e.src_len = (u32)w1;
    e.dst_len = (u32)(w1 >> 32);
    e.dst_off = q[2];
    u64 w3 = q[3];
    e.kind = (u32)(w3 & 0xffull);
    e.width = (u32)((w3 >> 8) & 0xffull);
    return e;
}

__device__ __forceinline__ bool hl_in_bounds(const HlEntry& e, u64 chunk_len, u64 dst_len) {
    return e.src_off <= chunk_len && (u64)e.src_len <= chunk_len - e.src_off
        && e.dst_off <= dst_len && (u64)e.dst_len <= dst_len - e.dst_off
        && e.dst_len >= 1u && e.dst_len <= HL_MAX_PAGE;
}

__device__ __forceinline__ u32 hl_rd32(const u8* p) {
    return (u32)p[0] | ((u32)p[1] << 8) | ((u32)p[2] << 16) | ((u32)p[3] << 24);
}

// Copies src[0..len) into shared memory at `stage + (src & 15)` (so 16-byte vector loads and
// stores line up); returns that address. Reads exactly the bytes of src[0..len).
__device__ __forceinline__ const u8* hl_stage(u8* stage, const u8* src, u32 len, u32 tid, u32 nt) {
    u32 mis = (u32)((u64)src & 15ull);
    u8* sb = stage + mis;
    u32 first = (16u - mis) & 15u;
    if (first > len) first = len;
    u32 nvec = (len - first) >> 4;
    for (u32 i = tid; i < first; i += nt) sb[i] = src[i];
    const uint4* vs = (const uint4*)(src + first);
    uint4* vd = (uint4*)(sb + first);
    for (u32 i = tid; i < nvec; i += nt) vd[i] = vs[i];
    for (u32 i = first + (nvec << 4) + tid; i < len; i += nt) sb[i] = src[i];
    return sb;
}

// Common checks of every kernel: the table fits in the chunk, and the page's kind is known and
// among the kinds launched for this chunk (`kinds`: bit k set = the kernel of kind k runs;
// float pages, kind 5, belong to `hl_float`, whose source is `src/floatcodec.cu`).
// Returns false (after flagging, by `lead`) when the page must not be touched.
__device__ __forceinline__ bool hl_common(const u8* chunk, u64 chunk_len, u32* status, u32 npages,
                                          u32 kinds, u32 page, bool lead, HlEntry* e) {
    if ((u64)npages * 32ull > chunk_len) { if (lead) hl_flag(status, HL_F_TABLE, page); return false; }
    *e = hl_entry(chunk, page);
    if (e->kind == HL_DIRECT) return false; // delivered by a direct copy
    bool known = e->kind <= HL_LZ4 || e->kind == HL_FLOAT;
    if (!known || ((kinds >> e->kind) & 1u) == 0u) { if (lead) hl_flag(status, HL_F_KIND, page); return false; }
    return true;
}

extern "C" __global__ void hl_fill_copy(const u8* chunk, u64 chunk_len, u8* dst, u64 dst_len,
                                        u32* status, u32 npages, u32 kinds) {
    u32 page = blockIdx.x;
    if (page >= npages) return;
    bool lead = blockIdx.y == 0 && threadIdx.x == 0;
    HlEntry e;
    if (!hl_common(chunk, chunk_len, status, npages, kinds, page, lead, &e)) return;
    if (e.kind != HL_ZERO && e.kind != HL_RAW) return;
    if (!hl_in_bounds(e, chunk_len, dst_len) || (e.kind == HL_ZERO && e.src_len != 0u)
        || (e.kind == HL_RAW && e.src_len != e.dst_len)) {
        if (lead) hl_flag(status, HL_F_TABLE, page);
        return;
    }
    for (u32 start = blockIdx.y * 1024u; start < e.dst_len; start += gridDim.y * 1024u) {
        u32 end = min(start + 1024u, e.dst_len);
        u8* d = dst + e.dst_off + start;
        const u8* s = chunk + e.src_off + start;
        u32 n = end - start;
        bool aligned = ((((u64)d) | ((u64)s)) & 15ull) == 0ull && (n & 15u) == 0u;
        if (aligned) {
            uint4* d16 = (uint4*)d;
            const uint4* s16 = (const uint4*)s;
            uint4 z = make_uint4(0u, 0u, 0u, 0u);
            for (u32 i = threadIdx.x; i < n / 16u; i += blockDim.x) d16[i] = e.kind == HL_ZERO ? z : s16[i];
        } else {
            for (u32 i = threadIdx.x; i < n; i += blockDim.x) d[i] = e.kind == HL_ZERO ? (u8)0 : s[i];
        }
    }
}

// ---- bitplane -------------------------------------------------------------------------

__device__ __forceinline__ u32 hl_unpack(const u8* packed, u32 i, u32 k) {
    u32 bit = i * k;
    u32 byte = bit >> 3, sh = bit & 7u;
    u32 v = (u32)packed[byte] >> sh;
    if (sh + k > 8u) v |= (u32)packed[byte + 1] << (8u - sh);
    return v & ((1u << k) - 1u);
}

// PACK sub-stream r (k | d-1 | dict | packed) coding `count` values, exactly rlen bytes.
__device__ __forceinline__ bool hl_pack_ok(const u8* r, u32 rlen, u32 count, u32* k, u32* d) {
    if (rlen < 2u) return false;
    *k = r[0];
    *d = (u32)r[1] + 1u;
    if (*k < 1u || *k > 7u || *d > (1u << *k)) return false;
    return rlen == 2u + *d + ((count * *k + 7u) >> 3);
}

// Decodes one block of m bytes (block-wide; every thread calls it with the same arguments).
__device__ void hl_block(const u8* b, u32 blen, u32 m, u8* out, int* err, u32* pre) {
    __syncthreads();
    if (blen < 1u) { *err = 1; return; }
    u32 mode = b[0];
    if (mode == 0u) {
        if (blen != 2u) { *err = 1; return; }
        for (u32 i = threadIdx.x; i < m; i += blockDim.x) out[i] = b[1];
    } else if (mode == 1u) {
        if (blen != 1u + m) { *err = 1; return; }
        for (u32 i = threadIdx.x; i < m; i += blockDim.x) out[i] = b[1 + i];
    } else if (mode == 2u) {
        u32 k, d;
        if (!hl_pack_ok(b + 1, blen - 1u, m, &k, &d)) { *err = 1; return; }
        const u8* dict = b + 3;
        const u8* packed = b + 3 + d;
        for (u32 i = threadIdx.x; i < m; i += blockDim.x) {
            u32 ix = hl_unpack(packed, i, k);
            if (ix >= d) { *err = 1; out[i] = 0; } else { out[i] = dict[ix]; }
        }
    } else if (mode == 3u) {
        u32 bm = (m + 7u) >> 3;
        if (blen < 1u + bm + 3u) { *err = 1; return; }
        const u8* bitmap = b + 1;
        if ((m & 7u) != 0u && (bitmap[bm - 1u] >> (m & 7u)) != 0u) { *err = 1; return; }
        u32 nz = (u32)b[1 + bm] | ((u32)b[2 + bm] << 8);
        if (threadIdx.x < 32u) {
            u32 c = 0;
            for (u32 q = 0; q < 4u; ++q) {
                u32 ix = threadIdx.x * 4u + q;
                if (ix < bm) c += __popc((u32)bitmap[ix]);
            }
            for (u32 o = 1; o < 32u; o <<= 1) {
                u32 v = __shfl_up_sync(0xffffffffu, c, o);
                if (threadIdx.x >= o) c += v;
            }
            pre[threadIdx.x + 1u] = c;
            if (threadIdx.x == 0) pre[0] = 0;
        }
        __syncthreads();
        if (pre[32] != nz || nz == 0u) { *err = 1; return; }
        u32 sub = b[3 + bm];
        const u8* r = b + 4 + bm;
        u32 rlen = blen - (4u + bm);
        u32 k = 0, d = 0;
        if (sub == 0u) { if (rlen != 1u) { *err = 1; return; } }
        else if (sub == 1u) { if (rlen != nz) { *err = 1; return; } }
        else if (sub == 2u) { if (!hl_pack_ok(r, rlen, nz, &k, &d)) { *err = 1; return; } }
        else { *err = 1; return; }
        for (u32 i = threadIdx.x; i < m; i += blockDim.x) {
            u32 byte = bitmap[i >> 3];
            if (((byte >> (i & 7u)) & 1u) == 0u) { out[i] = 0; continue; }
            u32 w = i >> 5;
            u32 rank = pre[w];
            for (u32 q = w * 4u; q < (i >> 3); ++q) rank += __popc((u32)bitmap[q]);
            rank += __popc(byte & ((1u << (i & 7u)) - 1u));
            if (sub == 0u) out[i] = r[0];
            else if (sub == 1u) out[i] = r[rank];
            else {
                u32 ix = hl_unpack(r + 2 + d, rank, k);
                if (ix >= d) { *err = 1; out[i] = 0; } else { out[i] = r[2 + ix]; }
            }
        }
    } else {
        *err = 1;
    }
}

#define HL_GSTAGE 4128u

extern "C" __global__ void __launch_bounds__(256, 6) hl_bitplane(const u8* chunk, u64 chunk_len, u8* dst, u64 dst_len,
                                       u32* status, u32 npages, u32 kinds) {
    __shared__ __align__(16) u8 planes[4][1024];
    __shared__ __align__(16) u8 gstage[HL_GSTAGE];
    __shared__ u32 pre[33];
    __shared__ int err;
    u32 page = blockIdx.x;
    if (page >= npages) return;
    bool lead = blockIdx.y == 0 && threadIdx.x == 0;
    HlEntry e;
    if (!hl_common(chunk, chunk_len, status, npages, kinds, page, lead, &e)) return;
    if (e.kind != HL_BITPLANE) return;
    u32 w = e.width;
    if (!hl_in_bounds(e, chunk_len, dst_len) || (w != 1u && w != 2u && w != 4u)) {
        if (lead) hl_flag(status, HL_F_TABLE, page);
        return;
    }
    const u8* s = chunk + e.src_off;
    u32 slen = e.src_len;
    u8* d = dst + e.dst_off;
    u32 dlen = e.dst_len;
    bool ok = slen >= 8u && s[0] == 0xB1u && (u32)s[1] == w;
    u32 groups = 0, n = 0, entries = 0, tail = 0, hdr_end = 0;
    if (ok) {
        groups = (u32)s[2] | ((u32)s[3] << 8);
        n = dlen / w;
        entries = groups * w + 1u;
        tail = dlen % w;
        hdr_end = 8u + 4u * entries + tail;
        ok = hl_rd32(s + 4) == dlen && groups == (n + 1023u) / 1024u && hdr_end <= slen
            && hl_rd32(s + 8 + 4 * (entries - 1u)) == slen;
    }
    if (!ok) { if (lead) hl_flag(status, HL_F_BITPLANE, page); return; }
    if (blockIdx.y == 0u && threadIdx.x < tail) d[n * w + threadIdx.x] = s[hdr_end - tail + threadIdx.x];
    for (u32 g = blockIdx.y; g < groups; g += gridDim.y) {
        __syncthreads();
        if (threadIdx.x == 0) err = 0;
        // Stage the group's blocks (contiguous when the offsets are sane) with vector loads.
        u32 ga = hl_rd32(s + 8 + 4 * (g * w));
        u32 gb = hl_rd32(s + 8 + 4 * (g * w + w));
        bool staged = ga >= hdr_end && ga <= gb && gb <= slen && gb - ga <= HL_GSTAGE - 16u;
        const u8* sg = s;
        if (staged) sg = hl_stage(gstage, s + ga, gb - ga, threadIdx.x, blockDim.x);
        __syncthreads();
        u32 e0 = g * 1024u;
        u32 m = min(n - e0, 1024u);
        for (u32 p = 0; p < w; ++p) {
            u32 j = g * w + p;
            u32 a = hl_rd32(s + 8 + 4 * j);
            u32 b = hl_rd32(s + 8 + 4 * (j + 1u));
            if (a < hdr_end || a > b || b > slen) { __syncthreads(); if (threadIdx.x == 0) err = 1; continue; }
            const u8* bp = (staged && a >= ga && b <= gb) ? sg + (a - ga) : s + a;
            hl_block(bp, b - a, m, planes[p], &err, pre);
        }
        __syncthreads();
        if (err) { if (threadIdx.x == 0) hl_flag(status, HL_F_BITPLANE, page); continue; }
        u8* o = d + (u64)e0 * w;
        if (w == 4u && (((u64)o) & 3ull) == 0ull) {
            u32* o4 = (u32*)o;
            for (u32 i = threadIdx.x; i < m; i += blockDim.x)
                o4[i] = (u32)planes[0][i] | ((u32)planes[1][i] << 8) | ((u32)planes[2][i] << 16) | ((u32)planes[3][i] << 24);
        } else if (w == 2u && (((u64)o) & 1ull) == 0ull) {
            u16* o2 = (u16*)o;
            for (u32 i = threadIdx.x; i < m; i += blockDim.x)
                o2[i] = (u16)((u32)planes[0][i] | ((u32)planes[1][i] << 8));
        } else {
            for (u32 i = threadIdx.x; i < m * w; i += blockDim.x) o[i] = planes[i % w][i / w];
        }
    }
}

// ---- LZ4 block format, one warp per page ------------------------------------------------

#define HL_LZ4_STAGE 49024u

extern "C" __global__ void __launch_bounds__(32) hl_lz4(const u8* chunk, u64 chunk_len, u8* dst,
                                                        u64 dst_len, u32* status, u32 npages, u32 kinds) {
    __shared__ __align__(16) u8 stage[HL_LZ4_STAGE + 16u];
    u32 page = blockIdx.x;
    u32 lane = threadIdx.x & 31u;
    if (page >= npages) return;
    HlEntry e;
    if (!hl_common(chunk, chunk_len, status, npages, kinds, page, lane == 0u, &e)) return;
    if (e.kind != HL_LZ4) return;
    if (!hl_in_bounds(e, chunk_len, dst_len)) { if (lane == 0) hl_flag(status, HL_F_TABLE, page); return; }
    const u8* s = chunk + e.src_off;
    u8* d = dst + e.dst_off;
    u32 slen = e.src_len, dlen = e.dst_len;
    if (slen <= HL_LZ4_STAGE) {
        // The token stream is parsed serially: read it from shared memory, not global.
        s = hl_stage(stage, s, slen, lane, 32u);
        __syncwarp();
    }
    u32 ip = 0, op = 0;
    bool bad = false;
    for (;;) {
        if (ip >= slen) { bad = true; break; }
        u32 token = s[ip++];
        u32 lit = token >> 4;
        if (lit == 15u) {
            for (;;) {
                if (ip >= slen) { bad = true; break; }
                u32 b = s[ip++];
                lit += b;
                if (lit > dlen) { bad = true; break; }
                if (b != 255u) break;
            }
            if (bad) break;
        }
        if (lit > slen - ip || lit > dlen - op) { bad = true; break; }
        for (u32 j = lane; j < lit; j += 32u) d[op + j] = s[ip + j];
        __syncwarp();
        ip += lit;
        op += lit;
        if (ip == slen) break;
        if (slen - ip < 2u) { bad = true; break; }
        u32 off = (u32)s[ip] | ((u32)s[ip + 1] << 8);
        ip += 2;
        if (off == 0u || off > op) { bad = true; break; }
        u32 ml = token & 15u;
        if (ml == 15u) {
            for (;;) {
                if (ip >= slen) { bad = true; break; }
                u32 b = s[ip++];
                ml += b;
                if (ml > dlen) { bad = true; break; }
                if (b != 255u) break;
            }
            if (bad) break;
        }
        ml += 4u;
        if (ml > dlen - op) { bad = true; break; }
        u32 from = op - off;
        for (u32 j = lane; j < ml; j += 32u) d[op + j] = d[from + (j < off ? j : j % off)];
        __syncwarp();
        op += ml;
    }
    if (!bad && op != dlen) bad = true;
    if (bad && lane == 0) hl_flag(status, HL_F_LZ4, page);
}
"#;

/// The scalars every decoder takes: `(chunk_len, dst_len, npages, kinds)`.
fn scalars(l: &HostLaunch<'_>) -> Result<(u64, u64, usize, u32)> {
    match l.scalars[..] {
        [Scalar::U64(c), Scalar::U64(d), Scalar::U32(n), Scalar::U32(k)] => {
            Ok((c, d, n as usize, k))
        }
        _ => Err(Error::invalid(
            "hyperloop decoders take (chunk, chunk_len: u64, dst, dst_len: u64, status, npages: u32, kinds: u32)",
        )),
    }
}

/// The `kinds` mask bit of `kind`.
pub fn kind_bit(kind: PageKind) -> u32 {
    1 << (kind as u8)
}

/// A decoder's host arguments (shared with [`crate::floatdecode`]).
pub(crate) struct HostArgs<'a> {
    pub(crate) chunk: &'a [u8],
    pub(crate) dst: &'a mut [u8],
    pub(crate) status: &'a mut [u8],
    pub(crate) npages: usize,
    pub(crate) kinds: u32,
}

pub(crate) fn host_args<'a>(l: &'a mut HostLaunch<'_>) -> Result<HostArgs<'a>> {
    let (chunk_len, dst_len, npages, kinds) = scalars(l)?;
    let [chunk, dst, status] = &mut l.buffers[..] else {
        return Err(Error::invalid(
            "hyperloop decoders take three buffers: chunk, dst, status",
        ));
    };
    if chunk_len > chunk.len() as u64 || dst_len > dst.len() as u64 || status.len() < 8 {
        return Err(Error::invalid(
            "hyperloop decoder: chunk_len/dst_len exceed their buffers, or status < 8 bytes",
        ));
    }
    Ok(HostArgs {
        chunk: &chunk[..chunk_len as usize],
        dst: &mut dst[..dst_len as usize],
        status: &mut status[..8],
        npages,
        kinds,
    })
}

pub(crate) fn flag(status: &mut [u8], f: u32, page: usize) {
    let old = u32::from_le_bytes([status[0], status[1], status[2], status[3]]);
    status[0..4].copy_from_slice(&(old | f).to_le_bytes());
    let first = u32::from_le_bytes([status[4], status[5], status[6], status[7]]);
    status[4..8].copy_from_slice(&first.min(page as u32).to_le_bytes());
}

pub(crate) fn table_ok(a: &HostArgs<'_>) -> bool {
    (a.npages as u64) * (ENTRY_BYTES as u64) <= a.chunk.len() as u64
}

/// The page's source bytes and destination range (after `in_bounds`).
pub(crate) fn page_io<'a>(
    chunk: &'a [u8],
    dst: &'a mut [u8],
    e: &Entry,
) -> (&'a [u8], &'a mut [u8]) {
    let s = &chunk[e.src_off as usize..e.src_off as usize + e.src_len as usize];
    let d = &mut dst[e.dst_off as usize..e.dst_off as usize + e.dst_len as usize];
    (s, d)
}

/// The checks every kernel makes (`hl_common`): calls `f` for each page whose kind is known
/// and launched; flags the table or unknown kinds.
fn each_page(a: &mut HostArgs<'_>, mut f: impl FnMut(&mut HostArgs<'_>, usize, Entry)) {
    if !table_ok(a) {
        if a.npages > 0 {
            flag(a.status, FLAG_TABLE, 0);
        }
        return;
    }
    for p in 0..a.npages {
        let e = Entry::read(a.chunk, p);
        if e.kind == PageKind::Direct as u8 {
            continue;
        }
        if !PageKind::is_decoded(e.kind) || (a.kinds >> e.kind) & 1 == 0 {
            flag(a.status, FLAG_KIND, p);
            continue;
        }
        f(a, p, e);
    }
}

fn host_fill_copy(l: &mut HostLaunch<'_>) -> Result<()> {
    let mut a = host_args(l)?;
    each_page(&mut a, |a, p, e| {
        let zero = e.kind == PageKind::Zero as u8;
        if !zero && e.kind != PageKind::Raw as u8 {
            return;
        }
        if !e.in_bounds(a.chunk.len() as u64, a.dst.len() as u64)
            || (zero && e.src_len != 0)
            || (!zero && e.src_len != e.dst_len)
        {
            flag(a.status, FLAG_TABLE, p);
            return;
        }
        let (s, d) = page_io(a.chunk, a.dst, &e);
        if zero {
            d.fill(0);
        } else {
            d.copy_from_slice(s);
        }
    });
    Ok(())
}

fn host_bitplane(l: &mut HostLaunch<'_>) -> Result<()> {
    let mut a = host_args(l)?;
    each_page(&mut a, |a, p, e| {
        if e.kind != PageKind::Bitplane as u8 {
            return;
        }
        let width = ElemWidth::from_bytes(usize::from(e.width));
        let Ok(width) = width else {
            flag(a.status, FLAG_TABLE, p);
            return;
        };
        if !e.in_bounds(a.chunk.len() as u64, a.dst.len() as u64) {
            flag(a.status, FLAG_TABLE, p);
            return;
        }
        let (s, d) = page_io(a.chunk, a.dst, &e);
        if crate::bitplane::decode_page(s, width, d).is_err() {
            flag(a.status, FLAG_BITPLANE, p);
        }
    });
    Ok(())
}

fn host_lz4(l: &mut HostLaunch<'_>) -> Result<()> {
    let mut a = host_args(l)?;
    each_page(&mut a, |a, p, e| {
        if e.kind != PageKind::Lz4 as u8 {
            return;
        }
        if !e.in_bounds(a.chunk.len() as u64, a.dst.len() as u64) {
            flag(a.status, FLAG_TABLE, p);
            return;
        }
        let (s, d) = page_io(a.chunk, a.dst, &e);
        if crate::lz4block::decode(s, d).is_err() {
            flag(a.status, FLAG_LZ4, p);
        }
    });
    Ok(())
}

/// The three decoder kernels, each with its CUDA and host variants.
#[derive(Debug)]
pub struct Decoders {
    /// Zero fill and raw copy (`hl_fill_copy`).
    pub fill_copy: Kernel,
    /// Bitplane pages (`hl_bitplane`).
    pub bitplane: Kernel,
    /// LZ4 pages (`hl_lz4`).
    pub lz4: Kernel,
}

/// SPIR-V words from the little-endian bytes `build.rs` wrote.
fn spirv_words(bytes: &[u8]) -> Arc<[u32]> {
    bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// SPIR-V of `hl_fill_copy` (`shaders/common.wgsl` + `shaders/hl_fill_copy.wgsl`).
pub fn fill_copy_spirv() -> Arc<[u32]> {
    spirv_words(include_bytes!(concat!(
        env!("OUT_DIR"),
        "/hl_fill_copy.spv"
    )))
}

/// SPIR-V of `hl_bitplane` (`shaders/common.wgsl` + `shaders/hl_bitplane.wgsl`).
pub fn bitplane_spirv() -> Arc<[u32]> {
    spirv_words(include_bytes!(concat!(env!("OUT_DIR"), "/hl_bitplane.spv")))
}

/// SPIR-V of `hl_lz4` (`shaders/common.wgsl` + `shaders/hl_lz4.wgsl`).
pub fn lz4_spirv() -> Arc<[u32]> {
    spirv_words(include_bytes!(concat!(env!("OUT_DIR"), "/hl_lz4.spv")))
}

/// SPIR-V of the encoder's size pass `hl_enc_size` (`shaders/hl_enc_common.wgsl` +
/// `shaders/hl_enc_size.wgsl`; see [`crate::encode`]).
pub fn enc_size_spirv() -> Arc<[u32]> {
    spirv_words(include_bytes!(concat!(env!("OUT_DIR"), "/hl_enc_size.spv")))
}

/// SPIR-V of the encoder's write pass `hl_enc_write` (`shaders/hl_enc_common.wgsl` +
/// `shaders/hl_enc_write.wgsl`; see [`crate::encode`]).
pub fn enc_write_spirv() -> Arc<[u32]> {
    spirv_words(include_bytes!(concat!(
        env!("OUT_DIR"),
        "/hl_enc_write.spv"
    )))
}

/// The decoders, built once per process.
pub fn decoders() -> &'static Decoders {
    static D: OnceLock<Decoders> = OnceLock::new();
    D.get_or_init(|| Decoders {
        fill_copy: Kernel::new("hl_fill_copy")
            .with_cuda_source(CUDA_SOURCE, "hl_fill_copy")
            .with_spirv(fill_copy_spirv(), "hl_fill_copy")
            .with_host(host_fill_copy),
        bitplane: Kernel::new("hl_bitplane")
            .with_cuda_source(CUDA_SOURCE, "hl_bitplane")
            .with_spirv(bitplane_spirv(), "hl_bitplane")
            .with_host(host_bitplane),
        lz4: Kernel::new("hl_lz4")
            .with_cuda_source(CUDA_SOURCE, "hl_lz4")
            .with_spirv(lz4_spirv(), "hl_lz4")
            .with_host(host_lz4),
    })
}

/// Launch geometry of `hl_fill_copy` for `npages` pages (one block per KiB of a page).
pub fn fill_grid(npages: u32) -> LaunchConfig {
    LaunchConfig {
        grid: [npages.max(1), MAX_PAGE / 1024, 1],
        block: [256, 1, 1],
        shared_mem_bytes: 0,
    }
}

/// Launch geometry of `hl_bitplane` for `npages` pages of `width`-byte elements (one block
/// per group of 1024 elements of a 64 KiB page; the kernel strides over more).
pub fn bitplane_grid(npages: u32, width: ElemWidth) -> LaunchConfig {
    LaunchConfig {
        grid: [npages.max(1), MAX_PAGE / 1024 / width.bytes() as u32, 1],
        block: [256, 1, 1],
        shared_mem_bytes: 0,
    }
}

/// Launch geometry of `hl_lz4` (one warp per page).
pub fn lz4_grid(npages: u32) -> LaunchConfig {
    LaunchConfig {
        grid: [npages.max(1), 1, 1],
        block: [32, 1, 1],
        shared_mem_bytes: 0,
    }
}
