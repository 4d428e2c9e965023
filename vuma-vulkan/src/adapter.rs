//! Discovery: what a physical device is and offers ([`Adapter`]: properties, extensions,
//! queue families, memory heaps, limits, the PCIe link from sysfs), the logical device
//! VUMA creates on it, and its [`DeviceInfo`].

use std::ffi::CStr;

use ash::{ext, vk};
use vuma_core::{Backend, DeviceId, DeviceInfo, DeviceKind, Error, LinkInfo, MemoryHeap, Result};

use crate::conv::{device_kind, queue_flags_str, version_str};
use crate::error::vk_err;
use crate::memory::MemoryTable;
use crate::options::H2dStrategy;

/// Facts about the device that operations need.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    pub max_storage_range: u64,
    pub min_storage_offset_align: u64,
    pub max_group_count: [u32; 3],
    pub max_push_constants: u32,
    pub max_storage_per_stage: u32,
    pub max_allocation: u64,
}

/// What extension property structures report: compute units, the PCI address and the SM
/// figures of NVIDIA GPUs.
#[derive(Debug, Default)]
struct ExtFacts {
    compute_units: u32,
    pci_bdf: Option<String>,
    /// `shaderSMCount` and `shaderWarpsPerSM` (`VK_NV_shader_sm_builtins`).
    sm: Option<(u32, u32)>,
}

/// A physical device as VUMA sees it before opening it.
#[derive(Debug)]
pub(crate) struct Adapter {
    pub pd: vk::PhysicalDevice,
    pub ordinal: u32,
    props: vk::PhysicalDeviceProperties,
    uuid: [u8; vk::UUID_SIZE],
    /// `driverName driverInfo`.
    driver: String,
    max_memory_allocation: u64,
    has_budget: bool,
    /// Whether `VK_EXT_external_memory_host` is supported (it is then enabled).
    pub has_emh: bool,
    /// `minImportedHostPointerAlignment` (0 without the extension).
    pub import_align: u64,
    ext: ExtFacts,
    families: Vec<vk::QueueFamilyProperties>,
    /// The first compute-capable family: it runs kernels.
    pub compute_family: u32,
    /// A dedicated transfer family (transfer without graphics or compute), if any.
    pub transfer_family: Option<u32>,
    shader_int64: bool,
    pub kind: DeviceKind,
}

fn has_ext(exts: &[vk::ExtensionProperties], name: &CStr) -> bool {
    exts.iter()
        .any(|e| e.extension_name_as_c_str().is_ok_and(|n| n == name))
}

fn c_string(s: std::result::Result<&CStr, std::ffi::FromBytesUntilNulError>) -> Option<String> {
    s.ok().map(|c| c.to_string_lossy().into_owned())
}

