//! Conversions between Vulkan's vocabulary and VUMA's: device types, placements and memory
//! purposes, queue flags and API versions as text.

use ash::vk;
use vuma_core::{DeviceKind, Placement};

use crate::memory::MemoryPurpose;

/// Every memory purpose, in the order of [`purpose_index`].
pub(crate) const PURPOSES: [MemoryPurpose; 4] = [
    MemoryPurpose::DeviceLocal,
    MemoryPurpose::Upload,
    MemoryPurpose::Readback,
    MemoryPurpose::HostMapped,
];

/// The index of `p` in [`PURPOSES`] (and in a device's table of memory types per purpose).
pub(crate) fn purpose_index(p: MemoryPurpose) -> usize {
    match p {
        MemoryPurpose::DeviceLocal => 0,
        MemoryPurpose::Upload => 1,
        MemoryPurpose::Readback => 2,
        MemoryPurpose::HostMapped => 3,
    }
}

/// The memory purpose of buffers of placement `p`.
pub(crate) fn purpose_of(p: Placement) -> MemoryPurpose {
    match p {
        Placement::DeviceLocal => MemoryPurpose::DeviceLocal,
        Placement::HostMapped => MemoryPurpose::HostMapped,
        // Staging is read and written by the CPU: it must never be BAR memory.
        _ => MemoryPurpose::Readback,
    }
}

/// VUMA's kind of a Vulkan physical-device type.
pub(crate) fn device_kind(t: vk::PhysicalDeviceType) -> DeviceKind {
    match t {
        vk::PhysicalDeviceType::INTEGRATED_GPU => DeviceKind::Integrated,
        vk::PhysicalDeviceType::DISCRETE_GPU => DeviceKind::Discrete,
        vk::PhysicalDeviceType::CPU => DeviceKind::Cpu,
        _ => DeviceKind::Virtual,
    }
}

/// Queue flags as `G|C|T` (graphics, compute, transfer, sparse, video decode and encode).
pub(crate) fn queue_flags_str(f: vk::QueueFlags) -> String {
    let mut s = Vec::new();
    for (flag, n) in [
        (vk::QueueFlags::GRAPHICS, "G"),
        (vk::QueueFlags::COMPUTE, "C"),
        (vk::QueueFlags::TRANSFER, "T"),
        (vk::QueueFlags::SPARSE_BINDING, "S"),
        (vk::QueueFlags::VIDEO_DECODE_KHR, "VD"),
        (vk::QueueFlags::VIDEO_ENCODE_KHR, "VE"),
    ] {
        if f.contains(flag) {
            s.push(n);
        }
    }
    if s.is_empty() {
        "other".into()
    } else {
        s.join("|")
    }
}

/// A packed API version as `major.minor.patch`.
pub(crate) fn version_str(v: u32) -> String {
    format!(
        "{}.{}.{}",
        vk::api_version_major(v),
        vk::api_version_minor(v),
        vk::api_version_patch(v)
    )
}
