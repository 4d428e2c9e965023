// hl_enc_write — grid (pages, y), 256 invocations: workgroup (page0 + x, y) writes the
// page's entry, padding and header (y = 0) and its groups y, y + grid.y, ... (raw pages:
// its 1 KiB spans).
//
// Invocation 0 checks the page's job (and, for a bitplane page, its records) exactly as the
// CUDA kernel does and broadcasts the result with `workgroupUniformLoad`, so every barrier
// is in uniform control flow. For each group, the planes are staged in workgroup memory
// (invocation t owns elements 4t..4t+4 of each plane, one word), the statistics are checked
// against the records and the data (zero count, every byte in its mask), and the group's
// blocks are assembled in a zeroed workgroup buffer as a bit stream: every byte, nibble and
// packed index is OR-ed into place with workgroup atomics, so no two invocations race on a
// word. Then one invocation per output word stores them.
//
// The output is an array of atomic words: a word that the page shares with bytes outside
// its range (a group boundary, the start of the entry or the padding when the chunk offset
// is not a multiple of 4) is written with `atomicAnd` / `atomicOr` on the owned bytes only,
// which commute with those of any other workgroup; whole words inside the range are
// written with `atomicStore`. No byte outside the page's checked slot is ever written.
//
// Arguments: src (binding 0), src_len: u64, records (binding 1), stats (binding 2), jobs
// (binding 3), out (binding 4), out_len: u64, status (binding 5), npages: u32,
// page_size: u32, width: u32, page0: u32. Scalars outside the bindings' words (or buffers
// too small for `npages`) flag every launched page FLAG_JOB (the host variant refuses such
// a launch).

struct Params {
    src_len_lo: u32,
    src_len_hi: u32,
    out_len_lo: u32,
    out_len_hi: u32,
    npages: u32,
    ps: u32,
    w: u32,
    page0: u32,
}
var<immediate> params: Params;

@group(0) @binding(1) var<storage, read> rec: array<u32>;
@group(0) @binding(2) var<storage, read> stats: array<u32>;
@group(0) @binding(3) var<storage, read> jobs: array<u32>;
@group(0) @binding(4) var<storage, read_write> out: array<atomic<u32>>;
@group(0) @binding(5) var<storage, read_write> status: array<atomic<u32>>;

// [go, entry byte, job word of the entry, page byte, slen, dlen, kind, start, groups,
//  hdr_end, n, tail]: the checked job (go = 0: nothing to do).
var<workgroup> hdr: array<u32, 12>;
// offs[j]: block j's offset in the page (offs[groups * width] = slen).
var<workgroup> offs: array<u32, 65>;
// pl[p * 256 + t]: bytes 4t..4t+4 of plane p of the current group.
var<workgroup> pl: array<u32, 1024>;
// The current group's blocks from byte (destination & 3), zeroed, then OR-ed into place.
const OSTW: u32 = 1028u;
var<workgroup> ost: array<atomic<u32>, 1028>;
// Per value of the current plane, its dictionary index.
var<workgroup> sidx: array<u32, 256>;
// Per invocation, its non-zero bytes of the current plane; per 16 invocations, their sum.
var<workgroup> cnt: array<u32, 256>;
var<workgroup> cblk: array<u32, 16>;
var<workgroup> zc: array<atomic<u32>, 4>;
var<workgroup> bad: atomic<u32>;
var<workgroup> bad_u: u32;

fn he_flag(f: u32, page: u32) {
    atomicOr(&status[0], f);
    atomicMin(&status[1], page);
}

// Stores the bytes of `v` selected by `mask` into output word `w`, leaving the others.
fn put(w: u32, v: u32, mask: u32) {
    if (mask == 0xffffffffu) {
        atomicStore(&out[w], v);
    } else if (mask != 0u) {
        atomicAnd(&out[w], ~mask);
        atomicOr(&out[w], v & mask);
    }
}

// The mask of the bytes of output word `w` that lie in [a, b).
fn byte_mask(w: u32, a: u32, b: u32) -> u32 {
    var m = 0u;
    for (var k = 0u; k < 4u; k = k + 1u) {
        let x = w * 4u + k;
        if (x >= a && x < b) {
            m = m | (0xffu << (k * 8u));
        }
    }
    return m;
}

