//! The [`DeviceEncoder`]: its scratch buffers (kept between encoders in an
//! [`EncoderScratch`]), the checks of an eviction's request and the source binding, and
//! [`DeviceEncoder::evict`], which runs the stages of the sibling modules in order: size
//! pass, job table, write pass, download.

use std::time::Instant;

use vuma_core::{AccessMode, Arg, DynBuffer, DynDevice, Error, Placement, Result, Scalar};

use super::download::Evicted;
use super::jobs::{check_geometry, job_table, JobTable};
use crate::chunk::CompressOptions;
use crate::page::ElemWidth;
use crate::planner::{DeviceCodec, PageDecision};
use crate::residency::PinnedCompressed;

/// Compresses device buffers on the device and downloads the compressed bytes (eviction),
/// with reusable scratch buffers (see the module docs).
pub struct DeviceEncoder<'d> {
    pub(super) dev: &'d dyn DynDevice,
    pub(super) records: Option<Box<dyn DynBuffer>>,
    pub(super) stats: Option<Box<dyn DynBuffer>>,
    pub(super) sums: Option<Box<dyn DynBuffer>>,
    pub(super) jobs: Option<Box<dyn DynBuffer>>,
    pub(super) status: Option<Box<dyn DynBuffer>>,
    pub(super) scratch: Option<Box<dyn DynBuffer>>,
    pub(super) spare: Vec<(Placement, Box<dyn DynBuffer>)>,
}

impl std::fmt::Debug for DeviceEncoder<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceEncoder")
            .field("device", &self.dev.info().name)
            .field("spare_buffers", &self.spare.len())
            .finish()
    }
}

/// Returns `slot`'s buffer, (re)allocated in device memory when it is missing or smaller
/// than `size`.
pub(super) fn grow<'a>(
    dev: &dyn DynDevice,
    slot: &'a mut Option<Box<dyn DynBuffer>>,
    size: u64,
) -> Result<&'a dyn DynBuffer> {
    let size = size.max(1);
    if slot.as_ref().is_none_or(|b| b.len() < size) {
        *slot = None;
        *slot = Some(dev.alloc(size, Placement::DeviceLocal)?);
    }
    slot.as_deref()
        .ok_or_else(|| Error::invalid("scratch buffer missing"))
}

/// `b` whole, as a kernel argument.
pub(super) fn whole(b: &dyn DynBuffer, access: AccessMode) -> Arg<'_, dyn DynBuffer> {
    Arg::Buffer {
        buffer: b,
        offset: 0,
        len: b.len(),
        access,
    }
}

/// The buffers of a [`DeviceEncoder`] (device scratch and spare pinned outputs), kept
/// between encoders so that a caller evicting often (the memory manager's transfer path)
/// does not allocate device and pinned memory per eviction. Belongs to one device.
#[derive(Default)]
pub struct EncoderScratch {
    device: Option<vuma_core::DeviceId>,
    slots: [Option<Box<dyn DynBuffer>>; 6],
    spare: Vec<(Placement, Box<dyn DynBuffer>)>,
}

impl std::fmt::Debug for EncoderScratch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncoderScratch")
            .field("device", &self.device)
            .field("spare_buffers", &self.spare.len())
            .finish()
    }
}

impl EncoderScratch {
    /// Keeps `buf` (pinned memory of `home`, e.g. from [`Evicted::into_buffer`]) for a later
    /// eviction, keeping at most `max_spare` spare buffers (the smallest go first).
    pub fn keep_spare(&mut self, home: Placement, buf: Box<dyn DynBuffer>, max_spare: usize) {
        if self.device.is_some_and(|d| d != buf.device()) {
            return;
        }
        self.spare.push((home, buf));
        self.spare.sort_by_key(|(_, b)| std::cmp::Reverse(b.len()));
        self.spare.truncate(max_spare);
    }
}

impl<'d> DeviceEncoder<'d> {
    /// An encoder for `dev` (scratch buffers are allocated at first use and reused).
    pub fn new(dev: &'d dyn DynDevice) -> Self {
        DeviceEncoder {
            dev,
            records: None,
            stats: None,
            sums: None,
            jobs: None,
            status: None,
            scratch: None,
            spare: Vec::new(),
        }
    }

