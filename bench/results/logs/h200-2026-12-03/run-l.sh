#!/usr/bin/env bash
# H200 run L (2026-12-03, session 4): run K part 2 measured pageable copies (CUDA bench) and
# first uploads at half of run J's and of 2026-12-01's rates while pinned DMA was
# unchanged. This run repeats those two benches on a fresh machine, after a probe of the
# host's own memory bandwidth (numpy copies of 1 GiB, one thread), to tell the machine
# from the code.
set -u
OUT="${OUT:-/tmp/out}"
B=target/hw-bundle
B2=target/hw-bundle2
export VUMA_REQUIRE_HW=1 VUMA_DATA_DIR="$PWD/.rdata"
mkdir -p "$OUT"
echo "== host memory probe"
python3 - <<'PY' 2>&1 | tee "$OUT/host.txt"
import numpy as np, time, os
a = np.ones(1 << 30, np.uint8); b = np.empty_like(a); np.copyto(b, a)
ts = []
for _ in range(5):
    t = time.perf_counter(); np.copyto(b, a); ts.append(time.perf_counter() - t)
print(f"numpy copy 1 GiB, one thread: {(1 << 30) / min(ts) / 1e9:.1f} GB/s (best of 5), cores {os.cpu_count()}")
PY
grep -m1 "model name" /proc/cpuinfo | tee -a "$OUT/host.txt"
echo "== cuda bench"
VUMA_BENCH_OUT="$OUT/cuda.jsonl" timeout 150 $B2/benches/vuma-cuda-cuda > /tmp/b-cuda.log 2>&1
echo "rc=$?"; grep -E "^cuda/(h2d|d2h)_pageable|^cuda/evict" /tmp/b-cuda.log | cut -c1-170
echo "== first upload bench"
VUMA_BENCH_OUT="$OUT/first.jsonl" timeout 100 $B/benches/vuma-first_upload > /tmp/b-first.log 2>&1
echo "rc=$?"; grep -vE "^\s*$" /tmp/b-first.log | grep -vE "^manager/" | cut -c1-230 | tail -8
cat /tmp/b-cuda.log /tmp/b-first.log > "$OUT/benches.log"