// ORs `v` into the staged blocks at bit `bit` of byte `byte` (a bit stream, LSB first).
fn ost_or(byte: u32, bit: u32, v: u32) {
    let a = byte * 8u + bit;
    let wi = a >> 5u;
    let sh = a & 31u;
    if (wi < OSTW) {
        atomicOr(&ost[wi], v << sh);
    }
    if (sh != 0u && wi + 1u < OSTW) {
        let hi = v >> (32u - sh);
        if (hi != 0u) {
            atomicOr(&ost[wi + 1u], hi);
        }
    }
}

// Entry `v`'s dictionary index among the values of mask `mk` (bit 0 dropped when `skip`).
fn mask_rank(mk: array<u32, 8>, v: u32, skip: bool) -> u32 {
    var r = 0u;
    let q = v >> 5u;
    for (var i = 0u; i < 8u; i = i + 1u) {
        var x = mk[i];
        if (i == 0u && skip) {
            x = x & ~1u;
        }
        if (i < q) {
            r = r + countOneBits(x);
        } else if (i == q) {
            r = r + countOneBits(x & ((1u << (v & 31u)) - 1u));
        }
    }
    return r;
}

// Invocation 0: every check of the page's job (and records) before its bytes; only `lead`
// (workgroup y = 0) flags, the others see the same.
fn job_check(page: u32, lead: bool) {
    hdr[0] = 0u;
    let ps = params.ps;
    let w = params.w;
    let np = params.npages;
    let out_len = params.out_len_lo;
    let out_words = (out_len >> 2u) + select(0u, 1u, (out_len & 3u) != 0u);
    var args = he_geom_ok(ps, w) && he_src_ok(params.src_len_lo, params.src_len_hi)
        && params.out_len_hi == 0u && out_words <= arrayLength(&out)
        && arrayLength(&status) >= 2u && np <= arrayLength(&rec) / REC
        && np <= arrayLength(&jobs) / JOB_WORDS;
    if (args) {
        args = np <= arrayLength(&stats) / (he_slots(ps, w) * STAT);
    }
    if (!args) {
        if (lead && arrayLength(&status) >= 2u) {
            he_flag(F_JOB, page);
        }
        return;
    }
    let src_len = params.src_len_lo;
    let jb = page * JOB_WORDS;
    let coff_lo = jobs[jb];
    let coff_hi = jobs[jb + 1u];
    let idx = jobs[jb + 2u];
    let en = jb + 4u;
    let soff_lo = jobs[en];
    let soff_hi = jobs[en + 1u];
    let slen = jobs[en + 2u];
    let dlen = jobs[en + 3u];
    let doff_lo = jobs[en + 4u];
    let doff_hi = jobs[en + 5u];
    let kw = jobs[en + 6u];
    let kind = kw & 0xffu;
    let ew = (kw >> 8u) & 0xffu;
    var ok = page < he_pages_in(src_len, ps);
    var start = 0u;
    if (ok) {
        start = page * ps;
        ok = doff_hi == 0u && doff_lo == start && ew == w && dlen == min(src_len - start, ps)
            && coff_hi == 0u && coff_lo <= out_len;
    }
    if (ok) {
        let rem = out_len - coff_lo;
        ok = rem >= 32u && idx <= (rem - 32u) / 32u && soff_hi == 0u && soff_lo <= rem
            && (soff_lo & 15u) == 0u;
        if (ok) {
            let r = rem - soff_lo;
            ok = slen <= r && r - slen >= ((16u - (slen & 15u)) & 15u);
        }
    }
    if (ok) {
        if (kind == 0u) {
            ok = slen == 0u;
        } else if (kind == 1u || kind == 4u) {
            ok = slen == dlen;
        } else {
            ok = kind == 2u;
        }
    }
    if (!ok) {
        if (lead) {
            he_flag(F_JOB, page);
        }
        return;
    }
    let n = dlen / w;
    let groups = (n + GROUP - 1u) / GROUP;
    let tail = dlen % w;
    let entries = groups * w + 1u;
    let hdr_end = 8u + 4u * entries + tail;
    if (kind == 2u) {
        var tot = 0u;
        var sane = true;
        offs[0] = hdr_end;
        for (var j = 0u; j + 1u < entries; j = j + 1u) {
            let x = rec[page * REC + j];
            if (x < 2u || x > 1025u) {
                sane = false;
            }
            tot = tot + min(x, 1026u);
            offs[j + 1u] = hdr_end + tot;
        }
        if (!sane || hdr_end + tot != slen) {
            if (lead) {
                he_flag(F_SIZE, page);
            }
            return;
        }
    }
    hdr = array<u32, 12>(1u, coff_lo + idx * 32u, en, coff_lo + soff_lo, slen, dlen, kind,
        start, groups, hdr_end, n, tail);
}

