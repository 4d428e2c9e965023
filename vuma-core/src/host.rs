//! The host device: the CPU as a [`Device`]. It needs no GPU, runs host-function kernels,
//! and is the embedded default on machines without one. Every placement is ordinary host
//! memory (64-byte aligned, zero-initialised).
//!
//! It shares host memory, so it uses the memory manager's host copies in place
//! ([`Device::alias_host`]): its kernels run on the host copy itself, with nothing
//! allocated and nothing copied. [`HostDevice::without_in_place`] turns that off (the
//! manager then gives it copies of its own, as a backend that cannot alias host memory
//! gets: tests of migration and eviction on small modelled devices).

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
use crate::region::{region_order, HostRegion, RegionGuard};

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

/// The bytes of a host buffer: its own allocation, or host memory lent in place.
#[derive(Clone)]
enum Mem {
    Own(Arc<HostMem>),
    Lent(Arc<HostRegion>),
}

/// A buffer of the host device.
#[derive(Clone)]
pub struct HostBuffer {
    mem: Mem,
    placement: Placement,
    device: DeviceId,
}

impl std::fmt::Debug for HostBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostBuffer")
            .field("len", &self.len())
            .field("placement", &self.placement)
            .field("in_place", &self.is_in_place())
            .finish()
    }
}

impl HostBuffer {
    /// Whether it is host memory lent in place ([`Device::alias_host`]) rather than an
    /// allocation of its own.
    pub fn is_in_place(&self) -> bool {
        matches!(self.mem, Mem::Lent(_))
    }

    /// The address of its first byte (only an address: for overlap checks).
    fn addr(&self) -> usize {
        match &self.mem {
            Mem::Own(m) => m.ptr.as_ptr() as usize,
            Mem::Lent(r) => r.addr(),
        }
    }
}

/// The bytes of some host buffers, reachable for one operation: the locks of the lent
/// regions among them (each taken once, in address order, so that operations locking
/// several never wait for each other in a cycle). Own allocations need no lock beyond the
/// device's queue lock.
struct Reach<'a> {
    guards: Vec<(*const HostRegion, RegionGuard<'a>)>,
}

impl<'a> Reach<'a> {
    /// Locks what `bufs` need; an error when a lent region was taken back.
    fn lock(bufs: &[&'a HostBuffer]) -> Result<Self> {
        let mut regions: Vec<&'a HostRegion> = bufs
            .iter()
            .filter_map(|b| match &b.mem {
                Mem::Lent(r) => Some(&**r),
                Mem::Own(_) => None,
            })
            .collect();
        regions.sort_by_key(|r| region_order(r));
        regions.dedup_by_key(|r| region_order(r));
        let mut guards = Vec::with_capacity(regions.len());
        for r in regions {
            guards.push((r as *const HostRegion, r.lock()?));
        }
        Ok(Reach { guards })
    }

    /// The first byte of `b` (one of the buffers locked), valid for `b.len()` bytes while
    /// `self` lives.
    fn base(&self, b: &HostBuffer) -> *mut u8 {
        match &b.mem {
            Mem::Own(m) => m.ptr.as_ptr(),
            Mem::Lent(r) => self
                .guards
                .iter()
                .find(|(p, _)| std::ptr::eq(*p, &**r))
                .map(|(_, g)| g.as_ptr())
                .expect("every lent region of the operation is locked"),
        }
    }
}

impl Buffer for HostBuffer {
    fn len(&self) -> u64 {
        match &self.mem {
            Mem::Own(m) => m.len as u64,
            Mem::Lent(r) => r.len() as u64,
        }
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
    /// Whether it uses host memory in place ([`Device::alias_host`]).
    in_place: bool,
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
            in_place: true,
        }
    }

    /// Models a discrete device behind `link` that cannot map host memory (tests of what
    /// crosses a link): the memory manager places device-local copies and counts their
    /// transfers as link traffic. Its memory is still host memory.
    pub fn behind_link(mut self, link: LinkInfo) -> Self {
        self.info.host_link = Some(link);
        self.info.unified_memory = false;
        self.info.can_map_host_memory = false;
        self.in_place = false;
        self
    }

