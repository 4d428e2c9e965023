//! The [`Device`] trait (static, one implementation per backend) and its object-safe face
//! [`DynDevice`], implemented once for every `Device` by a blanket impl, so that one manager
//! can hold devices of several backends as `Arc<dyn DynDevice>`.

use std::any::Any;
use std::sync::Arc;

use crate::buffer::{Buffer, DynBuffer};
use crate::error::{Error, Result};
use crate::info::DeviceInfo;
use crate::kernel::{Arg, Kernel, LaunchConfig};
use crate::placement::Placement;
use crate::region::HostRegion;

/// One device: memory, copies, kernel launches.
///
/// All operations are ordered: an operation observes the effects of every operation issued
/// before it on the same device. `read` returns once the bytes are in `dst`; other
/// operations may complete asynchronously, and [`Device::synchronize`] waits for all of
/// them. Every method validates its input and returns a typed [`Error`]; none panics.
pub trait Device: Send + Sync + 'static {
    /// This backend's buffer type.
    type Buffer: Buffer;

    /// What the device is.
    fn info(&self) -> &DeviceInfo;

    /// Whether the device can provide `placement`.
    fn supports(&self, placement: Placement) -> bool;

    /// Allocates `size` bytes (contents unspecified). Zero is [`Error::ZeroSize`]; sizes that
    /// can never fit are [`Error::TooLarge`]; a full device is [`Error::OutOfMemory`].
    fn alloc(&self, size: u64, placement: Placement) -> Result<Self::Buffer>;

    /// Copies host bytes `src` into `dst` at `offset`.
    fn write(&self, dst: &Self::Buffer, offset: u64, src: &[u8]) -> Result<()>;

    /// Copies `dst.len()` bytes from `src` at `offset` into host memory; returns when done.
    fn read(&self, src: &Self::Buffer, offset: u64, dst: &mut [u8]) -> Result<()>;

    /// Copies `len` bytes between two buffers of this device (the same buffer is allowed
    /// when the ranges do not overlap).
    fn copy(
        &self,
        src: &Self::Buffer,
        src_offset: u64,
        dst: &Self::Buffer,
        dst_offset: u64,
        len: u64,
    ) -> Result<()>;

    /// Sets `len` bytes of `dst` at `offset` to `value`.
    fn fill(&self, dst: &Self::Buffer, offset: u64, len: u64, value: u8) -> Result<()>;

    /// Runs `kernel`'s variant for this backend with `args`.
    fn launch(
        &self,
        kernel: &Kernel,
        config: &LaunchConfig,
        args: &[Arg<'_, Self::Buffer>],
    ) -> Result<()>;

    /// Copies like [`Device::copy`] — ordered after every operation issued before it — but
    /// operations issued *after* it are not ordered after it: they may run while the copy
    /// is in flight, until one of them is preceded by [`Device::wait_for`] on the returned
    /// [`Fence`]. This is how a copy overlaps kernels (copy chunk i+1 while chunk i is
    /// decoded). Until that wait, later operations must neither write `src`'s range nor
    /// touch `dst`'s range; [`Device::synchronize`] and dropping a buffer wait for the copy.
    ///
    /// The default runs an ordered [`Device::copy`] and returns [`Fence::done`]: always
    /// correct, never overlapped. Backends with a separate copy queue override it.
    fn copy_concurrent(
        &self,
        src: &Self::Buffer,
        src_offset: u64,
        dst: &Self::Buffer,
        dst_offset: u64,
        len: u64,
    ) -> Result<Fence> {
        self.copy(src, src_offset, dst, dst_offset, len)?;
        Ok(Fence::done())
    }

    /// Orders every operation issued after this call after the work `fence` stands for.
    /// A fence of another device is [`Error::WrongDevice`]; [`Fence::done`] is a no-op.
    fn wait_for(&self, fence: &Fence) -> Result<()> {
        if fence.is_done() {
            Ok(())
        } else {
            Err(Error::WrongDevice {
                expected: self.info().name.clone(),
                found: "a fence of another device".into(),
            })
        }
    }

    /// Waits until every operation issued so far has completed, and reports any error that
    /// an asynchronous operation (or a `Drop`) recorded.
    fn synchronize(&self) -> Result<()>;

    /// Page-locks the host memory `ptr..ptr + len` for this device, so that [`Device::write`]
    /// from and [`Device::read`] into host ranges inside it run as DMA at the link's speed
    /// (no staging through a bounce buffer). `Ok(false)`: the device has no use for it (the
    /// default; devices that share host memory, backends without host registration).
    ///
    /// # Safety
    /// The memory must stay allocated (neither freed nor moved) until
    /// [`Device::unpin_host`] was called for `ptr` on this device.
    unsafe fn pin_host(&self, ptr: *mut u8, len: usize) -> Result<bool> {
        let _ = (ptr, len);
        Ok(false)
    }

    /// Undoes [`Device::pin_host`] for the range starting at `ptr`. No-op for a pointer
    /// this device did not pin.
    ///
    /// # Safety
    /// No operation of this device may still be using the range (a `write` or `read` that
    /// returned is done with it).
    unsafe fn unpin_host(&self, ptr: *mut u8) -> Result<()> {
        let _ = ptr;
        Ok(())
    }

    /// Reads `src[offset..offset + dst.len()]` of a buffer whose bytes live in host memory
    /// ([`Placement::Staging`], [`Placement::HostMapped`]) straight from that memory: no
    /// driver call, no wait for device work. This is how data the device finished writing
    /// before it was lost (packed host copies) is recovered: after a loss no device work
    /// runs any more. A range a device operation still writes reads as whatever is there.
    /// Device-local buffers: [`Error::UnsupportedPlacement`].
    /// The default reads through [`Device::read`] (devices with no separate host view).
    fn read_host_resident(&self, src: &Self::Buffer, offset: u64, dst: &mut [u8]) -> Result<()> {
        self.read(src, offset, dst)
    }

    /// Whether kernels of this device can use host memory in place: [`Device::alias_host`]
    /// makes buffers of it. The memory manager then hands kernels on this device a
    /// buffer's host copy itself — nothing allocated on the device, nothing copied — when
    /// the device shares host memory ([`DeviceInfo::unified_memory`] and
    /// [`DeviceInfo::can_map_host_memory`]). The default: no (the manager gives the
    /// device copies of its own).
    fn can_alias_host(&self) -> bool {
        false
    }

    /// A buffer of this device ([`Placement::HostMapped`]) that *is* the host memory of
    /// `region`, lent by the memory manager for the time of in-place leases: kernels and
    /// the other operations read and write the region's bytes themselves, each operation
    /// holding the region's lock ([`HostRegion::lock`]) for the time it touches them, and
    /// failing once the region was taken back. Nothing is allocated or copied.
    /// The default: [`Error::UnsupportedPlacement`] (devices whose
    /// [`Device::can_alias_host`] says no).
    fn alias_host(&self, region: Arc<HostRegion>) -> Result<Self::Buffer> {
        let _ = region;
        Err(Error::UnsupportedPlacement {
            device: self.info().name.clone(),
            placement: Placement::HostMapped,
        })
    }
}

