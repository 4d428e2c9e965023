#!/usr/bin/env bash
# H200 run G (2026-12-03, session 3): the batched hl_float decoder. Its CUDA tests (float
# pages through every home, flag parity with the host decoder); the float bench at the
# default page and chunk sizes and swept (pages of 16 and 32 KiB, chunks of 128 MiB); then
# compute-sanitizer with --error-exitcode 1 where run D lost the summaries (memcheck,
# racecheck and synccheck on vuma-hyperloop-encode; racecheck on -cuda and -cuda_float) and
# memcheck + synccheck on the new kernel's tests. Bundle: `cargo xtask test-hw --bundle
# target/hw-bundle -p vuma-hyperloop`. Carried: target/hw-bundle, .gl, .vvl, .rdata.
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
for t in vuma-hyperloop-cuda_float vuma-hyperloop-cuda; do
  echo "== $t"
  timeout 150 $B/tests/$t --nocapture 2>&1 | grep -E "^test |test result|panicked|SKIP" | cut -c1-200 | tail -40
done
} > "$OUT/checks.log" 2>&1
grep -E "^==|test result|FAILED|panicked" "$OUT/checks.log"
bench() { # label, env...
  local label=$1; shift
  echo "== float bench $label"
  env "$@" VUMA_BENCH_OUT="$OUT/float.jsonl" timeout 120 $B/benches/vuma-hyperloop-float > "$OUT/bench-$label.log" 2>&1
  echo "rc=$?"
  grep -E "^hyperloop/cuda/float/(decode|h2d_pinned|ratio)/" "$OUT/bench-$label.log" | awk '{print $1, $2, $3, "ratio", $NF}'
}
bench p64c32
bench p16c32 VUMA_HL_PAGE_KIB=16
bench p32c32 VUMA_HL_PAGE_KIB=32
bench p64c128 VUMA_HL_CHUNK_MIB=128
for f in "$OUT"/bench-*.log; do echo "### $f"; cat "$f"; done > "$OUT/benches.log"; rm -f "$OUT"/bench-*.log
san() { # tool binary
  local log="$OUT/san/$1-$(basename "$2").log"
  VUMA_UNDER_SANITIZER=1 timeout 420 "$SAN" --tool "$1" --error-exitcode 1 --report-api-errors no "$2" > "$log" 2>&1
  local rc=$?
  echo "$1 $(basename "$2"): rc=$rc $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$log" | tail -1) $(grep -E '^test result' "$log" | tail -1 | cut -c1-70)"
}
mkdir -p "$OUT/san"
echo "== sanitizers (--error-exitcode 1; VUMA_UNDER_SANITIZER=1: smaller data; API errors off: parameter tables are probed on purpose)"
{
san memcheck $B/tests/vuma-hyperloop-encode &
san racecheck $B/tests/vuma-hyperloop-encode &
san synccheck $B/tests/vuma-hyperloop-encode &
san racecheck $B/tests/vuma-hyperloop-cuda &
san racecheck $B/tests/vuma-hyperloop-cuda_float &
san memcheck $B/tests/vuma-hyperloop-cuda_float &
san synccheck $B/tests/vuma-hyperloop-cuda_float &
wait
} 2>&1 | tee "$OUT/sanitizers.txt"
tar czf "$OUT/san-logs.tgz" -C "$OUT" san && rm -rf "$OUT/san"
