"""Streaming layers of real weights larger than the device budget, driven from Python: a
read-only kernel per layer through ``process_workload``, against the same loop in torch
(pinned CPU tensors, ``non_blocking`` copies on a side stream into as many device slots as
the budget holds) and against accelerate's ``cpu_offload`` of the same layers.

Usage: ``python bench/py/stream.py OUT.jsonl [--layer-mib 256] [--layers 16] [--passes 4]
[--backend cuda|vulkan] [--dtype fp32|bf16|both] [--data-dir DIR] [--quick]``

The working set is ``layers x layer-mib``; the device budget a quarter of it. GB/s of
weights delivered per steady pass (median of the passes after the first). VUMA runs with
Hyperloop off and on, each as a plain loop and with a look-ahead of one layer (the next
layer's ``Buffer.prefetch`` on a Python thread while this layer's workload runs; both
release the GIL). The kernel reads every 16-byte word (CUDA C, and WGSL for Vulkan, so
``--backend vulkan --quick`` runs on lavapipe here); the torch loop sums each layer (it
reads every byte), accelerate's layers return the sum of their weight.

Without torch, the torch and accelerate baselines are skipped (SKIP lines); without a
CUDA device VUMA runs on Vulkan when ``--backend vulkan`` is given.
"""

import argparse
import os
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import vuma  # noqa: E402
from common import MIB, Records, f32_to_bf16, tile, torch_cuda, trained_f32  # noqa: E402

THREADS = 256

READ_XOR_CUDA = r"""
extern "C" __global__ void read_xor(const uint4* __restrict__ p, unsigned long long n16,
                                    unsigned int* out, unsigned int n_out) {
    unsigned int acc = 0;
    unsigned long long stride = (unsigned long long)gridDim.x * blockDim.x;
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n16; i += stride) {
        uint4 v = p[i];
        acc ^= v.x ^ v.y ^ v.z ^ v.w;
    }
    unsigned int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t < n_out) out[t] = acc;
}
"""

# WGSL has no 64-bit integers: the u64 word count arrives as two u32 halves and the shader
# uses the low one, which holds the whole count below 64 GiB per layer (checked in main).
READ_XOR_WGSL = """
struct Params { n16_lo: u32, n16_hi: u32, n_out: u32 }
var<immediate> params: Params;
@group(0) @binding(0) var<storage, read> p: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read_write> out: array<u32>;
@compute @workgroup_size(256)
fn read_xor(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    var acc = 0u;
    let stride = nwg.x * 256u;
    var i = gid.x;
    loop {
        if (i >= params.n16_lo) { break; }
        let v = p[i];
        acc = acc ^ v.x ^ v.y ^ v.z ^ v.w;
        i = i + stride;
    }
    if (gid.x < params.n_out) { out[gid.x] = acc; }
}
"""


def read_xor_kernel() -> vuma.Kernel:
    # Declared as (p, n16: u64, out, n_out: u32); the WGSL push constants read the u64 as
    # two u32 halves (little-endian), so one signature serves both backends.
    return vuma.Kernel(
        "read_xor", ["in p", "u64 n16", "out out", "u32 n_out"],
        cuda=READ_XOR_CUDA, wgsl=READ_XOR_WGSL,
        bounds=[("n16", "p", 16), ("n_out", "out", 4)],
    )


def _prefetch(buf, failed: list) -> None:
    """A look-ahead upload; a transient refusal (the budget is full of copies in use) changes
    nothing: the workload that needs the layer uploads it then."""
    try:
        buf.prefetch(0)
    except (vuma.BudgetExceededError, vuma.OutOfMemoryError) as e:
        failed.append(e)


