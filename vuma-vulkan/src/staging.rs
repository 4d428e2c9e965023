//! Host ↔ device-local transfers: the staging ring (cached system memory), the BAR ring
//! (host-visible VRAM the CPU only writes), both filled and drained by the persistent copy
//! threads, and the import of host memory with `VK_EXT_external_memory_host`.
//!
//! [`Staging`] is a struct over the device's [`Shared`] state with the ring geometry and
//! knobs; the rings themselves ([`Rings`]) live under the device's lock next to the
//! submission state ([`Submit`]), and every method takes both.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};

use ash::{ext, vk};
use vuma_core::{Error, Placement, Result};

use crate::buffer::{MappedPtr, VulkanBuffer};
use crate::copypool::CopyPool;
use crate::error::{backend_err, vk_err};
use crate::options::{H2dStrategy, VulkanOptions};
use crate::shared::Shared;
use crate::submit::{begin, Submit};

/// One slot of a ring: mapped memory and its own command buffer.
struct Slot {
    buffer: vk::Buffer,
    alloc: Option<gpu_allocator::vulkan::Allocation>,
    ptr: MappedPtr,
    cmd: vk::CommandBuffer,
    /// Timeline value whose completion frees the slot (0: free).
    busy_until: u64,
}

/// The rings, created on first use; guarded by the device's lock.
#[derive(Default)]
pub(crate) struct Rings {
    /// The staging ring (system memory; CPU writes and reads it).
    ring: Vec<Slot>,
    /// The BAR upload ring (device-local, host-visible VRAM; the CPU only writes it).
    bar_ring: Vec<Slot>,
    /// Why the BAR ring could not be created (BAR uploads fall back to staging until
    /// the strategy is set again).
    pub(crate) bar_failed: Option<String>,
}

impl Rings {
    /// The BAR ring (`bar`) or the staging ring.
    fn slots(&mut self, bar: bool) -> &mut Vec<Slot> {
        if bar {
            &mut self.bar_ring
        } else {
            &mut self.ring
        }
    }

    /// Destroys both rings' buffers (their command buffers go with the pool); no submitted
    /// work uses them any more (the device is idle).
    pub(crate) fn destroy(&mut self, shared: &Shared) {
        for s in self.ring.drain(..).chain(self.bar_ring.drain(..)) {
            shared.destroy_buffer(s.buffer, s.alloc);
        }
    }
}

/// The staging paths of one device: ring geometry, copy threads, import settings and the
/// host-to-device strategy, over the device's shared state.
pub(crate) struct Staging {
    shared: Arc<Shared>,
    /// The memory type of the staging ring (readback: system memory the CPU reads).
    readback_type: Option<u32>,
    slot_size: u64,
    slots: usize,
    copy_threads: usize,
    /// Staged copies write with non-temporal stores (`VUMA_VK_STREAM_COPY=0` turns it off).
    stream_copies: bool,
    /// Persistent memcpy threads, started on the first large host copy.
    pool: OnceLock<CopyPool>,
    /// `VK_EXT_external_memory_host` and `minImportedHostPointerAlignment`, when enabled.
    emh: Option<(ext::external_memory_host::Device, u64)>,
    /// Import the page-aligned middle of host slices of at least this many bytes instead
    /// of staging them (`u64::MAX`: never).
    import_min: u64,
    /// The [`H2dStrategy`] of device-local writes, as `H2dStrategy::to_u8`.
    h2d: AtomicU8,
    /// The memory type of the BAR upload ring, when the device has one.
    pub(crate) bar_type: Option<u32>,
    /// Whether the device is a discrete GPU (`Auto` takes the BAR only there).
    discrete_gpu: bool,
    /// Bytes written into device-local buffers through the BAR ring so far.
    bar_bytes: AtomicU64,
}

