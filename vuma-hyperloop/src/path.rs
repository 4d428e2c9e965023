//! [`HyperloopPath`]: PCIe Hyperloop as the memory manager's
//! [`TransferPath`].
//!
//! Plug it into [`MemoryConfig::transfer`](vuma_core::MemoryConfig) (the `vuma` facade
//! does so by default) and the manager's own migrations go through Hyperloop:
//!
//! - **Uploads of plain host copies** may skip all-zero pages. Host encoding is far slower
//!   than the link (see the crate docs), so nothing else is compressed on the way up: a
//!   probe of each page's first bytes finds the pages that may be zero (dense data costs
//!   one cache line per page and goes straight to a plain copy); when the candidates could
//!   save more than scanning them and the extra device calls cost (rates measured per
//!   device: the plain pageable upload, the scan), a parallel scan confirms them and the
//!   buffer goes as one copy per run of data and one device fill per run of zero pages
//!   (zero runs too short to pay for a call travel as data). On a host whose scan is not
//!   much faster than the link, uploads stay plain: the write-back side is where
//!   Hyperloop pays.
//! - **Write-backs** (eviction of a device copy that holds the only valid data) are encoded
//!   **on the device** by the [`DeviceEncoder`]: zero pages vanish, typed data shrinks
//!   (bitplane codec), and the host keeps the compressed chunk images in pinned memory as a
//!   [`PackedHost`] copy. The next upload of that buffer to the same device sends the
//!   compressed bytes and decodes them there; host access decodes them on the host.
//!   The path measures, per device, how fast its encoded write-backs and packed uploads
//!   run; when the two together are slower than two plain pageable copies would be, the
//!   write-back goes plain (every 16th is still encoded, to keep the rates current).
//!   Backends without the encoder kernels write back plainly.
//!
//! - **Host bytes** of a read-mostly buffer can be packed on the host instead
//!   ([`HyperloopPath::pack_host`]): every codec the device decodes, the float codec
//!   included, which the device encoder does not code.
//!
//! Each transfer's [`TransferReport`] says what was decided and why, and how many bytes
//! crossed the link.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use vuma_core::{
    DynBuffer, DynDevice, Error, PackedHost, Placement, Result, TransferKind, TransferPath,
    TransferReport,
};

use crate::encode::{DeviceEncoder, EncoderScratch, Evicted};
use crate::page::{self, ElemWidth};
use crate::planner::PlanSummary;
use crate::residency::{CompressOptions, UploadScratch, Uploader};

mod hostpack;

/// Knobs of [`HyperloopPath`].
#[derive(Debug, Clone, PartialEq)]
pub struct PathConfig {
    /// Page size (default 64 KiB).
    pub page_size: usize,
    /// Element width assumed for the bitplane codec on write-back (default f32: the
    /// manager does not know element types; any data round-trips exactly, typed data of
    /// this width compresses best).
    pub width: ElemWidth,
    /// Buffers smaller than this move plainly (default 1 MiB).
    pub min_bytes: u64,
    /// Bytes probed at the start of each page to find the pages that may be zero.
    pub probe_bytes: usize,
    /// Scan only when at least this fraction of the pages passed the probe (default 1/8).
    pub min_zero_fraction: f64,
    /// Host-side cost of one device call (copy or fill), seconds: the first estimate,
    /// replaced by what calls are measured to cost (`None`, the default: 15 µs, 100 µs on
    /// Vulkan, which waits for each submission). Zero runs shorter than what two calls
    /// cost at the upload rate travel as data.
    pub call_overhead_s: Option<f64>,
    /// Host bytes per second of the zero-page scan (0: estimate 8 GB/s per core, at most
    /// 80 GB/s).
    pub scan_bytes_per_s: f64,
    /// Also run on devices that share host memory (integrated GPUs, the host device), where
    /// there is no link to save: off by default (plain copies there); tests turn it on to
    /// drive every step of the path on the host device.
    pub on_shared_memory: bool,
    /// Encode every write-back on the device, even where the rates measured so far say a
    /// plain write-back and upload would be faster (default off: tests turn it on).
    pub always_encode: bool,
    /// Encode write-backs on the device where the backend has the encoder (default on).
    pub device_encode: bool,
    /// Uncompressed bytes per chunk of a chunked upload or a device-encoded write-back.
    pub chunk_bytes: usize,
}

impl Default for PathConfig {
    fn default() -> Self {
        PathConfig {
            page_size: page::DEFAULT_PAGE_SIZE,
            width: ElemWidth::F32,
            min_bytes: 1 << 20,
            probe_bytes: 64,
            min_zero_fraction: 0.125,
            call_overhead_s: None,
            scan_bytes_per_s: 0.0,
            on_shared_memory: false,
            always_encode: false,
            device_encode: true,
            chunk_bytes: 32 << 20,
        }
    }
}

