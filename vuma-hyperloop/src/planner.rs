//! The transfer planner: per page, Zero (nothing sent, the device fills), Raw, or a device
//! codec — chosen by a cost model over measured numbers, never by a guess.
//!
//! [`CostModel`] holds the link bandwidth (from [`DeviceInfo::host_link`]), each device
//! codec's device decode rate and host encode rate; its defaults are the H100 machine's
//! measured figures and [`CostModel::measure_host`] /
//! [`measure_device_decode`](crate::residency::measure_device_decode) replace them with
//! numbers measured here. It serialises to a few `key value` lines so it can be measured
//! once and cached ([`CostModel::to_text`], [`CostModel::from_text`]).
//!
//! The page's ratio comes from a sampled estimate ([`crate::page::estimate`]: for the
//! bitplane codec, what its encoder achieves on whole sampled groups of the page; for the
//! float codec, the exact size of its Huffman code of the sampled groups' exponent
//! histogram). A codec is a candidate only where the model's device decodes it
//! ([`CostModel::decodes`]: a model [`for_device`](CostModel::for_device) records whether
//! the float decoder has a variant for the device's backend, as it has for CUDA, Vulkan and
//! the host device; a model of no device never plans float pages). Time per page
//! of `n` bytes:
//! ```text
//! zero   n / fill_rate
//! raw    n / link
//! codec  n / (ratio · link) ⊕ n / device_decode  + encode
//! ```
//! where `⊕` is `+` when the copy and the decode are serialised on one stream (what a plain
//! `Device::copy` + `launch` sequence gets), and `max` when they overlap: either the copies
//! are concurrent with the decodes ([`CostModel::concurrent_copies`]: the device's
//! `copy_concurrent` runs on its own queue, as on CUDA), or the decoders read the compressed
//! bytes in place from mapped host memory ([`CostModel::overlap`]) — then the copy term uses
//! [`CostModel::mapped_h2d`], the rate the decoders actually pull compressed bytes over the
//! link, instead of `link`.
//! where `encode` is `n / host_encode / uses` when the host must encode (data not already
//! compressed; `uses` = how many uploads share one encoding) and 0 when the bytes are
//! already compressed (compressed host residency, GPU-compressed eviction). A codec must beat
//! raw by [`PlanConfig::min_gain`] or the page goes raw: incompressible data bypasses
//! compression at no loss.

use std::fmt;
use std::time::Instant;

use vuma_core::{DeviceInfo, Error, Result};

use crate::page::{self, ElemWidth, PageEstimate, SampleConfig};

/// A codec the device can decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceCodec {
    /// The bitplane codec ([`crate::bitplane`]).
    Bitplane,
    /// LZ4 block format.
    Lz4,
    /// The entropy-coded float codec ([`crate::floatcodec`], decoded by `hl_float`: see
    /// [`DeviceCodec::decodes_on`]).
    Float,
}

impl DeviceCodec {
    /// Every device codec.
    pub const ALL: [DeviceCodec; 3] = [DeviceCodec::Bitplane, DeviceCodec::Lz4, DeviceCodec::Float];
    /// Short name.
    pub fn name(self) -> &'static str {
        match self {
            DeviceCodec::Bitplane => "bitplane",
            DeviceCodec::Lz4 => "lz4",
            DeviceCodec::Float => "float",
        }
    }
    /// The device kernel that decodes this codec's pages.
    pub fn decoder(self) -> &'static vuma_core::Kernel {
        match self {
            DeviceCodec::Bitplane => &crate::kernels::decoders().bitplane,
            DeviceCodec::Lz4 => &crate::kernels::decoders().lz4,
            DeviceCodec::Float => crate::floatdecode::float_decoder(),
        }
    }
    /// Whether devices of `backend` can decode this codec: its decoder kernel has a variant
    /// for the backend.
    pub fn decodes_on(self, backend: vuma_core::Backend) -> bool {
        self.decoder().supports(backend)
    }
}

/// What happens to one page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PageDecision {
    /// All zeros: nothing is sent; the device fills.
    Zero,
    /// Sent as it is.
    Raw,
    /// Sent compressed, decoded on the device.
    Codec(DeviceCodec),
}

