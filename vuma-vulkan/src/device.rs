//! [`VulkanDevice`]: opening a physical device, its [`DeviceInfo`], memory, queues, and
//! the [`Device`] implementation (transfers, fills, launches).

use std::ffi::CStr;
use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use ash::{ext, vk};
use gpu_allocator::vulkan::{
    Allocation, AllocationCreateDesc, AllocationScheme, Allocator, AllocatorCreateDesc,
};
use gpu_allocator::{AllocationSizes, AllocatorDebugSettings, MemoryLocation};
use vuma_core::{
    check_launch_args, check_range, Arg, Backend, Device, DeviceId, DeviceInfo, DeviceKind, Error,
    Fence, Kernel, KernelVariant, LaunchConfig, LinkInfo, MemoryHeap, Placement, Result,
};

use crate::buffer::{MappedPtr, VulkanBuffer};
use crate::compute::{PipelineKey, Pipelines};
use crate::copypool::CopyPool;
use crate::instance::{Instance, VulkanOptions};
use crate::memory::{select_memory_type, MemoryPurpose, MemoryTable};

/// How long one submission may take before VUMA calls the device hung.
const WAIT_TIMEOUT_NS: u64 = 120_000_000_000;

pub(crate) fn vk_err(op: &'static str, e: vk::Result) -> Error {
    match e {
        vk::Result::ERROR_DEVICE_LOST => Error::DeviceLost {
            device: "vulkan device".into(),
            reason: format!("{op}: {e:?}"),
        },
        // A wait that outlives WAIT_TIMEOUT_NS: the submission may still be running, so
        // nothing it uses may be reused or freed, and a retry would re-record command
        // buffers still in flight. The device is treated as hung: final, not transient.
        vk::Result::TIMEOUT => Error::DeviceLost {
            device: "vulkan device".into(),
            reason: format!(
                "{op}: a submission did not finish within {} s; the device is treated as hung",
                WAIT_TIMEOUT_NS / 1_000_000_000
            ),
        },
        _ => Error::Backend {
            backend: Backend::Vulkan,
            op,
            message: format!("{e:?}"),
            transient: matches!(
                e,
                vk::Result::ERROR_OUT_OF_DEVICE_MEMORY | vk::Result::ERROR_OUT_OF_HOST_MEMORY
            ),
        },
    }
}

/// State shared by a device and its buffers (buffers free their memory through it).
pub(crate) struct Shared {
    pub instance: Arc<Instance>,
    pub device: ash::Device,
    allocator: ManuallyDrop<Mutex<Allocator>>,
    pub id: DeviceId,
    /// Errors raised while dropping buffers, reported by the next `synchronize`.
    deferred: Mutex<Option<Error>>,
    /// The timeline of [`Device::copy_concurrent`] submissions (null until the device is
    /// fully open) and the last value signalled on it.
    side: vk::Semaphore,
    side_value: AtomicU64,
}

impl Shared {
    /// Waits until every concurrent copy submitted so far has completed.
    pub(crate) fn wait_side(&self) -> Result<()> {
        let v = self.side_value.load(Ordering::Acquire);
        if v == 0 || self.side == vk::Semaphore::null() {
            return Ok(());
        }
        let sems = [self.side];
        let vals = [v];
        let wi = vk::SemaphoreWaitInfo::default()
            .semaphores(&sems)
            .values(&vals);
        // SAFETY: the semaphore belongs to this device.
        unsafe { self.device.wait_semaphores(&wi, WAIT_TIMEOUT_NS) }
            .map_err(|e| vk_err("vkWaitSemaphores", e))
    }

    fn allocator(&self) -> MutexGuard<'_, Allocator> {
        self.allocator.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn record(&self, e: Error) {
        let mut d = self.deferred.lock().unwrap_or_else(|p| p.into_inner());
        if d.is_none() {
            *d = Some(e);
        }
    }

    pub(crate) fn destroy_buffer(&self, raw: vk::Buffer, alloc: Option<Allocation>) {
        // A concurrent copy may still use the buffer: wait for them all first.
        if let Err(e) = self.wait_side() {
            self.record(e);
            // SAFETY: valid device; the fallback that keeps the free safe.
            let _ = unsafe { self.device.device_wait_idle() };
        }
        if let Some(a) = alloc {
            if let Err(e) = self.allocator().free(a) {
                self.record(Error::Backend {
                    backend: Backend::Vulkan,
                    op: "gpu_allocator::free",
                    message: e.to_string(),
                    transient: false,
                });
            }
        }
        // SAFETY: `raw` was created from this device and no submitted work uses it any
        // more (every operation waits for its work before returning, and concurrent copies
        // were waited for above).
        unsafe { self.device.destroy_buffer(raw, None) };
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // SAFETY: the device is idle-waited before anything is destroyed; the allocator is
        // dropped (freeing its blocks) before the device, as gpu-allocator requires; every
        // buffer and the context were destroyed before the last `Arc<Shared>` went away.
        unsafe {
            let _ = self.device.device_wait_idle();
            if self.side != vk::Semaphore::null() {
                self.device.destroy_semaphore(self.side, None);
            }
            ManuallyDrop::drop(&mut self.allocator);
            self.device.destroy_device(None);
        }
    }
}

/// The payload of a Vulkan [`Fence`]: a value of the device's side timeline (the
/// timeline of [`Device::copy_concurrent`] submissions).
struct VkSideFence {
    shared: Arc<Shared>,
    value: u64,
}

/// Most command buffers kept for concurrent copies (more in flight wait for the oldest).
const MAX_SIDE_CMDS: usize = 8;

/// One queue with its command pool, a reusable command buffer, and its family.
struct QueueCtx {
    family: u32,
    queue: vk::Queue,
    pool: vk::CommandPool,
    cmd: vk::CommandBuffer,
}

/// One slot of the staging ring: mapped host memory and its own command buffer.
struct Slot {
    buffer: vk::Buffer,
    alloc: Option<Allocation>,
    ptr: MappedPtr,
    cmd: vk::CommandBuffer,
    /// Timeline value whose completion frees the slot (0: free).
    busy_until: u64,
}

/// Everything that submits work; guarded by the device's lock.
struct Ctx {
    compute: QueueCtx,
    transfer: Option<QueueCtx>,
    timeline: vk::Semaphore,
    /// Last value signalled (or to be signalled) on `timeline`.
    value: u64,
    /// The queue of the last submission: a submission on the same queue needs no timeline
    /// wait (submission order plus the leading full barrier order it).
    last_queue: vk::Queue,
    /// The staging ring (system memory; CPU writes and reads it).
    ring: Vec<Slot>,
    /// The BAR upload ring (device-local, host-visible VRAM; the CPU only writes it).
    bar_ring: Vec<Slot>,
    /// Why the BAR ring could not be created (BAR uploads fall back to staging until
    /// [`VulkanDevice::set_h2d_strategy`] is called again).
    bar_failed: Option<String>,
    pipelines: Pipelines,
    /// Command buffers of concurrent copies (from the transfer queue's pool) and the side
    /// timeline value whose completion frees each.
    side_cmds: Vec<(vk::CommandBuffer, u64)>,
    /// Side timeline value the next submission must wait for (`wait_for`; 0: none).
    pending_side: u64,
    /// Why a wait failed (timeout or device loss): from then on nothing is submitted,
    /// recorded or reused (the failed submission may still run), every call fails.
    hung: Option<String>,
}

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

/// How [`Device::write`] moves host bytes into *device-local* buffers (`VUMA_VK_H2D`).
///
/// Writes into host-mapped and staging buffers always go straight through their mapping;
/// reads never use the BAR (the CPU reads BAR memory at 0.007 GB/s on the H100).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum H2dStrategy {
    /// The copy threads fill slots of cached *system* memory (the staging ring) and the
    /// transfer queue DMAs each slot across the link into the destination. The CPU reads
    /// the source and writes the slot in DRAM, and the DMA reads the slot from DRAM again.
    /// The default.
    #[default]
    Staging,
    /// The copy threads write the bytes straight into slots of `DEVICE_LOCAL|HOST_VISIBLE`
    /// memory (the BAR ring: VRAM mapped through the PCIe BAR), with 64-byte aligned
    /// non-temporal stores and never a read of the slot; a `vkCmdCopyBuffer` then moves each
    /// slot into the destination inside VRAM. The DRAM sees only the source read. Needs a
    /// BAR memory type (see [`VulkanDevice::bar_upload_type`]); without one, or when the
    /// BAR ring cannot be allocated, writes fall back to [`H2dStrategy::Staging`].
    Bar,
    /// [`H2dStrategy::Bar`] for writes of at least [`H2dStrategy::AUTO_BAR_MIN`] bytes on a
    /// discrete GPU with a *large* BAR ([`MemoryTable::has_large_bar`]); staging otherwise.
    Auto,
}

impl H2dStrategy {
    /// The smallest write [`H2dStrategy::Auto`] sends through the BAR (1 MiB).
    pub const AUTO_BAR_MIN: u64 = 1 << 20;

    /// Its name, as `VUMA_VK_H2D` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            H2dStrategy::Staging => "staging",
            H2dStrategy::Bar => "bar",
            H2dStrategy::Auto => "auto",
        }
    }

    fn to_u8(self) -> u8 {
        match self {
            H2dStrategy::Staging => 0,
            H2dStrategy::Bar => 1,
            H2dStrategy::Auto => 2,
        }
    }

    fn from_u8(v: u8) -> Self {
        match v {
            1 => H2dStrategy::Bar,
            2 => H2dStrategy::Auto,
            _ => H2dStrategy::Staging,
        }
    }

    /// Whether a device-local write of `len` bytes goes through the BAR ring, given whether
    /// the device has a BAR upload type at all (`bar_type`), is a discrete GPU, and has a
    /// large BAR. A pure function (tested against memory tables).
    pub fn uses_bar(self, len: u64, bar_type: bool, discrete: bool, large_bar: bool) -> bool {
        match self {
            H2dStrategy::Staging => false,
            H2dStrategy::Bar => bar_type,
            H2dStrategy::Auto => bar_type && discrete && large_bar && len >= Self::AUTO_BAR_MIN,
        }
    }
}

impl std::fmt::Display for H2dStrategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for H2dStrategy {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "staging" | "staged" => Ok(H2dStrategy::Staging),
            "bar" => Ok(H2dStrategy::Bar),
            "auto" => Ok(H2dStrategy::Auto),
            other => Err(Error::invalid(format!(
                "VUMA_VK_H2D: unknown host-to-device strategy `{other}` (staging, bar or auto)"
            ))),
        }
    }
}

