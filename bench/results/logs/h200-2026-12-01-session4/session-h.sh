#!/usr/bin/env bash
# Hardware session H (2026-12-01, session 4): the memory manager through Hyperloop (tests + manager bench),
# the new encoder kernels (tests, memcheck, racecheck, eviction bench), Vulkan rows with concurrent copies.
# Bundle from main; carry ["target/hw-bundle", ".gl"].
B=target/hw-bundle
for f in .gl/*.deb $B/vvl/*.deb; do dpkg -x $f / ; done; ldconfig
SAN=/usr/local/cuda/bin/compute-sanitizer
T0=$(date +%s); el() { echo "[t+$(( $(date +%s) - T0 ))s]"; }
if [ "$1" = san ]; then
# 2. sanitizers on the new encoder kernels and the manager path (sanitizer sizes)
for t in memcheck racecheck synccheck; do
  (cd $B && VUMA_UNDER_SANITIZER=1 timeout 120 $SAN --tool $t --error-exitcode 86 tests/vuma-hyperloop-cuda cuda_e --test-threads=1 > $OUT/san-$t-encode.log 2>&1); echo "$t encode rc=$? $(grep -E '^test result' $OUT/san-$t-encode.log | head -1) $(grep -E 'RACECHECK SUMMARY|ERROR SUMMARY' $OUT/san-$t-encode.log | tail -1)"
done
(cd $B && VUMA_UNDER_SANITIZER=1 timeout 100 $SAN --tool memcheck --error-exitcode 86 tests/vuma-hyperloop-manager manager_through_hyperloop_on_cuda > $OUT/san-memcheck-manager.log 2>&1); echo "memcheck manager rc=$? $(grep -E '^test result' $OUT/san-memcheck-manager.log | head -1) $(grep 'ERROR SUMMARY' $OUT/san-memcheck-manager.log | tail -1)"
el
exit 0
fi
# 1. tests (validation on), one line each
for b in "vuma-hyperloop-manager 90" "vuma-hyperloop-encode 60" "vuma-hyperloop-cuda 60" "vuma-hyperloop-vulkan 60" "vuma-core-memory_model 60" "vuma-hardware 60" "vuma-facade 120" "vuma-vulkan-conformance 60" "vuma-cuda-conformance 60"; do set -- $b
  (cd $B && VUMA_VK_VALIDATION=1 VUMA_REQUIRE_HW=1 timeout $2 tests/$1 --nocapture > /tmp/t-$1.txt 2>&1); rc=$?; echo "test $1 rc=$rc $(grep '^test result' /tmp/t-$1.txt | tail -1)"; grep -E "validation:|panicked|FAILED" /tmp/t-$1.txt | head -4
  [ $rc -ne 0 ] && cp /tmp/t-$1.txt $OUT/
done
el
# 3. benches: manager (with vs without Hyperloop), Hyperloop (eviction + Vulkan rows), Vulkan staging
for b in "vuma-hyperloop-manager 150" "vuma-hyperloop-hyperloop 120" "vuma-vulkan-vulkan 40"; do set -- $b
  (cd $B && VUMA_BENCH_OUT=$OUT/bench.jsonl timeout $2 benches/$1 > $OUT/log-$1.txt 2>&1); echo "bench $1 rc=$?"; grep -E "evict_roundtrip.*: size pass|ERROR|^  (evict|upload)" $OUT/log-$1.txt | cut -c1-300 | head -20
  el
done
grep -o '"bench":"[^"]*","device":"[^"]*","value":[0-9.]*\|"ratio":[0-9.]*' $OUT/bench.jsonl | paste - - | sed 's/"device":"[^"]*",//; s/"bench"://; s/"value"://; s/"ratio"://' | grep -E "manager/|evict|h2d_compressed_pinned|vulkan/h2d|vulkan/d2h"
el
