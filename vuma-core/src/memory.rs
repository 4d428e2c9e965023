//! Virtual unified memory: [`UnifiedBuffer`]s that are valid wherever they are needed, and
//! the [`MemoryManager`] that keeps them coherent within each device's budget.
//!
//! ## Coherence
//! A unified buffer has one logical content and up to one copy per location (the host and
//! each device). Each copy is *valid* or *invalid* (MSI-style, with "modified" being "the
//! only valid copy"):
//! - a read at a location makes it valid by copying from a valid copy (same device: a
//!   device copy; host: an upload; another device: through the host copy);
//! - a write at a location invalidates every other copy;
//! - a buffer never written anywhere reads as zeros and takes no memory at all.
//!
//! ## Lazy allocation, placement, budgets, eviction
//! Creating a buffer allocates nothing. The first [`MemoryManager::acquire`] on a device
//! places the copy there (the [`choose_placement`] policy: zero-copy pinned host memory or
//! device-local, by size, reuse and what the device can do), sub-allocated from a
//! per-device [`Pool`]. Each device has a budget (what it reports, configurable lower); when
//! a copy would exceed it, the least-recently-used copies not in use are evicted, the ones
//! holding the only valid data written back to the host first.
//!
//! ## In place
//! A device that shares host memory ([`DeviceInfo::unified_memory`] and
//! [`DeviceInfo::can_map_host_memory`]: the host device, integrated GPUs) whose backend can
//! use host memory in place ([`DynDevice::can_alias_host`]) gets no copy at all: an
//! acquire there hands the kernel the buffer's host copy itself
//! ([`DynDevice::alias_host`] over a [`HostRegion`] lent for the time
//! of the lease). Nothing is allocated on the device, nothing is copied, nothing counts
//! against its budget or is ever evicted from it; the host copy stays the one valid copy
//! (a download or unpack first when another location holds the data), and what a kernel
//! writes lands in it. The statistics count the use (`in_place_uses`, `in_place_bytes`)
//! and no bytes moved.
//!
//! Kernels that read a buffer in place see what it held when they acquired it, as they
//! would in a copy of their own: a host write, a download into the host copy or a writer
//! in place on another device meanwhile gives the buffer a fresh host copy (copy on write)
//! and leaves the lent one to them until the last of them ends. Each lease in place has a
//! region of its own, taken back when it is released: a buffer handle kept beyond its
//! lease refuses access. Host reads while a kernel
//! writes the host copy in place are refused ([`Error::InUse`], as host writes are while
//! a kernel writes a buffer anywhere). A shared-memory device whose backend cannot alias
//! host memory gets copies of its own (zero-copy pools in host memory), copied within host
//! memory.
//!
//! ## Nothing lost
//! Every step that can fail (allocation, transfer, write-back) happens before any state
//! changes: a failure leaves every valid copy valid and the buffer usable.
//!
//! ## Transfer paths
//! Uploads and write-backs go through [`MemoryConfig::transfer`] when one is set (PCIe
//! Hyperloop: zero pages not sent, device copies compressed on the device when evicted and
//! kept compressed on the host until they are needed), else through plain device copies.
//! A write-back may leave the host copy *packed* ([`PackedHost`]): an upload to the device
//! that packed it sends the packed bytes and decodes them there; host access unpacks it.
//! Every transfer's [`TransferReport`] lands in [`Residency::transfers`] and in the
//! statistics (`link_bytes_in`, `bytes_saved`).
//!
//! The manager serialises its state with one lock. Uploads from a plain host copy run
//! outside it (the copy marked in flight); other transfers are issued under it. A buffer
//! made from the user's bytes straight onto a device ([`MemoryManager::create_from_on`])
//! overlaps the host copy's fill with the upload.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use crate::buffer::DynBuffer;
use crate::device::DynDevice;
use crate::error::{check_range, Error, Result};
use crate::hostcopy::{copy_parallel, HostCopy, Init};
use crate::hostpool::{HostPool, PinConfig};
use crate::info::DeviceId;
#[cfg(doc)]
use crate::info::DeviceInfo;
use crate::kernel::Arg;
use crate::placement::{
    choose_placement, AccessMode, Placement, PlacementConfig, PlacementDecision,
};
use crate::pool::{Pool, PoolAlloc, PoolConfig, PoolStats};
use crate::region::HostRegion;
use crate::storage::DeviceStorage;
use crate::transfer::{PackedHost, TransferKind, TransferPath, TransferReport};

mod create_on;
mod loss;
mod migrate;

use migrate::check_new_size;

/// Identity of a unified buffer within its manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BufferId(pub u64);

/// A location a copy can live at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Location {
    /// Host memory owned by the manager.
    Host,
    /// A device, by its index in the manager.
    Device(usize),
}

/// Knobs of the memory manager.
#[derive(Debug, Clone, Default)]
pub struct MemoryConfig {
    /// The placement policy's knobs.
    pub placement: PlacementConfig,
    /// Pool knobs (the block size is further capped at a quarter of each device's budget).
    pub pool: PoolConfig,
    /// Budgets below what the devices report, by device index.
    pub budgets: HashMap<usize, u64>,
    /// How bytes cross the link (`None`: plain device copies). See [`TransferPath`].
    pub transfer: Option<Arc<dyn TransferPath>>,
    /// When host copies are pinned (page-locked for DMA at the link's speed).
    pub pin: PinConfig,
}

