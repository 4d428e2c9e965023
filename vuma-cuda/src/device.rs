//! [`CudaDevice`]: opening a device (`adapter`) and the [`Device`] implementation, which
//! checks its arguments and hands the work to the modules that own it (`buffer`, `staging`,
//! `submit`, `compute`).

use std::sync::Arc;
use std::time::Instant;

use cudarc::driver::sys;
use vuma_core::{
    check_range, Arg, Device, DeviceInfo, Error, Fence, Kernel, LaunchConfig, LinkInfo, Placement,
    Result,
};

use crate::adapter::{self, init_driver};
use crate::buffer::CudaBuffer;
use crate::error::{guard, unavailable};
use crate::shared::Inner;

/// Lists every CUDA device, opened. [`Error::Unavailable`] when libcuda is missing, the
/// driver does not initialise (stub library, no kernel module) or there is no GPU.
pub fn devices() -> Result<Vec<CudaDevice>> {
    let n = init_driver()?;
    if n == 0 {
        return Err(unavailable("the CUDA driver reports no device"));
    }
    (0..n).map(CudaDevice::open).collect()
}

/// One CUDA device (its primary context) as a VUMA [`Device`].
pub struct CudaDevice {
    info: DeviceInfo,
    inner: Arc<Inner>,
}

impl std::fmt::Debug for CudaDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaDevice")
            .field("name", &self.info.name)
            .field("ordinal", &self.info.ordinal)
            .field("id", &self.info.id)
            .finish()
    }
}

impl CudaDevice {
    /// Opens device `ordinal`: retains its primary context, creates the compute and copy
    /// streams, raises the default memory pool's release threshold, pins the staging ring
    /// and gathers [`DeviceInfo`] (with NVML's link figures where NVML is present).
    pub fn open(ordinal: u32) -> Result<CudaDevice> {
        let count = init_driver()?;
        if ordinal >= count {
            return Err(Error::invalid(format!(
                "CUDA device ordinal {ordinal} does not exist ({count} present)"
            )));
        }
        guard("opening a CUDA device", || {
            let (info, inner) = adapter::open(ordinal)?;
            Ok(CudaDevice {
                info,
                inner: Arc::new(inner),
            })
        })
    }

    /// The device's raw primary context (for interop; VUMA keeps ownership).
    pub fn cu_context(&self) -> sys::CUcontext {
        self.inner.ctx
    }

    /// The stream all of VUMA's work on this device is ordered on (for interop: work a
    /// caller puts on it is ordered with VUMA's).
    pub fn cu_stream(&self) -> sys::CUstream {
        self.inner.compute
    }

    /// The staging ring's layout: (chunk slots, bytes per slot).
    pub fn ring_layout(&self) -> (usize, usize) {
        self.inner.ring_geometry()
    }

    /// Makes this device's context current on the calling thread (for raw driver calls).
    pub fn bind_to_thread(&self) -> Result<()> {
        self.inner.bind()
    }

    /// Measures pinned host→device and device→host bandwidth (64 MiB copies, best of 5)
    /// and stores it in [`DeviceInfo::host_link`] with `measured = true`.
    pub fn measure_link(&mut self) -> Result<LinkInfo> {
        const N: u64 = 64 << 20;
        let host = self.alloc(N, Placement::Staging)?;
        let dev = self.alloc(N, Placement::DeviceLocal)?;
        self.fill(&host, 0, N, 1)?;
        let time = |from: &CudaBuffer, to: &CudaBuffer| -> Result<f64> {
            self.copy(from, 0, to, 0, N)?;
            self.synchronize()?;
            let mut best = f64::MAX;
            for _ in 0..5 {
                let t = Instant::now();
                self.copy(from, 0, to, 0, N)?;
                self.synchronize()?;
                best = best.min(t.elapsed().as_secs_f64());
            }
            Ok(N as f64 / best)
        };
        let h2d = time(&host, &dev)?;
        let d2h = time(&dev, &host)?;
        let old = self.info.host_link.clone();
        let link = LinkInfo {
            h2d_bytes_per_s: h2d,
            d2h_bytes_per_s: d2h,
            measured: true,
            pcie_generation: old.as_ref().and_then(|l| l.pcie_generation),
            pcie_width: old.as_ref().and_then(|l| l.pcie_width),
        };
        self.info.host_link = Some(link.clone());
        Ok(link)
    }

    /// Writes many pieces `(offset, bytes)` into `dst` at once.
    ///
    /// For device-local `dst` the pieces are packed into the pinned staging ring and sent
    /// with one `cuMemcpyBatchAsync_v2` per ring slot (4 MiB by default), instead of one copy call per
    /// piece: on the H100 one call per 4 KiB page moves 1.6 GB/s, a batch 7.9 GB/s. Use it
    /// for many small scattered pieces (pages, tiles); a single large piece is better served
    /// by [`Device::write`]. For host-resident `dst` the CPU copies directly. Every range is
    /// checked before anything is copied; pieces may not overlap each other (later pieces
    /// win where they do, as with sequential writes).
    pub fn write_batch(&self, dst: &CudaBuffer, pieces: &[(u64, &[u8])]) -> Result<()> {
        let dst = self.inner.own(dst)?;
        for (off, bytes) in pieces {
            check_range(*off, bytes.len() as u64, dst.len)?;
        }
        let pieces: Vec<(u64, &[u8])> = pieces
            .iter()
            .filter(|(_, b)| !b.is_empty())
            .copied()
            .collect();
        if pieces.is_empty() {
            return Ok(());
        }
        self.inner.upload_batch(dst, &pieces)
    }

