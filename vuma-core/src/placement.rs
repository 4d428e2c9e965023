//! Where a buffer's bytes live, how kernels access them, and the placement policy.
//!
//! The policy is one small function, [`choose_placement`], fed with the buffer's size and
//! expected reuse and the device's [`DeviceInfo`]. It returns a [`PlacementDecision`] whose
//! `reason` is printed in every workload report.

use crate::info::DeviceInfo;

/// Where a device-side copy of a buffer lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Placement {
    /// Device memory (VRAM on a discrete GPU). Fastest for kernels; reaching it costs a copy.
    DeviceLocal,
    /// Zero-copy: pinned host memory mapped into the device's address space; kernels read
    /// and write it in place over the link. No copy, but every access crosses the link.
    HostMapped,
    /// Pinned host memory the device copies from and to at full link speed; kernels do not
    /// access it directly.
    Staging,
}

impl Placement {
    /// Every placement, for suites that must try them all.
    pub const ALL: [Placement; 3] = [
        Placement::DeviceLocal,
        Placement::HostMapped,
        Placement::Staging,
    ];

    /// Short name for reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Placement::DeviceLocal => "device-local",
            Placement::HostMapped => "zero-copy",
            Placement::Staging => "staging",
        }
    }
}

/// How a kernel accesses a buffer; writes invalidate every other copy of a unified buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccessMode {
    /// Read only.
    Read,
    /// Written entirely without being read first (the old contents need not be transferred).
    Write,
    /// Read and written.
    ReadWrite,
}

impl AccessMode {
    /// Whether the kernel reads the old contents.
    pub fn reads(self) -> bool {
        matches!(self, AccessMode::Read | AccessMode::ReadWrite)
    }
    /// Whether the kernel modifies the contents.
    pub fn writes(self) -> bool {
        matches!(self, AccessMode::Write | AccessMode::ReadWrite)
    }
}

/// Knobs of the placement policy.
#[derive(Debug, Clone, PartialEq)]
pub struct PlacementConfig {
    /// Buffers above this size are never zero-copy on a discrete device (default 64 MiB).
    pub zero_copy_threshold: u64,
    /// Fixed cost of issuing a copy and synchronising with it, in seconds (8 µs measured on
    /// the H100: a 64 KiB read-once buffer took 8.8 µs zero-copy vs 16.8 µs copy+kernel).
    pub copy_overhead_s: f64,
    /// Device memory bandwidth assumed when the device does not say, bytes/s.
    pub device_bandwidth: f64,
}

impl Default for PlacementConfig {
    fn default() -> Self {
        PlacementConfig {
            zero_copy_threshold: 64 << 20,
            copy_overhead_s: 8e-6,
            device_bandwidth: 1.0e12,
        }
    }
}

/// What the policy decided, and why (for the workload report).
#[derive(Debug, Clone, PartialEq)]
pub struct PlacementDecision {
    /// The chosen placement.
    pub placement: Placement,
    /// Why, in a few words.
    pub reason: String,
}

/// Chooses where a buffer of `size` bytes, accessed `reuse` times by kernels on `device`
/// while resident there, should live.
///
/// Rules, in order:
/// 1. a device that shares host memory (integrated GPU, CPU) uses it in place: zero-copy;
/// 2. a device that cannot map host memory needs device-local memory;
/// 3. above `zero_copy_threshold` the buffer is migratable (device-local, evictable);
/// 4. otherwise compare the link traffic: zero-copy crosses the link `reuse` times, a copy
///    crosses it once plus a fixed overhead, then reads run at device bandwidth. The cheaper
///    wins; ties go to zero-copy (no VRAM taken).
pub fn choose_placement(
    size: u64,
    reuse: u32,
    device: &DeviceInfo,
    config: &PlacementConfig,
) -> PlacementDecision {
    let decide = |placement, reason: String| PlacementDecision { placement, reason };
    if device.unified_memory && device.can_map_host_memory {
        return decide(
            Placement::HostMapped,
            "device shares host memory: used in place".into(),
        );
    }
    if !device.can_map_host_memory {
        return decide(
            Placement::DeviceLocal,
            "device cannot map host memory".into(),
        );
    }
    if size > config.zero_copy_threshold {
        return decide(
            Placement::DeviceLocal,
            format!(
                "{} > zero-copy threshold {}: migrated",
                human_bytes(size),
                human_bytes(config.zero_copy_threshold)
            ),
        );
    }
    let link = device
        .host_link
        .as_ref()
        .map(|l| l.h2d_bytes_per_s)
        .filter(|b| *b > 0.0)
        .unwrap_or(16e9);
    let reuse = reuse.max(1) as f64;
    let bytes = size as f64;
    let zero_copy_s = reuse * bytes / link;
    let copy_s = config.copy_overhead_s + bytes / link + reuse * bytes / config.device_bandwidth;
    if zero_copy_s <= copy_s {
        decide(
            Placement::HostMapped,
            format!(
                "zero-copy {:.1} µs <= copy {:.1} µs for {} read {}x",
                zero_copy_s * 1e6,
                copy_s * 1e6,
                human_bytes(size),
                reuse
            ),
        )
    } else {
        decide(
            Placement::DeviceLocal,
            format!(
                "copy {:.1} µs < zero-copy {:.1} µs for {} read {}x",
                copy_s * 1e6,
                zero_copy_s * 1e6,
                human_bytes(size),
                reuse
            ),
        )
    }
}

/// Formats a byte count with a binary unit (`64 MiB`).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else if (v - v.round()).abs() < 0.05 {
        format!("{:.0} {}", v, UNITS[u])
    } else {
        format!("{:.1} {}", v, UNITS[u])
    }
}