/// O(1) statistics of one location.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LocationStats {
    /// Bytes of copies held there.
    pub bytes_in_use: u64,
    /// Peak of `bytes_in_use`.
    pub peak_bytes: u64,
    /// Copies allocated there since creation.
    pub allocations: u64,
    /// Copies evicted from there.
    pub evictions: u64,
    /// Bytes written back to the host when evicting sole valid copies.
    pub writeback_bytes: u64,
    /// Bytes copied into this location.
    pub bytes_in: u64,
    /// Acquires that found a valid copy already there.
    pub hits: u64,
    /// Acquires that had to transfer or allocate.
    pub misses: u64,
    /// Bytes that crossed the link into this location (`bytes_in` minus what a transfer
    /// path saved); nothing for transfers to or from a device that shares host memory
    /// (there is no link to cross).
    pub link_bytes_in: u64,
    /// Bytes brought into this location without crossing the link (zero pages filled on
    /// the device, compression).
    pub bytes_saved: u64,
    /// Host only: bytes of host copies held packed (compressed by a transfer path).
    pub packed_bytes: u64,
    /// Write-backs from this location that left a packed host copy.
    pub packed_writebacks: u64,
    /// Host only: bytes of pinned blocks kept for reuse by later host copies (held in host
    /// memory, not part of `bytes_in_use`; see [`PinConfig::pool_bytes`]).
    pub pooled_bytes: u64,
    /// Host only: pinned host copies made from a pooled block (no page faults, no pinning).
    pub pool_hits: u64,
    /// Host only: pinned host copies that found no pooled block of their size class.
    pub pool_misses: u64,
    /// Acquires served in place: the kernel used the host copy itself (a device that
    /// shares host memory; nothing allocated here, nothing copied in, nothing over a link).
    pub in_place_uses: u64,
    /// Bytes of the buffers those acquires used in place (each acquire counts its buffer).
    pub in_place_bytes: u64,
}

impl LocationStats {
    /// Counts a copy of `size` bytes allocated here.
    pub(crate) fn count_allocation(&mut self, size: u64) {
        self.bytes_in_use += size;
        self.peak_bytes = self.peak_bytes.max(self.bytes_in_use);
        self.allocations += 1;
    }
}

/// Statistics of the whole manager, O(1) to read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MemoryStats {
    /// Host copies.
    pub host: LocationStats,
    /// Per device, by index.
    pub devices: Vec<LocationStats>,
    /// Live unified buffers.
    pub buffers: u64,
}

/// A device copy of a buffer.
struct Copy {
    alloc: PoolAlloc<DeviceStorage>,
    placement: Placement,
    valid: bool,
    last_use: u64,
    /// Whether the copy counts against the device's budget.
    counts: bool,
    /// An upload into it from the host copy is in flight outside the manager's lock:
    /// others wait for it (`Shared::filled`) instead of seeing a half-moved copy.
    filling: bool,
}

/// A host copy in a transfer path's packed form, with the device that packed it.
struct Packed {
    device: usize,
    data: Box<dyn PackedHost>,
}

struct BufState {
    size: u64,
    /// `None` until the host copy is materialised (or while it is packed).
    host: Option<HostCopy>,
    /// The valid host content in packed form. Invariant: when set, `host_valid` is true;
    /// `host` is `None` (a packed write-back) or holds the same bytes (a clean copy packed
    /// on eviction so that later uploads cross the link packed).
    packed: Option<Packed>,
    host_valid: bool,
    /// Whether any copy was ever written; an unwritten buffer reads as zeros.
    written: bool,
    copies: HashMap<usize, Copy>,
    in_use: u32,
    /// Leases with write access outstanding, by device (host access waits for them).
    writers: Vec<usize>,
    /// Leases that use the host copy in place, by device (one entry per lease): the host
    /// copy is lent to them; the manager does not write it while it is lent (it gives the
    /// buffer a fresh host copy first and retires the lent one).
    in_place: Vec<usize>,
    /// Host copies replaced while lent to leases in place, kept (lent, counted as host
    /// memory in use) until the last lease using each ends.
    retired: Vec<HostCopy>,
    /// Why the data is gone, when it is: the only valid copy was being written by a kernel
    /// that failed, or lived on a device that was lost. Reads are refused (`DataLost`) until
    /// the whole buffer is overwritten.
    lost: Option<String>,
    dropped: bool,
}

impl BufState {
    fn any_valid(&self) -> bool {
        self.host_valid || self.copies.values().any(|c| c.valid)
    }