/// The BAR upload memory type: the `Upload` type when it is `DEVICE_LOCAL|HOST_VISIBLE`
/// (on a discrete GPU [`select_memory_type`] picks it only for a large BAR, never for a
/// small window; on unified devices all memory is host memory anyway).
pub(crate) fn bar_upload_type(table: &MemoryTable, upload: Option<u32>) -> Option<u32> {
    let t = upload?;
    let flags = table.types.get(t as usize)?.flags;
    flags
        .contains(vk::MemoryPropertyFlags::DEVICE_LOCAL | vk::MemoryPropertyFlags::HOST_VISIBLE)
        .then_some(t)
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

/// A Vulkan device opened by VUMA.
///
/// Every operation records one or more command buffers, submits them, and waits for them
/// before returning, so operations are ordered and buffers may be dropped at any time.
pub struct VulkanDevice {
    shared: Arc<Shared>,
    info: DeviceInfo,
    table: MemoryTable,
    /// Memory type per purpose (index by `purpose_index`).
    types: [Option<u32>; 4],
    limits: Limits,
    families: Vec<u32>,
    ring_slot_size: u64,
    ring_slots: usize,
    copy_threads: usize,
    /// Staged copies write with non-temporal stores (`VUMA_VK_STREAM_COPY=0` turns it off).
    stream_copies: bool,
    /// Persistent memcpy threads, started on the first large host copy.
    pool: OnceLock<CopyPool>,
    /// `VK_EXT_external_memory_host` and `minImportedHostPointerAlignment`, when enabled.
    emh: Option<(ext::external_memory_host::Device, u64)>,
    /// Import the page-aligned middle of host slices of at least this many bytes instead
    /// of staging them (`u64::MAX`: never; `VUMA_VK_IMPORT_MIN_MIB`).
    import_min: u64,
    /// The [`H2dStrategy`] of device-local writes (`VUMA_VK_H2D`), as `H2dStrategy::to_u8`.
    h2d: AtomicU8,
    /// The memory type of the BAR upload ring, when the device has one.
    bar_type: Option<u32>,
    /// Bytes written into device-local buffers through the BAR ring so far.
    bar_bytes: AtomicU64,
    ctx: ManuallyDrop<Mutex<Ctx>>,
}

impl std::fmt::Debug for VulkanDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VulkanDevice")
            .field("id", &self.info.id)
            .field("name", &self.info.name)
            .field("kind", &self.info.kind)
            .field("validation", &self.shared.instance.validation)
            .finish_non_exhaustive()
    }
}

fn purpose_index(p: MemoryPurpose) -> usize {
    match p {
        MemoryPurpose::DeviceLocal => 0,
        MemoryPurpose::Upload => 1,
        MemoryPurpose::Readback => 2,
        MemoryPurpose::HostMapped => 3,
    }
}

fn purpose_of(p: Placement) -> MemoryPurpose {
    match p {
        Placement::DeviceLocal => MemoryPurpose::DeviceLocal,
        Placement::HostMapped => MemoryPurpose::HostMapped,
        // Staging is read and written by the CPU: it must never be BAR memory.
        _ => MemoryPurpose::Readback,
    }
}

fn queue_flags_str(f: vk::QueueFlags) -> String {
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

fn has_ext(exts: &[vk::ExtensionProperties], name: &CStr) -> bool {
    exts.iter()
        .any(|e| e.extension_name_as_c_str().is_ok_and(|n| n == name))
}

fn version_str(v: u32) -> String {
    format!(
        "{}.{}.{}",
        vk::api_version_major(v),
        vk::api_version_minor(v),
        vk::api_version_patch(v)
    )
}

/// Reads a positive integer tuning knob from the environment.
fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|&v| v > 0)
}

/// Cuts a transfer of `total` bytes into chunks of `slot` bytes, the last one shorter.
fn flat_plan(total: usize, slot: usize) -> Vec<usize> {
    let slot = slot.max(1);
    let mut plan = vec![slot; total / slot];
    if !total.is_multiple_of(slot) {
        plan.push(total % slot);
    }
    plan
}

/// Cuts a transfer of `total` bytes into chunks of at most `slot` bytes. Long transfers
/// start and end with short chunks (slot/8, slot/4, slot/2): the first chunk's host copy
/// (uploads) and the last chunk's host copy (downloads) cannot overlap any DMA, so they
/// are kept small.
fn chunk_plan(total: usize, slot: usize) -> Vec<usize> {
    let slot = slot.max(1);
    let mut head = Vec::new();
    let mut left = total;
    let mut c = (slot / 8).max(1);
    while c < slot && left > 2 * c + slot {
        head.push(c);
        left -= 2 * c;
        c *= 2;
    }
    let mut plan = head.clone();
    while left > 0 {
        let n = left.min(slot);
        plan.push(n);
        left -= n;
    }
    plan.extend(head.iter().rev());
    plan
}

impl VulkanDevice {
    /// Opens physical device `index` (in the driver's order) with default options.
    pub fn open(index: usize) -> Result<Self> {
        Self::open_with(index, &VulkanOptions::default())
    }

    /// Opens physical device `index` with `options`.
    pub fn open_with(index: usize, options: &VulkanOptions) -> Result<Self> {
        let instance = Instance::new(options)?;
        // SAFETY: the instance is valid for the call.
        let phys = unsafe { instance.instance.enumerate_physical_devices() }
            .map_err(|e| vk_err("vkEnumeratePhysicalDevices", e))?;
        let Some(&pd) = phys.get(index) else {
            return Err(Error::Unavailable {
                backend: Backend::Vulkan,
                reason: format!("no Vulkan physical device {index} ({} present)", phys.len()),
            });
        };
        Self::create(instance, pd, index as u32)
    }

    /// Test support: makes one call that the validation layer reports (a sampler with
    /// anisotropy enabled while the device feature is off; drivers accept it), so a test can
    /// prove that validation errors are counted. Launches and copies cannot make one any
    /// more: they are checked before they reach the driver.
    #[doc(hidden)]
    pub fn plant_validation_error(&self) -> Result<()> {
        let dev = &self.shared.device;
        let info = vk::SamplerCreateInfo::default()
            .anisotropy_enable(true)
            .max_anisotropy(2.0);
        // SAFETY: a valid create info on this device; the sampler is destroyed at once and
        // used by nothing.
        let sampler = unsafe { dev.create_sampler(&info, None) }.map_err(|e| Error::Backend {
            backend: Backend::Vulkan,
            op: "vkCreateSampler",
            message: format!("{e:?}"),
            transient: false,
        })?;
        // SAFETY: created above, unused.
        unsafe { dev.destroy_sampler(sampler, None) };
        Ok(())
    }

    /// Whether the validation layer is active on this device's instance.
    pub fn validation_active(&self) -> bool {
        self.shared.instance.validation
    }

    /// Why validation is off although it was requested (layer not installed), if so.
    pub fn validation_note(&self) -> Option<&str> {
        self.shared.instance.validation_note.as_deref()
    }

    /// Validation errors reported so far by `VK_LAYER_KHRONOS_validation` (0 when the layer
    /// is not active).
    pub fn validation_errors(&self) -> u64 {
        self.shared.instance.counts.errors.load(Ordering::Relaxed)
    }

    /// Validation warnings reported so far.
    pub fn validation_warnings(&self) -> u64 {
        self.shared.instance.counts.warnings.load(Ordering::Relaxed)
    }

    /// The first validation error messages (up to 16).
    pub fn validation_messages(&self) -> Vec<String> {
        self.shared
            .instance
            .counts
            .first_errors
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default()
    }

    /// The device's memory table.
    pub fn memory_table(&self) -> &MemoryTable {
        &self.table
    }

    /// The memory type VUMA uses for `purpose`, if any fits.
    pub fn memory_type_for(&self, purpose: MemoryPurpose) -> Option<u32> {
        self.types[purpose_index(purpose)]
    }

    /// Whether copies run on a dedicated transfer queue family.
    pub fn has_dedicated_transfer_queue(&self) -> bool {
        self.lock().transfer.is_some()
    }

    /// The largest range one storage-buffer binding may cover (`maxStorageBufferRange`).
    pub fn max_storage_buffer_range(&self) -> u64 {
        self.limits.max_storage_range
    }

    /// The alignment of storage-buffer binding offsets (`minStorageBufferOffsetAlignment`).
    pub fn storage_offset_alignment(&self) -> u64 {
        self.limits.min_storage_offset_align
    }

    /// `maxComputeWorkGroupCount`.
    pub fn max_workgroup_count(&self) -> [u32; 3] {
        self.limits.max_group_count
    }

    /// How [`Device::write`] moves host bytes into device-local buffers (from `VUMA_VK_H2D`
    /// at open, else [`H2dStrategy::Staging`]).
    pub fn h2d_strategy(&self) -> H2dStrategy {
        H2dStrategy::from_u8(self.h2d.load(Ordering::Relaxed))
    }

    /// Chooses how [`Device::write`] moves host bytes into device-local buffers from now on
    /// (overrides `VUMA_VK_H2D`; tests and benchmarks use it instead of the environment).
    /// It also forgets an earlier failure to allocate the BAR ring, so the next BAR write
    /// tries again.
    pub fn set_h2d_strategy(&self, strategy: H2dStrategy) {
        let mut ctx = self.lock();
        self.h2d.store(strategy.to_u8(), Ordering::Relaxed);
        ctx.bar_failed = None;
    }

    /// The memory type of the BAR upload ring (`DEVICE_LOCAL|HOST_VISIBLE`), if the device
    /// has one that VUMA may use for uploads: a large BAR on a discrete GPU, any host-visible
    /// device-local type on integrated and CPU devices (lavapipe). `None`: BAR writes fall
    /// back to staging.
    pub fn bar_upload_type(&self) -> Option<u32> {
        self.bar_type
    }

    /// Whether a device-local write of `len` bytes would go through the BAR ring under the
    /// current strategy (before any fallback when the ring cannot be allocated).
    pub fn h2d_uses_bar(&self, len: u64) -> bool {
        self.h2d_strategy().uses_bar(
            len,
            self.bar_type.is_some(),
            self.info.kind == DeviceKind::Discrete,
            self.table.has_large_bar(),
        )
    }

    /// Bytes written into device-local buffers through the BAR ring since the device was
    /// opened (tests and benchmarks check that the BAR path really ran).
    pub fn bar_bytes_written(&self) -> u64 {
        self.bar_bytes.load(Ordering::Relaxed)
    }

    /// The persistent copy threads (started on first use).
    fn pool(&self) -> &CopyPool {
        self.pool.get_or_init(|| CopyPool::new(self.copy_threads))
    }

