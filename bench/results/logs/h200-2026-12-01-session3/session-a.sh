#!/usr/bin/env bash
# Hardware session A (2026-12-01, session 3): verification of what changed since the last GPU run.
B=target/hw-bundle
for f in .gl/*.deb $B/vvl/*.deb; do dpkg -x $f /; done; ldconfig
SAN=/usr/local/cuda/bin/compute-sanitizer
T0=$(date +%s); el() { echo "[t+$(( $(date +%s) - T0 ))s]"; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
which gdb eu-stack 2>&1 | head -2
# 0. full racecheck of the Hyperloop CUDA tests, in the background (long)
(cd $B && timeout 420 $SAN --tool racecheck --error-exitcode 86 tests/vuma-hyperloop-cuda --skip compile_error_is_typed > $OUT/racecheck-hyperloop.log 2>&1; echo "rc=$?" >> $OUT/racecheck-hyperloop.log) &
RACE=$!
# 1. plain pass of every test binary, validation on, soak 30 s
OUT=$OUT/t VUMA_VK_VALIDATION=1 VUMA_SOAK_SECS=30 VUMA_TEST_TIMEOUT=150 VUMA_MAX_OUT_FILES=2 timeout 330 bash $B/run.sh --no-gl | grep -v "test result: ok"
el
# 2. Vulkan conformance 10x with validation; thread dump of any hang
for i in $(seq 1 10); do
  (cd $B && VUMA_VK_VALIDATION=1 VUMA_REQUIRE_HW=1 exec tests/vuma-vulkan-conformance > /tmp/vk$i.txt 2>&1) & P=$!
  for s in $(seq 1 40); do kill -0 $P 2>/dev/null || break; sleep 0.5; done
  if kill -0 $P 2>/dev/null; then
    echo "vk conformance run $i HUNG"; for t in /proc/$P/task/*; do echo "$t $(cat $t/comm) $(cat $t/wchan)"; done > $OUT/vkhang$i.txt
    command -v gdb >/dev/null && timeout 30 gdb -p $P -batch -ex "thread apply all bt" >> $OUT/vkhang$i.txt 2>&1
    kill -9 $P
  else wait $P; echo "vk conformance run $i rc=$? $(grep 'test result' /tmp/vk$i.txt)"; fi
done
el
# 3. soak of the whole stack on every device, 120 s
(cd $B && VUMA_SOAK_SECS=120 VUMA_REQUIRE_HW=1 timeout 160 tests/vuma-soak_devices --nocapture > $OUT/soak_devices.txt 2>&1); echo "soak_devices rc=$?"; grep -E "soak:|workloads on|peak|rss|test result|panicked|Error" $OUT/soak_devices.txt | head -20
el
wait $RACE; tail -3 $OUT/racecheck-hyperloop.log; grep -E "RACECHECK SUMMARY|test result" $OUT/racecheck-hyperloop.log
gzip $OUT/racecheck-hyperloop.log
el