    /// `DataLost` when the data is gone.
    fn check_not_lost(&self, id: BufferId) -> Result<()> {
        match &self.lost {
            Some(reason) => Err(Error::DataLost {
                buffer: id.0,
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }
}

struct DevSlot {
    device: Arc<dyn DynDevice>,
    budget: u64,
    pools: HashMap<Placement, Pool<DeviceStorage>>,
    /// Kernels here use host copies in place (the device shares host memory and can alias
    /// it): no copies, no budget.
    in_place: bool,
}

struct State {
    /// Bumped (and `Shared::filled` signalled) whenever room may have been made on a
    /// device: a lease released, an upload finished, a buffer dropped.
    changes: u64,
    buffers: HashMap<BufferId, BufState>,
    next_id: u64,
    tick: u64,
    stats: MemoryStats,
    /// Bytes counting against each device's budget.
    budget_used: Vec<u64>,
    /// Devices lost (a fatal driver error): why, per device; never used again.
    lost_devices: Vec<Option<String>>,
    /// Per device: the buffers whose data was lost with it.
    lost_with: Vec<Vec<BufferId>>,
}

struct Shared {
    devices: Vec<DevSlot>,
    config: MemoryConfig,
    state: Mutex<State>,
    /// Signalled whenever an upload that ran outside the lock has finished, a lease is
    /// released or a buffer dropped (see `State::changes`).
    filled: Condvar,
    /// Pinned host blocks kept for reuse, and the count of pinned bytes.
    host_pool: Arc<HostPool>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits (releasing the lock) while `busy` holds; uploads running outside the lock
    /// always finish and signal `filled`.
    fn wait_while<'a>(
        &self,
        mut st: MutexGuard<'a, State>,
        mut busy: impl FnMut(&State) -> bool,
    ) -> MutexGuard<'a, State> {
        while busy(&st) {
            st = self.filled.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        st
    }
}

impl BufState {
    /// Whether an upload from the host copy into one of its copies is in flight.
    fn filling(&self) -> bool {
        self.copies.values().any(|c| c.filling)
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MemoryManager({} devices)", self.devices.len())
    }
}

impl Shared {
    /// Whether transfers between the host and device `index` cross a link (not for
    /// devices that share host memory: the host device, integrated GPUs).
    fn over_link(&self, index: usize) -> bool {
        !self.devices[index].device.info().unified_memory
    }
}

impl State {
    /// `DeviceLost` for a device lost earlier.
    fn check_device_alive(&self, devices: &[DevSlot], index: usize) -> Result<()> {
        match &self.lost_devices[index] {
            Some(reason) => Err(Error::DeviceLost {
                device: devices[index].device.info().name.clone(),
                reason: format!("lost earlier ({reason}); its buffers were recovered from other copies where they had one"),
            }),
            None => Ok(()),
        }
    }

    /// Refuses host access to a buffer a kernel holds for writing (the access would be
    /// lost, or would see a half-written copy).
    fn check_no_writer(&self, devices: &[DevSlot], id: BufferId) -> Result<()> {
        match self.buffers.get(&id).and_then(|b| b.writers.first()) {
            Some(&d) => Err(Error::InUse {
                buffer: id.0,
                device: devices[d].device.info().name.clone(),
            }),
            None => Ok(()),
        }
    }
}

/// Zeroed host memory for a copy of `size` bytes, or the transient
/// [`Error::OutOfMemory`] (never an abort) when the host has none.
fn host_zeroed(size: u64) -> Result<Vec<u8>> {
    let oom = || Error::OutOfMemory {
        device: "host".into(),
        requested: size,
    };
    let n = usize::try_from(size).map_err(|_| oom())?;
    if n == 0 {
        return Ok(Vec::new());
    }
    let layout = std::alloc::Layout::array::<u8>(n).map_err(|_| oom())?;
    // SAFETY: `layout` has a non-zero size (checked above).
    let p = unsafe { std::alloc::alloc_zeroed(layout) };
    if p.is_null() {
        return Err(oom());
    }
    // SAFETY: `p` was allocated by the global allocator with the layout of `[u8; n]`
    // (alignment 1, `n` bytes), all `n` bytes are initialised (zeroed), and ownership
    // passes to the vector, which frees it with the same layout.
    Ok(unsafe { Vec::from_raw_parts(p, n, n) })
}

/// Keeps unified buffers coherent across the host and a set of devices.
#[derive(Clone)]
pub struct MemoryManager {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for MemoryManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryManager")
            .field("devices", &self.shared.devices.len())
            .field("stats", &self.stats())
            .finish()
    }
}

/// One logical allocation, valid on the host and on any device of its manager. Dropping it
/// frees every copy (after any lease on it is released).
pub struct UnifiedBuffer {
    id: BufferId,
    size: u64,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for UnifiedBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnifiedBuffer")
            .field("id", &self.id)
            .field("size", &self.size)
            .finish()
    }
}

impl UnifiedBuffer {
    /// Its identity.
    pub fn id(&self) -> BufferId {
        self.id
    }
    /// Size in bytes.
    pub fn len(&self) -> u64 {
        self.size
    }
    /// Whether it is empty (never: zero sizes are refused).
    pub fn is_empty(&self) -> bool {
        self.size == 0
    }
}

impl Drop for UnifiedBuffer {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        // Waiters wake once this lock is released, and see what the drop freed.
        st.changes += 1;
        self.shared.filled.notify_all();
        let remove = match st.buffers.get_mut(&self.id) {
            Some(b) if b.in_use > 0 => {
                b.dropped = true;
                false
            }
            Some(_) => true,
            None => false,
        };
        if remove {
            if let Some(b) = st.buffers.remove(&self.id) {
                release_buffer_memory(&mut st, b);
            }
        }
    }
}

fn release_buffer_memory(st: &mut State, b: BufState) {
    if b.host.is_some() {
        st.stats.host.bytes_in_use -= b.size;
    }
    st.stats.host.bytes_in_use -= b.size * b.retired.len() as u64;
    if let Some(p) = &b.packed {
        let n = p.data.stored_bytes();
        st.stats.host.bytes_in_use -= n;
        st.stats.host.packed_bytes -= n;
    }
    for (d, c) in b.copies {
        st.stats.devices[d].bytes_in_use -= b.size;
        if c.counts {
            st.budget_used[d] -= b.size;
        }
    }
    st.stats.buffers -= 1;
}

/// What [`MemoryManager::acquire`] did to make a buffer resident.
#[derive(Debug, Clone, PartialEq)]
pub struct Residency {
    /// The placement of the device copy.
    pub placement: Placement,
    /// Why that placement (from the policy, or "already resident").
    pub reason: String,
    /// Whether the copy was allocated by this acquire (lazy allocation).
    pub allocated: bool,
    /// Bytes transferred to make the copy valid.
    pub bytes_moved: u64,
    /// Where they came from.
    pub source: Option<Location>,
    /// Buffers evicted to make room, with the bytes written back for each.
    pub evicted: Vec<(BufferId, u64)>,
    /// Whether a valid copy was already there (nothing had to move).
    pub hit: bool,
    /// Every transfer this acquire made (write-backs of evicted buffers, then the upload),
    /// with the transfer path's decision and the bytes that crossed the link.
    pub transfers: Vec<TransferReport>,
    /// Whether the kernel uses the host copy itself (a device that shares host memory):
    /// no device copy, nothing allocated or copied for it (`bytes_moved` counts only a
    /// download from another device that held the data).
    pub in_place: bool,
}

impl Residency {
    /// Nothing done yet: a copy on the device, with `reason` until placing it says more.
    pub(crate) fn pending(reason: &str) -> Self {
        Residency {
            placement: Placement::DeviceLocal,
            reason: reason.into(),
            allocated: false,
            bytes_moved: 0,
            source: None,
            evicted: Vec::new(),
            hit: false,
            transfers: Vec::new(),
            in_place: false,
        }
    }

    /// Bytes that crossed the link for this acquire (uploads and write-backs).
    pub fn link_bytes(&self) -> u64 {
        self.transfers.iter().map(|t| t.link_bytes).sum()
    }
    /// Bytes this acquire's transfers did not have to send.
    pub fn bytes_saved(&self) -> u64 {
        self.transfers.iter().map(|t| t.bytes_saved()).sum()
    }
}

