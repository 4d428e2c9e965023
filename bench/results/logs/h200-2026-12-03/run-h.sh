#!/usr/bin/env bash
# H200 run H (2026-12-03, session 3), part 1: after the batched hl_float decoder, 16 KiB
# float pages on GPUs behind a link, the pinned host-block pool and parallel fills of new
# host copies. The CUDA tests of Hyperloop and the facade (float pages, the manager, safety
# probes); the float bench at the library's defaults; the streaming bench (16 layers of real
# weights, budget a quarter, against the hand-written pinned loop and UVM); the first-upload
# bench (a new buffer from pageable bytes to the device, against a raw pinned copy and a
# memcpy into reused pinned memory then a copy); the Python transfer bench against torch.
# Bundle: `cargo xtask test-hw --bundle target/hw-bundle -p vuma-hyperloop -p vuma`.
# Carried: target/hw-bundle, .gl, .vvl, .rdata, .whl.
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
for t in vuma-hyperloop-cuda_float vuma-hyperloop-cuda vuma-hyperloop-float_residency vuma-hyperloop-manager vuma-hyperloop-vulkan vuma-facade vuma-safety vuma-hardware; do
  [ -x $B/tests/$t ] || { echo "$t: not in the bundle"; continue; }
  echo "== $t"
  timeout 150 $B/tests/$t --nocapture 2>&1 | grep -E "^test |test result|panicked|SKIP" | cut -c1-200 | tail -40
done
} > "$OUT/checks.log" 2>&1
grep -E "^==|test result|FAILED|panicked|not in the bundle" "$OUT/checks.log"
echo "== float bench"
VUMA_BENCH_OUT="$OUT/float.jsonl" timeout 120 $B/benches/vuma-hyperloop-float > /tmp/b-float.log 2>&1
echo "rc=$?"; grep -E "^hyperloop/cuda/float/" /tmp/b-float.log | awk '{print $1, $2, $3, "ratio", $NF}'
echo "== first upload bench"
VUMA_BENCH_OUT="$OUT/first.jsonl" timeout 150 $B/benches/vuma-first_upload > /tmp/b-first.log 2>&1
echo "rc=$?"; grep -vE "^\s*$" /tmp/b-first.log | grep -vE "^manager/" | cut -c1-400 | tail -12
echo "== stream bench"
VUMA_BENCH_OUT="$OUT/stream.jsonl" timeout 200 $B/benches/vuma-stream > /tmp/b-stream.log 2>&1
echo "rc=$?"; grep -E "^  |vuma hyper" /tmp/b-stream.log | cut -c1-170
echo "== python transfer"
SITE=$(mktemp -d /tmp/vuma-py.XXXXXX)
python3 -m pip install -q --no-deps --no-index --target "$SITE" .whl/vuma-*.whl 2>&1 | tail -2
PYTHONPATH="$SITE" timeout 150 python3 bench/py/transfer.py "$OUT/py.jsonl" --device cuda > /tmp/b-py.log 2>&1
echo "rc=$?"; tail -14 /tmp/b-py.log
cat /tmp/b-float.log /tmp/b-first.log /tmp/b-stream.log /tmp/b-py.log > "$OUT/benches.log"
