//! [`VulkanDevice`]: opening a device (discovery, the logical device, queues, staging) and
//! the [`Device`] implementation over the backend's parts.

use std::mem::ManuallyDrop;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};

use ash::vk;
use vuma_core::{
    check_launch_args, check_range, Arg, Backend, Device, DeviceId, DeviceInfo, DeviceKind, Error,
    Fence, Kernel, KernelVariant, LaunchConfig, Placement, Result,
};

use crate::adapter::{Adapter, InfoDesc};
use crate::buffer::VulkanBuffer;
use crate::compute::{Launch, Pipelines};
use crate::conv::{purpose_index, purpose_of, PURPOSES};
use crate::error::vk_err;
use crate::instance::Instance;
use crate::memory::{bar_upload_type, select_memory_type, MemoryPurpose, MemoryTable};
use crate::options::{H2dStrategy, VulkanOptions};
use crate::shared::{Shared, SharedDesc};
use crate::staging::{Rings, Staging, StagingDesc};
use crate::submit::{side_value_of, Submit};

/// Everything that records and submits work; guarded by the device's lock.
struct Ctx {
    sub: Submit,
    rings: Rings,
    pipelines: Pipelines,
}

/// A Vulkan device opened by VUMA.
///
/// Every operation records one or more command buffers, submits them, and waits for them
/// before returning, so operations are ordered and buffers may be dropped at any time.
pub struct VulkanDevice {
    shared: Arc<Shared>,
    info: DeviceInfo,
    /// Memory type per purpose (index by `purpose_index`).
    types: [Option<u32>; 4],
    staging: Staging,
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

impl VulkanDevice {
    /// Opens physical device `index` (in the driver's order) with default options (the
    /// environment's knobs, see [`VulkanOptions::from_env`]).
    pub fn open(index: usize) -> Result<Self> {
        Self::open_with(index, &VulkanOptions::default())
    }

    /// Opens physical device `index` with `options` over the environment's
    /// ([`VulkanOptions::over`] [`VulkanOptions::from_env`]).
    pub fn open_with(index: usize, options: &VulkanOptions) -> Result<Self> {
        let options = options.over(&VulkanOptions::from_env());
        let instance = Instance::new(&options)?;
        // SAFETY: the instance is valid for the call.
        let phys = unsafe { instance.instance.enumerate_physical_devices() }
            .map_err(|e| vk_err("vkEnumeratePhysicalDevices", e))?;
        let Some(&pd) = phys.get(index) else {
            return Err(Error::Unavailable {
                backend: Backend::Vulkan,
                reason: format!("no Vulkan physical device {index} ({} present)", phys.len()),
            });
        };
        Self::create(instance, pd, index as u32, &options)
    }

    /// Opens `pd`: probes it, creates the logical device, its shared state, queues and
    /// staging paths.
    fn create(
        instance: Arc<Instance>,
        pd: vk::PhysicalDevice,
        ordinal: u32,
        options: &VulkanOptions,
    ) -> Result<Self> {
        let adapter = Adapter::probe(&instance.instance, pd, ordinal)?;
        let device = adapter.create_device(&instance.instance)?;
        let (table, budgets) = adapter.memory(&instance.instance);
        let unified = adapter.unified();
        let types = PURPOSES.map(|p| select_memory_type(&table, p, unified, u32::MAX));
        let bar_type = bar_upload_type(&table, types[purpose_index(MemoryPurpose::Upload)]);
        let info = adapter.info(&InfoDesc {
            id: DeviceId::fresh(),
            table: &table,
            budgets: budgets.as_deref(),
            types,
            h2d: options.h2d_strategy(),
            bar_type,
            validation: instance.validation,
        });
        let mut families = vec![adapter.compute_family];
        families.extend(adapter.transfer_family);
        let shared = Shared::new(
            instance,
            device,
            SharedDesc {
                physical_device: pd,
                id: info.id,
                name: info.name.clone(),
                table,
                limits: adapter.limits(),
                families,
            },
        )?;
        let sub = Submit::new(
            &shared.device,
            adapter.compute_family,
            adapter.transfer_family,
        )?;
        let staging = Staging::new(
            shared.clone(),
            options,
            StagingDesc {
                readback_type: types[purpose_index(MemoryPurpose::Readback)],
                bar_type,
                unified,
                discrete_gpu: info.kind == DeviceKind::Discrete,
                import_align: adapter.has_emh.then_some(adapter.import_align),
            },
        );
        Ok(VulkanDevice {
            info,
            types,
            staging,
            ctx: ManuallyDrop::new(Mutex::new(Ctx {
                sub,
                rings: Rings::default(),
                pipelines: Pipelines::default(),
            })),
            shared,
        })
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
        &self.shared.table
    }

