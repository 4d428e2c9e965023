#!/usr/bin/env bash
# H200 run C (2026-12-03): after the writer-registration race fix, the Vulkan hang-safe
# waits, naga bounds checks and the float codec merge: the Vulkan test binary alone (it
# timed out in run B), the float decoder on CUDA, every test binary, compute-sanitizer
# (safety probes, a planted out-of-bounds write that must be caught, the float decoder),
# then the streaming bench. From the repository root; target/hw-bundle, .gl, .vvl, .rdata.
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
SAN=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
{
echo "== vulkan-vulkan, one thread"
RUST_TEST_THREADS=1 timeout 120 $B/tests/vuma-vulkan-vulkan 2>&1 | grep -E "^test |test result"; echo "rc=${PIPESTATUS[0]}"
echo "== vulkan-vulkan, default threads"
timeout 120 $B/tests/vuma-vulkan-vulkan 2>&1 | grep -E "^test |test result"; echo "rc=${PIPESTATUS[0]}"
echo "== float decoder on CUDA"
timeout 120 $B/tests/vuma-hyperloop-cuda_float --nocapture 2>&1 | grep -vE "^\s*$" | tail -15
echo "== sanitizer: safety probes (API errors off: parameter tables are probed on purpose)"
"$SAN" --tool memcheck --report-api-errors no $B/tests/vuma-safety 2>&1 | grep -E "ERROR SUMMARY|test result"
"$SAN" --tool memcheck --report-api-errors no $B/tests/vuma-core-safety 2>&1 | grep -E "ERROR SUMMARY|test result"
echo "== sanitizer: planted out-of-bounds write (must report errors)"
VUMA_PLANT_OOB=1 "$SAN" --tool memcheck --report-api-errors no $B/tests/vuma-cuda-cuda planted 2>&1 | grep -E "Invalid __global__ write|ERROR SUMMARY|test result" | sort | uniq -c
for tool in memcheck racecheck synccheck; do
  echo "== sanitizer $tool: float decoder"
  VUMA_UNDER_SANITIZER=1 "$SAN" --tool $tool --report-api-errors no $B/tests/vuma-hyperloop-cuda_float 2>&1 | grep -E "ERROR SUMMARY|RACECHECK SUMMARY|test result"
done
} 2>&1 | tee "$OUT/checks.log"
if [ -z "${NO_TESTS:-}" ]; then
  rm -f $B/tests/vuma-vulkan-vulkan
  OUT="$OUT/tests" VUMA_MAX_OUT_FILES=2 VUMA_TEST_TIMEOUT=120 bash $B/run.sh --no-gl > /dev/null 2>&1
  grep -E "^(PASS|FAIL)|SKIP" "$OUT/tests/summary.txt" | head -60
fi
echo "== bench stream"
VUMA_BENCH_OUT="$OUT/records.jsonl" timeout 200 $B/benches/vuma-stream 2>&1 | tee "$OUT/bench-vuma-stream.log" | grep -E "^  |vuma hyper" | cut -c1-200
