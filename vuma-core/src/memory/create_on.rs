//! A new buffer made from the user's bytes straight onto a device: the first upload,
//! pipelined.
//!
//! [`MemoryManager::create_from`] then [`MemoryManager::prefetch`] runs two passes one after
//! the other: the user's (pageable) bytes are copied into the pinned host copy, then the
//! device copies the host copy over the link. [`MemoryManager::create_from_on`] overlaps
//! them: the host copy is filled unit by unit ([`MemoryManager::FIRST_UPLOAD_UNIT`]) by
//! several threads while another thread sends what is already filled to the device
//! (`Device::write`, a DMA from the pinned host copy), each send taking everything filled
//! since the one before. The time is about the slower of the two passes instead of their
//! sum.
//!
//! The result is that of `create_from` + `prefetch` + waiting for it: a valid host copy
//! holding the bytes and a valid device copy, placed and made room for as any upload (the
//! same placement policy, budget and eviction), counted in the statistics as an upload.
//! The transfer path is not used: the user's bytes are dense, and dense bytes go plain
//! (a transfer path would scan them to decide so, which the pipeline has no time for).
//!
//! Nothing is lost and nothing is half-valid: the device copy is reserved (marked in
//! flight, the buffer in use) before the copy starts and becomes valid only when every
//! byte was sent; the host copy is always filled completely, whatever the device does.
//! When the device copy cannot be had (no room even after eviction, a lost device) the
//! buffer is made as `create_from` makes it, and the upload's error says why.
//!
//! On a device that uses host copies in place there is nothing to send: the buffer is made
//! as `create_from` makes it and prefetched there (the outcome says it is used in place).

use super::*;
use crate::hostcopy::{copy_streamed, STREAM_UNIT};
use migrate::host_source_note;

impl MemoryManager {
    /// The unit in which [`create_from_on`](Self::create_from_on) fills the host copy
    /// while the device copy is sent (its sends take every unit filled since the last
    /// send).
    pub const FIRST_UPLOAD_UNIT: u64 = STREAM_UNIT as u64;

    /// A new buffer holding a copy of `data`, resident on device `index`: what
    /// [`create_from`](Self::create_from) then [`prefetch`](Self::prefetch) to `index`
    /// give, in about the time of the slower of the two instead of their sum (the host
    /// copy is filled while what is filled already goes to the device, in units of
    /// [`FIRST_UPLOAD_UNIT`](Self::FIRST_UPLOAD_UNIT)).
    ///
    /// Returns the buffer and the upload's outcome: its [`Residency`] (placement,
    /// evictions, and the transfer, whose decision says it was pipelined), or why there is
    /// no device copy (it could not be placed: [`Error::TooLarge`],
    /// [`Error::BudgetExceeded`], [`Error::DeviceLost`]; or the upload failed). Either way
    /// the buffer holds `data` in its host copy. Errors with no buffer: [`Error::ZeroSize`]
    /// for empty `data`, [`Error::TooLarge`] beyond the host's memory, the transient
    /// [`Error::OutOfMemory`] when the host has none left, [`Error::InvalidArgument`] for
    /// an index that names no device.
    pub fn create_from_on(
        &self,
        data: &[u8],
        index: usize,
    ) -> Result<(UnifiedBuffer, Result<Residency>)> {
        let size = data.len() as u64;
        check_new_size(size)?;
        self.check_device_index(index)?;
        let _span = tracing::debug_span!("create_from_on", device = index, bytes = size).entered();
        if self.shared.devices[index].in_place {
            // The device uses the host copy itself: there is nothing to send.
            let buf = self.create_from(data)?;
            let upload = self.prefetch(&buf, index);
            return Ok((buf, upload));
        }
        // Every byte is overwritten below (a pooled block is not filled twice).
        let mut host = self.new_host_copy(size, Init::Overwritten)?;
        let buf = self.insert_buffer(size, None);
        let upload = match self.reserve_first_upload(&buf, index) {
            Ok((block, offset, mut residency)) => {
                let dev = self.shared.devices[index].device.clone();
                let t0 = std::time::Instant::now();
                let mut sends = 0u64;
                let sent = copy_streamed(&mut host.bytes_mut(), data, |at, bytes| {
                    sends += 1;
                    dev.write(block.as_ref(), offset + at as u64, bytes)
                });
                let report = sent.map(|()| {
                    let mut report = TransferReport::direct(
                        TransferKind::Upload,
                        size,
                        t0.elapsed().as_secs_f64(),
                    );
                    report.decision = format!(
                        "pipelined: dense user bytes sent plainly while the host copy was \
                         filled ({} KiB units, sent in {sends} part{}){}",
                        STREAM_UNIT >> 10,
                        if sends == 1 { "" } else { "s" },
                        host_source_note(host.is_pinned(), dev.as_ref())
                    );
                    report
                });
                self.end_first_upload(&buf, host, index, report, &mut residency)
                    .map(|()| residency)
            }
            Err(e) => {
                tracing::debug!(
                    buffer = buf.id.0,
                    device = index,
                    error = %e,
                    "no device copy for a first upload: the buffer stays on the host"
                );
                copy_parallel(&mut host.bytes_mut(), data);
                give_host(&mut self.shared.lock(), &buf, host);
                Err(e)
            }
        };
        Ok((buf, upload))
    }