/// The object-safe face of [`Device`]. Implemented for every `Device`; buffers of the
/// wrong backend or of another device are an [`Error::WrongDevice`].
pub trait DynDevice: Send + Sync {
    /// What the device is.
    fn info(&self) -> &DeviceInfo;
    /// Whether the device can provide `placement`.
    fn supports(&self, placement: Placement) -> bool;
    /// See [`Device::alloc`].
    fn alloc(&self, size: u64, placement: Placement) -> Result<Box<dyn DynBuffer>>;
    /// See [`Device::write`].
    fn write(&self, dst: &dyn DynBuffer, offset: u64, src: &[u8]) -> Result<()>;
    /// See [`Device::read`].
    fn read(&self, src: &dyn DynBuffer, offset: u64, dst: &mut [u8]) -> Result<()>;
    /// See [`Device::copy`].
    fn copy(
        &self,
        src: &dyn DynBuffer,
        src_offset: u64,
        dst: &dyn DynBuffer,
        dst_offset: u64,
        len: u64,
    ) -> Result<()>;
    /// See [`Device::fill`].
    fn fill(&self, dst: &dyn DynBuffer, offset: u64, len: u64, value: u8) -> Result<()>;
    /// See [`Device::launch`].
    fn launch(
        &self,
        kernel: &Kernel,
        config: &LaunchConfig,
        args: &[Arg<'_, dyn DynBuffer>],
    ) -> Result<()>;
    /// See [`Device::copy_concurrent`].
    fn copy_concurrent(
        &self,
        src: &dyn DynBuffer,
        src_offset: u64,
        dst: &dyn DynBuffer,
        dst_offset: u64,
        len: u64,
    ) -> Result<Fence>;
    /// See [`Device::wait_for`].
    fn wait_for(&self, fence: &Fence) -> Result<()>;
    /// See [`Device::pin_host`].
    ///
    /// # Safety
    /// As [`Device::pin_host`].
    unsafe fn pin_host(&self, ptr: *mut u8, len: usize) -> Result<bool>;
    /// See [`Device::unpin_host`].
    ///
    /// # Safety
    /// As [`Device::unpin_host`].
    unsafe fn unpin_host(&self, ptr: *mut u8) -> Result<()>;
    /// See [`Device::synchronize`].
    fn synchronize(&self) -> Result<()>;
    /// See [`Device::read_host_resident`].
    fn read_host_resident(&self, src: &dyn DynBuffer, offset: u64, dst: &mut [u8]) -> Result<()>;
    /// See [`Device::can_alias_host`].
    fn can_alias_host(&self) -> bool;
    /// See [`Device::alias_host`].
    fn alias_host(&self, region: Arc<HostRegion>) -> Result<Box<dyn DynBuffer>>;
}

/// A point in a device's work that other work can be ordered after (see
/// [`Device::copy_concurrent`] and [`Device::wait_for`]). Cheap to clone; holds whatever
/// the backend needs (a CUDA event, …) and keeps it alive while any clone lives.
#[derive(Clone, Default)]
pub struct Fence(Option<Arc<dyn Any + Send + Sync>>);

impl Fence {
    /// A fence that is already reached (waiting for it is a no-op).
    pub fn done() -> Self {
        Fence(None)
    }