impl PageDecision {
    /// Short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            PageDecision::Zero => "zero",
            PageDecision::Raw => "raw",
            PageDecision::Codec(c) => c.name(),
        }
    }
}

/// Rates of one device codec, bytes per second of uncompressed data.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CodecRates {
    /// Device decode rate.
    pub device_decode: f64,
    /// Host encode rate, all cores together.
    pub host_encode: f64,
}

/// The planner's cost model (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct CostModel {
    /// Host-to-device link bandwidth, bytes/s.
    pub link_h2d: f64,
    /// Device fill rate (zero pages), bytes/s.
    pub device_fill: f64,
    /// Bitplane rates.
    pub bitplane: CodecRates,
    /// LZ4 rates.
    pub lz4: CodecRates,
    /// Float-codec rates.
    pub float: CodecRates,
    /// Whether the device decodes float-codec pages (`hl_float` has a variant for its
    /// backend): [`CostModel::for_device`] asks the kernel. Without it the planner never
    /// picks [`DeviceCodec::Float`]. Default false: a model that knows no device plans only
    /// the codecs every backend decodes.
    pub float_decoder: bool,
    /// Whether codec pages are decoded in place from mapped host memory, overlapping the
    /// transfer (see the module docs; default false: copy, then decode).
    pub overlap: bool,
    /// Whether copies from pinned memory overlap the decodes (the device runs
    /// `copy_concurrent` on its own queue: CUDA; default true, as on the H100 machine the
    /// default rates describe). Set by [`CostModel::for_device`] and
    /// [`measure_device_decode`](crate::residency::measure_device_decode).
    pub concurrent_copies: bool,
    /// Compressed bytes per second the decoders pull from mapped host memory (default
    /// 38 GB/s, measured on the H100: 35–39 GB/s; [`measure_device_decode`](crate::residency::measure_device_decode)
    /// measures it).
    pub mapped_h2d: f64,
    /// Whether the link figure was measured (not derived or defaulted).
    pub link_measured: bool,
    /// Whether the device decode rates were measured on this device.
    pub decode_measured: bool,
}

impl Default for CostModel {
    /// Figures measured on the project's GPU machines (H100 and H200, PCIe Gen5 x16):
    /// pinned H2D 55.2 GB/s; bitplane decode ~160 GB/s and LZ4 decode ~16 GB/s on ReLU
    /// activations; on 16 cores, LZ4 encode 1.76 GB/s and bitplane encode ~0.5 GB/s. The
    /// upload pipeline copies chunk i+1 on a side stream while chunk i decodes, so copies
    /// overlap decodes (`concurrent_copies`; a device without concurrent copies gets
    /// `false` from [`CostModel::for_device`]); modelling them serialised would make a 1.31×
    /// codec lose to raw at 160 GB/s of decode. The float codec: device decode 150 GB/s,
    /// what `hl_float` reaches on real bf16 weights on an H200 with the
    /// [`FLOAT_PAGE_SIZE`](crate::page::FLOAT_PAGE_SIZE) pages that
    /// [`CompressOptions::for_device`](crate::CompressOptions::for_device) picks (its slowest
    /// data set: 152 GB/s; fp32 191, ReLU activations 194; 32 MiB chunks); host encode
    /// 1 GB/s on all cores (~0.25 GB/s per core). The float decoder itself is off here (see
    /// [`CostModel::float_decoder`]); [`CostModel::for_device`] turns it on where the device
    /// has it, and [`measure_device_decode`](crate::residency::measure_device_decode)
    /// replaces the decode rates with the device's own.
    fn default() -> Self {
        CostModel {
            link_h2d: 55.2e9,
            device_fill: 1.0e12,
            bitplane: CodecRates {
                device_decode: 160e9,
                host_encode: 0.5e9,
            },
            lz4: CodecRates {
                device_decode: 16e9,
                host_encode: 1.76e9,
            },
            float: CodecRates {
                device_decode: 150e9,
                host_encode: 1e9,
            },
            float_decoder: false,
            overlap: false,
            concurrent_copies: true,
            mapped_h2d: 38e9,
            link_measured: false,
            decode_measured: false,
        }
    }
}