    fn lock(&self) -> MutexGuard<'_, Ctx> {
        self.ctx.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn create(instance: Arc<Instance>, pd: vk::PhysicalDevice, ordinal: u32) -> Result<Self> {
        let inst = &instance.instance;
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
        // SAFETY: as above.
        let exts = unsafe { inst.enumerate_device_extension_properties(pd) }
            .map_err(|e| vk_err("vkEnumerateDeviceExtensionProperties", e))?;
        let has_budget = has_ext(&exts, ext::memory_budget::NAME);
        let has_emh = has_ext(&exts, ext::external_memory_host::NAME);
        let mut emh_props = vk::PhysicalDeviceExternalMemoryHostPropertiesEXT::default();
        if has_emh {
            let mut p2 = vk::PhysicalDeviceProperties2::default().push_next(&mut emh_props);
            // SAFETY: as above; the structure is chained only when the extension exists.
            unsafe { inst.get_physical_device_properties2(pd, &mut p2) };
        }
        let import_align = emh_props.min_imported_host_pointer_alignment;
        // Compute units and the PCI address, from extensions that report them (each
        // structure is chained only when the physical device supports its extension;
        // property queries need no enabled extension). No Vulkan API reports the L2 size.
        let has_sm = has_ext(&exts, ash::nv::shader_sm_builtins::NAME);
        let has_amd_core = has_ext(&exts, ash::amd::shader_core_properties::NAME);
        let has_amd_core2 = has_ext(&exts, ash::amd::shader_core_properties2::NAME);
        let has_pci = has_ext(&exts, ext::pci_bus_info::NAME);
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
            // SAFETY: as above; every chained structure's extension is supported by `pd`.
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
                pci_props.pci_domain,
                pci_props.pci_bus,
                pci_props.pci_device,
                pci_props.pci_function
            )
        });
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

        let prio = [1.0f32];
        let mut qcis = vec![vk::DeviceQueueCreateInfo::default()
            .queue_family_index(compute_family as u32)
            .queue_priorities(&prio)];
        if let Some(t) = transfer_family {
            qcis.push(
                vk::DeviceQueueCreateInfo::default()
                    .queue_family_index(t as u32)
                    .queue_priorities(&prio),
            );
        }
        let mut dev_exts = Vec::new();
        if has_budget {
            dev_exts.push(ext::memory_budget::NAME.as_ptr());
        }
        if has_emh {
            dev_exts.push(ext::external_memory_host::NAME.as_ptr());
        }
        let enabled =
            vk::PhysicalDeviceFeatures::default().shader_int64(features.shader_int64 == vk::TRUE);
        let mut f12 = vk::PhysicalDeviceVulkan12Features::default().timeline_semaphore(true);
        let dci = vk::DeviceCreateInfo::default()
            .queue_create_infos(&qcis)
            .enabled_extension_names(&dev_exts)
            .enabled_features(&enabled)
            .push_next(&mut f12);
        // SAFETY: every pointer in `dci` refers to locals alive for the call; the queue
        // families and extensions were checked above; timelineSemaphore is mandatory in 1.2.
        let device = unsafe { inst.create_device(pd, &dci, None) }
            .map_err(|e| vk_err("vkCreateDevice", e))?;

        // Memory table and budget.
        let mut budget = vk::PhysicalDeviceMemoryBudgetPropertiesEXT::default();
        let mut mp2 = vk::PhysicalDeviceMemoryProperties2::default();
        if has_budget {
            mp2 = mp2.push_next(&mut budget);
        }
        // SAFETY: `pd` is valid; the budget structure is chained only when the extension is
        // supported (and enabled on the device).
        unsafe { inst.get_physical_device_memory_properties2(pd, &mut mp2) };
        let mem_props = mp2.memory_properties;
        let table = MemoryTable::from_vk(&mem_props);
        let kind = match props.device_type {
            vk::PhysicalDeviceType::INTEGRATED_GPU => DeviceKind::Integrated,
            vk::PhysicalDeviceType::DISCRETE_GPU => DeviceKind::Discrete,
            vk::PhysicalDeviceType::CPU => DeviceKind::Cpu,
            _ => DeviceKind::Virtual,
        };
        let unified = matches!(kind, DeviceKind::Integrated | DeviceKind::Cpu);
        let types = [
            MemoryPurpose::DeviceLocal,
            MemoryPurpose::Upload,
            MemoryPurpose::Readback,
            MemoryPurpose::HostMapped,
        ]
        .map(|p| select_memory_type(&table, p, unified, u32::MAX));
        let bar_type = bar_upload_type(&table, types[purpose_index(MemoryPurpose::Upload)]);
        let h2d = match std::env::var("VUMA_VK_H2D") {
            Ok(v) => v.parse::<H2dStrategy>().unwrap_or_else(|e| {
                tracing::warn!("{e}; using staging");
                H2dStrategy::Staging
            }),
            Err(_) => H2dStrategy::Staging,
        };
        // The host link: PCIe generation and width of a discrete GPU from sysfs, at the
        // PCI address VK_EXT_pci_bus_info reports (no link for unified devices).
        let pcie = match (&pci_bdf, kind) {
            (Some(bdf), DeviceKind::Discrete) => sysfs_pcie_link(bdf),
            _ => None,
        };
        let host_link = pcie.as_ref().map(|&(g, w, _)| LinkInfo::from_pcie(g, w));

        let name = props
            .device_name_as_c_str()
            .map(|c| c.to_string_lossy().into_owned())
            .unwrap_or_else(|_| format!("vulkan device {ordinal}"));
        let heaps: Vec<MemoryHeap> = table
            .heaps
            .iter()
            .enumerate()
            .map(|(i, h)| MemoryHeap {
                size: h.size,
                budget: has_budget.then(|| budget.heap_budget[i]),
                device_local: h.flags.contains(vk::MemoryHeapFlags::DEVICE_LOCAL),
                host_visible: table.types.iter().any(|t| {
                    t.heap as usize == i && t.flags.contains(vk::MemoryPropertyFlags::HOST_VISIBLE)
                }),
            })
            .collect();
        let memory_total: u64 = heaps
            .iter()
            .filter(|h| h.device_local)
            .map(|h| h.size)
            .sum();
        let memory_budget: u64 = heaps
            .iter()
            .filter(|h| h.device_local)
            .map(|h| h.budget.unwrap_or(h.size))
            .sum();
        let largest_dl_heap = heaps
            .iter()
            .filter(|h| h.device_local)
            .map(|h| h.size)
            .max()
            .unwrap_or(0);
        let max_allocation = m3_props.max_memory_allocation_size.min(largest_dl_heap);
        let driver_name = drv_props
            .driver_name_as_c_str()
            .map(|c| c.to_string_lossy().into_owned())
            .unwrap_or_default();
        let driver_info = drv_props
            .driver_info_as_c_str()
            .map(|c| c.to_string_lossy().into_owned())
            .unwrap_or_default();
        let l = &props.limits;
        let limits = Limits {
            max_storage_range: u64::from(l.max_storage_buffer_range),
            min_storage_offset_align: l.min_storage_buffer_offset_alignment.max(1),
            max_group_count: l.max_compute_work_group_count,
            max_push_constants: l.max_push_constants_size,
            max_storage_per_stage: l.max_per_stage_descriptor_storage_buffers,
            max_allocation: m3_props.max_memory_allocation_size,
        };
        let qf_desc: Vec<String> = families
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
        let type_desc: Vec<String> = table
            .types
            .iter()
            .enumerate()
            .map(|(i, t)| format!("{i}:heap{} {:?}", t.heap, t.flags))
            .collect();
        let id = DeviceId::fresh();
        let mut extra = vec![
            ("vulkan.api".into(), version_str(props.api_version)),
            ("vulkan.queue_families".into(), qf_desc.join(", ")),
            (
                "vulkan.queues_used".into(),
                format!(
                    "compute qf{compute_family}, transfer {}",
                    transfer_family
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
            ("vulkan.large_bar".into(), table.has_large_bar().to_string()),
            (
                "vulkan.h2d".into(),
                format!(
                    "{h2d} (BAR upload type {})",
                    bar_type.map_or("none".into(), |t| t.to_string())
                ),
            ),
            ("vulkan.memory_budget_ext".into(), has_budget.to_string()),
            ("vulkan.external_memory_host".into(), has_emh.to_string()),
            ("vulkan.validation".into(), instance.validation.to_string()),
            (
                "vulkan.l2_bytes".into(),
                "unknown (no Vulkan API reports it)".into(),
            ),
        ];
        if let Some(bdf) = &pci_bdf {
            extra.push(("vulkan.pci_bus_id".into(), bdf.clone()));
        }
        if let Some((g, w, current)) = &pcie {
            extra.push(("vulkan.pcie_max".into(), format!("gen{g} x{w}")));
            extra.push(("vulkan.pcie_current".into(), current.clone()));
        }
        if has_sm {
            extra.push((
                "vulkan.sm_count".into(),
                format!(
                    "{} ({} warps per SM)",
                    sm_props.shader_sm_count, sm_props.shader_warps_per_sm
                ),
            ));
        }
        let info = DeviceInfo {
            id,
            backend: Backend::Vulkan,
            kind,
            name,
            ordinal,
            uuid: Some(id_props.device_uuid),
            memory_total,
            memory_budget,
            max_allocation,
            l2_bytes: 0,
            compute_units,
            host_link,
            can_map_host_memory: types[3].is_some(),
            unified_memory: unified,
            copy_engines: transfer_family.map_or(0, |t| families[t].queue_count),
            compute_capability: None,
            heaps,
            driver: format!("{driver_name} {driver_info}").trim().to_string(),
            extra,
        };

        let alloc_desc = AllocatorCreateDesc {
            instance: instance.instance.clone(),
            device: device.clone(),
            physical_device: pd,
            debug_settings: AllocatorDebugSettings::default(),
            buffer_device_address: false,
            allocation_sizes: AllocationSizes::default(),
        };
        let allocator = match Allocator::new(&alloc_desc) {
            Ok(a) => a,
            Err(e) => {
                // SAFETY: nothing was created from the device yet.
                unsafe { device.destroy_device(None) };
                return Err(Error::Backend {
                    backend: Backend::Vulkan,
                    op: "gpu_allocator::Allocator::new",
                    message: e.to_string(),
                    transient: false,
                });
            }
        };
        let mut shared = Arc::new(Shared {
            instance,
            device,
            allocator: ManuallyDrop::new(Mutex::new(allocator)),
            id,
            deferred: Mutex::new(None),
            side: vk::Semaphore::null(),
            side_value: AtomicU64::new(0),
        });
        if let Some(sh) = Arc::get_mut(&mut shared) {
            let mut tci =
                vk::SemaphoreTypeCreateInfo::default().semaphore_type(vk::SemaphoreType::TIMELINE);
            let sci = vk::SemaphoreCreateInfo::default().push_next(&mut tci);
            // SAFETY: valid device; timelineSemaphore was enabled. Destroyed in
            // `Shared::drop` (a failure below drops `shared`, which destroys it).
            sh.side = unsafe { sh.device.create_semaphore(&sci, None) }
                .map_err(|e| vk_err("vkCreateSemaphore", e))?;
        }
        let dev = &shared.device;
        let make_queue = |family: u32| -> Result<QueueCtx> {
            // SAFETY: queue 0 of `family` was requested at device creation.
            let queue = unsafe { dev.get_device_queue(family, 0) };
            let pci = vk::CommandPoolCreateInfo::default()
                .queue_family_index(family)
                .flags(vk::CommandPoolCreateFlags::RESET_COMMAND_BUFFER);
            // SAFETY: valid device and create info.
            let pool = unsafe { dev.create_command_pool(&pci, None) }
                .map_err(|e| vk_err("vkCreateCommandPool", e))?;
            let cai = vk::CommandBufferAllocateInfo::default()
                .command_pool(pool)
                .level(vk::CommandBufferLevel::PRIMARY)
                .command_buffer_count(1);
            // SAFETY: `pool` was just created from `dev`.
            let cmd = match unsafe { dev.allocate_command_buffers(&cai) } {
                Ok(v) => v[0],
                Err(e) => {
                    // SAFETY: `pool` is unused.
                    unsafe { dev.destroy_command_pool(pool, None) };
                    return Err(vk_err("vkAllocateCommandBuffers", e));
                }
            };
            Ok(QueueCtx {
                family,
                queue,
                pool,
                cmd,
            })
        };
        let compute = make_queue(compute_family as u32)?;
        let transfer = match transfer_family {
            Some(t) => match make_queue(t as u32) {
                Ok(q) => Some(q),
                Err(e) => {
                    // SAFETY: the pool is unused.
                    unsafe { dev.destroy_command_pool(compute.pool, None) };
                    return Err(e);
                }
            },
            None => None,
        };
        let mut tci =
            vk::SemaphoreTypeCreateInfo::default().semaphore_type(vk::SemaphoreType::TIMELINE);
        let sci = vk::SemaphoreCreateInfo::default().push_next(&mut tci);
        // SAFETY: valid device; timelineSemaphore was enabled.
        let timeline = match unsafe { dev.create_semaphore(&sci, None) } {
            Ok(s) => s,
            Err(e) => {
                // SAFETY: the pools are unused.
                unsafe {
                    dev.destroy_command_pool(compute.pool, None);
                    if let Some(t) = &transfer {
                        dev.destroy_command_pool(t.pool, None);
                    }
                }
                return Err(vk_err("vkCreateSemaphore", e));
            }
        };
        let mut fams = vec![compute.family];
        if let Some(t) = &transfer {
            fams.push(t.family);
        }
        let discrete = !unified;
        let copy_threads = env_u64("VUMA_VK_COPY_THREADS").map_or_else(
            || {
                std::thread::available_parallelism()
                    .map_or(1, |n| n.get())
                    .min(16)
            },
            |n| n.clamp(1, 64) as usize,
        );
        let emh = (has_emh && import_align.is_power_of_two()).then(|| {
            (
                ext::external_memory_host::Device::new(&shared.instance.instance, &shared.device),
                import_align,
            )
        });
        let ring_slot_size = env_u64("VUMA_VK_STAGING_SLOT_MIB")
            .map(|m| m.min(1024) << 20)
            .unwrap_or(if discrete { 16 << 20 } else { 8 << 20 });
        let ring_slots = env_u64("VUMA_VK_STAGING_SLOTS")
            .map(|n| n.min(64) as usize)
            .unwrap_or(if discrete { 6 } else { 3 });
        let import_min = env_u64("VUMA_VK_IMPORT_MIN_MIB").map_or(u64::MAX, |m| m << 20);
        Ok(VulkanDevice {
            info,
            table,
            types,
            limits,
            families: fams,
            ring_slot_size,
            ring_slots: ring_slots.max(2),
            copy_threads,
            pool: OnceLock::new(),
            stream_copies: std::env::var("VUMA_VK_STREAM_COPY").map_or(true, |v| v != "0"),
            emh,
            import_min,
            h2d: AtomicU8::new(h2d.to_u8()),
            bar_type,
            bar_bytes: AtomicU64::new(0),
            ctx: ManuallyDrop::new(Mutex::new(Ctx {
                compute,
                transfer,
                timeline,
                value: 0,
                last_queue: vk::Queue::null(),
                ring: Vec::new(),
                bar_ring: Vec::new(),
                bar_failed: None,
                pipelines: Pipelines::default(),
                side_cmds: Vec::new(),
                hung: None,
                pending_side: 0,
            })),
            shared,
        })
    }

    /// Creates a buffer of `size` bytes in memory type `type_index`.
    fn create_buffer(
        &self,
        size: u64,
        type_index: u32,
        placement: Placement,
        exclusive_family: Option<u32>,
    ) -> Result<VulkanBuffer> {
        let dev = &self.shared.device;
        let heap = self.table.types[type_index as usize].heap;
        let max = self
            .limits
            .max_allocation
            .min(self.table.heaps.get(heap as usize).map_or(0, |h| h.size));
        if size > max {
            return Err(Error::TooLarge {
                device: self.info.name.clone(),
                requested: size,
                max,
            });
        }
        let usage = vk::BufferUsageFlags::STORAGE_BUFFER
            | vk::BufferUsageFlags::TRANSFER_SRC
            | vk::BufferUsageFlags::TRANSFER_DST;
        let mut bci = vk::BufferCreateInfo::default().size(size).usage(usage);
        let fams_one;
        if let Some(f) = exclusive_family {
            fams_one = [f];
            bci = bci
                .sharing_mode(vk::SharingMode::EXCLUSIVE)
                .queue_family_indices(&fams_one);
        } else if self.families.len() > 1 {
            bci = bci
                .sharing_mode(vk::SharingMode::CONCURRENT)
                .queue_family_indices(&self.families);
        }
        // SAFETY: valid device and create info (size checked non-zero and bounded).
        let raw = unsafe { dev.create_buffer(&bci, None) }.map_err(|e| match e {
            vk::Result::ERROR_OUT_OF_DEVICE_MEMORY | vk::Result::ERROR_OUT_OF_HOST_MEMORY => {
                Error::OutOfMemory {
                    device: self.info.name.clone(),
                    requested: size,
                }
            }
            e => vk_err("vkCreateBuffer", e),
        })?;
        // SAFETY: `raw` was just created from `dev`.
        let mut req = unsafe { dev.get_buffer_memory_requirements(raw) };
        if req.memory_type_bits & (1 << type_index) == 0 {
            // SAFETY: `raw` is unused.
            unsafe { dev.destroy_buffer(raw, None) };
            return Err(Error::UnsupportedPlacement {
                device: self.info.name.clone(),
                placement,
            });
        }
        // Force the chosen type: gpu-allocator picks among the allowed bits.
        req.memory_type_bits = 1 << type_index;
        let flags = self.table.types[type_index as usize].flags;
        let location = if flags.contains(vk::MemoryPropertyFlags::DEVICE_LOCAL)
            && !flags.contains(vk::MemoryPropertyFlags::HOST_VISIBLE)
        {
            MemoryLocation::GpuOnly
        } else {
            MemoryLocation::Unknown
        };
        let scheme = if size >= (64 << 20) {
            AllocationScheme::DedicatedBuffer(raw)
        } else {
            AllocationScheme::GpuAllocatorManaged
        };
        let alloc = self.shared.allocator().allocate(&AllocationCreateDesc {
            name: "vuma buffer",
            requirements: req,
            location,
            linear: true,
            allocation_scheme: scheme,
        });
        let alloc = match alloc {
            Ok(a) => a,
            Err(e) => {
                // SAFETY: `raw` is unused.
                unsafe { dev.destroy_buffer(raw, None) };
                return Err(match e {
                    gpu_allocator::AllocationError::OutOfMemory => Error::OutOfMemory {
                        device: self.info.name.clone(),
                        requested: size,
                    },
                    e => Error::Backend {
                        backend: Backend::Vulkan,
                        op: "gpu_allocator::allocate",
                        message: e.to_string(),
                        transient: false,
                    },
                });
            }
        };
        // SAFETY: the memory comes from the allocator for this device, the range
        // `offset..offset+size` satisfies the buffer's requirements, and `raw` is unbound.
        if let Err(e) = unsafe { dev.bind_buffer_memory(raw, alloc.memory(), alloc.offset()) } {
            self.shared.destroy_buffer(raw, Some(alloc));
            return Err(vk_err("vkBindBufferMemory", e));
        }
        let mapped = alloc.mapped_ptr().map(|p| MappedPtr(p.cast()));
        if flags.contains(vk::MemoryPropertyFlags::HOST_VISIBLE) && mapped.is_none() {
            self.shared.destroy_buffer(raw, Some(alloc));
            return Err(Error::Backend {
                backend: Backend::Vulkan,
                op: "vkMapMemory",
                message: "host-visible allocation is not mapped".into(),
                transient: false,
            });
        }
        Ok(VulkanBuffer {
            shared: self.shared.clone(),
            raw,
            alloc: Some(alloc),
            mapped,
            len: size,
            placement,
            memory_type: type_index,
        })
    }

    fn check_owner(&self, b: &VulkanBuffer) -> Result<()> {
        if b.shared.id != self.shared.id {
            return Err(Error::WrongDevice {
                expected: self.info.name.clone(),
                found: b.shared.id.to_string(),
            });
        }
        Ok(())
    }

    /// The host view of a mapped buffer's bytes.
    ///
    /// # Safety
    /// `_locked` is the device's locked context (so no other host access runs); no GPU work
    /// touching the buffer may be pending while the slice lives.
    unsafe fn mapped_slice<'a>(b: &VulkanBuffer, _locked: &'a mut Ctx) -> Option<&'a mut [u8]> {
        b.mapped.map(|p| {
            // SAFETY: the mapping covers the whole allocation (at least `len` bytes) for
            // the buffer's life; exclusivity is the caller's contract.
            unsafe { std::slice::from_raw_parts_mut(p.0.as_ptr(), b.len as usize) }
        })
    }
}

