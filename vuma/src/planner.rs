//! [`UnifiedMemoryManager::plan`]: a workload planned, not run (see [`crate::plan`] for what
//! a plan holds and why).

use std::time::{Duration, Instant};

use vuma_core::{
    choose_placement, AccessMode, DeviceId, DeviceInfo, Error, Location, Placement, Result,
    UnifiedBuffer,
};

use crate::plan::{BudgetFit, PlannedBuffer, WorkloadPlan};
use crate::report::{StageTimes, WorkloadReport};
use crate::workload::{GpuWorkload, WorkloadArg};
use crate::UnifiedMemoryManager;

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
                if !b.resident && !matches!(b.fit, BudgetFit::NotCounted | BudgetFit::InPlace) {
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
            shared_memory: info.unified_memory,
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
        if self.memory().uses_in_place(index) {
            return self.plan_in_place(e, index, p);
        }
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
            let d = self
                .memory()
                .placement_decision(size, e.reuse, index)
                .unwrap_or_else(|| choose_placement(size, e.reuse, info, self.placement_config()));
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

    /// [`plan_buffer`](Self::plan_buffer) on a device that uses host copies in place: no
    /// copy, no budget; only a download when another device holds the only valid data.
    fn plan_in_place(&self, e: &Entry<'_>, index: usize, mut p: PlannedBuffer) -> PlannedBuffer {
        let size = e.buffer.len();
        if let Some(d) = self.memory().placement_decision(size, e.reuse, index) {
            p.placement_reason = d.reason;
        }
        p.placement = Placement::HostMapped;
        p.fit = BudgetFit::InPlace;
        if !self.memory().is_written(e.buffer) {
            p.transfer = "never written (reads as zeros): a zeroed host copy is made at first \
                          use and used in place; nothing is allocated on the device or copied"
                .into();
            return p;
        }
        let missing = self.memory().missing_bytes(e.buffer, index);
        p.resident = missing == 0;
        if missing == 0 {
            p.transfer = "used in place: the kernel reads and writes the host copy itself; \
                          nothing is allocated on the device or copied"
                .into();
            return p;
        }
        let from =
            self.memory()
                .residency(e.buffer)
                .into_iter()
                .find_map(|(l, _, valid)| match l {
                    Location::Device(d) if valid => Some(d),
                    _ => None,
                });
        p.bytes_to_move = size;
        p.transfer = match from {
            Some(d) => format!(
                "written back from device {d} ({}) to the host first, then used in place",
                self.devices()[d].info().name
            ),
            None => "brought back to the host first, then used in place".into(),
        };
        p
    }
}
