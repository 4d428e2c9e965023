//! How copies move, for the memory manager: making room (LRU eviction, write-back of sole
//! copies, packing of clean ones), host copies (pinned, unpacked, downloaded) and filling
//! device copies (outside the lock from a plain host copy, else under it).

use super::*;
use crate::hostpool::size_class;

impl MemoryManager {
    /// Evicts LRU copies on device `index` until `size` more bytes fit in its budget; the
    /// write-backs' reports go to `reports`.
    pub(super) fn make_room(
        &self,
        st: &mut State,
        index: usize,
        size: u64,
        keep: BufferId,
        reports: &mut Vec<TransferReport>,
    ) -> Result<Vec<(BufferId, u64)>> {
        let slot = &self.shared.devices[index];
        let mut evicted = Vec::new();
        loop {
            let used = st.budget_used[index];
            if used.saturating_add(size) <= slot.budget {
                return Ok(evicted);
            }
            // Least recently used copy here that is not in use.
            let victim = st
                .buffers
                .iter()
                .filter(|(id, b)| **id != keep && b.in_use == 0)
                .filter_map(|(id, b)| {
                    b.copies
                        .get(&index)
                        .filter(|c| c.counts)
                        .map(|c| (c.last_use, *id))
                })
                .min();
            let Some((_, vid)) = victim else {
                if size >= u64::MAX / 4 {
                    return Ok(evicted);
                }
                return Err(Error::BudgetExceeded {
                    device: slot.device.info().name.clone(),
                    requested: size,
                    in_use: used,
                    budget: slot.budget,
                });
            };
            let wb = self.evict_copy(st, vid, index, reports)?;
            evicted.push((vid, wb));
        }
    }

    /// Allocates `id`'s copy on device `index` (it has none): the placement the policy
    /// chooses for `size` and `reuse` (device-local when the device has no pool for it),
    /// within the budget (LRU copies evicted first; once more, everything evictable and the
    /// pools' cached blocks, when the driver is fuller than the budget says). The copy is
    /// invalid, last used at `tick`, and counted in the statistics; `residency` gets the
    /// placement, its reason, the evictions and their write-backs.
    pub(super) fn place_copy(
        &self,
        st: &mut State,
        id: BufferId,
        index: usize,
        reuse: u32,
        tick: u64,
        residency: &mut Residency,
    ) -> Result<()> {
        let slot = &self.shared.devices[index];
        let size = st.buffers[&id].size;
        let info = slot.device.info();
        let decision = self
            .placement_decision(size, reuse, index)
            .expect("a valid index");
        let placement = if slot.pools.contains_key(&decision.placement) {
            decision.placement
        } else {
            Placement::DeviceLocal
        };
        let counts = counts_against_budget(slot, placement);
        if counts && size > slot.budget {
            return Err(Error::TooLarge {
                device: info.name.clone(),
                requested: size,
                max: slot.budget,
            });
        }
        if counts {
            residency.evicted = self.make_room(st, index, size, id, &mut residency.transfers)?;
        }
        let pool = slot
            .pools
            .get(&placement)
            .ok_or_else(|| Error::UnsupportedPlacement {
                device: info.name.clone(),
                placement,
            })?;
        let alloc = match pool.alloc(size) {
            Ok(a) => a,
            Err(e) if e.is_transient() => {
                // The driver is fuller than our budget thinks: evict everything evictable
                // on this device, give cached blocks back, retry once.
                let more = self
                    .make_room(st, index, u64::MAX / 4, id, &mut residency.transfers)
                    .unwrap_or_default();
                residency.evicted.extend(more);
                for p in slot.pools.values() {
                    p.trim();
                }
                pool.alloc(size)?
            }
            Err(e) => return Err(e),
        };
        residency.placement = placement;
        residency.reason = decision.reason;
        residency.allocated = true;
        st.stats.devices[index].count_allocation(size);
        if counts {
            st.budget_used[index] += size;
        }
        st.buffers.get_mut(&id).expect("live").copies.insert(
            index,
            Copy {
                alloc,
                placement,
                valid: false,
                last_use: tick,
                counts,
                filling: false,
            },
        );
        Ok(())
    }

