// y[i] = max(x[i], 0) * scale, grid-stride over n elements (f32).
struct Params { n: u32, scale: f32 }
var<immediate> params: Params;
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@compute @workgroup_size(64)
fn relu_scale(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let stride = nwg.x * 64u;
    var i = gid.x;
    loop {
        if (i >= params.n) { break; }
        y[i] = max(x[i], 0.0) * params.scale;
        i = i + stride;
    }
}
