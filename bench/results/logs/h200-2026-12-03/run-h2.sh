#!/usr/bin/env bash
# H200 run H, part 2 (same machine, after part 1): the new fuzz target encode_jobs for 10
# million executions on 12 cores (.fz: `cargo xtask fuzz --bundle .fz --runs 10000000
# --jobs 12 --target encode_jobs`), and compute-sanitizer racecheck (--error-exitcode 1) on
# single tests of the CUDA Hyperloop binaries, whose whole runs exceeded 420 s under
# racecheck in run G. Carried: target/hw-bundle, .gl, .fz.
set -u
OUT="${OUT:-/tmp/out}"
B=target/hw-bundle
for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
export VUMA_REQUIRE_HW=1 VUMA_DATA_DIR="$PWD/.rdata"
mkdir -p "$OUT"
SAN=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
(
  mkdir -p /tmp/fz/work /tmp/fz/art
  start=$(date +%s)
  timeout 540 taskset -c 4-15 .fz/bin/encode_jobs /tmp/fz/work .fz/corpus/encode_jobs -print_final_stats=1 \
    -rss_limit_mb=2048 -timeout=10 -runs=10000000 -fork=12 -max_total_time=500 -artifact_prefix=/tmp/fz/art/ > /tmp/fz/encode_jobs.log 2>&1
  st=$?
  n=$(grep -oE 'fuzzed for [0-9]+ iterations|stat::number_of_executed_units: *[0-9]+' /tmp/fz/encode_jobs.log | grep -oE '[0-9]+' | tail -1)
  echo "encode_jobs execs=${n:-0} seconds=$(( $(date +%s) - start )) rc=$st crashes=$(find /tmp/fz/art -type f | wc -l)" > /tmp/fz/summary.txt
) &
FZ=$!
san() { # tool binary filter
  local log="/tmp/san-$1-$(basename "$2")-$3.log"
  VUMA_UNDER_SANITIZER=1 timeout 500 taskset -c 0-3 "$SAN" --tool "$1" --error-exitcode 1 --report-api-errors no "$2" "$3" --exact --test-threads 1 > "$log" 2>&1
  local rc=$?
  echo "$1 $(basename "$2") $3: rc=$rc $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$log" | tail -1) $(grep -E '^test result' "$log" | tail -1 | cut -c1-60)"
}
{
san racecheck $B/tests/vuma-hyperloop-cuda_float cuda_float_decoder_matches_the_host &
san racecheck $B/tests/vuma-hyperloop-cuda_float cuda_float_decoder_flags_what_the_host_flags &
san racecheck $B/tests/vuma-hyperloop-cuda cuda_decoders_match_the_host_on_every_dataset &
san racecheck $B/tests/vuma-hyperloop-cuda cuda_eviction_matches_the_host_encoder &
wait
} 2>&1 | tee "$OUT/sanitizers.txt"
wait $FZ
{ cat /tmp/fz/summary.txt; tail -4 /tmp/fz/encode_jobs.log; } | tee "$OUT/fuzz.txt"
tar czf "$OUT/logs.tgz" -C /tmp $(cd /tmp && ls san-*.log) fz/encode_jobs.log
