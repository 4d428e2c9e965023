#!/usr/bin/env bash
# VUMA hardware-test bundle runner, written by `cargo xtask test-hw --bundle DIR`.
# Needs bash and coreutils only (no Rust). See docs/testing.md.
#
# Usage: [OUT=dir] [VUMA_REQUIRE_HW=0|1] ./run.sh [--sanitize] [--bench] [--all] [--no-tests] [--no-gl]
#   (no flags)   run every test binary in tests/ with VUMA_REQUIRE_HW=1 (a missing GPU fails)
#   --sanitize   also run the test binaries under `compute-sanitizer --tool memcheck`
#   --bench      also run the bench binaries in benches/ (records: $OUT/bench.jsonl, $OUT/results.json)
#   --all        tests, sanitizer and benches
#   --no-tests   skip the plain test pass (e.g. `--no-tests --bench`)
#   --no-gl      do not unpack a .gl folder of Vulkan loader .debs
# Environment: OUT (default DIR/out), VUMA_REQUIRE_HW (default 1), VUMA_TEST_ARGS (passed to
#   every test binary), VUMA_TEST_TIMEOUT / VUMA_BENCH_TIMEOUT (seconds per binary, default 600
#   / 300), VUMA_SANITIZER_ARGS, VUMA_BENCH_QUICK, VUMA_GL_DIR, VUMA_LOG_CAP_BYTES (default 8 MiB),
#   VUMA_MAX_OUT_FILES (default 8: beyond it the per-binary logs are packed into logs.tar.gz),
#   VUMA_SANITIZE_SKIP (test names skipped in the sanitizer pass; default: the tests that
#   provoke CUDA API errors on purpose), VUMA_SANITIZER_TOOLS (default memcheck; e.g.
#   "memcheck racecheck synccheck").
# The sanitizer passes (only those) run every binary with VUMA_UNDER_SANITIZER=1: the
#   Hyperloop CUDA/Vulkan tests then shrink their data sets, chunks and decode-rate sample
#   16-fold (same code paths; racecheck at full size did not finish in 420 s on an H200).
# Exit status: 0 when every binary run passed, 1 otherwise, 2 on bad usage.
set -uo pipefail

BUNDLE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUT="${OUT:-$BUNDLE/out}"
export VUMA_REQUIRE_HW="${VUMA_REQUIRE_HW:-1}"
TEST_TIMEOUT="${VUMA_TEST_TIMEOUT:-600}"
BENCH_TIMEOUT="${VUMA_BENCH_TIMEOUT:-300}"
# Full sizes in the plain and bench passes, whatever the caller's shell exports.
unset VUMA_UNDER_SANITIZER
LOG_CAP="${VUMA_LOG_CAP_BYTES:-8388608}"
MAX_OUT_FILES="${VUMA_MAX_OUT_FILES:-8}"

do_tests=1 do_sanitize=0 do_bench=0 do_gl=1
for arg in "$@"; do
  case "$arg" in
    --sanitize) do_sanitize=1 ;;
    --bench) do_bench=1 ;;
    --all) do_sanitize=1; do_bench=1 ;;
    --no-tests) do_tests=0 ;;
    --no-gl) do_gl=0 ;;
    -h|--help) sed -n '2,22p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "run.sh: unknown argument: $arg (see --help)" >&2; exit 2 ;;
  esac
done

mkdir -p "$OUT" || { echo "run.sh: cannot create OUT=$OUT" >&2; exit 2; }
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/vuma-run.XXXXXX")" || exit 2
trap 'rm -rf "$WORK"' EXIT
failures=0
LOGS=()

say() { printf '%s\n' "$*" | tee -a "$SUMMARY"; }
now() { if [ -n "${EPOCHREALTIME:-}" ]; then echo "${EPOCHREALTIME/,/.}"; else date +%s; fi; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }

# Copies a log into $OUT, keeping its head and tail when it is larger than LOG_CAP.
keep_log() { # src dest
  local size
  size=$(wc -c < "$1" | tr -d ' ')
  if [ "$size" -le "$LOG_CAP" ]; then
    cp "$1" "$2"
  else
    { head -c $((LOG_CAP / 4)) "$1"
      printf '\n\n[... run.sh: %s bytes cut, log was %s bytes ...]\n\n' $((size - LOG_CAP)) "$size"
      tail -c $((LOG_CAP * 3 / 4)) "$1"; } > "$2"
  fi
  LOGS+=("$(basename "$2")")
}

with_timeout() { # seconds cmd...
  local t="$1"; shift
  if command -v timeout >/dev/null 2>&1; then timeout -k 10 "$t" "$@"; else "$@"; fi
}