/// What [`Staging::new`] needs to know of the device.
pub(crate) struct StagingDesc {
    /// The staging ring's memory type.
    pub readback_type: Option<u32>,
    /// The BAR ring's memory type, if any.
    pub bar_type: Option<u32>,
    /// Device memory is host memory (integrated GPU, CPU device): smaller rings.
    pub unified: bool,
    /// A discrete GPU (the `Auto` strategy's condition).
    pub discrete_gpu: bool,
    /// `minImportedHostPointerAlignment` when `VK_EXT_external_memory_host` is enabled.
    pub import_align: Option<u64>,
}

impl Staging {
    /// The staging paths of `shared`'s device, tuned by the resolved `options`.
    pub fn new(shared: Arc<Shared>, options: &VulkanOptions, d: StagingDesc) -> Self {
        let discrete = !d.unified;
        let emh = d.import_align.filter(|a| a.is_power_of_two()).map(|a| {
            (
                ext::external_memory_host::Device::new(&shared.instance.instance, &shared.device),
                a,
            )
        });
        Staging {
            readback_type: d.readback_type,
            slot_size: options.slot_bytes(discrete),
            slots: options.slot_count(discrete),
            copy_threads: options.copy_thread_count(),
            stream_copies: options.streams(),
            pool: OnceLock::new(),
            emh,
            import_min: options.import_min_bytes(),
            h2d: AtomicU8::new(options.h2d_strategy().to_u8()),
            bar_type: d.bar_type,
            discrete_gpu: d.discrete_gpu,
            bar_bytes: AtomicU64::new(0),
            shared,
        }
    }

    /// The persistent copy threads (started on first use).
    pub fn pool(&self) -> &CopyPool {
        self.pool.get_or_init(|| CopyPool::new(self.copy_threads))
    }

    /// The current host-to-device strategy.
    pub fn h2d_strategy(&self) -> H2dStrategy {
        H2dStrategy::from_u8(self.h2d.load(Ordering::Relaxed))
    }

    /// Sets the strategy and forgets an earlier failure to allocate the BAR ring.
    pub fn set_h2d_strategy(&self, rings: &mut Rings, strategy: H2dStrategy) {
        self.h2d.store(strategy.to_u8(), Ordering::Relaxed);
        rings.bar_failed = None;
    }

    /// Whether a device-local write of `len` bytes would go through the BAR ring.
    pub fn h2d_uses_bar(&self, len: u64) -> bool {
        self.h2d_strategy().uses_bar(
            len,
            self.bar_type.is_some(),
            self.discrete_gpu,
            self.shared.table.has_large_bar(),
        )
    }

    /// Bytes written through the BAR ring so far.
    pub fn bar_bytes_written(&self) -> u64 {
        self.bar_bytes.load(Ordering::Relaxed)
    }

    /// Host → buffer `dst` (not reachable through a mapping): through the BAR ring when the
    /// strategy says so and the ring exists, else the imported middle of `src` when
    /// importing is on, else the staging ring.
    pub fn upload(
        &self,
        sub: &mut Submit,
        rings: &mut Rings,
        dst: &VulkanBuffer,
        offset: u64,
        src: &[u8],
    ) -> Result<()> {
        if dst.placement == Placement::DeviceLocal && self.h2d_uses_bar(src.len() as u64) {
            match self.ensure_bar_ring(sub, rings) {
                Ok(()) => return self.staged_write(sub, rings, dst, offset, src, true),
                Err(e) => tracing::debug!("vulkan: BAR upload unavailable, staging instead: {e}"),
            }
        }
        if let Some((a, b)) = self.import_range(src.as_ptr() as usize, src.len()) {
            // SAFETY: `src[a..b]` is borrowed for this call and only read by the device
            // (the import API takes a mutable pointer); `a` and `b` are aligned.
            let done = unsafe {
                self.imported_copy(
                    sub,
                    src.as_ptr().add(a).cast_mut(),
                    (b - a) as u64,
                    dst,
                    offset + a as u64,
                    true,
                )?
            };
            if done {
                if a > 0 {
                    self.staged_write(sub, rings, dst, offset, &src[..a], false)?;
                }
                if b < src.len() {
                    self.staged_write(sub, rings, dst, offset + b as u64, &src[b..], false)?;
                }
                return Ok(());
            }
        }
        self.staged_write(sub, rings, dst, offset, src, false)
    }

