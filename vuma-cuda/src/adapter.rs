//! Discovery and opening: loading the driver, a device's primary context, its name,
//! capabilities, memory and PCI address, the default memory pool that keeps freed memory,
//! the streams and the pinned staging ring, and the device's [`DeviceInfo`] (with NVML's
//! link figures where NVML is present).

use std::ffi::{c_char, c_void, CStr};

use cudarc::driver::sys;
use vuma_core::{Backend, DeviceInfo, MemoryHeap, Result};

use crate::conv::{device_kind, driver_text, host_link};
use crate::error::{check, describe, guard, unavailable};
use crate::nvml::NvmlFacts;
use crate::options::host_threads;
use crate::ring::bind;
use crate::shared::Inner;

/// Number of CUDA devices, after checking that libcuda loads and `cuInit` succeeds.
pub fn device_count() -> Result<u32> {
    init_driver()
}

/// Loads libcuda, initialises the driver and counts the devices;
/// [`Error::Unavailable`](vuma_core::Error::Unavailable) when libcuda is missing or the
/// driver does not initialise.
pub(crate) fn init_driver() -> Result<u32> {
    // SAFETY: only tries to dlopen the candidate library names.
    if !unsafe { sys::is_culib_present() } {
        return Err(unavailable(
            "libcuda not found: no NVIDIA driver on this machine (libcuda.so.1 is not on the loader path)",
        ));
    }
    guard("loading libcuda", || {
        // SAFETY: cuInit takes a flags word that must be 0.
        let r = unsafe { sys::cuInit(0) };
        if r != sys::CUresult::CUDA_SUCCESS {
            return Err(unavailable(format!("cuInit failed: {}", describe(r))));
        }
        let mut n = 0;
        // SAFETY: valid out-pointer.
        let r = unsafe { sys::cuDeviceGetCount(&mut n) };
        if r != sys::CUresult::CUDA_SUCCESS {
            return Err(unavailable(format!(
                "cuDeviceGetCount failed: {}",
                describe(r)
            )));
        }
        Ok(n.max(0) as u32)
    })
}

/// Opens device `ordinal` (checked against the count): retains its primary context,
/// creates the compute and copy streams, raises the default memory pool's release
/// threshold, pins the staging ring and gathers its [`DeviceInfo`]. On error, what was
/// created so far is released by dropping the [`Inner`].
pub(crate) fn open(ordinal: u32) -> Result<(DeviceInfo, Inner)> {
    let mut dev: sys::CUdevice = 0;
    // SAFETY: valid out-pointer; ordinal checked against the count.
    check("cuDeviceGet", unsafe {
        sys::cuDeviceGet(&mut dev, ordinal as i32)
    })?;
    let threads = host_threads();
    let mut inner = Inner::unopened(dev, ordinal, threads);
    retain_context(&mut inner)?;
    inner.name = device_name(dev)?;
    let uuid = device_uuid(dev);
    let caps = capabilities(dev, &inner.name)?;
    inner.cc = caps.cc;
    let (total, free) = memory(dev)?;
    inner.total = total;
    let drv = driver_version()?;
    let bus = pci_bus_id(dev);
    keep_freed_memory(dev)?;
    inner.create_streams()?;
    inner.pin_ring(threads)?;
    let nv = bus.as_deref().and_then(crate::nvml::query);
    let (slots, slot_bytes) = {
        let r = inner.ring.get_mut().unwrap_or_else(|e| e.into_inner());
        (r.slots.len(), r.slot_bytes)
    };
    let info = DeviceInfo {
        id: inner.id,
        backend: Backend::Cuda,
        kind: device_kind(caps.integrated),
        name: inner.name.clone(),
        ordinal,
        uuid,
        memory_total: inner.total,
        memory_budget: free,
        max_allocation: inner.total,
        l2_bytes: caps.l2,
        compute_units: caps.sms,
        host_link: Some(host_link(nv.as_ref(), caps.integrated)),
        can_map_host_memory: caps.can_map,
        unified_memory: caps.integrated,
        copy_engines: caps.engines,
        copies_overlap_kernels: true,
        submissions_wait: false,
        storage_word_bytes: 1,
        compute_capability: Some(caps.cc),
        heaps: vec![MemoryHeap {
            size: inner.total,
            budget: Some(free),
            device_local: true,
            host_visible: caps.integrated,
        }],
        driver: driver_text(drv),
        extra: extra(bus.as_deref(), nv.as_ref(), slots, slot_bytes),
    };
    Ok((info, inner))
}

/// Retains the device's primary context into `inner` (released in `Inner::drop`) and
/// makes it current.
fn retain_context(inner: &mut Inner) -> Result<()> {
    let mut ctx: sys::CUcontext = std::ptr::null_mut();
    // SAFETY: valid out-pointer and device; released in `Inner::drop`.
    check("cuDevicePrimaryCtxRetain", unsafe {
        sys::cuDevicePrimaryCtxRetain(&mut ctx, inner.cu_device)
    })?;
    inner.ctx = ctx;
    inner.retained = true;
    bind(ctx)
}

fn device_name(dev: sys::CUdevice) -> Result<String> {
    let mut name = [0 as c_char; 256];
    // SAFETY: the buffer is writable for the length passed.
    check("cuDeviceGetName", unsafe {
        sys::cuDeviceGetName(name.as_mut_ptr(), name.len() as i32, dev)
    })?;
    // SAFETY: the driver NUL-terminates within the given length.
    Ok(unsafe { CStr::from_ptr(name.as_ptr()) }
        .to_string_lossy()
        .into_owned())
}