    /// The memory type VUMA uses for `purpose`, if any fits.
    pub fn memory_type_for(&self, purpose: MemoryPurpose) -> Option<u32> {
        self.types[purpose_index(purpose)]
    }

    /// Whether copies run on a dedicated transfer queue family.
    pub fn has_dedicated_transfer_queue(&self) -> bool {
        self.lock().sub.transfer.is_some()
    }

    /// The largest range one storage-buffer binding may cover (`maxStorageBufferRange`).
    pub fn max_storage_buffer_range(&self) -> u64 {
        self.shared.limits.max_storage_range
    }

    /// The alignment of storage-buffer binding offsets (`minStorageBufferOffsetAlignment`).
    pub fn storage_offset_alignment(&self) -> u64 {
        self.shared.limits.min_storage_offset_align
    }

    /// `maxComputeWorkGroupCount`.
    pub fn max_workgroup_count(&self) -> [u32; 3] {
        self.shared.limits.max_group_count
    }

    /// How [`Device::write`] moves host bytes into device-local buffers (from
    /// [`VulkanOptions::h2d`] or `VUMA_VK_H2D` at open, else [`H2dStrategy::Staging`]).
    pub fn h2d_strategy(&self) -> H2dStrategy {
        self.staging.h2d_strategy()
    }

    /// Chooses how [`Device::write`] moves host bytes into device-local buffers from now on
    /// (overrides `VUMA_VK_H2D`; tests and benchmarks use it instead of the environment).
    /// It also forgets an earlier failure to allocate the BAR ring, so the next BAR write
    /// tries again.
    pub fn set_h2d_strategy(&self, strategy: H2dStrategy) {
        let mut ctx = self.lock();
        self.staging.set_h2d_strategy(&mut ctx.rings, strategy);
    }

    /// The memory type of the BAR upload ring (`DEVICE_LOCAL|HOST_VISIBLE`), if the device
    /// has one that VUMA may use for uploads: a large BAR on a discrete GPU, any host-visible
    /// device-local type on integrated and CPU devices (lavapipe). `None`: BAR writes fall
    /// back to staging.
    pub fn bar_upload_type(&self) -> Option<u32> {
        self.staging.bar_type
    }

    /// Whether a device-local write of `len` bytes would go through the BAR ring under the
    /// current strategy (before any fallback when the ring cannot be allocated).
    pub fn h2d_uses_bar(&self, len: u64) -> bool {
        self.staging.h2d_uses_bar(len)
    }

    /// Bytes written into device-local buffers through the BAR ring since the device was
    /// opened (tests and benchmarks check that the BAR path really ran).
    pub fn bar_bytes_written(&self) -> u64 {
        self.staging.bar_bytes_written()
    }

    fn lock(&self) -> MutexGuard<'_, Ctx> {
        self.ctx.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn check_owner(&self, b: &VulkanBuffer) -> Result<()> {
        b.check_owner(&self.shared)
    }

