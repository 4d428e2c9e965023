// hl_enc_size — grid (npages, y), 256 invocations: workgroup (page, y) measures the page's
// 1024-element groups y, y + grid.y, ... Invocation t reads elements 4t..4t+4 of each plane
// and marks their values in the plane's presence mask (workgroup atomics) and adds up its
// zero bytes; invocation p < width then plans plane p's block, stores its mask and zero
// count (STAT words) and its size (the page's record), and adds the size and whether the
// block has a non-zero byte to the page's summary (atomics: workgroups of one page share
// it).
//
// Arguments: src (binding 0), src_len: u64, records (binding 1), stats (binding 2),
// summary (binding 3), npages: u32, page_size: u32, width: u32. A bad geometry, or
// buffers too small for `npages`, write nothing (the host variant refuses such a launch).

struct Params {
    src_len_lo: u32,
    src_len_hi: u32,
    npages: u32,
    ps: u32,
    w: u32,
}
var<immediate> params: Params;

@group(0) @binding(1) var<storage, read_write> rec: array<u32>;
@group(0) @binding(2) var<storage, read_write> stats: array<u32>;
@group(0) @binding(3) var<storage, read_write> sums: array<atomic<u32>>;

// pres[p * 8 + q]: mask word q of plane p of the current group.
var<workgroup> pres: array<atomic<u32>, 32>;
// zc[p]: zero bytes of plane p of the current group.
var<workgroup> zc: array<atomic<u32>, 4>;

@compute @workgroup_size(256)
fn hl_enc_size(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) tid: u32,
) {
    let page = wg.x;
    let ps = params.ps;
    let w = params.w;
    let np = params.npages;
    if (page >= np || !he_geom_ok(ps, w) || !he_src_ok(params.src_len_lo, params.src_len_hi)) {
        return;
    }
    let slots = he_slots(ps, w);
    if (np > arrayLength(&rec) / REC || np > arrayLength(&stats) / (slots * STAT)
        || np > arrayLength(&sums) / 2u) {
        return;
    }
    let src_len = params.src_len_lo;
    if (page >= he_pages_in(src_len, ps)) {
        return;
    }
    let start = page * ps;
    let plen = min(src_len - start, ps);
    let n = plen / w;
    let groups = (n + GROUP - 1u) / GROUP;
    let tail = plen % w;
    if (wg.y == 0u && tid < tail && src8(start + n * w + tid) != 0u) {
        atomicOr(&sums[2u * page + 1u], 1u);
    }
    let rp = page * REC;
    let sst = page * slots * STAT;
    for (var g = wg.y; g < groups; g = g + nwg.y) {
        // The previous group's readers of pres / zc are done.
        workgroupBarrier();
        if (tid < 32u) {
            atomicStore(&pres[tid], 0u);
        }
        if (tid < 4u) {
            atomicStore(&zc[tid], 0u);
        }
        workgroupBarrier();
        let e0 = g * GROUP;
        let m = min(n - e0, GROUP);
        let gb = start + e0 * w;
        let e = tid * 4u;
        if (e < m) {
            let nv = min(m - e, 4u);
            for (var p = 0u; p < w; p = p + 1u) {
                let x = plane_word(gb, m, w, p, e);
                var z = 0u;
                for (var q = 0u; q < nv; q = q + 1u) {
                    let b = (x >> (q * 8u)) & 0xffu;
                    let bit = 1u << (b & 31u);
                    let at = p * 8u + (b >> 5u);
                    if ((atomicLoad(&pres[at]) & bit) == 0u) {
                        atomicOr(&pres[at], bit);
                    }
                    z = z + select(0u, 1u, b == 0u);
                }
                if (z != 0u) {
                    atomicAdd(&zc[p], z);
                }
            }
        }
        workgroupBarrier();
        if (tid < w) {
            let p = tid;
            var mk: array<u32, 8>;
            for (var q = 0u; q < 8u; q = q + 1u) {
                mk[q] = atomicLoad(&pres[p * 8u + q]);
            }
            let z = atomicLoad(&zc[p]);
            let b = he_plan_mask(mk, z, m);
            let j = g * w + p;
            for (var q = 0u; q < 8u; q = q + 1u) {
                stats[sst + j * STAT + q] = mk[q];
            }
            stats[sst + j * STAT + 8u] = z;
            rec[rp + j] = b.size;
            atomicAdd(&sums[2u * page], b.size);
            if (z != m) {
                atomicOr(&sums[2u * page + 1u], 1u);
            }
        }
    }
}
