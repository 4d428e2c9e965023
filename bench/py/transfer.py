"""Host tensor -> VUMA buffer -> GPU, against ``tensor.pin_memory().to("cuda",
non_blocking=True)`` timed the same way in the same process.

Usage: ``python bench/py/transfer.py OUT.jsonl [--sizes-mib 64,1024] [--reps N]
[--device cuda] [--data-dir DIR]``

Per size (default 64 MiB and 1 GiB of trained fp32 weights tiled to the size; random bytes
when none are cached), each timed as the median of ``--reps`` runs:

- ``vuma``: ``create_buffer_from(tensor)`` then ``Buffer.prefetch(device)`` (the bytes
  copied into VUMA's host copy, then uploaded: resident on the device when it returns),
  against torch's ``pin_memory().to("cuda", non_blocking=True)`` plus a synchronize;
- ``vuma_pipelined``: ``create_buffer_from(tensor, device=...)`` (the upload sends what is
  already copied into VUMA's host copy while the rest is copied: resident when it
  returns), against the same torch baseline as ``vuma``;
- ``vuma_resident``: ``prefetch`` of a buffer whose host copy exists (a fresh buffer each
  run: the upload alone), against ``.to("cuda", non_blocking=True)`` of an already pinned
  tensor plus a synchronize.

Without torch (or a CUDA device for torch) the VUMA side still runs on the device asked
for (``--device host`` or ``vulkan`` work anywhere) and records without a baseline. The
host tensor is a torch CPU tensor when torch is installed, else a numpy array.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import vuma  # noqa: E402
from common import MIB, Records, median_time, tile, torch_cuda, trained_f32  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", help="JSON lines file to append records to")
    ap.add_argument("--sizes-mib", default="64,1024")
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--device", default=None, help="cuda, vulkan, host, an index or a name (default: the discrete GPU)")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--no-hyperloop", action="store_true")
    a = ap.parse_args()
    rec = Records(a.out)
    torch = torch_cuda()
    m = vuma.UnifiedMemoryManager(hyperloop=not a.no_hyperloop)
    devs = m.devices()
    probe = m.create_buffer(4096)
    dev_name = probe.prefetch(a.device)["device"]
    # `device=` takes what `prefetch` takes; the index of the device it chose for `a.device`
    # (None included) names the same one.
    dev_index = [d["name"] for d in devs].index(dev_name)
    print(f"transfer: VUMA device {dev_name}; devices: {[d['name'] for d in devs]}")
    weights = trained_f32(64 * MIB, a.data_dir)
    source = "trained fp32 weights (all-MiniLM-L6-v2), tiled" if weights else "random bytes (no weights cached)"
    for size_mib in [int(s) for s in a.sizes_mib.split(",") if s]:
        n = size_mib * MIB
        data = tile(weights, n) if weights else np.random.default_rng(1).bytes(n)
        arr = np.frombuffer(data, dtype=np.uint8).copy()
        host = torch.from_numpy(arr) if torch is not None else arr

        def vuma_in():
            b = m.create_buffer_from(host)
            b.prefetch(a.device)

        t_vuma = median_time(vuma_in, a.reps)

        def vuma_pipelined():
            m.create_buffer_from(host, device=dev_index)

        t_pipe = median_time(vuma_pipelined, a.reps)
        pipe_how = "; ".join(
            t["decision"] for t in m.create_buffer_from(host, device=dev_index).prefetch(dev_index)["transfers"]
        ) or "resident when created"
        bufs = [m.create_buffer_from(host) for _ in range(a.reps + 1)]
        it = iter(bufs)
        t_res = median_time(lambda: next(it).prefetch(a.device), a.reps)
        del bufs
        last = m.create_buffer_from(host).prefetch(a.device)
        how = "; ".join(t["decision"] for t in last["transfers"]) or "no transfer"
        base = base_res = None
        if torch is not None:
            def torch_in():
                host.pin_memory().to("cuda", non_blocking=True)
                torch.cuda.synchronize()

            base = n / median_time(torch_in, a.reps) / 1e9
            pinned = host.pin_memory()

            def torch_res():
                pinned.to("cuda", non_blocking=True)
                torch.cuda.synchronize()

            base_res = n / median_time(torch_res, a.reps) / 1e9
        hs = m.stats()["locations"][0]
        print(f"  {size_mib} MiB: host pool {hs['pool_hits']} hits / {hs['pool_misses']} misses, "
              f"{hs['pooled_bytes'] >> 20} MiB pooled")
        rec.add(f"py/transfer/{size_mib}MiB/vuma", dev_name, n / t_vuma / 1e9, "GB/s",
                "torch pin_memory().to(cuda, non_blocking)", base,
                notes=f"{source}; create_buffer_from + prefetch; upload: {how}")
        rec.add(f"py/transfer/{size_mib}MiB/vuma_pipelined", dev_name, n / t_pipe / 1e9, "GB/s",
                "torch pin_memory().to(cuda, non_blocking)", base,
                notes=f"{source}; create_buffer_from(device=) (fill and upload overlapped); "
                      f"later prefetch: {pipe_how}")
        rec.add(f"py/transfer/{size_mib}MiB/vuma_resident", dev_name, n / t_res / 1e9, "GB/s",
                "torch pinned .to(cuda, non_blocking)", base_res,
                notes=f"{source}; prefetch of an existing host copy")
    return 0


if __name__ == "__main__":
    sys.exit(main())
