#!/usr/bin/env bash
# H200 run D (2026-12-03): after chunk integrity checks, device-loss recovery and the shared
# model test: a libFuzzer campaign (10 million executions per target, .fz bundle of
# `cargo xtask fuzz --bundle .fz --runs 10000000 --jobs 10`) on ten cores in the background;
# every test binary; the CUDA device-loss test (a trap kernel) alone; compute-sanitizer
# memcheck on every CUDA test binary and racecheck + synccheck on those that launch VUMA's
# kernels; a planted out-of-bounds write that memcheck must catch. From the repository root;
# carried: target/hw-bundle, .gl, .vvl, .rdata, .fz.
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
nproc > "$OUT/nproc.txt"
# Fuzzing in the background (ten processes per target, targets one after another).
( RUNS=10000000 JOBS=10 SECONDS_CAP=${FUZZ_CAP:-330} timeout 480 bash .fz/run.sh "$OUT/fuzz" > "$OUT/fuzz.log" 2>&1; echo "fuzz rc=$?" >> "$OUT/fuzz.log" ) &
FUZZ=$!
{
echo "== device loss on CUDA (trap kernel), alone"
timeout 120 $B/tests/vuma-hyperloop-cuda_loss --nocapture 2>&1 | grep -vE "^\s*$" | tail -8
} 2>&1 | tee "$OUT/checks.log"
if [ -z "${NO_TESTS:-}" ]; then
  OUT="$OUT/tests" VUMA_MAX_OUT_FILES=2 VUMA_TEST_TIMEOUT=150 bash $B/run.sh --no-gl > /dev/null 2>&1
  grep -E "^(PASS|FAIL)|SKIP" "$OUT/tests/summary.txt" | head -80
fi
san() { # tool binary
  local log="$OUT/san-$1-$(basename "$2").log"
  VUMA_UNDER_SANITIZER=1 timeout 300 "$SAN" --tool "$1" --report-api-errors no "$2" > "$log" 2>&1
  echo "$1 $(basename "$2"): rc=$? $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$log" | tail -1) $(grep -E '^test result' "$log" | tail -1 | cut -c1-60)"
}
export -f san; export SAN OUT
{
echo "== sanitizer (VUMA_UNDER_SANITIZER=1: smaller data; API errors off: parameter tables are probed on purpose)"
ls $B/tests/ | grep -E "^vuma-(cuda-(cuda|conformance)|hyperloop-(cuda|cuda_float|encode|manager)|safety|facade|hardware)$" \
  | sed "s#^#memcheck $B/tests/#" > /tmp/san.list
ls $B/tests/ | grep -E "^vuma-(cuda-cuda|hyperloop-(cuda|cuda_float|encode|manager))$" \
  | while read -r t; do echo "racecheck $B/tests/$t"; echo "synccheck $B/tests/$t"; done >> /tmp/san.list
xargs -P 3 -L 1 bash -c 'san "$0" "$1"' < /tmp/san.list | sort
echo "== planted out-of-bounds write (memcheck must report it)"
VUMA_PLANT_OOB=1 "$SAN" --tool memcheck --report-api-errors no $B/tests/vuma-cuda-cuda planted 2>&1 | grep -E "Invalid __global__ write|ERROR SUMMARY|test result" | sort | uniq -c
} 2>&1 | tee -a "$OUT/checks.log"
wait $FUZZ
echo "== fuzz"; cat "$OUT/fuzz/summary.txt" "$OUT/fuzz.log" 2>/dev/null | tail -14
rm -rf "$OUT/fuzz/work"
