#!/usr/bin/env bash
# Hardware session I (2026-12-01, session 4): sanitizers on the new encoder kernels and the manager path,
# the manager bench with measured upload rates, a 60 s soak of the whole stack (Hyperloop on by default).
# Bundle from main; carry ["target/hw-bundle", ".gl"].
B=target/hw-bundle
for f in .gl/*.deb $B/vvl/*.deb; do dpkg -x $f / ; done; ldconfig
SAN=/usr/local/cuda/bin/compute-sanitizer
T0=$(date +%s); el() { echo "[t+$(( $(date +%s) - T0 ))s]"; }
(cd $B && VUMA_REQUIRE_HW=1 timeout 60 tests/vuma-hyperloop-manager > /tmp/t.txt 2>&1); echo "test manager rc=$? $(grep '^test result' /tmp/t.txt)"
(cd $B && VUMA_BENCH_OUT=$OUT/bench-manager.jsonl timeout 120 benches/vuma-hyperloop-manager > $OUT/log-manager.txt 2>&1); echo "bench manager rc=$?"
grep -E "^manager|^  " $OUT/log-manager.txt | cut -c1-260
el
(cd $B && VUMA_SOAK_SECS=60 VUMA_REQUIRE_HW=1 timeout 90 tests/vuma-soak_devices --nocapture > $OUT/soak_devices.txt 2>&1); echo "soak_devices rc=$?"; grep -vE "^\s*$|running 1 test|^test " $OUT/soak_devices.txt | tail -12
el
for t in memcheck racecheck synccheck; do
  (cd $B && VUMA_UNDER_SANITIZER=1 timeout 100 $SAN --tool $t --error-exitcode 86 tests/vuma-hyperloop-cuda cuda_e --test-threads=1 > $OUT/san-$t-encode.log 2>&1); echo "$t encoder rc=$? $(grep -E '^test result' $OUT/san-$t-encode.log | head -1) $(grep -E 'RACECHECK SUMMARY|ERROR SUMMARY' $OUT/san-$t-encode.log | tail -1)"
done
(cd $B && timeout 90 $SAN --tool memcheck --error-exitcode 86 tests/vuma-hyperloop-manager manager_through_hyperloop_on_cuda > $OUT/san-memcheck-manager.log 2>&1); echo "memcheck manager rc=$? $(grep -E '^test result' $OUT/san-memcheck-manager.log | head -1) $(grep 'ERROR SUMMARY' $OUT/san-memcheck-manager.log | tail -1)"
el
