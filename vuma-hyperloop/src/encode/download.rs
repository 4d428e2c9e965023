//! The images into pinned host memory, and what an eviction returns: for a
//! [`Placement::Staging`] home the write pass runs chunk by chunk into device scratch and
//! each chunk's image is copied into the pinned output concurrently with the write of the
//! next ([`DynDevice::copy_concurrent`]); for a [`Placement::HostMapped`] home the write pass
//! writes across the link itself. [`Evicted`] holds the images, ready to upload, and copies
//! them out into a [`CompressedBuffer`](crate::CompressedBuffer).

use std::time::Instant;

use vuma_core::{DynBuffer, DynDevice, Error, Placement, Result};

use super::write::WritePass;
use crate::chunk::{self, ChunkImage, ChunkLayout};
use crate::planner::PlanSummary;
use crate::residency::PinnedCompressed;

impl WritePass<'_> {
    /// Runs the write pass of every chunk of `layouts` (images at `offsets`) and brings the
    /// images into `out`. For a staging home, waits for the copies and the device and
    /// returns the seconds since `t0`; for a mapped home returns 0 (the status readback
    /// that follows waits for the pass).
    pub(super) fn download(
        &self,
        layouts: &[ChunkLayout],
        offsets: &[u64],
        out: &dyn DynBuffer,
        home: Placement,
        t0: Instant,
    ) -> Result<f64> {
        let np = self.req.npages as usize;
        if home != Placement::Staging {
            self.launch(0, np)?;
            return Ok(0.0);
        }
        let dev = self.dev;
        let mut fences = Vec::with_capacity(layouts.len());
        let mut p0 = 0;
        for (l, &off) in layouts.iter().zip(offsets) {
            let pn = l.entries.len();
            if pn > 0 {
                self.launch(p0, pn)?;
                fences.push(dev.copy_concurrent(self.target, off, out, off, l.image_len as u64)?);
            }
            p0 += pn;
        }
        if p0 != np {
            return Err(Error::invalid(format!(
                "chunk layouts cover {p0} pages of {np}"
            )));
        }
        for f in &fences {
            dev.wait_for(f)?;
        }
        dev.synchronize()?;
        Ok(t0.elapsed().as_secs_f64())
    }
}

/// A buffer evicted by [`DeviceEncoder::evict`](super::DeviceEncoder::evict): its chunk images in pinned host memory,
/// ready to upload (see [`Evicted::pinned`]).
#[derive(Debug)]
pub struct Evicted {
    pub(super) pinned: PinnedCompressed,
    pub(super) layouts: Vec<ChunkLayout>,
    pub(super) summary: PlanSummary,
    pub(super) page_size: usize,
    pub(super) encode_time_s: f64,
    pub(super) device_encode_s: f64,
    pub(super) phases_s: [f64; 3],
}

impl Evicted {
    /// The chunk images, to upload with [`Uploader::upload_pinned`](crate::Uploader).
    pub fn pinned(&self) -> &PinnedCompressed {
        &self.pinned
    }
    /// Exact totals (bytes sent, page counts), as [`CompressedBuffer::summary`](crate::CompressedBuffer::summary).
    pub fn summary(&self) -> &PlanSummary {
        &self.summary
    }
    /// Bytes of the chunk images (what crossed the link on eviction, tables included).
    pub fn stored_bytes(&self) -> u64 {
        self.layouts.iter().map(|l| l.image_len as u64).sum()
    }
    /// Wall time of the eviction (encode and download, synchronised), seconds.
    pub fn encode_time_s(&self) -> f64 {
        self.encode_time_s
    }
    /// Wall time of the device part of the eviction (size pass, layout, write pass and the
    /// download, synchronised), seconds: for a [`Placement::Staging`] home the per-chunk
    /// downloads overlap the write pass of the next chunk; for a mapped home the write pass
    /// is the download. Equals [`encode_time_s`](Self::encode_time_s) up to bookkeeping.
    pub fn device_encode_time_s(&self) -> f64 {
        self.device_encode_s
    }
    /// Where the time of the eviction went, seconds since its start: `[size pass and its
    /// readback, host layout and job upload, write pass and download]`.
    pub fn phase_times_s(&self) -> [f64; 3] {
        self.phases_s
    }
    /// Copies the chunk images out of pinned memory into a [`CompressedBuffer`](crate::CompressedBuffer)
    /// (pageable, e.g. to keep in a store); `dev` is the device the eviction ran on. Works
    /// after that device is lost too (the pinned memory is read directly), and checks that
    /// the page tables cover the buffer.
    pub fn to_compressed(&self, dev: &dyn DynDevice) -> Result<crate::CompressedBuffer> {
        let (offs, _) = chunk::chunk_offsets(self.layouts.iter().map(|l| l.image_len as u64));
        let mut chunks: Vec<ChunkImage> = Vec::with_capacity(self.layouts.len());
        for (l, off) in self.layouts.iter().zip(offs) {
            let mut image = vec![0u8; l.image_len];
            let buf = self.pinned.buffer();
            match dev.read(buf, off, &mut image) {
                // The images were complete when the eviction returned and live in host
                // memory: a lost device does not take them with it.
                Err(Error::DeviceLost { .. }) => dev.read_host_resident(buf, off, &mut image)?,
                r => r?,
            }
            let mut c = l.meta.clone();
            c.image = image;
            c.seal();
            chunks.push(c);
        }
        let cb = crate::CompressedBuffer::from_parts(
            self.pinned.len(),
            self.page_size,
            self.pinned.width(),
            chunks,
            self.summary.clone(),
            self.encode_time_s,
        );
        // The tables were written by the device: check they cover the buffer before
        // anything is decoded from them.
        cb.verify()?;
        Ok(cb)
    }
    /// Gives the pinned buffer back (see [`DeviceEncoder::recycle`](super::DeviceEncoder::recycle)).
    pub fn into_buffer(self) -> Box<dyn DynBuffer> {
        self.pinned.into_buffer()
    }
}
