// hl_float — grid (npages), 128 invocations: workgroup `page` decodes one float-codec page
// (format: src/floatcodec.rs; launch contract, page kinds and flags: src/floatdecode.rs;
// CUDA twin: src/floatcodec.cu), 32 invocations per group of the page (1, 2 or 4 groups),
// the groups sharing one decode table in workgroup memory. Same checks and flags as the
// host variant: host and device flag exactly the same pages. Per page:
//   1. invocation 0 checks the entry and the page header (flagging what it rejects) and
//      broadcasts it with `workgroupUniformLoad`, so every barrier below is in uniform
//      control flow;
//   2. the code lengths are counted with workgroup atomics (invocation t: symbols 2t and
//      2t + 1), every lane end is checked against the previous one, and invocation 0 sums
//      the counts into the canonical code (first code and offset of each length, Kraft sum),
//      flags a bad code and broadcasts the verdict;
//   3. invocation l (1..=12) lists the symbols of length l in canonical order with the start
//      of each one's range of MSB-first 12-bit peeks; then invocation t fills table entries
//      [32t, 32t + 32) (two 16-bit entries a word: 8 KiB);
//   4. invocation 32g + l decodes lane stream l of group g, one element per step (the
//      group's elements l, l + 32, ...). With zero elision the sm rank of each element
//      comes from a ballot per step: an `atomicOr` of the invocation's bit into a group
//      word of workgroup memory, three words a group used in turn so that one barrier a
//      step suffices;
//   5. each lane must have used exactly its stream's bytes, each group's coded elements
//      must end where the next group starts; invocation 0 flags the page.
// Past the end of its stream a lane reads zero bits (as the host decoder does), never the
// next lane's bytes. Every byte used is inside the page's source range (whole words are
// read, only the page's bytes kept) and every write inside its destination range, through
// `put` (masked atomics where a word is shared): a corrupt page never writes outside its
// page. No private arrays and no unrolled loops: llvmpipe (lavapipe) compiles this in
// seconds.

const F_FLOAT: u32 = 16u;
const HF_FIXED: u32 = 12u;
const HF_LENS: u32 = 128u;
const HF_TSIZE: u32 = 4096u;

// Decode table, two 16-bit entries a word: entry t (the MSB-first 12-bit peek) is
// sym | len << 8, 0 for a hole of an incomplete code.
var<workgroup> table: array<u32, 2048>;
// The symbols in canonical order: start << 12 | len << 8 | sym, where `start` is the first
// peek of the symbol's range.
var<workgroup> codes: array<u32, 256>;
// The 128 bytes of code lengths (symbol s in nibble s), as words.
var<workgroup> lenw: array<u32, 32>;
// Symbols of each code length; first code and canonical offset of each length.
var<workgroup> cnt: array<atomic<u32>, 13>;
var<workgroup> firsts: array<u32, 13>;
var<workgroup> offs: array<u32, 13>;
// Ballot words: bal[b * 4 + g], b = step % 3.
var<workgroup> bal: array<atomic<u32>, 12>;
// A bad code length or lane end (before decoding); a decode error (after).
var<workgroup> bad_code: atomic<u32>;
var<workgroup> bad_data: atomic<u32>;
// [go (0 none, 1 coded, 2 raw), src, slen, dst, dlen, w, n, tail, nsm, elide, lanes,
//  streams, sm (chunk offsets of the lane streams and the sm bytes), steps, span, 0]
var<workgroup> hdr: array<u32, 16>;
// [ok, kraft, nsyms, 0]
var<workgroup> code_hdr: array<u32, 4>;

// Bytes i..i+2 of the chunk, little-endian.
fn rd16(i: u32) -> u32 {
    return rd32(i) & 0xffffu;
}

