//! The [`Buffer`] trait: one allocation on one device.

use std::any::Any;

use crate::info::DeviceId;
use crate::placement::Placement;

/// One allocation on one device, freed when dropped.
///
/// Buffers are plain handles: their bytes are reached through the owning device's
/// [`Device`](crate::Device) methods, which check ranges and ownership.
pub trait Buffer: Send + Sync + 'static {
    /// Size in bytes.
    fn len(&self) -> u64;
    /// Whether the buffer holds zero bytes (never true for buffers VUMA hands out).
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Where the bytes live.
    fn placement(&self) -> Placement;
    /// The device that owns it.
    fn device(&self) -> DeviceId;
}

/// The object-safe face of [`Buffer`], for managers that hold buffers of several backends.
pub trait DynBuffer: Buffer {
    /// Upcast for downcasting to the backend's concrete type.
    fn as_any(&self) -> &dyn Any;
}

impl<T: Buffer> DynBuffer for T {
    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl std::fmt::Debug for dyn DynBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynBuffer")
            .field("len", &self.len())
            .field("placement", &self.placement())
            .field("device", &self.device())
            .finish()
    }
}