    /// The driver function of `kernel`'s CUDA variant, compiled and loaded (and cached) as
    /// [`Device::launch`] would: for launching it with raw driver calls on memory VUMA does
    /// not own (interop, benchmarks). The handle lives as long as this device.
    pub fn load_function(&self, kernel: &Kernel) -> Result<sys::CUfunction> {
        self.inner.load_function(kernel)
    }
}

impl Device for CudaDevice {
    type Buffer = CudaBuffer;

    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn supports(&self, placement: Placement) -> bool {
        match placement {
            Placement::HostMapped => self.info.can_map_host_memory,
            _ => true,
        }
    }

    fn alloc(&self, size: u64, placement: Placement) -> Result<CudaBuffer> {
        if size == 0 {
            return Err(Error::ZeroSize { what: "allocation" });
        }
        CudaBuffer::alloc(&self.inner, size, placement, self.info.can_map_host_memory)
    }

    fn write(&self, dst: &CudaBuffer, offset: u64, src: &[u8]) -> Result<()> {
        let dst = self.inner.own(dst)?;
        check_range(offset, src.len() as u64, dst.len)?;
        if src.is_empty() {
            return Ok(());
        }
        self.inner.upload(dst, offset, src)
    }

    fn read(&self, src: &CudaBuffer, offset: u64, dst: &mut [u8]) -> Result<()> {
        let src = self.inner.own(src)?;
        check_range(offset, dst.len() as u64, src.len)?;
        if dst.is_empty() {
            return Ok(());
        }
        self.inner.download(src, offset, dst)
    }

    fn copy(
        &self,
        src: &CudaBuffer,
        src_offset: u64,
        dst: &CudaBuffer,
        dst_offset: u64,
        len: u64,
    ) -> Result<()> {
        let (src, dst) = self
            .inner
            .copy_operands(src, src_offset, dst, dst_offset, len)?;
        if len == 0 {
            return Ok(());
        }
        self.inner
            .copy_ordered(src.dptr + src_offset, dst.dptr + dst_offset, len)
    }

    fn fill(&self, dst: &CudaBuffer, offset: u64, len: u64, value: u8) -> Result<()> {
        let dst = self.inner.own(dst)?;
        check_range(offset, len, dst.len)?;
        if len == 0 {
            return Ok(());
        }
        if dst.placement != Placement::DeviceLocal {
            return self.inner.fill_host(dst, offset, len, value);
        }
        self.inner.fill_ordered(dst.dptr + offset, len, value)
    }

    fn launch(
        &self,
        kernel: &Kernel,
        config: &LaunchConfig,
        args: &[Arg<'_, CudaBuffer>],
    ) -> Result<()> {
        self.inner.launch(kernel, config, args)
    }

    fn copy_concurrent(
        &self,
        src: &CudaBuffer,
        src_offset: u64,
        dst: &CudaBuffer,
        dst_offset: u64,
        len: u64,
    ) -> Result<Fence> {
        let (src, dst) = self
            .inner
            .copy_operands(src, src_offset, dst, dst_offset, len)?;
        if len == 0 {
            return Ok(Fence::done());
        }
        self.inner
            .copy_concurrent(src.dptr + src_offset, dst.dptr + dst_offset, len)
    }

    fn wait_for(&self, fence: &Fence) -> Result<()> {
        self.inner.wait_for(fence)
    }

    fn synchronize(&self) -> Result<()> {
        self.inner.synchronize()
    }

    unsafe fn pin_host(&self, ptr: *mut u8, len: usize) -> Result<bool> {
        if len == 0 {
            return Ok(false);
        }
        // SAFETY: the caller keeps `ptr..ptr + len` allocated and in place until
        // `unpin_host` (this function's contract, passed on).
        unsafe { self.inner.pin_host(ptr, len) }?;
        Ok(true)
    }

    unsafe fn unpin_host(&self, ptr: *mut u8) -> Result<()> {
        // SAFETY: no operation of this device uses the range any more (this function's
        // contract, passed on).
        unsafe { self.inner.unpin_host(ptr) }
    }

    fn read_host_resident(&self, src: &CudaBuffer, offset: u64, dst: &mut [u8]) -> Result<()> {
        let src = self.inner.own(src)?;
        if src.placement == Placement::DeviceLocal {
            return Err(Error::UnsupportedPlacement {
                device: self.info.name.clone(),
                placement: src.placement,
            });
        }
        check_range(offset, dst.len() as u64, src.len)?;
        self.inner.read_host(src, offset, dst);
        Ok(())
    }
}
