//! Conversions between CUDA's vocabulary and VUMA's: placements as host allocation flags,
//! the integrated flag as a device kind, the host link from NVML's facts, and the driver
//! version as text.

use cudarc::driver::sys;
use vuma_core::{DeviceKind, LinkInfo, Placement};

use crate::nvml::NvmlFacts;

/// The `cuMemHostAlloc` flags of a host-resident placement: `DEVICEMAP | PORTABLE` for
/// [`Placement::HostMapped`], `PORTABLE` otherwise (never write-combined: the CPU reads it).
pub(crate) fn host_alloc_flags(placement: Placement) -> u32 {
    if placement == Placement::HostMapped {
        sys::CU_MEMHOSTALLOC_DEVICEMAP | sys::CU_MEMHOSTALLOC_PORTABLE
    } else {
        sys::CU_MEMHOSTALLOC_PORTABLE
    }
}

/// The device kind of a GPU whose `CU_DEVICE_ATTRIBUTE_INTEGRATED` is `integrated`.
pub(crate) fn device_kind(integrated: bool) -> DeviceKind {
    if integrated {
        DeviceKind::Integrated
    } else {
        DeviceKind::Discrete
    }
}

/// The host link: NVML's PCIe generation and width where known; shared memory on an
/// integrated GPU; else an assumed PCIe gen4 x16 (generation and width left unknown).
pub(crate) fn host_link(nv: Option<&NvmlFacts>, integrated: bool) -> LinkInfo {
    match nv.and_then(|f| f.link()) {
        Some((g, w)) => LinkInfo::from_pcie(g, w),
        None if integrated => LinkInfo::shared_memory(20e9),
        None => LinkInfo {
            pcie_generation: None,
            pcie_width: None,
            ..LinkInfo::from_pcie(4, 16)
        },
    }
}

/// `cuDriverGetVersion`'s number (e.g. 13000) as text (`CUDA driver 13.0`).
pub(crate) fn driver_text(version: i32) -> String {
    format!("CUDA driver {}.{}", version / 1000, (version % 1000) / 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions() {
        assert_eq!(driver_text(13000), "CUDA driver 13.0");
        assert_eq!(driver_text(12090), "CUDA driver 12.9");
        assert_eq!(device_kind(true), DeviceKind::Integrated);
        assert_eq!(device_kind(false), DeviceKind::Discrete);
        assert_eq!(
            host_alloc_flags(Placement::Staging),
            sys::CU_MEMHOSTALLOC_PORTABLE
        );
        let l = host_link(None, false);
        assert_eq!((l.pcie_generation, l.pcie_width), (None, None));
        assert_eq!(
            l.h2d_bytes_per_s,
            LinkInfo::from_pcie(4, 16).h2d_bytes_per_s
        );
    }
}
