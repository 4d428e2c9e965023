// hl_float — grid (npages), 32 invocations: workgroup `page` decodes one float-codec page
// (format: src/floatcodec.rs; contract: src/floatdecode.rs; CUDA twin: src/floatcodec.cu).
// Same checks and flags as the host variant. Structure: invocation 0 checks the entry and
// the header and builds the canonical code's symbol ranges (broadcast through workgroup
// memory and `workgroupUniformLoad`, so every barrier is in uniform control flow); all 32
// fill the 4096-entry decode table; then invocation l decodes lane stream l, 32 elements
// per step, zero-elision ranks from a workgroup-memory "ballot" per step. Destination
// bytes are written through `put` (masked atomics), so no byte outside the page changes.

const K_FLOAT: u32 = 5u;
const F_FLOAT: u32 = 16u;
const HF_FIXED: u32 = 12u;
const HF_LENS: u32 = 128u;
const HF_HUFF_HEADER: u32 = 268u;

var<workgroup> table: array<u32, 4096>;
var<workgroup> starts: array<u32, 256>;
var<workgroup> vals: array<u32, 256>;
var<workgroup> lens: array<u32, 256>;
// [go (0 none, 1 huff, 2 raw), src, slen, dst, dlen, w, n, tail, nsm, elide, nsyms, kraft,
//  lanes (32, read at run time so that the rank loop is not unrolled)]
var<workgroup> hdr: array<u32, 13>;
var<workgroup> go_u: u32;
var<workgroup> has: array<u32, 32>;
var<workgroup> err_any: atomic<u32>;

// Invocation 0: entry, kind and header checks (flags what it rejects); fills `hdr`.
fn float_header(page: u32) {
    hdr[0] = 0u;
    if (!hl_args_ok()) {
        hl_flag(F_TABLE, page);
        return;
    }
    let e = hl_entry(page);
    if (e.kind == K_DIRECT) {
        return;
    }
    if (e.kind != K_FLOAT) {
        if (e.kind > K_LZ4 || ((params.kinds >> e.kind) & 1u) == 0u) {
            hl_flag(F_KIND, page);
        }
        return;
    }
    if (((params.kinds >> K_FLOAT) & 1u) == 0u) {
        hl_flag(F_KIND, page);
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
        hdr = array<u32, 13>(2u, s, slen, e.dst_off, dlen, w, 0u, 0u, 0u, 0u, 0u, 0u, 32u);
        return;
    }
    let elide = (mode & 2u) != 0u;
    let n = dlen / w;
    let tail = dlen % w;
    let streams = HF_HUFF_HEADER + tail;
    if ((mode & ~2u) != 1u || lanes != 32u || n == 0u || (elide && w == 1u)
        || (!elide && nsm != n) || nsm > n || slen < streams) {
        hl_flag(F_FLOAT, page);
        return;
    }
    // Code lengths: counts, Kraft sum, canonical first codes.
    var cnt: array<u32, 13>;
    var bad = false;
    for (var sym = 0u; sym < 256u; sym = sym + 1u) {
        let b = rd8(s + HF_FIXED + (sym >> 1u));
        let l = select(b & 15u, b >> 4u, (sym & 1u) == 1u);
        lens[sym] = l;
        if (l > 12u) {
            bad = true;
        } else {
            cnt[l] = cnt[l] + 1u;
        }
    }
    var first: array<u32, 13>;
    var offs: array<u32, 13>;
    var code = 0u;
    var kraft = 0u;
    var nsyms = 0u;
    for (var l = 1u; l <= 12u; l = l + 1u) {
        code = (code + select(cnt[l - 1u], 0u, l == 1u)) << 1u;
        first[l] = code;
        offs[l] = nsyms;
        nsyms = nsyms + cnt[l];
        kraft = kraft + (cnt[l] << (12u - l));
    }
    if (bad || kraft > 4096u || nsyms == 0u) {
        hl_flag(F_FLOAT, page);
        return;
    }
    // Symbols in canonical order: the start of each one's range of MSB-first 12-bit peeks.
    var run: array<u32, 13>;
    for (var sym = 0u; sym < 256u; sym = sym + 1u) {
        let l = lens[sym];
        if (l != 0u) {
            let r = run[l];
            run[l] = r + 1u;
            starts[offs[l] + r] = (first[l] + r) << (12u - l);
            vals[offs[l] + r] = sym | (l << 8u);
        }
    }
    // Lane ends: non-decreasing, and the sm bytes end the page exactly.
    let ends_at = s + HF_FIXED + HF_LENS;
    var prev = 0u;
    for (var l = 0u; l < 32u; l = l + 1u) {
        let end = rd32(ends_at + 4u * l);
        if (end < prev) {
            bad = true;
        }
        prev = end;
    }
    let room = slen - streams;
    if (bad || prev > room || room - prev != nsm * (w - 1u)) {
        hl_flag(F_FLOAT, page);
        return;
    }
    hdr = array<u32, 13>(1u, s, slen, e.dst_off, dlen, w, n, tail, nsm, select(0u, 1u, elide),
        nsyms, kraft, 32u);
}

