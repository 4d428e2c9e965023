"""Shared pieces of VUMA's Python benchmarks: real weights, records, timing.

Records are JSON lines in the format of ``cargo xtask bench``: ``bench``, ``device``,
``value``, ``unit``, ``baseline``, ``baseline_value``, ``higher_is_better``, ``ratio`` (how
many times better VUMA did than the baseline), plus ``notes``.
"""

import json
import os
import statistics
import struct
import time
from pathlib import Path
from typing import Callable, List, Optional

MIB = 1 << 20

#: The raw slice of trained fp32 weights a hardware bundle carries (little-endian f32, no
#: header), and the safetensors file ``cargo xtask fetch-data`` caches.
RAW_F32 = "minilm-f32.bin"
SAFETENSORS = "model.safetensors"


def data_dirs(explicit: Optional[str]) -> List[Path]:
    """Where to look for weights: the argument, $VUMA_DATA_DIR, .rdata, target/vuma-data."""
    root = Path(__file__).resolve().parents[2]
    dirs = [explicit, os.environ.get("VUMA_DATA_DIR"), root / ".rdata", root / "target" / "vuma-data"]
    return [Path(d) for d in dirs if d]


def trained_f32(max_bytes: int, data_dir: Optional[str] = None) -> Optional[bytes]:
    """The last ``max_bytes`` of all-MiniLM-L6-v2's fp32 tensors (the encoder layers), as
    little-endian bytes, from the raw slice or the safetensors file; ``None`` when neither
    is cached (the same bytes ``vuma_hyperloop::realdata::trained_f32`` reads)."""
    for d in data_dirs(data_dir):
        raw = d / RAW_F32
        if raw.is_file():
            b = raw.read_bytes()
            n = min(len(b), max_bytes) // 4 * 4
            return b[len(b) - n:]
        st = d / SAFETENSORS
        if st.is_file():
            return _safetensors_f32(st.read_bytes(), max_bytes)
    return None


def _safetensors_f32(file: bytes, max_bytes: int) -> bytes:
    (hlen,) = struct.unpack("<Q", file[:8])
    header = json.loads(file[8:8 + hlen])
    body = file[8 + hlen:]
    spans = sorted(
        tuple(v["data_offsets"]) for k, v in header.items()
        if k != "__metadata__" and v.get("dtype") == "F32"
    )
    data = b"".join(body[a:b] for a, b in spans)
    n = min(len(data), max_bytes) // 4 * 4
    return data[len(data) - n:]


def tile(data: bytes, length: int) -> bytes:
    """``data`` repeated to exactly ``length`` bytes."""
    reps = length // len(data) + 1
    return (data * reps)[:length]


def f32_to_bf16(data: bytes) -> bytes:
    """Round-to-nearest-even bf16 of little-endian f32 bytes (numpy)."""
    import numpy as np

    u = np.frombuffer(data, dtype="<u4")
    r = ((u >> 16) & 1) + 0x7FFF
    return ((u + r) >> 16).astype("<u2").tobytes()


def median_time(f: Callable[[], None], reps: int, warmup: int = 1) -> float:
    """Median wall time of ``f`` in seconds over ``reps`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        f()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


class Records:
    """JSON lines appended to a file (and echoed as a table row)."""

    def __init__(self, path: str):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def add(self, bench: str, device: str, value: float, unit: str, baseline: str,
            baseline_value: Optional[float], higher_is_better: bool = True, notes: str = "") -> None:
        ratio = None
        if baseline_value and value:
            ratio = value / baseline_value if higher_is_better else baseline_value / value
        rec = {
            "bench": bench, "device": device, "value": value, "unit": unit,
            "baseline": baseline, "baseline_value": baseline_value,
            "higher_is_better": higher_is_better, "ratio": ratio, "notes": notes,
        }
        with self.path.open("a") as f:
            f.write(json.dumps(rec) + "\n")
        r = "-" if ratio is None else f"{ratio:.2f}x"
        b = "-" if baseline_value is None else f"{baseline_value:.2f}"
        print(f"  {bench:<48} {value:9.2f} {unit:<5} vs {baseline} {b} -> {r}  {notes}", flush=True)


def torch_cuda():
    """``torch`` when it is installed and sees a CUDA device, else ``None`` (with a SKIP
    line saying why)."""
    try:
        import torch
    except ImportError:
        print("SKIP: torch baselines: torch is not installed")
        return None
    if not torch.cuda.is_available():
        print("SKIP: torch baselines: torch sees no CUDA device")
        return None
    return torch
