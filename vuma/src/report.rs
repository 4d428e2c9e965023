//! [`WorkloadReport`]: every decision `process_workload` made, readable and as JSON.

use std::fmt;
use std::time::Duration;

use serde_json::{json, Value};
use vuma_core::{human_bytes, AccessMode, Backend, BufferId, Location, Placement, TransferReport};
use vuma_sched::Tier;

use crate::plan::WorkloadPlan;

/// What happened to one buffer argument.
#[derive(Debug, Clone)]
pub struct BufferReport {
    /// The buffer.
    pub buffer: BufferId,
    /// Its size.
    pub size: u64,
    /// How the kernel accessed it.
    pub access: AccessMode,
    /// Whether a valid copy was already resident (nothing moved: residency hit).
    pub hit: bool,
    /// Where its device copy lives.
    pub placement: Placement,
    /// Whether the kernel used the host copy itself (a device that shares host memory):
    /// no device copy, nothing allocated or copied for it.
    pub in_place: bool,
    /// Why (the placement policy's words).
    pub placement_reason: String,
    /// Whether the device copy was allocated now (lazy allocation).
    pub allocated: bool,
    /// Bytes transferred to make it valid on the device.
    pub bytes_moved: u64,
    /// Where they came from.
    pub source: Option<Location>,
    /// Buffers evicted to make room: (buffer, bytes written back).
    pub evicted: Vec<(BufferId, u64)>,
    /// Every transfer made for it (write-backs of evicted buffers, then its upload), with
    /// the transfer path's decision and the bytes that crossed the link.
    pub transfers: Vec<TransferReport>,
}

/// Time spent per stage.
#[derive(Debug, Clone, Copy, Default)]
pub struct StageTimes {
    /// Classification and device choice.
    pub schedule: Duration,
    /// Placement, allocation, eviction and transfers.
    pub place: Duration,
    /// Kernel launch until completion.
    pub run: Duration,
    /// Coherence bookkeeping after the run.
    pub record: Duration,
}

impl StageTimes {
    /// Sum of the stages.
    pub fn total(&self) -> Duration {
        self.schedule + self.place + self.run + self.record
    }
}

/// Every decision `process_workload` made and what it cost.
#[derive(Debug, Clone)]
pub struct WorkloadReport {
    /// The workload's id.
    pub workload: String,
    /// Its kind, as text.
    pub kind: String,
    /// The tier the classification chose.
    pub classified: Tier,
    /// The tier of the device that ran it.
    pub tier: Tier,
    /// Whether the cost model moved it across tiers.
    pub crossed_tier: bool,
    /// Device name.
    pub device: String,
    /// Device backend.
    pub backend: Backend,
    /// Why this device (the scheduler's words).
    pub reason: String,
    /// The scheduler's estimates (queue, transfer, run), seconds.
    pub estimates: (f64, f64, f64),
    /// Per buffer argument.
    pub buffers: Vec<BufferReport>,
    /// Bytes moved in all.
    pub bytes_moved: u64,
    /// Bytes that crossed the link for it (uploads and write-backs of evicted buffers); 0
    /// on a device that shares host memory.
    pub link_bytes: u64,
    /// Whether the device shares host memory
    /// ([`DeviceInfo::unified_memory`](vuma_core::DeviceInfo): the host device, integrated
    /// GPUs): there is no link, so its transfers are copies within one memory and nothing
    /// crosses a link (the memory statistics count no link bytes for it either).
    pub shared_memory: bool,
    /// Bytes that did not have to cross the link: residency hits, plus what the transfer
    /// path saved (zero pages, compression) on uploads and write-backs.
    pub bytes_saved: u64,
    /// Tiles the work was cut into (1: untiled).
    pub tiles: u32,
    /// Passes of the kernel per tile.
    pub passes: u32,
    /// Time per stage.
    pub times: StageTimes,
    /// `Some` when the workload was planned, not run (a metadata-only workload, or
    /// [`UnifiedMemoryManager::plan`](crate::UnifiedMemoryManager::plan)): the reserved
    /// managed memory and the transfer plan per buffer. `buffers` is then empty and nothing
    /// moved.
    pub plan: Option<WorkloadPlan>,
}

