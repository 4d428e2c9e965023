#!/usr/bin/env bash
# Hardware session G (2026-12-01, session 4): validates wip/encoder-speed + wip/vulkan-concurrent together.
# Bundle built from branch wip/combined; carry ["target/hw-bundle", ".gl"].
B=target/hw-bundle
for f in .gl/*.deb $B/vvl/*.deb; do dpkg -x $f / ; done; ldconfig
T0=$(date +%s); el() { echo "[t+$(( $(date +%s) - T0 ))s]"; }
for b in "vuma-vulkan-conformance 60" "vuma-vulkan-vulkan 60" "vuma-hyperloop-vulkan 60" "vuma-hyperloop-cuda 40" "vuma-hyperloop-encode 40" "vuma-cuda-conformance 40"; do set -- $b
  (cd $B && VUMA_VK_VALIDATION=1 VUMA_REQUIRE_HW=1 timeout $2 tests/$1 --nocapture > $OUT/t-$1.txt 2>&1); echo "test $1 rc=$? $(grep '^test result' $OUT/t-$1.txt | tail -1)"; grep -E "validation:|panicked|FAILED" $OUT/t-$1.txt | head -4
done
el
for c in "" 8; do
  (cd $B && VUMA_HL_CHUNK_MIB=$c VUMA_BENCH_OUT=$OUT/bench-chunk${c:-default}.jsonl timeout 170 benches/vuma-hyperloop-hyperloop > $OUT/log-chunk${c:-default}.txt 2>&1); echo "bench chunk=${c:-default} rc=$?"
  grep -E "evict_roundtrip.*: size pass|ERROR" $OUT/log-chunk${c:-default}.txt
  grep -o '"bench":"hyperloop/[cv][^"]*","device":"[^"]*","value":[0-9.]*\|"ratio":[0-9.]*' $OUT/bench-chunk${c:-default}.jsonl | paste - - | sed 's/"device":"[^"]*",//; s/"bench"://; s/"value"://; s/"ratio"://' | grep -E "effective|evict|decode"
  el
done
