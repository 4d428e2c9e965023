#!/usr/bin/env bash
# VUMA's Python benchmarks and tests on a GPU machine without Rust: installs the abi3 wheel
# (built elsewhere: see the README's "Python" section) into a private folder, runs the
# pytest suite with CUDA required, then the transfer and streaming benchmarks.
# From the repository root:  bash bench/py/run-gpu.sh WHEEL [OUT]
# WHEEL: the vuma-*-cp39-abi3-*.whl file; OUT (default /tmp/out): where logs and
# records.jsonl go. Weights: $VUMA_DATA_DIR, else .rdata, else target/vuma-data.
set -u
WHEEL="${1:?usage: bench/py/run-gpu.sh WHEEL [OUT]}"
OUT="${2:-${OUT:-/tmp/out}}"
PY="${PYTHON:-python3}"
mkdir -p "$OUT"
# The Vulkan loader and validation layer, where the run carries them (.gl, .vvl: Debian
# packages, as for the Rust hardware bundle): the Vulkan tests then run and must pass.
if ls .gl/*.deb >/dev/null 2>&1; then
  for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
  export VUMA_REQUIRE_VULKAN=1
fi
if ls .vvl/*.deb >/dev/null 2>&1; then
  mkdir -p /tmp/vvl && dpkg -x .vvl/*.deb /tmp/vvl
  export VK_ADD_LAYER_PATH=/tmp/vvl/usr/share/vulkan/explicit_layer.d
  export LD_LIBRARY_PATH=/tmp/vvl/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  export VUMA_VK_VALIDATION=1 VUMA_REQUIRE_VALIDATION=1
fi
SITE="$(mktemp -d /tmp/vuma-py.XXXXXX)"
if ! "$PY" -m pip install --no-deps --no-index --target "$SITE" "$WHEEL" 2>&1 | tail -2 ||
   [ ! -d "$SITE/vuma" ]; then
  # pip refuses a wheel whose platform tag it does not accept (an older glibc, say): a
  # wheel is a zip, so unpack it; importing then says plainly what is missing.
  echo "pip install failed; unpacking the wheel instead"
  "$PY" -m zipfile -e "$WHEEL" "$SITE"
fi
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
export VUMA_DATA_DIR="${VUMA_DATA_DIR:-$PWD/.rdata}"
"$PY" -c "import vuma, sys; print('vuma', vuma.__version__, 'on Python', sys.version.split()[0]); print(vuma.UnifiedMemoryManager().backends())" 2>&1 | tee "$OUT/py-info.log"
echo "== pytest (CUDA required)"
# pytest and its dependencies from carried wheels (.whl/deps: `pip download pytest -d
# .whl/deps`) where this Python has none.
if ! "$PY" -c "import pytest" 2>/dev/null && ls .whl/deps/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-deps --no-index --target "$SITE" .whl/deps/*.whl 2>&1 | tail -2
fi
if "$PY" -c "import pytest" 2>/dev/null; then
  VUMA_REQUIRE_CUDA=1 timeout "${PYTEST_TIMEOUT:-300}" "$PY" -m pytest -q -rs vuma-py/tests 2>&1 | tee "$OUT/pytest.log" | tail -15
else
  echo "SKIP: pytest is not installed here" | tee "$OUT/pytest.log"
fi
echo "== seed block"
"$PY" - <<'PY' 2>&1 | tee "$OUT/seed.log"
from vuma import UnifiedMemoryManager, GPUWorkload
vuma = UnifiedMemoryManager()
ai_task = GPUWorkload(id="AI_Training_Job", type="INFERENCE", complexity_score=0.95, memory_requirement_mb=4096, priority=10)
vuma.process_workload(ai_task)
PY
echo "== transfer"
timeout "${TRANSFER_TIMEOUT:-600}" "$PY" bench/py/transfer.py "$OUT/records.jsonl" --device cuda 2>&1 | tee "$OUT/transfer.log"
echo "== stream"
# STREAM_ARGS: e.g. "--layer-mib 64" for a shorter run.
timeout "${STREAM_TIMEOUT:-900}" "$PY" bench/py/stream.py "$OUT/records.jsonl" --backend cuda ${STREAM_ARGS:-} 2>&1 | tee "$OUT/stream.log"