impl Adapter {
    /// Reads what VUMA needs of physical device `pd` (number `ordinal`) of `inst`. A device
    /// older than Vulkan 1.2, or without a compute queue, is `Error::Unavailable`.
    pub fn probe(inst: &ash::Instance, pd: vk::PhysicalDevice, ordinal: u32) -> Result<Self> {
        // SAFETY: `pd` was enumerated from `inst`; the out-structures are valid.
        let props = unsafe { inst.get_physical_device_properties(pd) };
        if props.api_version < vk::API_VERSION_1_2 {
            return Err(Error::Unavailable {
                backend: Backend::Vulkan,
                reason: format!(
                    "device {ordinal} supports Vulkan {} only; VUMA needs 1.2",
                    version_str(props.api_version)
                ),
            });
        }
        let mut id_props = vk::PhysicalDeviceIDProperties::default();
        let mut drv_props = vk::PhysicalDeviceDriverProperties::default();
        let mut m3_props = vk::PhysicalDeviceMaintenance3Properties::default();
        let mut p2 = vk::PhysicalDeviceProperties2::default()
            .push_next(&mut id_props)
            .push_next(&mut drv_props)
            .push_next(&mut m3_props);
        // SAFETY: as above; the chained structures are core in Vulkan 1.2.
        unsafe { inst.get_physical_device_properties2(pd, &mut p2) };
        let driver = format!(
            "{} {}",
            c_string(drv_props.driver_name_as_c_str()).unwrap_or_default(),
            c_string(drv_props.driver_info_as_c_str()).unwrap_or_default()
        )
        .trim()
        .to_string();
        // SAFETY: as above.
        let exts = unsafe { inst.enumerate_device_extension_properties(pd) }
            .map_err(|e| vk_err("vkEnumerateDeviceExtensionProperties", e))?;
        let has_emh = has_ext(&exts, ext::external_memory_host::NAME);
        let mut emh_props = vk::PhysicalDeviceExternalMemoryHostPropertiesEXT::default();
        if has_emh {
            let mut p2 = vk::PhysicalDeviceProperties2::default().push_next(&mut emh_props);
            // SAFETY: as above; the structure is chained only when the extension exists.
            unsafe { inst.get_physical_device_properties2(pd, &mut p2) };
        }
        let ext_facts = ext_facts(inst, pd, &exts);
        // SAFETY: as above.
        let families = unsafe { inst.get_physical_device_queue_family_properties(pd) };
        let Some(compute_family) = families
            .iter()
            .position(|f| f.queue_flags.contains(vk::QueueFlags::COMPUTE) && f.queue_count > 0)
        else {
            return Err(Error::Unavailable {
                backend: Backend::Vulkan,
                reason: format!("device {ordinal} has no compute queue"),
            });
        };
        let transfer_family = families.iter().position(|f| {
            f.queue_flags.contains(vk::QueueFlags::TRANSFER)
                && !f
                    .queue_flags
                    .intersects(vk::QueueFlags::GRAPHICS | vk::QueueFlags::COMPUTE)
                && f.queue_count > 0
        });
        // SAFETY: as above.
        let features = unsafe { inst.get_physical_device_features(pd) };
        Ok(Adapter {
            pd,
            ordinal,
            props,
            uuid: id_props.device_uuid,
            driver,
            max_memory_allocation: m3_props.max_memory_allocation_size,
            has_budget: has_ext(&exts, ext::memory_budget::NAME),
            has_emh,
            import_align: emh_props.min_imported_host_pointer_alignment,
            ext: ext_facts,
            families,
            compute_family: compute_family as u32,
            transfer_family: transfer_family.map(|t| t as u32),
            shader_int64: features.shader_int64 == vk::TRUE,
            kind: device_kind(props.device_type),
        })
    }

    /// Whether device memory *is* host memory (integrated GPU, CPU device).
    pub fn unified(&self) -> bool {
        matches!(self.kind, DeviceKind::Integrated | DeviceKind::Cpu)
    }

    /// Creates the logical device: one queue of the compute family and one of the
    /// dedicated transfer family, `VK_EXT_memory_budget` and `VK_EXT_external_memory_host`
    /// where supported, `shaderInt64` where supported, and timeline semaphores.
    pub fn create_device(&self, inst: &ash::Instance) -> Result<ash::Device> {
        let prio = [1.0f32];
        let mut qcis = vec![vk::DeviceQueueCreateInfo::default()
            .queue_family_index(self.compute_family)
            .queue_priorities(&prio)];
        if let Some(t) = self.transfer_family {
            qcis.push(
                vk::DeviceQueueCreateInfo::default()
                    .queue_family_index(t)
                    .queue_priorities(&prio),
            );
        }
        let mut dev_exts = Vec::new();
        if self.has_budget {
            dev_exts.push(ext::memory_budget::NAME.as_ptr());
        }
        if self.has_emh {
            dev_exts.push(ext::external_memory_host::NAME.as_ptr());
        }
        let enabled = vk::PhysicalDeviceFeatures::default().shader_int64(self.shader_int64);
        let mut f12 = vk::PhysicalDeviceVulkan12Features::default().timeline_semaphore(true);
        let dci = vk::DeviceCreateInfo::default()
            .queue_create_infos(&qcis)
            .enabled_extension_names(&dev_exts)
            .enabled_features(&enabled)
            .push_next(&mut f12);
        // SAFETY: every pointer in `dci` refers to locals alive for the call; the queue
        // families and extensions were checked by `probe`; timelineSemaphore is mandatory
        // in 1.2.
        unsafe { inst.create_device(self.pd, &dci, None) }.map_err(|e| vk_err("vkCreateDevice", e))
    }

