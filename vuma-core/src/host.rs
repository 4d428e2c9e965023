//! The host device: the CPU as a [`Device`]. It needs no GPU, runs host-function kernels,
//! and is the embedded default on machines without one. Every placement is ordinary host
//! memory (64-byte aligned, zero-initialised).

use std::alloc::Layout;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::buffer::Buffer;
use crate::device::{check_launch_args, Device};
use crate::error::{check_range, Error, Result};
use crate::fault::{FaultPlan, FaultSite};
use crate::info::{Backend, DeviceId, DeviceInfo, DeviceKind, LinkInfo, MemoryHeap};
use crate::kernel::{Arg, HostLaunch, Kernel, KernelVariant, LaunchConfig};
use crate::placement::Placement;

const ALIGN: usize = 64;

/// An aligned, zeroed heap allocation.
struct HostMem {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: `HostMem` owns its allocation exclusively (like `Box<[u8]>`); all access to the
// bytes goes through the owning `HostDevice`, which serialises it with its queue lock.
unsafe impl Send for HostMem {}
// SAFETY: see `Send`: shared references never touch the bytes without the device's lock.
unsafe impl Sync for HostMem {}

impl HostMem {
    fn new(len: usize) -> Option<Self> {
        let layout = Layout::from_size_align(len, ALIGN).ok()?;
        // SAFETY: `len` is non-zero (checked by the caller) so the layout has non-zero size.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        NonNull::new(ptr).map(|ptr| HostMem { ptr, len })
    }
}

impl Drop for HostMem {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with exactly this layout (which was valid then).
        unsafe {
            std::alloc::dealloc(
                self.ptr.as_ptr(),
                Layout::from_size_align_unchecked(self.len, ALIGN),
            )
        }
    }
}

/// A buffer of the host device.
#[derive(Clone)]
pub struct HostBuffer {
    mem: Arc<HostMem>,
    placement: Placement,
    device: DeviceId,
}

impl std::fmt::Debug for HostBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostBuffer")
            .field("len", &self.mem.len)
            .field("placement", &self.placement)
            .finish()
    }
}

impl Buffer for HostBuffer {
    fn len(&self) -> u64 {
        self.mem.len as u64
    }
    fn placement(&self) -> Placement {
        self.placement
    }
    fn device(&self) -> DeviceId {
        self.device
    }
}

/// What a [`HostDevice`] made with [`HostDevice::with_pin_log`] was asked to pin (tests of
/// pinned host copies: such a device "pins" host ranges as a discrete GPU would, and
/// counts the calls).
#[derive(Debug, Default)]
pub struct PinLog {
    inner: Mutex<PinLogInner>,
}

#[derive(Debug, Default)]
struct PinLogInner {
    pins: u64,
    unpins: u64,
    /// Ranges pinned now: start address and length.
    live: Vec<(usize, usize)>,
}

impl PinLog {
    fn lock(&self) -> MutexGuard<'_, PinLogInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
    /// Ranges pinned so far.
    pub fn pins(&self) -> u64 {
        self.lock().pins
    }
    /// Ranges unpinned so far.
    pub fn unpins(&self) -> u64 {
        self.lock().unpins
    }
    /// Ranges pinned now.
    pub fn live(&self) -> usize {
        self.lock().live.len()
    }
    /// Bytes pinned now.
    pub fn live_bytes(&self) -> u64 {
        self.lock().live.iter().map(|&(_, n)| n as u64).sum()
    }
}

/// The CPU as a device.
#[derive(Debug)]
pub struct HostDevice {
    info: DeviceInfo,
    queue: Mutex<()>,
    faults: Option<Arc<FaultPlan>>,
    pins: Option<Arc<PinLog>>,
}

impl Default for HostDevice {
    fn default() -> Self {
        Self::new()
    }
}

impl HostDevice {
    /// The machine's CPU, with its physical memory as the budget.
    pub fn new() -> Self {
        let total = physical_memory().unwrap_or(8 << 30);
        Self::with_budget("host", total)
    }

