"""The type stubs match the extension module (mypy's stubtest; skipped without mypy)."""

import subprocess
import sys

import pytest

pytest.importorskip("mypy")


def test_stubs_match_the_module():
    r = subprocess.run([sys.executable, "-m", "mypy.stubtest", "vuma._vuma"],
                       capture_output=True, text=True, cwd="/")
    assert r.returncode == 0, r.stdout + r.stderr