    /// The memory table and, with `VK_EXT_memory_budget`, the budget of each heap. Call
    /// after [`Adapter::create_device`] (which enables the extension).
    pub fn memory(&self, inst: &ash::Instance) -> (MemoryTable, Option<Vec<u64>>) {
        let mut budget = vk::PhysicalDeviceMemoryBudgetPropertiesEXT::default();
        let mut mp2 = vk::PhysicalDeviceMemoryProperties2::default();
        if self.has_budget {
            mp2 = mp2.push_next(&mut budget);
        }
        // SAFETY: `pd` is valid; the budget structure is chained only when the extension is
        // supported (and enabled on the device).
        unsafe { inst.get_physical_device_memory_properties2(self.pd, &mut mp2) };
        let table = MemoryTable::from_vk(&mp2.memory_properties);
        let budgets = self.has_budget.then(|| budget.heap_budget.to_vec());
        (table, budgets)
    }

    /// The limits operations check.
    pub fn limits(&self) -> Limits {
        let l = &self.props.limits;
        Limits {
            max_storage_range: u64::from(l.max_storage_buffer_range),
            min_storage_offset_align: l.min_storage_buffer_offset_alignment.max(1),
            max_group_count: l.max_compute_work_group_count,
            max_push_constants: l.max_push_constants_size,
            max_storage_per_stage: l.max_per_stage_descriptor_storage_buffers,
            max_allocation: self.max_memory_allocation,
        }
    }

    /// The device's name (`vulkan device N` when the driver's is not a string).
    pub fn name(&self) -> String {
        c_string(self.props.device_name_as_c_str())
            .unwrap_or_else(|| format!("vulkan device {}", self.ordinal))
    }
}

/// Compute units and the PCI address, from extensions that report them (each structure is
/// chained only when the physical device supports its extension; property queries need no
/// enabled extension). No Vulkan API reports the L2 size.
fn ext_facts(
    inst: &ash::Instance,
    pd: vk::PhysicalDevice,
    exts: &[vk::ExtensionProperties],
) -> ExtFacts {
    let has_sm = has_ext(exts, ash::nv::shader_sm_builtins::NAME);
    let has_amd_core = has_ext(exts, ash::amd::shader_core_properties::NAME);
    let has_amd_core2 = has_ext(exts, ash::amd::shader_core_properties2::NAME);
    let has_pci = has_ext(exts, ext::pci_bus_info::NAME);
    let mut sm_props = vk::PhysicalDeviceShaderSMBuiltinsPropertiesNV::default();
    let mut amd_props = vk::PhysicalDeviceShaderCorePropertiesAMD::default();
    let mut amd2_props = vk::PhysicalDeviceShaderCoreProperties2AMD::default();
    let mut pci_props = vk::PhysicalDevicePCIBusInfoPropertiesEXT::default();
    if has_sm || has_amd_core || has_amd_core2 || has_pci {
        let mut p2 = vk::PhysicalDeviceProperties2::default();
        if has_sm {
            p2 = p2.push_next(&mut sm_props);
        }
        if has_amd_core {
            p2 = p2.push_next(&mut amd_props);
        }
        if has_amd_core2 {
            p2 = p2.push_next(&mut amd2_props);
        }
        if has_pci {
            p2 = p2.push_next(&mut pci_props);
        }
        // SAFETY: `pd` was enumerated from `inst`; every chained structure's extension is
        // supported by `pd`.
        unsafe { inst.get_physical_device_properties2(pd, &mut p2) };
    }
    let compute_units = if has_sm && sm_props.shader_sm_count > 0 {
        sm_props.shader_sm_count
    } else if has_amd_core2 && amd2_props.active_compute_unit_count > 0 {
        amd2_props.active_compute_unit_count
    } else if has_amd_core {
        amd_props
            .shader_engine_count
            .saturating_mul(amd_props.shader_arrays_per_engine_count)
            .saturating_mul(amd_props.compute_units_per_shader_array)
    } else {
        0
    };
    let pci_bdf = has_pci.then(|| {
        format!(
            "{:04x}:{:02x}:{:02x}.{:x}",
            pci_props.pci_domain, pci_props.pci_bus, pci_props.pci_device, pci_props.pci_function
        )
    });
    ExtFacts {
        compute_units,
        pci_bdf,
        sm: has_sm.then_some((sm_props.shader_sm_count, sm_props.shader_warps_per_sm)),
    }
}

