//! Planning: what [`process_workload`](crate::UnifiedMemoryManager::process_workload) would
//! do with a workload, without doing it.
//!
//! A *metadata-only* workload ([`GpuWorkload::metadata`]) carries a kind, a complexity, a
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
//!    device ([`choose_placement`]), whether the copy fits the device's budget, and what would
//!    cross the link and how (nothing for a buffer never written or already valid there; a
//!    plain copy, or the transfer path's upload, for host data).
//!
//! [`UnifiedMemoryManager::plan`] does this for any workload (a dry run of a workload with
//! a kernel considers only the devices it has variants for); nothing is allocated, moved,
//! queued or recorded in the scheduler's history.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vuma_core::{
    choose_placement, human_bytes, AccessMode, BufferId, DeviceId, DeviceInfo, Error, Location,
    Placement, Result, UnifiedBuffer,
};

use crate::report::{StageTimes, WorkloadReport};
use crate::workload::{GpuWorkload, WorkloadArg};
use crate::UnifiedMemoryManager;

/// How a buffer's device copy would fit the chosen device's budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetFit {
    /// The copy does not count against the budget (zero-copy pinned host memory).
    NotCounted,
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
    /// It can never fit: the first use fails with [`Error::TooLarge`].
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
    /// Where its device copy would live.
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
    /// The chosen device's index in [`UnifiedMemoryManager::devices`].
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

/// Seconds in the unit that reads best.
fn secs(s: f64) -> String {
    if s >= 1.0 {
        format!("{s:.2} s")
    } else if s >= 1e-3 {
        format!("{:.2} ms", s * 1e3)
    } else {
        format!("{:.1} µs", s * 1e6)
    }
}

/// Writes a plan as the seed's three steps (used by [`WorkloadReport`]'s `Display`).
pub(crate) fn fmt_plan(
    r: &WorkloadReport,
    p: &WorkloadPlan,
    f: &mut fmt::Formatter<'_>,
) -> fmt::Result {
    writeln!(
        f,
        "workload `{}` ({}): planned, not run (no kernel)",
        r.workload, r.kind
    )?;
    match &p.reserved {
        Some(b) => writeln!(
            f,
            "  1. managed memory  buffer #{} of {} reserved lazily: no host or device memory taken until first use (host in use: {})",
            b.id().0,
            human_bytes(b.len()),
            human_bytes(p.host_bytes_in_use)
        )?,
        None => writeln!(
            f,
            "  1. managed memory  the workload's own {} buffer(s), {} in all",
            p.buffers.len(),
            human_bytes(p.buffers.iter().map(|b| b.size).sum())
        )?,
    }
    writeln!(
        f,
        "  2. device          {} [{}], {}{}",
        r.device,
        r.backend,
        r.tier,
        if r.crossed_tier {
            format!(" (classified {})", r.classified)
        } else {
            String::new()
        }
    )?;
    writeln!(f, "     why             {}", r.reason)?;
    writeln!(
        f,
        "     estimate        queue {}, transfer {}, run {}",
        secs(r.estimates.0),
        secs(r.estimates.1),
        secs(r.estimates.2)
    )?;
    write!(
        f,
        "  3. transfer plan   via {}: {} to move",
        p.path,
        human_bytes(p.bytes_to_move())
    )?;
    for b in &p.buffers {
        write!(
            f,
            "\n     #{:<6} {:>10}  {} ({}); {}\n             {}",
            b.buffer.0,
            human_bytes(b.size),
            b.placement.as_str(),
            b.placement_reason,
            b.fit,
            b.transfer
        )?;
    }
    Ok(())
}

/// One buffer the plan covers.
struct Entry<'a> {
    buffer: &'a UnifiedBuffer,
    access: AccessMode,
    reuse: u32,
    reserved: bool,
}