@compute @workgroup_size(256)
fn hl_enc_write(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) tid: u32,
) {
    let page = params.page0 + wg.x;
    if (page < params.page0 || page >= params.npages) {
        return;
    }
    if (tid == 0u) {
        job_check(page, wg.y == 0u);
    }
    let h = workgroupUniformLoad(&hdr);
    if (h[0] == 0u) {
        return;
    }
    let ent = h[1];
    let en = h[2];
    let po = h[3];
    let slen = h[4];
    let dlen = h[5];
    let kind = h[6];
    let start = h[7];
    let groups = h[8];
    let hdr_end = h[9];
    let n = h[10];
    let tail = h[11];
    let w = params.w;
    if (wg.y == 0u) {
        // The page-table entry (32 bytes at `ent`, any alignment).
        if (tid < 9u) {
            let dw = (ent >> 2u) + tid;
            let x = dw * 4u;
            if (x < ent + 32u) {
                var v = 0u;
                for (var k = 0u; k < 4u; k = k + 1u) {
                    let b = x + k;
                    if (b >= ent && b < ent + 32u) {
                        let r = b - ent;
                        v = v | (((jobs[en + (r >> 2u)] >> ((r & 3u) * 8u)) & 0xffu) << (k * 8u));
                    }
                }
                put(dw, v, byte_mask(dw, ent, ent + 32u));
            }
        }
        // Zero padding from the end of the page's bytes to the next 16-byte boundary.
        let pa = po + slen;
        let pb = po + ((slen + 15u) & ~15u);
        if (tid >= 16u && tid < 21u && pa < pb) {
            let dw = (pa >> 2u) + tid - 16u;
            if (dw * 4u < pb) {
                put(dw, 0u, byte_mask(dw, pa, pb));
            }
        }
    }
    if (kind == 0u) {
        return;
    }
    if (kind != 2u) {
        // Raw page: dlen bytes of the source, 1 KiB spans y, y + grid.y, ...
        for (var a0 = wg.y * 1024u; a0 < dlen; a0 = a0 + nwg.y * 1024u) {
            let a = po + a0;
            let b = po + min(a0 + 1024u, dlen);
            let wb = (b + 3u) >> 2u;
            for (var dw = (a >> 2u) + tid; dw < wb; dw = dw + 256u) {
                let x = dw * 4u;
                if (x >= a && x + 4u <= b && ((x - po) & 3u) == 0u) {
                    put(dw, src[(start + x - po) >> 2u], 0xffffffffu);
                } else {
                    var v = 0u;
                    for (var k = 0u; k < 4u; k = k + 1u) {
                        if (x + k >= a && x + k < b) {
                            v = v | (src8(start + x + k - po) << (k * 8u));
                        }
                    }
                    put(dw, v, byte_mask(dw, a, b));
                }
            }
        }
        return;
    }
    if (wg.y == 0u) {
        // Header, offset table and tail bytes: page bytes [0, hdr_end).
        let hb = po + hdr_end;
        let dw = (po >> 2u) + tid;
        if (dw * 4u < hb) {
            let entries = groups * w + 1u;
            var v = 0u;
            for (var k = 0u; k < 4u; k = k + 1u) {
                let b = dw * 4u + k;
                if (b >= po && b < hb) {
                    let r = b - po;
                    var c = 0u;
                    if (r == 0u) {
                        c = 0xB1u;
                    } else if (r == 1u) {
                        c = w;
                    } else if (r < 4u) {
                        c = (groups >> ((r - 2u) * 8u)) & 0xffu;
                    } else if (r < 8u) {
                        c = (dlen >> ((r - 4u) * 8u)) & 0xffu;
                    } else if (r < 8u + 4u * entries) {
                        c = (offs[(r - 8u) >> 2u] >> (((r - 8u) & 3u) * 8u)) & 0xffu;
                    } else {
                        c = src8(start + n * w + (r - 8u - 4u * entries));
                    }
                    v = v | (c << (k * 8u));
                }
            }
            put(dw, v, byte_mask(dw, po, hb));
        }
    }
    let sst = page * he_slots(params.ps, w) * STAT;
    let rp = page * REC;
    let e = tid * 4u;
    for (var g = wg.y; g < groups; g = g + nwg.y) {
        // The previous group's readers of the workgroup buffers are done.
        workgroupBarrier();
        let e0 = g * GROUP;
        let m = min(n - e0, GROUP);
        let gb = start + e0 * w;
        let nvb = select(0u, min(m - e, 4u), e < m);
        for (var p = 0u; p < w; p = p + 1u) {
            var x = 0u;
            if (nvb > 0u) {
                x = plane_word(gb, m, w, p, e);
            }
            pl[p * 256u + tid] = x;
        }
        for (var k = tid; k < OSTW; k = k + 256u) {
            atomicStore(&ost[k], 0u);
        }
        if (tid < 4u) {
            atomicStore(&zc[tid], 0u);
        }
        if (tid == 0u) {
            atomicStore(&bad, 0u);
        }
        workgroupBarrier();
        // The statistics must give the records' sizes and be those of the data: every
        // byte in its plane's mask, the zero count exact.
        for (var p = 0u; p < w; p = p + 1u) {
            let j = g * w + p;
            var mk: array<u32, 8>;
            for (var q = 0u; q < 8u; q = q + 1u) {
                mk[q] = stats[sst + j * STAT + q];
            }
            let z = stats[sst + j * STAT + 8u];
            let b = he_plan_mask(mk, min(z, m), m);
            var fail = z > m || b.size != rec[rp + j];
            let x = pl[p * 256u + tid];
            var zz = 0u;
            for (var q = 0u; q < nvb; q = q + 1u) {
                let c = (x >> (q * 8u)) & 0xffu;
                fail = fail || ((mk[c >> 5u] >> (c & 31u)) & 1u) == 0u;
                zz = zz + select(0u, 1u, c == 0u);
            }
            if (fail) {
                atomicOr(&bad, 1u);
            }
            if (zz != 0u) {
                atomicAdd(&zc[p], zz);
            }
        }
        workgroupBarrier();
        if (tid == 0u) {
            var f = atomicLoad(&bad);
            for (var p = 0u; p < w; p = p + 1u) {
                if (atomicLoad(&zc[p]) != stats[sst + (g * w + p) * STAT + 8u]) {
                    f = 1u;
                }
            }
            bad_u = f;
        }
        if (workgroupUniformLoad(&bad_u) != 0u) {
            if (tid == 0u) {
                he_flag(F_SIZE, page);
            }
            continue;
        }
        let ga = po + offs[g * w];
        let glen = offs[g * w + w] - offs[g * w];
        let mis = ga & 3u;
        let bm = (m + 7u) >> 3u;
        var off = mis;
        for (var p = 0u; p < w; p = p + 1u) {
            let j = g * w + p;
            var mk: array<u32, 8>;
            for (var q = 0u; q < 8u; q = q + 1u) {
                mk[q] = stats[sst + j * STAT + q];
            }
            let b = he_plan_mask(mk, stats[sst + j * STAT + 8u], m);
            let x = pl[p * 256u + tid];
            var c = 0u;
            for (var q = 0u; q < nvb; q = q + 1u) {
                c = c + select(0u, 1u, ((x >> (q * 8u)) & 0xffu) != 0u);
            }
            cnt[tid] = c;
            // Headers, raw bytes, bitmaps, dictionaries.
            if (b.mode == 0u) {
                if (tid == 0u) {
                    ost_or(off + 1u, 0u, b.value);
                }
            } else if (b.mode == 1u) {
                if (tid == 0u) {
                    ost_or(off, 0u, 1u);
                }
                ost_or(off + 1u + e, 0u, x);
            } else if (b.mode == 2u) {
                if (tid == 0u) {
                    ost_or(off, 0u, 2u | (b.k << 8u) | ((b.d - 1u) << 16u));
                }
                let rk = mask_rank(mk, tid, false);
                sidx[tid] = rk;
                if (((mk[tid >> 5u] >> (tid & 31u)) & 1u) != 0u) {
                    ost_or(off + 3u + rk, 0u, tid);
                }
            } else {
                if (tid == 0u) {
                    ost_or(off, 0u, 3u);
                    ost_or(off + 1u + bm, 0u, (b.nz & 0xffu) | ((b.nz >> 8u) << 8u)
                        | (b.sub << 16u));
                }
                var nib = 0u;
                for (var q = 0u; q < 4u; q = q + 1u) {
                    nib = nib | select(0u, 1u << q, ((x >> (q * 8u)) & 0xffu) != 0u);
                }
                if (nib != 0u) {
                    ost_or(off + 1u, e, nib);
                }
                let rr = off + 4u + bm;
                if (b.sub == 0u) {
                    if (tid == 0u) {
                        ost_or(rr, 0u, b.value);
                    }
                } else if (b.sub == 2u) {
                    if (tid == 0u) {
                        ost_or(rr, 0u, b.k | ((b.d - 1u) << 8u));
                    }
                    let rk = mask_rank(mk, tid, true);
                    sidx[tid] = rk;
                    if (tid != 0u && ((mk[tid >> 5u] >> (tid & 31u)) & 1u) != 0u) {
                        ost_or(rr + 2u + rk, 0u, tid);
                    }
                }
            }
            workgroupBarrier();
            if (tid < 16u) {
                var s = 0u;
                for (var q = 0u; q < 16u; q = q + 1u) {
                    s = s + cnt[tid * 16u + q];
                }
                cblk[tid] = s;
            }
            workgroupBarrier();
            // Packed indices; the non-zero bytes at their ranks.
            if (b.mode == 2u) {
                for (var q = 0u; q < nvb; q = q + 1u) {
                    let v = (x >> (q * 8u)) & 0xffu;
                    let bit = (e + q) * b.k;
                    ost_or(off + 3u + b.d + (bit >> 3u), bit & 7u, sidx[v]);
                }
            } else if (b.mode == 3u && b.sub != 0u) {
                var rk = 0u;
                for (var q = 0u; q < (tid >> 4u); q = q + 1u) {
                    rk = rk + cblk[q];
                }
                for (var q = tid & ~15u; q < tid; q = q + 1u) {
                    rk = rk + cnt[q];
                }
                let rr = off + 4u + bm;
                for (var q = 0u; q < nvb; q = q + 1u) {
                    let v = (x >> (q * 8u)) & 0xffu;
                    if (v != 0u && rk < b.nz) {
                        if (b.sub == 1u) {
                            ost_or(rr + rk, 0u, v);
                        } else {
                            let bit = rk * b.k;
                            ost_or(rr + 2u + b.d + (bit >> 3u), bit & 7u, sidx[v]);
                        }
                    }
                    rk = rk + select(0u, 1u, v != 0u);
                }
            }
            off = off + b.size;
            // This plane's readers of sidx / cnt / cblk are done.
            workgroupBarrier();
        }
        // Store the group's blocks: output bytes [ga, ga + glen), one invocation per word.
        let gbnd = ga + glen;
        let w0 = ga >> 2u;
        let wb = (gbnd + 3u) >> 2u;
        for (var dw = w0 + tid; dw < wb; dw = dw + 256u) {
            let v = atomicLoad(&ost[dw - w0]);
            let x = dw * 4u;
            if (x >= ga && x + 4u <= gbnd) {
                put(dw, v, 0xffffffffu);
            } else {
                put(dw, v, byte_mask(dw, ga, gbnd));
            }
        }
    }
}
