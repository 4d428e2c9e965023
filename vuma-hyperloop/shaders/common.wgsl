// Hyperloop decoders, Vulkan variants: what the three kernels share. Same semantics as the
// CUDA source and the host functions in `src/kernels.rs` (chunk format, page-table entries,
// status flags, bounds checks).
//
// Arguments (vuma-vulkan binds buffers to set 0 in order and appends scalars, little-endian,
// to one push-constant block): chunk (binding 0), chunk_len: u64, dst (binding 1),
// dst_len: u64, status (binding 2), npages: u32, kinds: u32.
//
// WGSL has no bytes: buffers are arrays of u32 words. The destination is an array of atomic
// words so that a word shared by two byte ranges (the partial word at the end of the data, a
// page boundary that is not a multiple of 4) is written with `atomicAnd` / `atomicOr` on the
// owned bytes only: no byte outside a page's destination range is ever written, and there is
// no race on shared words. Whole words inside a range are written with `atomicStore`.
//
// The scalars must lie inside the bindings' whole words (`chunk_len <= 4 * words`,
// `dst_len <= 4 * words`); otherwise every page is flagged FLAG_TABLE (the host variant
// refuses such a launch). Reads beyond the chunk binding return 0 and are never used for a
// valid page.

const K_ZERO: u32 = 0u;
const K_RAW: u32 = 1u;
const K_BITPLANE: u32 = 2u;
const K_LZ4: u32 = 3u;
const K_DIRECT: u32 = 4u;
// Float-codec pages: decoded by `hl_float` (shaders/hl_float.wgsl); left to it when bit 5 of
// `kinds` is set, as every kernel leaves the kinds of the others.
const K_FLOAT: u32 = 5u;
const F_TABLE: u32 = 1u;
const F_BITPLANE: u32 = 2u;
const F_LZ4: u32 = 4u;
const F_KIND: u32 = 8u;
const MAX_PAGE: u32 = 65536u;

struct Params {
    chunk_len_lo: u32,
    chunk_len_hi: u32,
    dst_len_lo: u32,
    dst_len_hi: u32,
    npages: u32,
    kinds: u32,
}
var<immediate> params: Params;

@group(0) @binding(0) var<storage, read> chunk: array<u32>;
@group(0) @binding(1) var<storage, read_write> dst: array<atomic<u32>>;
@group(0) @binding(2) var<storage, read_write> status: array<atomic<u32>>;

// One page-table entry. Offsets are 32-bit: `in_bounds` implies they lie below the
// (checked) binding sizes, which are below 4 GiB.
struct Entry {
    src_off: u32,
    src_len: u32,
    dst_len: u32,
    dst_off: u32,
    kind: u32,
    width: u32,
    in_bounds: bool,
}

fn hl_flag(f: u32, page: u32) {
    if (arrayLength(&status) >= 2u) {
        atomicOr(&status[0], f);
        atomicMin(&status[1], page);
    }
}

fn chunk_word(w: u32) -> u32 {
    if (w < arrayLength(&chunk)) {
        return chunk[w];
    }
    return 0u;
}

// Byte `i` of the chunk.
fn rd8(i: u32) -> u32 {
    return (chunk_word(i >> 2u) >> ((i & 3u) * 8u)) & 0xffu;
}

// Bytes i..i+4 of the chunk, little-endian (any alignment).
fn rd32(i: u32) -> u32 {
    let sh = (i & 3u) * 8u;
    let lo = chunk_word(i >> 2u);
    if (sh == 0u) {
        return lo;
    }
    return (lo >> sh) | (chunk_word((i >> 2u) + 1u) << (32u - sh));
}

// Byte `i` of the destination (callers keep `i` inside the destination).
fn dst8(i: u32) -> u32 {
    return (atomicLoad(&dst[i >> 2u]) >> ((i & 3u) * 8u)) & 0xffu;
}