/// A buffer made resident on a device for a kernel; hand it back with
/// [`MemoryManager::release`].
#[derive(Debug)]
pub struct Lease {
    /// The manager the lease belongs to: released there whichever handle is used.
    owner: Arc<Shared>,
    buffer: BufferId,
    device: usize,
    block: Arc<dyn DynBuffer>,
    offset: u64,
    len: u64,
    access: AccessMode,
    /// In place: the region of the host copy lent for this lease (see
    /// [`Residency::in_place`]); taken back when the lease is released.
    region: Option<Arc<HostRegion>>,
    /// What was done to make it resident.
    pub residency: Residency,
}

impl Lease {
    /// The unified buffer this lease is for.
    pub fn buffer(&self) -> BufferId {
        self.buffer
    }
    /// The device block holding the copy (in place: the host copy itself, lent to the
    /// device until the lease is released; a handle kept beyond that refuses access).
    pub fn block(&self) -> &dyn DynBuffer {
        &*self.block
    }
    /// Offset of the copy within the block.
    pub fn offset(&self) -> u64 {
        self.offset
    }
    /// Length of the copy.
    pub fn len(&self) -> u64 {
        self.len
    }
    /// Whether the copy is empty (never).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// How the kernel accesses the copy.
    pub fn access(&self) -> AccessMode {
        self.access
    }
    /// The device index.
    pub fn device(&self) -> usize {
        self.device
    }
    /// Whether the kernel uses the host copy in place ([`Residency::in_place`]).
    pub fn is_in_place(&self) -> bool {
        self.region.is_some()
    }
    /// The kernel argument for the whole buffer.
    pub fn arg(&self) -> Arg<'_, dyn DynBuffer> {
        Arg::Buffer {
            buffer: &*self.block,
            offset: self.offset,
            len: self.len,
            access: self.access,
        }
    }
}

/// How the use of a lease ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The kernel completed; if it had write access, the device copy is now the valid one.
    Completed,
    /// The kernel failed; the device copy's contents are unknown: it is dropped from the
    /// valid set, or, when it held the only valid data, the buffer reports
    /// [`Error::DataLost`] until it is overwritten entirely.
    Failed,
    /// Nothing used the lease (the kernel was never launched: an argument was refused, or
    /// another buffer could not be made resident): nothing changes.
    NotRun,
}

impl MemoryManager {
    /// A manager over `devices` (indices in this order).
    pub fn new(devices: Vec<Arc<dyn DynDevice>>, config: MemoryConfig) -> Self {
        let slots: Vec<DevSlot> = devices
            .into_iter()
            .enumerate()
            .map(|(i, device)| {
                let info = device.info();
                let budget = config
                    .budgets
                    .get(&i)
                    .copied()
                    .unwrap_or(info.memory_budget)
                    .min(info.memory_budget.max(1));
                let mut pools = HashMap::new();
                for p in Placement::ALL {
                    if device.supports(p) {
                        let mut pc = config.pool.clone();
                        pc.block_size = pc.block_size.min((budget / 4).max(1 << 20));
                        pc.max_class = pc.max_class.min(pc.block_size / 4);
                        pools.insert(
                            p,
                            Pool::new(
                                DeviceStorage {
                                    device: device.clone(),
                                    placement: p,
                                },
                                pc,
                            ),
                        );
                    }
                }
                let in_place =
                    info.unified_memory && info.can_map_host_memory && device.can_alias_host();
                DevSlot {
                    device,
                    budget,
                    pools,
                    in_place,
                }
            })
            .collect();
        let n = slots.len();
        let all: Vec<Arc<dyn DynDevice>> = slots.iter().map(|d| d.device.clone()).collect();
        let host_pool = Arc::new(HostPool::new(&config.pin, &all));
        MemoryManager {
            shared: Arc::new(Shared {
                devices: slots,
                config,
                state: Mutex::new(State {
                    buffers: HashMap::new(),
                    next_id: 1,
                    changes: 0,
                    tick: 0,
                    stats: MemoryStats {
                        devices: vec![LocationStats::default(); n],
                        ..Default::default()
                    },
                    budget_used: vec![0; n],
                    lost_devices: vec![None; n],
                    lost_with: vec![Vec::new(); n],
                }),
                filled: Condvar::new(),
                host_pool,
            }),
        }
    }

    /// The devices, by index.
    pub fn devices(&self) -> Vec<Arc<dyn DynDevice>> {
        self.shared
            .devices
            .iter()
            .map(|d| d.device.clone())
            .collect()
    }

    /// Number of devices.
    pub fn device_count(&self) -> usize {
        self.shared.devices.len()
    }

    /// The index of the device with `id`.
    pub fn device_index(&self, id: DeviceId) -> Option<usize> {
        self.shared
            .devices
            .iter()
            .position(|d| d.device.info().id == id)
    }

    /// The budget of device `index`, in bytes.
    pub fn budget(&self, index: usize) -> Option<u64> {
        self.shared.devices.get(index).map(|d| d.budget)
    }

    /// Whether kernels on device `index` use host copies in place (it shares host memory
    /// and its backend can alias it): no copies there, nothing counted against its budget.
    pub fn uses_in_place(&self, index: usize) -> bool {
        self.shared.devices.get(index).is_some_and(|d| d.in_place)
    }

    /// What the placement policy ([`choose_placement`]) decides for a buffer of `size`
    /// bytes read `reuse` times on device `index`, as the manager applies it (`None` for
    /// an index that names no device): on a device that shares host memory the decision is
    /// "used in place" only where it is (the device uses host copies in place); elsewhere it
    /// says the device gets a zero-copy copy of its own. This is the reason an acquire
    /// reports ([`Residency::reason`]) when it places a copy.
    pub fn placement_decision(
        &self,
        size: u64,
        reuse: u32,
        index: usize,
    ) -> Option<PlacementDecision> {
        let slot = self.shared.devices.get(index)?;
        let info = slot.device.info();
        let mut d = choose_placement(size, reuse, info, &self.shared.config.placement);
        if info.unified_memory && d.placement == Placement::HostMapped && !slot.in_place {
            d.reason = "device shares host memory, but its backend cannot use the host copy \
                in place: a zero-copy copy of its own in host memory"
                .into();
        }
        Some(d)
    }