/// What [`Adapter::info`] reports besides the adapter's own facts.
pub(crate) struct InfoDesc<'a> {
    pub id: DeviceId,
    pub table: &'a MemoryTable,
    /// Per-heap budgets (`VK_EXT_memory_budget`), if known.
    pub budgets: Option<&'a [u64]>,
    /// The memory type per purpose (device-local, upload, readback, host-mapped).
    pub types: [Option<u32>; 4],
    pub h2d: H2dStrategy,
    pub bar_type: Option<u32>,
    pub validation: bool,
}

impl Adapter {
    /// The device's [`DeviceInfo`]: heaps with budgets, the host link of a discrete GPU
    /// (PCIe generation and width from sysfs at the address `VK_EXT_pci_bus_info` reports),
    /// limits and queue families in `extra`.
    pub fn info(&self, d: &InfoDesc<'_>) -> DeviceInfo {
        let pcie = match (&self.ext.pci_bdf, self.kind) {
            (Some(bdf), DeviceKind::Discrete) => sysfs_pcie_link(bdf),
            _ => None,
        };
        let heaps = heaps(d.table, d.budgets);
        let device_local = || heaps.iter().filter(|h| h.device_local);
        let memory_total: u64 = device_local().map(|h| h.size).sum();
        let memory_budget: u64 = device_local().map(|h| h.budget.unwrap_or(h.size)).sum();
        let largest_dl_heap = device_local().map(|h| h.size).max().unwrap_or(0);
        let mut extra = self.extra(d);
        if let Some(bdf) = &self.ext.pci_bdf {
            extra.push(("vulkan.pci_bus_id".into(), bdf.clone()));
        }
        if let Some((g, w, current)) = &pcie {
            extra.push(("vulkan.pcie_max".into(), format!("gen{g} x{w}")));
            extra.push(("vulkan.pcie_current".into(), current.clone()));
        }
        if let Some((sms, warps)) = self.ext.sm {
            extra.push((
                "vulkan.sm_count".into(),
                format!("{sms} ({warps} warps per SM)"),
            ));
        }
        DeviceInfo {
            id: d.id,
            backend: Backend::Vulkan,
            kind: self.kind,
            name: self.name(),
            ordinal: self.ordinal,
            uuid: Some(self.uuid),
            memory_total,
            memory_budget,
            max_allocation: self.max_memory_allocation.min(largest_dl_heap),
            l2_bytes: 0,
            compute_units: self.ext.compute_units,
            host_link: pcie.as_ref().map(|&(g, w, _)| LinkInfo::from_pcie(g, w)),
            can_map_host_memory: d.types[3].is_some(),
            unified_memory: self.unified(),
            copy_engines: self
                .transfer_family
                .map_or(0, |t| self.families[t as usize].queue_count),
            // Side copies go to the transfer queue family where there is one; without it
            // they share the compute queue.
            copies_overlap_kernels: self.transfer_family.is_some(),
            submissions_wait: true,
            storage_word_bytes: 4,
            compute_capability: None,
            heaps,
            driver: self.driver.clone(),
            extra,
        }
    }

    /// The `vulkan.*` entries of [`DeviceInfo::extra`] every device has.
    fn extra(&self, d: &InfoDesc<'_>) -> Vec<(String, String)> {
        let l = &self.props.limits;
        let qf_desc: Vec<String> = self
            .families
            .iter()
            .enumerate()
            .map(|(i, f)| {
                format!(
                    "qf{i}: {}x {}",
                    f.queue_count,
                    queue_flags_str(f.queue_flags)
                )
            })
            .collect();
        let type_desc: Vec<String> = d
            .table
            .types
            .iter()
            .enumerate()
            .map(|(i, t)| format!("{i}:heap{} {:?}", t.heap, t.flags))
            .collect();
        let types = d.types;
        vec![
            ("vulkan.api".into(), version_str(self.props.api_version)),
            ("vulkan.queue_families".into(), qf_desc.join(", ")),
            (
                "vulkan.queues_used".into(),
                format!(
                    "compute qf{}, transfer {}",
                    self.compute_family,
                    self.transfer_family
                        .map_or("(compute queue)".into(), |t| format!("qf{t} (dedicated)"))
                ),
            ),
            (
                "vulkan.maxStorageBufferRange".into(),
                l.max_storage_buffer_range.to_string(),
            ),
            (
                "vulkan.minStorageBufferOffsetAlignment".into(),
                l.min_storage_buffer_offset_alignment.to_string(),
            ),
            (
                "vulkan.maxComputeWorkGroupCount".into(),
                format!("{:?}", l.max_compute_work_group_count),
            ),
            ("vulkan.memory_types".into(), type_desc.join(", ")),
            (
                "vulkan.memory_type_per_purpose".into(),
                format!(
                    "device-local {:?}, upload {:?}, readback {:?}, host-mapped {:?}",
                    types[0], types[1], types[2], types[3]
                ),
            ),
            (
                "vulkan.large_bar".into(),
                d.table.has_large_bar().to_string(),
            ),
            (
                "vulkan.h2d".into(),
                format!(
                    "{} (BAR upload type {})",
                    d.h2d,
                    d.bar_type.map_or("none".into(), |t| t.to_string())
                ),
            ),
            (
                "vulkan.memory_budget_ext".into(),
                self.has_budget.to_string(),
            ),
            (
                "vulkan.external_memory_host".into(),
                self.has_emh.to_string(),
            ),
            ("vulkan.validation".into(), d.validation.to_string()),
            (
                "vulkan.l2_bytes".into(),
                "unknown (no Vulkan API reports it)".into(),
            ),
        ]
    }
}