    /// Frees `id`'s copy on `index`, writing it back to the host first if it is the only
    /// valid copy (through the transfer path when there is one: the host copy may end up
    /// packed). On a failed write-back nothing changes.
    pub(super) fn evict_copy(
        &self,
        st: &mut State,
        id: BufferId,
        index: usize,
        reports: &mut Vec<TransferReport>,
    ) -> Result<u64> {
        let _span = tracing::debug_span!("evict", buffer = id.0, device = index).entered();
        let b = &st.buffers[&id];
        let c = &b.copies[&index];
        let sole =
            c.valid && !b.host_valid && !b.copies.iter().any(|(d, o)| *d != index && o.valid);
        let mut wb = 0;
        if sole {
            let dev = &self.shared.devices[index].device;
            let (block, offset, size) = (c.alloc.block().clone(), c.alloc.offset(), b.size);
            let packed = match &self.shared.config.transfer {
                Some(path) => match path.evict(dev.as_ref(), block.as_ref(), offset, size) {
                    Ok(p) => p,
                    Err(e) => {
                        // The device copy is intact: fall back to a plain write-back.
                        tracing::warn!(
                            buffer = id.0,
                            device = index,
                            error = %e,
                            "transfer path could not pack the write-back; copying it plainly"
                        );
                        None
                    }
                },
                None => None,
            };
            wb = size;
            let report = match packed {
                Some((data, report)) => {
                    let b = st.buffers.get_mut(&id).expect("live");
                    let had_host = b.host.take().is_some();
                    b.host_valid = true;
                    let stored = data.stored_bytes();
                    b.packed = Some(Packed {
                        device: index,
                        data,
                    });
                    let h = &mut st.stats.host;
                    if had_host {
                        h.bytes_in_use -= size;
                    }
                    h.bytes_in_use += stored;
                    h.packed_bytes += stored;
                    h.peak_bytes = h.peak_bytes.max(h.bytes_in_use);
                    st.stats.devices[index].packed_writebacks += 1;
                    report
                }
                None => {
                    let t0 = std::time::Instant::now();
                    // Reuse the stale host copy's memory (no fresh pages to fault in); it
                    // stays as it was, and invalid, if the read fails.
                    let b = st.buffers.get_mut(&id).expect("live");
                    let had_host = b.host.is_some();
                    let mut data = match b.host.take() {
                        Some(h) => h,
                        None => self.new_host_copy(size, Init::Overwritten)?,
                    };
                    let r = dev.read(block.as_ref(), offset, &mut data.bytes_mut());
                    if had_host || r.is_ok() {
                        b.host = Some(data);
                    }
                    if let Err(e) = r {
                        self.note_loss(st, index, &e);
                        return Err(e);
                    }
                    let b = st.buffers.get_mut(&id).expect("live");
                    b.host_valid = true;
                    if !had_host {
                        st.stats.host.count_allocation(size);
                    }
                    TransferReport::direct(TransferKind::Download, size, t0.elapsed().as_secs_f64())
                }
            };
            let link = self.shared.over_link(index);
            let h = &mut st.stats.host;
            h.bytes_in += wb;
            if link {
                h.link_bytes_in += report.link_bytes;
            }
            h.bytes_saved += report.bytes_saved();
            st.stats.devices[index].writeback_bytes += wb;
            reports.push(report);
        }
        if !sole {
            self.pack_clean_copy(st, id, index, reports);
        }
        let b = st.buffers.get_mut(&id).expect("live");
        let size = b.size;
        if b.copies.remove(&index).is_some_and(|c| c.counts) {
            st.budget_used[index] -= size;
        }
        let s = &mut st.stats.devices[index];
        s.bytes_in_use -= size;
        s.evictions += 1;
        Ok(wb)
    }

