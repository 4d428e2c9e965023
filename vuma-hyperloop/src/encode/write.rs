//! Step 3 of an eviction, the write pass: `hl_enc_write` builds every page's entry and
//! bytes at the offsets of the job table, into device scratch memory (a staging home) or
//! straight into mapped pinned memory, and flags what does not fit in a status word,
//! checked afterwards.

use vuma_core::{AccessMode, Arg, DynBuffer, DynDevice, Error, Placement, Result, Scalar};

use super::encoder::{grow, whole, DeviceEncoder, Request, Source};
use super::host::rd32;
use super::{encode_grid, encoders};

/// The buffers and geometry of one eviction's write pass.
pub(super) struct WritePass<'a> {
    pub(super) dev: &'a dyn DynDevice,
    src: Source<'a>,
    pub(super) req: &'a Request,
    records: &'a dyn DynBuffer,
    stats: &'a dyn DynBuffer,
    jobs: &'a dyn DynBuffer,
    /// Bytes of the job table in `jobs`.
    jobs_len: u64,
    /// Where the images are written: `out` itself for a mapped home, else device scratch.
    pub(super) target: &'a dyn DynBuffer,
    /// Bytes of the images.
    total: u64,
    status: &'a dyn DynBuffer,
}

impl DeviceEncoder<'_> {
    /// Prepares the write pass of the pages of `req` (after the size pass and the job
    /// upload): clears the status word and picks the target, `out` for a
    /// [`Placement::HostMapped`] home, else device scratch of `total` bytes.
    pub(super) fn write_pass<'a>(
        &'a mut self,
        src: Source<'a>,
        req: &'a Request,
        jobs_len: u64,
        out: &'a dyn DynBuffer,
        total: u64,
        home: Placement,
    ) -> Result<WritePass<'a>> {
        let dev = self.dev;
        let status = grow(dev, &mut self.status, 8)?;
        let mut init = [0u8; 8];
        init[4..].copy_from_slice(&u32::MAX.to_le_bytes());
        dev.write(status, 0, &init)?;
        let target: &dyn DynBuffer = if home == Placement::HostMapped {
            out
        } else {
            grow(dev, &mut self.scratch, total)?
        };
        let (records, stats, jobs) = (
            self.records
                .as_deref()
                .ok_or_else(|| Error::invalid("records missing"))?,
            self.stats
                .as_deref()
                .ok_or_else(|| Error::invalid("stats missing"))?,
            self.jobs
                .as_deref()
                .ok_or_else(|| Error::invalid("jobs missing"))?,
        );
        Ok(WritePass {
            dev,
            src,
            req,
            records,
            stats,
            jobs,
            jobs_len,
            target,
            total,
            status,
        })
    }
}

impl WritePass<'_> {
    /// One launch of `hl_enc_write` over pages `p0..p0 + pn` (one chunk's pages, at their
    /// offsets in the sources).
    pub(super) fn launch(&self, p0: usize, pn: usize) -> Result<()> {
        let req = self.req;
        let [npages, page_size, width] = req.geometry_args();
        self.dev.launch(
            &encoders().write,
            &encode_grid(pn as u32, req.ps, req.width),
            &[
                self.src.arg(),
                Arg::Scalar(Scalar::U64(req.len)),
                whole(self.records, AccessMode::Read),
                whole(self.stats, AccessMode::Read),
                Arg::Buffer {
                    buffer: self.jobs,
                    offset: 0,
                    len: self.jobs_len,
                    access: AccessMode::Read,
                },
                Arg::Buffer {
                    buffer: self.target,
                    offset: 0,
                    len: self.total,
                    access: AccessMode::ReadWrite,
                },
                Arg::Scalar(Scalar::U64(self.total)),
                whole(self.status, AccessMode::ReadWrite),
                npages,
                page_size,
                width,
                Arg::Scalar(Scalar::U32(p0 as u32)),
            ],
        )
    }

    /// Reads the status word back: `Error::Kernel` when the write pass flagged a page.
    pub(super) fn check_status(&self) -> Result<()> {
        let mut st = [0u8; 8];
        self.dev.read(self.status, 0, &mut st)?;
        let flags = rd32(&st, 0);
        if flags != 0 {
            return Err(Error::Kernel {
                kernel: "hl_enc_write".into(),
                reason: format!("encoder status {flags:#x}, first bad page {}", rd32(&st, 4)),
            });
        }
        Ok(())
    }
}