    /// Statistics (O(1) apart from the copy of the per-device vector).
    pub fn stats(&self) -> MemoryStats {
        let mut s = self.shared.lock().stats.clone();
        let p = self.shared.host_pool.stats();
        s.host.pooled_bytes = p.pooled_bytes;
        s.host.pool_hits = p.hits;
        s.host.pool_misses = p.misses;
        s
    }

    /// Statistics of device `index`'s pool for `placement`.
    pub fn pool_stats(&self, index: usize, placement: Placement) -> Option<PoolStats> {
        self.shared
            .devices
            .get(index)?
            .pools
            .get(&placement)
            .map(Pool::stats)
    }

    /// A new buffer of `size` bytes, reading as zeros. Takes no memory until used.
    pub fn create(&self, size: u64) -> Result<UnifiedBuffer> {
        check_new_size(size)?;
        Ok(self.insert_buffer(size, None))
    }

    /// A new buffer holding a copy of `data`. The bytes are copied once, with several
    /// threads when they are many, into a host copy that is pinned when the budget allows
    /// (a pooled pinned block when one fits), before the manager's lock is taken: nobody
    /// else can see the buffer yet.
    pub fn create_from(&self, data: &[u8]) -> Result<UnifiedBuffer> {
        let size = data.len() as u64;
        check_new_size(size)?;
        let host = self.new_host_copy(size, Init::Bytes(data))?;
        Ok(self.insert_buffer(size, Some(host)))
    }

    /// `InvalidArgument` for an index that names no device.
    fn check_device_index(&self, index: usize) -> Result<()> {
        if index < self.shared.devices.len() {
            Ok(())
        } else {
            Err(Error::invalid(format!("no device with index {index}")))
        }
    }

    fn check_owner(&self, buf: &UnifiedBuffer) -> Result<()> {
        if Arc::ptr_eq(&buf.shared, &self.shared) {
            Ok(())
        } else {
            Err(Error::invalid("unified buffer belongs to another manager"))
        }
    }

    /// Writes `data` at `offset` from the host; every device copy becomes invalid.
    pub fn write(&self, buf: &UnifiedBuffer, offset: u64, data: &[u8]) -> Result<()> {
        self.check_owner(buf)?;
        check_range(offset, data.len() as u64, buf.size)?;
        let whole = offset == 0 && data.len() as u64 == buf.size;
        let st = self.shared.lock();
        // An upload reading the host copy outside the lock finishes first.
        let mut st = self
            .shared
            .wait_while(st, |st| st.buffers[&buf.id].filling());
        st.check_no_writer(&self.shared.devices, buf.id)?;
        if !whole {
            self.make_host_valid(&mut st, buf.id)?;
        }
        // Kernels using the host copy in place keep it as it is.
        self.unshare_host(&mut st, buf.id, !whole)?;
        // The content changes: a packed copy of it is stale.
        drop_packed(&mut st, buf.id);
        let init = if whole { Init::Bytes(data) } else { Init::Zero };
        let fresh = self.materialise_host(&mut st, buf.id, init)?;
        let b = st.buffers.get_mut(&buf.id).expect("live buffer");
        if !(whole && fresh) {
            let host = b.host.as_mut().expect("materialised");
            copy_parallel(
                &mut host.bytes_mut()[offset as usize..offset as usize + data.len()],
                data,
            );
        }
        b.host_valid = true;
        b.written = true;
        b.lost = None;
        for c in b.copies.values_mut() {
            c.valid = false;
        }
        Ok(())
    }

    /// Reads `out.len()` bytes at `offset` into `out`, bringing data back from a device if
    /// the host copy is stale.
    pub fn read(&self, buf: &UnifiedBuffer, offset: u64, out: &mut [u8]) -> Result<()> {
        self.check_owner(buf)?;
        check_range(offset, out.len() as u64, buf.size)?;
        let mut st = self.shared.lock();
        let b = &st.buffers[&buf.id];
        // A kernel writing the host copy in place may have written part of it.
        let writing_in_place = b.writers.iter().any(|&d| self.shared.devices[d].in_place);
        if !b.host_valid || writing_in_place {
            st.check_no_writer(&self.shared.devices, buf.id)?;
        }
        self.make_host_valid(&mut st, buf.id)?;
        let b = &st.buffers[&buf.id];
        match &b.host {
            Some(h) => {
                out.copy_from_slice(&h.bytes()[offset as usize..offset as usize + out.len()])
            }
            None => out.fill(0),
        }
        Ok(())
    }

    /// The whole content as a vector.
    pub fn to_vec(&self, buf: &UnifiedBuffer) -> Result<Vec<u8>> {
        let mut v = host_zeroed(buf.size)?;
        self.read(buf, 0, &mut v)?;
        Ok(v)
    }

    /// Runs `f` on the host copy mutably (map for writing); device copies become invalid.
    pub fn with_host_mut<R>(
        &self,
        buf: &UnifiedBuffer,
        f: impl FnOnce(&mut [u8]) -> R,
    ) -> Result<R> {
        self.check_owner(buf)?;
        let st = self.shared.lock();
        let mut st = self
            .shared
            .wait_while(st, |st| st.buffers[&buf.id].filling());
        st.check_no_writer(&self.shared.devices, buf.id)?;
        self.make_host_valid(&mut st, buf.id)?;
        self.unshare_host(&mut st, buf.id, true)?;
        drop_packed(&mut st, buf.id);
        self.materialise_host(&mut st, buf.id, Init::Zero)?;
        let b = st.buffers.get_mut(&buf.id).expect("live buffer");
        b.written = true;
        for c in b.copies.values_mut() {
            c.valid = false;
        }
        let r = f(&mut b.host.as_mut().expect("materialised").bytes_mut());
        Ok(r)
    }

