// Hyperloop's device encoder, Vulkan variants: what the two kernels share. Same semantics
// as the CUDA source (`src/encode.cu`) and the host functions in `src/encode/host.rs`
// (records, statistics, jobs, status flags, bounds checks).
//
// The source is binding 0 of both kernels: an array of u32 words whose binding covers every
// word of the source bytes (`src_len <= 4 * words`; `DeviceEncoder` rounds the range up to
// whole words, or copies the source into a scratch buffer of whole words). Bytes past
// `src_len` in the last word are never used.

const GROUP: u32 = 1024u;
const REC: u32 = 64u;
const STAT: u32 = 9u;
// Words of one job (48 bytes): u64 chunk_off | u32 index | u32 0 | entry (8 words).
const JOB_WORDS: u32 = 12u;
const F_JOB: u32 = 1u;
const F_SIZE: u32 = 2u;

@group(0) @binding(0) var<storage, read> src: array<u32>;

fn he_geom_ok(ps: u32, w: u32) -> bool {
    return (w == 1u || w == 2u || w == 4u) && ps >= 1024u && ps <= 65536u && (ps & 1023u) == 0u;
}

// Statistics slots (groups of a full page × width) per page, STAT words each.
fn he_slots(ps: u32, w: u32) -> u32 {
    return ((ps / w + 1023u) >> 10u) * w;
}

fn he_bits(d: u32) -> u32 {
    if (d <= 1u) {
        return 0u;
    }
    return 32u - countLeadingZeros(d - 1u);
}

// `src_len` bytes (its high word must be 0) lie inside the source binding's words.
fn he_src_ok(len_lo: u32, len_hi: u32) -> bool {
    let words = (len_lo >> 2u) + select(0u, 1u, (len_lo & 3u) != 0u);
    return len_hi == 0u && words <= arrayLength(&src);
}

// Pages of `ps` bytes that start below `len` bytes.
fn he_pages_in(len: u32, ps: u32) -> u32 {
    return len / ps + select(0u, 1u, len % ps != 0u);
}

// Byte `i` of the source (callers keep `i` below `src_len`).
fn src8(i: u32) -> u32 {
    return (src[i >> 2u] >> ((i & 3u) * 8u)) & 0xffu;
}

// Bytes of plane `p` of elements e..e+4 (those below `m`) of the group whose first element
// is at source byte `gb`, elements of `w` bytes: one word, zero past `m`.
fn plane_word(gb: u32, m: u32, w: u32, p: u32, e: u32) -> u32 {
    var x = 0u;
    if (w == 4u && e + 4u <= m) {
        // Element e + q is source word (gb >> 2) + e + q (gb is a multiple of 4).
        let b = (gb >> 2u) + e;
        let sh = p * 8u;
        return ((src[b] >> sh) & 0xffu) | (((src[b + 1u] >> sh) & 0xffu) << 8u)
            | (((src[b + 2u] >> sh) & 0xffu) << 16u) | (((src[b + 3u] >> sh) & 0xffu) << 24u);
    }
    for (var q = 0u; q < 4u; q = q + 1u) {
        if (e + q < m) {
            x = x | (src8(gb + (e + q) * w + p) << (q * 8u));
        }
    }
    return x;
}

// The mode of one block, as `he_plan` picks it.
struct Plan {
    mode: u32,
    sub: u32,
    k: u32,
    d: u32,
    size: u32,
    value: u32,
    nz: u32,
}

// The cheapest mode of a block of m bytes with `distinct` values present, the lowest of
// them `low0` and the lowest non-zero one `low1` (0 when none), and `zeros` zero bytes: the
// cost formulas of the host encoder, ties broken the same way (pack, sparse, raw).
fn he_plan(distinct: u32, low0: u32, low1: u32, zeros: u32, m: u32) -> Plan {
    var b = Plan(1u, 0u, 0u, 0u, 0u, 0u, m - zeros);
    if (distinct <= 1u) {
        b.mode = 0u;
        b.size = 2u;
        b.value = low0;
        return b;
    }
    let raw = 1u + m;
    let kp = he_bits(distinct);
    let pk = kp >= 1u && kp <= 7u;
    var pack = 0u;
    if (pk) {
        pack = 3u + distinct + ((m * kp + 7u) >> 3u);
    }
    let nz = m - zeros;
    let nzd = distinct - select(0u, 1u, zeros > 0u);
    let sp = zeros > 0u && nz > 0u;
    var sub = 1u;
    var ks = 0u;
    var subsz = 0u;
    if (sp) {
        if (nzd == 1u) {
            sub = 0u;
            subsz = 2u;
        } else {
            ks = he_bits(nzd);
            let r = 1u + nz;
            if (ks >= 1u && ks <= 7u && 3u + nzd + ((nz * ks + 7u) >> 3u) < r) {
                sub = 2u;
                subsz = 3u + nzd + ((nz * ks + 7u) >> 3u);
            } else {
                sub = 1u;
                subsz = r;
            }
        }
    }
    var sparse = 0u;
    if (sp) {
        sparse = 3u + ((m + 7u) >> 3u) + subsz;
    }
    var best = raw;
    if (pk && pack < best) {
        best = pack;
    }
    if (sp && sparse < best) {
        best = sparse;
    }
    if (pk && pack == best) {
        b.mode = 2u;
        b.k = kp;
        b.d = distinct;
        b.size = pack;
    } else if (sp && sparse == best) {
        b.mode = 3u;
        b.sub = sub;
        b.k = ks;
        b.d = nzd;
        b.size = sparse;
        b.value = low1;
    } else {
        b.mode = 1u;
        b.size = raw;
    }
    return b;
}

// The plan of a block of `m` bytes from its presence mask and zero count (zeros <= m).
fn he_plan_mask(mk: array<u32, 8>, zeros: u32, m: u32) -> Plan {
    var distinct = 0u;
    var low0 = 256u;
    var low1 = 256u;
    for (var q = 0u; q < 8u; q = q + 1u) {
        let x = mk[q];
        distinct = distinct + countOneBits(x);
        if (low0 == 256u && x != 0u) {
            low0 = q * 32u + firstTrailingBit(x);
        }
        var x1 = x;
        if (q == 0u) {
            x1 = x & ~1u;
        }
        if (low1 == 256u && x1 != 0u) {
            low1 = q * 32u + firstTrailingBit(x1);
        }
    }
    return he_plan(distinct, low0 & 255u, low1 & 255u, zeros, m);
}
