#!/usr/bin/env bash
# H200 run I (2026-12-03, session 4): checks of what session 3 finished after its last GPU
# run. The Vulkan backend after its split into options/adapter/shared/device/buffer/
# submit/staging/compute (its conformance and backend tests, Hyperloop's Vulkan tests and
# the Vulkan transfer bench: staging H2D/D2H against a raw vkCmdCopyBuffer); the pipelined
# first upload (`manager/first_upload/<size>/pipelined`, and `vuma_pipelined` in the Python
# transfer bench); the streaming bench with host packs of buffers under four chunks
# leaving the float codec out (the 64 MiB rows).
# Bundles: `cargo xtask test-hw --bundle target/hw-bundle -p vuma-hyperloop -p vuma` and
# `cargo xtask test-hw --bundle target/hw-bundle2 -p vuma-vulkan -p vuma-cuda`, pruned.
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
{
for t in $B2/tests/vuma-vulkan-conformance $B2/tests/vuma-vulkan-vulkan $B2/tests/vuma-cuda-conformance $B2/tests/vuma-cuda-cuda \
         $B/tests/vuma-hyperloop-vulkan $B/tests/vuma-hyperloop-cuda $B/tests/vuma-hyperloop-cuda_float \
         $B/tests/vuma-hyperloop-float_residency $B/tests/vuma-hyperloop-manager $B/tests/vuma-facade \
         $B/tests/vuma-safety $B/tests/vuma-hardware; do
  [ -x $t ] || { echo "$t: not in the bundle"; continue; }
  echo "== $t"
  timeout 120 $t --nocapture 2>&1 | grep -E "^test |test result|panicked|SKIP" | cut -c1-200 | tail -40
done
} > "$OUT/checks.log" 2>&1
grep -E "^==|test result|FAILED|panicked|not in the bundle" "$OUT/checks.log"
echo "== vulkan bench"
VUMA_BENCH_OUT="$OUT/vulkan.jsonl" timeout 90 $B2/benches/vuma-vulkan-vulkan > /tmp/b-vk.log 2>&1
echo "rc=$?"; grep -E "^vulkan/" /tmp/b-vk.log | cut -c1-200
echo "== first upload bench"
VUMA_BENCH_OUT="$OUT/first.jsonl" timeout 120 $B/benches/vuma-first_upload > /tmp/b-first.log 2>&1
echo "rc=$?"; grep -vE "^\s*$" /tmp/b-first.log | grep -vE "^manager/" | cut -c1-300 | tail -14
echo "== stream bench"
VUMA_BENCH_OUT="$OUT/stream.jsonl" timeout 170 $B/benches/vuma-stream > /tmp/b-stream.log 2>&1
echo "rc=$?"; grep -E "^  |vuma hyper" /tmp/b-stream.log | cut -c1-170
echo "== python transfer"
SITE=$(mktemp -d /tmp/vuma-py.XXXXXX)
python3 -m pip install -q --no-deps --no-index --target "$SITE" .whl/vuma-*.whl 2>&1 | tail -2
PYTHONPATH="$SITE" timeout 100 python3 bench/py/transfer.py "$OUT/py.jsonl" --device cuda > /tmp/b-py.log 2>&1
echo "rc=$?"; tail -16 /tmp/b-py.log
cat /tmp/b-vk.log /tmp/b-first.log /tmp/b-stream.log /tmp/b-py.log > "$OUT/benches.log"