// ---- submission ---------------------------------------------------------------------------

impl Ctx {
    fn transfer_queue(&self) -> &QueueCtx {
        self.transfer.as_ref().unwrap_or(&self.compute)
    }

    /// The BAR ring (`bar`) or the staging ring.
    fn slots(&mut self, bar: bool) -> &mut Vec<Slot> {
        if bar {
            &mut self.bar_ring
        } else {
            &mut self.ring
        }
    }

    /// Waits until the timeline reaches `value`.
    fn wait(&mut self, dev: &ash::Device, value: u64) -> Result<()> {
        if let Some(why) = &self.hung {
            return Err(Error::DeviceLost {
                device: "vulkan device".into(),
                reason: why.clone(),
            });
        }
        if value == 0 {
            return Ok(());
        }
        let sems = [self.timeline];
        let vals = [value];
        let wi = vk::SemaphoreWaitInfo::default()
            .semaphores(&sems)
            .values(&vals);
        // SAFETY: the semaphore belongs to `dev`.
        let r = unsafe { dev.wait_semaphores(&wi, WAIT_TIMEOUT_NS) };
        r.map_err(|e| {
            let err = vk_err("vkWaitSemaphores", e);
            self.hung = Some(err.to_string());
            err
        })
    }
}

/// Starts recording `cmd` with a leading full memory barrier (orders it after everything
/// submitted before, on either queue, together with the timeline wait).
fn begin(dev: &ash::Device, cmd: vk::CommandBuffer) -> Result<()> {
    let bi =
        vk::CommandBufferBeginInfo::default().flags(vk::CommandBufferUsageFlags::ONE_TIME_SUBMIT);
    // SAFETY: `cmd` is not pending (its previous submission was waited for) and its pool
    // allows resetting individual buffers.
    unsafe { dev.begin_command_buffer(cmd, &bi) }.map_err(|e| vk_err("vkBeginCommandBuffer", e))?;
    let mb = vk::MemoryBarrier::default()
        .src_access_mask(vk::AccessFlags::MEMORY_WRITE)
        .dst_access_mask(vk::AccessFlags::MEMORY_READ | vk::AccessFlags::MEMORY_WRITE);
    // SAFETY: `cmd` is recording.
    unsafe {
        dev.cmd_pipeline_barrier(
            cmd,
            vk::PipelineStageFlags::ALL_COMMANDS,
            vk::PipelineStageFlags::ALL_COMMANDS,
            vk::DependencyFlags::empty(),
            &[mb],
            &[],
            &[],
        )
    };
    Ok(())
}

/// Ends the recording `cmd` with a barrier that makes every device write visible to the
/// host.
fn end_with_host_barrier(dev: &ash::Device, cmd: vk::CommandBuffer) -> Result<()> {
    let mb = vk::MemoryBarrier::default()
        .src_access_mask(vk::AccessFlags::MEMORY_WRITE)
        .dst_access_mask(vk::AccessFlags::HOST_READ | vk::AccessFlags::HOST_WRITE);
    // SAFETY: `cmd` is recording (caller's contract; a wrong state is a Vulkan error the
    // validation layer reports, not memory unsafety on our side).
    unsafe {
        dev.cmd_pipeline_barrier(
            cmd,
            vk::PipelineStageFlags::ALL_COMMANDS,
            vk::PipelineStageFlags::HOST,
            vk::DependencyFlags::empty(),
            &[mb],
            &[],
            &[],
        );
        dev.end_command_buffer(cmd)
    }
    .map_err(|e| vk_err("vkEndCommandBuffer", e))
}