    /// Buffer `src` (not reachable through a mapping) → host: the imported middle of `dst`
    /// when importing is on, else the staging ring.
    pub fn download(
        &self,
        sub: &mut Submit,
        rings: &mut Rings,
        src: &VulkanBuffer,
        offset: u64,
        dst: &mut [u8],
    ) -> Result<()> {
        if let Some((a, b)) = self.import_range(dst.as_ptr() as usize, dst.len()) {
            // SAFETY: `dst[a..b]` is borrowed mutably for this call; `a` and `b` are aligned.
            let done = unsafe {
                self.imported_copy(
                    sub,
                    dst.as_mut_ptr().add(a),
                    (b - a) as u64,
                    src,
                    offset + a as u64,
                    false,
                )?
            };
            if done {
                let n = dst.len();
                if a > 0 {
                    self.staged_read(sub, rings, src, offset, &mut dst[..a])?;
                }
                if b < n {
                    self.staged_read(sub, rings, src, offset + b as u64, &mut dst[b..])?;
                }
                return Ok(());
            }
        }
        self.staged_read(sub, rings, src, offset, dst)
    }

    /// The page-aligned middle `[a, b)` of a host slice (`ptr`, `len` bytes) to import with
    /// `VK_EXT_external_memory_host`, when importing is enabled and the slice is long enough.
    fn import_range(&self, ptr: usize, len: usize) -> Option<(usize, usize)> {
        let (_, align) = self.emh.as_ref()?;
        if (len as u64) < self.import_min {
            return None;
        }
        let align = *align as usize;
        let a = ptr.next_multiple_of(align) - ptr;
        let b = (ptr + len) / align * align - ptr;
        (b > a).then_some((a, b))
    }

