#!/usr/bin/env bash
# H200 run B (2026-12-03): uploads outside the lock, prefetch, packed clean copies;
# the streaming bench (manager/stream_oversubscribed) on real weights; the manager bench;
# compute-sanitizer memcheck on the facade's safety probes. Run from the repository root
# on the GPU machine, with target/hw-bundle, .gl, .vvl and .rdata carried.
set -u
OUT="${OUT:-/tmp/out}"
B=target/hw-bundle
for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
mkdir -p /tmp/vvl && dpkg -x .vvl/*.deb /tmp/vvl
export VK_ADD_LAYER_PATH=/tmp/vvl/usr/share/vulkan/explicit_layer.d
export LD_LIBRARY_PATH=/tmp/vvl/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export VUMA_VK_VALIDATION=1 VUMA_REQUIRE_VALIDATION=1 VUMA_REQUIRE_HW=1
export VUMA_DATA_DIR="$PWD/.rdata"
mkdir -p "$OUT"
# 1. Benches first (timings on a fresh machine), records into one JSONL.
for b in ${RUN_BENCHES:-vuma-stream vuma-hyperloop-manager}; do
  bin=$B/benches/$b
  [ -x "$bin" ] || { echo "no bench $b"; continue; }
  echo "== bench $b"
  VUMA_BENCH_OUT="$OUT/records.jsonl" timeout 300 "$bin" 2>&1 | tee "$OUT/bench-$b.log" | tail -40
done
# 2. compute-sanitizer memcheck on the safety probes (oversized n, wrong arguments).
S=$B/tests/vuma-safety
SAN=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
if [ -x "$S" ] && [ -x "$SAN" ]; then
  "$SAN" --tool memcheck "$S" > "$OUT/sanitize-safety.log" 2>&1
  echo "sanitizer rc=$?"
  "$SAN" --tool memcheck --report-api-errors no $B/tests/vuma-core-safety >> "$OUT/sanitize-safety.log" 2>&1
  echo "sanitizer on safety: rc=$? $(grep -E 'ERROR SUMMARY|test result' "$OUT/sanitize-safety.log" | tr '\n' ' ')"
fi
# 3. Tests (all bundled binaries), validation required.
if [ -z "${NO_TESTS:-}" ]; then
  OUT="$OUT/tests" VUMA_MAX_OUT_FILES=2 VUMA_TEST_TIMEOUT=300 bash $B/run.sh --no-gl > /dev/null 2>&1
  grep -E "^(PASS|FAIL|SKIP)|test result|ERROR|SKIP" "$OUT/tests/summary.txt" | head -80
fi
ls -la "$OUT" "$OUT/tests" 2>/dev/null | head -30