impl CostModel {
    /// The default model with the link of `info` (when the device reports one), its copy
    /// concurrency, and the float codec where the device has its decoder, at the decode rate
    /// its variant is known for ([`crate::floatdecode::prior_decode_rate`]).
    pub fn for_device(info: &DeviceInfo) -> Self {
        let mut m = CostModel::default();
        if let Some(l) = &info.host_link {
            if l.h2d_bytes_per_s.is_finite() && l.h2d_bytes_per_s > 0.0 {
                m.link_h2d = l.h2d_bytes_per_s;
                m.link_measured = l.measured;
            }
        }
        m.concurrent_copies = info.copies_overlap_kernels;
        m.float_decoder = DeviceCodec::Float.decodes_on(info.backend);
        if let Some(rate) = crate::floatdecode::prior_decode_rate(info.backend) {
            m.float.device_decode = rate;
        }
        m
    }

    /// Whether the device this model describes decodes `codec` (the bitplane and LZ4
    /// decoders run on every backend; the float decoder where [`CostModel::float_decoder`]).
    pub fn decodes(&self, codec: DeviceCodec) -> bool {
        codec != DeviceCodec::Float || self.float_decoder
    }

    /// Rates of `codec`.
    pub fn rates(&self, codec: DeviceCodec) -> CodecRates {
        match codec {
            DeviceCodec::Bitplane => self.bitplane,
            DeviceCodec::Lz4 => self.lz4,
            DeviceCodec::Float => self.float,
        }
    }
    /// Mutable rates of `codec`.
    pub fn rates_mut(&mut self, codec: DeviceCodec) -> &mut CodecRates {
        match codec {
            DeviceCodec::Bitplane => &mut self.bitplane,
            DeviceCodec::Lz4 => &mut self.lz4,
            DeviceCodec::Float => &mut self.float,
        }
    }

    /// Checks every rate is finite and positive.
    pub fn validate(&self) -> Result<()> {
        let all = [
            self.link_h2d,
            self.device_fill,
            self.mapped_h2d,
            self.bitplane.device_decode,
            self.bitplane.host_encode,
            self.lz4.device_decode,
            self.lz4.host_encode,
            self.float.device_decode,
            self.float.host_encode,
        ];
        if all.iter().all(|r| r.is_finite() && *r > 0.0) {
            Ok(())
        } else {
            Err(Error::invalid(format!(
                "cost model rates must be finite and positive: {self:?}"
            )))
        }
    }

    /// Measures the host encode rates of the device codecs on `sample` (all cores).
    pub fn measure_host(&mut self, sample: &[u8], width: ElemWidth) -> Result<()> {
        if sample.is_empty() {
            return Err(Error::ZeroSize {
                what: "cost model sample",
            });
        }
        for c in DeviceCodec::ALL {
            if c == DeviceCodec::Lz4 && !cfg!(feature = "lz4") {
                continue; // cannot encode LZ4 without the feature: keep the default
            }
            let t = Instant::now();
            let enc = encode_pages(sample, page::DEFAULT_PAGE_SIZE, width, c)?;
            let s = t.elapsed().as_secs_f64().max(1e-9);
            drop(enc);
            self.rates_mut(c).host_encode = sample.len() as f64 / s;
        }
        Ok(())
    }

    /// The model as `key value` lines (for caching).
    pub fn to_text(&self) -> String {
        format!(
            "link_h2d {}\ndevice_fill {}\nmapped_h2d {}\nbitplane.device_decode {}\nbitplane.host_encode {}\nlz4.device_decode {}\nlz4.host_encode {}\nfloat.device_decode {}\nfloat.host_encode {}\nfloat_decoder {}\noverlap {}\nconcurrent_copies {}\nlink_measured {}\ndecode_measured {}\n",
            self.link_h2d,
            self.device_fill,
            self.mapped_h2d,
            self.bitplane.device_decode,
            self.bitplane.host_encode,
            self.lz4.device_decode,
            self.lz4.host_encode,
            self.float.device_decode,
            self.float.host_encode,
            self.float_decoder,
            self.overlap,
            self.concurrent_copies,
            self.link_measured,
            self.decode_measured
        )
    }

