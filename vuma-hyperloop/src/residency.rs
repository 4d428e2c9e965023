//! Compressed host residency: a [`CompressedBuffer`] is compressed once on the host (pages
//! planned by [`crate::planner`], encoded on all cores) and kept in host memory as ready-
//! to-send *chunk images* (a page table and the coded pages packed contiguously — the
//! *head* — then the raw pages, see [`crate::kernels`]); an [`Uploader`] sends each chunk's
//! head in one large copy and decodes it on the device, double-buffered: the copy of chunk
//! i+1 is issued before the decode of chunk i. From pinned staging the copies are
//! [`DynDevice::copy_concurrent`]: on CUDA they run on a side stream and overlap the
//! decode of the previous chunk (each decode waits only for its own chunk's copy); on
//! backends without a separate copy queue they are ordered copies (copy, decode, copy, …).
//! Runs of raw pages of at least [`CompressOptions::direct_min_bytes`] go
//! straight to the destination in one copy each: incompressible data costs what a plain
//! copy costs.
//!
//! Homes of the chunk images, one upload loop:
//! - [`CompressedBuffer`] — pageable host memory (`Device::write` per chunk);
//! - [`PinnedCompressed::pin`] — one pinned [`Placement::Staging`] buffer (`Device::copy`
//!   per chunk at full link speed, then decode on the same stream);
//! - [`PinnedCompressed::map`] — pinned memory mapped into the device
//!   ([`Placement::HostMapped`]): no copy, the decoders read the compressed bytes in place,
//!   so transfer and decode overlap;
//! - [`DeviceCompressed`] — device memory (decode only: measures device decode rates).

use std::time::Instant;

use vuma_core::{AccessMode, Arg, DynBuffer, DynDevice, Error, Fence, Placement, Result, Scalar};

use crate::bitplane;
use crate::chunk::{self, ChunkLayout};
use crate::codecs::{corrupt, lz4_encode_page};
use crate::floatdecode;
use crate::integrity::{self, Geometry};
use crate::kernels::{self, PageKind, ENTRY_BYTES};
use crate::page::{self, ElemWidth};
use crate::planner::{self, CostModel, DeviceCodec, PageDecision, PlanSummary};

pub use crate::chunk::{ChunkImage, CompressOptions, DirectRun};
pub use crate::planner::encode_pages;

/// A buffer compressed once on the host and kept there (see the module docs).
#[derive(Debug, Clone)]
pub struct CompressedBuffer {
    len: u64,
    page_size: usize,
    width: ElemWidth,
    chunks: Vec<ChunkImage>,
    summary: PlanSummary,
    encode_time_s: f64,
}

/// One encoded page.
struct Encoded {
    kind: PageKind,
    bytes: Vec<u8>,
}

fn encode_one(page: &[u8], d: PageDecision, width: ElemWidth) -> Result<Encoded> {
    Ok(match d {
        PageDecision::Zero => Encoded {
            kind: PageKind::Zero,
            bytes: Vec::new(),
        },
        PageDecision::Raw => Encoded {
            kind: PageKind::Raw,
            bytes: page.to_vec(),
        },
        PageDecision::Codec(c) => {
            let mut bytes = Vec::new();
            let kind = match c {
                DeviceCodec::Bitplane => {
                    bitplane::encode_page(page, width, &mut bytes)?;
                    PageKind::Bitplane
                }
                DeviceCodec::Lz4 => {
                    lz4_encode_page(page, &mut bytes)?;
                    PageKind::Lz4
                }
                DeviceCodec::Float => {
                    crate::floatcodec::encode_page(page, width, &mut bytes)?;
                    PageKind::Float
                }
            };
            // The estimate was optimistic: a page that does not shrink goes raw.
            if bytes.len() >= page.len() {
                Encoded {
                    kind: PageKind::Raw,
                    bytes: page.to_vec(),
                }
            } else {
                Encoded { kind, bytes }
            }
        }
    })
}

impl CompressedBuffer {
    /// Plans and compresses `data` once (all cores). Zero pages cost nothing, pages that do
    /// not shrink stay raw.
    pub fn compress(data: &[u8], opts: &CompressOptions) -> Result<Self> {
        if data.is_empty() {
            return Err(Error::ZeroSize {
                what: "compressed buffer",
            });
        }
        let ps = opts.plan.page_size;
        if opts.chunk_bytes < ps {
            return Err(Error::invalid(format!(
                "chunk_bytes {} is smaller than the page size {ps}",
                opts.chunk_bytes
            )));
        }
        let plan = planner::plan(data, &opts.model, &opts.plan)?;
        let decisions: Vec<PageDecision> = plan
            .decisions
            .iter()
            .map(|&d| match (d, opts.force) {
                (PageDecision::Zero, _) | (_, None) => d,
                (_, Some(f)) => f,
            })
            .collect();
        let mut cb = Self::from_decisions(data, &decisions, opts)?;
        cb.summary.bytes_inspected = plan.summary.bytes_inspected;
        cb.summary.plan_time_s = plan.summary.plan_time_s;
        Ok(cb)
    }