    /// Where the buffer currently has copies, and whether each is valid.
    pub fn residency(&self, buf: &UnifiedBuffer) -> Vec<(Location, Option<Placement>, bool)> {
        let st = self.shared.lock();
        let Some(b) = st.buffers.get(&buf.id) else {
            return Vec::new();
        };
        let mut v = vec![(Location::Host, None, b.host_valid)];
        let mut devs: Vec<_> = b.copies.iter().collect();
        devs.sort_by_key(|(d, _)| **d);
        for (d, c) in devs {
            v.push((Location::Device(*d), Some(c.placement), c.valid));
        }
        v
    }

    /// Whether anything was ever written to `buf` (a buffer never written reads as zeros
    /// and holds no memory).
    pub fn is_written(&self, buf: &UnifiedBuffer) -> bool {
        let st = self.shared.lock();
        st.buffers.get(&buf.id).is_some_and(|b| b.written)
    }

    /// Bytes of `buf` that would have to cross to device `index` for a read there
    /// (0 when a valid copy is already there; on a device that uses host copies in place,
    /// 0 when the host copy is valid).
    pub fn missing_bytes(&self, buf: &UnifiedBuffer, index: usize) -> u64 {
        let st = self.shared.lock();
        if self.uses_in_place(index) {
            return match st.buffers.get(&buf.id) {
                Some(b) if b.written && !b.host_valid => b.size,
                _ => 0,
            };
        }
        match st.buffers.get(&buf.id) {
            Some(b) if b.copies.get(&index).is_some_and(|c| c.valid) => 0,
            Some(b) if !b.written => 0,
            Some(b) => b.size,
            None => 0,
        }
    }

    /// Makes `buf` resident on device `index` for a kernel accessing it as `access`, and
    /// `reuse` times while resident (a placement hint). Allocates lazily, evicts if the
    /// budget requires, transfers if the copy is stale and the kernel reads it. On a device
    /// that uses host copies in place ([`uses_in_place`](Self::uses_in_place)) the lease is
    /// the host copy itself: made valid there first when another location holds the data,
    /// never copied (see the module documentation).
    pub fn acquire(
        &self,
        buf: &UnifiedBuffer,
        index: usize,
        access: AccessMode,
        reuse: u32,
    ) -> Result<Lease> {
        self.check_owner(buf)?;
        let _span =
            tracing::debug_span!("acquire", buffer = buf.id.0, device = index, ?access).entered();
        self.check_device_index(index)?;
        let in_place = self.shared.devices[index].in_place;
        let st = self.shared.lock();
        // An upload into this copy (or, for a writer or a kernel using the host copy in
        // place, into any copy: it reads the host copy) that runs outside the lock
        // finishes first.
        let mut st = self.shared.wait_while(st, |st| {
            let b = &st.buffers[&buf.id];
            b.copies.get(&index).is_some_and(|c| c.filling)
                || ((access.writes() || in_place) && b.filling())
        });
        {
            let b = &st.buffers[&buf.id];
            if let Some(&d) = b.writers.iter().find(|&&d| d != index) {
                // A kernel on another device is writing it: its copy is in flight.
                return Err(Error::InUse {
                    buffer: buf.id.0,
                    device: self.shared.devices[d].device.info().name.clone(),
                });
            }
            if access.reads() {
                b.check_not_lost(buf.id)?;
            }
        }
        st.check_device_alive(&self.shared.devices, index)?;
        st.tick += 1;
        if in_place {
            return self.acquire_in_place(st, buf, index, access, reuse);
        }
        let tick = st.tick;
        let size = buf.size;
        let mut residency = Residency::pending("already resident");
        let has_copy = st.buffers[&buf.id].copies.contains_key(&index);
        if !has_copy {
            self.place_copy(&mut st, buf.id, index, reuse, tick, &mut residency)?;
        } else {
            residency.placement = st.buffers[&buf.id].copies[&index].placement;
        }
        // Make the copy valid if the kernel reads it (or writes only part of it, which we
        // cannot know: Write means "overwrites entirely").
        let b = &st.buffers[&buf.id];
        let valid_here = b.copies[&index].valid;
        residency.hit = valid_here;
        if valid_here {
            st.stats.devices[index].hits += 1;
        } else {
            st.stats.devices[index].misses += 1;
        }
        let outside = !valid_here && access.reads() && self.fills_outside_lock(&st, buf.id);
        // A writer is registered before any upload, so that a reader that starts filling
        // another copy meanwhile (outside the lock) cannot mark it valid after this
        // lease's kernel has changed the contents: such readers see the writer and wait
        // (`InUse`) instead.
        if access.writes() {
            st.buffers
                .get_mut(&buf.id)
                .expect("live")
                .writers
                .push(index);
        }
        let (mut st, filled) = if outside {
            self.fill_outside_lock(st, buf.id, index, &mut residency)
        } else if !valid_here && access.reads() {
            let r = self
                .fill_copy(&mut st, buf.id, index)
                .map(|(moved, src, report)| {
                    residency.bytes_moved = moved;
                    residency.source = src;
                    residency.transfers.extend(report);
                });
            (st, r)
        } else {
            (st, Ok(()))
        };
        if let Err(e) = filled {
            if residency.allocated {
                // Nothing was valid there; give the fresh allocation back.
                drop_copy(&mut st, buf.id, index);
            }
            unregister_writer(&mut st, buf.id, index, access);
            self.note_loss(&mut st, index, &e);
            return Err(e);
        }
        let b = st.buffers.get_mut(&buf.id).expect("live");
        b.in_use += 1;
        let c = b.copies.get_mut(&index).expect("copy");
        c.last_use = tick;
        if access.reads() {
            c.valid = true;
        }
        Ok(Lease {
            owner: self.shared.clone(),
            buffer: buf.id,
            device: index,
            block: c.alloc.block().clone(),
            offset: c.alloc.offset(),
            len: size,
            access,
            region: None,
            residency,
        })
    }

