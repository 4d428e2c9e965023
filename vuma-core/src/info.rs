//! What a device is: [`DeviceInfo`] and its parts.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// The API a device is driven through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Backend {
    /// The CPU, through VUMA's own host device.
    Host,
    /// NVIDIA CUDA driver API.
    Cuda,
    /// Vulkan 1.2+.
    Vulkan,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Host => "host",
            Backend::Cuda => "cuda",
            Backend::Vulkan => "vulkan",
        })
    }
}

/// What kind of processor a device is; the Tidal Wave tiers are derived from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DeviceKind {
    /// A GPU sharing system memory with the CPU (low tier).
    Integrated,
    /// A GPU with its own memory behind a link (high tier).
    Discrete,
    /// The CPU itself, or a CPU-emulated GPU such as lavapipe.
    Cpu,
    /// A virtual or unknown device.
    Virtual,
}

impl fmt::Display for DeviceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DeviceKind::Integrated => "integrated",
            DeviceKind::Discrete => "discrete",
            DeviceKind::Cpu => "cpu",
            DeviceKind::Virtual => "virtual",
        })
    }
}

/// A process-unique identity of one opened device (not of the physical GPU: see
/// [`DeviceInfo::uuid`] for that).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceId(pub u64);

impl DeviceId {
    /// A fresh id, never handed out before in this process.
    pub fn fresh() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        DeviceId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "dev{}", self.0)
    }
}

/// The link between host memory and a device.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkInfo {
    /// Host-to-device bandwidth in bytes per second.
    pub h2d_bytes_per_s: f64,
    /// Device-to-host bandwidth in bytes per second.
    pub d2h_bytes_per_s: f64,
    /// Whether the figures were measured on this machine (`false`: derived from the link's
    /// generation and width, or a conservative default).
    pub measured: bool,
    /// PCIe generation, where known.
    pub pcie_generation: Option<u32>,
    /// PCIe lane count, where known.
    pub pcie_width: Option<u32>,
}

impl LinkInfo {
    /// Theoretical-ish usable bandwidth of a PCIe link (per direction), ~85% of the raw rate.
    pub fn from_pcie(generation: u32, width: u32) -> Self {
        let per_lane_gbps = match generation {
            1 => 0.25,
            2 => 0.5,
            3 => 0.985,
            4 => 1.969,
            5 => 3.938,
            _ => 7.877,
        };
        let bw = per_lane_gbps * f64::from(width) * 1e9 * 0.85;
        LinkInfo {
            h2d_bytes_per_s: bw,
            d2h_bytes_per_s: bw,
            measured: false,
            pcie_generation: Some(generation),
            pcie_width: Some(width),
        }
    }

    /// The link of a device that shares host memory (no copy crosses a bus).
    pub fn shared_memory(bytes_per_s: f64) -> Self {
        LinkInfo {
            h2d_bytes_per_s: bytes_per_s,
            d2h_bytes_per_s: bytes_per_s,
            measured: false,
            pcie_generation: None,
            pcie_width: None,
        }
    }
}

/// One memory heap of a device (Vulkan reports several; CUDA one of VRAM).
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryHeap {
    /// Size in bytes.
    pub size: u64,
    /// Budget in bytes (what the driver says this process may use), where known.
    pub budget: Option<u64>,
    /// Whether the heap is device-local memory.
    pub device_local: bool,
    /// Whether the CPU can map it (large BAR, integrated GPU, host heap).
    pub host_visible: bool,
}

/// Everything VUMA knows about one device; the scheduler and the placement policy read it.
#[derive(Debug, Clone)]
pub struct DeviceInfo {
    /// Process-unique id of this opened device.
    pub id: DeviceId,
    /// The backend driving it.
    pub backend: Backend,
    /// Integrated, discrete, CPU or virtual.
    pub kind: DeviceKind,
    /// Human-readable name.
    pub name: String,
    /// Ordinal within its backend.
    pub ordinal: u32,
    /// Physical device UUID, when the driver reports one (the same GPU has the same UUID
    /// through CUDA and through Vulkan).
    pub uuid: Option<[u8; 16]>,
    /// Total device memory in bytes.
    pub memory_total: u64,
    /// How much of it VUMA may use, in bytes (driver budget or configured).
    pub memory_budget: u64,
    /// Largest single allocation, in bytes.
    pub max_allocation: u64,
    /// Last-level cache in bytes (0: unknown).
    pub l2_bytes: u64,
    /// Streaming multiprocessors, compute units or CPU cores.
    pub compute_units: u32,
    /// The link to host memory, where there is one.
    pub host_link: Option<LinkInfo>,
    /// Whether kernels can read pinned host memory in place (zero-copy).
    pub can_map_host_memory: bool,
    /// Whether device memory *is* host memory (integrated GPUs, the CPU).
    pub unified_memory: bool,
    /// Asynchronous copy engines (0: unknown).
    pub copy_engines: u32,
    /// Whether copies issued with `Device::copy_concurrent` run on a queue of their own and
    /// overlap kernels (a CUDA side stream; a Vulkan transfer queue family), rather than
    /// being ordered with them.
    pub copies_overlap_kernels: bool,
    /// Whether each submission is waited for before the call returns (Vulkan's submit and
    /// fence, about 100 µs a call on the H200), so that many small device calls cost more
    /// than on a device whose calls queue.
    pub submissions_wait: bool,
    /// The unit in which kernels address storage buffers, bytes: 1 for byte-addressed
    /// memory (CUDA, the host); 4 where storage is bound and addressed in 32-bit words
    /// (Vulkan: a binding must cover a buffer's final partial word to reach it).
    pub storage_word_bytes: u32,
    /// CUDA compute capability, for CUDA devices.
    pub compute_capability: Option<(u32, u32)>,
    /// Memory heaps.
    pub heaps: Vec<MemoryHeap>,
    /// Driver name and version.
    pub driver: String,
    /// Further facts (NVML figures, Vulkan limits) as key/value pairs for `vuma info`.
    pub extra: Vec<(String, String)>,
}

impl DeviceInfo {
    /// Formats a UUID the way `nvidia-smi` does (`xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`).
    pub fn uuid_string(&self) -> Option<String> {
        self.uuid.map(|u| format_uuid(&u))
    }
}

/// Formats 16 bytes as a canonical UUID string.
pub fn format_uuid(u: &[u8; 16]) -> String {
    let h: Vec<String> = u.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        h[0..4].concat(),
        h[4..6].concat(),
        h[6..8].concat(),
        h[8..10].concat(),
        h[10..16].concat()
    )
}
