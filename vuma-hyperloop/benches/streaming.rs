//! Streaming a working set 4× the VRAM budget through a kernel that reads all of it
//! (harness = false; CUDA, otherwise a SKIP line).
//!
//! The working set is 8 segments of ReLU f32 activations (256 MiB each, distinct seeds;
//! 16 MiB each with `VUMA_BENCH_QUICK=1`) held in pinned host memory; the VRAM budget is a
//! quarter of it: a double-buffered window of two segments. Every segment crosses the link
//! into the window and a kernel reads all of it (a sum per segment, checked against the
//! host's). Three ways, one run:
//! - **raw**: a pinned copy per segment, then the kernel — against the link-bound time (the
//!   same bytes at the pinned copy rate measured in the same run): target ≥ 0.95×;
//! - **Hyperloop, staged**: the segment kept compressed in pinned memory, uploaded and
//!   decoded on the device, then the kernel — against raw streaming: target ≥ 1.4×;
//! - **Hyperloop, mapped**: the same from mapped pinned memory (decoders read in place).

use std::time::Instant;

use vuma_core::bench::{median, Record};
use vuma_core::{
    AccessMode, Arg, DynBuffer, DynDevice, Kernel, LaunchConfig, Placement, Result, Scalar,
};
use vuma_hyperloop::datasets::Dataset;
use vuma_hyperloop::page::ElemWidth;
use vuma_hyperloop::residency::{CompressOptions, CompressedBuffer, PinnedCompressed, Uploader};

const SEGMENTS: usize = 8;

const SUM_CUDA: &str = r#"
extern "C" __global__ void hl_stream_sum(const unsigned int* __restrict__ p,
                                         unsigned long long n_words,
                                         unsigned long long* out, unsigned int slot) {
    unsigned long long acc = 0;
    unsigned long long stride = (unsigned long long)gridDim.x * blockDim.x;
    for (unsigned long long i = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x;
         i < n_words; i += stride) {
        acc += p[i];
    }
    for (int o = 16; o > 0; o >>= 1) acc += __shfl_down_sync(0xffffffffu, acc, o);
    if ((threadIdx.x & 31u) == 0) atomicAdd(out + slot, acc);
}
"#;

/// Sum of a segment's u32 words (what the kernel computes), on the host.
fn host_sum(data: &[u8]) -> u64 {
    data.chunks_exact(4)
        .map(|c| u64::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]])))
        .sum()
}

fn sum_kernel() -> Kernel {
    Kernel::new("hl_stream_sum")
        .with_cuda_source(SUM_CUDA, "hl_stream_sum")
        .with_host(|l| {
            let n = l.scalars[0].as_u64().unwrap_or(0) as usize;
            let slot = l.scalars[1].as_u64().unwrap_or(0) as usize;
            let s = host_sum(&l.buffers[0][..n * 4]);
            let out = &mut l.buffers[1][slot * 8..slot * 8 + 8];
            let v = u64::from_le_bytes(out.try_into().expect("8 bytes")).wrapping_add(s);
            out.copy_from_slice(&v.to_le_bytes());
            Ok(())
        })
}

struct Rig<'d> {
    dev: &'d dyn DynDevice,
    window: [Box<dyn DynBuffer>; 2],
    sums: Box<dyn DynBuffer>,
    kernel: Kernel,
    seg: u64,
}

impl Rig<'_> {
    fn read_segment(&self, slot: usize, w: usize) -> Result<()> {
        let words = self.seg / 4;
        let grid = (words.div_ceil(256)).min(132 * 16) as u32;
        self.dev.launch(
            &self.kernel,
            &LaunchConfig {
                grid: [grid.max(1), 1, 1],
                block: [256, 1, 1],
                shared_mem_bytes: 0,
            },
            &[
                Arg::whole(self.window[w].as_ref(), AccessMode::Read),
                Arg::Scalar(Scalar::U64(words)),
                Arg::whole(self.sums.as_ref(), AccessMode::ReadWrite),
                Arg::Scalar(Scalar::U32(slot as u32)),
            ],
        )
    }

    fn sums(&self) -> Result<Vec<u64>> {
        let mut b = vec![0u8; SEGMENTS * 8];
        self.dev.read(self.sums.as_ref(), 0, &mut b)?;
        Ok(b.chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect())
    }

    /// Runs one streaming pass; `bring(s, window)` brings segment `s` into the window.
    fn pass(&self, mut bring: impl FnMut(usize, &dyn DynBuffer) -> Result<()>) -> Result<f64> {
        self.dev.fill(self.sums.as_ref(), 0, self.sums.len(), 0)?;
        self.dev.synchronize()?;
        let t = Instant::now();
        for s in 0..SEGMENTS {
            let w = s % 2;
            bring(s, self.window[w].as_ref())?;
            self.read_segment(s, w)?;
        }
        self.dev.synchronize()?;
        Ok(t.elapsed().as_secs_f64())
    }
}