/// Spare pinned outputs kept per device for the next write-back (the pinned memory of
/// packed copies that were unpacked or became stale).
const MAX_SPARE: usize = 2;

/// Buffers kept between transfers, per device: an uploader's chunk buffers, the encoder's
/// device scratch and spare pinned outputs.
#[derive(Debug, Default)]
struct Scratch {
    upload: Mutex<HashMap<vuma_core::DeviceId, UploadScratch>>,
    encode: Mutex<HashMap<vuma_core::DeviceId, EncoderScratch>>,
    rates: Mutex<HashMap<vuma_core::DeviceId, (Rates, bool)>>,
}

impl Scratch {
    /// The rates for `dev`: measured ones once seen, else estimates (a pageable upload at
    /// 70% of the link; a scan at 4 GB/s per core, at most 50 GB/s; or the configured
    /// scan rate, which then stays fixed).
    fn rates(&self, id: vuma_core::DeviceId, dev: &dyn DynDevice, cfg: &PathConfig) -> Rates {
        let mut m = self.rates.lock().unwrap_or_else(|e| e.into_inner());
        m.entry(id)
            .or_insert_with(|| {
                let fixed = cfg.scan_bytes_per_s > 0.0;
                let scan = if fixed {
                    cfg.scan_bytes_per_s
                } else {
                    (4e9 * scan_threads() as f64).min(50e9)
                };
                (
                    Rates {
                        plain_h2d: 0.7 * h2d_rate(dev),
                        scan,
                        // A device whose submissions wait costs about 100 µs a call
                        // (Vulkan on the H200); one whose calls queue about 15 µs.
                        call_s: cfg
                            .call_overhead_s
                            .unwrap_or(if dev.info().submissions_wait {
                                100e-6
                            } else {
                                15e-6
                            }),
                        hl_evict: None,
                        hl_upload: None,
                        declined: 0,
                        hl_samples: [0, 0],
                    },
                    fixed,
                )
            })
            .0
    }

    /// Folds a measured rate into the device's rates (a moving average).
    fn observe(&self, id: vuma_core::DeviceId, which: Rate, v: f64) {
        if !(v.is_finite() && v > 0.0) {
            return;
        }
        let mut m = self.rates.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((r, fixed_scan)) = m.get_mut(&id) {
            let avg = |old: f64| 0.5 * old + 0.5 * v;
            match which {
                Rate::Scan if *fixed_scan => {}
                Rate::Scan => r.scan = avg(r.scan),
                Rate::PlainH2d => r.plain_h2d = avg(r.plain_h2d),
                Rate::Call => r.call_s = avg(r.call_s),
                Rate::HlEvict | Rate::HlUpload => {
                    let (slot, n) = if which == Rate::HlEvict {
                        (&mut r.hl_evict, &mut r.hl_samples[0])
                    } else {
                        (&mut r.hl_upload, &mut r.hl_samples[1])
                    };
                    *n += 1;
                    if *n > 1 {
                        *slot = Some(slot.map_or(v, avg));
                    }
                }
            }
        }
    }

    /// Whether a device-encoded write-back (and the upload from the packed copy) is
    /// expected to beat a plain write-back and upload, by the rates measured so far; true
    /// until both Hyperloop rates are known, and for every 16th write-back declined.
    /// Whether packing a clean copy pays on device `id`: its packed uploads (measured)
    /// beat plain uploads by 5%; unmeasured ones are tried. Every 16th declined one is
    /// packed anyway to keep the rates current.
    fn clean_pack_pays(&self, id: vuma_core::DeviceId) -> bool {
        let mut m = self.rates.lock().unwrap_or_else(|e| e.into_inner());
        let Some((r, _)) = m.get_mut(&id) else {
            return true;
        };
        let Some(u) = r.hl_upload else {
            return true;
        };
        if u > 1.05 * r.plain_h2d {
            return true;
        }
        r.declined += 1;
        r.declined.is_multiple_of(16)
    }

    fn encode_pays(&self, id: vuma_core::DeviceId) -> bool {
        let mut m = self.rates.lock().unwrap_or_else(|e| e.into_inner());
        let Some((r, _)) = m.get_mut(&id) else {
            return true;
        };
        let (Some(e), Some(u)) = (r.hl_evict, r.hl_upload) else {
            return true;
        };
        // Per logical byte: encode + download + upload + decode against two plain copies
        // (a pageable download runs at about the pageable upload's rate).
        if 1.0 / e + 1.0 / u < 2.0 / r.plain_h2d {
            return true;
        }
        r.declined += 1;
        r.declined.is_multiple_of(16)
    }