    /// Parses [`CostModel::to_text`] output; missing keys keep their defaults.
    pub fn from_text(text: &str) -> Result<Self> {
        let mut m = CostModel::default();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let (k, v) = line
                .split_once(' ')
                .ok_or_else(|| Error::invalid(format!("cost model line `{line}`")))?;
            let num = || {
                v.trim()
                    .parse::<f64>()
                    .map_err(|e| Error::invalid(format!("cost model `{k}`: {e}")))
            };
            let flag = || {
                v.trim()
                    .parse::<bool>()
                    .map_err(|e| Error::invalid(format!("cost model `{k}`: {e}")))
            };
            match k {
                "link_h2d" => m.link_h2d = num()?,
                "device_fill" => m.device_fill = num()?,
                "mapped_h2d" => m.mapped_h2d = num()?,
                "bitplane.device_decode" => m.bitplane.device_decode = num()?,
                "bitplane.host_encode" => m.bitplane.host_encode = num()?,
                "lz4.device_decode" => m.lz4.device_decode = num()?,
                "lz4.host_encode" => m.lz4.host_encode = num()?,
                "float.device_decode" => m.float.device_decode = num()?,
                "float.host_encode" => m.float.host_encode = num()?,
                "float_decoder" => m.float_decoder = flag()?,
                "overlap" => m.overlap = flag()?,
                "concurrent_copies" => m.concurrent_copies = flag()?,
                "link_measured" => m.link_measured = flag()?,
                "decode_measured" => m.decode_measured = flag()?,
                _ => return Err(Error::invalid(format!("unknown cost model key `{k}`"))),
            }
        }
        m.validate()?;
        Ok(m)
    }

    /// Seconds to move `n` bytes as `d` with estimated ratio `ratio`.
    pub fn page_time(&self, n: usize, d: PageDecision, ratio: f64, encode: EncodeCost) -> f64 {
        let n = n as f64;
        match d {
            PageDecision::Zero => n / self.device_fill,
            PageDecision::Raw => n / self.link_h2d,
            PageDecision::Codec(c) => {
                let r = self.rates(c);
                let link = if self.overlap {
                    self.mapped_h2d
                } else {
                    self.link_h2d
                };
                let copy = n / (ratio.max(1e-3) * link);
                let enc = match encode {
                    EncodeCost::AlreadyCompressed => 0.0,
                    EncodeCost::Host { uses } => n / r.host_encode / uses.max(1.0),
                };
                let decode = n / r.device_decode;
                if self.overlap || self.concurrent_copies {
                    copy.max(decode) + enc
                } else {
                    copy + decode + enc
                }
            }
        }
    }
}

/// Whether the host must encode before sending.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum EncodeCost {
    /// Bytes are already compressed (compressed residency, GPU-compressed eviction, data
    /// arriving compressed): no encode in the transfer path.
    AlreadyCompressed,
    /// The host encodes once for `uses` uploads.
    Host {
        /// Uploads sharing one encoding.
        uses: f64,
    },
}

/// Knobs of the planner.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanConfig {
    /// Page size (a multiple of 1 KiB, at most 64 KiB; default 64 KiB).
    pub page_size: usize,
    /// Element width hint.
    pub width: ElemWidth,
    /// Who pays for encoding.
    pub encode: EncodeCost,
    /// A codec must be at least this much faster than raw (fraction; default 0.03).
    pub min_gain: f64,
    /// Device codecs allowed (of these, the planner picks only those the cost model's
    /// device decodes: [`CostModel::decodes`]).
    pub codecs: Vec<DeviceCodec>,
    /// Sampling of the estimate.
    pub sample: SampleConfig,
    /// Threads (0: all cores).
    pub threads: usize,
}

