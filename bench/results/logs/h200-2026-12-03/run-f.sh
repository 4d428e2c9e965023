#!/usr/bin/env bash
# H200 run F (2026-12-03): the Python package (abi3 wheel built by maturin) — pytest with
# CUDA and Vulkan required, the seed block, the transfer and streaming benchmarks against
# torch and accelerate (bench/py/run-gpu.sh) — and the Rust streaming bench after the float
# prior fix; meanwhile, on ten other cores (taskset 6-15), the three fuzz targets run D's
# time limit cut off (chunk, float, cost_model; 10 million executions each). Carried:
# target/hw-bundle (`-p vuma`), .gl, .vvl, .rdata, .whl (wheel + pytest wheels), .fz.
set -u
OUT="${OUT:-/tmp/out}"
mkdir -p "$OUT"
F="$OUT/fuzz"; mkdir -p "$F"
(
  cd .fz
  for t in chunk float cost_model; do
    mkdir -p "/tmp/fw/$t" "$F/art-$t"
    start=$(date +%s)
    timeout 380 taskset -c 6-15 ./bin/$t "/tmp/fw/$t" corpus/$t -print_final_stats=1 \
      -rss_limit_mb=2048 -timeout=10 -runs=10000000 -fork=10 -artifact_prefix="$F/art-$t/" > "/tmp/fw/$t.log" 2>&1
    st=$?
    n=$(grep -oE 'fuzzed for [0-9]+ iterations' "/tmp/fw/$t.log" | grep -oE '[0-9]+' | tail -1)
    [ -z "$n" ] && n=$(grep -oE '^#[0-9]+' "/tmp/fw/$t.log" | tr -d '#' | tail -1)
    echo "$t execs=${n:-0} seconds=$(( $(date +%s) - start )) rc=$st crashes=$(find "$F/art-$t" -type f | wc -l)"
  done
) > /tmp/fuzz.txt 2>&1 &
FZ=$!
export STREAM_ARGS="--layer-mib 128 --layers 16" PYTEST_TIMEOUT=150 TRANSFER_TIMEOUT=120 STREAM_TIMEOUT=240
taskset -c 0-5 bash bench/py/run-gpu.sh .whl/vuma-*.whl "$OUT/py" 2>&1 | tail -60
echo "== rust stream bench"
VUMA_DATA_DIR="$PWD/.rdata" VUMA_BENCH_OUT="$OUT/stream.jsonl" timeout 150 taskset -c 0-5 target/hw-bundle/benches/vuma-stream > /tmp/stream.log 2>&1
echo "rc=$?"; grep -E "^  |vuma hyper" /tmp/stream.log | cut -c1-170
wait $FZ; echo "== fuzz"; cat /tmp/fuzz.txt; rmdir "$F"/art-* 2>/dev/null; ls "$OUT/py"