    /// Runs `f` with an encoder for `dev` that reuses this device's buffers.
    fn with_encoder<R>(
        &self,
        dev: &dyn DynDevice,
        f: impl FnOnce(&mut DeviceEncoder<'_>) -> Result<R>,
    ) -> Result<R> {
        let id = dev.info().id;
        let mut enc = DeviceEncoder::with_scratch(dev, take(&self.encode, id));
        let r = f(&mut enc);
        put(&self.encode, id, enc.into_scratch());
        r
    }

    /// Keeps the pinned memory of a packed copy that is gone for the next write-back.
    fn give_back(&self, device: vuma_core::DeviceId, ev: Evicted) {
        let home = if ev.pinned().is_mapped() {
            Placement::HostMapped
        } else {
            Placement::Staging
        };
        self.encode
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(device)
            .or_default()
            .keep_spare(home, ev.into_buffer(), MAX_SPARE);
    }

    /// Runs `f` with an uploader for `dev` that reuses this device's buffers.
    fn with_uploader<R>(
        &self,
        dev: &dyn DynDevice,
        f: impl FnOnce(&mut Uploader<'_>) -> Result<R>,
    ) -> Result<R> {
        let id = dev.info().id;
        let mut up = Uploader::with_scratch(dev, take(&self.upload, id));
        let r = f(&mut up);
        put(&self.upload, id, up.into_scratch());
        r
    }
}

/// Takes device `id`'s entry out of `m` (the default when there is none), so that no lock
/// is held while it is used.
fn take<T: Default>(m: &Mutex<HashMap<vuma_core::DeviceId, T>>, id: vuma_core::DeviceId) -> T {
    m.lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&id)
        .unwrap_or_default()
}

/// Puts device `id`'s entry back into `m`.
fn put<T>(m: &Mutex<HashMap<vuma_core::DeviceId, T>>, id: vuma_core::DeviceId, v: T) {
    m.lock().unwrap_or_else(|e| e.into_inner()).insert(id, v);
}

/// The report of a transfer of `logical` bytes, `link` of which crossed the link, with the
/// page counts of `s`.
fn summary_report(
    kind: TransferKind,
    decision: String,
    logical: u64,
    link: u64,
    s: &PlanSummary,
    time_s: f64,
) -> TransferReport {
    TransferReport {
        kind,
        path: "hyperloop",
        decision,
        logical_bytes: logical,
        link_bytes: link,
        zero_pages: s.zero_pages as u64,
        raw_pages: s.raw_pages as u64,
        compressed_pages: s.codec_pages() as u64,
        time_s,
    }
}

/// PCIe Hyperloop as a [`TransferPath`] (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct HyperloopPath {
    cfg: PathConfig,
    scratch: Arc<Scratch>,
}

impl HyperloopPath {
    /// A path with `cfg`; fails on a page size the device decoders cannot take.
    pub fn new(cfg: PathConfig) -> Result<Self> {
        page::check_page_size(cfg.page_size, page::MAX_DEVICE_PAGE_SIZE)?;
        if !cfg.page_size.is_multiple_of(cfg.width.bytes()) {
            return Err(Error::invalid(
                "page size must be a multiple of the element width",
            ));
        }
        if cfg.chunk_bytes < cfg.page_size {
            return Err(Error::invalid(format!(
                "chunk_bytes {} is smaller than the page size {}",
                cfg.chunk_bytes, cfg.page_size
            )));
        }
        if !(cfg.min_zero_fraction.is_finite() && (0.0..=1.0).contains(&cfg.min_zero_fraction)) {
            return Err(Error::invalid("min_zero_fraction must lie in [0, 1]"));
        }
        Ok(HyperloopPath {
            cfg,
            scratch: Arc::default(),
        })
    }

    /// Its configuration.
    pub fn config(&self) -> &PathConfig {
        &self.cfg
    }

    fn report(&self, kind: TransferKind, decision: String, logical: u64) -> TransferReport {
        TransferReport {
            kind,
            path: "hyperloop",
            decision,
            logical_bytes: logical,
            link_bytes: logical,
            zero_pages: 0,
            raw_pages: 0,
            compressed_pages: 0,
            time_s: 0.0,
        }
    }

    fn options(&self, dev: &dyn DynDevice) -> CompressOptions {
        self.options_as(dev, self.cfg.width)
    }