    /// Compresses `data` with one given decision per page (`opts.plan.page_size` pages;
    /// `opts.force` is ignored). Pages a codec does not shrink stay raw. Used where the
    /// decisions come from elsewhere, e.g. a zero-page scan.
    pub fn from_decisions(
        data: &[u8],
        decisions: &[PageDecision],
        opts: &CompressOptions,
    ) -> Result<Self> {
        if data.is_empty() {
            return Err(Error::ZeroSize {
                what: "compressed buffer",
            });
        }
        let ps = opts.plan.page_size;
        page::check_page_size(ps, page::MAX_DEVICE_PAGE_SIZE)?;
        if opts.chunk_bytes < ps {
            return Err(Error::invalid(format!(
                "chunk_bytes {} is smaller than the page size {ps}",
                opts.chunk_bytes
            )));
        }
        if decisions.len() != data.len().div_ceil(ps) {
            return Err(Error::invalid(format!(
                "{} decisions for {} pages",
                decisions.len(),
                data.len().div_ceil(ps)
            )));
        }
        let t0 = Instant::now();
        let width = opts.plan.width;
        let encoded = page::par_map(decisions, opts.plan.threads, |p, &d| {
            let r = p * ps..((p + 1) * ps).min(data.len());
            encode_one(&data[r], d, width)
        })?;
        let mut summary = PlanSummary::default();
        let kinds: Vec<(PageKind, usize)> =
            encoded.iter().map(|e| (e.kind, e.bytes.len())).collect();
        let layouts = chunk::layout(&kinds, data.len(), opts, &mut summary);
        let mut chunks = Vec::with_capacity(layouts.len());
        let mut next = 0;
        for l in layouts {
            let mut image = vec![0u8; l.image_len];
            for (i, e) in l.entries.iter().enumerate() {
                image[i * ENTRY_BYTES..(i + 1) * ENTRY_BYTES].copy_from_slice(&e.to_bytes());
                let bytes = &encoded[next + i].bytes;
                image[e.src_off as usize..e.src_off as usize + bytes.len()].copy_from_slice(bytes);
            }
            next += l.entries.len();
            let mut ck = l.meta;
            ck.image = image;
            ck.seal();
            chunks.push(ck);
        }
        Ok(CompressedBuffer {
            len: data.len() as u64,
            page_size: ps,
            width,
            chunks,
            summary,
            encode_time_s: t0.elapsed().as_secs_f64(),
        })
    }

    /// A buffer from its parts (the device encoder's download, see [`crate::encode`]).
    pub(crate) fn from_parts(
        len: u64,
        page_size: usize,
        width: ElemWidth,
        chunks: Vec<ChunkImage>,
        summary: PlanSummary,
        encode_time_s: f64,
    ) -> Self {
        CompressedBuffer {
            len,
            page_size,
            width,
            chunks,
            summary,
            encode_time_s,
        }
    }

    /// Uncompressed length.
    pub fn len(&self) -> u64 {
        self.len
    }
    /// Always false (empty buffers are refused).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Page size.
    pub fn page_size(&self) -> usize {
        self.page_size
    }
    /// Element width hint.
    pub fn width(&self) -> ElemWidth {
        self.width
    }
    /// The chunk images.
    pub fn chunks(&self) -> &[ChunkImage] {
        &self.chunks
    }
    /// Mutable chunk images (tests corrupt them on purpose).
    pub fn chunks_mut(&mut self) -> &mut [ChunkImage] {
        &mut self.chunks
    }
    /// Exact totals (bytes sent = compressed bytes, tables excluded) and page counts.
    pub fn summary(&self) -> &PlanSummary {
        &self.summary
    }
    /// Bytes held in host memory (chunk images, tables included).
    pub fn stored_bytes(&self) -> u64 {
        self.chunks.iter().map(|c| c.image.len() as u64).sum()
    }
    /// Seconds spent encoding (planning excluded).
    pub fn encode_time_s(&self) -> f64 {
        self.encode_time_s
    }

