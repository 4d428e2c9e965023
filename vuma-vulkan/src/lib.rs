//! # vuma-vulkan
//!
//! VUMA's Vulkan backend: [`VulkanDevice`] / [`VulkanBuffer`] implement
//! [`vuma_core::Device`] / [`vuma_core::Buffer`] over Vulkan 1.2+ through `ash` (the loader,
//! `libvulkan.so.1`, is opened at run time: the crate builds and starts on machines without
//! Vulkan and says so with [`vuma_core::Error::Unavailable`]) and `gpu-allocator`. It runs on
//! any Vulkan 1.2 device, lavapipe (Mesa's CPU driver) included.
//!
//! How VUMA's concepts map:
//! - [`vuma_core::Placement::DeviceLocal`] → `DEVICE_LOCAL` memory (VRAM), reached by the CPU
//!   through the staging ring;
//! - [`vuma_core::Placement::HostMapped`] → host-visible, host-coherent *system* memory
//!   (cached where possible), persistently mapped and bound as a storage buffer: kernels read
//!   and write it in place (zero-copy);
//! - [`vuma_core::Placement::Staging`] → the same kind of system memory, used by copies;
//! - [`vuma_core::KernelVariant::SpirV`] → a compute pipeline (see the ABI below);
//! - [`vuma_core::DeviceInfo`] → physical-device type, deviceUUID (equal to CUDA's UUID for
//!   the same GPU), heaps with `VK_EXT_memory_budget` budgets, limits and queue families in
//!   `extra`; `compute_units` from `VK_NV_shader_sm_builtins` (`shaderSMCount`) or
//!   `VK_AMD_shader_core_properties(2)` where supported (else 0); `host_link` of a discrete
//!   GPU from its PCIe generation and width in Linux sysfs, found at the address
//!   `VK_EXT_pci_bus_info` reports (maximum link figures, as the CUDA backend does: an idle
//!   GPU trains its link down; `None` where either is missing); `l2_bytes` stays 0 (unknown):
//!   no Vulkan API or extension reports the L2 size.
//!
//! ```no_run
//! use vuma_core::{AccessMode, Arg, Device, LaunchConfig, Placement, Scalar};
//! let dev = vuma_vulkan::VulkanDevice::open(0)?;
//! let buf = dev.alloc(4096, Placement::DeviceLocal)?;
//! dev.write(&buf, 0, &[0u8; 4096])?;
//! let k = vuma_vulkan::increment_kernel();
//! dev.launch(&k, &LaunchConfig::for_elements(1024, 64),
//!            &[Arg::whole(&buf, AccessMode::ReadWrite), Arg::Scalar(Scalar::U32(1024)), Arg::Scalar(Scalar::U32(1))])?;
//! # Ok::<(), vuma_core::Error>(())
//! ```
//!
//! ## Feature flags
//! None: the backend has no optional parts. Validation is chosen at run time
//! ([`VulkanOptions::validation`], or `VUMA_VK_VALIDATION=1`).
//!
//! ## Knobs
//! Every `VUMA_VK_*` environment variable named below is also a field of [`VulkanOptions`];
//! [`VulkanOptions::from_env`] is the one place they are read, and a field set by the caller
//! wins over the environment ([`VulkanOptions::over`]).
//!
//! ## Layout
//! One concept per file: `instance` (loader, instance,
//! validation messenger), `adapter` (physical-device discovery, limits, [`vuma_core::DeviceInfo`]),
//! `device` ([`VulkanDevice`] and the [`vuma_core::Device`] impl), `buffer`, `submit`
//! (queues, command buffers, the timelines, concurrent copies), `staging` (the rings and host
//! import, over the device's shared state in `shared`), `compute` (launch checks, pipelines,
//! dispatch), `error`, `conv`, `options`, with [`memory`] (memory-type selection), `reflect`
//! (SPIR-V interfaces), `copypool` (the copy threads) and [`kernels`].
//!
//! # Vulkan internals
//! - **Loader and instance.** `ash::Entry::load()`, once per process (the loader is never
//!   unloaded while instances come and go); no loader, or `vkCreateInstance` failing
//!   (no ICD), is `Error::Unavailable`. With validation, `VK_LAYER_KHRONOS_validation` is
//!   enabled with synchronization validation (`VK_EXT_validation_features`, unless
//!   `VK_LAYER_ENABLES` is set) and a `VK_EXT_debug_utils` messenger counts errors and
//!   warnings ([`VulkanDevice::validation_errors`]). A missing layer is not an error: the
//!   device opens unvalidated and [`VulkanDevice::validation_note`] says why.
//! - **Queues.** One queue of the first compute-capable family runs kernels. Copies and
//!   fills run on a *dedicated transfer family* (transfer without graphics/compute: the copy
//!   engines of NVIDIA GPUs) when one exists, else on the compute queue. Buffers are shared
//!   `CONCURRENT`ly between the two families (no ownership transfers).
//! - **Synchronisation.** One timeline semaphore orders every submission: each waits for the
//!   previous value and signals the next, so work on the two queues runs in issue order.
//!   Each command buffer opens with a full memory barrier and ends with a barrier to
//!   `HOST` reads/writes. Every [`vuma_core::Device`] operation waits for its work before
//!   returning (the host waits on the timeline), so buffers can be dropped at any time —
//!   except [`vuma_core::Device::copy_concurrent`]: it is submitted on the transfer queue
//!   (its own command buffers, up to 8 in flight) waiting for the main timeline's last
//!   value and signalling a second, *side* timeline, and returns at once; `wait_for` makes
//!   the next submission also wait for that side value (so Hyperloop's copy of chunk i+1
//!   runs on the copy engine while chunk i is decoded), and host access to mapped memory,
//!   buffer drops and `synchronize` wait for every side copy first.
//! - **Memory types.** [`memory::select_memory_type`] is a pure function of the memory
//!   table, the purpose and whether the device is unified (integrated/CPU). **BAR rule:**
//!   on a discrete GPU, memory the CPU reads (readback, staging, zero-copy) never comes from
//!   `DEVICE_LOCAL|HOST_VISIBLE` (BAR) types — the H100's CPU reads BAR at 0.007 GB/s — and
//!   prefers `HOST_CACHED` system memory; a large BAR is chosen on purpose only for
//!   CPU-write-only uploads; a small (256 MiB) BAR window is left alone. On integrated and
//!   CPU devices host-visible device-local memory is the natural zero-copy path. The chosen
//!   type is forced on gpu-allocator by masking `memoryTypeBits` to it; buffers of 64 MiB
//!   and more get dedicated allocations.
//! - **Staging ring.** Device-local writes and reads go through a persistent ring (6 slots of
//!   16 MiB on discrete GPUs, 3 of 8 MiB elsewhere; `VUMA_VK_STAGING_SLOT_MIB` and
//!   `VUMA_VK_STAGING_SLOTS` override) of cached system memory, created on first use and
//!   never reallocated. A transfer is cut into slot-sized chunks that start and end short
//!   (slot/8, /4, /2) so the host copy that cannot overlap a DMA stays small; a persistent
//!   pool of up to 16 copy threads (`VUMA_VK_COPY_THREADS` overrides) fills slot i+1 (non-temporal stores; `VUMA_VK_STREAM_COPY=0`
//!   turns them off) while the transfer queue copies slot i, and reads run the other way
//!   round. Consecutive submissions on one queue skip the timeline wait (submission order and
//!   the leading barrier order them). Host-mapped and staging buffers are read and written
//!   directly through their mapping.
//! - **BAR uploads** ([`H2dStrategy`], `VUMA_VK_H2D=staging|bar|auto`, default `staging`;
//!   [`VulkanDevice::set_h2d_strategy`] overrides it at run time). The staged write costs the
//!   DRAM three passes (the copy threads read the source and write the slot, the DMA reads
//!   the slot), which caps it below the link on the H200 (36.8–40.4 vs 48–49 GB/s). With
//!   `bar`, device-local writes go through a second ring of the same geometry in the BAR
//!   memory type ([`VulkanDevice::bar_upload_type`]: `DEVICE_LOCAL|HOST_VISIBLE`, a large BAR
//!   on discrete GPUs, never a small window): the copy threads write each chunk straight
//!   into VRAM through the BAR (64-byte aligned non-temporal stores, fenced; BAR memory is
//!   never read by the CPU) and a `vkCmdCopyBuffer` moves it VRAM→VRAM on the transfer
//!   queue while the threads fill the next slot; synchronisation is the staging ring's
//!   (timeline wait before a slot is rewritten, host-coherent memory, leading and trailing
//!   barriers). `auto` takes the BAR for writes of at least 1 MiB on discrete GPUs with a
//!   large BAR. Without a BAR type, or when the ring (`VUMA_VK_STAGING_SLOTS` x
//!   `VUMA_VK_STAGING_SLOT_MIB` of VRAM, allocated on first use) cannot be allocated, writes
//!   fall back to staging (a `tracing` debug line says why). Reads and fills never use it;
//!   a BAR write takes precedence over the external-memory import below. Importing the caller's page-aligned middle with
//!   `VK_EXT_external_memory_host` is implemented but off by default
//!   (`VUMA_VK_IMPORT_MIN_MIB`): on the H100 the per-call import (page pinning) made 256 MiB
//!   transfers 3x slower than staging.
//! - **Fill.** `vkCmdFillBuffer` for the 4-byte-aligned middle; the at most 3 + 3 unaligned
//!   edge bytes go through the staging ring (or a `memset` on mapped buffers).
//! - **Kernel ABI.** `KernelVariant::SpirV { words, entry }` becomes a compute pipeline,
//!   cached by (hash of the words, entry, argument layout). Buffer arguments bind, in order,
//!   to descriptor set 0, bindings 0, 1, … as storage buffers with their offset and range:
//!   offsets must be multiples of `minStorageBufferOffsetAlignment` (else
//!   `InvalidArgument`) and ranges at most `maxStorageBufferRange` (else `TooLarge`, whose
//!   `max` tells how to split; lavapipe allows 128 MiB). Scalars fill one push-constant
//!   block in order, 4 bytes each, 8 for `U64`, with no padding. `LaunchConfig::grid` is the
//!   workgroup count and must fit `maxComputeWorkGroupCount` (lavapipe: 65535 in x; use a
//!   2-D grid, as [`increment_2d_kernel`] does, to go further).
//! - **Shaders.** WGSL is compiled to SPIR-V 1.0 by naga in `build.rs` with explicit writer
//!   flags (reproducible output); see [`kernels`].
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

