#!/usr/bin/env bash
# H200 run J, part 2 (same machine, after part 1): the float bench at 16 KiB and 64 KiB
# float pages (VUMA_HL_PAGE_KIB), next to part 1's 32 KiB default.
set -u
OUT="${OUT:-/tmp/out}"
B=target/hw-bundle
export VUMA_REQUIRE_HW=1 VUMA_DATA_DIR="$PWD/.rdata"
mkdir -p "$OUT"
for k in 16 64; do
  echo "== float bench, ${k} KiB pages"
  VUMA_HL_PAGE_KIB=$k VUMA_BENCH_OUT="$OUT/float-$k.jsonl" timeout 140 $B/benches/vuma-hyperloop-float > /tmp/b-float-$k.log 2>&1
  echo "rc=$?"; grep -E "^hyperloop/cuda/float/" /tmp/b-float-$k.log | awk '{print $1, $2, $3, "ratio", $NF}'
done
cat /tmp/b-float-16.log /tmp/b-float-64.log > "$OUT/benches.log"