    /// Checks every chunk's checksum and that the page tables cover the buffer exactly
    /// (see [`integrity`]): `Error::Corrupt` naming the chunk otherwise. Uploads from host
    /// memory, pinning, placing on a device and host decodes run it first.
    pub fn verify(&self) -> Result<()> {
        self.check(true)
    }

    fn check(&self, sums: bool) -> Result<()> {
        let g = Geometry {
            len: self.len,
            page_size: self.page_size as u64,
        };
        integrity::check_chunks(&self.chunks, g, sums)
    }

    /// Decodes on the host (the host variants of the device kernels) into `out`, which must
    /// be exactly [`len`](Self::len) bytes.
    pub fn decompress_host(&self, out: &mut [u8]) -> Result<()> {
        if out.len() as u64 != self.len {
            return Err(Error::invalid(format!(
                "output is {} bytes, the buffer {}",
                out.len(),
                self.len
            )));
        }
        let host = vuma_core::HostDevice::new();
        let dst = DynDevice::alloc(&host, self.len, Placement::DeviceLocal)?;
        let mut up = Uploader::new(&host);
        up.upload(self, dst.as_ref())?;
        DynDevice::read(&host, dst.as_ref(), 0, out)
    }
}

/// What an upload did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UploadReport {
    /// Uncompressed bytes delivered.
    pub bytes_delivered: u64,
    /// Bytes that crossed the link (chunk images).
    pub bytes_sent: u64,
    /// Chunks (one copy each).
    pub chunks: usize,
    /// Kernel launches.
    pub launches: usize,
    /// Wall time, seconds (decode included, synchronised).
    pub time_s: f64,
}

impl UploadReport {
    /// Effective host-to-device GB/s: uncompressed bytes delivered / wall time.
    pub fn effective_gbps(&self) -> f64 {
        self.bytes_delivered as f64 / self.time_s / 1e9
    }
}

/// Where chunk images come from.
enum Source<'a> {
    Host(&'a CompressedBuffer),
    Staging(&'a PinnedCompressed),
    Device(&'a DeviceCompressed),
}

/// Sends chunk images to a device and decodes them there, with two reusable device chunk
/// buffers (double buffering) and a status word.
pub struct Uploader<'d> {
    dev: &'d dyn DynDevice,
    bufs: Vec<Box<dyn DynBuffer>>,
    cap: u64,
    status: Option<Box<dyn DynBuffer>>,
    mapped_in_place: bool,
}

impl std::fmt::Debug for Uploader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uploader")
            .field("device", &self.dev.info().name)
            .field("chunk_capacity", &self.cap)
            .finish()
    }
}

/// Byte offsets and lengths of chunk images in one buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Placed {
    off: u64,
    len: u64,
    head_len: u64,
    kernel_pages: u32,
    runs: Vec<DirectRun>,
    npages: u32,
    has_fill: bool,
    has_bitplane: bool,
    has_lz4: bool,
    has_float: bool,
}

fn placed(c: &ChunkImage, off: u64, len: u64) -> Placed {
    Placed {
        off,
        len,
        head_len: c.head_len as u64,
        kernel_pages: c.kernel_pages,
        runs: c.runs.clone(),
        npages: c.npages,
        has_fill: c.has_fill,
        has_bitplane: c.has_bitplane,
        has_lz4: c.has_lz4,
        has_float: c.has_float,
    }
}

fn place(chunks: &[ChunkImage]) -> (Vec<Placed>, u64) {
    let (offs, total) = chunk::chunk_offsets(chunks.iter().map(|c| c.image.len() as u64));
    let placed = chunks
        .iter()
        .zip(offs)
        .map(|(c, off)| placed(c, off, c.image.len() as u64))
        .collect();
    (placed, total)
}

/// Chunk images in one pinned staging buffer of a device (compress once, pin once, upload
/// many times at full link speed).
pub struct PinnedCompressed {
    staging: Box<dyn DynBuffer>,
    chunks: Vec<Placed>,
    len: u64,
    width: ElemWidth,
    mapped: bool,
}

impl std::fmt::Debug for PinnedCompressed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PinnedCompressed")
            .field("len", &self.len)
            .field("chunks", &self.chunks.len())
            .field("staging_bytes", &self.staging.len())
            .field("mapped", &self.mapped)
            .finish()
    }
}

