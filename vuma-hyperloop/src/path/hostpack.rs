//! Packing from host bytes: [`HyperloopPath::pack_host`].
//!
//! The device encoder ([`crate::encode`], what [`TransferPath::evict`] and
//! [`TransferPath::pack_clean`] use) codes zero, raw and bitplane pages only. Host bytes can
//! be packed with every codec the device decodes — the float codec included, where the
//! device has its decoder — because the host encodes them ([`CompressedBuffer::compress`]
//! on all cores, planned with the device's cost model). Host encoding is far slower than the
//! link (the float codec ~0.25 GB/s per core), so this pays only for bytes uploaded many
//! times: the host copy of a read-mostly buffer (weights). The memory manager calls it
//! through [`TransferPath::pack_clean_host`] when it evicts a clean copy whose plain host
//! copy it holds, on devices with a float decoder (elsewhere the device encoder codes the
//! same pages faster), with the element width that plans best on a sample
//! ([`HyperloopPath::best_width`]); a caller holding host bytes (a loader, a benchmark) can
//! call it directly and gets the same kind of [`PackedHost`] as a device-encoded copy.
//!
//! [`TransferPath`]: vuma_core::TransferPath
//! [`TransferPath::evict`]: vuma_core::TransferPath::evict
//! [`TransferPath::pack_clean`]: vuma_core::TransferPath::pack_clean
//! [`TransferPath::pack_clean_host`]: vuma_core::TransferPath::pack_clean_host

use std::sync::Arc;

use vuma_core::{
    DeviceId, DynBuffer, DynDevice, Error, PackedHost, Placement, Result, TransferKind,
    TransferReport,
};

use super::{summary_report, HyperloopPath, Rate, Scratch};
use crate::chunk;
use crate::page::ElemWidth;
use crate::planner::PlanSummary;
use crate::residency::{CompressedBuffer, PinnedCompressed};

/// A plan must save at least this fraction of the link bytes for a host pack to be kept.
const MIN_SAVING: f64 = 0.05;

impl HyperloopPath {
    /// Packs `data` (host bytes of a buffer that will be uploaded to `dev`, typically many
    /// times) into pinned memory of `dev`: pages planned with the device's cost model
    /// ([`CompressOptions::for_device`](crate::CompressOptions::for_device): the float codec where the device decodes it and it
    /// wins, bitplane, LZ4, zero pages), encoded on the host on all cores. `None` when it
    /// would not pay: buffers below [`PathConfig::min_bytes`](super::PathConfig), devices
    /// that share host memory (unless [`PathConfig::on_shared_memory`](super::PathConfig)),
    /// devices without pinned memory, a plan that saves less than 5% of the bytes, or
    /// packed uploads measured slower than plain ones on this device. With the packed copy
    /// comes what was stored (exact page counts and bytes; `plan_time_s` and
    /// `bytes_inspected` of the planning, no link bytes: nothing crossed the link). See the
    /// module docs.
    pub fn pack_host(
        &self,
        dev: &dyn DynDevice,
        data: &[u8],
    ) -> Result<Option<(Box<dyn PackedHost>, PlanSummary)>> {
        self.pack_host_as(dev, data, self.cfg.width)
    }

    /// The element width whose plan sends the fewest bytes for a sample of `data` (the
    /// configured width, and 16-bit elements when that is 32-bit: bf16 weights read as
    /// f32 hide their exponents from the float codec), planned with `dev`'s cost model.
    pub fn best_width(&self, dev: &dyn DynDevice, data: &[u8]) -> ElemWidth {
        self.best_sample_plan(dev, data)
            .map_or(self.cfg.width, |(w, _)| w)
    }

    /// The width [`best_width`](Self::best_width) picks and the plan of the sample with it
    /// (`None` when no width plans: an empty sample, a page size the width does not divide).
    pub(super) fn best_sample_plan(
        &self,
        dev: &dyn DynDevice,
        data: &[u8],
    ) -> Option<(ElemWidth, PlanSummary)> {
        let sample = &data[..data.len().min(4 << 20)];
        [self.cfg.width, ElemWidth::Bf16]
            .into_iter()
            .filter_map(|w| {
                let opts = self.pack_options(dev, w, data.len());
                let p = crate::planner::plan(sample, &opts.model, &opts.plan).ok()?;
                Some((w, p.summary))
            })
            .min_by_key(|(_, s)| s.bytes_sent)
    }

