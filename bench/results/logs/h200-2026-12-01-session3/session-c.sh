#!/usr/bin/env bash
# Hardware session C (2026-12-01, session 3): benches of concurrent copies and BAR uploads; racecheck one test at a time.
B=target/hw-bundle
for f in .gl/*.deb $B/vvl/*.deb; do dpkg -x $f /; done; ldconfig
SAN=/usr/local/cuda/bin/compute-sanitizer
T0=$(date +%s); el() { echo "[t+$(( $(date +%s) - T0 ))s]"; }
# 1. benches: Hyperloop, streaming, Vulkan (staged vs BAR)
for b in "vuma-hyperloop-hyperloop 170" "vuma-hyperloop-streaming 90" "vuma-vulkan-vulkan 40"; do set -- $b
  (cd $B && VUMA_BENCH_OUT=$OUT/bench.jsonl timeout $2 benches/$1 > $OUT/log-$1.txt 2>&1); echo "bench $1 rc=$?"; grep -E "evict|stream:|SKIP|ERROR|BAR|note" $OUT/log-$1.txt | head -12
  el
done
grep -o '"bench":"[^"]*","device":"[^"]*","value":[0-9.]*\|"ratio":[0-9.]*' $OUT/bench.jsonl | paste - - | sed 's/"device":"[^"]*",//' | grep -E "hyperloop/cuda|vulkan/h2d|vulkan/d2h|stream" | sed 's/"bench"://; s/"value"://; s/"ratio"://'
el
# 2. racecheck, one test thread, sanitizer sizes
for b in "vuma-cuda-conformance concurrent_copies 50" "vuma-cuda-conformance device_to_device 30" "vuma-hyperloop-cuda cuda_decoders_match 70"; do set -- $b
  (cd $B && VUMA_UNDER_SANITIZER=1 timeout $3 $SAN --tool racecheck --error-exitcode 86 tests/$1 $2 --test-threads=1 > $OUT/race-$1-$2.log 2>&1); echo "racecheck $1 $2 rc=$? $(grep -E '^test result' $OUT/race-$1-$2.log | head -1) $(grep -E 'RACECHECK SUMMARY|ERROR SUMMARY' $OUT/race-$1-$2.log | tail -1)"
done
(cd $B && timeout 40 $SAN --tool memcheck --error-exitcode 86 tests/vuma-cuda-conformance concurrent_copies > $OUT/memcheck-cc.log 2>&1); echo "memcheck concurrent_copies rc=$? $(grep -E '^test result' $OUT/memcheck-cc.log | head -1) $(grep 'ERROR SUMMARY' $OUT/memcheck-cc.log | tail -1)"
el
# 3. Vulkan tests with BAR uploads forced, validation on
(cd $B && VUMA_VK_H2D=bar VUMA_VK_VALIDATION=1 VUMA_REQUIRE_HW=1 timeout 30 tests/vuma-vulkan-vulkan --nocapture > $OUT/bar-vulkan.txt 2>&1); echo "BAR vuma-vulkan-vulkan rc=$? $(grep '^test result' $OUT/bar-vulkan.txt)"
grep -iE "compute_units|host_link|sm_count|pcie" $OUT/bar-vulkan.txt | head -4
el