    /// [`options`](Self::options) for elements of `width`.
    fn options_as(&self, dev: &dyn DynDevice, width: ElemWidth) -> CompressOptions {
        let mut o = CompressOptions::for_device(dev.info(), width);
        o.plan.page_size = self.cfg.page_size;
        o.chunk_bytes = self.cfg.chunk_bytes;
        o
    }

    /// Options of a host pack for elements of `width`: [`options_as`](Self::options_as)
    /// with the smaller pages the float decoder needs where the device has it (see
    /// [`CompressOptions::for_device`]).
    ///
    /// A buffer of fewer than four chunks (`len` bytes) is cut into four smaller chunks
    /// instead, of at least [`MIN_SMALL_CHUNK`] bytes: the decode of an upload's last chunk
    /// is not overlapped by a copy, so with two 32 MiB chunks that tail cost more than the
    /// float codec saved on an H200 (64 MiB layers of real fp32 weights streamed at 0.63×
    /// the hand-written loop with float pages, 1.00× with bitplane pages). Buffers too small
    /// for four such chunks are planned without the float codec.
    fn pack_options(&self, dev: &dyn DynDevice, width: ElemWidth, len: usize) -> CompressOptions {
        let mut o = self.options_as(dev, width);
        if len < 4 * o.chunk_bytes {
            let quarter = len.div_ceil(4).next_multiple_of(o.plan.page_size);
            if quarter < MIN_SMALL_CHUNK {
                o.model.float_decoder = false;
                return o;
            }
            o.chunk_bytes = quarter;
        }
        o.limit_pages_for_float(dev.info());
        o
    }
}

/// Smallest chunk of a small buffer's host pack (see `HyperloopPath::pack_options`): 128
/// pages of 64 KiB, 512 warps of the float decoder, about as many as the GPU needs to
/// decode a chunk in the time the next one takes to cross the link.
pub const MIN_SMALL_CHUNK: usize = 8 << 20;

/// Where packed chunk images live on `dev`: pinned staging memory, else mapped host memory;
/// `None` when the device has neither.
fn pinned_home(dev: &dyn DynDevice) -> Option<Placement> {
    [Placement::Staging, Placement::HostMapped]
        .into_iter()
        .find(|&p| dev.supports(p))
}

/// Which pages of `data` (pages of `ps` bytes) may be all zero: their first `probe` bytes
/// are (one cache line per page for dense data).
pub fn probe_pages(data: &[u8], ps: usize, probe: usize) -> Vec<bool> {
    page::pages(data.len(), ps)
        .map(|r| page::is_zero(&data[r.start..r.end.min(r.start + probe.max(1))]))
        .collect()
}

fn scan_threads() -> usize {
    vuma_core::host::cores()
}

/// Which of the candidate pages are all zero (a full check, on all cores).
pub fn scan_pages(data: &[u8], ps: usize, cand: &[bool]) -> Vec<bool> {
    let ranges: Vec<_> = page::pages(data.len(), ps).collect();
    let n = cand.iter().filter(|&&c| c).count();
    let threads = scan_threads().clamp(1, n.max(1));
    let per = ranges.len().div_ceil(threads).max(1);
    let mut zero = vec![false; ranges.len()];
    std::thread::scope(|s| {
        for ((zs, rs), cs) in zero
            .chunks_mut(per)
            .zip(ranges.chunks(per))
            .zip(cand.chunks(per))
        {
            s.spawn(move || {
                for ((z, r), &c) in zs.iter_mut().zip(rs).zip(cs) {
                    *z = c && page::is_zero(&data[r.clone()]);
                }
            });
        }
    });
    zero
}

/// Which pages of `data` are all zero, or `None` when fewer than `min_fraction` of them
/// pass the probe ([`probe_pages`], then [`scan_pages`]).
pub fn zero_pages(data: &[u8], ps: usize, probe: usize, min_fraction: f64) -> Option<Vec<bool>> {
    let cand = probe_pages(data, ps, probe);
    let n = cand.iter().filter(|&&c| c).count();
    if n == 0 || (n as f64) < min_fraction * cand.len() as f64 {
        return None;
    }
    Some(scan_pages(data, ps, &cand))
}

/// Runs of equal flags: `(is_zero, first page, pages)`.
fn runs(flags: &[bool]) -> Vec<(bool, usize, usize)> {
    let mut out: Vec<(bool, usize, usize)> = Vec::new();
    for (i, &z) in flags.iter().enumerate() {
        match out.last_mut() {
            Some(r) if r.0 == z => r.2 += 1,
            _ => out.push((z, i, 1)),
        }
    }
    out
}

