"""Errors are Python exceptions, one class per kind, all VumaError."""

import pytest

import vuma

KINDS = ["UnavailableError", "OutOfMemoryError", "TooLargeError", "BudgetExceededError",
         "ZeroSizeError", "OutOfRangeError", "ElementSizeError", "InvalidArgumentError",
         "WrongDeviceError", "UnsupportedPlacementError", "NoKernelVariantError",
         "NoEligibleDeviceError", "CompileError", "KernelError", "CorruptError",
         "DeviceLostError", "BackendError", "QueueFullError", "CancelledError", "InUseError",
         "DataLostError"]


def test_every_kind_is_a_vuma_error():
    assert issubclass(vuma.VumaError, Exception)
    for k in KINDS:
        cls = getattr(vuma, k)
        assert issubclass(cls, vuma.VumaError) and cls is not vuma.VumaError, k


def test_errors_from_the_memory_manager(host):
    with pytest.raises(vuma.ZeroSizeError):
        host.create_buffer(0)
    with pytest.raises(vuma.ZeroSizeError):
        host.create_buffer_from(b"")
    b = host.create_buffer(16)
    with pytest.raises(vuma.OutOfRangeError):
        b.write(b"12345678", offset=12)
    with pytest.raises(vuma.TooLargeError):
        host.create_buffer(1 << 62)
    with pytest.raises(OverflowError):
        host.create_buffer(-1)


def test_a_budget_too_small_is_too_large_at_first_use():
    m = vuma.UnifiedMemoryManager(cuda=False, vulkan=False, host_budget=1 << 20)
    x = m.create_buffer(4 << 20)
    w = vuma.GPUWorkload("big", "COMPUTE", kernel=vuma.kernels.scale_u32(), args=[x, 1 << 20, 1, 1])
    plan = m.plan(w)
    assert "can never fit" in repr(plan)
    with pytest.raises(vuma.TooLargeError):
        m.process_workload(w)


def test_buffers_of_another_manager_are_refused(host):
    other = vuma.UnifiedMemoryManager(cuda=False, vulkan=False)
    x = other.create_buffer(256)
    w = vuma.GPUWorkload("k", "UI", kernel=vuma.kernels.scale_u32(), args=[x, 64, 1, 1])
    with pytest.raises(vuma.InvalidArgumentError, match="another manager"):
        host.process_workload(w)