    /// A host copy of `size` bytes initialised as `init` says, pinned for the devices that
    /// can DMA from it when the pinned budget allows: a pooled pinned block of its size
    /// class when there is one (no page faults, no registration), else fresh memory pinned
    /// now. Takes no lock of the manager's state.
    pub(super) fn new_host_copy(&self, size: u64, init: Init<'_>) -> Result<HostCopy> {
        let cfg = &self.shared.config.pin;
        let pool = &self.shared.host_pool;
        if !cfg.enabled || size < cfg.min_bytes {
            return HostCopy::pageable(size, init);
        }
        let devs = pool.pin_devices();
        let class = usize::try_from(size).ok().and_then(size_class);
        let (Some(class), false) = (class, devs.is_empty()) else {
            return HostCopy::pageable(size, init);
        };
        let len = size as usize;
        if let Some(block) = pool.take(class, &devs) {
            return Ok(HostCopy::reuse(block, len, init, pool.clone()));
        }
        if !pool.claim(class as u64) {
            tracing::debug!(
                bytes = size,
                budget = cfg.budget_bytes(),
                "pinned-host budget full: this host copy stays pageable"
            );
            return HostCopy::pageable(size, init);
        }
        match HostCopy::pinned_fresh(len, class, init, &devs, pool.clone()) {
            Ok(Ok(h)) => Ok(h),
            Ok(Err(pageable)) => {
                pool.unclaim(class as u64);
                Ok(pageable)
            }
            Err(e) => {
                pool.unclaim(class as u64);
                // The class's rounding may be what did not fit: try the exact size.
                HostCopy::pageable(size, init).map_err(|_| e)
            }
        }
    }

    /// Registers a new buffer of `size` bytes: unwritten (zeros, no host copy) or holding
    /// `host` (valid, written).
    pub(super) fn insert_buffer(&self, size: u64, host: Option<HostCopy>) -> UnifiedBuffer {
        let written = host.is_some();
        let mut st = self.shared.lock();
        let id = BufferId(st.next_id);
        st.next_id += 1;
        st.buffers.insert(
            id,
            BufState {
                size,
                host,
                packed: None,
                host_valid: true,
                written,
                copies: HashMap::new(),
                in_use: 0,
                writers: Vec::new(),
                in_place: Vec::new(),
                retired: Vec::new(),
                lost: None,
                dropped: false,
            },
        );
        st.stats.buffers += 1;
        if written {
            st.stats.host.count_allocation(size);
        }
        UnifiedBuffer {
            id,
            size,
            shared: self.shared.clone(),
        }
    }

    /// Gives `id` a fresh host copy when its host copy is lent to kernels using it in place,
    /// so that what the manager writes next does not change it under them: the lent copy
    /// is retired (kept, lent, until the last of their leases ends). The fresh copy holds the same
    /// bytes when `keep`, else anything (for a caller that overwrites every byte, or
    /// downloads into an invalid copy). Nothing changes on failure.
    pub(super) fn unshare_host(&self, st: &mut State, id: BufferId, keep: bool) -> Result<()> {
        let b = &st.buffers[&id];
        let size = b.size;
        let fresh = match &b.host {
            Some(h) if h.is_lent() => {
                if keep {
                    self.new_host_copy(size, Init::Bytes(&h.bytes()))?
                } else {
                    self.new_host_copy(size, Init::Overwritten)?
                }
            }
            _ => return Ok(()),
        };
        let b = st.buffers.get_mut(&id).expect("live");
        let lent = b.host.replace(fresh).expect("lent above");
        b.retired.push(lent);
        st.stats.host.count_allocation(size);
        Ok(())
    }

    /// Gives the host copy of `id` memory if it has none, initialised as `init` says;
    /// returns whether it did (a fresh copy already holds `init`).
    pub(super) fn materialise_host(
        &self,
        st: &mut State,
        id: BufferId,
        init: Init<'_>,
    ) -> Result<bool> {
        let size = st.buffers[&id].size;
        if st.buffers[&id].host.is_some() {
            return Ok(false);
        }
        let h = self.new_host_copy(size, init)?;
        st.buffers.get_mut(&id).expect("live buffer").host = Some(h);
        st.stats.host.count_allocation(size);
        Ok(true)
    }

    /// Bytes pinned now: pinned host copies and the pooled blocks kept for reuse (see
    /// [`PinConfig`]).
    pub fn pinned_bytes(&self) -> u64 {
        self.shared.host_pool.pinned_bytes()
    }

    /// Unpins and frees the pooled pinned blocks (kept for reuse by later host copies);
    /// returns the bytes freed. Host copies in use stay as they are.
    pub fn release_pooled_host(&self) -> u64 {
        self.shared.host_pool.clear()
    }