    /// A host device with a given name and memory budget (useful to model small devices in
    /// tests: the memory manager enforces the budget).
    pub fn with_budget(name: impl Into<String>, budget: u64) -> Self {
        let total = physical_memory().unwrap_or(8 << 30);
        let cores = u32::try_from(cores()).unwrap_or(u32::MAX);
        HostDevice {
            info: DeviceInfo {
                id: DeviceId::fresh(),
                backend: Backend::Host,
                kind: DeviceKind::Cpu,
                name: name.into(),
                ordinal: 0,
                uuid: None,
                memory_total: total,
                memory_budget: budget.min(total),
                max_allocation: total,
                l2_bytes: last_level_cache().unwrap_or(0),
                compute_units: cores,
                host_link: Some(LinkInfo::shared_memory(10e9)),
                can_map_host_memory: true,
                unified_memory: true,
                copy_engines: 0,
                copies_overlap_kernels: false,
                submissions_wait: false,
                storage_word_bytes: 1,
                compute_capability: None,
                heaps: vec![MemoryHeap {
                    size: total,
                    budget: Some(budget.min(total)),
                    device_local: true,
                    host_visible: true,
                }],
                driver: format!("vuma-core {}", env!("CARGO_PKG_VERSION")),
                extra: Vec::new(),
            },
            queue: Mutex::new(()),
            faults: None,
            pins: None,
        }
    }

    /// Models a discrete device behind `link` that cannot map host memory (tests of what
    /// crosses a link): the memory manager places device-local copies and counts their
    /// transfers as link traffic. Its memory is still host memory.
    pub fn behind_link(mut self, link: LinkInfo) -> Self {
        self.info.host_link = Some(link);
        self.info.unified_memory = false;
        self.info.can_map_host_memory = false;
        self
    }

    /// Makes the device pin host ranges (it reports pinning as done, and records it in
    /// `log`) as a discrete GPU would; pinning fails once a fault plan lost the device.
    /// Host memory is not locked: a test of what is pinned when.
    pub fn with_pin_log(mut self, log: Arc<PinLog>) -> Self {
        self.pins = Some(log);
        self
    }

    /// Makes allocations, copies and launches fail according to `plan` (tests).
    pub fn with_faults(mut self, plan: Arc<FaultPlan>) -> Self {
        self.faults = Some(plan);
        self
    }

    /// `Error::DeviceLost` once the fault plan lost the device.
    fn alive(&self) -> Result<()> {
        if self.faults.as_ref().is_some_and(|p| p.device_lost()) {
            return Err(Error::DeviceLost {
                device: self.info.name.clone(),
                reason: "lost by the fault plan".into(),
            });
        }
        Ok(())
    }

    fn fault(&self, site: FaultSite) -> Result<()> {
        self.alive()?;
        match &self.faults {
            Some(p) if p.should_fail(site) => Err(Error::Injected(match site {
                FaultSite::Alloc => "host alloc",
                FaultSite::Write => "host write",
                FaultSite::Read => "host read",
                FaultSite::Copy => "host copy",
                FaultSite::Launch => "host launch",
            })),
            _ => Ok(()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, ()> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn own<'a>(&self, b: &'a HostBuffer) -> Result<&'a HostBuffer> {
        if b.device == self.info.id {
            Ok(b)
        } else {
            Err(Error::WrongDevice {
                expected: self.info.name.clone(),
                found: b.device.to_string(),
            })
        }
    }
}

/// Range as `usize` after a bounds check (so the cast is lossless).
fn range(b: &HostBuffer, offset: u64, len: u64) -> Result<(usize, usize)> {
    check_range(offset, len, b.len())?;
    Ok((offset as usize, len as usize))
}

impl Device for HostDevice {
    type Buffer = HostBuffer;

    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn supports(&self, _placement: Placement) -> bool {
        true
    }

    fn alloc(&self, size: u64, placement: Placement) -> Result<HostBuffer> {
        if size == 0 {
            return Err(Error::ZeroSize { what: "allocation" });
        }
        if size > self.info.max_allocation || size > isize::MAX as u64 - ALIGN as u64 {
            return Err(Error::TooLarge {
                device: self.info.name.clone(),
                requested: size,
                max: self.info.max_allocation,
            });
        }
        self.fault(FaultSite::Alloc)?;
        let mem = HostMem::new(size as usize).ok_or_else(|| Error::OutOfMemory {
            device: self.info.name.clone(),
            requested: size,
        })?;
        Ok(HostBuffer {
            mem: Arc::new(mem),
            placement,
            device: self.info.id,
        })
    }

