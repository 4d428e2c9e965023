//! [`Shared`]: the state a device shares with its buffers, fences and staging rings: the
//! logical device, the memory allocator, the facts buffer creation needs, the side
//! timeline of concurrent copies, and errors raised while dropping buffers.

use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use ash::vk;
use gpu_allocator::vulkan::{Allocation, Allocator, AllocatorCreateDesc};
use gpu_allocator::{AllocationSizes, AllocatorDebugSettings};
use vuma_core::{DeviceId, Error, Result};

use crate::adapter::Limits;
use crate::error::{backend_err, vk_err, WAIT_TIMEOUT_NS};
use crate::instance::Instance;
use crate::memory::MemoryTable;

/// State shared by a device and its buffers (buffers free their memory through it).
pub(crate) struct Shared {
    pub instance: Arc<Instance>,
    pub device: ash::Device,
    allocator: ManuallyDrop<Mutex<Allocator>>,
    pub id: DeviceId,
    /// The device's name (`DeviceInfo::name`), for errors.
    pub name: String,
    /// The device's memory types and heaps.
    pub table: MemoryTable,
    pub limits: Limits,
    /// The queue families that use buffers (compute, then a dedicated transfer family):
    /// buffers are shared `CONCURRENT`ly between them when there are two.
    pub families: Vec<u32>,
    /// Errors raised while dropping buffers, reported by the next `synchronize`.
    deferred: Mutex<Option<Error>>,
    /// The timeline of [`Device::copy_concurrent`](vuma_core::Device::copy_concurrent)
    /// submissions and the last value signalled on it.
    pub side: vk::Semaphore,
    pub side_value: AtomicU64,
}

/// What [`Shared::new`] needs besides the logical device.
pub(crate) struct SharedDesc {
    pub physical_device: vk::PhysicalDevice,
    pub id: DeviceId,
    pub name: String,
    pub table: MemoryTable,
    pub limits: Limits,
    pub families: Vec<u32>,
}

impl Shared {
    /// Wraps the logical `device` (created from `instance`) with its allocator and side
    /// timeline. On failure the device is destroyed.
    pub(crate) fn new(
        instance: Arc<Instance>,
        device: ash::Device,
        desc: SharedDesc,
    ) -> Result<Arc<Self>> {
        let alloc_desc = AllocatorCreateDesc {
            instance: instance.instance.clone(),
            device: device.clone(),
            physical_device: desc.physical_device,
            debug_settings: AllocatorDebugSettings::default(),
            buffer_device_address: false,
            allocation_sizes: AllocationSizes::default(),
        };
        let allocator = match Allocator::new(&alloc_desc) {
            Ok(a) => a,
            Err(e) => {
                // SAFETY: nothing was created from the device yet.
                unsafe { device.destroy_device(None) };
                return Err(backend_err("gpu_allocator::Allocator::new", e.to_string()));
            }
        };
        let mut shared = Arc::new(Shared {
            instance,
            device,
            allocator: ManuallyDrop::new(Mutex::new(allocator)),
            id: desc.id,
            name: desc.name,
            table: desc.table,
            limits: desc.limits,
            families: desc.families,
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
        Ok(shared)
    }

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

    /// The memory allocator (locked).
    pub(crate) fn allocator(&self) -> MutexGuard<'_, Allocator> {
        self.allocator.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn record(&self, e: Error) {
        let mut d = self.deferred.lock().unwrap_or_else(|p| p.into_inner());
        if d.is_none() {
            *d = Some(e);
        }
    }

    /// The first error raised while dropping buffers since the last call, if any.
    pub(crate) fn take_deferred(&self) -> Option<Error> {
        self.deferred
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// Destroys buffer `raw` and frees its memory once no work can use it any more.
    pub(crate) fn destroy_buffer(&self, raw: vk::Buffer, alloc: Option<Allocation>) {
        // A concurrent copy may still use the buffer: wait for them all first.
        if let Err(e) = self.wait_side() {
            self.record(e);
            // SAFETY: valid device; the fallback that keeps the free safe.
            let _ = unsafe { self.device.device_wait_idle() };
        }
        if let Some(a) = alloc {
            if let Err(e) = self.allocator().free(a) {
                self.record(backend_err("gpu_allocator::free", e.to_string()));
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