impl Default for PlanConfig {
    fn default() -> Self {
        PlanConfig {
            page_size: page::DEFAULT_PAGE_SIZE,
            width: ElemWidth::U8,
            encode: EncodeCost::AlreadyCompressed,
            min_gain: 0.03,
            codecs: DeviceCodec::ALL.to_vec(),
            sample: SampleConfig::default(),
            threads: 0,
        }
    }
}

/// Totals of a plan, for the workload report.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PlanSummary {
    /// Pages.
    pub pages: usize,
    /// Zero pages (nothing sent).
    pub zero_pages: usize,
    /// Raw pages.
    pub raw_pages: usize,
    /// Bitplane pages.
    pub bitplane_pages: usize,
    /// LZ4 pages.
    pub lz4_pages: usize,
    /// Float-codec pages.
    pub float_pages: usize,
    /// Uncompressed bytes.
    pub bytes_in: u64,
    /// Bytes that cross the link (estimated in a plan, exact in a compressed buffer).
    pub bytes_sent: u64,
    /// Modelled transfer time, seconds.
    pub est_time_s: f64,
    /// Modelled time of sending everything raw, seconds.
    pub raw_time_s: f64,
    /// Bytes the estimator read.
    pub bytes_inspected: u64,
    /// Wall time spent planning, seconds.
    pub plan_time_s: f64,
}

impl PlanSummary {
    /// Pages sent compressed (any device codec).
    pub fn codec_pages(&self) -> usize {
        self.bitplane_pages + self.lz4_pages + self.float_pages
    }
    /// Bytes that did not cross the link.
    pub fn bytes_saved(&self) -> u64 {
        self.bytes_in.saturating_sub(self.bytes_sent)
    }
    /// `bytes_in / bytes_sent` (∞ when nothing is sent).
    pub fn ratio(&self) -> f64 {
        self.bytes_in as f64 / self.bytes_sent as f64
    }
    pub(crate) fn count(&mut self, d: PageDecision) {
        self.pages += 1;
        match d {
            PageDecision::Zero => self.zero_pages += 1,
            PageDecision::Raw => self.raw_pages += 1,
            PageDecision::Codec(DeviceCodec::Bitplane) => self.bitplane_pages += 1,
            PageDecision::Codec(DeviceCodec::Lz4) => self.lz4_pages += 1,
            PageDecision::Codec(DeviceCodec::Float) => self.float_pages += 1,
        }
    }
}

impl fmt::Display for PlanSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} pages (zero {}, raw {}, bitplane {}, lz4 {}, float {}): {} in, {} sent, {} saved (ratio {:.2}); modelled {:.3} ms vs {:.3} ms raw; planned in {:.3} ms reading {}",
            self.pages,
            self.zero_pages,
            self.raw_pages,
            self.bitplane_pages,
            self.lz4_pages,
            self.float_pages,
            vuma_core::human_bytes(self.bytes_in),
            vuma_core::human_bytes(self.bytes_sent),
            vuma_core::human_bytes(self.bytes_saved()),
            self.ratio(),
            self.est_time_s * 1e3,
            self.raw_time_s * 1e3,
            self.plan_time_s * 1e3,
            vuma_core::human_bytes(self.bytes_inspected)
        )
    }
}

/// Per-page decisions and their summary.
#[derive(Debug, Clone, PartialEq)]
pub struct TransferPlan {
    /// Page size.
    pub page_size: usize,
    /// One decision per page.
    pub decisions: Vec<PageDecision>,
    /// Estimated ratio of each page's decision (1 for raw, ∞ for zero).
    pub ratios: Vec<f64>,
    /// Totals.
    pub summary: PlanSummary,
}

/// Picks the decision for one page from its estimate.
pub fn decide(
    n: usize,
    est: &PageEstimate,
    model: &CostModel,
    cfg: &PlanConfig,
) -> (PageDecision, f64) {
    if est.zero {
        return (PageDecision::Zero, f64::INFINITY);
    }
    let raw = model.page_time(n, PageDecision::Raw, 1.0, cfg.encode);
    let mut best = (PageDecision::Raw, 1.0, raw);
    for &c in cfg.codecs.iter().filter(|&&c| model.decodes(c)) {
        let r = est.ratio_of(c.name()).unwrap_or(1.0);
        let t = model.page_time(n, PageDecision::Codec(c), r, cfg.encode);
        if t < best.2 && t < raw * (1.0 - cfg.min_gain) {
            best = (PageDecision::Codec(c), r, t);
        }
    }
    (best.0, best.1)
}

