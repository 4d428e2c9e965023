// hl_bitplane — grid (npages, y), 256 invocations: workgroup (page, y) decodes the page's
// 1024-element groups y, y + grid.y, ... For each group, every plane is decoded into
// workgroup memory (invocation t owns bytes 4t..4t+4 of each plane, one word), then the
// planes are interleaved into the destination, one invocation per destination word. Sparse
// blocks take their ranks from per-word prefix sums of the bitmap's population counts.
//
// The page header is checked by invocation 0 and broadcast with `workgroupUniformLoad`, so
// every barrier is in uniform control flow.

const GROUP: u32 = 1024u;

// planes[p * 256 + t]: bytes 4t..4t+4 of plane p of the current group.
var<workgroup> planes: array<u32, 1024>;
// Population count of bitmap word w of plane p's sparse block (p * 32 + w).
var<workgroup> pc: array<u32, 128>;
// Exclusive prefix sums of `pc` per plane: pre[p * 33 + w], w in 0..=32.
var<workgroup> pre: array<u32, 132>;
var<workgroup> err_any: atomic<u32>;
var<workgroup> err_u: u32;
// [go, src, slen, dst, dlen, width, groups, hdr_end]
var<workgroup> hdr: array<u32, 8>;
// The current group's blocks (whole chunk words covering them), when they fit: the decode
// reads every byte of a block several times.
const STAGE_WORDS: u32 = 1040u;
var<workgroup> stage: array<u32, 1040>;
// Chunk bytes [st_lo, st_hi) are in `stage` (st_lo a multiple of 4; empty when not staged).
var<private> st_lo: u32;
var<private> st_hi: u32;

// Chunk byte i, from the stage when it holds it (same value as `rd8`).
fn gb8(i: u32) -> u32 {
    if (i >= st_lo && i < st_hi) {
        return (stage[(i - st_lo) >> 2u] >> ((i & 3u) * 8u)) & 0xffu;
    }
    return rd8(i);
}

// Chunk bytes i..i+4, from the stage when it holds them (same value as `rd32`).
fn gb32(i: u32) -> u32 {
    if (i >= st_lo && i < st_hi && st_hi - i >= 8u) {
        let k = (i - st_lo) >> 2u;
        let sh = (i & 3u) * 8u;
        if (sh == 0u) {
            return stage[k];
        }
        return (stage[k] >> sh) | (stage[k + 1u] << (32u - sh));
    }
    return rd32(i);
}

// A PACK sub-stream at chunk byte `r`, `rlen` bytes, coding `count` values: (ok, k, d).
fn pack_ok(r: u32, rlen: u32, count: u32) -> vec3<u32> {
    if (rlen < 2u) {
        return vec3<u32>(0u, 0u, 0u);
    }
    let k = gb8(r);
    let d = gb8(r + 1u) + 1u;
    if (k < 1u || k > 7u || d > (1u << k)) {
        return vec3<u32>(0u, k, d);
    }
    let ok = rlen == 2u + d + ((count * k + 7u) >> 3u);
    return vec3<u32>(select(0u, 1u, ok), k, d);
}

// Value `i` of a stream of `k`-bit indices at chunk byte `packed`, LSB first.
fn unpack(packed: u32, i: u32, k: u32) -> u32 {
    let bit = i * k;
    return (gb32(packed + (bit >> 3u)) >> (bit & 7u)) & ((1u << k) - 1u);
}

// Chunk byte offsets [a, b) of block j of the page at chunk byte `s`, and whether they are
// inside the page's data: (ok, a, b).
fn block_at(s: u32, slen: u32, hdr_end: u32, j: u32) -> vec3<u32> {
    let a = rd32(s + 8u + 4u * j);
    let b = rd32(s + 8u + 4u * (j + 1u));
    let ok = a >= hdr_end && a <= b && b <= slen;
    return vec3<u32>(select(0u, 1u, ok), a, b);
}

// Invocation 0: every check of the page before its groups (common, entry, header); only
// `lead` (workgroup y = 0) flags, the others see the same.
fn bitplane_header(page: u32, lead: bool) {
    hdr[0] = 0u;
    var e: Entry;
    if (!hl_common(page, lead, &e)) {
        return;
    }
    if (e.kind != K_BITPLANE) {
        return;
    }
    let w = e.width;
    if (!e.in_bounds || (w != 1u && w != 2u && w != 4u)) {
        if (lead) {
            hl_flag(F_TABLE, page);
        }
        return;
    }
    let s = e.src_off;
    let slen = e.src_len;
    let dlen = e.dst_len;
    var ok = slen >= 8u && rd8(s) == 0xB1u && rd8(s + 1u) == w;
    var groups = 0u;
    var hdr_end = 0u;
    if (ok) {
        groups = rd8(s + 2u) | (rd8(s + 3u) << 8u);
        let n = dlen / w;
        let entries = groups * w + 1u;
        let tail = dlen % w;
        hdr_end = 8u + 4u * entries + tail;
        ok = rd32(s + 4u) == dlen && groups == (n + GROUP - 1u) / GROUP && hdr_end <= slen
            && rd32(s + 8u + 4u * (entries - 1u)) == slen;
    }
    if (!ok) {
        if (lead) {
            hl_flag(F_BITPLANE, page);
        }
        return;
    }
    hdr = array<u32, 8>(1u, s, slen, e.dst_off, dlen, w, groups, hdr_end);
}