# Lists the executables of one bundle folder.
binaries() { local f; for f in "$BUNDLE/$1"/*; do [ -f "$f" ] && [ -x "$f" ] && printf '%s\n' "$f"; done; }

setup_vulkan_loader() {
  if ldconfig -p 2>/dev/null | grep -q 'libvulkan\.so\.1'; then
    say "vulkan loader: present"; return
  fi
  local d f
  for d in "${VUMA_GL_DIR:-}" "$PWD/.gl" "$BUNDLE/.gl" "$BUNDLE/../.gl" "$BUNDLE/../../.gl"; do
    [ -n "$d" ] || continue
    compgen -G "$d/*.deb" >/dev/null || continue
    if [ "$(id -u)" != 0 ] || ! command -v dpkg >/dev/null; then
      say "vulkan loader: absent; $d has .debs but unpacking needs root and dpkg"; return
    fi
    for f in "$d"/*.deb; do dpkg -x "$f" / || say "vulkan loader: dpkg -x $f failed"; done
    ldconfig
    say "vulkan loader: unpacked $(ls "$d"/*.deb | wc -l | tr -d ' ') .debs from $d"; return
  done
  say "vulkan loader: absent and no .gl folder found (Vulkan tests will skip, or fail when required)"
}

# Runs one binary; appends a PASS/FAIL line (and the tail of a failing log) to the summary.
run_one() { # pass-name binary log-name timeout [prefix command...]
  local pass="$1" bin="$2" logname="$3" t="$4"; shift 4
  local name log start rc verdict results skips note
  name="$(basename "$bin")"
  log="$WORK/$logname"
  start="$(now)"
  (cd "$BUNDLE" && with_timeout "$t" "$@" "$bin" ${VUMA_TEST_ARGS:-}) > "$log" 2>&1
  rc=$?
  if [ "$rc" -ne 0 ] && [ "${pass%%-*}" = sanitize ] \
     && grep -q 'terminated before first instrumented API call' "$log" \
     && grep -q '^test result: ok' "$log" && ! grep -q '^test result: FAILED' "$log"; then
    # compute-sanitizer exits 255 when the program never initialised CUDA (seen on the H100
    # with the host-only vuma-core tests): nothing was sanitized, and the tests passed.
    rc=0; verdict="PASS (no CUDA calls: nothing to sanitize)"
  elif [ "$rc" -eq 0 ]; then verdict=PASS
  elif [ "$rc" -eq 124 ]; then verdict="FAIL (timeout ${t}s)"
  else verdict=FAIL
  fi
  [ "$rc" -ne 0 ] && failures=$((failures + 1))
  results="$(grep -E '^test result:' "$log" | tr '\n' ' ' | sed 's/ *$//')"
  skips="$(grep -c 'SKIP' "$log")"
  note=""
  [ "$skips" != 0 ] && note=" [$skips SKIP lines]"
  say "$verdict  $pass  $name  ($(elapsed "$start"), exit $rc)$note"
  [ -n "$results" ] && say "      $results"
  if [ "${pass%%-*}" = sanitize ]; then
    grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$log" | sort | uniq -c | sed 's/^/      /' | tee -a "$SUMMARY"
  fi
  if [ "$skips" != 0 ]; then grep 'SKIP' "$log" | sort -u | head -5 | sed 's/^/      /' | tee -a "$SUMMARY"; fi
  if [ "$rc" -ne 0 ]; then
    say "      --- last 25 lines of $logname ---"
    tail -n 25 "$log" | sed 's/^/      | /' | tee -a "$SUMMARY"
  fi
  keep_log "$log" "$OUT/$logname"
}

to_json_array() { # jsonl json
  if [ -z "${VUMA_NO_PYTHON:-}" ] && command -v python3 >/dev/null 2>&1; then
    python3 - "$1" "$2" <<'PY'
import json, sys
recs, bad = [], 0
for line in open(sys.argv[1], encoding="utf-8", errors="replace"):
    line = line.strip()
    if not line.startswith("{"):
        continue
    try:
        recs.append(json.loads(line))
    except ValueError:
        bad += 1
with open(sys.argv[2], "w") as f:
    json.dump(recs, f, indent=1)
    f.write("\n")
print(f"bench: {len(recs)} records" + (f", {bad} unreadable lines skipped" if bad else ""))
def num(v):
    return "n/a" if not isinstance(v, (int, float)) else "%.4g" % v
for r in recs:
    print("  %-44s %10s %-6s vs %10s (%s)  ratio %s" % (r.get("bench"), num(r.get("value")), r.get("unit"),
          num(r.get("baseline_value")), r.get("baseline"), num(r.get("ratio"))))
PY
  else
    awk 'BEGIN { n = 0; printf "[" }
         /^[ \t]*\{/ { sub(/[ \t\r]+$/, ""); printf "%s\n%s", (n++ ? "," : ""), $0 }
         END { print "\n]"; printf "bench: %d records\n", n > "/dev/stderr" }' "$1" > "$2"
    sed 's/^/  /' "$1"
  fi
}

say "VUMA hardware run: $(date -u '+%Y-%m-%d %H:%M:%S UTC') on $(hostname 2>/dev/null || echo '?')"
say "bundle: $BUNDLE; OUT=$OUT; VUMA_REQUIRE_HW=$VUMA_REQUIRE_HW"
[ -f "$BUNDLE/MANIFEST" ] && say "$(grep -E '^(built|commit|selection):' "$BUNDLE/MANIFEST" | tr '\n' ' ')"
if command -v nvidia-smi >/dev/null 2>&1; then
  say "gpu: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -4 | tr '\n' ';')"
else
  say "gpu: nvidia-smi not found"
fi
[ "$do_gl" = 1 ] && setup_vulkan_loader

mapfile -t TESTS < <(binaries tests)
mapfile -t BENCHES < <(binaries benches)
say "tests: ${#TESTS[@]} binaries; benches: ${#BENCHES[@]} binaries"
say ""

if [ "$do_tests" = 1 ]; then
  [ "${#TESTS[@]}" -eq 0 ] && { say "FAIL  no test binaries in $BUNDLE/tests"; failures=$((failures + 1)); }
  for bin in "${TESTS[@]}"; do
    run_one test "$bin" "tests-$(basename "$bin").log" "$TEST_TIMEOUT"
  done
fi

if [ "$do_sanitize" = 1 ]; then
  SAN="$(command -v compute-sanitizer 2>/dev/null || true)"
  [ -z "$SAN" ] && [ -x /usr/local/cuda/bin/compute-sanitizer ] && SAN=/usr/local/cuda/bin/compute-sanitizer
  if [ -z "$SAN" ]; then
    say "SKIP  sanitize: compute-sanitizer not found"
  else
    # Tests that provoke CUDA API errors on purpose (a kernel that does not compile, a bad
    # PTX image: the sanitizer counts the driver's refusal as an error) are skipped in this
    # pass only; they run in the plain pass. Build-tool tests (xtask) make no CUDA call and
    # spawn shells the sanitizer cannot follow: they run in the plain pass only.
    SKIP_NAMES="${VUMA_SANITIZE_SKIP-compile_error_is_typed}"
    skip_args=""
    for n in $SKIP_NAMES; do skip_args="$skip_args --skip $n"; done
    TOOLS="${VUMA_SANITIZER_TOOLS:-memcheck}"
    say "sanitizer: $SAN, tools: $TOOLS (tests skipped in these passes: ${SKIP_NAMES:-none}; xtask binaries: plain pass only; VUMA_UNDER_SANITIZER=1: smaller inputs)"
    for tool in $TOOLS; do
      case "$tool" in
        memcheck) pass=sanitize; prefix=sanitize ;;
        racecheck|synccheck|initcheck) pass="sanitize-$tool"; prefix="$tool" ;;
        *) say "FAIL  unknown compute-sanitizer tool: $tool"; failures=$((failures + 1)); continue ;;
      esac
      # racecheck runs the tests of a binary one at a time: with parallel test threads it
      # stalled on the H200 (a binary that takes 1 s plain made no progress in 300 s), one
      # at a time every test finishes in seconds.
      thread_args=""
      [ "$tool" = racecheck ] && thread_args=" --test-threads=1"
      for bin in "${TESTS[@]}"; do
        case "$(basename "$bin")" in
          xtask-*) say "SKIP  $pass  $(basename "$bin")  (build-tool tests, no CUDA calls)"; continue ;;
        esac
        # shellcheck disable=SC2086
        VUMA_UNDER_SANITIZER=1 VUMA_TEST_ARGS="${VUMA_TEST_ARGS:-}$skip_args$thread_args" \
          run_one "$pass" "$bin" "$prefix-$(basename "$bin").log" "$TEST_TIMEOUT" \
          "$SAN" --tool "$tool" --target-processes all --error-exitcode 86 ${VUMA_SANITIZER_ARGS:-}
      done
    done
  fi
fi

if [ "$do_bench" = 1 ]; then
  export VUMA_BENCH_OUT="$OUT/bench.jsonl"
  : > "$VUMA_BENCH_OUT"
  for bin in "${BENCHES[@]}"; do
    VUMA_TEST_ARGS="" run_one bench "$bin" "bench-$(basename "$bin").log" "$BENCH_TIMEOUT"
  done
  to_json_array "$VUMA_BENCH_OUT" "$OUT/results.json" 2>&1 | tee -a "$SUMMARY"
fi

# Only a few files come back from a GPU machine: pack the per-binary logs when there are many.
nfiles=$(find "$OUT" -maxdepth 1 -type f | wc -l | tr -d ' ')
if [ "${#LOGS[@]}" -gt 0 ] && [ "$nfiles" -gt "$MAX_OUT_FILES" ]; then
  if tar -czf "$OUT/logs.tar.gz" -C "$OUT" "${LOGS[@]}"; then
    (cd "$OUT" && rm -f "${LOGS[@]}")
    say "logs: ${#LOGS[@]} logs packed into logs.tar.gz (more than $MAX_OUT_FILES files in OUT)"
  fi
fi

say ""
if [ "$failures" -eq 0 ]; then
  say "RESULT: PASS (all binaries passed)"
  exit 0
fi
say "RESULT: FAIL ($failures binary runs failed)"
exit 1