impl UnifiedMemoryManager {
    /// Plans `w` without running it: reserves its managed memory lazily (a metadata-only
    /// workload without buffers), chooses the device by the Tidal Wave policy, and says per
    /// buffer where its copy would live and what would move and how. Nothing is allocated,
    /// transferred, queued or recorded. [`process_workload`](Self::process_workload) calls
    /// this for metadata-only workloads.
    ///
    /// Errors: [`Error::InvalidArgument`] for a metadata-only workload with neither a
    /// memory requirement nor buffers, or a malformed profile (complexity outside 0..=1);
    /// [`Error::ZeroSize`]/[`Error::TooLarge`] from reserving the buffer; the scheduler's
    /// errors ([`Error::NoEligibleDevice`]).
    pub fn plan(&self, w: &GpuWorkload) -> Result<WorkloadReport> {
        let _span = tracing::info_span!("plan", id = %w.id).entered();
        let t0 = Instant::now();
        let profile = self.profile(w);
        profile.validate()?;
        let has_buffers = w
            .args
            .iter()
            .any(|a| matches!(a, WorkloadArg::Buffer { .. }));
        let reserved = if w.kernel.is_none() && !has_buffers {
            if w.memory_requirement == 0 {
                return Err(Error::invalid(format!(
                    "metadata-only workload `{}` has neither a memory requirement nor buffers: nothing to plan",
                    w.id
                )));
            }
            Some(self.create_buffer(w.memory_requirement)?)
        } else {
            None
        };
        let mut entries: Vec<Entry<'_>> = Vec::new();
        if let Some(b) = &reserved {
            entries.push(Entry {
                buffer: b,
                access: AccessMode::ReadWrite,
                reuse: 1,
                reserved: true,
            });
        }
        for a in &w.args {
            if let WorkloadArg::Buffer {
                buffer,
                access,
                reuse,
            } = a
            {
                entries.push(Entry {
                    buffer,
                    access: *access,
                    reuse: *reuse,
                    reserved: false,
                });
            }
        }
        let classification = self.scheduler().classify(&profile)?;
        let missing = |dev: DeviceId| -> u64 {
            let Some(i) = self.memory().device_index(dev) else {
                return u64::MAX;
            };
            entries
                .iter()
                .filter(|e| e.access.reads())
                .map(|e| self.memory().missing_bytes(e.buffer, i))
                .fold(0u64, u64::saturating_add)
        };
        let choice = self.scheduler().choose(&profile, &missing)?;
        let index = self.memory().device_index(choice.device).ok_or_else(|| {
            Error::invalid("internal: the scheduler chose a device the memory manager lacks")
        })?;
        let device = self.devices()[index].clone();
        let info = device.info();
        let stats = self.stats();
        let in_use = stats.devices.get(index).map_or(0, |s| s.bytes_in_use);
        let budget = self.memory().budget(index).unwrap_or(info.memory_budget);
        let path = self.transfer_path_name().unwrap_or("direct").to_string();
        let mut planned_use = in_use;
        let buffers = entries
            .iter()
            .map(|e| {
                let b = self.plan_buffer(e, index, info, &path, budget, planned_use);
                if !b.resident && !matches!(b.fit, BudgetFit::NotCounted) {
                    planned_use = planned_use.saturating_add(b.size);
                }
                b
            })
            .collect();
        let plan = WorkloadPlan {
            reserved,
            buffers,
            device_index: index,
            path,
            host_bytes_in_use: stats.host.bytes_in_use,
            device_bytes_in_use: in_use,
        };
        Ok(WorkloadReport {
            workload: w.id.clone(),
            kind: w.kind.to_string(),
            classified: classification.tier,
            tier: choice.tier,
            crossed_tier: choice.crossed_tier,
            device: info.name.clone(),
            backend: info.backend,
            reason: choice.reason.clone(),
            estimates: (choice.est_queue_s, choice.est_transfer_s, choice.est_run_s),
            buffers: Vec::new(),
            bytes_moved: 0,
            link_bytes: 0,
            bytes_saved: 0,
            tiles: 0,
            passes: 0,
            times: StageTimes {
                schedule: t0.elapsed(),
                place: Duration::ZERO,
                run: Duration::ZERO,
                record: Duration::ZERO,
            },
            plan: Some(plan),
        })
    }