/// Merges zero runs shorter than `min_run` pages into their neighbours (sent as data).
fn coalesce(rs: &[(bool, usize, usize)], min_run: usize) -> Vec<(bool, usize, usize)> {
    let mut out: Vec<(bool, usize, usize)> = Vec::new();
    for &(z, p0, np) in rs {
        let z = z && np >= min_run.max(1);
        match out.last_mut() {
            Some(r) if r.0 == z => r.2 += np,
            _ => out.push((z, p0, np)),
        }
    }
    out
}

/// Bytes of the zero runs of `rs` (pages of `ps` bytes in a `len`-byte buffer).
fn zero_bytes(rs: &[(bool, usize, usize)], ps: usize, len: usize) -> u64 {
    rs.iter()
        .filter(|r| r.0)
        .map(|&(_, p0, np)| (((p0 + np) * ps).min(len) - p0 * ps) as u64)
        .sum()
}

/// Rates the upload decision uses, per device: measured where the path has seen them.
#[derive(Debug, Clone, Copy)]
struct Rates {
    /// Bytes per second of a plain upload from pageable memory (`Device::write`).
    plain_h2d: f64,
    /// Bytes per second of the zero-page scan on this host.
    scan: f64,
    /// Seconds one device call (copy or fill) costs beyond moving its bytes.
    call_s: f64,
    /// Logical bytes per second of device-encoded write-backs (encode and download), once
    /// measured.
    hl_evict: Option<f64>,
    /// Logical bytes per second of uploads from packed copies (copy and decode), once
    /// measured.
    hl_upload: Option<f64>,
    /// Write-backs left plain because the measured rates said so (every 16th is encoded
    /// anyway, to keep the rates current).
    declined: u32,
    /// Samples seen of `hl_evict` and `hl_upload`: the first of each is a warm-up (it
    /// pays for the scratch and pinned buffers) and is not counted.
    hl_samples: [u32; 2],
}

/// Which measured rate a sample is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rate {
    PlainH2d,
    Scan,
    Call,
    HlEvict,
    HlUpload,
}

fn h2d_rate(dev: &dyn DynDevice) -> f64 {
    dev.info()
        .host_link
        .as_ref()
        .map(|l| l.h2d_bytes_per_s)
        .filter(|r| r.is_finite() && *r > 0.0)
        .unwrap_or(25e9)
}