/// Ends `cmd` with a barrier making device writes visible to the host, and submits it
/// on `queue`, chained on the timeline (waits `ctx.value`, signals `ctx.value + 1`).
/// Returns the value whose completion means `cmd` finished.
fn end_and_submit(
    dev: &ash::Device,
    side: vk::Semaphore,
    ctx: &mut Ctx,
    queue: vk::Queue,
    cmd: vk::CommandBuffer,
) -> Result<u64> {
    end_with_host_barrier(dev, cmd)?;
    let signal_v = [ctx.value + 1];
    let sems = [ctx.timeline];
    let cmds = [cmd];
    // On the queue of the previous submission, submission order and the leading full
    // barrier already order this one after it; a timeline wait would only add latency.
    // Concurrent copies waited for (`wait_for`) add a wait on the side timeline.
    let mut wait_s = Vec::with_capacity(2);
    let mut wait_v = Vec::with_capacity(2);
    if ctx.value > 0 && ctx.last_queue != queue {
        wait_s.push(ctx.timeline);
        wait_v.push(ctx.value);
    }
    if ctx.pending_side > 0 && side != vk::Semaphore::null() {
        wait_s.push(side);
        wait_v.push(ctx.pending_side);
    }
    let stages = vec![vk::PipelineStageFlags::ALL_COMMANDS; wait_s.len()];
    let mut ts = vk::TimelineSemaphoreSubmitInfo::default()
        .wait_semaphore_values(&wait_v)
        .signal_semaphore_values(&signal_v);
    let mut si = vk::SubmitInfo::default()
        .command_buffers(&cmds)
        .signal_semaphores(&sems);
    if !wait_s.is_empty() {
        si = si.wait_semaphores(&wait_s).wait_dst_stage_mask(&stages);
    }
    let si = si.push_next(&mut ts);
    // SAFETY: `cmd` is executable, `queue` belongs to the family of its pool, and the
    // semaphore values are strictly increasing.
    unsafe { dev.queue_submit(queue, &[si], vk::Fence::null()) }
        .map_err(|e| vk_err("vkQueueSubmit", e))?;
    ctx.value += 1;
    ctx.last_queue = queue;
    ctx.pending_side = 0;
    Ok(ctx.value)
}

impl VulkanDevice {
    /// Records `f` into the transfer (or compute) queue's command buffer, submits, waits.
    fn run_once(
        &self,
        ctx: &mut Ctx,
        on_compute: bool,
        f: impl FnOnce(&ash::Device, vk::CommandBuffer) -> Result<()>,
    ) -> Result<()> {
        let dev = &self.shared.device;
        if let Some(why) = &ctx.hung {
            // A submission may still be running: recording its command buffer again, or
            // reusing what it uses, would race it.
            return Err(Error::DeviceLost {
                device: self.info.name.clone(),
                reason: why.clone(),
            });
        }
        let (queue, cmd) = {
            let q = if on_compute {
                &ctx.compute
            } else {
                ctx.transfer_queue()
            };
            (q.queue, q.cmd)
        };
        begin(dev, cmd)?;
        if let Err(e) = f(dev, cmd) {
            // SAFETY: `cmd` is recording; ending it returns it to a resettable state.
            let _ = unsafe { dev.end_command_buffer(cmd) };
            return Err(e);
        }
        let v = end_and_submit(dev, self.shared.side, ctx, queue, cmd)?;
        ctx.wait(dev, v)
    }

    /// The page-aligned middle `[a, b)` of a host slice (`ptr`, `len` bytes) to import with
    /// `VK_EXT_external_memory_host`, when importing is enabled and the slice is long enough.
    fn import_range(&self, ptr: usize, len: usize) -> Option<(usize, usize)> {
        let (_, align) = self.emh.as_ref()?;
        if (len as u64) < self.import_min {
            return None;
        }
        let align = *align as usize;
        let a = ptr.next_multiple_of(align) - ptr;
        let b = (ptr + len) / align * align - ptr;
        (b > a).then_some((a, b))
    }

    /// Copies between `len` bytes of host memory at `host` (imported for the duration of
    /// the copy) and `dev_buf` at `dev_off`; `upload` gives the direction. Returns
    /// `Ok(false)` when the driver refuses the import (the caller stages instead).
    ///
    /// # Safety
    /// `host..host+len` must be valid for reads (upload) or writes (download) and not be
    /// accessed by anyone else until this returns; `host` and `len` must be multiples of
    /// the import alignment.
    unsafe fn imported_copy(
        &self,
        ctx: &mut Ctx,
        host: *mut u8,
        len: u64,
        dev_buf: &VulkanBuffer,
        dev_off: u64,
        upload: bool,
    ) -> Result<bool> {
        let Some((emh, _)) = &self.emh else {
            return Ok(false);
        };
        let dev = &self.shared.device;
        let ht = vk::ExternalMemoryHandleTypeFlags::HOST_ALLOCATION_EXT;
        let mut hp = vk::MemoryHostPointerPropertiesEXT::default();
        // SAFETY: the function pointer belongs to this device (the extension is enabled);
        // `host` is a valid host address and `hp` a valid out-structure.
        let r = unsafe {
            (emh.fp().get_memory_host_pointer_properties_ext)(
                dev.handle(),
                ht,
                host.cast_const().cast(),
                &mut hp,
            )
        };
        if r != vk::Result::SUCCESS || hp.memory_type_bits == 0 {
            return Ok(false);
        }
        let mut eci = vk::ExternalMemoryBufferCreateInfo::default().handle_types(ht);
        let mut bci = vk::BufferCreateInfo::default()
            .size(len)
            .usage(vk::BufferUsageFlags::TRANSFER_SRC | vk::BufferUsageFlags::TRANSFER_DST);
        if self.families.len() > 1 {
            bci = bci
                .sharing_mode(vk::SharingMode::CONCURRENT)
                .queue_family_indices(&self.families);
        }
        let bci = bci.push_next(&mut eci);
        // SAFETY: valid device and create info.
        let Ok(buf) = (unsafe { dev.create_buffer(&bci, None) }) else {
            return Ok(false);
        };
        // SAFETY: `buf` was just created from `dev`.
        let req = unsafe { dev.get_buffer_memory_requirements(buf) };
        let bits = req.memory_type_bits & hp.memory_type_bits;
        if bits == 0 {
            // SAFETY: `buf` is unused.
            unsafe { dev.destroy_buffer(buf, None) };
            return Ok(false);
        }
        let mut imp = vk::ImportMemoryHostPointerInfoEXT::default()
            .handle_type(ht)
            .host_pointer(host.cast());
        let ai = vk::MemoryAllocateInfo::default()
            .allocation_size(len)
            .memory_type_index(bits.trailing_zeros())
            .push_next(&mut imp);
        // SAFETY: `host` is aligned and `len` a multiple of the import alignment (caller's
        // contract); the memory type is one the driver allows for this pointer.
        let mem = match unsafe { dev.allocate_memory(&ai, None) } {
            Ok(m) => m,
            Err(_) => {
                // SAFETY: `buf` is unused.
                unsafe { dev.destroy_buffer(buf, None) };
                return Ok(false);
            }
        };
        // SAFETY: `mem` covers `len` bytes and `buf` is unbound.
        let r = match unsafe { dev.bind_buffer_memory(buf, mem, 0) } {
            Ok(()) => {
                let region = vk::BufferCopy {
                    src_offset: if upload { 0 } else { dev_off },
                    dst_offset: if upload { dev_off } else { 0 },
                    size: len,
                };
                let (from, to) = if upload {
                    (buf, dev_buf.raw)
                } else {
                    (dev_buf.raw, buf)
                };
                let r = self.run_once(ctx, false, |dev, cmd| {
                    // SAFETY: `cmd` is recording; both buffers are valid and the regions
                    // in bounds (checked by the caller).
                    unsafe { dev.cmd_copy_buffer(cmd, from, to, &[region]) };
                    Ok(())
                });
                if r.is_err() && ctx.wait(dev, ctx.value).is_err() {
                    // SAFETY: valid device; nothing may use `buf` when it is freed below.
                    let _ = unsafe { dev.device_wait_idle() };
                }
                r.map(|()| true)
            }
            Err(e) => Err(vk_err("vkBindBufferMemory", e)),
        };
        // SAFETY: the copy completed (or never ran); the buffer goes before its memory,
        // and the memory before the host pages are handed back to the caller.
        unsafe {
            dev.destroy_buffer(buf, None);
            dev.free_memory(mem, None);
        }
        r
    }

    /// Creates the staging ring on first use.
    fn ensure_ring(&self, ctx: &mut Ctx) -> Result<()> {
        if !ctx.ring.is_empty() {
            return Ok(());
        }
        let ty = self.types[purpose_index(MemoryPurpose::Readback)].ok_or_else(|| {
            Error::UnsupportedPlacement {
                device: self.info.name.clone(),
                placement: Placement::Staging,
            }
        })?;
        ctx.ring = self.make_slots(ctx, ty)?;
        Ok(())
    }

    /// Creates the BAR upload ring on first use. Its memory is `DEVICE_LOCAL|HOST_VISIBLE`
    /// (VRAM behind the BAR on a discrete GPU): the CPU only ever *writes* it, the transfer
    /// queue reads it. Fails with a typed error (no BAR type: `Error::Backend`; no room:
    /// `Error::OutOfMemory`, ...) that the caller answers by staging instead; a failure is
    /// remembered until the strategy is set again.
    fn ensure_bar_ring(&self, ctx: &mut Ctx) -> Result<()> {
        if !ctx.bar_ring.is_empty() {
            return Ok(());
        }
        if let Some(why) = &ctx.bar_failed {
            return Err(Error::Backend {
                backend: Backend::Vulkan,
                op: "BAR upload ring",
                message: format!("unavailable earlier: {why}"),
                transient: false,
            });
        }
        let r = match self.bar_type {
            Some(ty) => self.make_slots(ctx, ty),
            None => Err(Error::Backend {
                backend: Backend::Vulkan,
                op: "BAR upload ring",
                message: format!(
                    "{} has no DEVICE_LOCAL|HOST_VISIBLE memory type VUMA may write (no large BAR)",
                    self.info.name
                ),
                transient: false,
            }),
        };
        match r {
            Ok(slots) => {
                ctx.bar_ring = slots;
                Ok(())
            }
            Err(e) => {
                ctx.bar_failed = Some(e.to_string());
                Err(e)
            }
        }
    }

    /// Creates the ring's slots in memory type `ty`: mapped buffers of `ring_slot_size`
    /// bytes used by the transfer queue family only, each with its own command buffer. On
    /// failure, the slots made so far are destroyed.
    fn make_slots(&self, ctx: &Ctx, ty: u32) -> Result<Vec<Slot>> {
        let q = ctx.transfer_queue();
        let (pool, family) = (q.pool, q.family);
        let mut slots = Vec::with_capacity(self.ring_slots);
        for _ in 0..self.ring_slots {
            match self.make_slot(pool, family, ty) {
                Ok(slot) => slots.push(slot),
                Err(e) => {
                    self.destroy_slots(pool, slots);
                    return Err(e);
                }
            }
        }
        Ok(slots)
    }