impl PinnedCompressed {
    /// Copies `src`'s chunk images into one pinned staging buffer of `dev`.
    pub fn pin(dev: &dyn DynDevice, src: &CompressedBuffer) -> Result<Self> {
        Self::place_in(dev, src, Placement::Staging).map(|(staging, chunks)| PinnedCompressed {
            staging,
            chunks,
            len: src.len,
            width: src.width,
            mapped: false,
        })
    }

    /// Copies `src`'s chunk images into pinned host memory mapped into `dev`'s address
    /// space ([`Placement::HostMapped`]): uploads then need no copy at all — the decoders
    /// read the compressed bytes over the link in place, so transfer and decode overlap by
    /// construction.
    pub fn map(dev: &dyn DynDevice, src: &CompressedBuffer) -> Result<Self> {
        Self::place_in(dev, src, Placement::HostMapped).map(|(staging, chunks)| PinnedCompressed {
            staging,
            chunks,
            len: src.len,
            width: src.width,
            mapped: true,
        })
    }

    /// Chunk images laid out by `layouts` and already written into `buf` (a
    /// [`Placement::Staging`] buffer, or a [`Placement::HostMapped`] one when `mapped`) at
    /// the offsets [`chunk_offsets`] gives.
    pub(crate) fn from_layout(
        buf: Box<dyn DynBuffer>,
        layouts: &[ChunkLayout],
        len: u64,
        width: ElemWidth,
        mapped: bool,
    ) -> Self {
        let (offs, _) = chunk::chunk_offsets(layouts.iter().map(|l| l.image_len as u64));
        let chunks = layouts
            .iter()
            .zip(offs)
            .map(|(l, off)| placed(&l.meta, off, l.image_len as u64))
            .collect();
        PinnedCompressed {
            staging: buf,
            chunks,
            len,
            width,
            mapped,
        }
    }

    /// The pinned buffer holding the chunk images.
    pub(crate) fn buffer(&self) -> &dyn DynBuffer {
        self.staging.as_ref()
    }

    /// Element width hint.
    pub fn width(&self) -> ElemWidth {
        self.width
    }

    /// Gives the pinned buffer holding the chunk images back (to reuse it).
    pub fn into_buffer(self) -> Box<dyn DynBuffer> {
        self.staging
    }

    /// Whether the decoders read the images in place (see [`PinnedCompressed::map`]).
    pub fn is_mapped(&self) -> bool {
        self.mapped
    }

    fn place_in(
        dev: &dyn DynDevice,
        src: &CompressedBuffer,
        placement: Placement,
    ) -> Result<(Box<dyn DynBuffer>, Vec<Placed>)> {
        src.verify()?;
        if !dev.supports(placement) {
            return Err(Error::UnsupportedPlacement {
                device: dev.info().name.clone(),
                placement,
            });
        }
        let (chunks, total) = place(&src.chunks);
        let buf = dev.alloc(total, placement)?;
        for (p, c) in chunks.iter().zip(&src.chunks) {
            dev.write(buf.as_ref(), p.off, &c.image)?;
        }
        Ok((buf, chunks))
    }

    /// Uncompressed length.
    pub fn len(&self) -> u64 {
        self.len
    }
    /// Always false.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Chunk images resident in device memory (decode-only uploads; measures decode rates).
pub struct DeviceCompressed {
    buf: Box<dyn DynBuffer>,
    chunks: Vec<Placed>,
    len: u64,
    width: ElemWidth,
}

impl std::fmt::Debug for DeviceCompressed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceCompressed")
            .field("len", &self.len)
            .field("chunks", &self.chunks.len())
            .finish()
    }
}

impl DeviceCompressed {
    /// Copies `src`'s chunk images into device memory of `dev`.
    pub fn new(dev: &dyn DynDevice, src: &CompressedBuffer) -> Result<Self> {
        let (buf, chunks) = PinnedCompressed::place_in(dev, src, Placement::DeviceLocal)?;
        Ok(DeviceCompressed {
            buf,
            chunks,
            len: src.len,
            width: src.width,
        })
    }
    /// Uncompressed length.
    pub fn len(&self) -> u64 {
        self.len
    }
    /// Always false.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// The device buffers of an [`Uploader`] (two chunk buffers and a status word), kept
/// between uploaders so that a caller uploading often (the memory manager's transfer path)
/// does not allocate and free device memory per upload. Belongs to one device.
#[derive(Default)]
pub struct UploadScratch {
    device: Option<vuma_core::DeviceId>,
    bufs: Vec<Box<dyn DynBuffer>>,
    cap: u64,
    status: Option<Box<dyn DynBuffer>>,
}

impl std::fmt::Debug for UploadScratch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UploadScratch")
            .field("device", &self.device)
            .field("chunk_capacity", &self.cap)
            .finish()
    }
}

