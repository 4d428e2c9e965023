//! # VUMA — Virtual Unified Memory Architecture
//!
//! One memory that host and GPUs share, on PCs with discrete GPUs: a [`UnifiedBuffer`] is
//! valid on the host and on every device, small buffers are read in place (zero-copy), large
//! ones migrate lazily to VRAM and are evicted under pressure, and the Tidal Wave scheduler
//! sends light work to the low tier (integrated GPU or CPU) and heavy work to the discrete
//! GPU.
//!
//! This crate is the facade: [`UnifiedMemoryManager`] composes the backends compiled in
//! (cargo features), the memory manager of `vuma-core` and the scheduler of `vuma-sched`;
//! [`GpuWorkload`] describes a unit of work; [`UnifiedMemoryManager::process_workload`]
//! runs it and returns a [`WorkloadReport`] of every decision.
//!
//! ## Feature flags
//! - `cuda` (default) — the CUDA backend (`vuma-cuda`; the driver is loaded at run time, so
//!   builds and starts without CUDA and reports why it is absent);
//! - `vulkan` (default) — the Vulkan backend (`vuma-vulkan`; loader opened at run time);
//! - `hyperloop` (default) — PCIe Hyperloop codecs and transfer planning (`vuma-hyperloop`);
//! - `cli` (default) — the `vuma` command and what only it needs (`clap`, `indicatif`,
//!   `tracing-subscriber`); implies `trace`. A library leaves it out:
//!   `vuma = { version = "0.1", default-features = false, features = ["cuda", "vulkan", "hyperloop"] }`;
//! - `trace` — [`trace`]: a Chrome-trace (Perfetto) timeline of the `tracing` spans, as a
//!   `tracing-subscriber` layer.
//!
//! Backends that fail to start are reported in [`UnifiedMemoryManager::backends`] and
//! skipped; the host device is always there.
//!
//! ## Tour
//! - [`UnifiedMemoryManager`] — start it ([`UnifiedMemoryManager::new`] or
//!   [`UnifiedMemoryManager::builder`]), create [`UnifiedBuffer`]s (from bytes, or typed:
//!   [`UnifiedMemoryManager::create_buffer_from_slice`], [`UnifiedMemoryManager::to_vec_of`]
//!   for any `bytemuck::Pod` element), run workloads, read
//!   [`UnifiedMemoryManager::stats`] (O(1), always on; [`stats`] prints them as a table).
//! - [`GpuWorkload`] — a kernel ([`kernels`] has VUMA's own), its buffers with access modes,
//!   scalars, launch shape, kind, complexity and priority.
//! - [`WorkloadReport`] — every decision of one [`UnifiedMemoryManager::process_workload`]:
//!   tier, device, placement per buffer, bytes moved and saved, time per stage.
//! - Metadata-only workloads ([`GpuWorkload::metadata`], the seed's form: a kind string
//!   such as `"INFERENCE"` parsed into [`WorkloadKind`], an integer priority through
//!   [`Priority::from_level`], a memory requirement, no kernel) are planned, not run
//!   ([`mod@plan`]): managed memory reserved lazily, the device chosen and why, the
//!   transfer plan per buffer.
//! - [`info`], [`demo`], [`mod@bench`] — what the `vuma info`, `vuma demo` and `vuma bench`
//!   commands print; [`trace`] — a Chrome-trace (Perfetto) timeline of the `tracing` spans
//!   (`vuma --trace FILE …`).
//!
//! ## Example
//! ```
//! use vuma::{kernels, GpuWorkload, Priority, Scalar, UnifiedMemoryManager, WorkloadKind};
//!
//! let vuma = UnifiedMemoryManager::builder().cuda(false).vulkan(false).build()?;
//! let n = 1024u32;
//! let input: Vec<f32> = (0..n).map(|i| i as f32 - 512.0).collect();
//! let x = vuma.create_buffer_from_slice(&input)?;
//! let y = vuma.create_buffer(u64::from(n) * 4)?;
//! let w = GpuWorkload::new("activations", WorkloadKind::AiInference, kernels::relu_scale())
//!     .complexity(0.9)
//!     .priority(Priority::High)
//!     .read(&x, 1)
//!     .write(&y)
//!     .scalar(Scalar::U32(n))
//!     .scalar(Scalar::F32(2.0))
//!     .launch(kernels::launch_for(u64::from(n)));
//! let report = vuma.process_workload(&w)?;
//! println!("{report}");
//! let out: Vec<f32> = vuma.to_vec_of(&y)?;
//! assert_eq!(out[1000], 976.0);
//! # Ok::<(), vuma::Error>(())
//! ```
//!
//! # Feature flags
//!
//! Rendered from the crate's manifest (`Cargo.toml`), so this list cannot drift from it:
#![doc = document_features::document_features!()]
#![cfg_attr(docsrs, feature(doc_cfg))]
// The crate docs link `trace`, which exists only with the `trace` feature.
#![cfg_attr(not(feature = "trace"), allow(rustdoc::broken_intra_doc_links))]
#![deny(unsafe_op_in_unsafe_fn)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod bench;
pub mod demo;
pub mod info;
pub mod kernels;
mod manager;
pub mod plan;
mod planner;
pub mod prefetch;
mod report;
pub mod stats;
#[cfg(feature = "trace")]
pub mod trace;
mod typed;
mod workload;

pub use manager::{BackendStatus, Builder, UnifiedMemoryManager};
pub use plan::{BudgetFit, PlannedBuffer, WorkloadPlan};
pub use prefetch::Prefetch;
pub use report::{BufferReport, StageTimes, WorkloadReport};
pub use workload::{GpuWorkload, Tiling, WorkloadArg};

pub use vuma_core as core;
pub use vuma_core::{AccessMode, Error, Result, Scalar, UnifiedBuffer};
#[cfg(feature = "cuda")]
pub use vuma_cuda as cuda;
#[cfg(feature = "hyperloop")]
pub use vuma_hyperloop as hyperloop;
pub use vuma_sched as sched;
pub use vuma_sched::{Priority, Tier, UnknownKind, WorkloadKind};
#[cfg(feature = "vulkan")]
pub use vuma_vulkan as vulkan;

/// The README's Rust examples, compiled and run as doctests of this crate.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