// Bytes i..i+4 of the destination (callers keep them inside the destination's words).
fn dst32(i: u32) -> u32 {
    let sh = (i & 3u) * 8u;
    let lo = atomicLoad(&dst[i >> 2u]);
    if (sh == 0u) {
        return lo;
    }
    return (lo >> sh) | (atomicLoad(&dst[(i >> 2u) + 1u]) << (32u - sh));
}

// Stores the bytes of `v` selected by `mask` into destination word `w`, leaving the others.
fn put(w: u32, v: u32, mask: u32) {
    if (mask == 0xffffffffu) {
        atomicStore(&dst[w], v);
    } else if (mask != 0u) {
        atomicAnd(&dst[w], ~mask);
        atomicOr(&dst[w], v & mask);
    }
}

// Stores one byte at destination byte `x`.
fn put8(x: u32, v: u32) {
    let sh = (x & 3u) * 8u;
    put(x >> 2u, (v & 0xffu) << sh, 0xffu << sh);
}

// The mask of the bytes of destination word `w` that lie in [a, b).
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

fn le64(a_lo: u32, a_hi: u32, b_lo: u32, b_hi: u32) -> bool {
    return a_hi < b_hi || (a_hi == b_hi && a_lo <= b_lo);
}

// (a - b) as (lo, hi); callers ensure a >= b.
fn sub64(a_lo: u32, a_hi: u32, b_lo: u32, b_hi: u32) -> vec2<u32> {
    let borrow = select(0u, 1u, a_lo < b_lo);
    return vec2<u32>(a_lo - b_lo, a_hi - b_hi - borrow);
}

// The scalars lie inside the bindings and the page table inside the chunk.
fn hl_args_ok() -> bool {
    let args = params.chunk_len_hi == 0u && params.chunk_len_lo <= arrayLength(&chunk) * 4u
        && params.dst_len_hi == 0u && params.dst_len_lo <= arrayLength(&dst) * 4u;
    let table = le64(params.npages << 5u, params.npages >> 27u, params.chunk_len_lo,
        params.chunk_len_hi);
    return args && table;
}

// Entry `page` (the caller checked `hl_args_ok`) with the bounds checks of `Entry::in_bounds`.
fn hl_entry(page: u32) -> Entry {
    let b = page * 8u;
    let so_lo = chunk_word(b);
    let so_hi = chunk_word(b + 1u);
    let slen = chunk_word(b + 2u);
    let dlen = chunk_word(b + 3u);
    let do_lo = chunk_word(b + 4u);
    let do_hi = chunk_word(b + 5u);
    let kw = chunk_word(b + 6u);
    let c_lo = params.chunk_len_lo;
    let c_hi = params.chunk_len_hi;
    let d_lo = params.dst_len_lo;
    let d_hi = params.dst_len_hi;
    var ok = le64(so_lo, so_hi, c_lo, c_hi);
    if (ok) {
        let r = sub64(c_lo, c_hi, so_lo, so_hi);
        ok = le64(slen, 0u, r.x, r.y);
    }
    ok = ok && le64(do_lo, do_hi, d_lo, d_hi);
    if (ok) {
        let r = sub64(d_lo, d_hi, do_lo, do_hi);
        ok = le64(dlen, 0u, r.x, r.y);
    }
    ok = ok && dlen >= 1u && dlen <= MAX_PAGE;
    return Entry(so_lo, slen, dlen, do_lo, kw & 0xffu, (kw >> 8u) & 0xffu, ok);
}

// The checks every kernel makes first (`hl_common`): true when the page's kind is known
// and launched (its entry in `e`), false when the page must not be touched; `lead` flags.
fn hl_common(page: u32, lead: bool, e: ptr<function, Entry>) -> bool {
    if (!hl_args_ok()) {
        if (lead) {
            hl_flag(F_TABLE, page);
        }
        return false;
    }
    *e = hl_entry(page);
    if ((*e).kind == K_DIRECT) {
        return false;
    }
    let known = (*e).kind <= K_LZ4 || (*e).kind == K_FLOAT;
    if (!known || ((params.kinds >> (*e).kind) & 1u) == 0u) {
        if (lead) {
            hl_flag(F_KIND, page);
        }
        return false;
    }
    return true;
}
