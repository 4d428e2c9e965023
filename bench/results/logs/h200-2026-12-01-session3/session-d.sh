#!/usr/bin/env bash
# Hardware session D (2026-12-01, session 3): racecheck over every test binary (one test at a time), memcheck/synccheck of concurrent copies, GPU soak with the RSS timeline.
B=target/hw-bundle
for f in .gl/*.deb $B/vvl/*.deb; do dpkg -x $f /; done; ldconfig
SAN=/usr/local/cuda/bin/compute-sanitizer
T0=$(date +%s); el() { echo "[t+$(( $(date +%s) - T0 ))s]"; }
# 1. racecheck over every test binary (run.sh: sanitizer sizes, one test thread)
OUT=$OUT/r VUMA_SANITIZER_TOOLS=racecheck VUMA_SOAK_SECS=3 VUMA_TEST_TIMEOUT=90 VUMA_MAX_OUT_FILES=2 timeout 300 bash $B/run.sh --no-tests --sanitize --no-gl | grep -vE "^      test result: ok|^      +1 ========= RACECHECK SUMMARY: 0 hazards"
el
# 2. memcheck + synccheck on the binaries with concurrent copies
for tool in memcheck synccheck; do for b in vuma-cuda-conformance vuma-hyperloop-cuda vuma-hyperloop-encode; do
  (cd $B && VUMA_UNDER_SANITIZER=1 timeout 60 $SAN --tool $tool --error-exitcode 86 tests/$b --skip compile_error_is_typed > /tmp/$tool-$b.log 2>&1); echo "$tool $b rc=$? $(grep -E '^test result' /tmp/$tool-$b.log | head -1) $(grep -E 'ERROR SUMMARY' /tmp/$tool-$b.log | tail -1)"
done; done
el
# 3. soak of the whole stack on every device, 60 s, RSS timeline
(cd $B && VUMA_SOAK_SECS=60 VUMA_REQUIRE_HW=1 timeout 90 tests/vuma-soak_devices --nocapture > $OUT/soak_devices.txt 2>&1); echo "soak_devices rc=$?"; grep -vE "^\s*$|running 1 test|^test " $OUT/soak_devices.txt | head -30
el