    /// [`acquire`](Self::acquire) on a device that uses host copies in place: the host
    /// copy is made valid (downloaded or unpacked when it is not; zeros for a buffer never
    /// written) unless the kernel overwrites lost data entirely, and lent to the device.
    fn acquire_in_place(
        &self,
        mut st: MutexGuard<'_, State>,
        buf: &UnifiedBuffer,
        index: usize,
        access: AccessMode,
        reuse: u32,
    ) -> Result<Lease> {
        let (id, size) = (buf.id, buf.size);
        let slot = &self.shared.devices[index];
        let decision = self
            .placement_decision(size, reuse, index)
            .expect("a valid index");
        let mut residency = Residency::pending(&decision.reason);
        residency.placement = Placement::HostMapped;
        residency.in_place = true;
        let b = &st.buffers[&id];
        if b.lost.is_none() {
            // (A lost buffer is acquired only to be overwritten entirely.)
            let from = if b.host_valid {
                None
            } else {
                b.copies.iter().find(|(_, c)| c.valid).map(|(&d, _)| d)
            };
            self.make_host_valid(&mut st, id)?;
            if let Some(d) = from {
                residency.bytes_moved = size;
                residency.source = Some(Location::Device(d));
            }
        }
        if access.writes() && st.buffers[&id].in_place.iter().any(|&d| d != index) {
            // Kernels on other devices read the host copy in place: they keep it as it
            // is, this writer gets a copy of it (as its device would have a copy of its
            // own). The bytes are kept even for a whole overwrite: until the lease ends
            // completed, they are the buffer's.
            self.unshare_host(&mut st, id, true)?;
        }
        self.materialise_host(&mut st, id, Init::Zero)?;
        let b = st.buffers.get_mut(&id).expect("live");
        let host = b.host.as_mut().expect("materialised");
        let region = host.lend();
        let block: Arc<dyn DynBuffer> = match slot.device.alias_host(region.clone()) {
            Ok(block) => Arc::from(block),
            Err(e) => {
                host.take_back(&region);
                self.note_loss(&mut st, index, &e);
                return Err(e);
            }
        };
        if access.writes() {
            b.writers.push(index);
        }
        b.in_use += 1;
        b.in_place.push(index);
        residency.hit = residency.bytes_moved == 0;
        let s = &mut st.stats.devices[index];
        if residency.hit {
            s.hits += 1;
        } else {
            s.misses += 1;
        }
        s.in_place_uses += 1;
        s.in_place_bytes += size;
        Ok(Lease {
            owner: self.shared.clone(),
            buffer: id,
            device: index,
            block,
            offset: 0,
            len: size,
            access,
            region: Some(region),
            residency,
        })
    }

    /// Ends a lease. A completed kernel with write access makes its copy the only valid
    /// one; a failed kernel's copy is dropped from the valid set unless it held the only
    /// valid data.
    pub fn release(&self, lease: Lease, outcome: Outcome) {
        if !Arc::ptr_eq(&lease.owner, &self.shared) {
            tracing::warn!(
                buffer = lease.buffer.0,
                "a lease was released through another manager; releasing it into its own"
            );
        }
        let shared = lease.owner.clone();
        let mut st = shared.lock();
        // Waiters wake once this lock is released, and see what the release freed.
        st.changes += 1;
        shared.filled.notify_all();
        if let Some(region) = &lease.region {
            release_in_place(&mut st, &lease, region, outcome);
            return;
        }
        // A kernel on a lost device did not complete, whatever its caller saw; if its caller
        // saw it complete, what it wrote lived only in the lost device's memory.
        let device_lost = st.lost_devices[lease.device].is_some();
        let wrote_into_loss =
            device_lost && lease.access.writes() && matches!(outcome, Outcome::Completed);
        let outcome = if device_lost {
            Outcome::Failed
        } else {
            outcome
        };
        let Some(b) = st.buffers.get_mut(&lease.buffer) else {
            return;
        };
        b.in_use = b.in_use.saturating_sub(1);
        if lease.access.writes() {
            if let Some(i) = b.writers.iter().position(|&d| d == lease.device) {
                b.writers.swap_remove(i);
            }
        }
        let mut stale = None;
        match outcome {
            Outcome::Completed if lease.access.writes() => {
                b.written = true;
                b.lost = None;
                b.host_valid = false;
                for (d, c) in b.copies.iter_mut() {
                    c.valid = *d == lease.device;
                }
                stale = b.packed.take();
            }
            Outcome::Completed | Outcome::NotRun => {}
            Outcome::Failed => {
                if lease.access.writes() {
                    let others =
                        b.host_valid || b.copies.iter().any(|(d, c)| *d != lease.device && c.valid);
                    if others {
                        if let Some(c) = b.copies.get_mut(&lease.device) {
                            c.valid = false;
                        }
                    } else if b.copies.get(&lease.device).is_some_and(|c| c.valid) {
                        // The only valid copy was partly written: say so instead of
                        // serving bytes that match no serial order.
                        b.lost = Some("a kernel writing its only valid copy failed".into());
                    }
                }
            }
        }
        let mut lost_now = None;
        if wrote_into_loss && b.lost.is_none() {
            lost_now = Some(lease.buffer);
            b.lost = Some(format!(
                "a kernel wrote it on device {} and completed, but the device was lost before \
                 its lease ended: the new content went with the device",
                lease.device
            ));
        }
        debug_assert!(
            b.any_valid() || b.lost.is_some(),
            "a buffer keeps a valid copy or says it lost its data"
        );
        let remove = b.dropped && b.in_use == 0;
        if let Some(id) = lost_now {
            st.lost_with[lease.device].push(id);
        }
        if let Some(p) = stale {
            let n = p.data.stored_bytes();
            st.stats.host.bytes_in_use -= n;
            st.stats.host.packed_bytes -= n;
        }
        if remove {
            let b = st.buffers.remove(&lease.buffer).expect("live");
            release_buffer_memory(&mut st, b);
        }
    }

