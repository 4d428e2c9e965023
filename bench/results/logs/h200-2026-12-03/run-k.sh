#!/usr/bin/env bash
# H200 run K (2026-12-03, session 4), part 1: the merged tree. CUDA backend split into
# adapter/shared/device/buffer/submit/staging/compute (its conformance and backend tests,
# and the CUDA bench against the 2026-12-01 records: pinned and pageable copies, eviction
# against UVM); Hyperloop's encoder split by stage (Hyperloop CUDA and Vulkan tests,
# memcheck and racecheck on the eviction test that runs the moved encoder kernels, the
# manager bench against 2026-12-01's records); host copies used in place on the host
# device; device capabilities in DeviceInfo; real activations in the float bench; host
# packs of buffers under four chunks cut into four chunks (streaming bench); the Vulkan
# float decoder (hl_float.wgsl: its tests, and the float bench on the Vulkan device).
# Bundles: `cargo xtask test-hw --bundle target/hw-bundle -p vuma-hyperloop -p vuma` and
# `--bundle target/hw-bundle2 -p vuma-vulkan -p vuma-cuda`, pruned.
# Carried: target/hw-bundle, target/hw-bundle2, .gl, .vvl, .rdata, .whl.
set -u
OUT="${OUT:-/tmp/out}"
B=target/hw-bundle
B2=target/hw-bundle2
for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
mkdir -p /tmp/vvl && dpkg -x .vvl/*.deb /tmp/vvl
export VK_ADD_LAYER_PATH=/tmp/vvl/usr/share/vulkan/explicit_layer.d
export LD_LIBRARY_PATH=/tmp/vvl/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export VUMA_VK_VALIDATION=1 VUMA_REQUIRE_VALIDATION=1 VUMA_REQUIRE_HW=1
export VUMA_DATA_DIR="$PWD/.rdata"
mkdir -p "$OUT"
SAN=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
san() { # tool binary filter
  local log="/tmp/san-$1-$(basename "$2")-$3.log"
  VUMA_UNDER_SANITIZER=1 timeout 300 taskset -c 8-15 "$SAN" --tool "$1" --error-exitcode 1 --report-api-errors no "$2" "$3" --exact --test-threads 1 > "$log" 2>&1
  local rc=$?
  echo "$1 $(basename "$2") $3: rc=$rc $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$log" | tail -1) $(grep -E '^test result' "$log" | tail -1 | cut -c1-60)"
}
(
  san memcheck $B/tests/vuma-hyperloop-cuda cuda_eviction_matches_the_host_encoder
  san racecheck $B/tests/vuma-hyperloop-cuda cuda_eviction_matches_the_host_encoder
  VUMA_UNDER_SANITIZER=1 timeout 200 taskset -c 8-15 "$SAN" --tool memcheck --error-exitcode 1 --report-api-errors no $B2/tests/vuma-cuda-cuda --test-threads 1 > /tmp/san-cuda.log 2>&1
  echo "memcheck vuma-cuda-cuda (all): rc=$? $(grep -E 'ERROR SUMMARY' /tmp/san-cuda.log | tail -1) $(grep -E '^test result' /tmp/san-cuda.log | tail -1 | cut -c1-60)"
) > "$OUT/sanitizers.txt" 2>&1 &
SANPID=$!
{
for t in $B2/tests/vuma-cuda-conformance $B2/tests/vuma-cuda-cuda $B2/tests/vuma-vulkan-conformance $B2/tests/vuma-vulkan-vulkan \
         $B/tests/vuma-hyperloop-cuda $B/tests/vuma-hyperloop-cuda_float $B/tests/vuma-hyperloop-cuda_loss \
         $B/tests/vuma-hyperloop-vulkan $B/tests/vuma-hyperloop-vulkan_float $B/tests/vuma-hyperloop-float_residency $B/tests/vuma-hyperloop-manager \
         $B/tests/vuma-facade $B/tests/vuma-safety $B/tests/vuma-hardware; do
  [ -x $t ] || { echo "$t: not in the bundle"; continue; }
  echo "== $t"
  timeout 120 taskset -c 0-7 $t --nocapture 2>&1 | grep -E "^test |test result|panicked|SKIP" | cut -c1-200 | tail -40
done
} > "$OUT/checks.log" 2>&1
grep -E "^==|test result|FAILED|panicked|not in the bundle" "$OUT/checks.log"
echo "== float bench"
VUMA_BENCH_OUT="$OUT/float.jsonl" timeout 100 $B/benches/vuma-hyperloop-float > /tmp/b-float.log 2>&1
echo "rc=$?"; grep -E "^hyperloop/cuda/float/" /tmp/b-float.log | awk '{print $1, $2, $3, "ratio", $NF}'
echo "== float bench (vulkan)"
VUMA_BENCH_DEVICE=vulkan VUMA_VK_VALIDATION=0 VUMA_REQUIRE_VALIDATION=0 VUMA_BENCH_OUT="$OUT/float-vulkan.jsonl" timeout 120 $B/benches/vuma-hyperloop-float > /tmp/b-float-vk.log 2>&1
echo "rc=$?"; grep -E "^hyperloop/vulkan/float/|SKIP|ERROR" /tmp/b-float-vk.log | awk '{print $1, $2, $3, "ratio", $NF}'
echo "== stream bench"
VUMA_BENCH_OUT="$OUT/stream.jsonl" timeout 170 $B/benches/vuma-stream > /tmp/b-stream.log 2>&1
echo "rc=$?"; grep -E "^  |vuma hyper" /tmp/b-stream.log | cut -c1-150
wait $SANPID
echo "== sanitizers"; cat "$OUT/sanitizers.txt"
cat /tmp/b-float.log /tmp/b-float-vk.log /tmp/b-stream.log > "$OUT/benches.log"
