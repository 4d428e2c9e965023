"""PyTorch tensors in and out (skipped where torch is not installed)."""

import pytest

import vuma

torch = pytest.importorskip("torch")


def test_cpu_tensors_in_through_dlpack(host):
    t = torch.arange(1000, dtype=torch.float32).reshape(10, 100)
    b = host.create_buffer_from(t)
    assert b.dtype == "<f4" and tuple(b.shape) == (10, 100)
    assert torch.equal(torch.from_dlpack(b), t)


def test_bfloat16_keeps_its_type(host):
    t = torch.randn(64, dtype=torch.bfloat16)
    b = host.create_buffer_from(t)
    assert b.dtype == "bfloat16"
    back = torch.from_dlpack(b)
    assert back.dtype == torch.bfloat16 and torch.equal(back, t)


def test_non_contiguous_tensors_are_refused(host):
    t = torch.arange(12, dtype=torch.float32).reshape(3, 4).t()
    with pytest.raises(vuma.InvalidArgumentError, match="contiguous"):
        host.create_buffer_from(t)


def test_cuda_tensors_are_copied_through_the_host(host):
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA device")
    t = torch.arange(4096, dtype=torch.float32, device="cuda")
    b = host.create_buffer_from(t)
    assert torch.equal(torch.from_dlpack(b), t.cpu())