fn loc(l: Option<Location>) -> String {
    match l {
        None => "-".into(),
        Some(Location::Host) => "host".into(),
        Some(Location::Device(i)) => format!("device {i}"),
    }
}

fn us(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 1.0 {
        format!("{s:.2} s")
    } else if s >= 1e-3 {
        format!("{:.2} ms", s * 1e3)
    } else {
        format!("{:.1} µs", s * 1e6)
    }
}

impl WorkloadReport {
    /// Whether the workload was planned, not run.
    pub fn is_planned(&self) -> bool {
        self.plan.is_some()
    }

    /// The report as JSON (with `"planned"`, and `"plan"` when it was planned).
    pub fn to_json(&self) -> Value {
        let mut v = self.run_json();
        v["planned"] = json!(self.plan.is_some());
        if let Some(p) = &self.plan {
            v["plan"] = p.to_json();
        }
        v
    }

    fn run_json(&self) -> Value {
        json!({
            "workload": self.workload,
            "kind": self.kind,
            "classified_tier": self.classified.to_string(),
            "tier": self.tier.to_string(),
            "crossed_tier": self.crossed_tier,
            "device": self.device,
            "backend": self.backend.to_string(),
            "reason": self.reason,
            "estimates_s": { "queue": self.estimates.0, "transfer": self.estimates.1, "run": self.estimates.2 },
            "buffers": self.buffers.iter().map(|b| json!({
                "buffer": b.buffer.0,
                "size": b.size,
                "access": format!("{:?}", b.access),
                "residency_hit": b.hit,
                "placement": b.placement.as_str(),
                "in_place": b.in_place,
                "placement_reason": b.placement_reason,
                "allocated": b.allocated,
                "bytes_moved": b.bytes_moved,
                "source": loc(b.source),
                "evicted": b.evicted.iter().map(|(id, wb)| json!({"buffer": id.0, "written_back": wb})).collect::<Vec<_>>(),
                "transfers": b.transfers.iter().map(|t| json!({
                    "kind": t.kind.as_str(),
                    "path": t.path,
                    "decision": t.decision,
                    "logical_bytes": t.logical_bytes,
                    "link_bytes": if self.shared_memory { 0 } else { t.link_bytes },
                    "bytes_saved": t.bytes_saved(),
                    "zero_pages": t.zero_pages,
                    "raw_pages": t.raw_pages,
                    "compressed_pages": t.compressed_pages,
                    "time_s": t.time_s,
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "bytes_moved": self.bytes_moved,
            "link_bytes": self.link_bytes,
            "shared_memory": self.shared_memory,
            "bytes_saved": self.bytes_saved,
            "tiles": self.tiles,
            "passes": self.passes,
            "times_s": {
                "schedule": self.times.schedule.as_secs_f64(),
                "place": self.times.place.as_secs_f64(),
                "run": self.times.run.as_secs_f64(),
                "record": self.times.record.as_secs_f64(),
                "total": self.times.total().as_secs_f64(),
            },
        })
    }
}

impl fmt::Display for WorkloadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(p) = &self.plan {
            return fmt_plan(self, p, f);
        }
        writeln!(f, "workload `{}` ({})", self.workload, self.kind)?;
        writeln!(
            f,
            "  tier      {}{}",
            self.tier,
            if self.crossed_tier {
                format!(" (classified {}; see why)", self.classified)
            } else {
                String::new()
            }
        )?;
        writeln!(f, "  device    {} [{}]", self.device, self.backend)?;
        writeln!(f, "  why       {}", self.reason)?;
        writeln!(
            f,
            "  estimate  queue {:.1} µs, transfer {:.1} µs, run {:.1} µs",
            self.estimates.0 * 1e6,
            self.estimates.1 * 1e6,
            self.estimates.2 * 1e6
        )?;
        writeln!(
            f,
            "  {:<8} {:>10}  {:<12} {:>10}  {:<6} {:<9} reason",
            "buffer", "size", "placement", "moved", "from", "allocated"
        )?;
        for b in &self.buffers {
            writeln!(
                f,
                "  #{:<7} {:>10}  {:<12} {:>10}  {:<6} {:<9} {}",
                b.buffer.0,
                human_bytes(b.size),
                if b.in_place {
                    "in place"
                } else {
                    b.placement.as_str()
                },
                human_bytes(b.bytes_moved),
                loc(b.source),
                if b.in_place {
                    "none"
                } else if b.allocated {
                    "now"
                } else if b.hit {
                    "hit"
                } else {
                    "resident"
                },
                b.placement_reason
            )?;
            for (id, wb) in &b.evicted {
                writeln!(
                    f,
                    "           evicted #{} ({} written back)",
                    id.0,
                    human_bytes(*wb)
                )?;
            }
            for t in &b.transfers {
                let moved = if self.shared_memory {
                    format!("{} in shared memory, no link", human_bytes(t.logical_bytes))
                } else {
                    format!(
                        "{} over the link for {}",
                        human_bytes(t.link_bytes),
                        human_bytes(t.logical_bytes)
                    )
                };
                writeln!(
                    f,
                    "           {} via {}: {moved} ({})",
                    t.kind.as_str(),
                    t.path,
                    t.decision
                )?;
            }
        }
        if self.tiles > 1 || self.passes > 1 {
            writeln!(
                f,
                "  dispatch  {} pass(es) over {} L2-sized tile(s)",
                self.passes, self.tiles
            )?;
        }
        if self.shared_memory {
            let in_place = self.buffers.iter().filter(|b| b.in_place).count();
            writeln!(
                f,
                "  moved     {} (shared memory: nothing crossed a link{}; saved {})",
                human_bytes(self.bytes_moved),
                if in_place > 0 {
                    format!(
                        ", {in_place} of {} buffer(s) used in place",
                        self.buffers.len()
                    )
                } else {
                    String::new()
                },
                human_bytes(self.bytes_saved)
            )?;
        } else {
            writeln!(
                f,
                "  moved     {} ({} over the link; saved {})",
                human_bytes(self.bytes_moved),
                human_bytes(self.link_bytes),
                human_bytes(self.bytes_saved)
            )?;
        }
        write!(
            f,
            "  time      schedule {}, place {}, run {}, record {} = {}",
            us(self.times.schedule),
            us(self.times.place),
            us(self.times.run),
            us(self.times.record),
            us(self.times.total())
        )
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
fn fmt_plan(r: &WorkloadReport, p: &WorkloadPlan, f: &mut fmt::Formatter<'_>) -> fmt::Result {
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

#[cfg(test)]
mod tests {
    use super::*;
    use vuma_core::TransferKind;

    fn report(shared_memory: bool) -> WorkloadReport {
        let t = TransferReport::direct(TransferKind::Upload, 64 << 20, 0.01);
        WorkloadReport {
            workload: "w".into(),
            kind: "ai".into(),
            classified: Tier::High,
            tier: Tier::High,
            crossed_tier: false,
            device: "gpu".into(),
            backend: Backend::Cuda,
            reason: "only device".into(),
            estimates: (0.0, 0.0, 0.0),
            buffers: vec![BufferReport {
                buffer: BufferId(1),
                size: 64 << 20,
                access: AccessMode::Read,
                hit: false,
                placement: Placement::DeviceLocal,
                in_place: false,
                placement_reason: "fits".into(),
                allocated: true,
                bytes_moved: 64 << 20,
                source: Some(Location::Host),
                evicted: Vec::new(),
                transfers: vec![t],
            }],
            bytes_moved: 64 << 20,
            link_bytes: if shared_memory { 0 } else { 64 << 20 },
            shared_memory,
            bytes_saved: 0,
            tiles: 1,
            passes: 1,
            times: StageTimes::default(),
            plan: None,
        }
    }

    #[test]
    fn link_bytes_are_reported_only_where_there_is_a_link() {
        let linked = report(false).to_string();
        assert!(
            linked.contains("64 MiB over the link for 64 MiB"),
            "{linked}"
        );
        assert!(
            linked.contains("(64 MiB over the link; saved 0 B)"),
            "{linked}"
        );
        let shared = report(true);
        let text = shared.to_string();
        assert!(!text.contains("over the link"), "{text}");
        assert!(text.contains("64 MiB in shared memory, no link"), "{text}");
        assert!(
            text.contains("shared memory: nothing crossed a link"),
            "{text}"
        );
        let j = shared.to_json();
        assert_eq!(j["buffers"][0]["transfers"][0]["link_bytes"], 0);
        assert_eq!(j["link_bytes"], 0);
    }
}
