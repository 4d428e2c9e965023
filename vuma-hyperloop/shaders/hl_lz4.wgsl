// hl_lz4 — grid (npages), 32 invocations: one workgroup per page. Invocation 0 parses the
// token stream serially (the same checks as `lz4block::decode`), one sequence at a time, and
// broadcasts it with `workgroupUniformLoad`; all invocations then copy its literals and its
// match, one destination word each, with a storage barrier between the two (a match may
// read the literals just written). A match's byte j comes from `from + j % off`, which lies
// before the match, so every word of it is computed independently.

const LANES: u32 = 32u;
const S_CONT: u32 = 1u;
const S_DONE: u32 = 2u;
const S_BAD: u32 = 3u;

// Header: [go, src, slen, dst, dlen]; then per sequence:
// [state, literal source (chunk byte), literal length, op (page-relative), offset, match length]
var<workgroup> seq: array<u32, 8>;

// Invocation 0's parser state.
var<private> ip: u32;
var<private> op: u32;
var<private> cache_w: u32;
var<private> cache_v: u32;

// Chunk byte i through a one-word cache (the parser reads bytes in order).
fn rdc(i: u32) -> u32 {
    let w = i >> 2u;
    if (w != cache_w) {
        cache_w = w;
        cache_v = chunk_word(w);
    }
    return (cache_v >> ((i & 3u) * 8u)) & 0xffu;
}

// Invocation 0: parses the next sequence of the page at chunk byte s (slen bytes) into
// `seq`, advancing ip and op.
fn parse(s: u32, slen: u32, dlen: u32) {
    var r = array<u32, 8>(S_BAD, 0u, 0u, 0u, 0u, 0u, 0u, 0u);
    seq = r;
    if (ip >= slen) {
        return;
    }
    let token = rdc(s + ip);
    ip = ip + 1u;
    var lit = token >> 4u;
    if (lit == 15u) {
        loop {
            if (ip >= slen) {
                return;
            }
            let b = rdc(s + ip);
            ip = ip + 1u;
            lit = lit + b;
            if (lit > dlen) {
                return;
            }
            if (b != 255u) {
                break;
            }
        }
    }
    if (lit > slen - ip || lit > dlen - op) {
        return;
    }
    r[1] = s + ip;
    r[2] = lit;
    r[3] = op;
    ip = ip + lit;
    op = op + lit;
    if (ip == slen) {
        r[0] = S_DONE;
        seq = r;
        return;
    }
    // From here on a failure still reports the literals (the host copied them too).
    r[0] = S_BAD;
    if (slen - ip < 2u) {
        seq = r;
        return;
    }
    let off = rdc(s + ip) | (rdc(s + ip + 1u) << 8u);
    ip = ip + 2u;
    if (off == 0u || off > op) {
        seq = r;
        return;
    }
    var ml = token & 15u;
    if (ml == 15u) {
        loop {
            if (ip >= slen) {
                seq = r;
                return;
            }
            let b = rdc(s + ip);
            ip = ip + 1u;
            ml = ml + b;
            if (ml > dlen) {
                seq = r;
                return;
            }
            if (b != 255u) {
                break;
            }
        }
    }
    ml = ml + 4u;
    if (ml > dlen - op) {
        seq = r;
        return;
    }
    r[0] = S_CONT;
    r[4] = off;
    r[5] = ml;
    op = op + ml;
    seq = r;
}

// Invocation 0: the checks before the token stream; `seq` = [go, src, slen, dst, dlen].
fn lz4_header(page: u32) {
    seq = array<u32, 8>(0u, 0u, 0u, 0u, 0u, 0u, 0u, 0u);
    var e: Entry;
    if (!hl_common(page, true, &e)) {
        return;
    }
    if (e.kind != K_LZ4) {
        return;
    }
    if (!e.in_bounds) {
        hl_flag(F_TABLE, page);
        return;
    }
    seq = array<u32, 8>(1u, e.src_off, e.src_len, e.dst_off, e.dst_len, 0u, 0u, 0u);
}

@compute @workgroup_size(32)
fn hl_lz4(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let page = wg.x;
    if (page >= params.npages) {
        return;
    }
    if (lane == 0u) {
        lz4_header(page);
    }
    let h = workgroupUniformLoad(&seq);
    if (h[0] == 0u) {
        return;
    }
    let s = h[1];
    let slen = h[2];
    let d = h[3];
    let dlen = h[4];
    ip = 0u;
    op = 0u;
    cache_w = 0xffffffffu;
    var state = S_CONT;
    loop {
        // Every invocation has read the previous sequence.
        workgroupBarrier();
        if (lane == 0u) {
            parse(s, slen, dlen);
        }
        let q = workgroupUniformLoad(&seq);
        state = q[0];
        // Literals: destination bytes [a, b) from chunk bytes src + (x - a).
        let src = q[1];
        let a = d + q[3];
        let b = a + q[2];
        let wb = (b + 3u) >> 2u;
        if (q[2] != 0u) {
            for (var w = (a >> 2u) + lane; w < wb; w = w + LANES) {
                let x = w * 4u;
                if (x >= a && x + 4u <= b) {
                    put(w, rd32(src + (x - a)), 0xffffffffu);
                } else {
                    var v = 0u;
                    for (var k = 0u; k < 4u; k = k + 1u) {
                        if (x + k >= a && x + k < b) {
                            v = v | (rd8(src + (x + k - a)) << (k * 8u));
                        }
                    }
                    put(w, v, byte_mask(w, a, b));
                }
            }
        }
        if (state != S_CONT) {
            break;
        }
        storageBarrier();
        // Match: destination bytes [ma, mb), byte j from `from + j % off`.
        let off = q[4];
        let ma = b;
        let mb = ma + q[5];
        let msrc = ma - off;
        let mwb = (mb + 3u) >> 2u;
        for (var w = (ma >> 2u) + lane; w < mwb; w = w + LANES) {
            let x = w * 4u;
            if (x >= ma && x + 4u <= mb) {
                let r = (x - ma) % off;
                if (r + 4u <= off) {
                    put(w, dst32(msrc + r), 0xffffffffu);
                    continue;
                }
            }
            var v = 0u;
            for (var k = 0u; k < 4u; k = k + 1u) {
                if (x + k >= ma && x + k < mb) {
                    v = v | (dst8(msrc + (x + k - ma) % off) << (k * 8u));
                }
            }
            put(w, v, byte_mask(w, ma, mb));
        }
        storageBarrier();
    }
    if (lane == 0u && (state == S_BAD || op != dlen)) {
        hl_flag(F_LZ4, page);
    }
}