impl TransferPath for HyperloopPath {
    fn name(&self) -> &'static str {
        "hyperloop"
    }

    fn upload(
        &self,
        dev: &dyn DynDevice,
        src: &[u8],
        dst: &dyn DynBuffer,
        dst_offset: u64,
    ) -> Result<TransferReport> {
        let t0 = Instant::now();
        let n = src.len() as u64;
        vuma_core::check_range(dst_offset, n, dst.len())?;
        let id = dev.info().id;
        let plain = |why: String| -> Result<TransferReport> {
            let t = Instant::now();
            dev.write(dst, dst_offset, src)?;
            let s = t.elapsed().as_secs_f64();
            if n >= self.cfg.min_bytes {
                self.scratch.observe(id, Rate::PlainH2d, n as f64 / s);
            }
            let mut r = self.report(TransferKind::Upload, why, n);
            r.raw_pages = src.len().div_ceil(self.cfg.page_size) as u64;
            r.time_s = t0.elapsed().as_secs_f64();
            Ok(r)
        };
        if dev.info().unified_memory && !self.cfg.on_shared_memory {
            return plain("plain: the device shares host memory (no link to save)".into());
        }
        if n < self.cfg.min_bytes {
            return plain(format!(
                "plain: below {}",
                vuma_core::human_bytes(self.cfg.min_bytes)
            ));
        }
        let ps = self.cfg.page_size;
        let rates = self.scratch.rates(id, dev, &self.cfg);
        let t_plain = n as f64 / rates.plain_h2d;
        // Zero runs shorter than this are sent as data: a device call costs more.
        let min_run = ((2.0 * rates.call_s * rates.plain_h2d) / ps as f64).ceil() as usize;
        // A first look at about 256 pages spread over the buffer: each probe of a dense
        // buffer costs a cache and TLB miss, which over every page of 256 MiB is ~5% of
        // the upload.
        let all = src.len().div_ceil(ps);
        let stride = (all / 256).max(1);
        let (mut seen, mut pass) = (0usize, 0usize);
        for p in (0..all).step_by(stride) {
            let a = p * ps;
            let b = (a + self.cfg.probe_bytes.max(1)).min(src.len());
            seen += 1;
            pass += usize::from(page::is_zero(&src[a..b]));
        }
        if stride > 1 && (pass as f64) < 0.5 * self.cfg.min_zero_fraction * seen as f64 {
            return plain(format!(
                "plain: dense ({pass} of {seen} sampled pages pass the zero probe)"
            ));
        }
        let cand = probe_pages(src, ps, self.cfg.probe_bytes);
        let pages = cand.len();
        let c = cand.iter().filter(|&&c| c).count();
        if c == 0 || (c as f64) < self.cfg.min_zero_fraction * pages as f64 {
            return plain(format!(
                "plain: dense ({c} of {pages} pages pass the zero probe)"
            ));
        }
        // What skipping the candidates could save, at best, against what finding out costs.
        let cand_bytes = (c * ps).min(src.len()) as f64;
        let best = coalesce(&runs(&cand), min_run);
        let best_zero = zero_bytes(&best, ps, src.len());
        let t_best = cand_bytes / rates.scan
            + (n - best_zero) as f64 / rates.plain_h2d
            + best.len() as f64 * rates.call_s;
        if t_best > 0.9 * t_plain {
            return plain(format!(
                "plain: {c} of {pages} pages may be zero, but scanning them ({:.0} GB/s) and {} device calls would cost {:.2} ms against {:.2} ms plain ({:.0} GB/s)",
                rates.scan / 1e9,
                best.len(),
                t_best * 1e3,
                t_plain * 1e3,
                rates.plain_h2d / 1e9
            ));
        }
        let ts = Instant::now();
        let zero = scan_pages(src, ps, &cand);
        let scan_s = ts.elapsed().as_secs_f64();
        self.scratch
            .observe(id, Rate::Scan, cand_bytes / scan_s.max(1e-9));
        let z = zero.iter().filter(|&&b| b).count();
        let rs = coalesce(&runs(&zero), min_run);
        let skipped = zero_bytes(&rs, ps, src.len());
        let t_runs = (n - skipped) as f64 / rates.plain_h2d + rs.len() as f64 * rates.call_s;
        if skipped == 0 || t_runs >= t_plain {
            return plain(format!(
                "plain: {z} of {pages} pages are zero (scan {:.2} ms), too scattered to skip ({} calls: {:.2} ms against {:.2} ms plain)",
                scan_s * 1e3,
                rs.len(),
                t_runs * 1e3,
                t_plain * 1e3
            ));
        }
        let mut skipped_pages = 0u64;
        let tr = Instant::now();
        for &(is_zero, p0, np) in &rs {
            let a = p0 * ps;
            let b = ((p0 + np) * ps).min(src.len());
            if is_zero {
                dev.fill(dst, dst_offset + a as u64, (b - a) as u64, 0)?;
                skipped_pages += np as u64;
            } else {
                dev.write(dst, dst_offset + a as u64, &src[a..b])?;
            }
        }
        // What each device call really cost beyond moving its bytes (Vulkan waits for every
        // submission; CUDA does not).
        let extra = tr.elapsed().as_secs_f64() - (n - skipped) as f64 / rates.plain_h2d;
        self.scratch
            .observe(id, Rate::Call, extra.max(1e-7) / rs.len().max(1) as f64);
        let mut r = self.report(TransferKind::Upload, String::new(), n);
        r.zero_pages = skipped_pages;
        r.raw_pages = pages as u64 - skipped_pages;
        r.link_bytes = n - skipped;
        r.decision = format!(
            "{skipped_pages} zero pages of {pages} filled on the device, the rest in {} copies (scan {:.2} ms; modelled {:.2} ms against {:.2} ms plain)",
            rs.iter().filter(|r| !r.0).count(),
            scan_s * 1e3,
            t_runs * 1e3,
            t_plain * 1e3
        );
        r.time_s = t0.elapsed().as_secs_f64();
        Ok(r)
    }

    fn evict(
        &self,
        dev: &dyn DynDevice,
        src: &dyn DynBuffer,
        offset: u64,
        len: u64,
    ) -> Result<Option<(Box<dyn PackedHost>, TransferReport)>> {
        self.pack(dev, src, offset, len, false)
    }

    fn pack_clean(
        &self,
        dev: &dyn DynDevice,
        src: &dyn DynBuffer,
        offset: u64,
        len: u64,
    ) -> Result<Option<(Box<dyn PackedHost>, TransferReport)>> {
        self.pack(dev, src, offset, len, true)
    }

    /// On devices with a float decoder, host bytes are packed on the host (the float codec
    /// has no device encoder): see [`HyperloopPath::pack_host`].
    fn pack_clean_host(
        &self,
        dev: &dyn DynDevice,
        host: &[u8],
    ) -> Result<Option<Box<dyn PackedHost>>> {
        if !self.cfg.device_encode || !self.options(dev).model.float_decoder {
            return Ok(None);
        }
        // Only where the float codec is planned: the device encoder codes the other pages
        // as well as the host does, faster and without holding host cores.
        match self.best_sample_plan(dev, host) {
            Some((w, s)) if s.float_pages > 0 => {
                Ok(self.pack_host_as(dev, host, w)?.map(|(p, _)| p))
            }
            _ => Ok(None),
        }
    }
}