    /// The checks of a copy between two buffers: owners, ranges, no overlap within one
    /// buffer. `Ok(false)`: nothing to copy.
    fn check_copy(
        &self,
        src: &VulkanBuffer,
        src_offset: u64,
        dst: &VulkanBuffer,
        dst_offset: u64,
        len: u64,
    ) -> Result<bool> {
        self.check_owner(src)?;
        self.check_owner(dst)?;
        check_range(src_offset, len, src.len)?;
        check_range(dst_offset, len, dst.len)?;
        if len == 0 {
            return Ok(false);
        }
        if src.raw == dst.raw && src_offset < dst_offset + len && dst_offset < src_offset + len {
            return Err(Error::invalid(
                "copy within one buffer between overlapping ranges",
            ));
        }
        Ok(true)
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
            ctx.rings.destroy(&self.shared);
            ctx.sub.destroy(dev);
        }
    }
}

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
        VulkanBuffer::create(&self.shared, size, ty, placement, None)
    }

    fn write(&self, dst: &VulkanBuffer, offset: u64, src: &[u8]) -> Result<()> {
        self.check_owner(dst)?;
        check_range(offset, src.len() as u64, dst.len)?;
        if src.is_empty() {
            return Ok(());
        }
        let mut guard = self.lock();
        if dst.placement != Placement::DeviceLocal {
            self.shared.wait_side()?;
            // SAFETY: we hold the lock and no GPU work is pending (main operations wait for
            // their work; concurrent copies were waited for just above).
            if let Some(host) = unsafe { dst.mapped_slice(&mut guard) } {
                let o = offset as usize;
                self.staging
                    .pool()
                    .copy(&mut host[o..o + src.len()], src, false);
                return Ok(());
            }
        }
        let ctx = &mut *guard;
        self.staging
            .upload(&mut ctx.sub, &mut ctx.rings, dst, offset, src)
    }

    fn read(&self, src: &VulkanBuffer, offset: u64, dst: &mut [u8]) -> Result<()> {
        self.check_owner(src)?;
        check_range(offset, dst.len() as u64, src.len)?;
        if dst.is_empty() {
            return Ok(());
        }
        let mut guard = self.lock();
        if src.placement != Placement::DeviceLocal {
            self.shared.wait_side()?;
            // SAFETY: we hold the lock and no GPU work is pending (main operations wait for
            // their work; concurrent copies were waited for just above).
            if let Some(host) = unsafe { src.mapped_slice(&mut guard) } {
                let o = offset as usize;
                self.staging
                    .pool()
                    .copy(dst, &host[o..o + dst.len()], false);
                return Ok(());
            }
        }
        let ctx = &mut *guard;
        self.staging
            .download(&mut ctx.sub, &mut ctx.rings, src, offset, dst)
    }

    fn copy(
        &self,
        src: &VulkanBuffer,
        src_offset: u64,
        dst: &VulkanBuffer,
        dst_offset: u64,
        len: u64,
    ) -> Result<()> {
        if !self.check_copy(src, src_offset, dst, dst_offset, len)? {
            return Ok(());
        }
        let mut ctx = self.lock();
        let region = vk::BufferCopy {
            src_offset,
            dst_offset,
            size: len,
        };
        ctx.sub.run_once(&self.shared, false, |dev, cmd| {
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
        let mut guard = self.lock();
        if dst.placement != Placement::DeviceLocal {
            self.shared.wait_side()?;
            // SAFETY: we hold the lock and no GPU work is pending (main operations wait for
            // their work; concurrent copies were waited for just above).
            if let Some(host) = unsafe { dst.mapped_slice(&mut guard) } {
                host[offset as usize..(offset + len) as usize].fill(value);
                return Ok(());
            }
        }
        let ctx = &mut *guard;
        // vkCmdFillBuffer needs a 4-byte aligned offset and size: fill the aligned middle on
        // the device and the (at most 3 + 3) edge bytes through the staging ring.
        let end = offset + len;
        let mid_start = offset.next_multiple_of(4).min(end);
        let mid_end = (end / 4 * 4).max(mid_start);
        if mid_end > mid_start {
            let word = u32::from_ne_bytes([value; 4]);
            ctx.sub.run_once(&self.shared, false, |dev, cmd| {
                // SAFETY: `cmd` is recording; offset and size are multiples of 4 and in
                // bounds.
                unsafe { dev.cmd_fill_buffer(cmd, dst.raw, mid_start, mid_end - mid_start, word) };
                Ok(())
            })?;
        }
        if mid_start > offset {
            let head = vec![value; (mid_start - offset) as usize];
            self.staging
                .staged_write(&mut ctx.sub, &mut ctx.rings, dst, offset, &head, false)?;
        }
        if end > mid_end {
            let tail = vec![value; (end - mid_end) as usize];
            self.staging
                .staged_write(&mut ctx.sub, &mut ctx.rings, dst, mid_end, &tail, false)?;
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
        let launch = Launch::prepare(&self.shared, kernel, words, entry, config, args)?;
        let mut guard = self.lock();
        let ctx = &mut *guard;
        launch.record(&self.shared, &mut ctx.sub, &mut ctx.pipelines)
    }

    fn copy_concurrent(
        &self,
        src: &VulkanBuffer,
        src_offset: u64,
        dst: &VulkanBuffer,
        dst_offset: u64,
        len: u64,
    ) -> Result<Fence> {
        if !self.check_copy(src, src_offset, dst, dst_offset, len)? {
            return Ok(Fence::done());
        }
        let region = vk::BufferCopy {
            src_offset,
            dst_offset,
            size: len,
        };
        self.lock()
            .sub
            .copy_concurrent(&self.shared, src.raw, dst.raw, region)
    }

    fn wait_for(&self, fence: &Fence) -> Result<()> {
        if fence.is_done() {
            return Ok(());
        }
        let value = side_value_of(fence, &self.shared).ok_or_else(|| Error::WrongDevice {
            expected: self.info.name.clone(),
            found: "a fence of another device".into(),
        })?;
        self.lock().sub.wait_side_value(value);
        Ok(())
    }

    fn read_host_resident(&self, src: &VulkanBuffer, offset: u64, dst: &mut [u8]) -> Result<()> {
        self.check_owner(src)?;
        check_range(offset, dst.len() as u64, src.len)?;
        let mut guard = self.lock();
        if src.placement != Placement::DeviceLocal {
            // SAFETY: we hold the lock (no other host access); the contract of
            // `read_host_resident` leaves ranges that device work still writes to the caller.
            if let Some(host) = unsafe { src.mapped_slice(&mut guard) } {
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
        let v = ctx.sub.value();
        ctx.sub.wait(&self.shared.device, v)?;
        self.shared.wait_side()?;
        drop(ctx);
        match self.shared.take_deferred() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{H2dStrategy, VulkanDevice};
    use vuma_core::{Device, Placement};

    /// The BAR ring unavailable (no BAR type, or its allocation failed): a typed error
    /// inside, and device-local writes fall back to staging with the right bytes.
    #[test]
    fn bar_failure_falls_back_to_staging() {
        let mut dev = match VulkanDevice::open_with(0, &crate::VulkanOptions::validated()) {
            Ok(d) => d,
            Err(e) => return vuma_core::conformance::skip_or_fail("vulkan", &e.to_string()),
        };
        let buf = dev.alloc(3 << 20, Placement::DeviceLocal).expect("alloc");
        let data: Vec<u8> = (0..(3 << 20) - 5).map(|i| (i % 253) as u8).collect();
        let mut back = vec![0u8; data.len()];
        // An allocation that failed earlier (simulated): staged, not BAR.
        dev.set_h2d_strategy(H2dStrategy::Bar);
        dev.lock().rings.bar_failed = Some("simulated allocation failure".into());
        dev.write(&buf, 5, &data).expect("write falls back");
        assert_eq!(dev.bar_bytes_written(), 0);
        dev.read(&buf, 5, &mut back).expect("read");
        assert!(back == data);
        // Setting the strategy again forgets the failure.
        dev.set_h2d_strategy(H2dStrategy::Bar);
        dev.write(&buf, 0, &data[..4096]).expect("write");
        assert_eq!(
            dev.bar_bytes_written(),
            if dev.staging.bar_type.is_some() {
                4096
            } else {
                0
            }
        );
        // No BAR type at all: a typed error from the ring, and writes stage.
        dev.staging.bar_type = None;
        let r = {
            let mut guard = dev.lock();
            let ctx = &mut *guard;
            // Nothing uses the slots: every write waited for its copies.
            dev.staging.drop_bar_ring(&ctx.sub, &mut ctx.rings);
            dev.staging.ensure_bar_ring(&ctx.sub, &mut ctx.rings)
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
}