// Invocation 0: entry, kind and header checks (flags what it rejects); fills `hdr`.
fn float_header(page: u32) {
    hdr[0] = 0u;
    var e: Entry;
    if (!hl_common(page, true, &e)) {
        return;
    }
    if (e.kind != K_FLOAT) {
        return;
    }
    let w = e.width;
    if (!e.in_bounds || (w != 1u && w != 2u && w != 4u)) {
        hl_flag(F_TABLE, page);
        return;
    }
    let s = e.src_off;
    let slen = e.src_len;
    let dlen = e.dst_len;
    if (slen < HF_FIXED || rd8(s) != 0xF1u || rd8(s + 1u) != w || rd32(s + 4u) != dlen) {
        hl_flag(F_FLOAT, page);
        return;
    }
    let mode = rd8(s + 2u);
    let lanes = rd8(s + 3u);
    let nsm = rd32(s + 8u);
    if (mode == 0u) {
        if (lanes != 0u || nsm != 0u || slen - HF_FIXED != dlen) {
            hl_flag(F_FLOAT, page);
            return;
        }
        hdr = array<u32, 16>(2u, s, slen, e.dst_off, dlen, w, 0u, 0u, 0u, 0u, 0u, 0u, 0u, 0u,
            0u, 0u);
        return;
    }
    let elide = (mode & 2u) != 0u;
    let n = dlen / w;
    let tail = dlen % w;
    if ((mode & ~2u) != 1u || (lanes != 32u && lanes != 64u && lanes != 128u) || n == 0u
        || (elide && w == 1u) || (!elide && nsm != n) || nsm > n) {
        hl_flag(F_FLOAT, page);
        return;
    }
    let groups = lanes >> 5u;
    let header = HF_FIXED + HF_LENS + 2u * lanes + 4u * (groups - 1u);
    let streams = header + tail;
    if (slen < streams) {
        hl_flag(F_FLOAT, page);
        return;
    }
    // The sm bytes end the page exactly (`total`: the last lane's end).
    let total = rd16(s + HF_FIXED + HF_LENS + 2u * (lanes - 1u));
    let room = slen - streams;
    if (total > room || room - total != nsm * (w - 1u)) {
        hl_flag(F_FLOAT, page);
        return;
    }
    let span = ((n + groups - 1u) / groups + 31u) & ~31u;
    let steps = (min(n, span) + 31u) / 32u;
    hdr = array<u32, 16>(1u, s, slen, e.dst_off, dlen, w, n, tail, nsm, select(0u, 1u, elide),
        lanes, s + streams, s + streams + total, steps, span, 0u);
}

// Writes the low `nb` bytes of `v` at destination byte `x` (at most two words).
fn put_bytes(x: u32, v: u32, nb: u32) {
    let sh = (x & 3u) * 8u;
    let wd = x >> 2u;
    let m = select(0xffffffffu, (1u << (nb * 8u)) - 1u, nb < 4u);
    put(wd, v << sh, m << sh);
    if (sh != 0u && (x & 3u) + nb > 4u) {
        put(wd + 1u, v >> (32u - sh), m >> (32u - sh));
    }
}

// Length of symbol `sym` (from `lenw`).
fn sym_len(sym: u32) -> u32 {
    return (lenw[sym >> 3u] >> ((sym & 7u) * 4u)) & 15u;
}

