//! [`CudaBuffer`]: allocation in the memory of its placement (stream-ordered from the
//! device's pool, or pinned host memory), ownership and range checks, and the free on drop
//! (ordered after every use).

use std::ffi::c_void;
use std::sync::Arc;

use cudarc::driver::sys;
use vuma_core::{check_range, Buffer, DeviceId, Error, Placement, Result};

use crate::conv::host_alloc_flags;
use crate::error::{check, cuda_error};
use crate::shared::Inner;

/// One allocation on a [`CudaDevice`](crate::CudaDevice).
pub struct CudaBuffer {
    pub(crate) inner: Arc<Inner>,
    /// Device address: device memory, the mapped address of host memory, or (staging) the
    /// host address, which unified addressing makes valid for copies.
    pub(crate) dptr: u64,
    /// Host address of host-resident placements (null for device-local).
    pub(crate) host: *mut u8,
    pub(crate) len: u64,
    pub(crate) placement: Placement,
}

// SAFETY: the handle is an address plus an `Arc` to thread-safe device state; the bytes are
// only reached through the device's methods, which order every access on its streams.
unsafe impl Send for CudaBuffer {}
// SAFETY: see `Send`.
unsafe impl Sync for CudaBuffer {}

impl std::fmt::Debug for CudaBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaBuffer")
            .field("device", &self.inner.name)
            .field("len", &self.len)
            .field("placement", &self.placement)
            .field("dptr", &format_args!("{:#x}", self.dptr))
            .finish()
    }
}

impl Buffer for CudaBuffer {
    fn len(&self) -> u64 {
        self.len
    }
    fn placement(&self) -> Placement {
        self.placement
    }
    fn device(&self) -> DeviceId {
        self.inner.id
    }
}

impl CudaBuffer {
    /// The address kernels and copies use (for [`Placement::HostMapped`] the mapped device
    /// pointer, for [`Placement::Staging`] the host address under unified addressing).
    pub fn device_ptr(&self) -> u64 {
        self.dptr
    }
    /// The host address of host-resident placements (`None` for device-local memory).
    /// Accessing it while device work on the buffer is in flight is a data race: call
    /// [`Device::synchronize`](vuma_core::Device::synchronize) first.
    pub fn host_ptr(&self) -> Option<*mut u8> {
        (!self.host.is_null()).then_some(self.host)
    }

    /// Allocates `size` bytes (not zero) of `placement` on `inner`'s device; `can_map`:
    /// whether the device maps host memory ([`Placement::HostMapped`]).
    pub(crate) fn alloc(
        inner: &Arc<Inner>,
        size: u64,
        placement: Placement,
        can_map: bool,
    ) -> Result<CudaBuffer> {
        match placement {
            Placement::DeviceLocal => Self::alloc_device(inner, size),
            Placement::HostMapped | Placement::Staging => {
                if placement == Placement::HostMapped && !can_map {
                    return Err(Error::UnsupportedPlacement {
                        device: inner.name.clone(),
                        placement,
                    });
                }
                Self::alloc_host(inner, size, placement)
            }
            _ => Err(Error::UnsupportedPlacement {
                device: inner.name.clone(),
                placement,
            }),
        }
    }

    fn too_large(inner: &Inner, size: u64, max: u64) -> Error {
        Error::TooLarge {
            device: inner.name.clone(),
            requested: size,
            max,
        }
    }

    fn out_of_memory(inner: &Inner, size: u64) -> Error {
        Error::OutOfMemory {
            device: inner.name.clone(),
            requested: size,
        }
    }

    /// Device memory from the default pool, ordered on the compute stream.
    fn alloc_device(inner: &Arc<Inner>, size: u64) -> Result<CudaBuffer> {
        if size > inner.total {
            return Err(Self::too_large(inner, size, inner.total));
        }
        inner.bind()?;
        let mut p: sys::CUdeviceptr = 0;
        // SAFETY: valid out-pointer and stream; size fits in usize (<= total).
        let r = unsafe { sys::cuMemAllocAsync(&mut p, size as usize, inner.compute) };
        match r {
            sys::CUresult::CUDA_SUCCESS => {}
            sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY => {
                return Err(Self::out_of_memory(inner, size))
            }
            r => return Err(cuda_error("cuMemAllocAsync", r)),
        }
        Ok(CudaBuffer {
            inner: inner.clone(),
            dptr: p,
            host: std::ptr::null_mut(),
            len: size,
            placement: Placement::DeviceLocal,
        })
    }

