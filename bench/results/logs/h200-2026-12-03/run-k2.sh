#!/usr/bin/env bash
# H200 run K, part 2 (same machine): the CUDA bench (copies, eviction against UVM) and
# Hyperloop's manager bench, to compare with the 2026-12-01 records after the CUDA and
# encoder splits; the first-upload bench; the Python transfer bench after the host pool's
# device-set fix.
set -u
OUT="${OUT:-/tmp/out}"
B=target/hw-bundle
B2=target/hw-bundle2
export VUMA_REQUIRE_HW=1 VUMA_DATA_DIR="$PWD/.rdata"
mkdir -p "$OUT"
echo "== cuda bench"
VUMA_BENCH_OUT="$OUT/cuda.jsonl" timeout 150 $B2/benches/vuma-cuda-cuda > /tmp/b-cuda.log 2>&1
echo "rc=$?"; grep -E "^cuda/" /tmp/b-cuda.log | cut -c1-170
echo "== manager bench"
VUMA_BENCH_OUT="$OUT/manager.jsonl" timeout 150 $B/benches/vuma-hyperloop-manager > /tmp/b-mgr.log 2>&1
echo "rc=$?"; grep -E "^manager/" /tmp/b-mgr.log | cut -c1-170
echo "== first upload bench"
VUMA_BENCH_OUT="$OUT/first.jsonl" timeout 100 $B/benches/vuma-first_upload > /tmp/b-first.log 2>&1
echo "rc=$?"; grep -vE "^\s*$" /tmp/b-first.log | grep -vE "^manager/" | cut -c1-260 | tail -8
echo "== python transfer"
SITE=$(mktemp -d /tmp/vuma-py.XXXXXX)
python3 -m pip install -q --no-deps --no-index --target "$SITE" .whl/vuma-*.whl 2>&1 | tail -2
PYTHONPATH="$SITE" timeout 120 python3 bench/py/transfer.py "$OUT/py.jsonl" --device cuda > /tmp/b-py.log 2>&1
echo "rc=$?"; tail -16 /tmp/b-py.log
cat /tmp/b-cuda.log /tmp/b-mgr.log /tmp/b-first.log /tmp/b-py.log > "$OUT/benches.log"
