// hl_enc_size and hl_enc_write: the device encoder of the bitplane codec (the steps, the
// arguments, the grid and the status flags: src/encode.rs; the host mirror of every
// function here: src/encode/block.rs and src/encode/host.rs). Embedded by encode.rs with
// include_str! and compiled by NVRTC. The HE_* constants are encode.rs's REC, STAT,
// JOB_BYTES, FLAG_JOB and FLAG_SIZE (a test checks them).

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