    /// Copies between `len` bytes of host memory at `host` (imported for the duration of
    /// the copy) and `dev_buf` at `dev_off`; `upload` gives the direction. Returns
    /// `Ok(false)` when the driver refuses the import (the caller stages instead).
    ///
    /// # Safety
    /// `host..host+len` must be valid for reads (upload) or writes (download) and not be
    /// accessed by anyone else until this returns; `host` and `len` must be multiples of
    /// the import alignment.
    unsafe fn imported_copy(
        &self,
        sub: &mut Submit,
        host: *mut u8,
        len: u64,
        dev_buf: &VulkanBuffer,
        dev_off: u64,
        upload: bool,
    ) -> Result<bool> {
        let Some((emh, _)) = &self.emh else {
            return Ok(false);
        };
        let dev = &self.shared.device;
        let ht = vk::ExternalMemoryHandleTypeFlags::HOST_ALLOCATION_EXT;
        let mut hp = vk::MemoryHostPointerPropertiesEXT::default();
        // SAFETY: the function pointer belongs to this device (the extension is enabled);
        // `host` is a valid host address and `hp` a valid out-structure.
        let r = unsafe {
            (emh.fp().get_memory_host_pointer_properties_ext)(
                dev.handle(),
                ht,
                host.cast_const().cast(),
                &mut hp,
            )
        };
        if r != vk::Result::SUCCESS || hp.memory_type_bits == 0 {
            return Ok(false);
        }
        let mut eci = vk::ExternalMemoryBufferCreateInfo::default().handle_types(ht);
        let mut bci = vk::BufferCreateInfo::default()
            .size(len)
            .usage(vk::BufferUsageFlags::TRANSFER_SRC | vk::BufferUsageFlags::TRANSFER_DST);
        if self.shared.families.len() > 1 {
            bci = bci
                .sharing_mode(vk::SharingMode::CONCURRENT)
                .queue_family_indices(&self.shared.families);
        }
        let bci = bci.push_next(&mut eci);
        // SAFETY: valid device and create info.
        let Ok(buf) = (unsafe { dev.create_buffer(&bci, None) }) else {
            return Ok(false);
        };
        // SAFETY: `buf` was just created from `dev`.
        let req = unsafe { dev.get_buffer_memory_requirements(buf) };
        let bits = req.memory_type_bits & hp.memory_type_bits;
        if bits == 0 {
            // SAFETY: `buf` is unused.
            unsafe { dev.destroy_buffer(buf, None) };
            return Ok(false);
        }
        let mut imp = vk::ImportMemoryHostPointerInfoEXT::default()
            .handle_type(ht)
            .host_pointer(host.cast());
        let ai = vk::MemoryAllocateInfo::default()
            .allocation_size(len)
            .memory_type_index(bits.trailing_zeros())
            .push_next(&mut imp);
        // SAFETY: `host` is aligned and `len` a multiple of the import alignment (caller's
        // contract); the memory type is one the driver allows for this pointer.
        let mem = match unsafe { dev.allocate_memory(&ai, None) } {
            Ok(m) => m,
            Err(_) => {
                // SAFETY: `buf` is unused.
                unsafe { dev.destroy_buffer(buf, None) };
                return Ok(false);
            }
        };
        // SAFETY: `mem` covers `len` bytes and `buf` is unbound.
        let r = match unsafe { dev.bind_buffer_memory(buf, mem, 0) } {
            Ok(()) => {
                let region = vk::BufferCopy {
                    src_offset: if upload { 0 } else { dev_off },
                    dst_offset: if upload { dev_off } else { 0 },
                    size: len,
                };
                let (from, to) = if upload {
                    (buf, dev_buf.raw)
                } else {
                    (dev_buf.raw, buf)
                };
                let r = sub.run_once(&self.shared, false, |dev, cmd| {
                    // SAFETY: `cmd` is recording; both buffers are valid and the regions
                    // in bounds (checked by the caller).
                    unsafe { dev.cmd_copy_buffer(cmd, from, to, &[region]) };
                    Ok(())
                });
                if r.is_err() && sub.wait(dev, sub.value()).is_err() {
                    // SAFETY: valid device; nothing may use `buf` when it is freed below.
                    let _ = unsafe { dev.device_wait_idle() };
                }
                r.map(|()| true)
            }
            Err(e) => Err(vk_err("vkBindBufferMemory", e)),
        };
        // SAFETY: the copy completed (or never ran); the buffer goes before its memory,
        // and the memory before the host pages are handed back to the caller.
        unsafe {
            dev.destroy_buffer(buf, None);
            dev.free_memory(mem, None);
        }
        r
    }

    /// Creates the staging ring on first use.
    fn ensure_ring(&self, sub: &Submit, rings: &mut Rings) -> Result<()> {
        if !rings.ring.is_empty() {
            return Ok(());
        }
        let ty = self
            .readback_type
            .ok_or_else(|| Error::UnsupportedPlacement {
                device: self.shared.name.clone(),
                placement: Placement::Staging,
            })?;
        rings.ring = self.make_slots(sub, ty)?;
        Ok(())
    }

    /// Creates the BAR upload ring on first use. Its memory is `DEVICE_LOCAL|HOST_VISIBLE`
    /// (VRAM behind the BAR on a discrete GPU): the CPU only ever *writes* it, the transfer
    /// queue reads it. Fails with a typed error (no BAR type: `Error::Backend`; no room:
    /// `Error::OutOfMemory`, ...) that the caller answers by staging instead; a failure is
    /// remembered until the strategy is set again.
    pub(crate) fn ensure_bar_ring(&self, sub: &Submit, rings: &mut Rings) -> Result<()> {
        if !rings.bar_ring.is_empty() {
            return Ok(());
        }
        if let Some(why) = &rings.bar_failed {
            return Err(backend_err(
                "BAR upload ring",
                format!("unavailable earlier: {why}"),
            ));
        }
        let r = match self.bar_type {
            Some(ty) => self.make_slots(sub, ty),
            None => Err(backend_err(
                "BAR upload ring",
                format!(
                    "{} has no DEVICE_LOCAL|HOST_VISIBLE memory type VUMA may write (no large BAR)",
                    self.shared.name
                ),
            )),
        };
        match r {
            Ok(slots) => {
                rings.bar_ring = slots;
                Ok(())
            }
            Err(e) => {
                rings.bar_failed = Some(e.to_string());
                Err(e)
            }
        }
    }

