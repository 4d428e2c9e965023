//! Step 2 of an eviction, on the host: each page's kind from the size pass's sums, the
//! chunk layout (the host encoder's own, so the images are byte-identical) and the job
//! table of the write pass, uploaded for it.

use vuma_core::{Error, Result};

use super::encoder::{grow, DeviceEncoder};
use super::host::rd32;
use super::JOB_BYTES;
use crate::bitplane::{self, GROUP, HEADER};
use crate::chunk::{self, ChunkLayout, CompressOptions};
use crate::kernels::PageKind;
use crate::page::{self, MAX_DEVICE_PAGE_SIZE};
use crate::planner::PlanSummary;

/// Checks the page size, element width and chunk size of an eviction; returns the page size.
pub(super) fn check_geometry(opts: &CompressOptions) -> Result<usize> {
    let ps = opts.plan.page_size;
    page::check_page_size(ps, MAX_DEVICE_PAGE_SIZE)?;
    if !ps.is_multiple_of(opts.plan.width.bytes()) {
        return Err(Error::invalid(
            "page size must be a multiple of the element width",
        ));
    }
    if opts.chunk_bytes < ps {
        return Err(Error::invalid(format!(
            "chunk_bytes {} is smaller than the page size {ps}",
            opts.chunk_bytes
        )));
    }
    Ok(ps)
}

/// The host step of an eviction (step 2 of the module docs): the chunk layout and the job
/// table of the write pass.
#[doc(hidden)]
#[derive(Debug, Clone)]
pub struct JobTable {
    pub(crate) layouts: Vec<ChunkLayout>,
    /// Offset of each chunk image in the output buffer.
    pub offsets: Vec<u64>,
    /// Bytes of the output buffer (at least 1).
    pub total: u64,
    /// [`JOB_BYTES`] per page: `u64 chunk_off | u32 index | u32 0 | entry (32)`.
    pub jobs: Vec<u8>,
    /// Exact totals of the layout.
    pub summary: PlanSummary,
}

impl JobTable {
    /// Pages of each chunk, in order.
    pub fn pages_per_chunk(&self) -> Vec<usize> {
        self.layouts.iter().map(|l| l.entries.len()).collect()
    }
}

/// Decides each page's kind from the size pass's 8 bytes per page (`sums`: the total block
/// size and the non-zero flag, as the device wrote them, so untrusted) and lays the chunk
/// images of a `len`-byte buffer out exactly as the host encoder does, then writes one job
/// per page. `Error::Kernel` when a page's sizes are implausible, `InvalidArgument` when
/// `sums` is not 8 bytes per page or the geometry of `opts` is refused. Public (hidden) for
/// the fuzz target of the encoder's tables.
#[doc(hidden)]
pub fn job_table(sums: &[u8], len: u64, opts: &CompressOptions) -> Result<JobTable> {
    let ps = check_geometry(opts)?;
    let w = opts.plan.width.bytes();
    let data_len = usize::try_from(len).map_err(|_| Error::invalid("length exceeds usize"))?;
    let np = data_len.div_ceil(ps);
    if sums.len() != 8 * np {
        return Err(Error::invalid(format!(
            "{} bytes of page sums for {np} pages",
            sums.len()
        )));
    }
    let mut kinds = Vec::with_capacity(np);
    for p in 0..np {
        let plen = (data_len - p * ps).min(ps);
        let groups = bitplane::groups_of(plen, w);
        let tot = rd32(sums, 8 * p) as usize;
        let nzf = rd32(sums, 8 * p + 4);
        if nzf > 1 || tot < 2 * groups * w || tot > (GROUP + 1) * groups * w {
            return Err(Error::Kernel {
                kernel: "hl_enc_size".into(),
                reason: format!("page {p}: implausible sizes (total {tot}, flag {nzf})"),
            });
        }
        let bp_len = HEADER + 4 * (groups * w + 1) + plen % w + tot;
        kinds.push(if nzf == 0 {
            (PageKind::Zero, 0)
        } else if bp_len >= plen {
            (PageKind::Raw, plen)
        } else {
            (PageKind::Bitplane, bp_len)
        });
    }
    let mut summary = PlanSummary {
        bytes_inspected: len,
        ..PlanSummary::default()
    };
    let layouts = chunk::layout(&kinds, data_len, opts, &mut summary);
    let (offsets, total) = chunk::chunk_offsets(layouts.iter().map(|l| l.image_len as u64));
    let mut jobs = vec![0u8; np * JOB_BYTES];
    let mut p = 0;
    for (l, &off) in layouts.iter().zip(&offsets) {
        for (i, e) in l.entries.iter().enumerate() {
            let j = &mut jobs[p * JOB_BYTES..(p + 1) * JOB_BYTES];
            j[0..8].copy_from_slice(&off.to_le_bytes());
            j[8..12].copy_from_slice(&(i as u32).to_le_bytes());
            j[16..48].copy_from_slice(&e.to_bytes());
            p += 1;
        }
    }
    Ok(JobTable {
        layouts,
        offsets,
        total,
        jobs,
        summary,
    })
}

impl DeviceEncoder<'_> {
    /// Uploads the job table of the write pass into the encoder's job buffer.
    pub(super) fn upload_jobs(&mut self, jobs: &[u8]) -> Result<()> {
        let buf = grow(self.dev, &mut self.jobs, jobs.len() as u64)?;
        self.dev.write(buf, 0, jobs)
    }
}