impl<'d> Uploader<'d> {
    /// An uploader for `dev` (buffers are allocated at first use and reused).
    pub fn new(dev: &'d dyn DynDevice) -> Self {
        Uploader {
            dev,
            bufs: Vec::new(),
            cap: 0,
            status: None,
            mapped_in_place: true,
        }
    }

    /// An uploader for `dev` reusing `scratch` (from [`into_scratch`](Self::into_scratch));
    /// scratch of another device is dropped.
    pub fn with_scratch(dev: &'d dyn DynDevice, scratch: UploadScratch) -> Self {
        let mut u = Uploader::new(dev);
        if scratch.device == Some(dev.info().id) {
            u.bufs = scratch.bufs;
            u.cap = scratch.cap;
            u.status = scratch.status;
        }
        u
    }

    /// Gives the device buffers back for a later [`with_scratch`](Self::with_scratch).
    pub fn into_scratch(self) -> UploadScratch {
        UploadScratch {
            device: Some(self.dev.info().id),
            bufs: self.bufs,
            cap: self.cap,
            status: self.status,
        }
    }

    /// How images in mapped pinned memory ([`PinnedCompressed::map`]) are uploaded: read
    /// in place by the decoders (`true`, the default), or copied chunk by chunk by DMA into
    /// device memory and decoded there, like staged images (`false`; with concurrent copies
    /// the copy of chunk i+1 overlaps the decode of chunk i, which beats in-place reads
    /// over the link when the decoders are faster than the link).
    pub fn set_mapped_in_place(&mut self, in_place: bool) {
        self.mapped_in_place = in_place;
    }

    fn ensure(&mut self, cap: u64) -> Result<()> {
        if self.status.is_none() {
            self.status = Some(self.dev.alloc(8, Placement::DeviceLocal)?);
        }
        if cap > self.cap {
            self.bufs.clear();
            for _ in 0..2 {
                self.bufs.push(self.dev.alloc(cap, Placement::DeviceLocal)?);
            }
            self.cap = cap;
        }
        Ok(())
    }

    /// Uploads `src` (pageable host memory) into `dst[0..src.len()]`, decoding on the device.
    /// The images are verified first ([`CompressedBuffer::verify`]).
    pub fn upload(&mut self, src: &CompressedBuffer, dst: &dyn DynBuffer) -> Result<UploadReport> {
        src.verify()?;
        self.run(Source::Host(src), src.len, dst, 0)
    }

    /// [`upload`](Self::upload) without the integrity checks of
    /// [`CompressedBuffer::verify`] (checksums, page-table coverage). Memory safety does not
    /// depend on them: every range an upload reads or writes is still checked here and in
    /// the decoders, so a wrong table can only decode into wrong bytes of `dst`. For tests
    /// of the decoders' own checks, and for images verified once and kept unchanged.
    pub fn upload_unverified(
        &mut self,
        src: &CompressedBuffer,
        dst: &dyn DynBuffer,
    ) -> Result<UploadReport> {
        self.run(Source::Host(src), src.len, dst, 0)
    }

    /// [`upload`](Self::upload) into `dst[dst_offset..dst_offset + src.len()]` (a pool
    /// sub-allocation; Vulkan needs `dst_offset` aligned to the device's storage-buffer
    /// offset alignment).
    pub fn upload_into(
        &mut self,
        src: &CompressedBuffer,
        dst: &dyn DynBuffer,
        dst_offset: u64,
    ) -> Result<UploadReport> {
        src.verify()?;
        self.run(Source::Host(src), src.len, dst, dst_offset)
    }

    /// [`upload_pinned`](Self::upload_pinned) into `dst[dst_offset..dst_offset + src.len()]`.
    pub fn upload_pinned_into(
        &mut self,
        src: &PinnedCompressed,
        dst: &dyn DynBuffer,
        dst_offset: u64,
    ) -> Result<UploadReport> {
        self.run(Source::Staging(src), src.len, dst, dst_offset)
    }

    /// Uploads `src` (pinned staging memory) into `dst[0..src.len()]`.
    pub fn upload_pinned(
        &mut self,
        src: &PinnedCompressed,
        dst: &dyn DynBuffer,
    ) -> Result<UploadReport> {
        self.run(Source::Staging(src), src.len, dst, 0)
    }

