#!/usr/bin/env bash
# H200 run N (2026-12-03, session 4): a diagnostic of the look-ahead stall at 64 MiB with
# Hyperloop on (runs I–M). The streaming bench now prints each pass's GB/s and the packed
# host copies made during it (clean copies packed on their first eviction).
# Bundle: `cargo xtask test-hw --bundle target/hw-bundle3 -p vuma`. Carried: it and .rdata.
set -u
OUT="${OUT:-/tmp/out}"
B=target/hw-bundle3
export VUMA_REQUIRE_HW=1 VUMA_DATA_DIR="$PWD/.rdata"
mkdir -p "$OUT"
VUMA_BENCH_OUT="$OUT/stream.jsonl" timeout 220 $B/benches/vuma-stream > /tmp/b-stream.log 2>&1
echo "rc=$?"; grep -E "^  |vuma hyper" /tmp/b-stream.log | sed -e 's/first upload "[^"]*"; //' | cut -c1-330
cp /tmp/b-stream.log "$OUT/benches.log"