// Decodes bytes 4t..4t+4 (those below m) of the m-byte block at chunk bytes [a, b) (plane
// p); returns them as a word, and sets `err_any` on any inconsistency.
fn decode4(bs: u32, blen: u32, m: u32, p: u32, t: u32) -> u32 {
    if (blen < 1u) {
        atomicOr(&err_any, 1u);
        return 0u;
    }
    let i0 = t * 4u;
    let mode = gb8(bs);
    var out = 0u;
    if (mode == 0u) {
        if (blen != 2u) {
            atomicOr(&err_any, 1u);
            return 0u;
        }
        out = gb8(bs + 1u) * 0x01010101u;
    } else if (mode == 1u) {
        if (blen != 1u + m) {
            atomicOr(&err_any, 1u);
            return 0u;
        }
        if (i0 < m) {
            out = gb32(bs + 1u + i0);
        }
    } else if (mode == 2u) {
        let pk = pack_ok(bs + 1u, blen - 1u, m);
        if (pk.x == 0u) {
            atomicOr(&err_any, 1u);
            return 0u;
        }
        let k = pk.y;
        let d = pk.z;
        for (var q = 0u; q < 4u; q = q + 1u) {
            let i = i0 + q;
            if (i < m) {
                let ix = unpack(bs + 3u + d, i, k);
                if (ix >= d) {
                    atomicOr(&err_any, 1u);
                } else {
                    out = out | (gb8(bs + 3u + ix) << (q * 8u));
                }
            }
        }
    } else if (mode == 3u) {
        let bm = (m + 7u) >> 3u;
        if (blen < 1u + bm + 3u) {
            atomicOr(&err_any, 1u);
            return 0u;
        }
        let bitmap = bs + 1u;
        if ((m & 7u) != 0u && (gb8(bitmap + bm - 1u) >> (m & 7u)) != 0u) {
            atomicOr(&err_any, 1u);
            return 0u;
        }
        let nz = gb8(bs + 1u + bm) | (gb8(bs + 2u + bm) << 8u);
        if (pre[p * 33u + 32u] != nz || nz == 0u) {
            atomicOr(&err_any, 1u);
            return 0u;
        }
        let sub = gb8(bs + 3u + bm);
        let r = bs + 4u + bm;
        let rlen = blen - (4u + bm);
        var k = 0u;
        var d = 0u;
        if (sub == 0u) {
            if (rlen != 1u) {
                atomicOr(&err_any, 1u);
                return 0u;
            }
        } else if (sub == 1u) {
            if (rlen != nz) {
                atomicOr(&err_any, 1u);
                return 0u;
            }
        } else if (sub == 2u) {
            let pk = pack_ok(r, rlen, nz);
            if (pk.x == 0u) {
                atomicOr(&err_any, 1u);
                return 0u;
            }
            k = pk.y;
            d = pk.z;
        } else {
            atomicOr(&err_any, 1u);
            return 0u;
        }
        // The four bytes lie in one bitmap word (i0 is a multiple of 4).
        let wi = i0 >> 5u;
        let bits = gb32(bitmap + wi * 4u);
        for (var q = 0u; q < 4u; q = q + 1u) {
            let i = i0 + q;
            let bit = i & 31u;
            if (i < m && ((bits >> bit) & 1u) != 0u) {
                let rank = pre[p * 33u + wi] + countOneBits(bits & ((1u << bit) - 1u));
                var v = 0u;
                if (sub == 0u) {
                    v = gb8(r);
                } else if (sub == 1u) {
                    v = gb8(r + rank);
                } else {
                    let ix = unpack(r + 2u + d, rank, k);
                    if (ix >= d) {
                        atomicOr(&err_any, 1u);
                    } else {
                        v = gb8(r + 2u + ix);
                    }
                }
                out = out | (v << (q * 8u));
            }
        }
    } else {
        atomicOr(&err_any, 1u);
        return 0u;
    }
    // Bytes past m are not part of the block.
    if (i0 >= m) {
        return 0u;
    }
    if (m - i0 < 4u) {
        out = out & ((1u << ((m - i0) * 8u)) - 1u);
    }
    return out;
}

// Byte i of plane p of the current group.
fn plane8(p: u32, i: u32) -> u32 {
    return (planes[p * 256u + (i >> 2u)] >> ((i & 3u) * 8u)) & 0xffu;
}