/// The heaps of `table` as VUMA reports them, with their budgets where known.
fn heaps(table: &MemoryTable, budgets: Option<&[u64]>) -> Vec<MemoryHeap> {
    table
        .heaps
        .iter()
        .enumerate()
        .map(|(i, h)| MemoryHeap {
            size: h.size,
            budget: budgets.map(|b| b[i]),
            device_local: h.flags.contains(vk::MemoryHeapFlags::DEVICE_LOCAL),
            host_visible: table.types.iter().any(|t| {
                t.heap as usize == i && t.flags.contains(vk::MemoryPropertyFlags::HOST_VISIBLE)
            }),
        })
        .collect()
}

/// The PCIe generation of a sysfs link speed such as `32.0 GT/s PCIe`.
pub(crate) fn pcie_generation(speed: &str) -> Option<u32> {
    let gts: f64 = speed.split_whitespace().next()?.parse().ok()?;
    [
        (2.5, 1),
        (5.0, 2),
        (8.0, 3),
        (16.0, 4),
        (32.0, 5),
        (64.0, 6),
        (128.0, 7),
    ]
    .iter()
    .find(|(s, _)| (gts - s).abs() < 0.01)
    .map(|&(_, g)| g)
}

/// The PCIe link of the device at `bdf` (`dddd:bb:dd.f`) from Linux sysfs: the maximum
/// generation and width (an idle NVIDIA GPU trains its link down, so the current figures
/// understate it), else the current ones. `None` where sysfs does not say.
fn sysfs_pcie_link(bdf: &str) -> Option<(u32, u32, String)> {
    let dir = std::path::Path::new("/sys/bus/pci/devices").join(bdf);
    let read = |f: &str| {
        std::fs::read_to_string(dir.join(f))
            .ok()
            .map(|s| s.trim().to_string())
    };
    let gen_of = |f: &str| read(f).as_deref().and_then(pcie_generation);
    let width_of = |f: &str| {
        read(f)
            .and_then(|w| w.parse::<u32>().ok())
            .filter(|&w| w > 0)
    };
    let (cg, cw) = (gen_of("current_link_speed"), width_of("current_link_width"));
    let g = gen_of("max_link_speed").or(cg)?;
    let w = width_of("max_link_width").or(cw)?;
    let current = match (cg, cw) {
        (Some(g), Some(w)) => format!("gen{g} x{w}"),
        _ => "unknown".into(),
    };
    Some((g, w, current))
}

#[cfg(test)]
mod tests {
    use super::pcie_generation;

    #[test]
    fn pcie_speeds() {
        assert_eq!(pcie_generation("32.0 GT/s PCIe"), Some(5));
        assert_eq!(pcie_generation("16.0 GT/s PCIe"), Some(4));
        assert_eq!(pcie_generation("8.0 GT/s PCIe"), Some(3));
        assert_eq!(pcie_generation("2.5 GT/s PCIe"), Some(1));
        assert_eq!(pcie_generation("64.0 GT/s PCIe"), Some(6));
        assert_eq!(pcie_generation("Unknown"), None);
        assert_eq!(pcie_generation(""), None);
        assert_eq!(pcie_generation("3.0 GT/s"), None);
    }
}
