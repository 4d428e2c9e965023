//! # vuma-core
//!
//! The backend-agnostic vocabulary of VUMA (Virtual Unified Memory Architecture), and the
//! pieces written once for every backend:
//!
//! - [`Device`] / [`Buffer`] — one trait each; static for backends, with the object-safe
//!   faces [`DynDevice`] / [`DynBuffer`] (one blanket impl) so a manager holds devices of
//!   several backends at once as `Arc<dyn DynDevice>`;
//! - [`Codec`] — lossless page compressors (implemented in `vuma-hyperloop`);
//! - [`DeviceInfo`] — backend, kind (integrated / discrete / cpu / virtual), UUID, memory,
//!   L2, link bandwidth, host-memory mapping, …;
//! - [`Placement`] and [`AccessMode`], and the placement policy [`choose_placement`];
//! - [`Kernel`] — one variant per backend (CUDA source/PTX, SPIR-V, host function);
//! - [`RawStorage`] and the [`pool`] written against it;
//! - [`memory`] — [`UnifiedBuffer`]s with MSI-style coherence, lazy
//!   allocation, per-device budgets and LRU eviction ([`MemoryManager`]);
//! - [`transfer`] — [`TransferPath`], how the manager moves bytes across the link (plain
//!   copies by default; PCIe Hyperloop plugs in here), and the [`TransferReport`] of every
//!   transfer;
//! - [`HostDevice`] — the CPU as a device: the default on machines without a GPU, and the
//!   device every test can use;
//! - [`Error`] — one error enum for the whole vocabulary.
//!
//! This crate knows no backend and no async runtime (architecture invariant, checked by
//! `cargo xtask ci`).
//!
//! ## Feature flags
//! - `conformance` — the [`conformance`] suite that every `Device` implementation runs in
//!   its tests ([`conformance_suite!`]).
//!
//! ## A short tour
//! ```
//! use vuma_core::{AccessMode, Arg, Device, HostDevice, Kernel, LaunchConfig, Placement, Scalar};
//!
//! let host = HostDevice::new();
//! let buf = host.alloc(16, Placement::DeviceLocal)?;
//! host.write(&buf, 0, &[1u8; 16])?;
//! let double = Kernel::new("double").with_host(|l| {
//!     for b in l.buffers[0].iter_mut() { *b *= 2; }
//!     Ok(())
//! });
//! host.launch(&double, &LaunchConfig::for_elements(16, 16), &[Arg::whole(&buf, AccessMode::ReadWrite)])?;
//! let mut out = [0u8; 16];
//! host.read(&buf, 0, &mut out)?;
//! assert_eq!(out, [2u8; 16]);
//! # Ok::<(), vuma_core::Error>(())
//! ```
//!
//! # Feature flags
//!
//! Rendered from the crate's manifest (`Cargo.toml`), so this list cannot drift from it:
#![doc = document_features::document_features!()]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod arg;
pub mod bench;
pub mod buffer;
pub mod codec;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod device;
pub mod error;
pub mod fault;
pub mod host;
mod hostcopy;
mod hostpool;
pub mod info;
pub mod kernel;
pub mod memory;
mod ntcopy;
pub mod placement;
pub mod pool;
pub mod region;
pub mod signature;
pub mod storage;
pub mod transfer;

pub use buffer::{Buffer, DynBuffer};
pub use codec::Codec;
pub use device::{check_launch_args, Device, DynDevice, Fence};
pub use error::{check_range, Error, Result};
pub use host::{HostBuffer, HostDevice, PinLog};
pub use hostpool::PinConfig;
pub use info::{Backend, DeviceId, DeviceInfo, DeviceKind, LinkInfo, MemoryHeap};
pub use kernel::{Arg, CudaCode, HostFn, HostLaunch, Kernel, KernelVariant, LaunchConfig, Scalar};
pub use memory::{
    BufferId, Lease, Location, MemoryConfig, MemoryManager, MemoryStats, Outcome, Residency,
    UnifiedBuffer,
};
pub use placement::{
    choose_placement, human_bytes, AccessMode, Placement, PlacementConfig, PlacementDecision,
};
pub use pool::{Pool, PoolAlloc, PoolConfig, PoolStats};
pub use region::{HostRegion, RegionGuard};
pub use signature::{Bound, Param, ScalarKind, Signature};
pub use storage::{DeviceStorage, RawStorage};
pub use transfer::{PackedHost, TransferKind, TransferPath, TransferReport};
