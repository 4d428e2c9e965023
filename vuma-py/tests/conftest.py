"""Fixtures and the hardware gate of VUMA's Python tests.

Tests that need a backend skip (loudly: pytest's skip summary) when it is absent; with
``VUMA_REQUIRE_<NAME>=1`` (or ``VUMA_REQUIRE_HW=1``) set they fail instead, as the Rust
hardware tests do."""

import os

import pytest

import vuma


def required(name: str) -> bool:
    def on(var: str) -> bool:
        return os.environ.get(var, "").strip() not in ("", "0", "false", "no", "off")

    return on(f"VUMA_REQUIRE_{name.upper()}") or on("VUMA_REQUIRE_HW")


def backend_manager(backend: str) -> vuma.UnifiedMemoryManager:
    """A manager with `backend`'s devices only; skips (or fails, when required) without."""
    try:
        m = vuma.UnifiedMemoryManager(
            cuda=backend == "cuda", vulkan=backend == "vulkan", host=backend == "host"
        )
        why = m.backends().get(backend) or "no device"
        present = any(d["backend"] == backend for d in m.devices())
    except vuma.UnavailableError as e:
        why, present = str(e), False
    if not present:
        # The manager without the host device fails to start when the backend is absent:
        # ask one with the host device why.
        why = vuma.UnifiedMemoryManager(
            cuda=backend == "cuda", vulkan=backend == "vulkan"
        ).backends().get(backend) or why
        if required(backend):
            pytest.fail(f"{backend} required (VUMA_REQUIRE_{backend.upper()}=1) but unavailable: {why}")
        pytest.skip(f"{backend} unavailable: {why}")
    return m


@pytest.fixture
def host() -> vuma.UnifiedMemoryManager:
    """A manager with the host device only (every machine)."""
    return vuma.UnifiedMemoryManager(cuda=False, vulkan=False)


@pytest.fixture(params=["host", "vulkan", "cuda"])
def any_backend(request) -> vuma.UnifiedMemoryManager:
    """A manager with one backend's devices: host everywhere, Vulkan on lavapipe or a GPU,
    CUDA on an NVIDIA GPU."""
    return backend_manager(request.param)
