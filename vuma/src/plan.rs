//! Planning: what [`process_workload`](crate::UnifiedMemoryManager::process_workload) would
//! do with a workload, without doing it.
//!
//! A *metadata-only* workload ([`GpuWorkload::metadata`](crate::GpuWorkload::metadata)) carries a kind, a complexity, a
//! priority and a memory requirement but no kernel: VUMA plans it instead of running it, in
//! the three steps the seed names:
//!
//! 1. **managed memory, reserved lazily** — a [`UnifiedBuffer`] of the memory requirement
//!    (unless the workload brings buffers of its own); creating it takes no host or device
//!    memory until first use;
//! 2. **the device, and why** — the same Tidal Wave classification and device choice as a
//!    run ([`Scheduler::classify`](vuma_sched::Scheduler::classify),
//!    [`Scheduler::choose`](vuma_sched::Scheduler::choose)), with the residency facts of
//!    the buffers;
//! 3. **the transfer plan per buffer** — the placement the policy would choose on that
//!    device ([`choose_placement`](vuma_core::choose_placement)), whether the copy fits the device's budget, and what would
//!    cross the link and how (nothing for a buffer never written or already valid there; a
//!    plain copy, or the transfer path's upload, for host data).
//!
//! [`UnifiedMemoryManager::plan`](crate::UnifiedMemoryManager::plan) (in `planner.rs`) does
//! this for any workload (a dry run of a workload with
//! a kernel considers only the devices it has variants for); nothing is allocated, moved,
//! queued or recorded in the scheduler's history.

use std::fmt;
use std::sync::Arc;

use serde_json::{json, Value};
use vuma_core::{human_bytes, AccessMode, BufferId, Placement, UnifiedBuffer};

/// How a buffer's device copy would fit the chosen device's budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetFit {
    /// The copy does not count against the budget (zero-copy pinned host memory).
    NotCounted,
    /// There is no copy: the device uses the host copy in place (it shares host memory),
    /// so nothing is allocated on it and its budget does not apply.
    InPlace,
    /// It fits in what is free now.
    Fits {
        /// Bytes free before it.
        free: u64,
    },
    /// Least-recently-used copies would be evicted first (written back where they hold the
    /// only valid data).
    Evicts {
        /// Bytes that would have to be freed.
        bytes: u64,
    },
    /// It can never fit: the first use fails with [`Error::TooLarge`](vuma_core::Error::TooLarge).
    TooLarge {
        /// The device's budget.
        budget: u64,
    },
}

/// What would happen to one buffer.
#[derive(Debug, Clone)]
pub struct PlannedBuffer {
    /// The buffer.
    pub buffer: BufferId,
    /// Its size.
    pub size: u64,
    /// How the workload accesses it.
    pub access: AccessMode,
    /// Whether the plan reserved it (the workload's managed memory).
    pub reserved: bool,
    /// Whether a valid copy is already on the chosen device.
    pub resident: bool,
    /// Where its device copy would live ([`BudgetFit::InPlace`]: the host copy itself).
    pub placement: Placement,
    /// Why (the placement policy's words, or "already resident").
    pub placement_reason: String,
    /// How the copy fits the device's budget.
    pub fit: BudgetFit,
    /// Bytes that would be copied to make it valid there (before a transfer path's
    /// savings).
    pub bytes_to_move: u64,
    /// How they would move, in words.
    pub transfer: String,
    /// Estimated time of that copy at the device's host-link bandwidth, seconds.
    pub est_transfer_s: f64,
}

/// The plan of a workload: its reserved managed memory and what would happen to each
/// buffer on the chosen device.
#[derive(Debug, Clone)]
pub struct WorkloadPlan {
    /// The managed buffer the plan reserved (a metadata-only workload without buffers),
    /// lazily: it holds no memory until first used. Keep it to use it; dropping the report
    /// frees it.
    pub reserved: Option<Arc<UnifiedBuffer>>,
    /// Per buffer, reserved ones first, then the workload's buffer arguments in order.
    pub buffers: Vec<PlannedBuffer>,
    /// The chosen device's index in [`UnifiedMemoryManager::devices`](crate::UnifiedMemoryManager::devices).
    pub device_index: usize,
    /// The name of the memory manager's transfer path (`"hyperloop"`), or `"direct"`.
    pub path: String,
    /// Bytes of host memory in use when the plan was made (a lazy reservation adds none).
    pub host_bytes_in_use: u64,
    /// Bytes in use on the chosen device when the plan was made.
    pub device_bytes_in_use: u64,
}

impl WorkloadPlan {
    /// Bytes that would be copied in all.
    pub fn bytes_to_move(&self) -> u64 {
        self.buffers.iter().map(|b| b.bytes_to_move).sum()
    }

    /// The plan as JSON.
    pub fn to_json(&self) -> Value {
        json!({
            "reserved": self.reserved.as_ref().map(|b| json!({"buffer": b.id().0, "size": b.len()})),
            "device_index": self.device_index,
            "path": self.path,
            "host_bytes_in_use": self.host_bytes_in_use,
            "device_bytes_in_use": self.device_bytes_in_use,
            "bytes_to_move": self.bytes_to_move(),
            "buffers": self.buffers.iter().map(|b| json!({
                "buffer": b.buffer.0,
                "size": b.size,
                "access": format!("{:?}", b.access),
                "reserved": b.reserved,
                "resident": b.resident,
                "placement": b.placement.as_str(),
                "placement_reason": b.placement_reason,
                "budget": match b.fit {
                    BudgetFit::NotCounted => json!({"fit": "not-counted"}),
                    BudgetFit::InPlace => json!({"fit": "in-place"}),
                    BudgetFit::Fits { free } => json!({"fit": "fits", "free": free}),
                    BudgetFit::Evicts { bytes } => json!({"fit": "evicts", "bytes": bytes}),
                    BudgetFit::TooLarge { budget } => json!({"fit": "too-large", "budget": budget}),
                },
                "bytes_to_move": b.bytes_to_move,
                "transfer": b.transfer,
                "est_transfer_s": b.est_transfer_s,
            })).collect::<Vec<_>>(),
        })
    }
}

impl fmt::Display for BudgetFit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            BudgetFit::NotCounted => f.write_str("pinned host memory: outside the device budget"),
            BudgetFit::InPlace => f.write_str(
                "the host copy itself: nothing allocated on the device, outside its budget",
            ),
            BudgetFit::Fits { free } => write!(f, "fits the budget ({} free)", human_bytes(free)),
            BudgetFit::Evicts { bytes } => write!(
                f,
                "evicts {} of least-recently-used copies first",
                human_bytes(bytes)
            ),
            BudgetFit::TooLarge { budget } => write!(
                f,
                "can never fit the budget of {}: first use fails",
                human_bytes(budget)
            ),
        }
    }
}