    /// An encoder for `dev` reusing `scratch` (from [`into_scratch`](Self::into_scratch));
    /// scratch of another device is dropped.
    pub fn with_scratch(dev: &'d dyn DynDevice, scratch: EncoderScratch) -> Self {
        let mut e = DeviceEncoder::new(dev);
        if scratch.device.is_none_or(|d| d == dev.info().id) {
            let [records, stats, sums, jobs, status, buf] = scratch.slots;
            e.records = records;
            e.stats = stats;
            e.sums = sums;
            e.jobs = jobs;
            e.status = status;
            e.scratch = buf;
            e.spare = scratch.spare;
        }
        e
    }

    /// Gives the buffers back for a later [`with_scratch`](Self::with_scratch).
    pub fn into_scratch(self) -> EncoderScratch {
        EncoderScratch {
            device: Some(self.dev.info().id),
            slots: [
                self.records,
                self.stats,
                self.sums,
                self.jobs,
                self.status,
                self.scratch,
            ],
            spare: self.spare,
        }
    }

    /// Keeps an evicted buffer's pinned memory for the next eviction to the same home.
    pub fn recycle(&mut self, e: Evicted) {
        let home = if e.pinned().is_mapped() {
            Placement::HostMapped
        } else {
            Placement::Staging
        };
        self.spare.push((home, e.into_buffer()));
    }

    fn output(&mut self, home: Placement, size: u64) -> Result<Box<dyn DynBuffer>> {
        if let Some(i) = self
            .spare
            .iter()
            .position(|(p, b)| *p == home && b.len() >= size)
        {
            return Ok(self.spare.swap_remove(i).1);
        }
        self.dev.alloc(size, home)
    }

    /// Compresses `src[0..len]` (elements of `opts.plan.width`, pages of
    /// `opts.plan.page_size`, chunks of `opts.chunk_bytes`) on the device and downloads the
    /// chunk images into pinned host memory: [`Placement::Staging`] (encode into device
    /// memory, then one copy) or [`Placement::HostMapped`] (the kernel writes across the
    /// link). The images equal those of [`CompressedBuffer::compress`](crate::CompressedBuffer::compress)
    /// with `force` = bitplane; `opts.force` must be `None` or the bitplane codec.
    pub fn evict(
        &mut self,
        src: &dyn DynBuffer,
        len: u64,
        opts: &CompressOptions,
        home: Placement,
    ) -> Result<Evicted> {
        self.evict_range(src, 0, len, opts, home)
    }

    /// [`evict`](Self::evict) of `src[offset..offset + len]` (a pool sub-allocation).
    pub fn evict_range(
        &mut self,
        src: &dyn DynBuffer,
        offset: u64,
        len: u64,
        opts: &CompressOptions,
        home: Placement,
    ) -> Result<Evicted> {
        let t0 = Instant::now();
        let req = self.check_request(src, offset, len, opts, home)?;
        let mut staged = None;
        let src = Source::bind(self.dev, src, offset, len, &mut staged)?;

        // 1. Size pass.
        let sums = self.size_pass(src, &req)?;
        let size_s = t0.elapsed().as_secs_f64();

        // 2. Kinds and layout, as the host encoder does.
        let JobTable {
            layouts,
            offsets,
            total,
            jobs,
            summary,
        } = job_table(&sums, len, opts)?;
        self.upload_jobs(&jobs)?;
        let layout_s = t0.elapsed().as_secs_f64();

        // 3. Write pass, into device memory then one copy, or straight into mapped memory.
        let out = self.output(home, total)?;
        let device_encode_s = {
            let pass = self.write_pass(src, &req, jobs.len() as u64, out.as_ref(), total, home)?;
            let s = pass.download(&layouts, &offsets, out.as_ref(), home, t0)?;
            pass.check_status()?;
            s
        };
        let pinned = PinnedCompressed::from_layout(
            out,
            &layouts,
            len,
            req.width,
            home == Placement::HostMapped,
        );
        let encode_time_s = t0.elapsed().as_secs_f64();
        let device_s = if home == Placement::Staging {
            device_encode_s
        } else {
            encode_time_s
        };
        Ok(Evicted {
            pinned,
            layouts,
            summary,
            page_size: req.ps,
            encode_time_s,
            device_encode_s: device_s,
            phases_s: [size_s, layout_s, device_s],
        })
    }

