#!/usr/bin/env bash
# Hardware session M (2026-12-01, session 4): the manager bench with measured write-back decisions, three times
# (the first on a cold machine), plus the manager test. Bundle from main; carry ["target/hw-bundle", ".gl"].
B=target/hw-bundle
for f in .gl/*.deb $B/vvl/*.deb; do dpkg -x $f / ; done; ldconfig
(cd $B && VUMA_VK_VALIDATION=1 VUMA_REQUIRE_HW=1 timeout 90 tests/vuma-hyperloop-manager > /tmp/t.txt 2>&1); echo "test manager rc=$? $(grep '^test result' /tmp/t.txt)"
for i in 1 2; do
  (cd $B && VUMA_BENCH_OUT=$OUT/bench-manager-$i.jsonl timeout 150 benches/vuma-hyperloop-manager > $OUT/log-manager-$i.txt 2>&1); echo "run $i rc=$?"
  grep -E "^manager" $OUT/log-manager-$i.txt | awk '{printf "%s %s vs %s = %s\n", $1, $2, $(NF-2), $NF}'
done
grep -E "^  evict_roundtrip" $OUT/log-manager-2.txt | cut -c1-200