    /// What would happen to one buffer on device `index` with `in_use` bytes taken.
    fn plan_buffer(
        &self,
        e: &Entry<'_>,
        index: usize,
        info: &DeviceInfo,
        path: &str,
        budget: u64,
        in_use: u64,
    ) -> PlannedBuffer {
        let size = e.buffer.len();
        let copies = self.memory().residency(e.buffer);
        let here = copies
            .iter()
            .find(|(l, _, _)| *l == Location::Device(index))
            .copied();
        let mut p = PlannedBuffer {
            buffer: e.buffer.id(),
            size,
            access: e.access,
            reserved: e.reserved,
            resident: false,
            placement: Placement::DeviceLocal,
            placement_reason: String::new(),
            fit: BudgetFit::NotCounted,
            bytes_to_move: 0,
            transfer: String::new(),
            est_transfer_s: 0.0,
        };
        if let Some((_, Some(placement), valid)) = here {
            p.placement = placement;
            p.placement_reason = "a copy is already allocated there".into();
            if valid || !e.access.reads() {
                p.resident = valid;
                p.transfer = if valid {
                    "already valid on the device: nothing moves".into()
                } else {
                    "overwritten entirely by the kernel: nothing is uploaded".into()
                };
                return p;
            }
        } else {
            let d = choose_placement(size, e.reuse, info, self.placement_config());
            let device = &self.devices()[index];
            p.placement = if device.supports(d.placement) {
                d.placement
            } else {
                Placement::DeviceLocal
            };
            p.placement_reason = d.reason;
            let counts = p.placement == Placement::DeviceLocal || info.unified_memory;
            p.fit = if !counts {
                BudgetFit::NotCounted
            } else if size > budget {
                BudgetFit::TooLarge { budget }
            } else if in_use.saturating_add(size) > budget {
                BudgetFit::Evicts {
                    bytes: in_use.saturating_add(size) - budget,
                }
            } else {
                BudgetFit::Fits {
                    free: budget - in_use,
                }
            };
        }
        if !e.access.reads() {
            p.transfer = "overwritten entirely by the kernel: nothing is uploaded".into();
            return p;
        }
        if self.memory().missing_bytes(e.buffer, index) == 0 {
            p.transfer = "never written (reads as zeros): the device copy is zero-filled there at first use; nothing crosses the link".into();
            return p;
        }
        p.bytes_to_move = size;
        let host_valid = copies
            .iter()
            .any(|(l, _, valid)| *l == Location::Host && *valid);
        let source = if host_valid {
            String::new()
        } else {
            match copies.iter().find(|(l, _, v)| *v && *l != Location::Host) {
                Some((Location::Device(d), _, _)) => format!(
                    "written back from device {d} ({}) to the host first, then ",
                    self.devices()[*d].info().name
                ),
                _ => String::new(),
            }
        };
        if info.unified_memory {
            p.transfer = format!(
                "{source}copied within host memory (the device shares it): no link is crossed"
            );
            return p;
        }
        let link = info
            .host_link
            .as_ref()
            .map(|l| l.h2d_bytes_per_s)
            .filter(|b| *b > 0.0);
        p.est_transfer_s = link.map_or(0.0, |bw| size as f64 / bw);
        let speed = link.map_or_else(String::new, |bw| {
            format!(
                " (~{:.2} ms at {:.1} GB/s)",
                p.est_transfer_s * 1e3,
                bw / 1e9
            )
        });
        p.transfer = if path == "direct" {
            format!("{source}a plain copy of the host bytes over the link{speed}")
        } else {
            format!(
                "{source}uploaded through {path}{speed}: all-zero pages are filled on the device instead of crossing (decided per upload from a probe of the pages); a copy the device packed on eviction crosses packed"
            )
        };
        p
    }
}