    /// Decodes `src` (already in device memory) into `dst[0..src.len()]`: no copy.
    pub fn decode_resident(
        &mut self,
        src: &DeviceCompressed,
        dst: &dyn DynBuffer,
    ) -> Result<UploadReport> {
        self.run(Source::Device(src), src.len, dst, 0)
    }

    fn run(
        &mut self,
        src: Source<'_>,
        len: u64,
        dst: &dyn DynBuffer,
        dst_off: u64,
    ) -> Result<UploadReport> {
        vuma_core::check_range(dst_off, len, dst.len())?;
        // Decoders of a device that addresses storage in words (Vulkan: 4 bytes) reach the
        // final partial word of the data only through a binding that covers it. When `dst`
        // itself ends inside that word, decode into a scratch buffer of whole words and copy.
        let word = u64::from(self.dev.info().storage_word_bytes.max(1));
        let words = len.next_multiple_of(word);
        if word > 1 && dst.len() - dst_off < words {
            let scratch = self.dev.alloc(words, Placement::DeviceLocal)?;
            let t0 = Instant::now();
            let mut report = self.run(src, len, scratch.as_ref(), 0)?;
            self.dev.copy(scratch.as_ref(), 0, dst, dst_off, len)?;
            self.dev.synchronize()?;
            report.time_s = t0.elapsed().as_secs_f64();
            return Ok(report);
        }
        let t0 = Instant::now();
        let width = match &src {
            Source::Host(c) => c.width,
            Source::Staging(p) => p.width,
            Source::Device(d) => d.width,
        };
        let placed: Vec<Placed> = match &src {
            Source::Host(c) => place(&c.chunks).0,
            Source::Staging(p) => p.chunks.clone(),
            Source::Device(d) => d.chunks.clone(),
        };
        // Chunk images are untrusted (their fields are public): every range the upload
        // reads must lie inside its image, and pages to decode need a page table.
        for (i, p) in placed.iter().enumerate() {
            let bad = |why: String| Error::Corrupt {
                codec: "hyperloop chunk",
                reason: format!("chunk {i}: {why}"),
            };
            if p.head_len > p.len {
                return Err(bad(format!(
                    "page table and pages ({} bytes) exceed the chunk image ({} bytes)",
                    p.head_len, p.len
                )));
            }
            if p.kernel_pages > 0 && p.head_len == 0 {
                return Err(bad(format!(
                    "{} pages to decode but no page table",
                    p.kernel_pages
                )));
            }
            if let Some(r) = p
                .runs
                .iter()
                .find(|r| r.src.checked_add(r.len).is_none_or(|e| e > p.len))
            {
                return Err(bad(format!(
                    "direct run {}..+{} outside the chunk image",
                    r.src, r.len
                )));
            }
            // The destination too: a run past `len` would land in whatever follows the
            // destination range in its block (another buffer of the same pool block).
            if let Some(r) = p
                .runs
                .iter()
                .find(|r| r.dst.checked_add(r.len).is_none_or(|e| e > len))
            {
                return Err(bad(format!(
                    "direct run to {}..+{} outside the {len}-byte destination",
                    r.dst, r.len
                )));
            }
        }
        floatdecode::check_backend(self.dev.info().backend, placed.iter().any(|p| p.has_float))?;
        let in_place = match &src {
            Source::Device(_) => true,
            Source::Staging(p) => p.mapped && self.mapped_in_place,
            Source::Host(_) => false,
        };
        let cap = if in_place {
            0
        } else {
            placed.iter().map(|p| p.head_len).max().unwrap_or(0)
        };
        self.ensure(cap.max(1))?;
        let dev = self.dev;
        let status = self
            .status
            .as_deref()
            .ok_or_else(|| Error::invalid("no status buffer"))?;
        let mut init = [0u8; 8];
        init[4..].copy_from_slice(&u32::MAX.to_le_bytes());
        dev.write(status, 0, &init)?;
        let mut report = UploadReport {
            bytes_delivered: len,
            chunks: placed.len(),
            ..UploadReport::default()
        };
        // Issues the copy of chunk `i`'s head into its double buffer. From pinned staging
        // it is a concurrent copy: ordered after everything issued so far (so after the
        // decode of chunk i-2, the last reader of that buffer) but not before the decode
        // of chunk i-1, which it overlaps; the decode of chunk i waits for its fence.
        let stage = |i: usize, bufs: &[Box<dyn DynBuffer>]| -> Result<Fence> {
            let p = &placed[i];
            if p.kernel_pages == 0 {
                return Ok(Fence::done());
            }
            let h = p.head_len as usize;
            match &src {
                Source::Host(c) => dev
                    .write(bufs[i % 2].as_ref(), 0, &c.chunks[i].image[..h])
                    .map(|()| Fence::done()),
                Source::Staging(s) if !in_place => dev.copy_concurrent(
                    s.staging.as_ref(),
                    p.off,
                    bufs[i % 2].as_ref(),
                    0,
                    p.head_len,
                ),
                Source::Staging(_) | Source::Device(_) => Ok(Fence::done()),
            }
        };
        let mut ready = [Fence::done(), Fence::done()];
        // Fences of direct runs copied concurrently (waited for before the status read).
        let mut direct = Vec::new();
        if !placed.is_empty() {
            ready[0] = stage(0, &self.bufs)?;
        }
        let d = kernels::decoders();
        for (i, p) in placed.iter().enumerate() {
            if i + 1 < placed.len() {
                ready[(i + 1) % 2] = stage(i + 1, &self.bufs)?;
            }
            for r in &p.runs {
                match &src {
                    Source::Host(c) => {
                        let img = &c.chunks[i].image;
                        let bytes = img
                            .get(r.src as usize..(r.src + r.len) as usize)
                            .ok_or_else(|| Error::invalid("direct run outside its chunk"))?;
                        dev.write(dst, dst_off + r.dst, bytes)?;
                    }
                    Source::Staging(s) => direct.push(dev.copy_concurrent(
                        s.staging.as_ref(),
                        p.off + r.src,
                        dst,
                        dst_off + r.dst,
                        r.len,
                    )?),
                    Source::Device(s) => {
                        dev.copy(s.buf.as_ref(), p.off + r.src, dst, dst_off + r.dst, r.len)?
                    }
                }
                report.bytes_sent += r.len;
            }
            if p.kernel_pages == 0 {
                continue;
            }
            report.bytes_sent += p.head_len;
            dev.wait_for(&ready[i % 2])?;
            let (chunk, off): (&dyn DynBuffer, u64) = match &src {
                Source::Device(s) => (s.buf.as_ref(), p.off),
                Source::Staging(s) if in_place => (s.staging.as_ref(), p.off),
                _ => (self.bufs[i % 2].as_ref(), 0),
            };
            let kinds = [
                (
                    p.has_fill,
                    kernels::kind_bit(PageKind::Zero) | kernels::kind_bit(PageKind::Raw),
                ),
                (p.has_bitplane, kernels::kind_bit(PageKind::Bitplane)),
                (p.has_lz4, kernels::kind_bit(PageKind::Lz4)),
                (p.has_float, kernels::kind_bit(PageKind::Float)),
            ]
            .iter()
            .filter(|k| k.0)
            .fold(0, |m, k| m | k.1);
            let args = [
                Arg::Buffer {
                    buffer: chunk,
                    offset: off,
                    len: p.head_len,
                    access: AccessMode::Read,
                },
                Arg::Scalar(Scalar::U64(p.head_len)),
                // The decoders may write only `dst[0..len]`, whatever the entries say (the
                // binding covers the final partial word for word-addressed backends; the
                // decoders leave its bytes past `len` untouched).
                Arg::Buffer {
                    buffer: dst,
                    offset: dst_off,
                    len: words.min(dst.len() - dst_off),
                    access: AccessMode::ReadWrite,
                },
                Arg::Scalar(Scalar::U64(len)),
                Arg::whole(status, AccessMode::ReadWrite),
                Arg::Scalar(Scalar::U32(p.npages)),
                Arg::Scalar(Scalar::U32(kinds)),
            ];
            // A chunk whose flags name no kernel while it has kernel pages (a corrupt
            // image) still gets one kernel, which flags every page it cannot handle.
            if p.has_fill || kinds == 0 {
                dev.launch(&d.fill_copy, &kernels::fill_grid(p.npages), &args)?;
                report.launches += 1;
            }
            if p.has_bitplane {
                dev.launch(&d.bitplane, &kernels::bitplane_grid(p.npages, width), &args)?;
                report.launches += 1;
            }
            if p.has_lz4 {
                dev.launch(&d.lz4, &kernels::lz4_grid(p.npages), &args)?;
                report.launches += 1;
            }
            if p.has_float {
                let grid = floatdecode::float_grid(p.npages);
                dev.launch(floatdecode::float_decoder(), &grid, &args)?;
                report.launches += 1;
            }
        }
        for f in &direct {
            dev.wait_for(f)?;
        }
        let mut st = [0u8; 8];
        dev.read(status, 0, &mut st)?;
        report.time_s = t0.elapsed().as_secs_f64();
        check_status(st)?;
        Ok(report)
    }
}