    /// Pinned host memory, mapped for kernels when `placement` is
    /// [`Placement::HostMapped`].
    fn alloc_host(inner: &Arc<Inner>, size: u64, placement: Placement) -> Result<CudaBuffer> {
        if size > inner.host_total || size > isize::MAX as u64 {
            return Err(Self::too_large(inner, size, inner.host_total));
        }
        inner.bind()?;
        let flags = host_alloc_flags(placement);
        let mut h: *mut c_void = std::ptr::null_mut();
        // SAFETY: valid out-pointer; not write-combined, so CPU reads stay fast.
        let r = unsafe { sys::cuMemHostAlloc(&mut h, size as usize, flags) };
        match r {
            sys::CUresult::CUDA_SUCCESS => {}
            sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY => {
                return Err(Self::out_of_memory(inner, size))
            }
            r => return Err(cuda_error("cuMemHostAlloc", r)),
        }
        let mut d: sys::CUdeviceptr = h as u64;
        if placement == Placement::HostMapped {
            // SAFETY: `h` is DEVICEMAP pinned memory of this context; flags must be 0.
            let r = unsafe { sys::cuMemHostGetDevicePointer_v2(&mut d, h, 0) };
            if let Err(e) = check("cuMemHostGetDevicePointer", r) {
                // SAFETY: allocated just above and not yet handed out.
                unsafe { sys::cuMemFreeHost(h) };
                return Err(e);
            }
        }
        Ok(CudaBuffer {
            inner: inner.clone(),
            dptr: d,
            host: h as *mut u8,
            len: size,
            placement,
        })
    }
}

impl Drop for CudaBuffer {
    fn drop(&mut self) {
        let inner = &self.inner;
        if let Err(e) = inner.bind() {
            inner.defer(e);
            return;
        }
        // A side copy may still read or write this buffer: order the free after it.
        if let Err(e) = inner.join_side() {
            inner.defer(e);
            // SAFETY: valid stream; waiting is the fallback that keeps the free safe.
            unsafe { sys::cuStreamSynchronize(inner.side) };
        }
        match self.placement {
            Placement::DeviceLocal => {
                // SAFETY: `dptr` came from cuMemAllocAsync on this context and is freed once;
                // the free is ordered on the compute stream after every use issued so far
                // (all transfers join the compute stream before returning).
                let r = unsafe { sys::cuMemFreeAsync(self.dptr, inner.compute) };
                if let Err(e) = check("cuMemFreeAsync", r) {
                    inner.defer(e);
                }
            }
            _ => {
                // SAFETY: waits for device work that may still read or write the memory.
                let r = unsafe { sys::cuStreamSynchronize(inner.compute) };
                if let Err(e) = check("cuStreamSynchronize", r) {
                    inner.defer(e);
                }
                // SAFETY: `host` came from cuMemHostAlloc and is freed once; no device work
                // uses it any more (synchronised above).
                let r = unsafe { sys::cuMemFreeHost(self.host as *mut c_void) };
                if let Err(e) = check("cuMemFreeHost", r) {
                    inner.defer(e);
                }
            }
        }
    }
}

impl Inner {
    /// `b`, when it belongs to this device; else `WrongDevice`.
    pub(crate) fn own<'a>(&self, b: &'a CudaBuffer) -> Result<&'a CudaBuffer> {
        if b.inner.id == self.id {
            Ok(b)
        } else {
            Err(Error::WrongDevice {
                expected: self.name.clone(),
                found: b.inner.id.to_string(),
            })
        }
    }

    /// Checks the operands of a device-to-device copy (`copy`, `copy_concurrent`): both
    /// buffers of this device, both ranges in bounds, no overlap within one buffer.
    pub(crate) fn copy_operands<'a>(
        &self,
        src: &'a CudaBuffer,
        src_offset: u64,
        dst: &'a CudaBuffer,
        dst_offset: u64,
        len: u64,
    ) -> Result<(&'a CudaBuffer, &'a CudaBuffer)> {
        let (src, dst) = (self.own(src)?, self.own(dst)?);
        check_range(src_offset, len, src.len)?;
        check_range(dst_offset, len, dst.len)?;
        if std::ptr::eq(src, dst) && src_offset < dst_offset + len && dst_offset < src_offset + len
        {
            return Err(Error::invalid(
                "copy within one buffer with overlapping ranges",
            ));
        }
        Ok((src, dst))
    }
}
