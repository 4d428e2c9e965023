//! [`RawStorage`]: the tiny trait pools are written against.
//!
//! A backend provides big blocks; [`Pool`](crate::Pool) cuts them into buffers. Any
//! [`DynDevice`] with a placement is a raw storage
//! ([`DeviceStorage`]), so every backend gets pooling for free, and the pool logic is tested
//! once on host memory.

use std::sync::Arc;

use crate::buffer::DynBuffer;
use crate::device::DynDevice;
use crate::error::Result;
use crate::placement::Placement;

/// A source of large blocks of memory.
pub trait RawStorage: Send + Sync {
    /// The handle of one block.
    type Block: Send + Sync;
    /// Allocates a block of exactly `size` bytes.
    fn alloc_block(&self, size: u64) -> Result<Self::Block>;
    /// Returns a block (may be deferred until the device's work on it completes).
    fn free_block(&self, block: Self::Block);
    /// Alignment of sub-allocations the device needs (kernel argument offsets).
    fn alignment(&self) -> u64 {
        256
    }
}

/// A device seen as raw storage of one placement.
#[derive(Clone)]
pub struct DeviceStorage {
    /// The device.
    pub device: Arc<dyn DynDevice>,
    /// The placement of every block.
    pub placement: Placement,
}

impl std::fmt::Debug for DeviceStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceStorage")
            .field("device", &self.device.info().name)
            .field("placement", &self.placement)
            .finish()
    }
}

impl RawStorage for DeviceStorage {
    type Block = Arc<dyn DynBuffer>;
    fn alloc_block(&self, size: u64) -> Result<Self::Block> {
        Ok(Arc::from(self.device.alloc(size, self.placement)?))
    }
    fn free_block(&self, block: Self::Block) {
        drop(block)
    }
}
