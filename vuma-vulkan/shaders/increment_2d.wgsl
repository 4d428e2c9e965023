// buf[i] += add for i < n, over a 2-D grid of workgroups: the row stride comes from
// num_workgroups, so one dispatch covers more than 65535 * 64 elements on devices
// (lavapipe) whose maxComputeWorkGroupCount[0] is 65535.
struct Params { n: u32, add: u32 }
var<immediate> params: Params;
@group(0) @binding(0) var<storage, read_write> buf: array<u32>;
@compute @workgroup_size(64)
fn increment_2d(@builtin(global_invocation_id) gid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.y * (nwg.x * 64u) + gid.x;
    if (i < params.n) { buf[i] = buf[i] + params.add; }
}
