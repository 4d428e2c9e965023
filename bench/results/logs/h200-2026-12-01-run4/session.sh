#!/usr/bin/env bash
# One-off hardware session script (carried with the bundle).
B=target/hw-bundle
for f in .gl/*.deb $B/vvl/*.deb; do dpkg -x $f /; done; ldconfig
SAN=/usr/local/cuda/bin/compute-sanitizer
T0=$(date +%s); el() { echo "[t+$(( $(date +%s) - T0 ))s]"; }
# 1. memcheck over every test binary (soak short)
OUT=$OUT/s VUMA_SOAK_SECS=3 VUMA_TEST_TIMEOUT=120 VUMA_MAX_OUT_FILES=2 timeout 200 bash $B/run.sh --no-tests --sanitize --no-gl | grep -v "test result: ok"
el
# 2. racecheck + synccheck on the CUDA binaries
for tool in racecheck synccheck; do for b in vuma-cuda-cuda vuma-cuda-conformance vuma-hardware vuma-hyperloop-cuda; do
  (cd $B && timeout 60 $SAN --tool $tool --error-exitcode 86 tests/$b --skip compile_error_is_typed > $OUT/$tool-$b.log 2>&1); rc=$?
  echo "$tool $b rc=$rc $(grep -E 'test result' $OUT/$tool-$b.log | head -1) $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' $OUT/$tool-$b.log | tail -1)"
done; done
tar czf $OUT/racesync.tgz -C $OUT $(cd $OUT && ls racecheck-*.log synccheck-*.log) && rm -f $OUT/racecheck-*.log $OUT/synccheck-*.log
el
# 3. benches
OUT=$OUT/b VUMA_MAX_OUT_FILES=3 VUMA_BENCH_TIMEOUT=150 timeout 180 bash $B/run.sh --no-tests --bench --no-gl | tail -n 60
el
# 4. soak of the whole stack on every device
(cd $B && VUMA_SOAK_SECS=25 VUMA_REQUIRE_HW=1 timeout 45 tests/vuma-soak_devices --nocapture > $OUT/soak_devices.txt 2>&1); echo "soak_devices rc=$?"; grep -E "soak:|workloads on|peak|rss|test result" $OUT/soak_devices.txt
el
# 5. Vulkan conformance, twice more with validation (a hang was seen once)
for i in 1 2; do (cd $B && VUMA_VK_VALIDATION=1 VUMA_REQUIRE_HW=1 timeout 20 tests/vuma-vulkan-conformance > $OUT/vkconf$i.txt 2>&1); echo "vk conformance run $i rc=$? $(grep 'test result' $OUT/vkconf$i.txt)"; done
el
# 6. Vulkan staging sweep: copy threads, streaming stores
for v in "VUMA_VK_COPY_THREADS=8" "VUMA_VK_COPY_THREADS=4" "VUMA_VK_STREAM_COPY=0"; do
  (cd $B && env $v VUMA_BENCH_OUT=/tmp/sw.jsonl timeout 15 benches/vuma-vulkan-vulkan > /dev/null 2>&1); sed "s/\"bench\":\"vulkan\//\"bench\":\"vulkan-sweep-$v\//" /tmp/sw.jsonl >> $OUT/sweep.jsonl; rm -f /tmp/sw.jsonl
done; grep -o '"bench":"[^"]*","device":"[^"]*","value":[0-9.]*' $OUT/sweep.jsonl
el
