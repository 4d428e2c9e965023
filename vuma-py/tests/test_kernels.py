"""Built-in and user kernels on every backend present; bad arguments are exceptions."""

import pytest

import vuma
from vuma import GPUWorkload, Kernel

np = pytest.importorskip("numpy")

SCALE_WGSL = """
struct Params { n: u32, k: f32 }
var<immediate> params: Params;
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@compute @workgroup_size(64)
fn scale(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    var i = gid.x;
    loop {
        if (i >= params.n) { break; }
        y[i] = x[i] * params.k;
        i = i + nwg.x * 64u;
    }
}
"""

SCALE_CUDA = r"""
extern "C" __global__ void scale(const float* x, float* y, unsigned int n, float k) {
    for (unsigned int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
        y[i] = x[i] * k;
}
"""


def scale_kernel():
    return Kernel("scale", ["in x", "out y", "u32 n", "f32 k"], cuda=SCALE_CUDA, wgsl=SCALE_WGSL,
                  bounds=[("n", "x", 4), ("n", "y", 4)])


def test_builtin_relu_scale_on_every_backend(any_backend):
    m = any_backend
    n = 100_000
    a = np.linspace(-5, 5, n, dtype=np.float32)
    x = m.create_buffer_from(a)
    y = m.create_buffer(a.nbytes, dtype=np.float32)
    r = m.process_workload(GPUWorkload("relu", "INFERENCE", 0.9, kernel=vuma.kernels.relu_scale(),
                                       args=[x, y, n, 2.0]))
    assert r.backend == m.devices()[0]["backend"]
    assert r.bytes_moved >= a.nbytes or r.backend == "host"
    np.testing.assert_allclose(y.to_numpy(), np.maximum(a, 0) * 2)
    d = r.to_dict()
    assert d["buffers"][0]["size"] == a.nbytes and not d["planned"]


def test_builtins_and_launch_geometry():
    assert set(vuma.BUILTIN_KERNELS) == {"relu_scale", "blend", "scale_u32"}
    k = vuma.kernels.blend()
    assert k.params == ["in a", "in b", "out dst", "u32 n"]
    assert "host" in k.backends and "cuda" in k.backends
    assert vuma.kernels.launch_for(1 << 30) == ((4096, 1, 1), (64, 1, 1))
    w = GPUWorkload("g", "UI", kernel=vuma.kernels.scale_u32(), args=[vuma.UnifiedMemoryManager(cuda=False, vulkan=False).create_buffer(4000), 1000, 1, 1])
    assert w.launch == ((16, 1, 1), (64, 1, 1))


def test_user_wgsl_kernel_on_vulkan():
    from conftest import backend_manager

    m = backend_manager("vulkan")
    n = 5000
    a = np.arange(n, dtype=np.float32)
    x = m.create_buffer_from(a)
    y = m.create_buffer(a.nbytes, dtype=np.float32)
    r = m.process_workload(GPUWorkload("scale", "COMPUTE", kernel=scale_kernel(), args=[x, y, n, 3.0]))
    assert r.backend == "vulkan"
    np.testing.assert_array_equal(y.to_numpy(), a * 3)


def test_user_cuda_kernel_on_cuda():
    from conftest import backend_manager

    m = backend_manager("cuda")
    n = 5000
    a = np.arange(n, dtype=np.float32)
    x = m.create_buffer_from(a)
    y = m.create_buffer(a.nbytes, dtype=np.float32)
    r = m.process_workload(GPUWorkload("scale", "COMPUTE", kernel=scale_kernel(), args=[x, y, n, 3.0]))
    assert r.backend == "cuda"
    np.testing.assert_array_equal(y.to_numpy(), a * 3)


def test_a_kernel_with_no_variant_here_is_no_eligible_device(host):
    k = Kernel("scale", ["in x", "out y", "u32 n", "f32 k"], cuda=SCALE_CUDA)
    x, y = host.create_buffer(64), host.create_buffer(64)
    with pytest.raises(vuma.NoEligibleDeviceError):
        host.process_workload(GPUWorkload("s", "COMPUTE", kernel=k, args=[x, y, 16, 1.0]))


def test_wrong_arguments_are_exceptions_never_crashes(host):
    k = vuma.kernels.relu_scale()
    x, y = host.create_buffer(64), host.create_buffer(64)
    bad = [
        [x, y, 16],                  # too few
        [x, y, 16, 1.0, 5],          # too many
        [x, 16, 16, 1.0],            # a number for a buffer
        [x, y, y, 1.0],              # a buffer for a number
        [x, y, -1, 1.0],             # negative u32
        [x, y, 1 << 40, 1.0],        # u32 overflow
        [x, y, 1.5, 1.0],            # float for u32
        [x, y, 16, "2"],             # str for f32
        [x, y, "16", 1.0],           # str for u32
    ]
    for args in bad:
        with pytest.raises(vuma.InvalidArgumentError):
            GPUWorkload("k", "UI", kernel=k, args=args)
    # Counts larger than the buffers are refused before launch, by the signature's bounds.
    with pytest.raises(vuma.InvalidArgumentError, match="do not fit"):
        host.process_workload(GPUWorkload("k", "UI", kernel=k, args=[x, y, 17, 1.0]))
    with pytest.raises(vuma.InvalidArgumentError):
        GPUWorkload("k", "UI", kernel=k, args=[x, y, 16, 1.0], grid=0)
    with pytest.raises(vuma.InvalidArgumentError):
        GPUWorkload("k", "UI", kernel=k, args=[x, y, 16, 1.0], block=(1, 2, 3, 4))


def test_malformed_kernels_are_exceptions():
    with pytest.raises(vuma.InvalidArgumentError, match="unknown kind"):
        Kernel("k", ["float x"], cuda=SCALE_CUDA)
    with pytest.raises(vuma.InvalidArgumentError, match="<kind> <name>"):
        Kernel("k", ["x"], cuda=SCALE_CUDA)
    with pytest.raises(vuma.InvalidArgumentError, match="twice"):
        Kernel("k", ["in x", "out x"], cuda=SCALE_CUDA)
    with pytest.raises(vuma.InvalidArgumentError, match="not a scalar"):
        Kernel("k", ["in x", "u32 n"], cuda=SCALE_CUDA, bounds=[("m", "x", 4)])
    with pytest.raises(vuma.InvalidArgumentError, match="not a buffer"):
        Kernel("k", ["in x", "u32 n"], cuda=SCALE_CUDA, bounds=[("n", "n", 4)])
    with pytest.raises(vuma.InvalidArgumentError, match="no code"):
        Kernel("k", ["in x"])
    with pytest.raises(vuma.InvalidArgumentError, match="SPIR-V"):
        Kernel("k", ["in x"], spirv=b"abc")
    with pytest.raises(vuma.CompileError):
        Kernel("k", ["in x"], wgsl="fn broken( {")
    k = scale_kernel()
    assert k.backends == ["cuda", "vulkan"] and k.name == "scale"
    assert "scale" in repr(k)


def test_kernel_runs_in_threads_concurrently(host):
    import threading

    n = 1 << 16
    errors = []

    def work(i):
        try:
            a = np.full(n, float(i), dtype=np.float32)
            x = host.create_buffer_from(a)
            y = host.create_buffer(a.nbytes, dtype=np.float32)
            host.process_workload(GPUWorkload(f"w{i}", "COMPUTE", kernel=vuma.kernels.relu_scale(), args=[x, y, n, 1.0]))
            assert (y.to_numpy() == i).all()
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    ts = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors
