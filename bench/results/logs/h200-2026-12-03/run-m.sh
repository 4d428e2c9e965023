#!/usr/bin/env bash
# H200 run M (2026-12-03, session 4): the final tree. process_workload waits for room on a
# condition variable instead of a sleep loop; the SPIR-V float decoder's prior (20 GB/s)
# keeps the float codec off Vulkan on a Gen5 link. Tests of Hyperloop (CUDA and Vulkan) and
# the facade; the manager bench again (run K part 2 measured it on a slow first minutes of
# a machine); the streaming bench (the look-ahead rows).
# Bundle: `cargo xtask test-hw --bundle target/hw-bundle -p vuma-hyperloop -p vuma`, pruned.
# Carried: target/hw-bundle, .gl, .vvl, .rdata.
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
{
for t in vuma-hyperloop-cuda vuma-hyperloop-cuda_float vuma-hyperloop-vulkan vuma-hyperloop-vulkan_float vuma-hyperloop-float_residency vuma-hyperloop-manager vuma-facade vuma-safety vuma-hardware; do
  [ -x $B/tests/$t ] || { echo "$t: not in the bundle"; continue; }
  echo "== $t"
  timeout 120 $B/tests/$t --nocapture 2>&1 | grep -E "^test |test result|panicked|SKIP" | cut -c1-200 | tail -40
done
} > "$OUT/checks.log" 2>&1
grep -E "^==|test result|FAILED|panicked|not in the bundle" "$OUT/checks.log"
unset VUMA_VK_VALIDATION VUMA_REQUIRE_VALIDATION
echo "== manager bench"
VUMA_BENCH_OUT="$OUT/manager.jsonl" timeout 150 $B/benches/vuma-hyperloop-manager > /tmp/b-mgr.log 2>&1
echo "rc=$?"; grep -E "^manager/" /tmp/b-mgr.log | cut -c1-150
echo "== stream bench"
VUMA_BENCH_OUT="$OUT/stream.jsonl" timeout 200 $B/benches/vuma-stream > /tmp/b-stream.log 2>&1
echo "rc=$?"; grep -E "^  |vuma hyper" /tmp/b-stream.log | cut -c1-150
cat /tmp/b-mgr.log /tmp/b-stream.log > "$OUT/benches.log"
