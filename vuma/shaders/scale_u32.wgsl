// buf[i] = buf[i] * mul + add (u32, wrapping), grid-stride.
struct Params { n: u32, mul: u32, add: u32 }
var<immediate> params: Params;
@group(0) @binding(0) var<storage, read_write> buf: array<u32>;
@compute @workgroup_size(64)
fn scale_u32(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let stride = nwg.x * 64u;
    var i = gid.x;
    loop {
        if (i >= params.n) { break; }
        buf[i] = buf[i] * params.mul + params.add;
        i = i + stride;
    }
}
