//! # vuma-cuda
//!
//! VUMA's [`Device`](vuma_core::Device) / [`Buffer`](vuma_core::Buffer) over the NVIDIA
//! CUDA **driver API**, through `cudarc` with libcuda and libnvrtc loaded at run time: the
//! crate builds and starts on machines without CUDA, and there [`devices`] returns
//! [`Error::Unavailable`](vuma_core::Error::Unavailable) instead of panicking.
//!
//! This crate owns: device discovery and [`DeviceInfo`](vuma_core::DeviceInfo) (driver
//! attributes plus NVML's PCIe link, power and temperature), the three placements in CUDA
//! memory, host↔device transfers (a pinned staging ring for pageable memory, batched
//! copies), NVRTC compilation with its caches, and kernel launches.
//!
//! | VUMA | CUDA |
//! | --- | --- |
//! | [`CudaDevice`] | a device's primary context, one compute stream, two copy streams |
//! | [`Placement::DeviceLocal`](vuma_core::Placement::DeviceLocal) | `cuMemAllocAsync` from the device's default pool (release threshold `u64::MAX`), freed with `cuMemFreeAsync` |
//! | [`Placement::HostMapped`](vuma_core::Placement::HostMapped) | `cuMemHostAlloc(DEVICEMAP \| PORTABLE)` (not write-combined); kernels get `cuMemHostGetDevicePointer_v2` |
//! | [`Placement::Staging`](vuma_core::Placement::Staging) | `cuMemHostAlloc(PORTABLE)` pinned host memory |
//! | `write` / `read` of device-local memory | pipelined through the pinned staging ring on the copy streams |
//! | `copy` / `fill` | `cuMemcpyAsync` / `cuMemsetD8Async` on the compute stream |
//! | `KernelVariant::Cuda { Source }` | NVRTC → CUBIN for the exact `sm_XY`, cached per process and on disk |
//! | `KernelVariant::Cuda { Ptx }` | the driver JIT (`cuModuleLoadDataEx`) |
//! | `synchronize` | `cuStreamSynchronize` of every stream, then errors deferred from `Drop` |
//!
//! Beyond the trait: [`CudaDevice::write_batch`] (many small pieces in one
//! `cuMemcpyBatchAsync_v2` per ring chunk), [`CudaDevice::measure_link`] (measured pinned
//! bandwidth into `DeviceInfo::host_link`), and raw handles for interop
//! ([`CudaDevice::cu_context`], [`CudaDevice::cu_stream`], [`CudaBuffer::device_ptr`]).
//!
//! ```no_run
//! use vuma_core::{AccessMode, Arg, Device, Kernel, LaunchConfig, Placement, Scalar};
//! let dev = vuma_cuda::CudaDevice::open(0)?;
//! let buf = dev.alloc(4096, Placement::DeviceLocal)?;
//! dev.write(&buf, 0, &[0u8; 4096])?;
//! let k = Kernel::new("inc").with_cuda_source(
//!     r#"extern "C" __global__ void inc(unsigned* b, unsigned n) {
//!         unsigned i = blockIdx.x * blockDim.x + threadIdx.x; if (i < n) b[i] += 1; }"#,
//!     "inc",
//! );
//! dev.launch(&k, &LaunchConfig::for_elements(1024, 256),
//!     &[Arg::whole(&buf, AccessMode::ReadWrite), Arg::Scalar(Scalar::U32(1024))])?;
//! dev.synchronize()?;
//! # Ok::<(), vuma_core::Error>(())
//! ```
//!
//! ## Feature flags
//! None: the crate has no optional features. The CUDA API level is fixed at 13.0
//! (`cudarc`'s `cuda-13000`, driver 580 or newer), loaded dynamically.
//!
//! ## Environment
//! - `XDG_CACHE_HOME` / `HOME`: the CUBIN disk cache lives in `$XDG_CACHE_HOME/vuma/cuda`
//!   (or `~/.cache/vuma/cuda`); `VUMA_CUDA_NO_DISK_CACHE=1` turns it off.
//! - `VUMA_CUDA_RING=<slots>x<MiB>` (e.g. `12x4`): the staging ring's layout, read at open.
//!
//! # CUDA internals
//!
//! **Context and streams.** A [`CudaDevice`] retains the device's *primary* context (so it
//! shares memory with any other library in the process that uses the runtime API) and binds
//! it to each calling thread (`cuCtxGetCurrent`/`cuCtxSetCurrent`) before every driver
//! call. All VUMA operations are ordered on one non-blocking **compute stream**; two
//! non-blocking **copy streams** (host→device, device→host) carry the staging-ring
//! transfers. A transfer starts by recording an event on the compute stream that the copy
//! stream waits for, and (uploads) ends by recording an event on the copy stream that the
//! compute stream waits for, so "every operation observes every earlier one" holds across
//! streams without host synchronisation.
//!
//! **Memory.** Device-local buffers come from the device's default memory pool with
//! `cuMemAllocAsync` on the compute stream; the pool's release threshold is raised to
//! `u64::MAX` at open, so freed memory stays in the pool and the next allocation costs
//! about a microsecond instead of a `cuMemAlloc` (~80 µs on the H100). Frees are
//! stream-ordered (`cuMemFreeAsync`): dropping a buffer never waits for the GPU. Host
//! placements are pinned with `cuMemHostAlloc`; their drop synchronises the compute stream
//! first (the driver would otherwise free memory a kernel still reads).
//!
//! **The pinned staging ring.** At open, the device pins one 4 MiB slot per CPU (2–16
//! slots: 64 MiB on a 16-core machine). `write` of a pageable slice into device memory splits it into slot-sized
//! chunks dealt round-robin to one worker thread per slot; each worker waits for its slot's
//! previous DMA (a per-slot event), then stages its chunk 2 MiB at a time with the CPU,
//! issuing `cuMemcpyHtoDAsync` for each piece as soon as it is staged. Host copies of some
//! slots overlap the DMAs of the others, and several CPU threads beat one thread's
//! ~11 GB/s `memcpy` (the ceiling of a plain pageable `cuMemcpyHtoD`). `read` runs the same
//! pipeline backwards (per-piece events, so each 2 MiB is copied out as soon as it lands).
//! Host-resident buffers are copied by the CPU directly, after synchronising the compute
//! stream.
//!
//! **NVRTC and the caches.** CUDA C source is compiled by raw NVRTC calls to a CUBIN for
//! the device's exact `sm_XY` (no PTX JIT at load). CUBINs are cached per process and on disk,
//! keyed by SHA-256 over the full source, the architecture, NVRTC's version and its options
//! (the file name is the digest's 64 hex digits), so different code never shares an entry;
//! loaded modules and functions are cached per device. A cached CUBIN that fails to load is
//! recompiled. PTX goes through the driver JIT with its error log captured.
//!
//! **Errors.** Driver status codes map to [`Error::Backend`](vuma_core::Error::Backend)
//! (`op` = the driver call, `transient` for out-of-memory and not-ready), out-of-memory at
//! allocation to `OutOfMemory`, NVRTC and JIT failures to `Compile` with the log. Kernel
//! faults are asynchronous: they surface at the next synchronising call. Errors from `Drop`
//! (a failed free) are recorded and returned by the next [`Device::synchronize`](vuma_core::Device::synchronize).
//! A missing libcuda/libnvrtc or symbol is checked before use (cudarc would panic) and any
//! panic on first use is caught and reported as `Unavailable`.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

mod adapter;
mod buffer;
mod compute;
mod conv;
mod device;
mod error;
mod kernel;
mod nvml;
mod options;
mod ring;
mod shared;
mod staging;
mod submit;

pub use adapter::device_count;
pub use buffer::CudaBuffer;
pub use cudarc;
pub use device::{devices, CudaDevice};
pub use options::RING_SLOT_BYTES;

/// Whether the CUDA driver library can be loaded on this machine (cheap; touches no GPU).
pub fn driver_present() -> bool {
    // SAFETY: only tries to dlopen the candidate library names.
    unsafe { cudarc::driver::sys::is_culib_present() }
}

/// NVRTC's version, or [`Error::Unavailable`](vuma_core::Error::Unavailable) when libnvrtc
/// cannot be loaded.
pub fn nvrtc_version() -> vuma_core::Result<(i32, i32)> {
    kernel::nvrtc_version()
}