    /// Checks an eviction's request (a non-empty range of `src`, a pinned home the device
    /// supports, the bitplane codec, the geometry of `opts`); returns its geometry.
    fn check_request(
        &self,
        src: &dyn DynBuffer,
        offset: u64,
        len: u64,
        opts: &CompressOptions,
        home: Placement,
    ) -> Result<Request> {
        if len == 0 {
            return Err(Error::ZeroSize {
                what: "evicted buffer",
            });
        }
        vuma_core::check_range(offset, len, src.len())?;
        if !matches!(home, Placement::Staging | Placement::HostMapped) {
            return Err(Error::invalid(format!(
                "evicted pages go to pinned host memory (staging or mapped), not {}",
                home.as_str()
            )));
        }
        if !self.dev.supports(home) {
            return Err(Error::UnsupportedPlacement {
                device: self.dev.info().name.clone(),
                placement: home,
            });
        }
        match opts.force {
            None | Some(PageDecision::Codec(DeviceCodec::Bitplane)) => {}
            Some(f) => {
                return Err(Error::invalid(format!(
                    "the device encoder codes bitplane pages only, not {}",
                    f.name()
                )))
            }
        }
        let ps = check_geometry(opts)?;
        let data_len = usize::try_from(len).map_err(|_| Error::invalid("length exceeds usize"))?;
        let npages = u32::try_from(data_len.div_ceil(ps))
            .map_err(|_| Error::invalid("more than 2^32 pages"))?;
        Ok(Request {
            len,
            ps,
            width: opts.plan.width,
            npages,
        })
    }
}

/// The geometry of one eviction, checked: `len` bytes in `npages` pages of `ps` bytes of
/// `width`-byte elements.
pub(super) struct Request {
    pub(super) len: u64,
    pub(super) ps: usize,
    pub(super) width: ElemWidth,
    pub(super) npages: u32,
}

impl Request {
    /// The launch arguments both passes end with: `npages, page_size, width`.
    pub(super) fn geometry_args<'b>(&self) -> [Arg<'b, dyn DynBuffer>; 3] {
        [
            Arg::Scalar(Scalar::U32(self.npages)),
            Arg::Scalar(Scalar::U32(self.ps as u32)),
            Arg::Scalar(Scalar::U32(self.width.bytes() as u32)),
        ]
    }
}

/// The source of an eviction as both kernels bind it.
#[derive(Clone, Copy)]
pub(super) struct Source<'a> {
    buf: &'a dyn DynBuffer,
    offset: u64,
    /// Bytes bound (on Vulkan `len` rounded up to whole words).
    bind: u64,
}