/// Turns a decoder status into a typed error.
fn check_status(st: [u8; 8]) -> Result<()> {
    let flags = u32::from_le_bytes([st[0], st[1], st[2], st[3]]);
    let page = u32::from_le_bytes([st[4], st[5], st[6], st[7]]);
    if flags == 0 {
        return Ok(());
    }
    let codec = if flags & kernels::FLAG_BITPLANE != 0 {
        "bitplane"
    } else if flags & kernels::FLAG_LZ4 != 0 {
        "lz4"
    } else if flags & floatdecode::FLAG_FLOAT != 0 {
        "float"
    } else {
        "hyperloop chunk"
    };
    Err(corrupt(
        codec,
        format!("device decoder status {flags:#x}, first bad page {page} of its chunk"),
    ))
}

/// Measures, on `dev`, the device decode rate of each device codec it decodes from a sample of
/// `sample_len` bytes of ReLU activations (decoding from device memory), and the rate at
/// which the decoders pull compressed bytes from mapped host memory
/// ([`CostModel::mapped_h2d`]); stores them in `model` (medians of `iters`), and sets
/// [`CostModel::concurrent_copies`] for backends whose concurrent copies overlap decodes.
pub fn measure_device_decode(
    dev: &dyn DynDevice,
    model: &mut CostModel,
    sample_len: usize,
    iters: usize,
) -> Result<()> {
    let data = crate::datasets::relu_f32(sample_len, 7);
    for codec in DeviceCodec::ALL {
        if codec == DeviceCodec::Lz4 && !cfg!(feature = "lz4") {
            continue; // cannot encode LZ4 without the feature: keep the default
        }
        if !codec.decodes_on(dev.info().backend) {
            continue; // no decoder on this device: the planner skips it
        }
        let gbps = decode_rate(dev, &data, ElemWidth::F32, codec, iters)?;
        model.rates_mut(codec).device_decode = gbps * 1e9;
    }
    let mut opts = CompressOptions::with_width(ElemWidth::F32);
    opts.force = Some(PageDecision::Codec(DeviceCodec::Bitplane));
    let cb = CompressedBuffer::compress(&data, &opts)?;
    let mapped = PinnedCompressed::map(dev, &cb)?;
    let dst = dev.alloc(data.len() as u64, Placement::DeviceLocal)?;
    let mut up = Uploader::new(dev);
    up.upload_pinned(&mapped, dst.as_ref())?;
    let mut t: Vec<f64> = (0..iters.max(1))
        .map(|_| up.upload_pinned(&mapped, dst.as_ref()).map(|r| r.time_s))
        .collect::<Result<_>>()?;
    model.mapped_h2d = cb.stored_bytes() as f64 / vuma_core::bench::median(&mut t);
    model.concurrent_copies = dev.info().copies_overlap_kernels;
    model.float_decoder = DeviceCodec::Float.decodes_on(dev.info().backend);
    model.decode_measured = true;
    model.validate()
}

