//! [`VulkanBuffer`]: one `VkBuffer` with its memory, freed when dropped.

use std::ptr::NonNull;
use std::sync::Arc;

use ash::vk;
use gpu_allocator::vulkan::Allocation;
use vuma_core::{Buffer, DeviceId, Placement};

use crate::device::Shared;

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