impl<'a> Source<'a> {
    /// `src[offset..offset + len]` as the kernels read it. The Vulkan kernels read the
    /// source in whole 4-byte words through a binding whose offset is a multiple of
    /// minStorageBufferOffsetAlignment (at most 256): bind the range rounded up to whole
    /// words when the buffer holds them, else encode a copy (allocated into `staged`).
    fn bind(
        dev: &dyn DynDevice,
        src: &'a dyn DynBuffer,
        offset: u64,
        len: u64,
        staged: &'a mut Option<Box<dyn DynBuffer>>,
    ) -> Result<Source<'a>> {
        if dev.info().storage_word_bytes <= 1 {
            return Ok(Source {
                buf: src,
                offset,
                bind: len,
            });
        }
        let words = len.next_multiple_of(4);
        if offset.is_multiple_of(256) && src.len() - offset >= words {
            return Ok(Source {
                buf: src,
                offset,
                bind: words,
            });
        }
        let copy = staged.insert(dev.alloc(words, Placement::DeviceLocal)?);
        let copy: &'a dyn DynBuffer = &**copy;
        dev.copy(src, offset, copy, 0, len)?;
        Ok(Source {
            buf: copy,
            offset: 0,
            bind: words,
        })
    }

    /// The source argument of both kernels.
    pub(super) fn arg(&self) -> Arg<'a, dyn DynBuffer> {
        Arg::Buffer {
            buffer: self.buf,
            offset: self.offset,
            len: self.bind,
            access: AccessMode::Read,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bitplane::GROUP;
    use crate::datasets::{self, Dataset, SplitMix64};
    use crate::encode::block::mask_of;
    use crate::encode::host::{rd32, slots_of};
    use crate::encode::STAT;
    use crate::residency::{CompressedBuffer, Uploader};
    use vuma_core::HostDevice;

    fn opts(width: ElemWidth, chunk: usize, direct: usize) -> CompressOptions {
        let mut o = CompressOptions::with_width(width);
        o.chunk_bytes = chunk;
        o.direct_min_bytes = direct;
        o
    }

    /// Evicts `data` from a HostDevice buffer to `home`; checks the images against the host
    /// encoder and the upload round trip.
    fn check(
        enc: &mut DeviceEncoder<'_>,
        host: &HostDevice,
        data: &[u8],
        o: &CompressOptions,
        home: Placement,
    ) {
        let src = DynDevice::alloc(host, data.len() as u64 + 5, Placement::DeviceLocal).unwrap();
        DynDevice::fill(host, src.as_ref(), 0, data.len() as u64 + 5, 0xEE).unwrap();
        DynDevice::write(host, src.as_ref(), 0, data).unwrap();
        let ev = enc.evict(src.as_ref(), data.len() as u64, o, home).unwrap();
        let mut forced = o.clone();
        forced.force = Some(PageDecision::Codec(DeviceCodec::Bitplane));
        let want = CompressedBuffer::compress(data, &forced).unwrap();
        let got = ev.to_compressed(host).unwrap();
        assert_eq!(
            got.chunks(),
            want.chunks(),
            "chunk images differ ({home:?})"
        );
        let (a, b) = (got.summary(), want.summary());
        assert_eq!(
            (
                a.pages,
                a.zero_pages,
                a.raw_pages,
                a.bitplane_pages,
                a.bytes_in,
                a.bytes_sent
            ),
            (
                b.pages,
                b.zero_pages,
                b.raw_pages,
                b.bitplane_pages,
                b.bytes_in,
                b.bytes_sent
            )
        );
        assert_eq!(ev.stored_bytes(), want.stored_bytes());
        let dst = DynDevice::alloc(host, data.len() as u64 + 64, Placement::DeviceLocal).unwrap();
        DynDevice::fill(host, dst.as_ref(), 0, data.len() as u64 + 64, 0xCD).unwrap();
        Uploader::new(host)
            .upload_pinned(ev.pinned(), dst.as_ref())
            .unwrap();
        let mut back = vec![0u8; data.len() + 64];
        DynDevice::read(host, dst.as_ref(), 0, &mut back).unwrap();
        assert!(
            back[data.len()..].iter().all(|&b| b == 0xCD),
            "write past the data"
        );
        assert!(back[..data.len()] == *data, "round trip differs");
        enc.recycle(ev);
    }

    #[test]
    fn eviction_is_byte_identical_to_the_host_encoder() {
        let host = HostDevice::new();
        let mut enc = DeviceEncoder::new(&host);
        let mut r = SplitMix64::new(4);
        for ds in Dataset::ALL {
            for extra in [0usize, 1, 3, 4099, 65535] {
                let len = 5 * (64 << 10) + extra;
                let data = ds.generate(len, 2);
                for width in [ElemWidth::U8, ElemWidth::Bf16, ElemWidth::F32] {
                    let direct = if r.next_u64().is_multiple_of(2) {
                        64 << 10
                    } else {
                        1 << 20
                    };
                    let o = opts(width, 128 << 10, direct);
                    for home in [Placement::Staging, Placement::HostMapped] {
                        check(&mut enc, &host, &data, &o, home);
                    }
                }
            }
        }
    }

    #[test]
    fn eviction_of_tiny_and_mixed_buffers() {
        let host = HostDevice::new();
        let mut enc = DeviceEncoder::new(&host);
        for len in [1usize, 2, 3, 5, 1023, 1024, 4097] {
            let data = datasets::random_bytes(len, len as u64);
            check(
                &mut enc,
                &host,
                &data,
                &opts(ElemWidth::F32, 64 << 10, 1 << 20),
                Placement::Staging,
            );
            check(
                &mut enc,
                &host,
                &vec![0u8; len],
                &opts(ElemWidth::Bf16, 64 << 10, 1 << 20),
                Placement::Staging,
            );
        }
        // Zero, ReLU, random and constant pages mixed, small pages.
        let mut data = vec![0u8; 8 << 10];
        data.extend(datasets::relu_f32(12 << 10, 1));
        data.extend(datasets::random_bytes(9 << 10, 2));
        data.extend(vec![7u8; 3 << 10]);
        data.extend(datasets::relu_f32(1 << 10, 3));
        let mut o = opts(ElemWidth::F32, 8 << 10, 4 << 10);
        o.plan.page_size = 2 << 10;
        for home in [Placement::Staging, Placement::HostMapped] {
            check(&mut enc, &host, &data, &o, home);
        }
    }

    #[test]
    fn eviction_rejects_bad_requests() {
        let host = HostDevice::new();
        let mut enc = DeviceEncoder::new(&host);
        let src = DynDevice::alloc(&host, 4096, Placement::DeviceLocal).unwrap();
        let o = CompressOptions::with_width(ElemWidth::F32);
        let st = Placement::Staging;
        assert!(matches!(
            enc.evict(src.as_ref(), 0, &o, st),
            Err(Error::ZeroSize { .. })
        ));
        assert!(matches!(
            enc.evict(src.as_ref(), 4097, &o, st),
            Err(Error::OutOfRange { .. })
        ));
        assert!(matches!(
            enc.evict(src.as_ref(), 4096, &o, Placement::DeviceLocal),
            Err(Error::InvalidArgument(_))
        ));
        let mut bad = o.clone();
        bad.force = Some(PageDecision::Codec(DeviceCodec::Lz4));
        assert!(matches!(
            enc.evict(src.as_ref(), 4096, &bad, st),
            Err(Error::InvalidArgument(_))
        ));
        let mut bad = o.clone();
        bad.plan.page_size = 1000;
        assert!(matches!(
            enc.evict(src.as_ref(), 4096, &bad, st),
            Err(Error::InvalidArgument(_))
        ));
        let mut bad = o.clone();
        bad.chunk_bytes = 1024;
        assert!(matches!(
            enc.evict(src.as_ref(), 4096, &bad, st),
            Err(Error::InvalidArgument(_))
        ));
    }

    #[test]
    fn size_pass_stores_each_blocks_mask_and_zero_count() {
        let host = HostDevice::new();
        let mut enc = DeviceEncoder::new(&host);
        // Short last page, u8 and bf16 widths: slots of partial groups.
        for (width, len) in [
            (ElemWidth::U8, 9000usize),
            (ElemWidth::Bf16, 70_000),
            (ElemWidth::F32, 5 << 16),
        ] {
            let data = datasets::relu_f32(len, 7);
            let src = DynDevice::alloc(&host, len as u64, Placement::DeviceLocal).unwrap();
            DynDevice::write(&host, src.as_ref(), 0, &data).unwrap();
            let mut o = opts(width, 128 << 10, 1 << 20);
            o.plan.page_size = 4096;
            let ev = enc
                .evict(src.as_ref(), len as u64, &o, Placement::Staging)
                .unwrap();
            enc.recycle(ev);
            let stats = enc.stats.as_deref().unwrap();
            let mut st = vec![0u8; stats.len() as usize];
            DynDevice::read(&host, stats, 0, &mut st).unwrap();
            let w = width.bytes();
            let slots = slots_of(4096, w);
            for (page, s) in data.chunks(4096).enumerate() {
                let n = s.len() / w;
                for g in 0..n.div_ceil(GROUP) {
                    let m = (n - g * GROUP).min(GROUP);
                    for p in 0..w {
                        let x: Vec<u8> = (0..m).map(|i| s[(g * GROUP + i) * w + p]).collect();
                        let (mk, z) = mask_of(&x);
                        let at = 4 * STAT * (page * slots + g * w + p);
                        let got: Vec<u32> = (0..STAT).map(|q| rd32(&st, at + 4 * q)).collect();
                        assert_eq!(
                            got[..8],
                            mk[..],
                            "{width:?} page {page} group {g} plane {p}"
                        );
                        assert_eq!(got[8] as usize, z);
                    }
                }
            }
        }
    }
}