    /// Before a clean device copy of `id` on `index` is freed: lets the transfer path pack
    /// it (next to the plain host copy) when the buffer has no packed copy yet, so later
    /// uploads cross the link packed. Best effort: a failure only logs.
    pub(super) fn pack_clean_copy(
        &self,
        st: &mut State,
        id: BufferId,
        index: usize,
        reports: &mut Vec<TransferReport>,
    ) {
        let Some(path) = &self.shared.config.transfer else {
            return;
        };
        let b = &st.buffers[&id];
        let c = &b.copies[&index];
        if !(c.valid && b.host_valid && b.written && b.packed.is_none() && b.host.is_some()) {
            return;
        }
        let dev = &self.shared.devices[index].device;
        let (block, offset, size) = (c.alloc.block().clone(), c.alloc.offset(), b.size);
        let host = b.host.as_ref().expect("checked above");
        let packed_here = path.pack_clean_host(dev.as_ref(), &host.bytes());
        match packed_here {
            Ok(Some(data)) => {
                tracing::debug!(
                    buffer = id.0,
                    device = index,
                    stored = data.stored_bytes(),
                    "clean copy packed on the host"
                );
                keep_packed(st, id, index, data);
                return;
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(
                buffer = id.0,
                device = index,
                error = %e,
                "packing a clean copy on the host failed; trying the device"
            ),
        }
        match path.pack_clean(dev.as_ref(), block.as_ref(), offset, size) {
            Ok(Some((data, report))) => {
                keep_packed(st, id, index, data);
                if self.shared.over_link(index) {
                    st.stats.host.link_bytes_in += report.link_bytes;
                }
                reports.push(report);
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(
                buffer = id.0,
                device = index,
                error = %e,
                "packing a clean copy failed; later uploads go plain"
            ),
        }
    }

    /// Turns a packed host copy back into plain bytes (decoded on the host with the help
    /// of the device that packed it). On failure the packed copy stays as it was.
    pub(super) fn unpack_host(&self, st: &mut State, id: BufferId) -> Result<()> {
        let b = &st.buffers[&id];
        let Some(p) = &b.packed else {
            return Ok(());
        };
        if b.host.is_some() {
            // A clean packed copy next to the plain one: the plain bytes are valid.
            return Ok(());
        }
        let size = b.size;
        let _span = tracing::debug_span!("unpack", buffer = id.0, bytes = size).entered();
        let mut data = self.new_host_copy(size, Init::Zero)?;
        p.data.unpack(
            self.shared.devices[p.device].device.as_ref(),
            &mut data.bytes_mut(),
        )?;
        drop_packed(st, id);
        let b = st.buffers.get_mut(&id).expect("live");
        b.host = Some(data);
        let h = &mut st.stats.host;
        h.bytes_in_use += size;
        h.peak_bytes = h.peak_bytes.max(h.bytes_in_use);
        h.allocations += 1;
        Ok(())
    }

    /// Makes the plain host copy valid: unpacks a packed one, or downloads from a valid
    /// device copy.
    pub(super) fn make_host_valid(&self, st: &mut State, id: BufferId) -> Result<()> {
        let b = &st.buffers[&id];
        b.check_not_lost(id)?;
        if b.host_valid {
            return self.unpack_host(st, id);
        }
        // Kernels reading the stale host copy in place keep it (a device wrote the buffer
        // since they started): the download goes to a fresh one.
        self.unshare_host(st, id, false)?;
        let b = &st.buffers[&id];
        let _span = tracing::debug_span!("download", buffer = id.0, bytes = b.size).entered();
        let (&d, c) = b
            .copies
            .iter()
            .find(|(_, c)| c.valid)
            .ok_or_else(|| Error::invalid("internal: no valid copy"))?;
        let block = c.alloc.block().clone();
        let offset = c.alloc.offset();
        let size = b.size;
        let b = st.buffers.get_mut(&id).expect("live");
        // Reuse the (stale) host copy's memory; it stays invalid if the read fails.
        let had = b.host.is_some();
        let mut data = match b.host.take() {
            Some(h) => h,
            None => self.new_host_copy(size, Init::Overwritten)?,
        };
        let dev = &self.shared.devices[d].device;
        let r = dev.read(block.as_ref(), offset, &mut data.bytes_mut());
        b.host = Some(data);
        if let Err(e) = r {
            if !had {
                b.host = None;
            }
            if matches!(e, Error::DeviceLost { .. }) {
                // Its copy went with the device: recover from what is left, or say the
                // data is lost (`lose_device` dropped copy `d`, so this ends).
                self.note_loss(st, d, &e);
                return self.make_host_valid(st, id);
            }
            return Err(e);
        }
        b.host_valid = true;
        if !had {
            st.stats.host.bytes_in_use += size;
            st.stats.host.peak_bytes = st.stats.host.peak_bytes.max(st.stats.host.bytes_in_use);
            st.stats.host.allocations += 1;
        }
        st.stats.host.bytes_in += size;
        if self.shared.over_link(d) {
            st.stats.host.link_bytes_in += size;
        }
        Ok(())
    }

    /// Whether an upload into an invalid copy of `id` can run outside the lock: the source
    /// is the plain, valid, materialised host copy (no packed copy to prefer, nothing to
    /// download first), not lent to kernels using it in place (their accesses and the
    /// upload's are ordered by the lent region's lock, which an upload under the manager's
    /// lock takes), and no kernel holds the buffer for writing.
    pub(super) fn fills_outside_lock(&self, st: &State, id: BufferId) -> bool {
        let b = &st.buffers[&id];
        b.written
            && b.host_valid
            && b.packed.is_none()
            && b.host.as_ref().is_some_and(|h| !h.is_lent())
            && b.writers.is_empty()
    }

    /// Uploads the host copy of `id` into its (invalid) copy on `index` with the lock
    /// released: the copy is marked `filling` and the buffer in use, so nothing evicts it,
    /// frees or changes the host copy (writers wait for `filled`), or fills it twice.
    /// Returns with the lock held again, whatever the outcome.
    pub(super) fn fill_outside_lock<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
        id: BufferId,
        index: usize,
        residency: &mut Residency,
    ) -> (MutexGuard<'a, State>, Result<()>) {
        let dev = self.shared.devices[index].device.clone();
        let path = self.shared.config.transfer.clone();
        let b = st.buffers.get_mut(&id).expect("live");
        let size = b.size;
        let host = b.host.as_ref().expect("materialised");
        let (src, pinned) = (host.as_ptr(), host.is_pinned());
        b.in_use += 1;
        let c = b.copies.get_mut(&index).expect("copy");
        c.filling = true;
        let (block, off) = (c.alloc.block().clone(), c.alloc.offset());
        drop(st);
        let _span =
            tracing::debug_span!("upload", buffer = id.0, device = index, bytes = size).entered();
        // SAFETY: `src` points to the host copy's `size` bytes. While the copy is
        // `filling`, every mutator of the host copy waits (`write`, `with_host_mut`), and
        // so does every acquire that would lend it to kernels in place (it is not lent:
        // `fills_outside_lock`); the buffer being in use keeps it from being dropped or its
        // host copy replaced (only write-backs of a sole device copy replace it, and the
        // host copy is valid).
        let host = unsafe { std::slice::from_raw_parts(src, size as usize) };
        let r = match &path {
            Some(path) => path.upload(dev.as_ref(), host, block.as_ref(), off),
            None => {
                let t0 = std::time::Instant::now();
                dev.write(block.as_ref(), off, host).map(|()| {
                    TransferReport::direct(TransferKind::Upload, size, t0.elapsed().as_secs_f64())
                })
            }
        };
        let mut st = self.shared.lock();
        let b = st.buffers.get_mut(&id).expect("live while in use");
        b.in_use -= 1;
        if let Some(c) = b.copies.get_mut(&index) {
            c.filling = false;
        }
        st.changes += 1;
        self.shared.filled.notify_all();
        let r = r.map(|mut report| {
            report
                .decision
                .push_str(host_source_note(pinned, dev.as_ref()));
            record_upload(&mut st, index, &report, self.shared.over_link(index));
            residency.bytes_moved = size;
            residency.source = Some(Location::Host);
            residency.transfers.push(report);
        });
        (st, r)
    }

    /// Makes `buf` resident on device `index` for reading and lets it go again: the upload
    /// happens now (outside the manager's lock when it comes from the host copy, so other
    /// threads' work goes on), and a later acquire finds it resident. What
    /// `cudaMemPrefetchAsync` is to Unified Memory; run it on another thread (the facade's
    /// `prefetch` does) to overlap it with work on other buffers.
    pub fn prefetch(&self, buf: &UnifiedBuffer, index: usize) -> Result<Residency> {
        let lease = self.acquire(buf, index, AccessMode::Read, 1)?;
        let residency = lease.residency.clone();
        self.release(lease, Outcome::NotRun);
        Ok(residency)
    }

    /// Fills the (invalid) copy on `index` from the cheapest valid source: a packed host
    /// copy this device can decode, else the plain host copy (through the transfer path
    /// when there is one).
    pub(super) fn fill_copy(
        &self,
        st: &mut State,
        id: BufferId,
        index: usize,
    ) -> Result<(u64, Option<Location>, Option<TransferReport>)> {
        let dev = &self.shared.devices[index].device;
        let b = &st.buffers[&id];
        let dst = &b.copies[&index];
        let size = b.size;
        let _span =
            tracing::debug_span!("upload", buffer = id.0, device = index, bytes = size).entered();
        if !b.written {
            dev.fill(dst.alloc.block().as_ref(), dst.alloc.offset(), size, 0)?;
            return Ok((0, None, None));
        }
        if b.host_valid {
            if let Some(p) = &b.packed {
                if p.data.can_upload_to(dev.as_ref()) {
                    let report = p.data.upload(
                        dev.as_ref(),
                        dst.alloc.block().as_ref(),
                        dst.alloc.offset(),
                    )?;
                    record_upload(st, index, &report, self.shared.over_link(index));
                    return Ok((size, Some(Location::Host), Some(report)));
                }
            }
        }
        // Another device holds the data (same-device copies are impossible here: one copy
        // per device), or the host copy is packed for another device: go through plain
        // host bytes.
        self.make_host_valid(st, id)?;
        let b = &st.buffers[&id];
        let dst = &b.copies[&index];
        let (block, off) = (dst.alloc.block().as_ref(), dst.alloc.offset());
        let mut report = match (&b.host, &self.shared.config.transfer) {
            (Some(h), Some(path)) => path.upload(dev.as_ref(), &h.bytes(), block, off)?,
            (Some(h), None) => {
                let t0 = std::time::Instant::now();
                dev.write(block, off, &h.bytes())?;
                TransferReport::direct(TransferKind::Upload, size, t0.elapsed().as_secs_f64())
            }
            (None, _) => {
                dev.fill(block, off, size, 0)?;
                return Ok((0, None, None));
            }
        };
        let pinned = b.host.as_ref().is_some_and(HostCopy::is_pinned);
        report
            .decision
            .push_str(host_source_note(pinned, dev.as_ref()));
        record_upload(st, index, &report, self.shared.over_link(index));
        Ok((size, Some(Location::Host), Some(report)))
    }
}

/// Refuses sizes no buffer can have: zero, or more than the host's memory.
pub(super) fn check_new_size(size: u64) -> Result<()> {
    if size == 0 {
        return Err(Error::ZeroSize {
            what: "unified buffer",
        });
    }
    let max = crate::host::physical_memory().unwrap_or(u64::MAX);
    if size > max || size > isize::MAX as u64 {
        return Err(Error::TooLarge {
            device: "host".into(),
            requested: size,
            max,
        });
    }
    Ok(())
}

/// What an upload's decision says about its source: pinned or pageable host memory
/// (nothing for devices that share host memory: no link, no DMA).
pub(super) fn host_source_note(pinned: bool, dev: &dyn DynDevice) -> &'static str {
    if pinned {
        " (from a pinned host copy)"
    } else if dev.info().unified_memory {
        ""
    } else {
        " (from a pageable host copy)"
    }
}

/// Keeps `data`, packed by device `index`, as the packed copy of `id` next to its plain host
/// copy, and counts its bytes as host memory in use.
fn keep_packed(st: &mut State, id: BufferId, index: usize, data: Box<dyn PackedHost>) {
    let stored = data.stored_bytes();
    st.buffers.get_mut(&id).expect("live").packed = Some(Packed {
        device: index,
        data,
    });
    let h = &mut st.stats.host;
    h.bytes_in_use += stored;
    h.packed_bytes += stored;
    h.peak_bytes = h.peak_bytes.max(h.bytes_in_use);
}