    fn write(&self, dst: &HostBuffer, offset: u64, src: &[u8]) -> Result<()> {
        let dst = self.own(dst)?;
        let (o, n) = range(dst, offset, src.len() as u64)?;
        self.fault(FaultSite::Write)?;
        let _q = self.lock();
        // SAFETY: `o + n <= len` was checked; the queue lock gives exclusive access to the
        // bytes; `src` is a distinct host slice (it cannot alias a buffer, whose bytes are
        // never handed out as references outside the lock).
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst.mem.ptr.as_ptr().add(o), n) };
        Ok(())
    }

    fn read(&self, src: &HostBuffer, offset: u64, dst: &mut [u8]) -> Result<()> {
        let src = self.own(src)?;
        let (o, n) = range(src, offset, dst.len() as u64)?;
        self.fault(FaultSite::Read)?;
        let _q = self.lock();
        // SAFETY: bounds checked; exclusive access under the queue lock; `dst` is distinct.
        unsafe { std::ptr::copy_nonoverlapping(src.mem.ptr.as_ptr().add(o), dst.as_mut_ptr(), n) };
        Ok(())
    }

    fn copy(
        &self,
        src: &HostBuffer,
        src_offset: u64,
        dst: &HostBuffer,
        dst_offset: u64,
        len: u64,
    ) -> Result<()> {
        let (src, dst) = (self.own(src)?, self.own(dst)?);
        let (so, n) = range(src, src_offset, len)?;
        let (d_o, _) = range(dst, dst_offset, len)?;
        let same = Arc::ptr_eq(&src.mem, &dst.mem);
        if same && so < d_o + n && d_o < so + n {
            return Err(Error::invalid(
                "copy within one buffer with overlapping ranges",
            ));
        }
        self.fault(FaultSite::Copy)?;
        let _q = self.lock();
        // SAFETY: both ranges are in bounds and do not overlap (checked above for the same
        // buffer; distinct allocations never overlap); exclusive access under the lock.
        unsafe {
            std::ptr::copy_nonoverlapping(
                src.mem.ptr.as_ptr().add(so),
                dst.mem.ptr.as_ptr().add(d_o),
                n,
            )
        };
        Ok(())
    }

    fn fill(&self, dst: &HostBuffer, offset: u64, len: u64, value: u8) -> Result<()> {
        let dst = self.own(dst)?;
        let (o, n) = range(dst, offset, len)?;
        self.alive()?;
        let _q = self.lock();
        // SAFETY: bounds checked; exclusive access under the queue lock.
        unsafe { std::ptr::write_bytes(dst.mem.ptr.as_ptr().add(o), value, n) };
        Ok(())
    }

    fn launch(
        &self,
        kernel: &Kernel,
        config: &LaunchConfig,
        args: &[Arg<'_, HostBuffer>],
    ) -> Result<()> {
        let Some(KernelVariant::Host(f)) = kernel.variant_for(Backend::Host) else {
            return Err(Error::NoKernelVariant {
                kernel: kernel.name().to_string(),
                backend: Backend::Host,
            });
        };
        for a in args {
            if let Arg::Buffer { buffer, .. } = a {
                self.own(buffer)?;
            }
        }
        check_launch_args(kernel, args)?;
        // Host functions get `&mut [u8]` per argument, so even read-only ranges of one
        // buffer must not overlap.
        let ranges: Vec<(&HostBuffer, usize, usize)> = args
            .iter()
            .filter_map(|a| match *a {
                Arg::Buffer {
                    buffer,
                    offset,
                    len,
                    ..
                } => Some((buffer, offset as usize, len as usize)),
                Arg::Scalar(_) => None,
            })
            .collect();
        for (i, &(a, ao, al)) in ranges.iter().enumerate() {
            for &(b, bo, bl) in &ranges[i + 1..] {
                if Arc::ptr_eq(&a.mem, &b.mem) && ao < bo + bl && bo < ao + al {
                    return Err(Error::invalid(format!(
                        "kernel `{}`: host functions cannot take overlapping ranges of one buffer",
                        kernel.name()
                    )));
                }
            }
        }
        self.fault(FaultSite::Launch)?;
        let _q = self.lock();
        let buffers: Vec<&mut [u8]> = ranges
            .iter()
            .map(|&(b, o, n)| {
                // SAFETY: ranges are in bounds (check_launch_args) and pairwise disjoint
                // (checked above), so the mutable slices never alias; the queue lock keeps
                // every other access out until the function returns and the slices die.
                unsafe { std::slice::from_raw_parts_mut(b.mem.ptr.as_ptr().add(o), n) }
            })
            .collect();
        let scalars = args
            .iter()
            .filter_map(|a| match a {
                Arg::Scalar(s) => Some(*s),
                Arg::Buffer { .. } => None,
            })
            .collect();
        let mut launch = HostLaunch {
            buffers,
            scalars,
            config: *config,
        };
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&mut launch)));
        match r {
            Ok(r) => r,
            Err(p) => Err(Error::Kernel {
                kernel: kernel.name().to_string(),
                reason: format!(
                    "host function panicked: {}",
                    p.downcast_ref::<&str>()
                        .copied()
                        .or(p.downcast_ref::<String>().map(|s| s.as_str()))
                        .unwrap_or("(no message)")
                ),
            }),
        }
    }

    fn synchronize(&self) -> Result<()> {
        self.alive()
    }

    unsafe fn pin_host(&self, ptr: *mut u8, len: usize) -> Result<bool> {
        let Some(log) = &self.pins else {
            return Ok(false);
        };
        self.alive()?;
        let mut l = log.lock();
        if l.live.iter().any(|&(p, _)| p == ptr as usize) {
            return Err(Error::invalid("host range pinned twice"));
        }
        l.pins += 1;
        l.live.push((ptr as usize, len));
        Ok(true)
    }

    unsafe fn unpin_host(&self, ptr: *mut u8) -> Result<()> {
        // Even a lost device gives its registrations up (they go with its context).
        if let Some(log) = &self.pins {
            let mut l = log.lock();
            if let Some(i) = l.live.iter().position(|&(p, _)| p == ptr as usize) {
                l.live.swap_remove(i);
                l.unpins += 1;
            }
        }
        Ok(())
    }

    /// Like [`Device::read`] without the fault plan, for host-resident placements only
    /// (device-local ones model VRAM, which a lost device takes with it).
    fn read_host_resident(&self, src: &HostBuffer, offset: u64, dst: &mut [u8]) -> Result<()> {
        let src = self.own(src)?;
        if src.placement == Placement::DeviceLocal {
            return Err(Error::UnsupportedPlacement {
                device: self.info.name.clone(),
                placement: src.placement,
            });
        }
        let (o, n) = range(src, offset, dst.len() as u64)?;
        let _q = self.lock();
        // SAFETY: bounds checked; exclusive access under the queue lock; `dst` is distinct.
        unsafe { std::ptr::copy_nonoverlapping(src.mem.ptr.as_ptr().add(o), dst.as_mut_ptr(), n) };
        Ok(())
    }
}

