// Reads `n` vec4<u32> of `src` with a grid-stride loop (coalesced) and stores each
// invocation's wrapping sum in dst[invocation]: a kernel whose cost is reading its input,
// used to compare zero-copy reads of host memory with copy-then-read.
struct Params { n: u32 }
var<immediate> params: Params;
@group(0) @binding(0) var<storage, read> src: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<u32>;
@compute @workgroup_size(256)
fn read_sum(@builtin(global_invocation_id) gid: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>) {
    let threads = nwg.x * 256u;
    var acc = vec4<u32>(0u);
    var i = gid.x;
    loop {
        if (i >= params.n) { break; }
        acc = acc + src[i];
        i = i + threads;
    }
    dst[gid.x] = acc.x + acc.y + acc.z + acc.w;
}