// Writes the low `nb` bytes of `v` at destination byte `x` (at most two words).
fn put_bytes(x: u32, v: u32, nb: u32) {
    let sh = (x & 3u) * 8u;
    let w = x >> 2u;
    let m = select(0xffffffffu, (1u << (nb * 8u)) - 1u, nb < 4u);
    put(w, v << sh, m << sh);
    if (sh != 0u && (x & 3u) + nb > 4u) {
        put(w + 1u, v >> (32u - sh), m >> (32u - sh));
    }
}

@compute @workgroup_size(32)
fn hl_float(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let page = wg.x;
    if (page >= params.npages) {
        return;
    }
    if (lane == 0u) {
        atomicStore(&err_any, 0u);
        float_header(page);
        go_u = hdr[0];
    }
    let go = workgroupUniformLoad(&go_u);
    if (go == 0u) {
        return;
    }
    let h = workgroupUniformLoad(&hdr);
    let s = h[1];
    let dst0 = h[3];
    let dlen = h[4];
    if (go == 2u) {
        // Raw page: bytes after the 12-byte header.
        for (var i = lane; i < dlen; i = i + 32u) {
            put8(dst0 + i, rd8(s + HF_FIXED + i));
        }
        return;
    }
    let w = h[5];
    let n = h[6];
    let tail = h[7];
    let nsm = h[8];
    let elide = h[9] != 0u;
    let nsyms = h[10];
    let kraft = h[11];
    let nl = h[12];
    // Decode table: invocation `lane` fills entries [lane * 128, lane * 128 + 128).
    let t0 = lane * 128u;
    var lo = 0u;
    var hi = nsyms;
    while (hi - lo > 1u) {
        let mid = (lo + hi) >> 1u;
        if (starts[mid] <= t0) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    var j = lo;
    for (var t = t0; t < t0 + 128u; t = t + 1u) {
        while (j + 1u < nsyms && starts[j + 1u] <= t) {
            j = j + 1u;
        }
        table[t] = select(0u, vals[j], t < kraft);
    }
    workgroupBarrier();
    // Lane stream `lane`.
    let streams = s + HF_HUFF_HEADER + tail;
    let ends_at = s + HF_FIXED + HF_LENS;
    let end_l = rd32(ends_at + 4u * lane);
    var beg_l = 0u;
    if (lane > 0u) {
        beg_l = rd32(ends_at + 4u * (lane - 1u));
    }
    let total = rd32(ends_at + 4u * 31u);
    let ls = streams + beg_l;
    let llen = end_l - beg_l;
    let sm_at = streams + total;
    var my_count = 0u;
    if (lane < n) {
        my_count = (n - lane + 31u) / 32u;
    }
    let steps = (n + 31u) / 32u;
    var acc = 0u;
    var have = 0u;
    var pos = 0u;
    var used = 0u;
    var err = false;
    var base = 0u;
    for (var k = 0u; k < steps; k = k + 1u) {
        var live = k < my_count && !err;
        var sym = 0u;
        if (live) {
            while (have <= 24u) {
                var b = 0u;
                if (pos < llen) {
                    b = rd8(ls + pos);
                }
                acc = acc | (b << have);
                have = have + 8u;
                pos = pos + 1u;
            }
            let e = table[reverseBits(acc & 0xfffu) >> 20u];
            let l = e >> 8u;
            if (l == 0u) {
                err = true;
                live = false;
            } else {
                sym = e & 0xffu;
                acc = acc >> l;
                have = have - l;
                used = used + l;
                if (used > 8u * llen) {
                    err = true;
                }
            }
        }
        let has_sm = live && !(elide && sym == 0u);
        has[lane] = select(0u, 1u, has_sm);
        workgroupBarrier();
        var rank = base;
        var cnt = 0u;
        for (var q = 0u; q < nl; q = q + 1u) {
            cnt = cnt + has[q];
            if (q + 1u == lane) {
                rank = base + cnt;
            }
        }
        base = base + cnt;
        workgroupBarrier();
        if (live) {
            let i = k * 32u + lane;
            var x = 0u;
            if (has_sm) {
                if (rank >= nsm) {
                    err = true;
                } else {
                    let q = sm_at + rank * (w - 1u);
                    if (w == 4u) {
                        let v = rd8(q) | (rd8(q + 1u) << 8u) | (rd8(q + 2u) << 16u);
                        x = ((v >> 23u) << 31u) | (sym << 23u) | (v & 0x7fffffu);
                    } else if (w == 2u) {
                        let v = rd8(q);
                        x = ((v >> 7u) << 15u) | (sym << 7u) | (v & 0x7fu);
                    } else {
                        x = sym;
                    }
                }
            }
            if (!err) {
                put_bytes(dst0 + i * w, x, w);
            }
        }
    }
    if (!err && (used + 7u) / 8u != llen) {
        err = true;
    }
    if (elide && base != nsm) {
        err = true;
    }
    if (lane < tail) {
        put8(dst0 + n * w + lane, rd8(s + HF_HUFF_HEADER + lane));
    }
    if (err) {
        atomicOr(&err_any, 1u);
    }
    workgroupBarrier();
    if (lane == 0u && atomicLoad(&err_any) != 0u) {
        hl_flag(F_FLOAT, page);
    }
}
