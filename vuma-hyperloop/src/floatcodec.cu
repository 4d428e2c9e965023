// hl_float: the device decoder of the float codec (format: src/floatcodec.rs; launch
// contract, page kinds and flags: src/floatdecode.rs). Embedded by floatdecode.rs with
// include_str! and compiled by NVRTC like kernels.rs's CUDA_SOURCE.
//
// Arguments as every Hyperloop decoder: (chunk, chunk_len, dst, dst_len, status, npages,
// kinds). Grid (npages), 128 threads: one block per page, one warp per group of the page
// (a page has 1, 2 or 4 groups of 32 lanes). Per page the block
//   1. checks the entry and the page header (every thread reads the same fields, so every
//      early return is taken by the whole block);
//   2. builds the 4096-entry decode table of the page's canonical code in shared memory,
//      indexed by the MSB-first 12-bit peek (each symbol's entries are one contiguous
//      range): warp 0 ranks the 256 code lengths by ballots, then every warp fills a
//      quarter of the table, each lane 32 entries;
//   3. each warp of a group decodes 32 elements of its group per step, lane l decoding its
//      own stream (the group's elements l, l+32, ...), sm ranks for zero elision from a
//      ballot per step counted from the group's start. Steps go in batches of HF_BATCH:
//      first the batch's symbols (stream and shared table only; the next stream word is
//      loaded one refill ahead), then its ballots, then all its sm loads at once, then its
//      stores: a warp must not wait for one global load per element;
//   4. checks each lane used exactly its stream's bytes and the group's sm ranks.
// Past the end of its stream a lane reads zero bits (as the host decoder does), never the
// next lane's bytes, so host and device flag exactly the same pages. Every read is inside
// the page's source range, every write inside its destination range. Lane streams are read
// 32 bits at a time (two aligned words, funnel-shifted: the chunk is 4-byte aligned, as
// every device allocation and the uploader's chunk offsets are).

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;

#define HF_ZERO 0u
#define HF_LZ4 3u
#define HF_DIRECT 4u
#define HF_FLOAT 5u
#define HF_F_TABLE 1u
#define HF_F_KIND 8u
#define HF_F_FLOAT 16u
#define HF_MAX_PAGE 65536u
#define HF_TSIZE 4096u
#define HF_FIXED 12u
#define HF_LENS 128u
#define HF_FULL 0xffffffffu
// Steps decoded per batch: a batch's symbols first, then all its sm loads in flight at once.
#define HF_BATCH 8u

__device__ __forceinline__ void hf_flag(u32* status, u32 f, u32 page) {
    atomicOr(&status[0], f);
    atomicMin(&status[1], page);
}

__device__ __forceinline__ u32 hf_rd32(const u8* p) {
    return (u32)p[0] | ((u32)p[1] << 8) | ((u32)p[2] << 16) | ((u32)p[3] << 24);
}

__device__ __forceinline__ u64 hf_rd64(const u8* p) {
    return (u64)hf_rd32(p) | ((u64)hf_rd32(p + 4) << 32);
}

// 32 bits at byte `pos` of a lane stream of `llen` bytes, zeros past its end: two aligned
// words funnel-shifted where both lie inside the page (which ends at `s_end`), else bytes.
__device__ __forceinline__ u32 hf_stream_word(const u8* ls, u32 llen, u32 pos, const u8* s_end) {
    if (pos >= llen) return 0u;
    const u8* p = ls + pos;
    const u32 rem = llen - pos;
    const u64 a = (u64)p & ~3ull;
    u32 v = 0u;
    if (a + 8ull <= (u64)s_end) {
        const u32 lo = *(const u32*)a;
        const u32 hi = *(const u32*)(a + 4ull);
        v = __funnelshift_r(lo, hi, (u32)((u64)p & 3ull) * 8u);
    } else {
        for (u32 b = 0; b < 4u && b < rem; ++b) v |= (u32)p[b] << (8u * b);
    }
    if (rem < 4u) v &= (1u << (8u * rem)) - 1u;
    return v;
}

__device__ __forceinline__ u32 hf_rd16(const u8* p) {
    return (u32)p[0] | ((u32)p[1] << 8);
}

