//! Described devices: [`DeviceInfo`]s of typical machines, for tests, benchmarks and demos
//! of the scheduler on a machine that has none of them. Each call hands out fresh
//! [`DeviceId`]s. Figures are public specifications (SM counts, L2, PCIe links) and, for the
//! H100, figures measured on that machine.

use vuma_core::{Backend, DeviceId, DeviceInfo, DeviceKind, LinkInfo, MemoryHeap};

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

#[allow(clippy::too_many_arguments)]
fn info(
    backend: Backend,
    kind: DeviceKind,
    name: &str,
    uuid: Option<[u8; 16]>,
    memory: u64,
    l2: u64,
    units: u32,
    link: LinkInfo,
) -> DeviceInfo {
    let unified = matches!(kind, DeviceKind::Integrated | DeviceKind::Cpu);
    DeviceInfo {
        id: DeviceId::fresh(),
        backend,
        kind,
        name: name.to_owned(),
        ordinal: 0,
        uuid,
        memory_total: memory,
        memory_budget: memory / 10 * 9,
        max_allocation: memory / 4,
        l2_bytes: l2,
        compute_units: units,
        host_link: Some(link),
        can_map_host_memory: true,
        unified_memory: unified,
        copy_engines: if unified { 0 } else { 2 },
        copies_overlap_kernels: !unified,
        submissions_wait: false,
        storage_word_bytes: 1,
        compute_capability: None,
        heaps: vec![MemoryHeap {
            size: memory,
            budget: Some(memory / 10 * 9),
            device_local: true,
            host_visible: unified,
        }],
        driver: "described".into(),
        extra: Vec::new(),
    }
}

/// The CPU as the host device, with `cores` cores.
pub fn cpu(cores: u32) -> DeviceInfo {
    info(
        Backend::Host,
        DeviceKind::Cpu,
        &format!("cpu ({cores} cores)"),
        None,
        32 * GIB,
        32 * MIB,
        cores,
        LinkInfo::shared_memory(20e9),
    )
}

/// An Intel Iris Xe integrated GPU (96 EUs) through Vulkan.
pub fn iris_xe() -> DeviceInfo {
    info(
        Backend::Vulkan,
        DeviceKind::Integrated,
        "Intel Iris Xe (integrated)",
        Some([0x1e; 16]),
        16 * GIB,
        4 * MIB,
        96,
        LinkInfo::shared_memory(50e9),
    )
}

/// An RTX 4070 Laptop GPU (36 SMs, 8 GiB, PCIe Gen4 x8) through CUDA.
pub fn rtx4070_laptop() -> DeviceInfo {
    let mut d = info(
        Backend::Cuda,
        DeviceKind::Discrete,
        "NVIDIA GeForce RTX 4070 Laptop GPU",
        Some([0x47; 16]),
        8 * GIB,
        32 * MIB,
        36,
        LinkInfo::from_pcie(4, 8),
    );
    d.compute_capability = Some((8, 9));
    d
}

/// An RTX 4090 (128 SMs, 24 GiB, PCIe Gen4 x16) through CUDA; `n` makes the UUID distinct.
pub fn rtx4090(n: u8) -> DeviceInfo {
    let mut d = info(
        Backend::Cuda,
        DeviceKind::Discrete,
        &format!("NVIDIA GeForce RTX 4090 #{n}"),
        Some([0x90, n, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
        24 * GIB,
        72 * MIB,
        128,
        LinkInfo::from_pcie(4, 16),
    );
    d.ordinal = u32::from(n);
    d.compute_capability = Some((8, 9));
    d
}

/// The UUID both views of the described H100 report.
pub const H100_UUID: [u8; 16] = [
    0x6a, 0x1c, 0x00, 0x7e, 0x31, 0x4d, 0x5e, 0x10, 0x8f, 0x2a, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66,
];

fn h100(backend: Backend) -> DeviceInfo {
    let mut link = LinkInfo::from_pcie(5, 16);
    link.h2d_bytes_per_s = 55.2e9;
    link.d2h_bytes_per_s = 55.2e9;
    link.measured = true;
    let mut d = info(
        backend,
        DeviceKind::Discrete,
        "NVIDIA H100 80GB HBM3",
        Some(H100_UUID),
        80 * GIB,
        50 * MIB,
        132,
        link,
    );
    d.compute_capability = (backend == Backend::Cuda).then_some((9, 0));
    d
}

/// The H100 of the GPU machine seen through CUDA.
pub fn h100_cuda() -> DeviceInfo {
    h100(Backend::Cuda)
}

/// The same H100 seen through Vulkan (same UUID).
pub fn h100_vulkan() -> DeviceInfo {
    h100(Backend::Vulkan)
}

/// A laptop: 8-core CPU, Iris Xe iGPU (Vulkan), RTX 4070 Laptop dGPU (CUDA).
pub fn laptop() -> Vec<DeviceInfo> {
    vec![cpu(8), iris_xe(), rtx4070_laptop()]
}

/// A machine with nothing but its 4-core CPU.
pub fn cpu_only() -> Vec<DeviceInfo> {
    vec![cpu(4)]
}

/// A desktop with a 16-core CPU and two RTX 4090s.
pub fn two_gpu_desktop() -> Vec<DeviceInfo> {
    vec![cpu(16), rtx4090(0), rtx4090(1)]
}

/// The GPU machine: 16-core CPU, and its H100 through CUDA and through Vulkan.
pub fn h100_server() -> Vec<DeviceInfo> {
    vec![cpu(16), h100_cuda(), h100_vulkan()]
}