fn device_uuid(dev: sys::CUdevice) -> Option<[u8; 16]> {
    let mut uuid = sys::CUuuid { bytes: [0; 16] };
    // SAFETY: valid out-pointer.
    match unsafe { sys::cuDeviceGetUuid_v2(&mut uuid, dev) } {
        sys::CUresult::CUDA_SUCCESS => Some(uuid.bytes.map(|b| b as u8)),
        _ => None,
    }
}

fn attr(dev: sys::CUdevice, a: sys::CUdevice_attribute) -> Result<i32> {
    let mut v = 0;
    // SAFETY: valid device and out-pointer.
    check("cuDeviceGetAttribute", unsafe {
        sys::cuDeviceGetAttribute(&mut v, a, dev)
    })?;
    Ok(v)
}

/// The device attributes VUMA uses.
struct Caps {
    cc: (u32, u32),
    sms: u32,
    l2: u64,
    integrated: bool,
    can_map: bool,
    engines: u32,
}

/// Reads the attributes of device `dev` (named `name`);
/// [`Error::Unavailable`](vuma_core::Error::Unavailable) when it has no stream-ordered
/// memory pools.
fn capabilities(dev: sys::CUdevice, name: &str) -> Result<Caps> {
    let a = |x| attr(dev, x);
    use sys::CUdevice_attribute as A;
    let cc = (
        a(A::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)? as u32,
        a(A::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)? as u32,
    );
    let sms = a(A::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)? as u32;
    let l2 = a(A::CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE)?.max(0) as u64;
    let integrated = a(A::CU_DEVICE_ATTRIBUTE_INTEGRATED)? != 0;
    let can_map = a(A::CU_DEVICE_ATTRIBUTE_CAN_MAP_HOST_MEMORY)? != 0;
    let engines = a(A::CU_DEVICE_ATTRIBUTE_ASYNC_ENGINE_COUNT)?.max(0) as u32;
    let pools = a(A::CU_DEVICE_ATTRIBUTE_MEMORY_POOLS_SUPPORTED)? != 0;
    if !pools {
        return Err(unavailable(format!(
            "{name} does not support stream-ordered memory pools (cuMemAllocAsync), which vuma-cuda needs"
        )));
    }
    Ok(Caps {
        cc,
        sms,
        l2,
        integrated,
        can_map,
        engines,
    })
}

/// The device's total memory and the free memory now (the context is current).
fn memory(dev: sys::CUdevice) -> Result<(u64, u64)> {
    let mut total = 0usize;
    // SAFETY: valid out-pointer.
    check("cuDeviceTotalMem", unsafe {
        sys::cuDeviceTotalMem_v2(&mut total, dev)
    })?;
    let (mut free, mut _t) = (0usize, 0usize);
    // SAFETY: valid out-pointers; the context is current.
    check("cuMemGetInfo", unsafe {
        sys::cuMemGetInfo_v2(&mut free, &mut _t)
    })?;
    Ok((total as u64, free as u64))
}

fn driver_version() -> Result<i32> {
    let mut drv = 0;
    // SAFETY: valid out-pointer.
    check("cuDriverGetVersion", unsafe {
        sys::cuDriverGetVersion(&mut drv)
    })?;
    Ok(drv)
}

fn pci_bus_id(dev: sys::CUdevice) -> Option<String> {
    let mut bus = [0 as c_char; 32];
    // SAFETY: the buffer is writable for the length passed.
    match unsafe { sys::cuDeviceGetPCIBusId(bus.as_mut_ptr(), bus.len() as i32, dev) } {
        // SAFETY: NUL-terminated by the driver on success.
        sys::CUresult::CUDA_SUCCESS => Some(
            unsafe { CStr::from_ptr(bus.as_ptr()) }
                .to_string_lossy()
                .into_owned(),
        ),
        _ => None,
    }
}

/// Stream-ordered allocation from the default pool, which keeps freed memory: raises the
/// pool's release threshold to `u64::MAX`.
fn keep_freed_memory(dev: sys::CUdevice) -> Result<()> {
    let mut pool: sys::CUmemoryPool = std::ptr::null_mut();
    // SAFETY: valid out-pointer and device.
    check("cuDeviceGetDefaultMemPool", unsafe {
        sys::cuDeviceGetDefaultMemPool(&mut pool, dev)
    })?;
    let mut keep: u64 = u64::MAX;
    // SAFETY: the release threshold attribute takes a pointer to a cuuint64_t.
    check("cuMemPoolSetAttribute", unsafe {
        sys::cuMemPoolSetAttribute(
            pool,
            sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD,
            &mut keep as *mut u64 as *mut c_void,
        )
    })
}

/// `DeviceInfo::extra`: the PCI address, NVML's facts (or why the link is assumed) and the
/// staging ring's layout.
fn extra(
    bus: Option<&str>,
    nv: Option<&NvmlFacts>,
    slots: usize,
    slot_bytes: usize,
) -> Vec<(String, String)> {
    let mut extra = Vec::new();
    if let Some(b) = bus {
        extra.push(("pci_bus_id".to_string(), b.to_string()));
    }
    if let Some(f) = nv {
        extra.extend(f.extra());
    } else {
        extra.push((
            "host_link".into(),
            "NVML unavailable: assumed PCIe gen4 x16".into(),
        ));
    }
    extra.push((
        "staging_ring".into(),
        format!(
            "{slots} x {} pinned",
            vuma_core::human_bytes(slot_bytes as u64)
        ),
    ));
    extra
}
