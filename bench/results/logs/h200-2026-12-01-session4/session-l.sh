#!/usr/bin/env bash
# Hardware session L (2026-12-01, session 4): the manager bench again after plain write-backs started reusing the
# stale host copy's memory (the baseline of the manager rows), plus the manager, memory-model and facade tests.
B=target/hw-bundle
for f in .gl/*.deb $B/vvl/*.deb; do dpkg -x $f / ; done; ldconfig
T0=$(date +%s); el() { echo "[t+$(( $(date +%s) - T0 ))s]"; }
for b in "vuma-hyperloop-manager 90" "vuma-core-memory_model 60" "vuma-facade 120" "vuma-hardware 60"; do set -- $b
  (cd $B && VUMA_VK_VALIDATION=1 VUMA_REQUIRE_HW=1 timeout $2 tests/$1 > /tmp/t-$1.txt 2>&1); rc=$?; echo "test $1 rc=$rc $(grep '^test result' /tmp/t-$1.txt | tail -1)"
  [ $rc -ne 0 ] && cp /tmp/t-$1.txt $OUT/
done
(cd $B && VUMA_BENCH_OUT=$OUT/bench-manager.jsonl timeout 150 benches/vuma-hyperloop-manager > $OUT/log-manager.txt 2>&1); echo "bench manager rc=$?"
grep -E "^manager" $OUT/log-manager.txt
el