@compute @workgroup_size(128)
fn hl_float(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) tid: u32,
) {
    let page = wg.x;
    if (page >= params.npages) {
        return;
    }
    if (tid == 0u) {
        float_header(page);
    }
    let h = workgroupUniformLoad(&hdr);
    if (h[0] == 0u) {
        return;
    }
    let s = h[1];
    let d = h[3];
    let dlen = h[4];
    if (h[0] == 2u) {
        // Raw page: the bytes after the 12-byte header, a destination word each.
        let a = d;
        let b = d + dlen;
        let src = s + HF_FIXED;
        let wend = (b + 3u) >> 2u;
        for (var dw = (a >> 2u) + tid; dw < wend; dw = dw + 128u) {
            let x = dw * 4u;
            if (x >= a && x + 4u <= b) {
                put(dw, rd32(src + (x - a)), 0xffffffffu);
            } else {
                var v = 0u;
                for (var k = 0u; k < 4u; k = k + 1u) {
                    let xb = x + k;
                    if (xb >= a && xb < b) {
                        v = v | (rd8(src + (xb - a)) << (k * 8u));
                    }
                }
                put(dw, v, byte_mask(dw, a, b));
            }
        }
        return;
    }
    let w = h[5];
    let n = h[6];
    let tail = h[7];
    let nsm = h[8];
    let elide = h[9] != 0u;
    let lanes = h[10];
    let streams = h[11];
    let sm_at = h[12];
    let steps = h[13];
    let span = h[14];
    let groups = lanes >> 5u;
    let ends_at = s + HF_FIXED + HF_LENS;
    let starts_at = ends_at + 2u * lanes;

    // ---- code lengths and lane ends ------------------------------------------------------
    if (tid < 32u) {
        lenw[tid] = rd32(s + HF_FIXED + 4u * tid);
    }
    if (tid < 13u) {
        atomicStore(&cnt[tid], 0u);
    }
    if (tid < 12u) {
        atomicStore(&bal[tid], 0u);
    }
    if (tid == 0u) {
        atomicStore(&bad_code, 0u);
        atomicStore(&bad_data, 0u);
    }
    workgroupBarrier();
    {
        let lb = (lenw[tid >> 2u] >> ((tid & 3u) * 8u)) & 0xffu;
        let l0 = lb & 15u;
        let l1 = lb >> 4u;
        if (l0 > 12u || l1 > 12u) {
            atomicOr(&bad_code, 1u);
        }
        if (l0 != 0u && l0 <= 12u) {
            atomicAdd(&cnt[l0], 1u);
        }
        if (l1 != 0u && l1 <= 12u) {
            atomicAdd(&cnt[l1], 1u);
        }
        if (tid < lanes) {
            let end_l = rd16(ends_at + 2u * tid);
            var beg_l = 0u;
            if (tid > 0u) {
                beg_l = rd16(ends_at + 2u * (tid - 1u));
            }
            if (end_l < beg_l) {
                atomicOr(&bad_code, 1u);
            }
        }
    }
    workgroupBarrier();
    if (tid == 0u) {
        var code = 0u;
        var kraft = 0u;
        var nsyms = 0u;
        var prev = 0u;
        for (var l = 1u; l <= 12u; l = l + 1u) {
            let c = atomicLoad(&cnt[l]);
            code = (code + prev) << 1u;
            firsts[l] = code;
            offs[l] = nsyms;
            nsyms = nsyms + c;
            kraft = kraft + (c << (12u - l));
            prev = c;
        }
        let ok = atomicLoad(&bad_code) == 0u && kraft <= HF_TSIZE && nsyms > 0u;
        if (!ok) {
            hl_flag(F_FLOAT, page);
        }
        code_hdr = array<u32, 4>(select(0u, 1u, ok), kraft, nsyms, 0u);
    }
    let ch = workgroupUniformLoad(&code_hdr);
    if (ch[0] == 0u) {
        return;
    }
    let kraft = ch[1];
    let nsyms = ch[2];

    // ---- the decode table ----------------------------------------------------------------
    if (tid >= 1u && tid <= 12u) {
        let o = offs[tid];
        let f = firsts[tid];
        var r = 0u;
        for (var sym = 0u; sym < 256u; sym = sym + 1u) {
            if (sym_len(sym) == tid) {
                codes[o + r] = (((f + r) << (12u - tid)) << 12u) | (tid << 8u) | sym;
                r = r + 1u;
            }
        }
    }
    workgroupBarrier();
    {
        let t0 = tid * 32u;
        // The last symbol whose range starts at or before t0.
        var lo = 0u;
        var hi = nsyms;
        while (hi - lo > 1u) {
            let mid = (lo + hi) >> 1u;
            if ((codes[mid] >> 12u) <= t0) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        var j = lo;
        for (var q = 0u; q < 16u; q = q + 1u) {
            var word = 0u;
            for (var half = 0u; half < 2u; half = half + 1u) {
                let t = t0 + 2u * q + half;
                while (j + 1u < nsyms && (codes[j + 1u] >> 12u) <= t) {
                    j = j + 1u;
                }
                if (t < kraft) {
                    word = word | ((codes[j] & 0xfffu) << (16u * half));
                }
            }
            table[(t0 >> 1u) + q] = word;
        }
    }
    workgroupBarrier();

    // ---- this invocation's group and lane stream -----------------------------------------
    let g = tid >> 5u;
    let lane = tid & 31u;
    var err = false;
    var g_start = 0u;
    var gn = 0u;
    var s0 = 0u;
    var s1 = 0u;
    var ls = 0u;
    var llen = 0u;
    var my_count = 0u;
    if (g < groups) {
        let end_l = rd16(ends_at + 2u * tid);
        var beg_l = 0u;
        if (tid > 0u) {
            beg_l = rd16(ends_at + 2u * (tid - 1u));
        }
        ls = streams + beg_l;
        llen = end_l - beg_l;
        g_start = min(n, g * span);
        gn = min(n, g_start + span) - g_start;
        if (g > 0u) {
            s0 = rd32(starts_at + 4u * (g - 1u));
        }
        s1 = nsm;
        if (g + 1u < groups) {
            s1 = rd32(starts_at + 4u * g);
        }
        if (s0 > s1 || (!elide && s0 != g_start)) {
            err = true;
        }
        if (lane < gn) {
            my_count = (gn - lane + 31u) / 32u;
        }
    }
    let below = (1u << lane) - 1u;
    var used = 0u;
    var base = s0;
    for (var k = 0u; k < steps; k = k + 1u) {
        var live = k < my_count && !err;
        var sym = 0u;
        if (live) {
            // 32 bits of the stream at bit `used` (zeros past its end), then 12 of them.
            let at = used >> 3u;
            var v = 0u;
            if (at < llen) {
                v = rd32(ls + at);
                let rem = llen - at;
                if (rem < 4u) {
                    v = v & ((1u << (8u * rem)) - 1u);
                }
            }
            let idx = reverseBits((v >> (used & 7u)) & 0xfffu) >> 20u;
            let e = (table[idx >> 1u] >> ((idx & 1u) * 16u)) & 0xffffu;
            let l = e >> 8u;
            if (l == 0u) {
                err = true;
                live = false;
            } else {
                sym = e & 0xffu;
                used = used + l;
                if (used > 8u * llen) {
                    err = true;
                }
            }
        }
        let has_sm = live && !(elide && sym == 0u);
        var rank = s0 + k * 32u + lane;
        if (elide) {
            let b = (k % 3u) * 4u + g;
            if (has_sm) {
                atomicOr(&bal[b], 1u << lane);
            }
            workgroupBarrier();
            let m = atomicLoad(&bal[b]);
            rank = base + countOneBits(m & below);
            base = base + countOneBits(m);
            // The word used two steps ago: its readers are past this step's barrier, its
            // next writers are behind the next one.
            if (lane == 0u && g < 4u) {
                atomicStore(&bal[((k + 2u) % 3u) * 4u + g], 0u);
            }
        }
        if (has_sm && rank >= nsm) {
            err = true;
        }
        if (live && !err) {
            let i = g_start + k * 32u + lane;
            var x = 0u;
            if (has_sm) {
                let q = sm_at + rank * (w - 1u);
                if (w == 4u) {
                    let sm = rd32(q) & 0xffffffu;
                    x = ((sm >> 23u) << 31u) | (sym << 23u) | (sm & 0x7fffffu);
                } else if (w == 2u) {
                    let sm = rd8(q);
                    x = ((sm >> 7u) << 15u) | (sym << 7u) | (sm & 0x7fu);
                } else {
                    x = sym;
                }
            }
            let o = d + i * w;
            if (w == 4u && (o & 3u) == 0u) {
                atomicStore(&dst[o >> 2u], x);
            } else {
                put_bytes(o, x, w);
            }
        }
    }
    if (g < groups) {
        if ((used + 7u) / 8u != llen) {
            err = true;
        }
        // The group's coded elements end exactly where the next group's start.
        if (lane == 0u) {
            if (elide) {
                if (base != s1) {
                    err = true;
                }
            } else if (s1 < s0 || s1 - s0 != gn) {
                err = true;
            }
        }
    }
    if (tid < tail) {
        put8(d + n * w + tid, rd8(streams - tail + tid));
    }
    if (err) {
        atomicOr(&bad_data, 1u);
    }
    workgroupBarrier();
    if (tid == 0u && atomicLoad(&bad_data) != 0u) {
        hl_flag(F_FLOAT, page);
    }
}