impl HyperloopPath {
    /// Encodes `src[offset..offset + len]` on the device into a packed host copy, when
    /// the measured rates say it pays: for a write-back (`clean == false`), an encoded
    /// write-back plus a packed upload against two plain copies; for a clean copy (the
    /// host copy stays valid), a packed upload against a plain upload, since the encoding
    /// is paid once and every later upload gains.
    fn pack(
        &self,
        dev: &dyn DynDevice,
        src: &dyn DynBuffer,
        offset: u64,
        len: u64,
        clean: bool,
    ) -> Result<Option<(Box<dyn PackedHost>, TransferReport)>> {
        if !self.cfg.device_encode
            || len < self.cfg.min_bytes
            || (dev.info().unified_memory && !self.cfg.on_shared_memory)
        {
            return Ok(None);
        }
        // The encoder kernels have CUDA, SPIR-V (Vulkan) and host variants; a backend
        // without one writes back plainly.
        let backend = dev.info().backend;
        let dev_kind = dev.info().kind;
        if crate::encode::encoders()
            .size
            .variant_for(backend)
            .is_none()
        {
            return Ok(None);
        }
        let Some(home) = pinned_home(dev) else {
            return Ok(None);
        };
        let id = dev.info().id;
        // Rates are kept per device from its first transfer on.
        let _ = self.scratch.rates(id, dev, &self.cfg);
        let pays = if clean {
            self.scratch.clean_pack_pays(id)
        } else {
            self.scratch.encode_pays(id)
        };
        if !self.cfg.always_encode && !pays {
            tracing::debug!(
                device = %dev.info().name,
                bytes = len,
                clean,
                "not packed: measured rates say encoding on the device would not pay"
            );
            return Ok(None);
        }
        let t0 = Instant::now();
        let opts = self.options(dev);
        let ev = self
            .scratch
            .with_encoder(dev, |e| e.evict_range(src, offset, len, &opts, home))?;
        self.scratch
            .observe(id, Rate::HlEvict, len as f64 / t0.elapsed().as_secs_f64());
        let s = ev.summary().clone();
        let link = ev.stored_bytes();
        let decision = format!(
            "{}encoded on the {} device: {} zero, {} bitplane, {} raw pages; {:.2}x",
            if clean { "clean copy " } else { "" },
            if dev_kind == vuma_core::DeviceKind::Cpu {
                "host"
            } else {
                "GPU"
            },
            s.zero_pages,
            s.bitplane_pages,
            s.raw_pages,
            len as f64 / link.max(1) as f64
        );
        let time_s = t0.elapsed().as_secs_f64();
        let report = summary_report(TransferKind::Download, decision, len, link, &s, time_s);
        let packed = HyperloopPacked {
            scratch: self.scratch.clone(),
            device: dev.info().id,
            len,
            summary: s,
            ev: Some(ev),
        };
        Ok(Some((Box::new(packed), report)))
    }
}

/// A write-back encoded on the device: chunk images in pinned host memory of the device
/// that encoded them.
#[derive(Debug)]
pub struct HyperloopPacked {
    scratch: Arc<Scratch>,
    device: vuma_core::DeviceId,
    len: u64,
    summary: PlanSummary,
    /// Always `Some` until dropped (then its pinned memory goes back to the path).
    ev: Option<Evicted>,
}

impl HyperloopPacked {
    fn evicted(&self) -> Result<&Evicted> {
        self.ev
            .as_ref()
            .ok_or_else(|| Error::invalid("packed copy already released"))
    }
}

impl Drop for HyperloopPacked {
    fn drop(&mut self) {
        if let Some(ev) = self.ev.take() {
            self.scratch.give_back(self.device, ev);
        }
    }
}

impl PackedHost for HyperloopPacked {
    fn logical_bytes(&self) -> u64 {
        self.len
    }