    /// A count that changes whenever room may have been made on a device (a lease
    /// released, an upload finished, a buffer dropped): read it before an attempt that can
    /// fail for want of room, then [`wait_for_room`](Self::wait_for_room) with it.
    pub fn room_changes(&self) -> u64 {
        self.shared.lock().changes
    }

    /// Waits until [`room_changes`](Self::room_changes) differs from `seen` or `deadline`
    /// passes; returns whether it changed. What a caller refused with
    /// [`Error::BudgetExceeded`] while other leases hold the budget waits on, instead of
    /// polling.
    pub fn wait_for_room(&self, seen: u64, deadline: std::time::Instant) -> bool {
        let mut st = self.shared.lock();
        while st.changes == seen {
            let now = std::time::Instant::now();
            if now >= deadline {
                return false;
            }
            st = self
                .shared
                .filled
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }

    /// Evicts every copy on device `index` that is not in use (written back first when it
    /// holds the only valid data). Returns the bytes freed.
    pub fn evict_all(&self, index: usize) -> Result<u64> {
        let mut st = self.shared.lock();
        let before = st.stats.devices.get(index).map_or(0, |s| s.bytes_in_use);
        let mut reports = Vec::new();
        self.make_room(&mut st, index, u64::MAX / 4, BufferId(0), &mut reports)
            .or_else(|e| match e {
                Error::BudgetExceeded { .. } => Ok(Vec::new()),
                e => Err(e),
            })?;
        let after = st.stats.devices[index].bytes_in_use;
        Ok(before - after)
    }
}

/// [`MemoryManager::release`] of a lease that used the host copy in place: its region is
/// taken back (from the host copy, or from a copy retired since, which is freed when no
/// lease uses it any more); a completed kernel's writes are in the host copy (in host
/// memory, which a device lost since does not take with it); a failed writer leaves it
/// partly written: invalid, and the data lost unless a device holds a valid copy.
fn release_in_place(st: &mut State, lease: &Lease, region: &Arc<HostRegion>, outcome: Outcome) {
    let Some(b) = st.buffers.get_mut(&lease.buffer) else {
        return;
    };
    b.in_use = b.in_use.saturating_sub(1);
    if let Some(i) = b.in_place.iter().position(|&d| d == lease.device) {
        b.in_place.swap_remove(i);
    }
    let mut freed = 0;
    if !b.host.as_mut().is_some_and(|h| h.take_back(region)) {
        if let Some(i) = b.retired.iter_mut().position(|h| h.take_back(region)) {
            if !b.retired[i].is_lent() {
                drop(b.retired.swap_remove(i));
                freed = b.size;
            }
        }
    }
    debug_assert!(
        !b.in_place.is_empty()
            || (b.retired.is_empty() && !b.host.as_ref().is_some_and(HostCopy::is_lent)),
        "every region of a lease in place is taken back when it ends"
    );
    st.stats.host.bytes_in_use -= freed;
    let Some(b) = st.buffers.get_mut(&lease.buffer) else {
        return;
    };
    let mut stale = None;
    if lease.access.writes() {
        if let Some(i) = b.writers.iter().position(|&d| d == lease.device) {
            b.writers.swap_remove(i);
        }
        match outcome {
            Outcome::Completed => {
                b.written = true;
                b.lost = None;
                b.host_valid = true;
                for c in b.copies.values_mut() {
                    c.valid = false;
                }
                stale = b.packed.take();
            }
            Outcome::Failed => {
                b.host_valid = false;
                stale = b.packed.take();
                if !b.copies.values().any(|c| c.valid) && b.lost.is_none() {
                    b.lost = Some(
                        "a kernel writing its only valid copy (the host copy, used in place) \
                         failed"
                            .into(),
                    );
                }
            }
            Outcome::NotRun => {}
        }
    }
    debug_assert!(
        b.any_valid() || b.lost.is_some(),
        "a buffer keeps a valid copy or says it lost its data"
    );
    let remove = b.dropped && b.in_use == 0;
    if let Some(p) = stale {
        let n = p.data.stored_bytes();
        st.stats.host.bytes_in_use -= n;
        st.stats.host.packed_bytes -= n;
    }
    if remove {
        let b = st.buffers.remove(&lease.buffer).expect("live");
        release_buffer_memory(st, b);
    }
}

/// Takes back the writer registration an acquire made before failing.
fn unregister_writer(st: &mut State, id: BufferId, index: usize, access: AccessMode) {
    if access.writes() {
        if let Some(b) = st.buffers.get_mut(&id) {
            if let Some(i) = b.writers.iter().position(|&d| d == index) {
                b.writers.swap_remove(i);
            }
        }
    }
}

/// Adds an upload into device `index` to the statistics.
fn record_upload(st: &mut State, index: usize, report: &TransferReport, link: bool) {
    let s = &mut st.stats.devices[index];
    s.bytes_in += report.logical_bytes;
    if link {
        s.link_bytes_in += report.link_bytes;
    }
    s.bytes_saved += report.bytes_saved();
}

/// Frees `id`'s copy on device `index` (one that holds nothing needed: a fresh copy whose
/// upload failed), with its statistics and budget.
fn drop_copy(st: &mut State, id: BufferId, index: usize) {
    let b = st.buffers.get_mut(&id).expect("live");
    let size = b.size;
    if let Some(c) = b.copies.remove(&index) {
        st.stats.devices[index].bytes_in_use -= size;
        if c.counts {
            st.budget_used[index] -= size;
        }
    }
}

/// Drops a packed host copy (stale, or replaced by plain bytes).
fn drop_packed(st: &mut State, id: BufferId) {
    if let Some(p) = st.buffers.get_mut(&id).and_then(|b| b.packed.take()) {
        let n = p.data.stored_bytes();
        st.stats.host.bytes_in_use -= n;
        st.stats.host.packed_bytes -= n;
    }
}

fn counts_against_budget(slot: &DevSlot, placement: Placement) -> bool {
    placement == Placement::DeviceLocal || slot.device.info().unified_memory
}
