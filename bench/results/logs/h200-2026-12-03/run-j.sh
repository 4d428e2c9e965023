#!/usr/bin/env bash
# H200 run J (2026-12-03, session 4): the float codec's multi-group pages (a page of
# 1,024 elements or more is four groups of 32 lane streams, decoded by one block of four
# warps sharing the page's decode table; float pages for GPUs behind a link now 32 KiB),
# and host-copy fills with streaming stores on up to 16 threads. CUDA tests of Hyperloop
# and the facade; compute-sanitizer memcheck, synccheck and racecheck on the float decoder
# tests (the kernel now has block barriers); the float bench at the defaults; the
# first-upload and streaming benches. Part 2 (run-j2.sh) sweeps the float page size.
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
SAN=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
san() { # tool binary filter
  local log="/tmp/san-$1-$(basename "$2")-$3.log"
  VUMA_UNDER_SANITIZER=1 timeout 240 taskset -c 8-15 "$SAN" --tool "$1" --error-exitcode 1 --report-api-errors no "$2" "$3" --exact --test-threads 1 > "$log" 2>&1
  local rc=$?
  echo "$1 $(basename "$2") $3: rc=$rc $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$log" | tail -1) $(grep -E '^test result' "$log" | tail -1 | cut -c1-60)"
}
# Sanitizers in the background on cores 8-15, while tests and benches run.
(
  F=$B/tests/vuma-hyperloop-cuda_float
  for t in cuda_float_decoder_matches_the_host cuda_float_decoder_flags_what_the_host_flags; do
    san memcheck $F $t; san synccheck $F $t; san racecheck $F $t
  done > "$OUT/sanitizers.txt" 2>&1
) &
SANPID=$!
{
for t in vuma-hyperloop-cuda_float vuma-hyperloop-cuda vuma-hyperloop-float_residency vuma-hyperloop-manager vuma-facade vuma-safety; do
  [ -x $B/tests/$t ] || { echo "$t: not in the bundle"; continue; }
  echo "== $t"
  timeout 120 $B/tests/$t --nocapture 2>&1 | grep -E "^test |test result|panicked|SKIP" | cut -c1-200 | tail -40
done
} > "$OUT/checks.log" 2>&1
grep -E "^==|test result|FAILED|panicked|not in the bundle" "$OUT/checks.log"
echo "== float bench (defaults)"
VUMA_BENCH_OUT="$OUT/float.jsonl" timeout 120 $B/benches/vuma-hyperloop-float > /tmp/b-float.log 2>&1
echo "rc=$?"; grep -E "^hyperloop/cuda/float/" /tmp/b-float.log | awk '{print $1, $2, $3, "ratio", $NF}'
echo "== first upload bench"
VUMA_BENCH_OUT="$OUT/first.jsonl" timeout 100 $B/benches/vuma-first_upload > /tmp/b-first.log 2>&1
echo "rc=$?"; grep -vE "^\s*$" /tmp/b-first.log | grep -vE "^manager/" | cut -c1-300 | tail -8
echo "== stream bench"
VUMA_BENCH_OUT="$OUT/stream.jsonl" timeout 170 $B/benches/vuma-stream > /tmp/b-stream.log 2>&1
echo "rc=$?"; grep -E "^  |vuma hyper" /tmp/b-stream.log | cut -c1-150
wait $SANPID
echo "== sanitizers"; cat "$OUT/sanitizers.txt"
cat /tmp/b-float.log /tmp/b-first.log /tmp/b-stream.log > "$OUT/benches.log"