/// Device decode GB/s of `codec` on `data` (all non-zero pages forced to `codec`), from
/// device memory into device memory, median of `iters` runs. Verifies the output once.
pub fn decode_rate(
    dev: &dyn DynDevice,
    data: &[u8],
    width: ElemWidth,
    codec: DeviceCodec,
    iters: usize,
) -> Result<f64> {
    let mut opts = CompressOptions::with_width(width);
    opts.force = Some(PageDecision::Codec(codec));
    let cb = CompressedBuffer::compress(data, &opts)?;
    let resident = DeviceCompressed::new(dev, &cb)?;
    let dst = dev.alloc(data.len() as u64, Placement::DeviceLocal)?;
    let mut up = Uploader::new(dev);
    up.decode_resident(&resident, dst.as_ref())?;
    let mut back = vec![0u8; data.len()];
    dev.read(dst.as_ref(), 0, &mut back)?;
    if back != data {
        return Err(Error::Kernel {
            kernel: format!("hl_{}", codec.name()),
            reason: "device decode differs from the input".into(),
        });
    }
    let mut t: Vec<f64> = (0..iters.max(1))
        .map(|_| {
            up.decode_resident(&resident, dst.as_ref())
                .map(|r| r.time_s)
        })
        .collect::<Result<_>>()?;
    let med = vuma_core::bench::median(&mut t);
    Ok(data.len() as f64 / med / 1e9)
}
