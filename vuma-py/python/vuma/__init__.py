"""VUMA — virtual unified memory for PCs with discrete GPUs.

One memory that host and GPUs share: a :class:`Buffer` is valid on the host and on every
device, small buffers are read in place (zero-copy), large ones migrate lazily to VRAM and
are evicted under pressure, and the Tidal Wave scheduler sends light work to the low tier
(integrated GPU or CPU) and heavy work to the discrete GPU.

The seed's usage, as written::

    from vuma import UnifiedMemoryManager, GPUWorkload

    vuma = UnifiedMemoryManager()
    ai_task = GPUWorkload(id="AI_Training_Job", type="INFERENCE", complexity_score=0.95,
                          memory_requirement_mb=4096, priority=10)
    vuma.process_workload(ai_task)

A workload without a kernel is planned, not run: VUMA reserves its managed memory lazily,
chooses the device by the Tidal Wave policy and prints the transfer plan. Give it a
``kernel`` (``vuma.kernels.relu_scale()``, or ``vuma.Kernel(...)`` from CUDA C or WGSL) and
``args`` (buffers and numbers) and it runs.
"""

from . import kernels
from ._vuma import (
    BUILTIN_KERNELS,
    KIND_NAMES,
    BackendError,
    Buffer,
    BudgetExceededError,
    CancelledError,
    CompileError,
    CorruptError,
    DataLostError,
    DeviceLostError,
    ElementSizeError,
    GPUWorkload,
    InUseError,
    InvalidArgumentError,
    Kernel,
    KernelError,
    NoEligibleDeviceError,
    NoKernelVariantError,
    OutOfMemoryError,
    OutOfRangeError,
    QueueFullError,
    TooLargeError,
    UnavailableError,
    UnifiedMemoryManager,
    UnsupportedPlacementError,
    VumaError,
    WorkloadReport,
    WrongDeviceError,
    ZeroSizeError,
    __version__,
)

__all__ = [
    "BUILTIN_KERNELS",
    "KIND_NAMES",
    "BackendError",
    "Buffer",
    "BudgetExceededError",
    "CancelledError",
    "CompileError",
    "CorruptError",
    "DataLostError",
    "DeviceLostError",
    "ElementSizeError",
    "GPUWorkload",
    "InUseError",
    "InvalidArgumentError",
    "Kernel",
    "KernelError",
    "NoEligibleDeviceError",
    "NoKernelVariantError",
    "OutOfMemoryError",
    "OutOfRangeError",
    "QueueFullError",
    "TooLargeError",
    "UnavailableError",
    "UnifiedMemoryManager",
    "UnsupportedPlacementError",
    "VumaError",
    "WorkloadReport",
    "WrongDeviceError",
    "ZeroSizeError",
    "__version__",
    "kernels",
]
