//! # vuma-sched — the Tidal Wave scheduler
//!
//! This crate owns VUMA's decisions about *where* and *when* work runs: tiers,
//! classification, data-aware device choice, priority queues, tiling and async execution on
//! tokio. It depends on `vuma-core` only for vocabulary ([`DeviceInfo`](vuma_core::DeviceInfo),
//! [`DeviceId`](vuma_core::DeviceId), [`Backend`](vuma_core::Backend),
//! [`Error`](vuma_core::Error)) and never touches a driver: the facade feeds it device
//! descriptions, residency facts and health figures, and runs what it decides.
//!
//! ## How VUMA's concepts map here
//! - **Tiers** ([`Tier`]): *low tide* is every integrated GPU and CPU device, *high tide*
//!   every discrete GPU ([`Scheduler::tier_of`]; overridable per device in [`SchedConfig`]).
//! - **Classification** ([`ClassifyPolicy`], default [`DefaultClassifyPolicy`]): a
//!   [`WorkloadProfile`]'s kind, complexity, working set and priority give its default tier.
//! - **Device choice** ([`Scheduler::choose`]): among devices whose backend the workload has
//!   a kernel variant for, the minimal estimated finish time = queue wait (the device's
//!   backlog of equal or higher priority) + transfer of the bytes a [`Residency`] says are
//!   missing (over the device's host link; free with unified memory) + run time (a per-(kernel,
//!   device) history learned from [`Scheduler::record_run`], as StarPU's *dmda*, else a
//!   prior from compute units and kind), times a health penalty (hot > 83 °C, busy or
//!   power-capped devices, [`Scheduler::set_health`]). An idle discrete GPU pays a wake-up
//!   cost for low-tier work. The classified tier wins unless a device of the other tier
//!   beats its best by [`SchedConfig::cross_tier_margin`]; the [`Choice`] says so.
//! - **One physical GPU, one device** ([`same_physical_device`]): CUDA and Vulkan views with
//!   equal UUIDs share one queue and one health; CUDA is used when the workload has a CUDA
//!   variant.
//! - **Tiles** ([`plan_tiles`]): working sets larger than L2 are cut into tiles of about half
//!   of it.
//! - **Execution** ([`Executor`]): per-device priority queues (higher priority first, FIFO
//!   within one), bounded with backpressure, cancellation before start, failure isolation,
//!   run times recorded into the history.
//!
//! The crate contains no `unsafe` code (`#![forbid(unsafe_code)]`).
//!
//! ## Feature flags
//! None: everything is always built. ([`described`] devices, for tests and demos, are
//! plain data.)
//!
//! ## A short tour
//! ```
//! use vuma_sched::{described, NoResidency, Scheduler, SchedConfig, Tier, WorkloadKind, WorkloadProfile};
//!
//! let sched = Scheduler::new(described::laptop(), SchedConfig::default());
//! let ui = WorkloadProfile::new("draw-button", WorkloadKind::Ui).with_memory(64 << 10);
//! let c = sched.choose(&ui, &NoResidency)?;
//! assert_eq!(c.tier, Tier::Low);
//! let train = WorkloadProfile::new("train-step", WorkloadKind::AiTraining)
//!     .with_memory(2 << 30)
//!     .with_work(5e12);
//! let c = sched.choose(&train, &NoResidency)?;
//! assert_eq!(c.tier, Tier::High);
//! println!("{}", c.reason);
//! # Ok::<(), vuma_core::Error>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod config;
pub mod dedup;
pub mod described;
pub mod error;
pub mod executor;
pub mod policy;
pub mod scheduler;
pub mod tiling;
pub mod workload;

pub use config::{PriorModel, SchedConfig};
pub use dedup::{backend_rank, eligible_views, same_physical_device};
pub use error::{SchedError, SubmitError};
pub use executor::{Executor, JobHandle, JobState};
pub use policy::{Classification, ClassifyPolicy, DefaultClassifyPolicy};
pub use scheduler::{Choice, Scheduler};
pub use tiling::{plan_tiles, tile_size, tiles, Tiles, MIN_TILE_BYTES};
pub use workload::{
    DeviceHealth, NoResidency, Priority, Residency, ResidencyMap, Tier, UnknownKind, WorkloadKind,
    WorkloadProfile, KIND_NAMES,
};