    /// Makes the device decline host memory in place ([`Device::can_alias_host`] says no),
    /// as a backend does that cannot use an allocation it did not make: the memory manager
    /// gives it copies of its own, placed, budgeted and evicted as on any device, and
    /// counts the copies into them (within host memory: no link). Tests of migration and
    /// eviction on small modelled devices use it.
    pub fn without_in_place(mut self) -> Self {
        self.in_place = false;
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
            mem: Mem::Own(Arc::new(mem)),
            placement,
            device: self.info.id,
        })
    }

    fn write(&self, dst: &HostBuffer, offset: u64, src: &[u8]) -> Result<()> {
        let dst = self.own(dst)?;
        let (o, n) = range(dst, offset, src.len() as u64)?;
        self.fault(FaultSite::Write)?;
        let _q = self.lock();
        let reach = Reach::lock(&[dst])?;
        // SAFETY: `o + n <= len` was checked; the queue lock gives exclusive access to the
        // bytes of the device's own allocations, the lent region's lock (held by `reach`)
        // to lent ones; `src` is a distinct host slice (it cannot alias a buffer: the bytes
        // of own allocations are never handed out as references outside the queue lock,
        // those of lent regions never outside their lock, which `reach` holds).
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), reach.base(dst).add(o), n) };
        Ok(())
    }

    fn read(&self, src: &HostBuffer, offset: u64, dst: &mut [u8]) -> Result<()> {
        let src = self.own(src)?;
        let (o, n) = range(src, offset, dst.len() as u64)?;
        self.fault(FaultSite::Read)?;
        let _q = self.lock();
        let reach = Reach::lock(&[src])?;
        // SAFETY: bounds checked; exclusive access under the queue lock and the lent
        // region's lock (as in `write`); `dst` is distinct.
        unsafe { std::ptr::copy_nonoverlapping(reach.base(src).add(o), dst.as_mut_ptr(), n) };
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
        // By address: two handles may reach the same lent memory.
        let (sa, da) = (src.addr() + so, dst.addr() + d_o);
        if sa < da + n && da < sa + n {
            return Err(Error::invalid(
                "copy within one buffer with overlapping ranges",
            ));
        }
        self.fault(FaultSite::Copy)?;
        let _q = self.lock();
        let reach = Reach::lock(&[src, dst])?;
        // SAFETY: both ranges are in bounds and do not overlap (their addresses were
        // compared above); exclusive access under the queue lock and the lent regions'
        // locks.
        unsafe {
            std::ptr::copy_nonoverlapping(reach.base(src).add(so), reach.base(dst).add(d_o), n)
        };
        Ok(())
    }

    fn fill(&self, dst: &HostBuffer, offset: u64, len: u64, value: u8) -> Result<()> {
        let dst = self.own(dst)?;
        let (o, n) = range(dst, offset, len)?;
        self.alive()?;
        let _q = self.lock();
        let reach = Reach::lock(&[dst])?;
        // SAFETY: bounds checked; exclusive access under the queue lock and the lent
        // region's lock.
        unsafe { std::ptr::write_bytes(reach.base(dst).add(o), value, n) };
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
        // Host functions get `&mut [u8]` per argument, so even read-only ranges must not
        // overlap: compared by address, since two handles (two leases of one buffer used
        // in place) may reach the same memory.
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
                let (a0, b0) = (a.addr() + ao, b.addr() + bo);
                if a0 < b0 + bl && b0 < a0 + al {
                    return Err(Error::invalid(format!(
                        "kernel `{}`: host functions cannot take overlapping ranges of one buffer",
                        kernel.name()
                    )));
                }
            }
        }
        self.fault(FaultSite::Launch)?;
        let _q = self.lock();
        let bufs: Vec<&HostBuffer> = ranges.iter().map(|r| r.0).collect();
        let reach = Reach::lock(&bufs)?;
        let buffers: Vec<&mut [u8]> = ranges
            .iter()
            .map(|&(b, o, n)| {
                // SAFETY: ranges are in bounds (check_launch_args) and pairwise disjoint in
                // memory (their addresses were compared above), so the mutable slices never
                // alias; the queue lock and the lent regions' locks (held by `reach` until
                // after the slices die with `launch`) keep every other access out until the
                // function returns.
                unsafe { std::slice::from_raw_parts_mut(reach.base(b).add(o), n) }
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
        drop(launch);
        drop(reach);
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
        let reach = Reach::lock(&[src])?;
        // SAFETY: bounds checked; exclusive access under the queue lock and the lent
        // region's lock; `dst` is distinct.
        unsafe { std::ptr::copy_nonoverlapping(reach.base(src).add(o), dst.as_mut_ptr(), n) };
        Ok(())
    }

    fn can_alias_host(&self) -> bool {
        self.in_place
    }

    /// The region's bytes as a [`Placement::HostMapped`] buffer of this device (unless
    /// [`HostDevice::without_in_place`]): every operation on it, launches included,
    /// holds the region's lock while it touches the bytes, and fails once the region was
    /// taken back.
    fn alias_host(&self, region: Arc<HostRegion>) -> Result<HostBuffer> {
        if !self.in_place {
            return Err(Error::UnsupportedPlacement {
                device: self.info.name.clone(),
                placement: Placement::HostMapped,
            });
        }
        if region.is_empty() {
            return Err(Error::ZeroSize {
                what: "host memory used in place",
            });
        }
        self.alive()?;
        Ok(HostBuffer {
            mem: Mem::Lent(region),
            placement: Placement::HostMapped,
            device: self.info.id,
        })
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
