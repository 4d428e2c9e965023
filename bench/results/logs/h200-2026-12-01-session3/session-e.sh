#!/usr/bin/env bash
# Hardware session E (2026-12-01, session 3): faster encoder kernels (parallel plans, warp-summed offsets); chunk size sweep.
B=target/hw-bundle
for f in .gl/*.deb; do dpkg -x $f /; done; ldconfig
T0=$(date +%s); el() { echo "[t+$(( $(date +%s) - T0 ))s]"; }
for b in vuma-hyperloop-cuda vuma-hyperloop-encode vuma-cuda-conformance; do
  (cd $B && VUMA_REQUIRE_HW=1 timeout 40 tests/$b > $OUT/t-$b.txt 2>&1); echo "test $b rc=$? $(grep '^test result' $OUT/t-$b.txt)"; grep -E "panicked|FAILED|error" $OUT/t-$b.txt | head -5
done
el
for c in "" 8; do
  (cd $B && VUMA_HL_CHUNK_MIB=$c VUMA_BENCH_OUT=$OUT/bench-chunk${c:-default}.jsonl timeout 60 benches/vuma-hyperloop-hyperloop > $OUT/log-chunk${c:-default}.txt 2>&1); echo "bench chunk=${c:-default} rc=$?"
  grep -E "evict_roundtrip.*: size pass|ERROR" $OUT/log-chunk${c:-default}.txt
  grep -o '"bench":"hyperloop/cuda[^"]*","device":"[^"]*","value":[0-9.]*\|"ratio":[0-9.]*' $OUT/bench-chunk${c:-default}.jsonl | paste - - | sed 's/"device":"[^"]*",//; s/"bench"://; s/"value"://; s/"ratio"://'
  el
done