extern "C" __global__ void __launch_bounds__(128) hl_float(const u8* chunk, u64 chunk_len, u8* dst, u64 dst_len,
                                                          u32* status, u32 npages, u32 kinds) {
    __shared__ u16 table[HF_TSIZE];
    __shared__ u16 starts[256];
    __shared__ u16 vals[256];
    const u32 lane = threadIdx.x & 31u;
    const u32 warp = threadIdx.x >> 5;
    const u32 page = blockIdx.x;
    if (page >= npages) return; // the whole block leaves together
    // Page-level flags come from one thread of the block; a group's from its warp's lane 0.
    const bool lead = threadIdx.x == 0u;
    if ((u64)npages * 32ull > chunk_len) { if (lead) hf_flag(status, HF_F_TABLE, page); return; }
    const u8* ent = chunk + (u64)page * 32ull;
    const u64 src_off = hf_rd64(ent);
    const u32 src_len = hf_rd32(ent + 8);
    const u32 dlen = hf_rd32(ent + 12);
    const u64 dst_off = hf_rd64(ent + 16);
    const u32 kind = ent[24];
    const u32 w = ent[25];
    if (kind == HF_DIRECT) return;
    if (kind != HF_FLOAT) {
        // Another kernel's page (when launched for this chunk), else unknown.
        if (kind > HF_LZ4 || ((kinds >> kind) & 1u) == 0u) { if (lead) hf_flag(status, HF_F_KIND, page); }
        return;
    }
    if (((kinds >> HF_FLOAT) & 1u) == 0u) { if (lead) hf_flag(status, HF_F_KIND, page); return; }
    const bool in_bounds = src_off <= chunk_len && (u64)src_len <= chunk_len - src_off
        && dst_off <= dst_len && (u64)dlen <= dst_len - dst_off && dlen >= 1u && dlen <= HF_MAX_PAGE;
    if (!in_bounds || (w != 1u && w != 2u && w != 4u)) { if (lead) hf_flag(status, HF_F_TABLE, page); return; }
    const u8* s = chunk + src_off;
    const u32 slen = src_len;
    u8* d = dst + dst_off;

    // ---- header -------------------------------------------------------------------------
    if (slen < HF_FIXED || s[0] != 0xF1u || (u32)s[1] != w || hf_rd32(s + 4) != dlen) {
        if (lead) hf_flag(status, HF_F_FLOAT, page);
        return;
    }
    const u32 mode = s[2];
    const u32 lanes = s[3];
    const u32 nsm = hf_rd32(s + 8);
    if (mode == 0u) {
        if (lanes != 0u || nsm != 0u || slen - HF_FIXED != dlen) { if (lead) hf_flag(status, HF_F_FLOAT, page); return; }
        for (u32 i = threadIdx.x; i < dlen; i += 128u) d[i] = s[HF_FIXED + i];
        return;
    }
    const bool elide = (mode & 2u) != 0u;
    const u32 n = dlen / w;
    const u32 tail = dlen % w;
    const u32 groups = lanes >> 5;
    const u32 header = HF_FIXED + HF_LENS + 2u * lanes + 4u * (groups - 1u);
    const u32 streams = header + tail;
    if ((mode & ~2u) != 1u || (lanes != 32u && lanes != 64u && lanes != 128u) || n == 0u || (elide && w == 1u)
        || (!elide && nsm != n) || nsm > n || slen < streams) {
        if (lead) hf_flag(status, HF_F_FLOAT, page);
        return;
    }

    // ---- code lengths: counts and canonical ranks by ballots (every warp) ---------------
    u8 mylen[8];
    bool bad = false;
#pragma unroll
    for (u32 c = 0; c < 8u; ++c) {
        u32 sym = c * 32u + lane;
        u32 b = s[HF_FIXED + (sym >> 1)];
        u32 l = (sym & 1u) ? (b >> 4) : (b & 15u);
        if (l > 12u) bad = true;
        mylen[c] = (u8)l;
    }
    u32 cnt[13];
#pragma unroll
    for (u32 l = 0; l < 13u; ++l) cnt[l] = 0u;
#pragma unroll
    for (u32 c = 0; c < 8u; ++c) {
#pragma unroll
        for (u32 l = 1; l <= 12u; ++l) cnt[l] += __popc(__ballot_sync(HF_FULL, mylen[c] == l));
    }
    u32 first[13], offs[13];
    u32 code = 0u, kraft = 0u, nsyms = 0u;
    first[0] = 0u;
    offs[0] = 0u;
#pragma unroll
    for (u32 l = 1; l <= 12u; ++l) {
        code = (code + cnt[l - 1u]) << 1;
        first[l] = code;
        offs[l] = nsyms;
        nsyms += cnt[l];
        kraft += cnt[l] << (12u - l);
    }
    // The same verdict in every warp (the same bytes): the block leaves together.
    if (__any_sync(HF_FULL, bad) || kraft > HF_TSIZE || nsyms == 0u) {
        if (lead) hf_flag(status, HF_F_FLOAT, page);
        return;
    }
    const u32 lt = (1u << lane) - 1u;
    // Every warp ranks (the loops stay unrolled, indices constant); warp 0 writes.
    {
        u32 run[13];
#pragma unroll
        for (u32 l = 0; l < 13u; ++l) run[l] = 0u;
#pragma unroll
        for (u32 c = 0; c < 8u; ++c) {
            u32 sym = c * 32u + lane;
#pragma unroll
            for (u32 l = 1; l <= 12u; ++l) {
                u32 m = __ballot_sync(HF_FULL, mylen[c] == l);
                if (warp == 0u && mylen[c] == l) {
                    u32 r = run[l] + __popc(m & lt);
                    starts[offs[l] + r] = (u16)((first[l] + r) << (12u - l));
                    vals[offs[l] + r] = (u16)(sym | (l << 8));
                }
                run[l] += __popc(m);
            }
        }
    }
    __syncthreads();
    // Each thread fills entries [t0, t0 + 32): holes (t >= kraft) are 0.
    {
        u32 t0 = threadIdx.x * 32u;
        u32 lo = 0u, hi = nsyms; // last j with starts[j] <= t0
        while (hi - lo > 1u) {
            u32 mid = (lo + hi) >> 1;
            if ((u32)starts[mid] <= t0) lo = mid; else hi = mid;
        }
        u32 j = lo;
        for (u32 t = t0; t < t0 + 32u; ++t) {
            while (j + 1u < nsyms && (u32)starts[j + 1u] <= t) ++j;
            table[t] = t < kraft ? vals[j] : (u16)0;
        }
    }
    __syncthreads();
    if (warp >= groups) return; // no barrier follows

    // ---- this warp's group and its lane streams -------------------------------------------
    const bool glead = lane == 0u;
    const u32 ends_at = HF_FIXED + HF_LENS;
    const u32 starts_at = ends_at + 2u * lanes;
    const u32 L = warp * 32u + lane;
    const u32 end_l = hf_rd16(s + ends_at + 2u * L);
    const u32 beg_l = L == 0u ? 0u : hf_rd16(s + ends_at + 2u * (L - 1u));
    const u32 total = hf_rd16(s + ends_at + 2u * (lanes - 1u));
    const u64 sm_at = (u64)streams + (u64)total;
    const u64 sm_len = (u64)nsm * (u64)(w - 1u);
    if (__any_sync(HF_FULL, end_l < beg_l) || sm_at + sm_len != (u64)slen) {
        if (glead) hf_flag(status, HF_F_FLOAT, page);
        return;
    }
    const u32 span = ((n + groups - 1u) / groups + 31u) & ~31u;
    const u32 g_start = min(n, warp * span);
    const u32 g_end = min(n, g_start + span);
    const u32 gn = g_end - g_start;
    const u32 s0 = warp == 0u ? 0u : hf_rd32(s + starts_at + 4u * (warp - 1u));
    const u32 s1 = warp + 1u < groups ? hf_rd32(s + starts_at + 4u * warp) : nsm;
    if (s0 > s1 || (!elide && s0 != g_start)) {
        if (glead) hf_flag(status, HF_F_FLOAT, page);
        return;
    }
    const u8* ls = s + streams + beg_l;
    const u32 llen = end_l - beg_l;
    const u32 my_count = lane < gn ? (gn - lane + 31u) / 32u : 0u;
    const u32 steps = (gn + 31u) / 32u;
    const u8* sm = s + sm_at;
    const u8* const s_end = s + slen;
    const bool aligned = ((u64)d & (u64)(w - 1u)) == 0ull;
    u64 acc = 0ull;
    u32 have = 0u;
    u64 used = 0ull;
    bool err = false;
    u32 base = s0;
    // The next 32 bits of the stream are loaded one refill ahead, so the load's latency
    // overlaps the decoding of the bits already in `acc`.
    u32 nxt = hf_stream_word(ls, llen, 0u, s_end);
    u32 pos = 4u;
    for (u32 k0 = 0; k0 < steps; k0 += HF_BATCH) {
        // (a) HF_BATCH symbols per lane: only the stream and the shared table are read.
        u32 sym[HF_BATCH];
        bool act[HF_BATCH];
#pragma unroll
        for (u32 j = 0; j < HF_BATCH; ++j) {
            bool a = k0 + j < my_count && !err;
            sym[j] = 0u;
            if (a) {
                if (have <= 32u) {
                    acc |= (u64)nxt << have;
                    have += 32u;
                    nxt = hf_stream_word(ls, llen, pos, s_end);
                    pos += 4u;
                }
                const u32 e = table[__brev((u32)acc & 0xFFFu) >> 20];
                const u32 l = e >> 8;
                if (l == 0u) {
                    err = true;
                    a = false;
                } else {
                    sym[j] = e & 0xFFu;
                    acc >>= l;
                    have -= l;
                    used += l;
                    if (used > 8ull * (u64)llen) err = true;
                }
            }
            act[j] = a;
        }
        // (b) sm ranks of the batch's steps, one ballot each.
        u32 rank[HF_BATCH];
        bool hs[HF_BATCH];
#pragma unroll
        for (u32 j = 0; j < HF_BATCH; ++j) {
            hs[j] = act[j] && !(elide && sym[j] == 0u);
            const u32 m = __ballot_sync(HF_FULL, hs[j]);
            rank[j] = base + __popc(m & lt);
            base += __popc(m);
            if (hs[j] && rank[j] >= nsm) { err = true; hs[j] = false; }
        }
        // (c) every sm load of the batch in flight at once, then the elements.
        u32 v[HF_BATCH];
#pragma unroll
        for (u32 j = 0; j < HF_BATCH; ++j) {
            v[j] = 0u;
            if (hs[j]) {
                const u8* q = sm + (u64)rank[j] * (u64)(w - 1u);
                if (w == 4u) v[j] = (u32)q[0] | ((u32)q[1] << 8) | ((u32)q[2] << 16);
                else if (w == 2u) v[j] = q[0];
            }
        }
#pragma unroll
        for (u32 j = 0; j < HF_BATCH; ++j) {
            if (!act[j]) continue;
            const u32 i = g_start + (k0 + j) * 32u + lane;
            u32 x = 0u; // the element's bits
            if (hs[j]) {
                if (w == 4u) x = ((v[j] >> 23) << 31) | (sym[j] << 23) | (v[j] & 0x7FFFFFu);
                else if (w == 2u) x = ((v[j] >> 7) << 15) | (sym[j] << 7) | (v[j] & 0x7Fu);
                else x = sym[j];
            }
            u8* o = d + (u64)i * w;
            if (w == 4u && aligned) {
                *(u32*)o = x;
            } else if (w == 2u && aligned) {
                *(u16*)o = (u16)x;
            } else {
                for (u32 b = 0; b < w; ++b) o[b] = (u8)(x >> (8u * b));
            }
        }
    }
    if (!err && (used + 7ull) / 8ull != (u64)llen) err = true;
    // The group's coded elements must end exactly where the next group's start.
    if (base != s1) err = true;
    if (warp == 0u && lane < tail) d[n * w + lane] = s[header + lane];
    if (__any_sync(HF_FULL, err) && glead) hf_flag(status, HF_F_FLOAT, page);
}
