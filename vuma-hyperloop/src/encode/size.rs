//! Step 1 of an eviction, the size pass: `hl_enc_size` stores each block's size (the
//! records) and its presence mask and zero count (the statistics) on the device, and the
//! host reads back 8 bytes per page (the total block size and whether any byte is
//! non-zero).

use vuma_core::{AccessMode, Arg, Result, Scalar};

use super::encoder::{grow, whole, DeviceEncoder, Request, Source};
use super::{encode_grid, encoders, stats_bytes, REC};

impl DeviceEncoder<'_> {
    /// Runs the size pass over `src` and returns the page sums as the device wrote them
    /// (untrusted: [`job_table`](super::job_table) checks them).
    pub(super) fn size_pass(&mut self, src: Source<'_>, req: &Request) -> Result<Vec<u8>> {
        let dev = self.dev;
        let np = req.npages as usize;
        let sums = grow(dev, &mut self.sums, 8 * np as u64)?;
        dev.fill(sums, 0, 8 * np as u64, 0)?;
        let records = grow(dev, &mut self.records, (np * REC * 4) as u64)?;
        let stats = grow(dev, &mut self.stats, stats_bytes(np, req.ps, req.width))?;
        let [npages, page_size, width] = req.geometry_args();
        dev.launch(
            &encoders().size,
            &encode_grid(req.npages, req.ps, req.width),
            &[
                src.arg(),
                Arg::Scalar(Scalar::U64(req.len)),
                whole(records, AccessMode::ReadWrite),
                whole(stats, AccessMode::ReadWrite),
                Arg::Buffer {
                    buffer: sums,
                    offset: 0,
                    len: 8 * np as u64,
                    access: AccessMode::ReadWrite,
                },
                npages,
                page_size,
                width,
            ],
        )?;
        let mut sum = vec![0u8; 8 * np];
        dev.read(sums, 0, &mut sum)?;
        Ok(sum)
    }
}