fn threads(requested: usize, work: usize) -> usize {
    let n = if requested == 0 {
        vuma_core::host::cores()
    } else {
        requested
    };
    n.clamp(1, work.max(1))
}

/// Plans the transfer of `data` (see the module docs).
pub fn plan(data: &[u8], model: &CostModel, cfg: &PlanConfig) -> Result<TransferPlan> {
    page::check_page_size(cfg.page_size, page::MAX_DEVICE_PAGE_SIZE)?;
    model.validate()?;
    if !cfg.page_size.is_multiple_of(cfg.width.bytes()) {
        return Err(Error::invalid(
            "page size must be a multiple of the element width",
        ));
    }
    let t0 = Instant::now();
    let npages = data.len().div_ceil(cfg.page_size);
    let nthreads = threads(cfg.threads, npages);
    let per = npages.div_ceil(nthreads).max(1);
    let part = |t: usize| {
        let lo = (t * per).min(npages);
        let hi = ((t + 1) * per).min(npages);
        (lo..hi)
            .map(|p| {
                let r = p * cfg.page_size..((p + 1) * cfg.page_size).min(data.len());
                let est = page::estimate(&data[r.clone()], cfg.width, &cfg.sample);
                let (d, ratio) = decide(r.len(), &est, model, cfg);
                (d, ratio, est.bytes_inspected)
            })
            .collect::<Vec<_>>()
    };
    let mut results: Vec<(PageDecision, f64, usize)> = Vec::with_capacity(npages);
    if nthreads == 1 {
        // No thread to start for one.
        results = part(0);
    } else {
        std::thread::scope(|s| {
            let part = &part;
            let handles: Vec<_> = (0..nthreads).map(|t| s.spawn(move || part(t))).collect();
            for h in handles {
                // A planning thread only panics on a bug; surface it as-is.
                results.extend(h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)));
            }
        });
    }
    let mut summary = PlanSummary::default();
    let mut decisions = Vec::with_capacity(npages);
    let mut ratios = Vec::with_capacity(npages);
    for (p, (d, ratio, inspected)) in results.into_iter().enumerate() {
        let n = (data.len() - p * cfg.page_size).min(cfg.page_size);
        summary.count(d);
        summary.bytes_in += n as u64;
        summary.bytes_inspected += inspected as u64;
        summary.bytes_sent += match d {
            PageDecision::Zero => 0,
            PageDecision::Raw => n as u64,
            PageDecision::Codec(_) => (n as f64 / ratio).ceil() as u64,
        };
        summary.est_time_s += model.page_time(n, d, ratio, cfg.encode);
        summary.raw_time_s += model.page_time(n, PageDecision::Raw, 1.0, cfg.encode);
        decisions.push(d);
        ratios.push(ratio);
    }
    summary.plan_time_s = t0.elapsed().as_secs_f64();
    Ok(TransferPlan {
        page_size: cfg.page_size,
        decisions,
        ratios,
        summary,
    })
}

/// Encodes every page of `data` with `codec` (on all cores); returns the encoded pages.
/// Used to measure host encode rates.
pub fn encode_pages(
    data: &[u8],
    page_size: usize,
    width: ElemWidth,
    codec: DeviceCodec,
) -> Result<Vec<Vec<u8>>> {
    let ranges: Vec<_> = page::pages(data.len(), page_size).collect();
    page::par_map(&ranges, 0, |_, r| {
        let mut out = Vec::new();
        match codec {
            DeviceCodec::Bitplane => {
                crate::bitplane::encode_page(&data[r.clone()], width, &mut out)?;
            }
            DeviceCodec::Lz4 => crate::codecs::lz4_encode_page(&data[r.clone()], &mut out)?,
            DeviceCodec::Float => {
                crate::floatcodec::encode_page(&data[r.clone()], width, &mut out)?;
            }
        }
        Ok(out)
    })
}