    /// Creates a ring's slots in memory type `ty`: mapped buffers of `slot_size` bytes used
    /// by the transfer queue family only, each with its own command buffer. On failure, the
    /// slots made so far are destroyed.
    fn make_slots(&self, sub: &Submit, ty: u32) -> Result<Vec<Slot>> {
        let q = sub.transfer_queue();
        let (pool, family) = (q.pool, q.family);
        let mut slots = Vec::with_capacity(self.slots);
        for _ in 0..self.slots {
            match self.make_slot(pool, family, ty) {
                Ok(slot) => slots.push(slot),
                Err(e) => {
                    self.destroy_slots(pool, slots);
                    return Err(e);
                }
            }
        }
        Ok(slots)
    }

    fn make_slot(&self, pool: vk::CommandPool, family: u32, ty: u32) -> Result<Slot> {
        let dev = &self.shared.device;
        let mut b = VulkanBuffer::create(
            &self.shared,
            self.slot_size,
            ty,
            Placement::Staging,
            Some(family),
        )?;
        let ptr = b
            .mapped
            .ok_or_else(|| backend_err("vkMapMemory", "ring memory is not mapped"))?;
        let cai = vk::CommandBufferAllocateInfo::default()
            .command_pool(pool)
            .level(vk::CommandBufferLevel::PRIMARY)
            .command_buffer_count(1);
        // SAFETY: `pool` belongs to `dev`; we hold the device lock (pools are externally
        // synchronised).
        let cmd = unsafe { dev.allocate_command_buffers(&cai) }
            .map_err(|e| vk_err("vkAllocateCommandBuffers", e))?[0];
        // Take the buffer apart: the ring owns the handle and allocation from now on.
        let alloc = b.alloc.take();
        let buffer = b.raw;
        b.raw = vk::Buffer::null();
        drop(b);
        Ok(Slot {
            buffer,
            alloc,
            ptr,
            cmd,
            busy_until: 0,
        })
    }

    /// Destroys the BAR ring, whose slots no pending work uses (never submitted, or waited
    /// for), so that the next BAR write makes it again.
    #[cfg(test)]
    pub(crate) fn drop_bar_ring(&self, sub: &Submit, rings: &mut Rings) {
        let slots = std::mem::take(&mut rings.bar_ring);
        self.destroy_slots(sub.transfer_queue().pool, slots);
    }

    /// Destroys slots that no pending work uses (never submitted, or waited for).
    fn destroy_slots(&self, pool: vk::CommandPool, slots: Vec<Slot>) {
        let dev = &self.shared.device;
        for s in slots {
            // SAFETY: the command buffer came from `pool` and is not pending; the buffer
            // and its memory are unused (caller's contract).
            unsafe { dev.free_command_buffers(pool, &[s.cmd]) };
            self.shared.destroy_buffer(s.buffer, s.alloc);
        }
    }

