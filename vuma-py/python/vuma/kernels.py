"""VUMA's built-in kernels: each has a CUDA, a Vulkan (SPIR-V) and a host variant of the
same semantics, uses 64-thread blocks and a grid-stride loop, and declares its parameters
(an element count larger than a buffer is an exception before anything is launched)."""

from typing import Tuple

from ._vuma import Kernel, builtin_kernel
from ._vuma import launch_for as _launch_for

__all__ = ["relu_scale", "blend", "scale_u32", "launch_for"]

Dim3 = Tuple[int, int, int]


def relu_scale() -> Kernel:
    """``y[i] = max(x[i], 0) * scale`` over ``n`` float32 elements.

    Arguments: ``x`` (buffer, read), ``y`` (buffer, written), ``n`` (u32), ``scale`` (f32).
    """
    return builtin_kernel("relu_scale")


def blend() -> Kernel:
    """Per-byte average of two RGBA8 images.

    Arguments: ``a`` (read), ``b`` (read), ``dst`` (written), ``n`` (u32 pixels).
    """
    return builtin_kernel("blend")


def scale_u32() -> Kernel:
    """``buf[i] = buf[i] * mul + add`` over ``n`` uint32 elements (wrapping).

    Arguments: ``buf`` (read and written), ``n``, ``mul``, ``add`` (u32).
    """
    return builtin_kernel("scale_u32")


def launch_for(n: int) -> Tuple[Dim3, Dim3]:
    """The ``(grid, block)`` the built-in kernels use for ``n`` elements."""
    return _launch_for(n)
