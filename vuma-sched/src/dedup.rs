//! One physical GPU, several views: the same GPU opened through CUDA and through Vulkan
//! reports the same UUID and is one device for the scheduler (one queue, one health, one
//! thermal budget); the view used for a workload is the preferred backend it has a variant for.

use vuma_core::{Backend, DeviceInfo};

/// Whether two opened devices are the same physical device: both report a UUID and the UUIDs
/// are equal. (Devices without a UUID are never merged: there is no safe way to tell.)
pub fn same_physical_device(a: &DeviceInfo, b: &DeviceInfo) -> bool {
    matches!((a.uuid, b.uuid), (Some(x), Some(y)) if x == y)
}

/// Preference among views of one physical device for compute: CUDA first (NVRTC-compiled
/// kernels for the exact architecture, the driver's own copy engines), then Vulkan, then the
/// host. Lower is preferred.
pub fn backend_rank(b: Backend) -> u8 {
    match b {
        Backend::Cuda => 0,
        Backend::Vulkan => 1,
        Backend::Host => 2,
        _ => 3,
    }
}

/// Among `views` (devices of one machine), the ones a workload with variants for `backends`
/// should consider: devices of an eligible backend, and of each physical device only its
/// preferred view (see [`backend_rank`]; ties keep the first listed).
pub fn eligible_views<'a>(views: &'a [DeviceInfo], backends: &[Backend]) -> Vec<&'a DeviceInfo> {
    let eligible = |d: &DeviceInfo| backends.contains(&d.backend);
    views
        .iter()
        .enumerate()
        .filter(|(_, d)| eligible(d))
        .filter(|&(i, d)| {
            !views.iter().enumerate().any(|(j, o)| {
                j != i
                    && eligible(o)
                    && same_physical_device(d, o)
                    && (backend_rank(o.backend), j) < (backend_rank(d.backend), i)
            })
        })
        .map(|(_, d)| d)
        .collect()
}