    fn stored_bytes(&self) -> u64 {
        self.ev.as_ref().map_or(0, |e| e.pinned().buffer().len())
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
        self.evicted()?.to_compressed(dev)?.decompress_host(out)
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
                found: format!("the device that packed it ({:?})", self.device),
            });
        }
        let ev = self.evicted()?;
        let up = self
            .scratch
            .with_uploader(dev, |u| u.upload_pinned_into(ev.pinned(), dst, dst_offset))?;
        self.scratch
            .observe(self.device, Rate::HlUpload, self.len as f64 / up.time_s);
        let s = &self.summary;
        let decision = format!(
            "compressed host copy decoded on the device: {} zero, {} bitplane, {} raw pages",
            s.zero_pages, s.bitplane_pages, s.raw_pages
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_page_scan_and_runs() {
        let ps = 4096;
        let mut d = vec![0u8; 10 * ps];
        d[3 * ps + 100] = 1; // page 3: probe passes, scan rejects
        d[7 * ps] = 9; // page 7: probe rejects
        let z = zero_pages(&d, ps, 64, 0.1).expect("scan");
        let want: Vec<bool> = (0..10).map(|p| p != 3 && p != 7).collect();
        assert_eq!(z, want);
        assert_eq!(
            runs(&z),
            vec![
                (true, 0, 3),
                (false, 3, 1),
                (true, 4, 3),
                (false, 7, 1),
                (true, 8, 2)
            ]
        );
        let c = coalesce(&runs(&z), 3);
        assert_eq!(
            c,
            vec![(true, 0, 3), (false, 3, 1), (true, 4, 3), (false, 7, 3)]
        );
        assert_eq!(zero_bytes(&c, ps, d.len()), 6 * ps as u64);
        assert_eq!(coalesce(&runs(&z), 4), vec![(false, 0, 10)]);
        let dense = vec![1u8; 10 * ps];
        assert!(zero_pages(&dense, ps, 64, 0.1).is_none());
    }

    #[test]
    fn write_backs_go_plain_when_measured_rates_say_so() {
        let host = vuma_core::HostDevice::new();
        let id = vuma_core::DynDevice::info(&host).id;
        let s = Scratch::default();
        s.rates(id, &host, &PathConfig::default());
        assert!(s.encode_pays(id), "encode until both rates are measured");
        s.observe(id, Rate::HlEvict, 1e6); // warm-up samples: not counted
        s.observe(id, Rate::HlUpload, 1e6);
        assert!(s.encode_pays(id));
        s.observe(id, Rate::HlEvict, 10e9);
        assert!(s.encode_pays(id));
        s.observe(id, Rate::HlUpload, 10e9);
        for _ in 0..20 {
            s.observe(id, Rate::PlainH2d, 40e9);
        }
        // 1/10 + 1/10 per GB against 2/40: plain, except every 16th write-back.
        let encoded = (0..32).filter(|_| s.encode_pays(id)).count();
        assert_eq!(encoded, 2);
        for _ in 0..20 {
            s.observe(id, Rate::HlEvict, 100e9);
            s.observe(id, Rate::HlUpload, 100e9);
        }
        assert!(s.encode_pays(id), "fast enough again");
        s.observe(id, Rate::HlUpload, f64::NAN);
        assert!(s.encode_pays(id), "bad samples are ignored");
    }

    #[test]
    fn bad_configs_are_refused() {
        let mut c = PathConfig {
            page_size: 1000,
            ..PathConfig::default()
        };
        assert!(HyperloopPath::new(c.clone()).is_err());
        c.page_size = 65536;
        c.chunk_bytes = 1024;
        assert!(HyperloopPath::new(c.clone()).is_err());
        c.chunk_bytes = 1 << 20;
        c.min_zero_fraction = f64::NAN;
        assert!(HyperloopPath::new(c).is_err());
    }

    #[test]
    fn small_host_packs_get_four_chunks_or_no_float_codec() {
        let dev = vuma_core::HostDevice::new().behind_link(vuma_core::LinkInfo::from_pcie(5, 16));
        let path = HyperloopPath::new(PathConfig::default()).expect("path");
        let chunk = PathConfig::default().chunk_bytes;
        let big = path.pack_options(&dev, ElemWidth::Bf16, 4 * chunk);
        assert_eq!(big.chunk_bytes, chunk);
        assert!(
            big.model.float_decoder,
            "the host device decodes the float codec"
        );
        let mid = path.pack_options(&dev, ElemWidth::Bf16, 64 << 20);
        assert_eq!(mid.chunk_bytes, 16 << 20);
        assert!(mid.model.float_decoder);
        let small = path.pack_options(&dev, ElemWidth::Bf16, 2 * MIN_SMALL_CHUNK);
        assert!(!small.model.float_decoder);
    }
}
