#!/usr/bin/env bash
# H200 run E (2026-12-03): the float codec wired into compressed residency, host packing of
# clean copies (float codec where the GPU decodes it), and run D's two fixes: the CUDA and
# Vulkan Hyperloop tests (float pages through every home, flag parity), the device-loss
# test, the float bench (hl_float decode rate; effective H2D of real weights against a raw
# pinned copy), and the streaming bench. Bundle: `cargo xtask test-hw --bundle
# target/hw-bundle -p vuma-hyperloop -p vuma`. Carried: target/hw-bundle, .gl, .vvl, .rdata.
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
for t in vuma-hyperloop-cuda_float vuma-hyperloop-cuda vuma-hyperloop-cuda_loss vuma-hyperloop-vulkan vuma-hyperloop-manager vuma-hyperloop-float_residency vuma-safety vuma-facade; do
  [ -x $B/tests/$t ] || { echo "$t: not in the bundle"; continue; }
  echo "== $t"
  timeout 150 $B/tests/$t --nocapture 2>&1 | grep -E "^test |test result|panicked|SKIP|hl_float|ratio|device loss" | cut -c1-220 | tail -30
done
} > "$OUT/checks.log" 2>&1
grep -E "^==|test result|FAILED|panicked" "$OUT/checks.log"
echo "== bench float"
VUMA_BENCH_OUT="$OUT/float.jsonl" timeout 170 $B/benches/vuma-hyperloop-float > "$OUT/benches.log" 2>&1
echo "rc=$?"; grep -vE "^\s*$" "$OUT/benches.log" | grep -E "GB/s|ratio|x |×" | cut -c1-200 | tail -30
echo "== bench stream"
VUMA_BENCH_OUT="$OUT/stream.jsonl" timeout 200 $B/benches/vuma-stream >> "$OUT/benches.log" 2>&1
echo "rc=$?"; grep -E "^  |vuma hyper" "$OUT/benches.log" | cut -c1-200 | tail -30