    fn make_slot(&self, pool: vk::CommandPool, family: u32, ty: u32) -> Result<Slot> {
        let dev = &self.shared.device;
        let mut b =
            self.create_buffer(self.ring_slot_size, ty, Placement::Staging, Some(family))?;
        let ptr = b.mapped.ok_or_else(|| Error::Backend {
            backend: Backend::Vulkan,
            op: "vkMapMemory",
            message: "ring memory is not mapped".into(),
            transient: false,
        })?;
        let cai = vk::CommandBufferAllocateInfo::default()
            .command_pool(pool)
            .level(vk::CommandBufferLevel::PRIMARY)
            .command_buffer_count(1);
        // SAFETY: `pool` belongs to `dev`; we hold the device lock (pools are externally
        // synchronised).
        let cmd = unsafe { dev.allocate_command_buffers(&cai) }
            .map_err(|e| vk_err("vkAllocateCommandBuffers", e))?[0];
        // Take the buffer apart: the ring owns the handle and allocation from now on.
        let alloc = b.alloc.take();
        let buffer = b.raw;
        b.raw = vk::Buffer::null();
        drop(b);
        Ok(Slot {
            buffer,
            alloc,
            ptr,
            cmd,
            busy_until: 0,
        })
    }

    /// Destroys slots that no pending work uses (never submitted, or waited for).
    fn destroy_slots(&self, pool: vk::CommandPool, slots: Vec<Slot>) {
        let dev = &self.shared.device;
        for s in slots {
            // SAFETY: the command buffer came from `pool` and is not pending; the buffer
            // and its memory are unused (caller's contract).
            unsafe { dev.free_command_buffers(pool, &[s.cmd]) };
            self.shared.destroy_buffer(s.buffer, s.alloc);
        }
    }

