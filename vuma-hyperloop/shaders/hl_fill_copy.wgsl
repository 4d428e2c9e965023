// hl_fill_copy — grid (npages, y), 256 invocations: zero pages are filled, raw pages copied
// from the chunk. Workgroup (page, y) handles the page's 1 KiB spans y, y + grid.y, ...; one
// invocation per destination word.

@compute @workgroup_size(256)
fn hl_fill_copy(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) tid: u32,
) {
    let page = wg.x;
    if (page >= params.npages) {
        return;
    }
    let lead = wg.y == 0u && tid == 0u;
    var e: Entry;
    if (!hl_common(page, lead, &e)) {
        return;
    }
    let zero = e.kind == K_ZERO;
    if (!zero && e.kind != K_RAW) {
        return;
    }
    if (!e.in_bounds || (zero && e.src_len != 0u) || (!zero && e.src_len != e.dst_len)) {
        if (lead) {
            hl_flag(F_TABLE, page);
        }
        return;
    }
    let d0 = e.dst_off;
    let s0 = e.src_off;
    for (var start = wg.y * 1024u; start < e.dst_len; start = start + nwg.y * 1024u) {
        let a = d0 + start;
        let b = d0 + min(start + 1024u, e.dst_len);
        let wb = (b + 3u) >> 2u;
        for (var w = (a >> 2u) + tid; w < wb; w = w + 256u) {
            let x = w * 4u;
            if (x >= a && x + 4u <= b) {
                var v = 0u;
                if (!zero) {
                    v = rd32(s0 + (x - d0));
                }
                put(w, v, 0xffffffffu);
            } else {
                // A word shared with bytes outside the span: byte by byte.
                var v = 0u;
                if (!zero) {
                    for (var k = 0u; k < 4u; k = k + 1u) {
                        if (x + k >= a && x + k < b) {
                            v = v | (rd8(s0 + (x + k - d0)) << (k * 8u));
                        }
                    }
                }
                put(w, v, byte_mask(w, a, b));
            }
        }
    }
}
