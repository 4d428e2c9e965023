#!/usr/bin/env bash
# Hardware session K (2026-12-01, session 4): the Vulkan (WGSL) device encoder on the H200 — tests with validation
# (bit-exact vs the host encoder, corrupt jobs/stats flagged as on the host), the manager through Hyperloop on Vulkan,
# the eviction round trip on CUDA and Vulkan, the manager bench. Bundle from main; carry ["target/hw-bundle", ".gl"].
B=target/hw-bundle
for f in .gl/*.deb $B/vvl/*.deb; do dpkg -x $f / ; done; ldconfig
T0=$(date +%s); el() { echo "[t+$(( $(date +%s) - T0 ))s]"; }
for b in "vuma-hyperloop-vulkan 120" "vuma-hyperloop-manager 90" "vuma-hyperloop-cuda 60" "vuma-vulkan-conformance 60"; do set -- $b
  (cd $B && VUMA_VK_VALIDATION=1 VK_LAYER_ENABLES=VK_VALIDATION_FEATURE_ENABLE_SYNCHRONIZATION_VALIDATION_EXT VUMA_REQUIRE_HW=1 timeout $2 tests/$1 --nocapture > /tmp/t-$1.txt 2>&1); rc=$?; echo "test $1 rc=$rc $(grep '^test result' /tmp/t-$1.txt | tail -1)"; grep -E "validation:|panicked|FAILED" /tmp/t-$1.txt | sort | uniq -c | head -6
  [ $rc -ne 0 ] && cp /tmp/t-$1.txt $OUT/
done
el
for b in "vuma-hyperloop-hyperloop 150" "vuma-hyperloop-manager 150"; do set -- $b
  (cd $B && VUMA_BENCH_OUT=$OUT/bench.jsonl timeout $2 benches/$1 > $OUT/log-$1.txt 2>&1); echo "bench $1 rc=$?"; grep -E "evict_roundtrip.*: size pass|ERROR|^  evict_roundtrip/" $OUT/log-$1.txt | cut -c1-240 | head -20
  el
done
grep -o '"bench":"[^"]*","device":"[^"]*","value":[0-9.]*\|"ratio":[0-9.]*' $OUT/bench.jsonl | paste - - | sed 's/"device":"[^"]*",//; s/"bench"://; s/"value"://; s/"ratio"://' | grep -E "manager/|evict|h2d_compressed_pinned|decode"
el
