//! [`VulkanBuffer`]: one `VkBuffer` with its memory (from gpu-allocator, in the memory type
//! chosen for its placement), created by [`VulkanBuffer::create`] and freed when dropped.

use std::ptr::NonNull;
use std::sync::Arc;

use ash::vk;
use gpu_allocator::vulkan::{Allocation, AllocationCreateDesc, AllocationScheme};
use gpu_allocator::MemoryLocation;
use vuma_core::{Buffer, DeviceId, Error, Placement, Result};

use crate::error::{backend_err, vk_err};
use crate::shared::Shared;

/// A pointer into persistently mapped, host-coherent Vulkan memory.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MappedPtr(pub NonNull<u8>);

// SAFETY: the pointer designates memory owned by one allocation; every access to the bytes
// goes through the owning device, which serialises host accesses with its context lock and
// completes GPU work before returning, so sharing the address between threads is sound.
unsafe impl Send for MappedPtr {}
// SAFETY: see `Send`.
unsafe impl Sync for MappedPtr {}

/// A buffer of a [`VulkanDevice`](crate::VulkanDevice).
///
/// Created with `STORAGE_BUFFER | TRANSFER_SRC | TRANSFER_DST` usage, shared `CONCURRENT`ly
/// between the compute and the transfer queue family when they differ.
pub struct VulkanBuffer {
    pub(crate) shared: Arc<Shared>,
    pub(crate) raw: vk::Buffer,
    pub(crate) alloc: Option<Allocation>,
    pub(crate) mapped: Option<MappedPtr>,
    pub(crate) len: u64,
    pub(crate) placement: Placement,
    pub(crate) memory_type: u32,
}

impl std::fmt::Debug for VulkanBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VulkanBuffer")
            .field("len", &self.len)
            .field("placement", &self.placement)
            .field("memory_type", &self.memory_type)
            .field("mapped", &self.mapped.is_some())
            .finish()
    }
}

impl VulkanBuffer {
    /// The Vulkan memory type index its memory came from.
    pub fn memory_type(&self) -> u32 {
        self.memory_type
    }
    /// Whether the CPU reaches its bytes through a persistent mapping.
    pub fn is_mapped(&self) -> bool {
        self.mapped.is_some()
    }
    /// The raw `VkBuffer` handle (valid while `self` lives).
    pub fn raw(&self) -> vk::Buffer {
        self.raw
    }
}

impl VulkanBuffer {
    /// Creates a buffer of `size` bytes in memory type `type_index` of `shared`'s device,
    /// shared between the device's queue families, or used by `exclusive_family` only.
    /// Buffers of 64 MiB and more get a dedicated allocation; host-visible memory is
    /// mapped for the buffer's life.
    pub(crate) fn create(
        shared: &Arc<Shared>,
        size: u64,
        type_index: u32,
        placement: Placement,
        exclusive_family: Option<u32>,
    ) -> Result<VulkanBuffer> {
        let dev = &shared.device;
        let heap = shared.table.types[type_index as usize].heap;
        let max = shared
            .limits
            .max_allocation
            .min(shared.table.heaps.get(heap as usize).map_or(0, |h| h.size));
        if size > max {
            return Err(Error::TooLarge {
                device: shared.name.clone(),
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
        } else if shared.families.len() > 1 {
            bci = bci
                .sharing_mode(vk::SharingMode::CONCURRENT)
                .queue_family_indices(&shared.families);
        }
        let oom = || Error::OutOfMemory {
            device: shared.name.clone(),
            requested: size,
        };
        // SAFETY: valid device and create info (size checked non-zero and bounded).
        let raw = unsafe { dev.create_buffer(&bci, None) }.map_err(|e| match e {
            vk::Result::ERROR_OUT_OF_DEVICE_MEMORY | vk::Result::ERROR_OUT_OF_HOST_MEMORY => oom(),
            e => vk_err("vkCreateBuffer", e),
        })?;
        // SAFETY: `raw` was just created from `dev`.
        let mut req = unsafe { dev.get_buffer_memory_requirements(raw) };
        if req.memory_type_bits & (1 << type_index) == 0 {
            // SAFETY: `raw` is unused.
            unsafe { dev.destroy_buffer(raw, None) };
            return Err(Error::UnsupportedPlacement {
                device: shared.name.clone(),
                placement,
            });
        }
        // Force the chosen type: gpu-allocator picks among the allowed bits.
        req.memory_type_bits = 1 << type_index;
        let flags = shared.table.types[type_index as usize].flags;
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
        let alloc = shared.allocator().allocate(&AllocationCreateDesc {
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
                    gpu_allocator::AllocationError::OutOfMemory => oom(),
                    e => backend_err("gpu_allocator::allocate", e.to_string()),
                });
            }
        };
        // SAFETY: the memory comes from the allocator for this device, the range
        // `offset..offset+size` satisfies the buffer's requirements, and `raw` is unbound.
        if let Err(e) = unsafe { dev.bind_buffer_memory(raw, alloc.memory(), alloc.offset()) } {
            shared.destroy_buffer(raw, Some(alloc));
            return Err(vk_err("vkBindBufferMemory", e));
        }
        let mapped = alloc.mapped_ptr().map(|p| MappedPtr(p.cast()));
        if flags.contains(vk::MemoryPropertyFlags::HOST_VISIBLE) && mapped.is_none() {
            shared.destroy_buffer(raw, Some(alloc));
            return Err(backend_err(
                "vkMapMemory",
                "host-visible allocation is not mapped",
            ));
        }
        Ok(VulkanBuffer {
            shared: shared.clone(),
            raw,
            alloc: Some(alloc),
            mapped,
            len: size,
            placement,
            memory_type: type_index,
        })
    }

    /// `Ok` when the buffer belongs to the device of `shared`, else `Error::WrongDevice`.
    pub(crate) fn check_owner(&self, shared: &Shared) -> Result<()> {
        if self.shared.id != shared.id {
            return Err(Error::WrongDevice {
                expected: shared.name.clone(),
                found: self.shared.id.to_string(),
            });
        }
        Ok(())
    }

    /// The host view of a mapped buffer's bytes, `None` for unmapped memory.
    ///
    /// # Safety
    /// `_locked` is the device's locked context (so no other host access runs); no GPU work
    /// touching the buffer may be pending while the slice lives.
    pub(crate) unsafe fn mapped_slice<'a, L>(&self, _locked: &'a mut L) -> Option<&'a mut [u8]> {
        self.mapped.map(|p| {
            // SAFETY: the mapping covers the whole allocation (at least `len` bytes) for
            // the buffer's life; exclusivity is the caller's contract.
            unsafe { std::slice::from_raw_parts_mut(p.0.as_ptr(), self.len as usize) }
        })
    }
}

impl Buffer for VulkanBuffer {
    fn len(&self) -> u64 {
        self.len
    }
    fn placement(&self) -> Placement {
        self.placement
    }
    fn device(&self) -> DeviceId {
        self.shared.id
    }
}

impl Drop for VulkanBuffer {
    fn drop(&mut self) {
        // Every operation of the device completes before it returns, so no GPU work can
        // still use the buffer here.
        self.shared.destroy_buffer(self.raw, self.alloc.take());
    }
}