def vuma_stream(data: bytes, layer: int, layers: int, passes: int, backend: str,
                hyperloop: bool, lookahead: bool, grid: int):
    total = layer * layers
    m = vuma.UnifiedMemoryManager(cuda=backend == "cuda", vulkan=backend == "vulkan",
                                  host=False, hyperloop=hyperloop, budgets={0: total // 4})
    t = time.perf_counter()
    bufs = [m.create_buffer_from(data) for _ in range(layers)]
    created = time.perf_counter() - t
    n_out = grid * THREADS
    out = m.create_buffer(n_out * 4)
    k = read_xor_kernel()
    work = [vuma.GPUWorkload(f"layer-{i}", "INFERENCE", 0.9, kernel=k,
                             args=[b, layer // 16, out, n_out], grid=grid, block=THREADS)
            for i, b in enumerate(bufs)]
    times, notes, failed = [], "", []
    for p in range(passes):
        t = time.perf_counter()
        link, first = 0, ""
        ahead = None
        if lookahead:
            ahead = threading.Thread(target=_prefetch, args=(bufs[0], failed))
            ahead.start()
        for i, w in enumerate(work):
            this, ahead = ahead, None
            if lookahead and i + 1 < layers:
                ahead = threading.Thread(target=_prefetch, args=(bufs[i + 1], failed))
                ahead.start()
            r = m.process_workload(w)
            if this is not None:
                this.join()
            link += r.link_bytes
            if not first:
                d = r.to_dict()
                tr = [x for b in d["buffers"] for x in b["transfers"]]
                if tr:
                    first = f'{tr[0]["kind"]}: {tr[0]["decision"]}'
        s = time.perf_counter() - t
        if p > 0:
            times.append(s)
        notes = f'pass {p}: {total / s / 1e9:.1f} GB/s, {link / MIB:.0f} MiB over the link, first transfer "{first}"'
    ev = m.stats()["locations"][1]["evictions"]
    notes += f"; created {layers} layers in {created:.2f} s, {ev} evictions"
    if failed:
        notes += f"; {len(failed)} look-ahead uploads refused (budget full of copies in use)"
    return total / statistics.median(times) / 1e9, notes, m.devices()[0]["name"]


def torch_loop(torch, data: bytes, layer: int, layers: int, passes: int, dtype) -> float:
    """Pinned CPU tensors, a copy stream and a compute stream, as many device slots as the
    budget holds; the copy of layer i+1 overlaps the kernel of layer i (events order slot
    reuse)."""
    slots = max(2, (layer * layers // 4) // layer)
    host = [torch.frombuffer(bytearray(data), dtype=torch.uint8).pin_memory() for _ in range(layers)]
    dev = [torch.empty(layer, dtype=torch.uint8, device="cuda") for _ in range(slots)]
    cs, ks = torch.cuda.Stream(), torch.cuda.Stream()
    copied = [torch.cuda.Event() for _ in range(slots)]
    done = [torch.cuda.Event() for _ in range(slots)]
    acc = torch.zeros((), dtype=torch.float32, device="cuda")
    times = []
    for p in range(passes):
        torch.cuda.synchronize()
        t = time.perf_counter()
        for i, h in enumerate(host):
            s = i % slots
            with torch.cuda.stream(cs):
                cs.wait_event(done[s])
                dev[s].copy_(h, non_blocking=True)
                copied[s].record(cs)
            with torch.cuda.stream(ks):
                ks.wait_event(copied[s])
                acc += dev[s].view(dtype).float().sum() if dtype != torch.float32 else dev[s].view(dtype).sum()
                done[s].record(ks)
        ks.synchronize()
        if p > 0:
            times.append(time.perf_counter() - t)
    return layer * layers / statistics.median(times) / 1e9


def accelerate_offload(torch, data: bytes, layer: int, layers: int, passes: int, dtype):
    """accelerate's ``cpu_offload`` of the same layers: each layer's weight comes to the GPU
    for its forward (which sums it) and leaves after."""
    try:
        from accelerate import cpu_offload
    except ImportError:
        print("SKIP: accelerate baseline: accelerate is not installed")
        return None

    class Layer(torch.nn.Module):
        def __init__(self):
            super().__init__()
            w = torch.frombuffer(bytearray(data), dtype=torch.uint8).view(dtype).clone()
            self.weight = torch.nn.Parameter(w, requires_grad=False)

        def forward(self, x):
            return x + self.weight.float().sum()

    model = torch.nn.Sequential(*[Layer() for _ in range(layers)])
    cpu_offload(model, execution_device=torch.device("cuda"))
    x = torch.zeros((), device="cuda")
    times = []
    with torch.no_grad():
        for p in range(passes):
            torch.cuda.synchronize()
            t = time.perf_counter()
            model(x)
            torch.cuda.synchronize()
            if p > 0:
                times.append(time.perf_counter() - t)
    return layer * layers / statistics.median(times) / 1e9


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--layer-mib", type=int, default=256)
    ap.add_argument("--layers", type=int, default=16)
    ap.add_argument("--passes", type=int, default=4)
    ap.add_argument("--backend", choices=["cuda", "vulkan"], default="cuda")
    ap.add_argument("--dtype", choices=["fp32", "bf16", "both"], default="both")
    ap.add_argument("--grid", type=int, default=0, help="blocks per launch (default: 4 x compute units, or 528)")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--quick", action="store_true", help="8 layers of 16 MiB")
    a = ap.parse_args()
    if a.quick:
        a.layer_mib, a.layers = 16, 8
    layer = a.layer_mib * MIB
    if layer // 16 >= 1 << 32:
        print("layers must be below 64 GiB (the WGSL kernel counts words in 32 bits)")
        return 2
    w = trained_f32(64 * MIB, a.data_dir)
    if w is None:
        print("SKIP: stream: no trained weights cached: run `cargo xtask fetch-data` or set VUMA_DATA_DIR "
              "to a folder with minilm-f32.bin or model.safetensors")
        return 0
    rec = Records(a.out)
    torch = torch_cuda() if a.backend == "cuda" else None
    grid = a.grid or 528
    kinds = ["bf16", "fp32"] if a.dtype == "both" else [a.dtype]
    for kind in kinds:
        data = tile(f32_to_bf16(w) if kind == "bf16" else w, layer)
        case = f"{kind}/{a.layer_mib}MiB"
        print(f"stream {case}: {a.layers} layers, budget {a.layers * a.layer_mib // 4} MiB, backend {a.backend}")
        base = acc = None
        if torch is not None:
            tdt = torch.bfloat16 if kind == "bf16" else torch.float32
            base = torch_loop(torch, data, layer, a.layers, a.passes, tdt)
            acc = accelerate_offload(torch, data, layer, a.layers, a.passes, tdt)
            dev_name = torch.cuda.get_device_name(0)
            if acc is not None:
                rec.add(f"py/stream/{case}/accelerate_cpu_offload", dev_name, acc, "GB/s",
                        "torch pinned side-stream loop", base,
                        notes="accelerate.cpu_offload of the same layers (a record of the baselines)")
        for hl, la in [(False, False), (False, True), (True, False), (True, True)]:
            tag = ("hyperloop_on" if hl else "hyperloop_off") + ("_prefetch" if la else "")
            try:
                gbs, notes, dev = vuma_stream(data, layer, a.layers, a.passes, a.backend, hl, la, grid)
            except vuma.VumaError as e:
                print(f"SKIP: stream {case} {tag}: {type(e).__name__}: {e}")
                continue
            rec.add(f"py/stream/{case}/vuma_{tag}", dev, gbs, "GB/s",
                    "torch pinned side-stream loop", base, notes=notes)
            if acc:
                rec.add(f"py/stream/{case}/vuma_{tag}_vs_accelerate", dev, gbs, "GB/s",
                        "accelerate cpu_offload", acc, notes="same run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