    /// A backend's fence carrying `payload` (which the backend downcasts in `wait_for`).
    pub fn new<T: Any + Send + Sync>(payload: T) -> Self {
        Fence(Some(Arc::new(payload)))
    }

    /// Whether this is [`Fence::done`].
    pub fn is_done(&self) -> bool {
        self.0.is_none()
    }

    /// The backend payload, when it is a `T`.
    pub fn payload<T: Any>(&self) -> Option<&T> {
        self.0.as_deref().and_then(|p| p.downcast_ref::<T>())
    }
}

impl std::fmt::Debug for Fence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.is_done() {
            "Fence(done)"
        } else {
            "Fence(pending)"
        })
    }
}

fn downcast<'a, D: Device>(dev: &D, b: &'a dyn DynBuffer) -> Result<&'a D::Buffer> {
    match b.as_any().downcast_ref::<D::Buffer>() {
        Some(b) if b.device() == dev.info().id => Ok(b),
        _ => Err(Error::WrongDevice {
            expected: dev.info().name.clone(),
            found: b.device().to_string(),
        }),
    }
}

impl<D: Device> DynDevice for D {
    fn info(&self) -> &DeviceInfo {
        Device::info(self)
    }
    fn supports(&self, placement: Placement) -> bool {
        Device::supports(self, placement)
    }
    fn alloc(&self, size: u64, placement: Placement) -> Result<Box<dyn DynBuffer>> {
        Ok(Box::new(Device::alloc(self, size, placement)?))
    }
    fn write(&self, dst: &dyn DynBuffer, offset: u64, src: &[u8]) -> Result<()> {
        Device::write(self, downcast(self, dst)?, offset, src)
    }
    fn read(&self, src: &dyn DynBuffer, offset: u64, dst: &mut [u8]) -> Result<()> {
        Device::read(self, downcast(self, src)?, offset, dst)
    }
    fn copy(
        &self,
        src: &dyn DynBuffer,
        src_offset: u64,
        dst: &dyn DynBuffer,
        dst_offset: u64,
        len: u64,
    ) -> Result<()> {
        Device::copy(
            self,
            downcast(self, src)?,
            src_offset,
            downcast(self, dst)?,
            dst_offset,
            len,
        )
    }
    fn fill(&self, dst: &dyn DynBuffer, offset: u64, len: u64, value: u8) -> Result<()> {
        Device::fill(self, downcast(self, dst)?, offset, len, value)
    }
    fn launch(
        &self,
        kernel: &Kernel,
        config: &LaunchConfig,
        args: &[Arg<'_, dyn DynBuffer>],
    ) -> Result<()> {
        let mut typed = Vec::with_capacity(args.len());
        for a in args {
            typed.push(match *a {
                Arg::Buffer {
                    buffer,
                    offset,
                    len,
                    access,
                } => Arg::Buffer {
                    buffer: downcast(self, buffer)?,
                    offset,
                    len,
                    access,
                },
                Arg::Scalar(s) => Arg::Scalar(s),
            });
        }
        Device::launch(self, kernel, config, &typed)
    }
    fn copy_concurrent(
        &self,
        src: &dyn DynBuffer,
        src_offset: u64,
        dst: &dyn DynBuffer,
        dst_offset: u64,
        len: u64,
    ) -> Result<Fence> {
        Device::copy_concurrent(
            self,
            downcast(self, src)?,
            src_offset,
            downcast(self, dst)?,
            dst_offset,
            len,
        )
    }
    fn wait_for(&self, fence: &Fence) -> Result<()> {
        Device::wait_for(self, fence)
    }
    fn synchronize(&self) -> Result<()> {
        Device::synchronize(self)
    }
    unsafe fn pin_host(&self, ptr: *mut u8, len: usize) -> Result<bool> {
        // SAFETY: the caller keeps the contract of `Device::pin_host`.
        unsafe { Device::pin_host(self, ptr, len) }
    }
    unsafe fn unpin_host(&self, ptr: *mut u8) -> Result<()> {
        // SAFETY: the caller keeps the contract of `Device::unpin_host`.
        unsafe { Device::unpin_host(self, ptr) }
    }
    fn read_host_resident(&self, src: &dyn DynBuffer, offset: u64, dst: &mut [u8]) -> Result<()> {
        Device::read_host_resident(self, downcast(self, src)?, offset, dst)
    }
    fn can_alias_host(&self) -> bool {
        Device::can_alias_host(self)
    }
    fn alias_host(&self, region: Arc<HostRegion>) -> Result<Box<dyn DynBuffer>> {
        Ok(Box::new(Device::alias_host(self, region)?))
    }
}

impl std::fmt::Debug for dyn DynDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let i = self.info();
        f.debug_struct("DynDevice")
            .field("id", &i.id)
            .field("backend", &i.backend)
            .field("name", &i.name)
            .finish()
    }
}