fn run(dev: &dyn DynDevice, seg: usize, iters: usize) -> Result<()> {
    let name = dev.info().name.clone();
    let backend = dev.info().backend;
    let total = (seg * SEGMENTS) as u64;
    let t = Instant::now();
    let segments: Vec<Vec<u8>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..SEGMENTS)
            .map(|i| s.spawn(move || Dataset::ReluF32.generate(seg, 100 + i as u64)))
            .collect();
        hs.into_iter()
            .map(|h| h.join().expect("generator"))
            .collect()
    });
    let want: Vec<u64> = segments.iter().map(|d| host_sum(d)).collect();
    println!(
        "stream: {SEGMENTS} segments of {} MiB generated in {:.1} s",
        seg >> 20,
        t.elapsed().as_secs_f64()
    );
    let seg = seg as u64;
    let rig = Rig {
        dev,
        window: [
            dev.alloc(seg, Placement::DeviceLocal)?,
            dev.alloc(seg, Placement::DeviceLocal)?,
        ],
        sums: dev.alloc((SEGMENTS * 8) as u64, Placement::DeviceLocal)?,
        kernel: sum_kernel(),
        seg,
    };
    // Raw: the working set in pinned memory.
    let pinned: Vec<Box<dyn DynBuffer>> = segments
        .iter()
        .map(|d| {
            let b = dev.alloc(seg, Placement::Staging)?;
            dev.write(b.as_ref(), 0, d)?;
            Ok(b)
        })
        .collect::<Result<_>>()?;
    // Compressed: each segment compressed once on the host, then pinned / mapped.
    let t = Instant::now();
    let mut opts = CompressOptions::with_width(ElemWidth::F32);
    opts.model = vuma_hyperloop::planner::CostModel::for_device(dev.info());
    let compressed: Vec<CompressedBuffer> = segments
        .iter()
        .map(|d| CompressedBuffer::compress(d, &opts))
        .collect::<Result<_>>()?;
    let stored: u64 = compressed.iter().map(CompressedBuffer::stored_bytes).sum();
    println!(
        "stream: compressed in {:.1} s, {:.3}x ({} MiB stored)",
        t.elapsed().as_secs_f64(),
        total as f64 / stored as f64,
        stored >> 20
    );
    drop(segments);
    let staged: Vec<PinnedCompressed> = compressed
        .iter()
        .map(|c| PinnedCompressed::pin(dev, c))
        .collect::<Result<_>>()?;
    let mapped: Option<Vec<PinnedCompressed>> = if dev.supports(Placement::HostMapped) {
        Some(
            compressed
                .iter()
                .map(|c| PinnedCompressed::map(dev, c))
                .collect::<Result<_>>()?,
        )
    } else {
        None
    };
    drop(compressed);

    // The link: one pinned segment copy, repeated (warm-up included).
    let mut link_t = Vec::new();
    for _ in 0..iters + 2 {
        let t = Instant::now();
        dev.copy(pinned[0].as_ref(), 0, rig.window[0].as_ref(), 0, seg)?;
        dev.synchronize()?;
        link_t.push(t.elapsed().as_secs_f64());
    }
    link_t.drain(..2);
    let link_gbps = seg as f64 / median(&mut link_t) / 1e9;

    let mut up = Uploader::new(dev);
    let measure = |what: &str, bring: &mut dyn FnMut(usize, &dyn DynBuffer) -> Result<()>| {
        let mut ts = Vec::new();
        for i in 0..iters + 1 {
            let el = rig.pass(&mut *bring)?;
            let got = rig.sums()?;
            if got != want {
                return Err(vuma_core::Error::Kernel {
                    kernel: "hl_stream_sum".into(),
                    reason: format!(
                        "{what}: segment sums differ from the host's: {got:?} vs {want:?}"
                    ),
                });
            }
            if i > 0 {
                ts.push(el);
            }
        }
        Ok(total as f64 / median(&mut ts) / 1e9)
    };
    let raw = measure("raw", &mut |s, w| {
        dev.copy(pinned[s].as_ref(), 0, w, 0, seg)
    })?;
    let emit = |bench: &str, value: f64, baseline: &str, b: f64| {
        Record {
            bench: format!("hyperloop/{backend}/{bench}/relu_f32"),
            device: name.clone(),
            value,
            unit: "GB/s".into(),
            baseline: baseline.into(),
            baseline_value: b,
            higher_is_better: true,
        }
        .emit();
    };
    emit(
        "stream4x_raw",
        raw,
        "link-bound (pinned copy rate, same run)",
        link_gbps,
    );
    let hl = measure("hyperloop staged", &mut |s, w| {
        up.upload_pinned(&staged[s], w).map(drop)
    })?;
    emit(
        "stream4x_hyperloop_staged",
        hl,
        "raw streaming (pinned copy + kernel)",
        raw,
    );
    if let Some(mapped) = &mapped {
        let hm = measure("hyperloop mapped", &mut |s, w| {
            up.upload_pinned(&mapped[s], w).map(drop)
        })?;
        emit(
            "stream4x_hyperloop_mapped",
            hm,
            "raw streaming (pinned copy + kernel)",
            raw,
        );
    }
    Ok(())
}

fn main() {
    let quick = std::env::var("VUMA_BENCH_QUICK").is_ok_and(|v| v == "1");
    let seg = if quick { 16 << 20 } else { 256 << 20 };
    let iters = if quick { 2 } else { 5 };
    let host = vuma_core::HostDevice::new();
    let dev: Box<dyn DynDevice> = match vuma_cuda::devices() {
        Ok(mut v) if !v.is_empty() => Box::new(v.remove(0)),
        Ok(_) | Err(_) if std::env::var("VUMA_STREAM_ON_HOST").is_ok_and(|v| v == "1") => {
            // Exercises the bench's logic on the host device (figures mean nothing).
            println!("stream: on the host device (VUMA_STREAM_ON_HOST=1)");
            Box::new(host)
        }
        Ok(_) => {
            println!("SKIP: stream: no CUDA device");
            return;
        }
        Err(e) => {
            println!("SKIP: stream: cuda unavailable: {e}");
            return;
        }
    };
    println!(
        "stream: working set {} MiB, VRAM budget {} MiB (a double-buffered window of two segments)",
        (seg * SEGMENTS) >> 20,
        (seg * 2) >> 20
    );
    if let Err(e) = run(dev.as_ref(), seg, iters) {
        println!("ERROR: stream bench failed: {e}");
        std::process::exit(1);
    }
}
