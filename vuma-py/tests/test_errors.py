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


def test_the_host_device_uses_buffers_in_place_whatever_its_budget():
    # The host device shares host memory: a kernel there uses the buffer's host copy itself,
    # so a buffer larger than its budget still runs, and nothing is allocated on it. (The
    # budget errors of devices that keep copies are covered by the Rust tests.)
    m = vuma.UnifiedMemoryManager(cuda=False, vulkan=False, host_budget=1 << 20)
    x = m.create_buffer(4 << 20)
    w = vuma.GPUWorkload("big", "COMPUTE", kernel=vuma.kernels.scale_u32(), args=[x, 1 << 20, 1, 1])
    plan = m.plan(w)
    assert "used in place" in repr(plan)
    m.process_workload(w)
    host = next(l for l in m.stats()["locations"] if l["location"] == "host")
    assert host["allocations"] == 0
    assert host["in_place_uses"] == 1
    assert host["in_place_bytes"] == 4 << 20
    assert host["link_bytes_in"] == 0


def test_buffers_of_another_manager_are_refused(host):
    other = vuma.UnifiedMemoryManager(cuda=False, vulkan=False)
    x = other.create_buffer(256)
    w = vuma.GPUWorkload("k", "UI", kernel=vuma.kernels.scale_u32(), args=[x, 64, 1, 1])
    with pytest.raises(vuma.InvalidArgumentError, match="another manager"):
        host.process_workload(w)