    /// [`pack_host`](Self::pack_host) with elements of `width`.
    pub fn pack_host_as(
        &self,
        dev: &dyn DynDevice,
        data: &[u8],
        width: ElemWidth,
    ) -> Result<Option<(Box<dyn PackedHost>, PlanSummary)>> {
        let len = data.len() as u64;
        if len < self.cfg.min_bytes.max(1)
            || (dev.info().unified_memory && !self.cfg.on_shared_memory)
        {
            return Ok(None);
        }
        let Some(home) = super::pinned_home(dev) else {
            return Ok(None);
        };
        let id = dev.info().id;
        let _ = self.scratch.rates(id, dev, &self.cfg);
        if !self.cfg.always_encode && !self.scratch.clean_pack_pays(id) {
            return Ok(None);
        }
        let mut cb = CompressedBuffer::compress(data, &self.pack_options(dev, width, data.len()))?;
        let s = cb.summary().clone();
        if (s.bytes_sent as f64) > (1.0 - MIN_SAVING) * len as f64 {
            tracing::debug!(
                device = %dev.info().name,
                bytes = len,
                "not packed: the plan saves less than 5% ({s})"
            );
            return Ok(None);
        }
        let pinned = if home == Placement::Staging {
            PinnedCompressed::pin(dev, &cb)?
        } else {
            PinnedCompressed::map(dev, &cb)?
        };
        let stored = pinned.buffer().len();
        let lens: Vec<usize> = cb.chunks().iter().map(|c| c.image.len()).collect();
        // The pageable images go; their layout stays, to read them back for host access.
        for c in cb.chunks_mut() {
            c.image = Vec::new();
        }
        tracing::debug!(
            device = %dev.info().name,
            bytes = len,
            stored,
            "host bytes packed for the device ({s})"
        );
        let packed = HostPacked {
            scratch: self.scratch.clone(),
            device: id,
            len,
            summary: s.clone(),
            layout: cb,
            lens,
            pinned,
        };
        Ok(Some((Box::new(packed), s)))
    }
}

/// Host bytes packed on the host: chunk images in pinned memory of one device.
#[derive(Debug)]
struct HostPacked {
    scratch: Arc<Scratch>,
    device: DeviceId,
    len: u64,
    summary: PlanSummary,
    /// The compressed buffer with its images emptied (their bytes live in `pinned`).
    layout: CompressedBuffer,
    /// Byte length of each chunk image.
    lens: Vec<usize>,
    pinned: PinnedCompressed,
}

impl PackedHost for HostPacked {
    fn logical_bytes(&self) -> u64 {
        self.len
    }

    fn stored_bytes(&self) -> u64 {
        self.pinned.buffer().len()
    }

    fn can_upload_to(&self, dev: &dyn DynDevice) -> bool {
        dev.info().id == self.device
    }

    fn unpack(&self, dev: &dyn DynDevice, out: &mut [u8]) -> Result<()> {
        if out.len() as u64 != self.len {
            return Err(Error::invalid(format!(
                "unpacking {} bytes into {}",
                self.len,
                out.len()
            )));
        }
        let mut cb = self.layout.clone();
        let (offs, _) = chunk::chunk_offsets(self.lens.iter().map(|&l| l as u64));
        for ((c, &l), off) in cb.chunks_mut().iter_mut().zip(&self.lens).zip(offs) {
            let mut image = vec![0u8; l];
            dev.read(self.pinned.buffer(), off, &mut image)?;
            c.image = image;
        }
        cb.decompress_host(out)
    }

    fn upload(
        &self,
        dev: &dyn DynDevice,
        dst: &dyn DynBuffer,
        dst_offset: u64,
    ) -> Result<TransferReport> {
        if !self.can_upload_to(dev) {
            return Err(Error::WrongDevice {
                expected: dev.info().name.clone(),
                found: format!("the device it was packed for ({:?})", self.device),
            });
        }
        let up = self
            .scratch
            .with_uploader(dev, |u| u.upload_pinned_into(&self.pinned, dst, dst_offset))?;
        self.scratch
            .observe(self.device, Rate::HlUpload, self.len as f64 / up.time_s);
        let s = &self.summary;
        let decision = format!(
            "host-packed copy decoded on the device: {} zero, {} float, {} bitplane, {} lz4, {} raw pages",
            s.zero_pages, s.float_pages, s.bitplane_pages, s.lz4_pages, s.raw_pages
        );
        Ok(summary_report(
            TransferKind::Upload,
            decision,
            self.len,
            up.bytes_sent,
            s,
            up.time_s,
        ))
    }
}