mod adapter;
mod buffer;
mod compute;
mod conv;
mod copypool;
mod device;
mod error;
mod instance;
pub mod kernels;
pub mod memory;
mod options;
mod reflect;
mod shared;
mod staging;
mod submit;

pub use buffer::VulkanBuffer;
pub use device::VulkanDevice;
pub use kernels::{increment_2d_kernel, increment_kernel, read_sum_kernel};
pub use memory::{select_memory_type, MemoryPurpose, MemoryTable};
pub use options::{H2dStrategy, VulkanOptions};

use vuma_core::{Backend, Error, Result};

/// Opens every Vulkan 1.2+ device of this machine with default options.
///
/// No loader, no driver, or no usable device is [`Error::Unavailable`] (never a panic).
pub fn devices() -> Result<Vec<VulkanDevice>> {
    devices_with(&VulkanOptions::default())
}

/// Opens every Vulkan 1.2+ device with `options`. Devices that cannot be opened (too old,
/// no compute queue) are skipped; if none remains the result is [`Error::Unavailable`].
pub fn devices_with(options: &VulkanOptions) -> Result<Vec<VulkanDevice>> {
    let mut out = Vec::new();
    let mut reasons = Vec::new();
    for i in 0.. {
        match VulkanDevice::open_with(i, options) {
            Ok(d) => out.push(d),
            Err(Error::Unavailable { reason, .. })
                if reason.starts_with("no Vulkan physical device") =>
            {
                break
            }
            Err(e @ Error::Unavailable { .. })
                if i == 0 && out.is_empty() && reasons.is_empty() && is_global(&e) =>
            {
                return Err(e)
            }
            Err(e) => reasons.push(format!("device {i}: {e}")),
        }
    }
    if out.is_empty() {
        return Err(Error::Unavailable {
            backend: Backend::Vulkan,
            reason: if reasons.is_empty() {
                "no Vulkan physical device".into()
            } else {
                reasons.join("; ")
            },
        });
    }
    Ok(out)
}

fn is_global(e: &Error) -> bool {
    matches!(e, Error::Unavailable { reason, .. }
        if reason.starts_with("no Vulkan loader") || reason.starts_with("vkCreateInstance"))
}