    /// Host → device-local through a ring, pipelined: the CPU fills slot i+1 while the
    /// transfer queue copies slot i into `dst`.
    ///
    /// `bar: false` uses the staging ring (system memory; streaming stores unless
    /// `VUMA_VK_STREAM_COPY=0`). `bar: true` uses the BAR ring, which must exist
    /// ([`Self::ensure_bar_ring`]): the copy threads write each chunk into VRAM through the
    /// BAR with 64-byte aligned non-temporal stores (always: BAR memory is write-combined)
    /// and never read it, and the `vkCmdCopyBuffer` is a VRAM→VRAM copy.
    ///
    /// Synchronisation, the same for both rings: a slot is written by the host only after
    /// the timeline value of its previous copy has been waited for (the copy that read it
    /// finished: write-after-read); host writes before `vkQueueSubmit` are visible to the
    /// device without a barrier (every mapping is host-coherent and the stores are fenced);
    /// each submission opens with a full barrier after earlier work (write-after-write on
    /// `dst`) and closes with one to the host; the call waits for its last submission.
    fn staged_write(
        &self,
        ctx: &mut Ctx,
        dst: &VulkanBuffer,
        offset: u64,
        src: &[u8],
        bar: bool,
    ) -> Result<()> {
        if bar {
            if ctx.bar_ring.is_empty() {
                return Err(Error::Backend {
                    backend: Backend::Vulkan,
                    op: "BAR upload ring",
                    message: "not created".into(),
                    transient: false,
                });
            }
        } else {
            self.ensure_ring(ctx)?;
        }
        let dev = &self.shared.device;
        let slot_size = self.ring_slot_size as usize;
        let queue = ctx.transfer_queue().queue;
        let pool = self.pool();
        let stream = bar || self.stream_copies;
        let mut result = Ok(());
        let mut pos = 0usize;
        // The BAR ring needs no ramp: its VRAM→VRAM copies take microseconds, so nothing
        // waits for the first or the last chunk; full slots use every copy thread.
        let plan = if bar {
            flat_plan(src.len(), slot_size)
        } else {
            chunk_plan(src.len(), slot_size)
        };
        for (k, len) in plan.into_iter().enumerate() {
            let chunk = &src[pos..pos + len];
            let s = k % ctx.slots(bar).len();
            let busy = ctx.slots(bar)[s].busy_until;
            if let Err(e) = ctx.wait(dev, busy) {
                result = Err(e);
                break;
            }
            let slot = &ctx.slots(bar)[s];
            // SAFETY: the slot's mapping covers `slot_size >= len` bytes and its last copy
            // has completed (waited above); we hold the device lock. The slice is only
            // written (`CopyPool::copy` never reads its destination), which matters for
            // BAR memory: CPU reads of it crawl.
            let host = unsafe { std::slice::from_raw_parts_mut(slot.ptr.0.as_ptr(), len) };
            pool.copy(host, chunk, stream);
            let (buf, cmd) = (slot.buffer, slot.cmd);
            let region = vk::BufferCopy {
                src_offset: 0,
                dst_offset: offset + pos as u64,
                size: len as u64,
            };
            pos += len;
            let r = begin(dev, cmd).and_then(|()| {
                // SAFETY: `cmd` is recording; both buffers are valid and the region is in
                // bounds (checked by the caller).
                unsafe { dev.cmd_copy_buffer(cmd, buf, dst.raw, &[region]) };
                end_and_submit(dev, self.shared.side, ctx, queue, cmd)
            });
            match r {
                Ok(v) => ctx.slots(bar)[s].busy_until = v,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        let last = ctx.value;
        let w = ctx.wait(dev, last);
        // Slots are free only once their copies are known to be done.
        if w.is_ok() {
            for s in ctx.slots(bar) {
                s.busy_until = 0;
            }
        }
        let r = result.and(w);
        if bar && r.is_ok() {
            self.bar_bytes
                .fetch_add(src.len() as u64, Ordering::Relaxed);
        }
        r
    }

    /// Device-local → host through the staging ring, pipelined: the transfer queue copies
    /// chunk i+1 while the CPU drains chunk i.
    fn staged_read(
        &self,
        ctx: &mut Ctx,
        src: &VulkanBuffer,
        offset: u64,
        dst: &mut [u8],
    ) -> Result<()> {
        self.ensure_ring(ctx)?;
        let dev = &self.shared.device;
        let queue = ctx.transfer_queue().queue;
        let pool = self.pool();
        let plan = chunk_plan(dst.len(), self.ring_slot_size as usize);
        let starts: Vec<usize> = plan
            .iter()
            .scan(0usize, |p, &l| {
                let s = *p;
                *p += l;
                Some(s)
            })
            .collect();
        let n = plan.len();
        let slots = ctx.ring.len();
        let mut submitted = 0usize;
        let submit = |ctx: &mut Ctx, k: usize| -> Result<()> {
            let s = k % slots;
            let (buf, cmd) = (ctx.ring[s].buffer, ctx.ring[s].cmd);
            let region = vk::BufferCopy {
                src_offset: offset + starts[k] as u64,
                dst_offset: 0,
                size: plan[k] as u64,
            };
            begin(dev, cmd)?;
            // SAFETY: `cmd` is recording; the region is in bounds (checked by the caller)
            // and the slot is free (its previous chunk was drained).
            unsafe { dev.cmd_copy_buffer(cmd, src.raw, buf, &[region]) };
            let v = end_and_submit(dev, self.shared.side, ctx, queue, cmd)?;
            ctx.ring[s].busy_until = v;
            Ok(())
        };
        let mut result = Ok(());
        for k in 0..n {
            while submitted < n && submitted < k + slots {
                if let Err(e) = submit(ctx, submitted) {
                    result = Err(e);
                    break;
                }
                submitted += 1;
            }
            if result.is_err() {
                break;
            }
            let s = k % slots;
            if let Err(e) = ctx.wait(dev, ctx.ring[s].busy_until) {
                result = Err(e);
                break;
            }
            let (start, len) = (starts[k], plan[k]);
            // SAFETY: the copy into the slot completed (waited above) and made its writes
            // visible to the host (trailing barrier); we hold the device lock.
            let host = unsafe { std::slice::from_raw_parts(ctx.ring[s].ptr.0.as_ptr(), len) };
            pool.copy(&mut dst[start..start + len], host, self.stream_copies);
            ctx.ring[s].busy_until = 0;
        }
        let last = ctx.value;
        let w = ctx.wait(dev, last);
        if w.is_ok() {
            for s in &mut ctx.ring {
                s.busy_until = 0;
            }
        }
        result.and(w)
    }

    fn launch_spirv(
        &self,
        kernel: &Kernel,
        words: &Arc<[u32]>,
        entry: &str,
        config: &LaunchConfig,
        args: &[Arg<'_, VulkanBuffer>],
    ) -> Result<()> {
        let mut bindings = Vec::new();
        let mut push = Vec::new();
        for a in args {
            match *a {
                Arg::Buffer {
                    buffer,
                    offset,
                    len,
                    ..
                } => {
                    self.check_owner(buffer)?;
                    if offset % self.limits.min_storage_offset_align != 0 {
                        return Err(Error::invalid(format!(
                            "kernel `{}`: buffer argument {} offset {offset} is not a multiple of \
                             minStorageBufferOffsetAlignment ({})",
                            kernel.name(),
                            bindings.len(),
                            self.limits.min_storage_offset_align
                        )));
                    }
                    if len > self.limits.max_storage_range {
                        return Err(Error::TooLarge {
                            device: format!(
                                "{} (one storage-buffer binding, maxStorageBufferRange; split the range)",
                                self.info.name
                            ),
                            requested: len,
                            max: self.limits.max_storage_range,
                        });
                    }
                    bindings.push((buffer.raw, offset, len));
                }
                Arg::Scalar(s) => push.extend_from_slice(&s.to_le_bytes()),
            }
        }
        if bindings.len() as u32 > self.limits.max_storage_per_stage {
            return Err(Error::invalid(format!(
                "kernel `{}`: {} buffer arguments, the device allows {} storage buffers per stage",
                kernel.name(),
                bindings.len(),
                self.limits.max_storage_per_stage
            )));
        }
        if push.len() as u32 > self.limits.max_push_constants {
            return Err(Error::invalid(format!(
                "kernel `{}`: {} bytes of scalars exceed maxPushConstantsSize ({})",
                kernel.name(),
                push.len(),
                self.limits.max_push_constants
            )));
        }
        for (d, (&g, &m)) in config
            .grid
            .iter()
            .zip(self.limits.max_group_count.iter())
            .enumerate()
        {
            if g == 0 || g > m {
                return Err(Error::invalid(format!(
                    "kernel `{}`: grid[{d}] = {g} workgroups; the device allows 1..={m} \
                     (maxComputeWorkGroupCount); split the dispatch or use a 2-D grid",
                    kernel.name()
                )));
            }
        }
        crate::reflect::check(kernel.name(), words, bindings.len(), push.len())?;
        let key = PipelineKey::new(words, entry, bindings.len() as u32, push.len() as u32);
        let mut guard = self.lock();
        let ctx = &mut *guard;
        let dev = &self.shared.device;
        let pipe = ctx
            .pipelines
            .get_or_create(dev, &key, words, entry, kernel.name())?;
        let set = ctx
            .pipelines
            .descriptor_set(dev, pipe.set_layout, bindings.len() as u32)?;
        let infos: Vec<vk::DescriptorBufferInfo> = bindings
            .iter()
            .map(|&(buffer, offset, range)| vk::DescriptorBufferInfo {
                buffer,
                offset,
                range,
            })
            .collect();
        let writes: Vec<vk::WriteDescriptorSet<'_>> = infos
            .iter()
            .enumerate()
            .map(|(i, info)| {
                vk::WriteDescriptorSet::default()
                    .dst_set(set)
                    .dst_binding(i as u32)
                    .descriptor_type(vk::DescriptorType::STORAGE_BUFFER)
                    .buffer_info(std::slice::from_ref(info))
            })
            .collect();
        // SAFETY: the set was allocated from this device's pool and is not in use (the last
        // launch completed); every buffer is valid and its range in bounds.
        unsafe { dev.update_descriptor_sets(&writes, &[]) };
        let grid = config.grid;
        self.run_once(ctx, true, |dev, cmd| {
            // SAFETY: `cmd` is recording on the compute queue; the pipeline, layout and set
            // are valid and compatible; the push range matches the layout.
            unsafe {
                dev.cmd_bind_pipeline(cmd, vk::PipelineBindPoint::COMPUTE, pipe.pipeline);
                if !bindings.is_empty() {
                    dev.cmd_bind_descriptor_sets(
                        cmd,
                        vk::PipelineBindPoint::COMPUTE,
                        pipe.layout,
                        0,
                        &[set],
                        &[],
                    );
                }
                if !push.is_empty() {
                    dev.cmd_push_constants(
                        cmd,
                        pipe.layout,
                        vk::ShaderStageFlags::COMPUTE,
                        0,
                        &push,
                    );
                }
                dev.cmd_dispatch(cmd, grid[0], grid[1], grid[2]);
            }
            Ok(())
        })
    }
}

impl Drop for VulkanDevice {
    fn drop(&mut self) {
        // SAFETY: `ctx` is dropped exactly once, here.
        let ctx = unsafe { ManuallyDrop::take(&mut self.ctx) };
        let mut ctx = ctx.into_inner().unwrap_or_else(|p| p.into_inner());
        let dev = &self.shared.device;
        // SAFETY: the device is idle after the wait; every object below was created from it
        // and is destroyed once.
        unsafe {
            let _ = dev.device_wait_idle();
            ctx.pipelines.destroy(dev);
            for s in ctx.ring.drain(..).chain(ctx.bar_ring.drain(..)) {
                self.shared.destroy_buffer(s.buffer, s.alloc);
            }
            dev.destroy_semaphore(ctx.timeline, None);
            dev.destroy_command_pool(ctx.compute.pool, None);
            if let Some(t) = &ctx.transfer {
                dev.destroy_command_pool(t.pool, None);
            }
        }
    }
}

// ---- the Device implementation -----------------------------------------------------------

impl Device for VulkanDevice {
    type Buffer = VulkanBuffer;

    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn supports(&self, placement: Placement) -> bool {
        matches!(
            placement,
            Placement::DeviceLocal | Placement::HostMapped | Placement::Staging
        ) && self.types[purpose_index(purpose_of(placement))].is_some()
    }

    fn alloc(&self, size: u64, placement: Placement) -> Result<VulkanBuffer> {
        if size == 0 {
            return Err(Error::ZeroSize { what: "buffer" });
        }
        let ty = self.types[purpose_index(purpose_of(placement))].ok_or_else(|| {
            Error::UnsupportedPlacement {
                device: self.info.name.clone(),
                placement,
            }
        })?;
        self.create_buffer(size, ty, placement, None)
    }

    fn write(&self, dst: &VulkanBuffer, offset: u64, src: &[u8]) -> Result<()> {
        self.check_owner(dst)?;
        check_range(offset, src.len() as u64, dst.len)?;
        if src.is_empty() {
            return Ok(());
        }
        let mut ctx = self.lock();
        if dst.placement != Placement::DeviceLocal {
            self.shared.wait_side()?;
            // SAFETY: we hold the lock and no GPU work is pending (main operations wait for
            // their work; concurrent copies were waited for just above).
            if let Some(host) = unsafe { Self::mapped_slice(dst, &mut ctx) } {
                let o = offset as usize;
                self.pool().copy(&mut host[o..o + src.len()], src, false);
                return Ok(());
            }
        }
        if dst.placement == Placement::DeviceLocal && self.h2d_uses_bar(src.len() as u64) {
            match self.ensure_bar_ring(&mut ctx) {
                Ok(()) => return self.staged_write(&mut ctx, dst, offset, src, true),
                Err(e) => tracing::debug!("vulkan: BAR upload unavailable, staging instead: {e}"),
            }
        }
        if let Some((a, b)) = self.import_range(src.as_ptr() as usize, src.len()) {
            // SAFETY: `src[a..b]` is borrowed for this call and only read by the device
            // (the import API takes a mutable pointer); `a` and `b` are aligned.
            let done = unsafe {
                self.imported_copy(
                    &mut ctx,
                    src.as_ptr().add(a).cast_mut(),
                    (b - a) as u64,
                    dst,
                    offset + a as u64,
                    true,
                )?
            };
            if done {
                if a > 0 {
                    self.staged_write(&mut ctx, dst, offset, &src[..a], false)?;
                }
                if b < src.len() {
                    self.staged_write(&mut ctx, dst, offset + b as u64, &src[b..], false)?;
                }
                return Ok(());
            }
        }
        self.staged_write(&mut ctx, dst, offset, src, false)
    }

    fn read(&self, src: &VulkanBuffer, offset: u64, dst: &mut [u8]) -> Result<()> {
        self.check_owner(src)?;
        check_range(offset, dst.len() as u64, src.len)?;
        if dst.is_empty() {
            return Ok(());
        }
        let mut ctx = self.lock();
        if src.placement != Placement::DeviceLocal {
            self.shared.wait_side()?;
            // SAFETY: we hold the lock and no GPU work is pending (main operations wait for
            // their work; concurrent copies were waited for just above).
            if let Some(host) = unsafe { Self::mapped_slice(src, &mut ctx) } {
                let o = offset as usize;
                self.pool().copy(dst, &host[o..o + dst.len()], false);
                return Ok(());
            }
        }
        if let Some((a, b)) = self.import_range(dst.as_ptr() as usize, dst.len()) {
            // SAFETY: `dst[a..b]` is borrowed mutably for this call; `a` and `b` are aligned.
            let done = unsafe {
                self.imported_copy(
                    &mut ctx,
                    dst.as_mut_ptr().add(a),
                    (b - a) as u64,
                    src,
                    offset + a as u64,
                    false,
                )?
            };
            if done {
                let n = dst.len();
                if a > 0 {
                    self.staged_read(&mut ctx, src, offset, &mut dst[..a])?;
                }
                if b < n {
                    self.staged_read(&mut ctx, src, offset + b as u64, &mut dst[b..])?;
                }
                return Ok(());
            }
        }
        self.staged_read(&mut ctx, src, offset, dst)
    }

    fn copy(
        &self,
        src: &VulkanBuffer,
        src_offset: u64,
        dst: &VulkanBuffer,
        dst_offset: u64,
        len: u64,
    ) -> Result<()> {
        self.check_owner(src)?;
        self.check_owner(dst)?;
        check_range(src_offset, len, src.len)?;
        check_range(dst_offset, len, dst.len)?;
        if len == 0 {
            return Ok(());
        }
        if src.raw == dst.raw && src_offset < dst_offset + len && dst_offset < src_offset + len {
            return Err(Error::invalid(
                "copy within one buffer between overlapping ranges",
            ));
        }
        let mut ctx = self.lock();
        let region = vk::BufferCopy {
            src_offset,
            dst_offset,
            size: len,
        };
        self.run_once(&mut ctx, false, |dev, cmd| {
            // SAFETY: `cmd` is recording; both buffers are valid, the regions in bounds and
            // not overlapping.
            unsafe { dev.cmd_copy_buffer(cmd, src.raw, dst.raw, &[region]) };
            Ok(())
        })
    }

    fn fill(&self, dst: &VulkanBuffer, offset: u64, len: u64, value: u8) -> Result<()> {
        self.check_owner(dst)?;
        check_range(offset, len, dst.len)?;
        if len == 0 {
            return Ok(());
        }
        let mut ctx = self.lock();
        if dst.placement != Placement::DeviceLocal {
            self.shared.wait_side()?;
            // SAFETY: we hold the lock and no GPU work is pending (main operations wait for
            // their work; concurrent copies were waited for just above).
            if let Some(host) = unsafe { Self::mapped_slice(dst, &mut ctx) } {
                host[offset as usize..(offset + len) as usize].fill(value);
                return Ok(());
            }
        }
        // vkCmdFillBuffer needs a 4-byte aligned offset and size: fill the aligned middle on
        // the device and the (at most 3 + 3) edge bytes through the staging ring.
        let end = offset + len;
        let mid_start = offset.next_multiple_of(4).min(end);
        let mid_end = (end / 4 * 4).max(mid_start);
        if mid_end > mid_start {
            let word = u32::from_ne_bytes([value; 4]);
            self.run_once(&mut ctx, false, |dev, cmd| {
                // SAFETY: `cmd` is recording; offset and size are multiples of 4 and in
                // bounds.
                unsafe { dev.cmd_fill_buffer(cmd, dst.raw, mid_start, mid_end - mid_start, word) };
                Ok(())
            })?;
        }
        if mid_start > offset {
            let head = vec![value; (mid_start - offset) as usize];
            self.staged_write(&mut ctx, dst, offset, &head, false)?;
        }
        if end > mid_end {
            let tail = vec![value; (end - mid_end) as usize];
            self.staged_write(&mut ctx, dst, mid_end, &tail, false)?;
        }
        Ok(())
    }

    fn launch(
        &self,
        kernel: &Kernel,
        config: &LaunchConfig,
        args: &[Arg<'_, VulkanBuffer>],
    ) -> Result<()> {
        let Some(KernelVariant::SpirV { words, entry }) = kernel.variant_for(Backend::Vulkan)
        else {
            return Err(Error::NoKernelVariant {
                kernel: kernel.name().to_string(),
                backend: Backend::Vulkan,
            });
        };
        check_launch_args(kernel, args)?;
        self.launch_spirv(kernel, words, entry, config, args)
    }

    fn copy_concurrent(
        &self,
        src: &VulkanBuffer,
        src_offset: u64,
        dst: &VulkanBuffer,
        dst_offset: u64,
        len: u64,
    ) -> Result<Fence> {
        self.check_owner(src)?;
        self.check_owner(dst)?;
        check_range(src_offset, len, src.len)?;
        check_range(dst_offset, len, dst.len)?;
        if len == 0 {
            return Ok(Fence::done());
        }
        if src.raw == dst.raw && src_offset < dst_offset + len && dst_offset < src_offset + len {
            return Err(Error::invalid(
                "copy within one buffer between overlapping ranges",
            ));
        }
        let mut ctx = self.lock();
        let dev = &self.shared.device;
        let side = self.shared.side;
        // A command buffer whose last submission completed, a new one, or the oldest.
        // SAFETY: the semaphore belongs to `dev`.
        let done = unsafe { dev.get_semaphore_counter_value(side) }
            .map_err(|e| vk_err("vkGetSemaphoreCounterValue", e))?;
        let idx = match ctx.side_cmds.iter().position(|&(_, v)| v <= done) {
            Some(i) => i,
            None if ctx.side_cmds.len() < MAX_SIDE_CMDS => {
                let cai = vk::CommandBufferAllocateInfo::default()
                    .command_pool(ctx.transfer_queue().pool)
                    .level(vk::CommandBufferLevel::PRIMARY)
                    .command_buffer_count(1);
                // SAFETY: the pool belongs to `dev`; we hold the device lock (pools are
                // externally synchronised). Freed with the pool when the device drops.
                let cmd = unsafe { dev.allocate_command_buffers(&cai) }
                    .map_err(|e| vk_err("vkAllocateCommandBuffers", e))?[0];
                ctx.side_cmds.push((cmd, 0));
                ctx.side_cmds.len() - 1
            }
            None => {
                let (i, &(_, oldest)) = ctx
                    .side_cmds
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, &(_, v))| v)
                    .ok_or_else(|| Error::invalid("no side command buffer"))?;
                let sems = [side];
                let vals = [oldest];
                let wi = vk::SemaphoreWaitInfo::default()
                    .semaphores(&sems)
                    .values(&vals);
                // SAFETY: the semaphore belongs to `dev`.
                unsafe { dev.wait_semaphores(&wi, WAIT_TIMEOUT_NS) }
                    .map_err(|e| vk_err("vkWaitSemaphores", e))?;
                i
            }
        };
        let cmd = ctx.side_cmds[idx].0;
        let queue = ctx.transfer_queue().queue;
        begin(dev, cmd)?;
        let region = vk::BufferCopy {
            src_offset,
            dst_offset,
            size: len,
        };
        // SAFETY: `cmd` is recording; both buffers are valid, the regions in bounds and not
        // overlapping.
        unsafe { dev.cmd_copy_buffer(cmd, src.raw, dst.raw, &[region]) };
        end_with_host_barrier(dev, cmd)?;
        // Ordered after every operation issued so far (the main timeline's last value);
        // signals the next side value, which `wait_for` makes later submissions wait for.
        let value = self.shared.side_value.load(Ordering::Acquire) + 1;
        let signal_s = [side];
        let signal_v = [value];
        let wait_s = [ctx.timeline];
        let wait_v = [ctx.value];
        let stages = [vk::PipelineStageFlags::ALL_COMMANDS];
        let cmds = [cmd];
        let mut ts = vk::TimelineSemaphoreSubmitInfo::default().signal_semaphore_values(&signal_v);
        if ctx.value > 0 {
            ts = ts.wait_semaphore_values(&wait_v);
        }
        let mut si = vk::SubmitInfo::default()
            .command_buffers(&cmds)
            .signal_semaphores(&signal_s);
        if ctx.value > 0 {
            si = si.wait_semaphores(&wait_s).wait_dst_stage_mask(&stages);
        }
        let si = si.push_next(&mut ts);
        // SAFETY: `cmd` is executable and belongs to the pool of `queue`'s family; the side
        // values are strictly increasing (taken under the device lock).
        unsafe { dev.queue_submit(queue, &[si], vk::Fence::null()) }
            .map_err(|e| vk_err("vkQueueSubmit", e))?;
        self.shared.side_value.store(value, Ordering::Release);
        ctx.side_cmds[idx].1 = value;
        Ok(Fence::new(VkSideFence {
            shared: self.shared.clone(),
            value,
        }))
    }

    fn wait_for(&self, fence: &Fence) -> Result<()> {
        if fence.is_done() {
            return Ok(());
        }
        let f = fence
            .payload::<VkSideFence>()
            .filter(|f| Arc::ptr_eq(&f.shared, &self.shared))
            .ok_or_else(|| Error::WrongDevice {
                expected: self.info.name.clone(),
                found: "a fence of another device".into(),
            })?;
        let mut ctx = self.lock();
        ctx.pending_side = ctx.pending_side.max(f.value);
        Ok(())
    }

    fn read_host_resident(&self, src: &VulkanBuffer, offset: u64, dst: &mut [u8]) -> Result<()> {
        self.check_owner(src)?;
        check_range(offset, dst.len() as u64, src.len)?;
        let mut ctx = self.lock();
        if src.placement != Placement::DeviceLocal {
            // SAFETY: we hold the lock (no other host access); the contract of
            // `read_host_resident` leaves ranges that device work still writes to the caller.
            if let Some(host) = unsafe { Self::mapped_slice(src, &mut ctx) } {
                let o = offset as usize;
                dst.copy_from_slice(&host[o..o + dst.len()]);
                return Ok(());
            }
        }
        Err(Error::UnsupportedPlacement {
            device: self.info().name.clone(),
            placement: src.placement,
        })
    }

    fn synchronize(&self) -> Result<()> {
        let mut ctx = self.lock();
        let v = ctx.value;
        ctx.wait(&self.shared.device, v)?;
        self.shared.wait_side()?;
        drop(ctx);
        let deferred = self
            .shared
            .deferred
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        match deferred {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{bar_upload_type, chunk_plan, flat_plan, pcie_generation, H2dStrategy};
    use crate::memory::MemoryTypeDesc;
    use crate::memory::{select_memory_type, MemoryHeapDesc, MemoryPurpose, MemoryTable};
    use ash::vk::{MemoryHeapFlags as HF, MemoryPropertyFlags as F};

    fn table(heaps: &[(u64, bool)], types: &[(F, u32)]) -> MemoryTable {
        MemoryTable {
            heaps: heaps
                .iter()
                .map(|&(size, dl)| MemoryHeapDesc {
                    size,
                    flags: if dl { HF::DEVICE_LOCAL } else { HF::empty() },
                })
                .collect(),
            types: types
                .iter()
                .map(|&(flags, heap)| MemoryTypeDesc { flags, heap })
                .collect(),
        }
    }

    fn bar_of(t: &MemoryTable, unified: bool) -> Option<u32> {
        bar_upload_type(
            t,
            select_memory_type(t, MemoryPurpose::Upload, unified, u32::MAX),
        )
    }

    #[test]
    fn bar_type_only_for_large_bar_or_unified_memory() {
        const GIB: u64 = 1 << 30;
        let (dl, hv, hc, c) = (
            F::DEVICE_LOCAL,
            F::HOST_VISIBLE,
            F::HOST_COHERENT,
            F::HOST_CACHED,
        );
        // The H100/H200: all of VRAM behind the BAR (type 4).
        let h100 = table(
            &[(80 * GIB, true), (94 * GIB, false)],
            &[
                (F::empty(), 1),
                (dl, 0),
                (hv | hc, 1),
                (hv | hc | c, 1),
                (dl | hv | hc, 0),
            ],
        );
        assert_eq!(bar_of(&h100, false), Some(4));
        // A 256 MiB BAR window is left alone.
        let small = table(
            &[(8 * GIB, true), (32 * GIB, false), (GIB / 4, true)],
            &[(dl, 0), (hv | hc, 1), (hv | hc | c, 1), (dl | hv | hc, 2)],
        );
        assert_eq!(bar_of(&small, false), None);
        // No host-visible device-local memory at all.
        let no_bar = table(
            &[(8 * GIB, true), (32 * GIB, false)],
            &[(dl, 0), (hv | hc, 1)],
        );
        assert_eq!(bar_of(&no_bar, false), None);
        // lavapipe: one type with every flag.
        let lvp = table(&[(2 * GIB, true)], &[(dl | hv | hc | c, 0)]);
        assert_eq!(bar_of(&lvp, true), Some(0));
        assert_eq!(bar_upload_type(&lvp, None), None);
        assert_eq!(bar_upload_type(&lvp, Some(7)), None);
    }

    #[test]
    fn h2d_strategy_choice() {
        use H2dStrategy::*;
        let min = H2dStrategy::AUTO_BAR_MIN;
        for len in [1, min - 1, min, 1 << 30] {
            assert!(!Staging.uses_bar(len, true, true, true));
            assert!(Bar.uses_bar(len, true, false, false));
            assert!(!Bar.uses_bar(len, false, true, true), "no BAR type");
            assert_eq!(Auto.uses_bar(len, true, true, true), len >= min);
            assert!(!Auto.uses_bar(len, true, false, true), "not discrete");
            assert!(!Auto.uses_bar(len, true, true, false), "small BAR");
            assert!(!Auto.uses_bar(len, false, true, true), "no BAR type");
        }
        for s in [Staging, Bar, Auto] {
            assert_eq!(s.as_str().parse::<H2dStrategy>().ok(), Some(s));
            assert_eq!(H2dStrategy::from_u8(s.to_u8()), s);
        }
        assert_eq!(" BAR ".parse::<H2dStrategy>().ok(), Some(Bar));
        assert!(matches!(
            "fast".parse::<H2dStrategy>(),
            Err(vuma_core::Error::InvalidArgument(_))
        ));
        assert_eq!(H2dStrategy::default(), Staging);
    }

    /// The BAR ring unavailable (no BAR type, or its allocation failed): a typed error
    /// inside, and device-local writes fall back to staging with the right bytes.
    #[test]
    fn bar_failure_falls_back_to_staging() {
        use vuma_core::{Device, Placement};
        let mut dev = match super::VulkanDevice::open_with(0, &crate::VulkanOptions::validated()) {
            Ok(d) => d,
            Err(e) => return vuma_core::conformance::skip_or_fail("vulkan", &e.to_string()),
        };
        let buf = dev.alloc(3 << 20, Placement::DeviceLocal).expect("alloc");
        let data: Vec<u8> = (0..(3 << 20) - 5).map(|i| (i % 253) as u8).collect();
        let mut back = vec![0u8; data.len()];
        // An allocation that failed earlier (simulated): staged, not BAR.
        dev.set_h2d_strategy(H2dStrategy::Bar);
        dev.lock().bar_failed = Some("simulated allocation failure".into());
        dev.write(&buf, 5, &data).expect("write falls back");
        assert_eq!(dev.bar_bytes_written(), 0);
        dev.read(&buf, 5, &mut back).expect("read");
        assert!(back == data);
        // Setting the strategy again forgets the failure.
        dev.set_h2d_strategy(H2dStrategy::Bar);
        dev.write(&buf, 0, &data[..4096]).expect("write");
        assert_eq!(
            dev.bar_bytes_written(),
            if dev.bar_type.is_some() { 4096 } else { 0 }
        );
        // No BAR type at all: a typed error from the ring, and writes stage.
        dev.bar_type = None;
        let r = {
            let mut ctx = dev.lock();
            let slots = std::mem::take(&mut ctx.bar_ring);
            let pool = ctx.transfer_queue().pool;
            // Nothing uses the slots: every write waited for its copies.
            dev.destroy_slots(pool, slots);
            dev.ensure_bar_ring(&mut ctx)
        };
        assert!(
            matches!(
                r,
                Err(vuma_core::Error::Backend {
                    op: "BAR upload ring",
                    ..
                })
            ),
            "{r:?}"
        );
        assert!(!dev.h2d_uses_bar(1 << 30));
        dev.write(&buf, 1, &data).expect("write without a BAR type");
        dev.read(&buf, 1, &mut back).expect("read");
        assert!(back == data);
        dev.synchronize().expect("synchronize");
        assert_eq!(
            dev.validation_errors(),
            0,
            "{:#?}",
            dev.validation_messages()
        );
    }

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

    #[test]
    fn chunk_plan_covers_and_ramps() {
        let m = 1usize << 20;
        for total in [0, 1, m, 16 * m, 33 * m, 256 * m + 12345, 1000 * m + 7] {
            for slot in [8 * m, 16 * m, 64 * m] {
                let f = flat_plan(total, slot);
                assert_eq!(f.iter().sum::<usize>(), total);
                assert!(f.iter().all(|&c| c > 0 && c <= slot));
                assert_eq!(f.len(), total.div_ceil(slot));
                let p = chunk_plan(total, slot);
                assert_eq!(p.iter().sum::<usize>(), total);
                assert!(p.iter().all(|&c| c > 0 && c <= slot));
                if total > 4 * slot {
                    assert_eq!(p[0], slot / 8);
                    assert_eq!(*p.last().unwrap(), slot / 8);
                }
            }
        }
    }
}