    /// Host → device-local through a ring, pipelined: the CPU fills slot i+1 while the
    /// transfer queue copies slot i into `dst`.
    ///
    /// `bar: false` uses the staging ring (system memory; streaming stores unless
    /// `VUMA_VK_STREAM_COPY=0`). `bar: true` uses the BAR ring, which must exist
    /// ([`Self::ensure_bar_ring`]): the copy threads write each chunk into VRAM through the
    /// BAR with 64-byte aligned non-temporal stores (always: BAR memory is write-combined)
    /// and never read it, and the `vkCmdCopyBuffer` is a VRAM→VRAM copy.
    ///
    /// Synchronisation, the same for both rings: a slot is written by the host only after
    /// the timeline value of its previous copy has been waited for (the copy that read it
    /// finished: write-after-read); host writes before `vkQueueSubmit` are visible to the
    /// device without a barrier (every mapping is host-coherent and the stores are fenced);
    /// each submission opens with a full barrier after earlier work (write-after-write on
    /// `dst`) and closes with one to the host; the call waits for its last submission.
    pub fn staged_write(
        &self,
        sub: &mut Submit,
        rings: &mut Rings,
        dst: &VulkanBuffer,
        offset: u64,
        src: &[u8],
        bar: bool,
    ) -> Result<()> {
        if bar {
            if rings.bar_ring.is_empty() {
                return Err(backend_err("BAR upload ring", "not created"));
            }
        } else {
            self.ensure_ring(sub, rings)?;
        }
        let dev = &self.shared.device;
        let slot_size = self.slot_size as usize;
        let queue = sub.transfer_queue().queue;
        let pool = self.pool();
        let stream = bar || self.stream_copies;
        let mut result = Ok(());
        let mut pos = 0usize;
        // The BAR ring needs no ramp: its VRAM→VRAM copies take microseconds, so nothing
        // waits for the first or the last chunk; full slots use every copy thread.
        let plan = if bar {
            flat_plan(src.len(), slot_size)
        } else {
            chunk_plan(src.len(), slot_size)
        };
        for (k, len) in plan.into_iter().enumerate() {
            let chunk = &src[pos..pos + len];
            let s = k % rings.slots(bar).len();
            let busy = rings.slots(bar)[s].busy_until;
            if let Err(e) = sub.wait(dev, busy) {
                result = Err(e);
                break;
            }
            let slot = &rings.slots(bar)[s];
            // SAFETY: the slot's mapping covers `slot_size >= len` bytes and its last copy
            // has completed (waited above); we hold the device lock. The slice is only
            // written (`CopyPool::copy` never reads its destination), which matters for
            // BAR memory: CPU reads of it crawl.
            let host = unsafe { std::slice::from_raw_parts_mut(slot.ptr.0.as_ptr(), len) };
            pool.copy(host, chunk, stream);
            let (buf, cmd) = (slot.buffer, slot.cmd);
            let region = vk::BufferCopy {
                src_offset: 0,
                dst_offset: offset + pos as u64,
                size: len as u64,
            };
            pos += len;
            let r = begin(dev, cmd).and_then(|()| {
                // SAFETY: `cmd` is recording; both buffers are valid and the region is in
                // bounds (checked by the caller).
                unsafe { dev.cmd_copy_buffer(cmd, buf, dst.raw, &[region]) };
                sub.submit(dev, self.shared.side, queue, cmd)
            });
            match r {
                Ok(v) => rings.slots(bar)[s].busy_until = v,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        let last = sub.value();
        let w = sub.wait(dev, last);
        // Slots are free only once their copies are known to be done.
        if w.is_ok() {
            for s in rings.slots(bar) {
                s.busy_until = 0;
            }
        }
        let r = result.and(w);
        if bar && r.is_ok() {
            self.bar_bytes
                .fetch_add(src.len() as u64, Ordering::Relaxed);
        }
        r
    }

    /// Device-local → host through the staging ring, pipelined: the transfer queue copies
    /// chunk i+1 while the CPU drains chunk i.
    fn staged_read(
        &self,
        sub: &mut Submit,
        rings: &mut Rings,
        src: &VulkanBuffer,
        offset: u64,
        dst: &mut [u8],
    ) -> Result<()> {
        self.ensure_ring(sub, rings)?;
        let dev = &self.shared.device;
        let queue = sub.transfer_queue().queue;
        let pool = self.pool();
        let plan = chunk_plan(dst.len(), self.slot_size as usize);
        let starts: Vec<usize> = plan
            .iter()
            .scan(0usize, |p, &l| {
                let s = *p;
                *p += l;
                Some(s)
            })
            .collect();
        let n = plan.len();
        let slots = rings.ring.len();
        let mut submitted = 0usize;
        let submit = |sub: &mut Submit, rings: &mut Rings, k: usize| -> Result<()> {
            let s = k % slots;
            let (buf, cmd) = (rings.ring[s].buffer, rings.ring[s].cmd);
            let region = vk::BufferCopy {
                src_offset: offset + starts[k] as u64,
                dst_offset: 0,
                size: plan[k] as u64,
            };
            begin(dev, cmd)?;
            // SAFETY: `cmd` is recording; the region is in bounds (checked by the caller)
            // and the slot is free (its previous chunk was drained).
            unsafe { dev.cmd_copy_buffer(cmd, src.raw, buf, &[region]) };
            let v = sub.submit(dev, self.shared.side, queue, cmd)?;
            rings.ring[s].busy_until = v;
            Ok(())
        };
        let mut result = Ok(());
        for k in 0..n {
            while submitted < n && submitted < k + slots {
                if let Err(e) = submit(sub, rings, submitted) {
                    result = Err(e);
                    break;
                }
                submitted += 1;
            }
            if result.is_err() {
                break;
            }
            let s = k % slots;
            if let Err(e) = sub.wait(dev, rings.ring[s].busy_until) {
                result = Err(e);
                break;
            }
            let (start, len) = (starts[k], plan[k]);
            // SAFETY: the copy into the slot completed (waited above) and made its writes
            // visible to the host (trailing barrier); we hold the device lock.
            let host = unsafe { std::slice::from_raw_parts(rings.ring[s].ptr.0.as_ptr(), len) };
            pool.copy(&mut dst[start..start + len], host, self.stream_copies);
            rings.ring[s].busy_until = 0;
        }
        let last = sub.value();
        let w = sub.wait(dev, last);
        if w.is_ok() {
            for s in &mut rings.ring {
                s.busy_until = 0;
            }
        }
        result.and(w)
    }
}

/// Cuts a transfer of `total` bytes into chunks of `slot` bytes, the last one shorter.
fn flat_plan(total: usize, slot: usize) -> Vec<usize> {
    let slot = slot.max(1);
    let mut plan = vec![slot; total / slot];
    if !total.is_multiple_of(slot) {
        plan.push(total % slot);
    }
    plan
}

/// Cuts a transfer of `total` bytes into chunks of at most `slot` bytes. Long transfers
/// start and end with short chunks (slot/8, slot/4, slot/2): the first chunk's host copy
/// (uploads) and the last chunk's host copy (downloads) cannot overlap any DMA, so they
/// are kept small.
fn chunk_plan(total: usize, slot: usize) -> Vec<usize> {
    let slot = slot.max(1);
    let mut head = Vec::new();
    let mut left = total;
    let mut c = (slot / 8).max(1);
    while c < slot && left > 2 * c + slot {
        head.push(c);
        left -= 2 * c;
        c *= 2;
    }
    let mut plan = head.clone();
    while left > 0 {
        let n = left.min(slot);
        plan.push(n);
        left -= n;
    }
    plan.extend(head.iter().rev());
    plan
}

#[cfg(test)]
mod tests {
    use super::{chunk_plan, flat_plan};

    #[test]
    fn chunk_plan_covers_and_ramps() {
        let m = 1usize << 20;
        for total in [0, 1, m, 16 * m, 33 * m, 256 * m + 12345, 1000 * m + 7] {
            for slot in [8 * m, 16 * m, 64 * m] {
                let f = flat_plan(total, slot);
                assert_eq!(f.iter().sum::<usize>(), total);
                assert!(f.iter().all(|&c| c > 0 && c <= slot));
                assert_eq!(f.len(), total.div_ceil(slot));
                let p = chunk_plan(total, slot);
                assert_eq!(p.iter().sum::<usize>(), total);
                assert!(p.iter().all(|&c| c > 0 && c <= slot));
                if total > 4 * slot {
                    assert_eq!(p[0], slot / 8);
                    assert_eq!(*p.last().unwrap(), slot / 8);
                }
            }
        }
    }
}
