// dst[i] = per-byte average of a[i] and b[i] (RGBA8 pixels as u32), grid-stride.
struct Params { n: u32 }
var<immediate> params: Params;
@group(0) @binding(0) var<storage, read> a: array<u32>;
@group(0) @binding(1) var<storage, read> b: array<u32>;
@group(0) @binding(2) var<storage, read_write> dst: array<u32>;
@compute @workgroup_size(64)
fn blend(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let stride = nwg.x * 64u;
    var i = gid.x;
    loop {
        if (i >= params.n) { break; }
        let p = a[i];
        let q = b[i];
        dst[i] = (p & q) + (((p ^ q) >> 1u) & 0x7f7f7f7fu);
        i = i + stride;
    }
}