/// Validates the buffer arguments of a launch: ranges in bounds, non-empty, and no buffer
/// range written by one argument overlapping another argument's range of the same buffer.
/// Backends call it before touching any argument.
pub fn check_launch_args<B: Buffer>(kernel: &Kernel, args: &[Arg<'_, B>]) -> Result<()> {
    if let Some(sig) = kernel.signature() {
        sig.check(kernel.name(), args)?;
    }
    let bufs: Vec<(&B, u64, u64, bool)> = args
        .iter()
        .filter_map(|a| match *a {
            Arg::Buffer {
                buffer,
                offset,
                len,
                access,
            } => Some((buffer, offset, len, access.writes())),
            Arg::Scalar(_) => None,
        })
        .collect();
    for &(b, off, len, _) in &bufs {
        crate::error::check_range(off, len, b.len())?;
        if len == 0 {
            return Err(Error::ZeroSize {
                what: "kernel buffer argument",
            });
        }
    }
    for (i, &(a, ao, al, aw)) in bufs.iter().enumerate() {
        for &(b, bo, bl, bw) in &bufs[i + 1..] {
            let same = std::ptr::eq(a as *const B as *const u8, b as *const B as *const u8);
            if same && (aw || bw) && ao < bo + bl && bo < ao + al {
                return Err(Error::invalid(format!(
                    "kernel `{}`: overlapping ranges of one buffer, at least one written",
                    kernel.name()
                )));
            }
        }
    }
    Ok(())
}