/// Hardware threads available to this process, read once per process
/// (`std::thread::available_parallelism` reads cgroup files on every call, which costs more
/// than the small encodes and scans that ask for it).
pub fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Physical memory in bytes, from `/proc/meminfo` where available.
///
/// Read once per process (host devices are cheap to create: decoders and tests make many).
pub fn physical_memory() -> Option<u64> {
    static MEM: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    *MEM.get_or_init(read_physical_memory)
}

fn read_physical_memory() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = s.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Size of the largest CPU cache level, from sysfs where available.
fn last_level_cache() -> Option<u64> {
    static LLC: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    *LLC.get_or_init(read_last_level_cache)
}

fn read_last_level_cache() -> Option<u64> {
    let mut best = None;
    for i in 0..8 {
        let p = format!("/sys/devices/system/cpu/cpu0/cache/index{i}/size");
        let Ok(s) = std::fs::read_to_string(p) else {
            break;
        };
        let s = s.trim();
        let (num, mult) = if let Some(k) = s.strip_suffix('K') {
            (k, 1024)
        } else if let Some(m) = s.strip_suffix('M') {
            (m, 1 << 20)
        } else {
            (s, 1)
        };
        if let Ok(n) = num.parse::<u64>() {
            best = best.max(Some(n * mult));
        }
    }
    best
}