    /// Places `buf`'s copy on device `index` for its first upload and marks it in flight
    /// (`filling`, the buffer in use: nothing evicts it, a device loss leaves it to us);
    /// returns the block, the copy's offset in it, and what placing it did.
    fn reserve_first_upload(
        &self,
        buf: &UnifiedBuffer,
        index: usize,
    ) -> Result<(Arc<dyn DynBuffer>, u64, Residency)> {
        let mut st = self.shared.lock();
        st.check_device_alive(&self.shared.devices, index)?;
        st.tick += 1;
        let tick = st.tick;
        let mut residency = Residency::pending("");
        if let Err(e) = self.place_copy(&mut st, buf.id, index, 1, tick, &mut residency) {
            self.note_loss(&mut st, index, &e);
            return Err(e);
        }
        st.stats.devices[index].misses += 1;
        let b = st
            .buffers
            .get_mut(&buf.id)
            .expect("live: its handle is ours");
        b.in_use += 1;
        let c = b.copies.get_mut(&index).expect("placed");
        c.filling = true;
        Ok((c.alloc.block().clone(), c.alloc.offset(), residency))
    }

    /// Hands `buf` its filled host copy and ends the upload reserved for it (`upload` is
    /// its outcome): the device copy becomes valid after a complete upload to a device
    /// still alive, and is freed otherwise.
    fn end_first_upload(
        &self,
        buf: &UnifiedBuffer,
        host: HostCopy,
        index: usize,
        upload: Result<TransferReport>,
        residency: &mut Residency,
    ) -> Result<()> {
        let size = buf.size;
        let mut st = self.shared.lock();
        give_host(&mut st, buf, host);
        let b = st.buffers.get_mut(&buf.id).expect("live");
        b.in_use -= 1;
        if let Some(c) = b.copies.get_mut(&index) {
            c.filling = false;
        }
        st.changes += 1;
        self.shared.filled.notify_all();
        let upload = upload.and_then(|report| {
            // A device lost meanwhile (noticed by another thread) keeps nothing valid.
            st.check_device_alive(&self.shared.devices, index)?;
            Ok(report)
        });
        match upload {
            Ok(report) => {
                let c = st
                    .buffers
                    .get_mut(&buf.id)
                    .and_then(|b| b.copies.get_mut(&index))
                    .expect("a copy in flight is not removed");
                c.valid = true;
                record_upload(&mut st, index, &report, self.shared.over_link(index));
                residency.bytes_moved = size;
                residency.source = Some(Location::Host);
                residency.transfers.push(report);
                Ok(())
            }
            Err(e) => {
                drop_copy(&mut st, buf.id, index);
                self.note_loss(&mut st, index, &e);
                Err(e)
            }
        }
    }
}

/// Gives `buf` (created without one) its host copy, filled with the user's bytes: valid,
/// written, counted.
fn give_host(st: &mut State, buf: &UnifiedBuffer, host: HostCopy) {
    let b = st
        .buffers
        .get_mut(&buf.id)
        .expect("live: its handle is ours");
    b.host = Some(host);
    b.host_valid = true;
    b.written = true;
    st.stats.host.count_allocation(buf.size);
}