@compute @workgroup_size(256)
fn hl_bitplane(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) tid: u32,
) {
    let page = wg.x;
    if (page >= params.npages) {
        return;
    }
    if (tid == 0u) {
        bitplane_header(page, wg.y == 0u);
    }
    let h = workgroupUniformLoad(&hdr);
    if (h[0] == 0u) {
        return;
    }
    let s = h[1];
    let slen = h[2];
    let d = h[3];
    let dlen = h[4];
    let w = h[5];
    let groups = h[6];
    let hdr_end = h[7];
    let n = dlen / w;
    let tail = dlen % w;
    if (wg.y == 0u && tid < tail) {
        put8(d + n * w + tid, rd8(s + hdr_end - tail + tid));
    }
    for (var g = wg.y; g < groups; g = g + nwg.y) {
        // The previous group's readers of planes / pre are done.
        workgroupBarrier();
        if (tid == 0u) {
            atomicStore(&err_any, 0u);
        }
        // Stage the group's blocks (contiguous when the offsets are sane).
        let ga = block_at(s, slen, hdr_end, g * w);
        let gz = block_at(s, slen, hdr_end, g * w + w - 1u);
        st_lo = 0u;
        st_hi = 0u;
        if (ga.x != 0u && gz.x != 0u && ga.y <= gz.z) {
            let w0 = (s + ga.y) >> 2u;
            let nw = ((s + gz.z + 3u) >> 2u) - w0;
            if (nw <= STAGE_WORDS) {
                for (var k = tid; k < nw; k = k + 256u) {
                    stage[k] = chunk_word(w0 + k);
                }
                st_lo = w0 * 4u;
                st_hi = st_lo + nw * 4u;
            }
        }
        workgroupBarrier();
        let e0 = g * GROUP;
        let m = min(n - e0, GROUP);
        let bm = (m + 7u) >> 3u;
        if (tid < 128u) {
            let p = tid >> 5u;
            let wi = tid & 31u;
            var c = 0u;
            if (p < w) {
                let blk = block_at(s, slen, hdr_end, g * w + p);
                let bs = s + blk.y;
                let blen = blk.z - blk.y;
                if (blk.x != 0u && blen >= 1u + bm + 3u && gb8(bs) == 3u && wi * 4u < bm) {
                    var word = gb32(bs + 1u + wi * 4u);
                    let nb = bm - wi * 4u;
                    if (nb < 4u) {
                        word = word & ((1u << (nb * 8u)) - 1u);
                    }
                    c = countOneBits(word);
                }
            }
            pc[tid] = c;
        }
        workgroupBarrier();
        if (tid < 132u) {
            let p = tid / 33u;
            let wi = tid % 33u;
            var acc = 0u;
            for (var q = 0u; q < wi; q = q + 1u) {
                acc = acc + pc[p * 32u + q];
            }
            pre[tid] = acc;
        }
        workgroupBarrier();
        for (var p = 0u; p < w; p = p + 1u) {
            let blk = block_at(s, slen, hdr_end, g * w + p);
            var v = 0u;
            if (blk.x == 0u) {
                atomicOr(&err_any, 1u);
            } else {
                v = decode4(s + blk.y, blk.z - blk.y, m, p, tid);
            }
            planes[p * 256u + tid] = v;
        }
        workgroupBarrier();
        if (tid == 0u) {
            err_u = atomicLoad(&err_any);
        }
        if (workgroupUniformLoad(&err_u) != 0u) {
            if (tid == 0u) {
                hl_flag(F_BITPLANE, page);
            }
            continue;
        }
        // Interleave: destination bytes [a, b) = elements e0..e0+m of w bytes.
        let a = d + e0 * w;
        let b = a + m * w;
        let wb = (b + 3u) >> 2u;
        for (var dw = (a >> 2u) + tid; dw < wb; dw = dw + 256u) {
            let x = dw * 4u;
            var v = 0u;
            if (x >= a && x + 4u <= b && ((x - a) & 3u) == 0u) {
                let q = x - a;
                if (w == 4u) {
                    let i = q >> 2u;
                    v = plane8(0u, i) | (plane8(1u, i) << 8u) | (plane8(2u, i) << 16u)
                        | (plane8(3u, i) << 24u);
                } else if (w == 2u) {
                    let i = q >> 1u;
                    v = plane8(0u, i) | (plane8(1u, i) << 8u) | (plane8(0u, i + 1u) << 16u)
                        | (plane8(1u, i + 1u) << 24u);
                } else {
                    v = planes[q >> 2u];
                }
                put(dw, v, 0xffffffffu);
            } else {
                for (var k = 0u; k < 4u; k = k + 1u) {
                    let xb = x + k;
                    if (xb >= a && xb < b) {
                        let q = xb - a;
                        v = v | (plane8(q % w, q / w) << (k * 8u));
                    }
                }
                put(dw, v, byte_mask(dw, a, b));
            }
        }
    }
}
